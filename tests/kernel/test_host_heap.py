"""Host tests of the buddy heap (kernel/mm/heap.c) against a Python model (issue 4 items 4, 10).

The heap runs over an anonymous, lazily backed mapping, so the host kernel's own demand paging
stands in for the page-fault handler: mincore() tells which arena pages were ever written, which
checks "headers only when needed, untouched pages never faulted in".
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from kmhost import PAGE, HeapArena, HostPanic

from kmtool.schemas.heap import HEAP_FREE_MAGIC, HEAP_USED_MAGIC, HeapBlock

HEADER = HeapBlock.sizeof()
MIN_ORDER = 6
GiB = 1 << 30
MiB = 1 << 20


def header(h: HeapArena, ptr: int) -> object:
    return HeapBlock.parse(h.read(ptr - HEADER, HEADER))


def test_init_writes_one_header_and_touches_one_page() -> None:
    h = HeapArena(GiB)
    c = h.counters()
    assert (c.base, c.size, c.min_order, c.max_order) == (h.base, GiB, MIN_ORDER, 30)
    assert c.free_heads[30] == h.base and c.free_blocks == 1
    assert h.resident_pages() == 1


def test_first_small_allocation_touches_only_split_header_pages() -> None:
    h = HeapArena(GiB)
    p = h.alloc(1)
    assert p == h.base + HEADER
    # halves split off at base + 2**k for k = 29 .. 6: one new page for each k >= 12
    assert h.resident_pages() == 1 + (29 - 12 + 1)
    c = h.counters()
    assert (c.bytes_in_use, c.blocks_in_use, c.free_blocks) == (1, 1, 30 - MIN_ORDER)
    used = header(h, p)
    assert (used.magic, used.order, used.size) == (HEAP_USED_MAGIC, MIN_ORDER, 1)


def test_big_reservation_is_not_backed_until_touched() -> None:
    h = HeapArena(4 * GiB)
    h.alloc(64)
    before = h.resident_pages()
    p = h.alloc(GiB)  # a 2 GiB block: splits nothing new, writes one header
    assert p is not None
    assert h.resident_pages() - before <= 1
    for offset in (PAGE, GiB // 2, GiB - 1):
        h.write(p + offset, b"x")
    assert h.resident_pages() - before <= 4


def test_free_merges_buddies_and_releases_pages() -> None:
    h = HeapArena(256 * MiB)
    ptrs = [h.alloc(size) for size in (100, 5000, MiB, 3 * MiB, 1)]
    assert all(ptrs)
    for p, size in zip(ptrs, (100, 5000, MiB, 3 * MiB, 1), strict=True):
        h.write(p, b"\xab" * size)
    for p in ptrs[::-1]:
        h.free(p)
    c = h.counters()
    assert (c.bytes_in_use, c.blocks_in_use, c.free_blocks) == (0, 0, 1)
    assert c.free_heads[c.max_order] == h.base
    assert header(h, h.base + HEADER).magic == HEAP_FREE_MAGIC
    assert h.resident_pages() == 1  # everything after the first page went back


def test_sizes_from_one_byte_to_four_mib() -> None:
    h = HeapArena(GiB)
    sizes = [1, 2, 31, 32, 33, 4064, 4065, 65536, MiB, 4 * MiB]
    for size in sizes:
        p = h.alloc(size)
        assert p is not None and p % 16 == 0
        order = h.order_for(size)
        assert (1 << order) >= size + HEADER and (
            order == MIN_ORDER or (1 << order) // 2 < size + HEADER
        )
        assert header(h, p).order == order
        h.free(p, size)
    assert h.counters().free_blocks == 1


def test_impossible_requests_return_null() -> None:
    h = HeapArena(MiB)
    assert h.alloc(0) is None
    assert h.alloc(MiB) is None  # the header does not fit
    p = h.alloc(MiB - HEADER)
    assert p is not None
    assert h.alloc(1) is None  # full, and that is a status, not a panic
    h.free(p)
    assert h.alloc(1) is not None


@pytest.mark.parametrize(
    ("bad", "text"),
    [
        ("double", "double free"),
        ("interior", "is not an allocated block"),
        ("outside", "is not a heap block"),
        ("size", "was allocated with 100 bytes, freed with 99"),
    ],
)
def test_bad_frees_panic(bad: str, text: str) -> None:
    h = HeapArena(MiB)
    p = h.alloc(100)
    keep = h.alloc(100)  # keeps p's buddy in use, so p's header stays a FREE header after free
    assert p is not None and keep is not None
    if bad == "double":
        h.free(p)
        target, size = p, 0
    elif bad == "interior":
        target, size = p + 64, 0
    elif bad == "outside":
        target, size = h.base + 2 * MiB, 0
    else:
        target, size = p, 99
    before = h.counters()
    with pytest.raises(HostPanic, match=text):
        h.free(target, size)
    assert h.counters() == before


# ---- the stateful model test ----

SIZES = st.one_of(
    st.integers(1, 200), st.integers(1, 70000), st.sampled_from([4 * MiB, 4 * MiB - HEADER, MiB])
)


class HeapMachine(RuleBasedStateMachine):
    """Random alloc/free/bad-free sequences: blocks never overlap, data survives, counters agree,
    and freeing everything merges the heap back into one block."""

    def __init__(self) -> None:
        super().__init__()
        self.h = HeapArena(64 * MiB)
        self.live: dict[int, tuple[int, int]] = {}  # ptr -> (size, fill byte)
        self.freed: set[int] = set()
        self.n = 0

    @rule(size=SIZES)
    def alloc(self, size: int) -> None:
        p = self.h.alloc(size)
        if p is None:
            # only when no free block of the needed order exists
            order = self.h.order_for(size)
            heads = self.h.counters().free_heads
            assert order < 0 or all(heads[k] == 0 for k in range(order, 64))
            return
        self.n += 1
        fill = self.n % 251 + 1
        self.h.write(p, bytes([fill]) * min(size, 64))
        if size > 64:
            self.h.write(p + size - 64, bytes([fill]) * 64)
        self.live[p] = (size, fill)
        self.freed.discard(p)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        p = data.draw(st.sampled_from(sorted(self.live)))
        size, _ = self.live.pop(p)
        self.h.free(p, size)
        self.freed.add(p)

    @precondition(lambda self: self.freed)
    @rule(data=st.data())
    def double_free_panics(self, data: st.DataObject) -> None:
        p = data.draw(st.sampled_from(sorted(self.freed)))
        before = self.h.counters()
        with pytest.raises(HostPanic):
            self.h.free(p)
        assert self.h.counters() == before

    @invariant()
    def consistent(self) -> None:
        c = self.h.counters()
        assert c.bytes_in_use == sum(size for size, _ in self.live.values())
        assert c.blocks_in_use == len(self.live)
        assert self.h.validate() is None
        blocks = sorted(
            (p - HEADER, 1 << self.h.order_for(size)) for p, (size, _) in self.live.items()
        )
        for (a, alen), (b, _) in zip(blocks, blocks[1:], strict=False):
            assert a + alen <= b, "blocks overlap"
        for p, (size, fill) in self.live.items():
            assert self.h.read(p, min(size, 64)) == bytes([fill]) * min(size, 64)
            if size > 64:
                assert self.h.read(p + size - 64, 64) == bytes([fill]) * 64
        if not self.live:
            assert c.free_blocks == 1


HeapMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
test_heap_matches_model = HeapMachine.TestCase
