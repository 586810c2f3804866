"""Host tests of the frame allocator (kernel/mm/frame.c, frame_stack.c) against a Python model.

The model (frames_model.py) is the set of free frame numbers in the span half and the runs on each
stack. From it follow the exact span list (sorted, coalesced runs), the stacks, the counters, the
span hash, the treap (its in-order walk from the root is the span list), and the exact answer of
every allocation: a stacked run of exactly the length asked, else the top of the first span that
fits, else the same after a fold, else the whole largest span. Nodes and state are read back with
the schemas. Examples that are about the span half set stack_limit 0, so every free folds at once
and the spans see each free as before the stack existed; tests/kernel/test_host_frame_stack.py has
the stack's own examples.
"""

from __future__ import annotations

import re

import pytest
from frames_model import FramesModel
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from kmhost import (
    KM_EINVAL,
    KM_ENOMEM,
    PAGE,
    Frames,
    HostPanic,
    runs,
    span_hash_model,
    treap_inorder,
)

from kmtool.schemas.frames import FRAME_SPAN_MAGIC, SPAN_HASH_MULTIPLIER, FrameSpan

# ---- examples ----


def test_empty_allocator_reports_exhaustion_not_a_panic() -> None:
    fa = Frames(16)
    assert fa.alloc(1) == KM_ENOMEM
    assert fa.alloc_contig(1) is None
    assert fa.alloc(0) == KM_EINVAL
    assert fa.spans() == [] and fa.validate() is None


def test_add_skips_frame_zero_and_clips_at_the_limit() -> None:
    fa = Frames(16)
    fa.add(0, 100)
    assert fa.spans() == [(PAGE, 15)]
    c = fa.counters()
    assert (c.free_frames, c.spans, c.managed_frames) == (15, 1, 15)


def test_allocation_pops_from_the_top_of_the_first_span_that_fits() -> None:
    fa = Frames(64)
    fa.add(2 * PAGE, 4)
    fa.add(10 * PAGE, 8)
    assert fa.alloc(1) == (5 * PAGE, 1)
    assert fa.alloc(2) == (3 * PAGE, 2)
    # the first span has one frame left: a request for 5 is met whole by the next span (issue 13)
    assert fa.alloc(5) == (13 * PAGE, 5)
    assert fa.spans() == [(2 * PAGE, 1), (10 * PAGE, 3)]
    # no run holds 6 frames: the largest span, whole
    assert fa.alloc(6) == (10 * PAGE, 3)
    assert fa.spans() == [(2 * PAGE, 1)]
    assert fa.counters().alloc_calls == 4


def test_free_coalesces_with_both_neighbours_and_the_node_moves_down() -> None:
    fa = Frames(64)
    fa.set_stack_limit(0)
    fa.add(PAGE, 3)  # frames 1-3
    fa.add(8 * PAGE, 4)  # frames 8-11
    fa.free(5 * PAGE, 1)  # isolated
    assert fa.spans() == [(PAGE, 3), (5 * PAGE, 1), (8 * PAGE, 4)]
    fa.free(6 * PAGE, 2)  # joins 5 from above and 8.. from below
    assert fa.spans() == [(PAGE, 3), (5 * PAGE, 7)]
    fa.free(4 * PAGE, 1)  # bridges everything
    assert fa.spans() == [(PAGE, 11)]
    assert fa.validate() is None
    node = FrameSpan.parse(fa.node_bytes(PAGE, FrameSpan.sizeof()))
    assert (node.magic, node.start, node.count, node.next, node.prev) == (
        FRAME_SPAN_MAGIC, PAGE, 11, 0, 0)  # fmt: skip
    # the nodes that were absorbed are wiped, so a dump scan does not find stale spans
    for gone in (5 * PAGE, 8 * PAGE):
        assert FrameSpan.parse(fa.node_bytes(gone, FrameSpan.sizeof())).magic != FRAME_SPAN_MAGIC


def test_linked_list_fields_hold_physical_addresses() -> None:
    fa = Frames(64)
    for start in (4, 10, 20):
        fa.add(start * PAGE, 2)
    nodes = [FrameSpan.parse(fa.node_bytes(s * PAGE, FrameSpan.sizeof())) for s in (4, 10, 20)]
    assert [(n.prev, n.next) for n in nodes] == [
        (0, 10 * PAGE), (4 * PAGE, 20 * PAGE), (10 * PAGE, 0)]  # fmt: skip
    assert fa.counters().head == 4 * PAGE


