"""The frame stack's walk (kmtool.dump.stack_chase.stack_links) with its guess against a node by
node reference: the same runs in the same order and the same sentence where it stops, whatever the
dump holds (links anywhere, markers overwritten or forged, loops, links to a range's last frame or
into its zero tail, misaligned links); and read_stack with the guess against read_stack without
it, verification included, on stacks of several run lengths with words spoilt anywhere. The scan
is forced on and its windows made small."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stack_dumps import FILE_SIZE, PAGES, RANGES, forced_scan, reference_walk  # noqa: F401

from kmtool.dump import frame_stack, stack_chase
from kmtool.dump.memory import PhysicalMemory
from kmtool.dump.stack_chase import Walk, stack_index, stack_links
from kmtool.layout.table import PAGE_SIZE, KiB
from kmtool.schemas.frames import FRAME_STACK_MAGIC, STACK_RUN_MAX, stack_node_offset

KEY = 0x5EED_0F_57ACC


pytestmark = pytest.mark.usefixtures("forced_scan")  # every test here takes the guess


def _dump(tmp_path: Path, nodes: dict[int, tuple[int, int, int]]) -> PhysicalMemory:
    """RANGES holding a stack node (marker, run, next) in each frame of `nodes`."""
    image = bytearray(FILE_SIZE)
    for pa, words in nodes.items():
        data = b"".join(w.to_bytes(8, "little") for w in (*words[:2], 1, words[2]))
        for r in RANGES:
            at = pa + stack_node_offset(pa)
            if r.start <= at and at + len(data) <= r.file_end:
                off = r.file_offset + at - r.start
                image[off : off + len(data)] = data
    path = tmp_path / "stack.raw"
    path.write_bytes(bytes(image))
    return PhysicalMemory(path, RANGES)


def _walked(walk: Walk) -> tuple[list[int], str]:
    return walk.runs.tolist(), walk.error


links = st.one_of(
    st.sampled_from(PAGES),
    st.just(0),
    st.sampled_from([PAGES[3] + 8, (3 << 20), 0x44000 - PAGE_SIZE, (1 << 64) - PAGE_SIZE]),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    chain=st.lists(st.sampled_from(PAGES), min_size=1, max_size=60),
    tail=links,
    spoilt=st.sets(st.integers(0, 59), max_size=5),
    forged=st.lists(st.tuples(st.sampled_from(PAGES), links), max_size=5),
    budget=st.integers(0, 80),
)
def test_the_guessed_walk_is_the_node_by_node_walk(
    tmp_path: Path,
    chain: list[int],
    tail: int,
    spoilt: set[int],
    forged: list[tuple[int, int]],
    budget: int,
) -> None:
    nodes: dict[int, tuple[int, int, int]] = {}
    for pa, nxt in forged:  # stray frames that look stacked, linking anywhere
        nodes[pa] = (FRAME_STACK_MAGIC ^ pa ^ KEY, pa, nxt)
    for k, pa in enumerate(chain):  # later writes win, so repeats make loops and branches
        marker = 0 if k in spoilt else FRAME_STACK_MAGIC ^ pa ^ KEY
        nodes[pa] = (marker, pa, chain[k + 1] if k + 1 < len(chain) else tail)
    memory = _dump(tmp_path, nodes)
    expected = reference_walk(memory, chain[0], budget)
    index = stack_index(memory, KEY, budget, [chain[0]])
    assert (index is None) == (budget == 0)  # no guess for an empty budget: nothing to walk
    assert _walked(stack_links(memory, chain[0], budget, index)) == expected
    assert _walked(stack_links(memory, chain[0], budget)) == expected


def test_a_link_to_a_range_s_last_frame_or_its_zero_tail_ends_the_walk(tmp_path: Path) -> None:
    last = 0x40000 - PAGE_SIZE  # the last frame of the first range: whole in the file
    tail = (1 << 20) + 200 * KiB  # in the second range's zero tail
    memory = _dump(tmp_path, {PAGE_SIZE: (0, 0, last), last: (0, 0, tail)})
    runs, error = _walked(stack_links(memory, PAGE_SIZE, 10))
    assert runs == [PAGE_SIZE, last]
    assert error == f"Stacked run {hex(tail)} (linked from {hex(last)}) is outside the dump."


def test_more_marked_frames_than_the_budget_allows_give_up_the_guess(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = {pa: (FRAME_STACK_MAGIC ^ pa ^ KEY, pa, 0) for pa in PAGES}
    memory = _dump(tmp_path, nodes)
    assert stack_index(memory, KEY, 4, [PAGE_SIZE]) is not None  # within SCAN_SLACK
    monkeypatch.setattr(stack_chase, "SCAN_SLACK", 0)
    assert stack_index(memory, KEY, 4, [PAGE_SIZE]) is None


def _stacked_dump(
    tmp_path: Path, stacks: list[list[int]], spoilt: list[tuple[int, int, int]], forged: list[int]
) -> PhysicalMemory:
    """RANGES with stacks[c] (first frames, top first) stacked as runs of c + 1 frames, every frame
    of a run holding its node; then each (frame, word, value) of `spoilt` written over a frame's
    node, and a marker and run of its own forged into each frame of `forged`."""
    image = bytearray(FILE_SIZE)

    def put(pa: int, word: int, value: int) -> None:
        at = pa + stack_node_offset(pa) + 8 * word
        for r in RANGES:
            if r.start <= at and at + 8 <= r.file_end:
                off = r.file_offset + at - r.start
                image[off : off + 8] = (value % (1 << 64)).to_bytes(8, "little")

    for c, runs in enumerate(stacks):
        for k, run in enumerate(runs):
            for f in range(run, run + (c + 1) * PAGE_SIZE, PAGE_SIZE):
                for word, value in enumerate((FRAME_STACK_MAGIC ^ f ^ KEY, run, c + 1, 0)):
                    put(f, word, value)
            put(run, 3, runs[k + 1] if k + 1 < len(runs) else 0)
    for pa in forged:
        put(pa, 0, FRAME_STACK_MAGIC ^ pa ^ KEY)
        put(pa, 1, pa)
    for pa, word, value in spoilt:
        put(pa, word, value)
    path = tmp_path / "stacks.raw"
    path.write_bytes(bytes(image))
    return PhysicalMemory(path, RANGES)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    stacks=st.lists(st.lists(st.sampled_from(PAGES), max_size=30), min_size=1, max_size=4),
    spoilt=st.lists(
        st.tuples(st.sampled_from(PAGES), st.integers(0, 3), st.one_of(links, st.integers(0, 5))),
        max_size=4,
    ),
    forged=st.lists(st.sampled_from(PAGES), max_size=4),
    budget=st.integers(0, 100),
    shift=st.sampled_from([13, 15, 18]),
)
def test_read_stack_with_the_guess_is_read_stack_node_by_node(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stacks: list[list[int]],
    spoilt: list[tuple[int, int, int]],
    forged: list[int],
    budget: int,
    shift: int,
) -> None:
    """Runs of several lengths (overlapping where the draw makes them), words spoilt anywhere
    (markers, run and count fields, links to anywhere), forged markers, loops from repeats, and
    any budget: runs, counts and errors are the same with the guess (windows of 2, 8 and 64
    frames, so both the strided and the gathered scan run) and without it."""
    memory = _stacked_dump(tmp_path, stacks, spoilt, forged)
    heads = [runs[0] if runs else 0 for runs in stacks] + [0] * (STACK_RUN_MAX - len(stacks))
    state = SimpleNamespace(stack_runs=budget, stack_key=KEY, stack=heads)
    monkeypatch.setattr(stack_chase, "SCAN_WINDOW_SHIFT", shift)
    guessed = frame_stack.read_stack(memory, state)
    assert (frame_stack.stack_index(memory, KEY, budget, heads) is None) == (budget == 0)
    with monkeypatch.context() as m:
        m.setattr(frame_stack, "stack_index", lambda *_: None)
        plain = frame_stack.read_stack(memory, state)
    assert guessed.runs.tolist() == plain.runs.tolist()
    assert guessed.counts.tolist() == plain.counts.tolist()
    assert guessed.errors == plain.errors
