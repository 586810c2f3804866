"""Host examples of the frame allocator's stack half (kernel/mm/frame_stack.c, issue 13): pushes and
pops, the free markers, O(1) double-free detection, the three kinds of fold, and the debug checks.
Nodes and state are read back with the schemas (kmtool.schemas.frames)."""

from __future__ import annotations

import re

import pytest
from kmhost import KM_ENOMEM, PAGE, Frames, HostPanic

from kmtool.schemas.frames import (
    FRAME_STACK_MAGIC,
    STACK_LIMIT_DEFAULT,
    STACK_RUN_MAX,
    FrameStack,
    stack_node_offset,
)


def _marker(fa: Frames, phys: int) -> int:
    return FRAME_STACK_MAGIC ^ phys ^ fa.counters().stack_key


def _take(fa: Frames, want: int) -> tuple[int, int]:
    got = fa.alloc(want)
    assert isinstance(got, tuple), f"allocation of {want} frames failed with status {got}"
    return got


def _first_frame(message: str) -> int:
    found = re.search(r"frame (0x[0-9a-f]+)", message)
    assert found is not None, message
    return int(found.group(1), 16)


def _one_span(frames: int = 64) -> Frames:
    fa = Frames(frames)
    fa.add(PAGE, frames - 1)
    return fa


def test_short_frees_go_onto_the_stack_of_their_length_and_come_back_lifo() -> None:
    fa = _one_span()
    a, b = _take(fa, 1), _take(fa, 1)
    run = _take(fa, 3)
    assert (a, b, run) == ((63 * PAGE, 1), (62 * PAGE, 1), (59 * PAGE, 3))
    fa.free(63 * PAGE, 1)
    fa.free(62 * PAGE, 1)
    fa.free(59 * PAGE, 3)
    stack = fa.stack()
    assert stack[0] == [62 * PAGE, 63 * PAGE] and stack[2] == [59 * PAGE]
    c = fa.counters()
    assert (c.stack_frames, c.stack_runs, c.free_frames, c.spans) == (5, 3, 63, 1)
    assert fa.spans() == [(PAGE, 58)]  # the stack leaves the spans alone
    assert fa.alloc(1) == (62 * PAGE, 1)  # last in, first out
    assert fa.alloc(3) == (59 * PAGE, 3)  # a whole stacked run of the length asked
    assert fa.validate() is None