@pytest.mark.parametrize(
    ("phys", "count", "kind", "frame"),
    [
        (5 * PAGE, 1, "double free", 5 * PAGE),  # inside a free span
        (4 * PAGE, 4, "double free", 4 * PAGE),  # exactly a free span
        (3 * PAGE, 2, "overlapping free", 4 * PAGE),  # ends inside a span: its first free frame
        (3 * PAGE, 6, "overlapping free", 4 * PAGE),  # covers a free span
        (7 * PAGE, 3, "overlapping free", 7 * PAGE),  # starts inside a span
        (4 * PAGE, 5, "overlapping free", 4 * PAGE),  # starts at a span, runs past its end
    ],
)
def test_double_and_overlapping_free_panic_with_the_frame_address(
    phys: int, count: int, kind: str, frame: int
) -> None:
    fa = Frames(32)
    fa.add(4 * PAGE, 4)  # frames 4-7 free
    fa.add(20 * PAGE, 2)
    before = (fa.spans(), fa.counters(), fa.stack())
    with pytest.raises(HostPanic) as err:
        fa.free(phys, count)
    assert kind in str(err.value)
    assert f"frame {frame:#x}" in str(err.value)
    assert (fa.spans(), fa.counters(), fa.stack()) == before  # checked before anything changed
    assert fa.validate() is None


@pytest.mark.parametrize(
    ("phys", "count", "text"),
    [
        (0, 1, "frame 0x0 is never managed"),
        (PAGE + 1, 1, "not frame aligned"),
        (30 * PAGE, 4, "past the allocator limit"),
        (PAGE, 0, "zero frames"),
    ],
)
def test_bad_frees_panic(phys: int, count: int, text: str) -> None:
    fa = Frames(32)
    with pytest.raises(HostPanic, match=re.escape(text)):
        fa.free(phys, count)


def test_contiguous_allocation_takes_the_first_span_big_enough() -> None:
    fa = Frames(64)
    fa.add(PAGE, 2)
    fa.add(10 * PAGE, 5)
    assert fa.alloc_contig(3) == 12 * PAGE
    assert fa.alloc_contig(3) is None
    assert fa.spans() == [(PAGE, 2), (10 * PAGE, 2)]


def test_span_hash_matches_the_model() -> None:
    fa = Frames(128)
    assert fa.span_hash() == 0 == span_hash_model([])
    fa.add(3 * PAGE, 5)
    # one span: the words 0x3000, 5 -> 0x3000 * P + 5 (mod 2^64)
    assert fa.span_hash() == (0x3000 * SPAN_HASH_MULTIPLIER + 5) % (1 << 64)
    for start, count in ((20, 1), (40, 60)):
        fa.add(start * PAGE, count)
    assert fa.span_hash() == span_hash_model(fa.spans())
    assert span_hash_model([(1, 2), (3, 4)]) != span_hash_model([(3, 4), (1, 2)])


def test_treap_fields_are_the_schema_fields() -> None:
    fa = Frames(64)
    fa.set_stack_limit(0)
    assert (fa.counters().root, fa.counters().limit) == (0, 64 * PAGE)
    for start in (30, 4, 50, 10, 20):
        fa.add(start * PAGE, 2)
    assert treap_inorder(fa) == [s * PAGE for s in (4, 10, 20, 30, 50)]
    root = fa.node(fa.counters().root)
    assert root.priority == max(fa.node(s * PAGE).priority for s in (4, 10, 20, 30, 50))
    # a node that moves down with its span keeps its place and priority in the treap
    before = fa.node(20 * PAGE)
    fa.free(19 * PAGE, 1)
    moved = fa.node(19 * PAGE)
    assert (moved.left, moved.right, moved.priority) == (before.left, before.right, before.priority)
    assert treap_inorder(fa) == [s * PAGE for s in (4, 10, 19, 30, 50)]
    fa.alloc(2)  # the whole first span: its node leaves the treap
    assert treap_inorder(fa) == [s * PAGE for s in (10, 19, 30, 50)]
    assert fa.validate() is None


def test_many_spans_stay_indexed() -> None:
    # every other frame free: 2000 spans; then fill the gaps in a scattered order
    fa = Frames(4096)
    fa.set_stack_limit(0)
    for f in range(2, 4002, 2):
        fa.add(f * PAGE, 1)
    assert fa.counters().spans == 2000
    for i in range(1999):
        f = 3 + 2 * ((i * 7919) % 1999)
        fa.free(f * PAGE, 1)
        if i % 500 == 0:
            assert fa.validate() is None
    assert fa.spans() == [(2 * PAGE, 3999)]
    assert fa.validate() is None
    assert treap_inorder(fa) == [2 * PAGE]


