"""The vectorised free-list chase (kmtool.dump.chase.chase) against a node-by-node reference.

The chase reads whole windows of page heads and guesses the list from the nodes' magic; whatever it
guesses, its answer must be the reference's: the same nodes in the same order, and the same
sentence where it stops early. Windows are made tiny here so that a small image has many of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmtool.dump import chase as chasing
from kmtool.dump.checks.spans import spans_sorted
from kmtool.dump.frames import FreeList
from kmtool.dump.memory import MemoryRange, PhysicalMemory
from kmtool.dump.records import field_offset
from kmtool.layout.table import PAGE_SIZE, KiB
from kmtool.schemas.frames import FRAME_SPAN_MAGIC, FrameSpan

WHAT = "frame free list"
NODE = FrameSpan.sizeof()
NEXT = field_offset(FrameSpan, "next")
# Two ranges: [0, 512 KiB) stored whole, [1 MiB, 1.5 MiB) with its last 128 KiB a zero tail.
RANGES = [
    MemoryRange(0, 512 * KiB, 0, 512 * KiB),
    MemoryRange(1 << 20, 512 * KiB, 512 * KiB, 384 * KiB),
]
FILE_SIZE = 896 * KiB
PAGES = [p for r in RANGES for p in range(r.start, r.start + r.size, PAGE_SIZE) if p]


@pytest.fixture(autouse=True)
def small_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chasing, "WINDOW", 16 * PAGE_SIZE)


def node(start: int, nxt: int, magic: int = FRAME_SPAN_MAGIC) -> bytes:
    fields = {sc.name: 0 for sc in FrameSpan.subcons}
    fields.update(magic=magic, start=start, count=1, next=nxt)
    return FrameSpan.build(fields)


def memory(tmp_path: Path, pages: dict[int, bytes]) -> PhysicalMemory:
    """A dump of RANGES holding `pages` (physical address -> bytes)."""
    image = bytearray(FILE_SIZE)
    for pa, data in pages.items():
        for r in RANGES:
            if r.start <= pa < r.file_end:
                at = r.file_offset + pa - r.start
                image[at : at + len(data)] = data[: r.file_end - pa]
    path = tmp_path / "list.raw"
    path.write_bytes(bytes(image))
    return PhysicalMemory(path, RANGES)


def reference(mem: PhysicalMemory, head: int) -> tuple[list[int], bytes, str | None]:
    """The list followed one node at a time with plain reads, as `chase` documents it: the nodes
    read before the first fault, their records, and the fault's sentence (None at the list's end)."""
    limit = mem.ram_bytes // PAGE_SIZE + 1
    found: list[int] = []
    records: list[bytes] = []
    a, last = head, 0
    while a and len(found) < limit:
        if mem.range_index(a) < 0:
            origin = hex(last) if last else "the list head"
            message = f"Frame free list: node {hex(a)} (linked from {origin}) is outside the dump."
            return found, b"".join(records), message
        if a % PAGE_SIZE:
            return found, b"".join(records), str(chasing._not_aligned(WHAT, a, last, PAGE_SIZE))
        data = mem.read(a, NODE, "frame free list node")
        found.append(a)
        records.append(data)
        last, a = a, int.from_bytes(data[NEXT : NEXT + 8], "little")
    if not a:
        return found, b"".join(records), None
    first_seen: dict[int, int] = {}
    for i, pa in enumerate(found):
        first_seen.setdefault(pa, i)
    j = next((i for i, pa in enumerate(found) if first_seen[pa] != i), len(found))
    message = (
        f"Frame free list: a cycle: node {hex(found[j - 1])} links back to {hex(found[j])}, "
        "visited before."
    )
    return found[:j], b"".join(records[:j]), message


def outcome(fn: object, *args: object) -> object:
    """What a chase returns, as comparable plain values."""
    addresses, records, error = fn(*args)  # type: ignore[operator]
    return list(map(int, addresses)), bytes(np.asarray(records).tobytes()), error


def chase(mem: PhysicalMemory, head: int) -> chasing.Chased:
    return chasing.chase(
        mem, head, FrameSpan, "next", WHAT, PAGE_SIZE, tag=("magic", FRAME_SPAN_MAGIC)
    )


targets = st.one_of(
    st.sampled_from(PAGES),  # any page: a node, a stale node, an empty page, a zero tail
    st.sampled_from([0, 8, 0x80000, 0xC0000, 1 << 40, PAGES[-1] + 8, (1 << 64) - PAGE_SIZE]),
    st.integers(0, (1 << 21) - 1),
)


@settings(max_examples=200, deadline=10_000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_chase_agrees_with_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: st.DataObject
) -> None:
    """Lists dense and sparse, sorted or not, with links bent to other nodes (cycles), to stale
    nodes, empty pages, zero tails, holes, misaligned and absent addresses; stale nodes that keep
    the magic; nodes that lost it. Windows of 4 to 128 pages, 1 or 8 guesses a window."""
    monkeypatch.setattr(chasing, "WINDOW", data.draw(st.sampled_from([4, 16, 128])) * PAGE_SIZE)
    monkeypatch.setattr(chasing, "GUESSES", data.draw(st.sampled_from([1, 8])))
    pool = data.draw(st.sampled_from([PAGES, PAGES[:40], PAGES[::7]]))
    chain = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=120, unique=True))
    if data.draw(st.booleans()):
        chain.sort()
    nexts = chain[1:] + [0]
    links = st.one_of(st.sampled_from(chain), targets)
    for i in data.draw(st.sets(st.integers(0, len(chain) - 1), max_size=3)):
        nexts[i] = data.draw(links)
    stale = data.draw(st.dictionaries(st.sampled_from(pool), links, max_size=20))
    lost = data.draw(st.sets(st.integers(0, len(chain) - 1), max_size=2))
    pages = {pa: node(pa, nxt) for pa, nxt in stale.items()}  # stale nodes: magic, any link
    for i, pa in enumerate(chain):
        pages[pa] = node(pa, nexts[i], 0x1234 if i in lost else FRAME_SPAN_MAGIC)
    mem = memory(tmp_path, pages)
    assert outcome(chase, mem, chain[0]) == outcome(reference, mem, chain[0])
    mem.bounded = False
    assert outcome(chase, mem, chain[0]) == outcome(reference, mem, chain[0])


def test_stale_nodes_between_the_spans(tmp_path: Path) -> None:
    """Frames allocated since they held a node keep its magic (and a next pointer) in the dump."""
    chain = list(range(PAGE_SIZE, 120 * PAGE_SIZE, 3 * PAGE_SIZE))
    pages = {pa + PAGE_SIZE: node(pa + PAGE_SIZE, pa + 2 * PAGE_SIZE) for pa in chain}
    pages.update({pa: node(pa, chain[i + 1] if i + 1 < len(chain) else 0)
                  for i, pa in enumerate(chain)})  # fmt: skip
    mem = memory(tmp_path, pages)
    addresses, _, _ = chase(mem, chain[0])
    assert addresses.tolist() == chain


def test_more_stale_nodes_than_guesses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past GUESSES wrong guesses in a window the rest of it is followed node by node."""
    monkeypatch.setattr(chasing, "WINDOW", 64 * PAGE_SIZE)
    chain = list(range(PAGE_SIZE, 64 * PAGE_SIZE, 2 * PAGE_SIZE))
    pages = {pa + PAGE_SIZE: node(pa + PAGE_SIZE, 0) for pa in chain}  # stale, every other page
    pages.update({pa: node(pa, chain[i + 1] if i + 1 < len(chain) else 0)
                  for i, pa in enumerate(chain)})  # fmt: skip
    mem = memory(tmp_path, pages)
    addresses, records, _ = chase(mem, chain[0])
    assert addresses.tolist() == chain and records["start"].tolist() == chain


def test_unsorted_list_is_decoded_and_fails_the_check(tmp_path: Path) -> None:
    chain = [20 * PAGE_SIZE, 22 * PAGE_SIZE, 5 * PAGE_SIZE, 7 * PAGE_SIZE, 40 * PAGE_SIZE]
    pages = {pa: node(pa, chain[i + 1] if i + 1 < len(chain) else 0) for i, pa in enumerate(chain)}
    mem = memory(tmp_path, pages)
    addresses, records, _ = chase(mem, chain[0])
    assert addresses.tolist() == chain
    fl = FreeList(0, None, records, addresses)
    result = spans_sorted(fl)
    assert result is not None and not result.ok and "span 0x5000 follows 0x16000" in result.detail