def test_every_frame_of_a_stacked_run_carries_its_own_marker_until_it_leaves() -> None:
    fa = _one_span()
    phys, _ = _take(fa, 3)
    fa.free(phys, 3)
    for i in range(3):
        f = phys + i * PAGE
        node = fa.stack_node(f)
        assert (node.marker, node.run, node.count) == (_marker(fa, f), phys, 3)
        assert stack_node_offset(f) == (f // PAGE % 64) * 64  # neighbours use different lines
    assert fa.stack_node(phys).next == 0
    assert fa.alloc(3) == (phys, 3)
    for i in range(3):  # cleared on allocation: a later free of these frames is legal
        assert fa.stack_node(phys + i * PAGE).marker != _marker(fa, phys + i * PAGE)
    fa.free(phys + PAGE, 1)
    assert fa.validate() is None


@pytest.mark.parametrize(
    ("phys", "count", "kind", "frame"),
    [
        (41, 1, "double free", 41),  # the first frame of a stacked run
        (42, 1, "double free", 42),  # a frame inside it
        (40, 4, "double free", 40),  # the stacked runs 40 and 41-43 together
        (43, 2, "overlapping free", 43),  # the run's last frame and an allocated one
        (38, 3, "overlapping free", 40),  # allocated frames, then the stacked single frame
    ],
)
def test_double_and_overlapping_free_of_stacked_frames_panic_naming_the_frame(
    phys: int, count: int, kind: str, frame: int
) -> None:
    fa = Frames(64)
    fa.add(PAGE, 63)
    fa.alloc_contig(63 - 35)  # frames 36-63 allocated, 1-35 free in the span
    fa.free(41 * PAGE, 3)  # stacked: 41-43
    fa.free(40 * PAGE, 1)  # stacked: 40
    before = (fa.spans(), fa.stack(), fa.counters())
    with pytest.raises(HostPanic) as err:
        fa.free(phys * PAGE, count)
    message = str(err.value)
    assert kind in message and "on the stack" in message
    assert _first_frame(message) == frame * PAGE
    assert (fa.spans(), fa.stack(), fa.counters()) == before  # nothing changed
    assert fa.validate() is None


def test_a_refused_free_leaves_no_marker_in_the_frames_it_checked_first() -> None:
    # frames_free's push writes each frame's node as it checks it; when a later frame of the run
    # is stacked already, the nodes written so far are unmarked again before the slow path panics,
    # so those frames (still allocated) can be freed afterwards.
    fa = Frames(64)
    fa.add(PAGE, 63)
    fa.alloc_contig(63 - 35)  # frames 36-63 allocated
    fa.free(40 * PAGE, 1)  # stacked: 40
    with pytest.raises(HostPanic, match="overlapping free of frame 0x28000"):
        fa.free(37 * PAGE, 4)  # 37-39 allocated, 40 stacked
    for f in (37, 38, 39):
        assert fa.stack_node(f * PAGE).marker != _marker(fa, f * PAGE)
    fa.free(37 * PAGE, 3)
    assert fa.stack()[2] == [37 * PAGE] and fa.validate() is None


def test_a_copied_node_does_not_make_another_frame_look_free() -> None:
    # The marker includes the frame's own address: a page copied from a stacked frame (node and
    # all) to an allocated frame does not turn the allocated frame into a "stacked" one.
    fa = _one_span()
    a, _ = _take(fa, 1)
    b, _ = _take(fa, 1)
    fa.free(a, 1)
    at_a, at_b = a + stack_node_offset(a), b + stack_node_offset(b)
    fa.arena[at_b : at_b + FrameStack.sizeof()] = fa.arena[at_a : at_a + FrameStack.sizeof()]
    fa.free(b, 1)  # legal: b was allocated
    assert fa.stack()[0] == [b, a] and fa.validate() is None


def test_explicit_fold_moves_every_run_into_coalesced_spans() -> None:
    fa = _one_span()
    chunks = [_take(fa, n) for n in (1, 2, 3, 4)]
    for phys, n in chunks:
        fa.free(phys, n)
    assert fa.counters().stack_runs == 4 and fa.spans() == [(PAGE, 53)]
    assert fa.fold() == 4
    c = fa.counters()
    assert (c.stack_runs, c.stack_frames, c.folds, c.spans) == (0, 0, 1, 1)
    assert fa.spans() == [(PAGE, 63)]
    assert fa.fold() == 0 and fa.counters().folds == 1  # an empty stack: no fold counted
    assert fa.validate() is None


def test_the_stack_folds_past_its_limit() -> None:
    fa = _one_span()
    assert fa.counters().stack_limit == STACK_LIMIT_DEFAULT
    fa.set_stack_limit(4)
    for phys, n in [_take(fa, 2), _take(fa, 2), _take(fa, 1)]:
        fa.free(phys, n)
    # 2 + 2 frames stay on the stack; the fifth pushes it past 4 and everything folds
    c = fa.counters()
    assert (c.stack_frames, c.folds, fa.spans()) == (0, 1, [(PAGE, 63)])


def test_a_request_no_span_can_meet_folds_the_stack_first() -> None:
    fa = Frames(32)
    fa.add(PAGE, 31)
    taken = [_take(fa, 1) for _ in range(31)]
    for phys, _ in taken:
        fa.free(phys, 1)  # 31 single frames on the stack, no span at all
    assert fa.spans() == [] and fa.counters().stack_runs == 31
    assert fa.alloc(2) == (30 * PAGE, 2)  # folded into one span, then met whole
    assert fa.counters().folds == 1 and fa.spans() == [(PAGE, 29)]
    assert fa.alloc_contig(30) is None  # no run of 30 anywhere: a status, not a panic
    assert fa.validate() is None


def test_a_long_free_folds_the_stack_and_goes_to_the_spans() -> None:
    fa = _one_span()
    long_run = fa.alloc_contig(STACK_RUN_MAX + 1)
    single, _ = _take(fa, 1)
    fa.free(single, 1)
    assert long_run is not None
    fa.free(long_run, STACK_RUN_MAX + 1)
    assert fa.counters().stack_runs == 0 and fa.spans() == [(PAGE, 63)]


def test_exhaustion_with_everything_stacked_is_a_status() -> None:
    fa = Frames(8)
    fa.add(PAGE, 7)
    assert fa.alloc(7) == (PAGE, 7)
    assert fa.alloc(1) == KM_ENOMEM
    fa.free(3 * PAGE, 1)
    assert fa.alloc(2) == (3 * PAGE, 1)  # the only free frame, after a fold
    assert fa.alloc(1) == KM_ENOMEM


def test_a_corrupted_stack_link_is_caught_when_the_run_is_popped() -> None:
    fa = _one_span()
    a, _ = _take(fa, 1)
    b, _ = _take(fa, 1)
    fa.free(a, 1)
    fa.free(b, 1)  # b on top, its next is a
    at = b + stack_node_offset(b) + 24  # FrameStack.next
    fa.arena[at : at + 8] = (5 * PAGE + 8).to_bytes(8, "little")
    with pytest.raises(HostPanic, match=re.escape("next 0x5008 is not a stacked run")):
        fa.alloc(1)