# ---- the stateful model test ----

FRAMES = 96  # physical memory of the model: frames 0 .. FRAMES-1


class FrameMachine(RuleBasedStateMachine):
    """Random add/alloc/free/fold/bad-free sequences over both halves; the C allocator must agree
    with the model in every answer, every span, every stacked run and every counter."""

    def __init__(self) -> None:
        super().__init__()
        self.fa = Frames(FRAMES)
        self.model = FramesModel(stack_limit=0)
        self.allocated: list[tuple[int, int]] = []  # (first frame, count) chunks we own

    @initialize(
        holes=st.sets(st.integers(1, FRAMES - 1), max_size=FRAMES // 3),
        stack_limit=st.sampled_from([0, 1, 8, 40, 1 << 18]),
    )
    def hand_over_memory(self, holes: set[int], stack_limit: int) -> None:
        self.fa.set_stack_limit(stack_limit)
        self.model.stack_limit = stack_limit
        # add every run of non-hole frames, in a shuffled-but-deterministic order
        wanted = [f for f in range(1, FRAMES) if f not in holes]
        chunks = runs(set(wanted))
        for start, count in chunks[::2] + chunks[1::2]:
            self.fa.add(start, count)
            self.model.add(start // PAGE, count)

    @rule(want=st.integers(1, 40))
    def alloc(self, want: int) -> None:
        expected = self.model.alloc(want)
        assert self.fa.alloc(want) == expected
        if expected != KM_ENOMEM:
            assert isinstance(expected, tuple)
            self.allocated.append((expected[0] // PAGE, expected[1]))

    @rule(count=st.integers(1, 20))
    def alloc_contig(self, count: int) -> None:
        first = self.model.take_whole(count)
        got = self.fa.alloc_contig(count)
        assert got == (None if first is None else first * PAGE)
        if first is not None:
            self.allocated.append((first, count))

    @precondition(lambda self: self.allocated)
    @rule(data=st.data())
    def free_some(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.allocated) - 1))
        first, count = self.allocated.pop(i)
        # free a piece of the chunk; keep the rest
        lo = data.draw(st.integers(0, count - 1))
        hi = data.draw(st.integers(lo + 1, count))
        self.fa.free((first + lo) * PAGE, hi - lo)
        self.model.release(first + lo, hi - lo)
        if lo:
            self.allocated.append((first, lo))
        if hi < count:
            self.allocated.append((first + hi, count - hi))

    @rule()
    def fold(self) -> None:
        assert self.fa.fold() == self.model.fold()

    @precondition(lambda self: self.model.free())
    @rule(data=st.data())
    def bad_free_panics(self, data: st.DataObject) -> None:
        # a range that touches at least one free frame, stacked or in a span
        free = self.model.free()
        f = data.draw(st.sampled_from(sorted(free)))
        lo = data.draw(st.integers(max(1, f - 5), f))
        hi = data.draw(st.integers(f + 1, min(FRAMES, f + 6)))
        before = (self.fa.spans(), self.fa.stack(), self.fa.counters())
        with pytest.raises(HostPanic) as err:
            self.fa.free(lo * PAGE, hi - lo)
        first_free = min(x for x in range(lo, hi) if x in free)
        all_free = all(x in free for x in range(lo, hi))
        message = str(err.value)
        assert ("double free" if all_free else "overlapping free") in message
        found = re.search(r"frame (0x[0-9a-f]+)", message)
        assert found is not None and int(found.group(1), 16) == first_free * PAGE
        assert (self.fa.spans(), self.fa.stack(), self.fa.counters()) == before

    @invariant()
    def matches_model(self) -> None:
        m = self.model
        expected = m.spans()
        assert self.fa.spans() == expected
        assert self.fa.stack() == m.stack_view()
        c = self.fa.counters()
        assert c.free_frames == len(m.free())
        assert (c.stack_frames, c.stack_runs, c.folds) == (m.stack_frames, m.stack_runs, m.folds)
        assert c.spans == len(expected)
        assert c.managed_frames == m.managed
        assert (c.alloc_calls, c.free_calls) == (m.allocs, m.frees)
        assert c.head == (expected[0][0] if expected else 0)
        assert self.fa.span_hash() == span_hash_model(expected)
        assert treap_inorder(self.fa) == [start for start, _ in expected]
        assert self.fa.validate() is None


FrameMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
test_frame_allocator_matches_model = FrameMachine.TestCase
