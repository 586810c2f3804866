"""kmtool.dump.frame_stack.read_stack with its guess (the marker scan of kmtool/dump/stack_chase.py,
forced on, tiny windows) against an independent reference written from docs/design.md §14 and the
node-by-node walk: the same runs, counts and error sentences on random stacks of runs of several
lengths, with hostile corruptions (overwritten words, markers forged in frames no stack holds,
loops and shared nodes, links out of the dump, into a zero tail or misaligned, budgets spent)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from stack_dumps import FILE_SIZE, PAGES, RANGES, forced_scan, reference_walk  # noqa: F401

from kmtool.dump import frame_stack, stack_chase
from kmtool.dump.frame_stack import FrameStackView, read_stack
from kmtool.dump.memory import PhysicalMemory
from kmtool.layout.table import PAGE_SIZE
from kmtool.schemas.frames import FRAME_STACK_MAGIC, STACK_RUN_MAX, stack_node_offset

KEY = 0x0DD_BA11_5EED
# Links no stack should follow: misaligned, out of the dump, in the zero tail, at the top of the
# address space, and page-aligned frames of the range that is not page aligned (its frames' nodes
# straddle or miss the range).
STRANGE = [PAGES[3] + 8, 3 << 20, 0x44000 - PAGE_SIZE, (1 << 64) - PAGE_SIZE, (2 << 20) + 8,
           (2 << 20) + PAGE_SIZE, (2 << 20) + 15 * PAGE_SIZE]  # fmt: skip


pytestmark = pytest.mark.usefixtures("forced_scan")  # every test here takes the guess


def _marker(pa: int) -> int:
    return FRAME_STACK_MAGIC ^ pa ^ KEY


def _dump(tmp_path: Path, words: dict[int, int]) -> PhysicalMemory:
    """RANGES holding, at each physical address of `words` (8-aligned), that 64-bit word."""
    image = bytearray(FILE_SIZE)
    for at, value in words.items():
        for r in RANGES:
            if r.start <= at and at + 8 <= r.file_end:
                off = r.file_offset + at - r.start
                image[off : off + 8] = value.to_bytes(8, "little")
    path = tmp_path / "stack.raw"
    path.write_bytes(bytes(image))
    return PhysicalMemory(path, RANGES)


def _node(words: dict[int, int], frame: int, node: tuple[int, int, int, int]) -> None:
    """Write a FrameStack node (marker, run, count, next) at `frame`'s per-frame offset."""
    at = frame + stack_node_offset(frame)
    for k, w in enumerate(node):
        words[at + 8 * k] = w


def _reference(memory: PhysicalMemory, heads: list[int], budget: int) -> tuple[list, list, list]:
    """read_stack as docs/design.md §14 states it, one plain read per word: each stack walked
    from its head (link checks, budget shared by all stacks), then, when the walk ended cleanly,
    every run's first frames and then its last frames checked; the first fault is named."""
    runs: list[int] = []
    counts: list[int] = []
    errors: list[str] = []
    budget = min(budget, memory.ram_bytes // PAGE_SIZE)
    for c, head in enumerate(heads):
        found, error = reference_walk(memory, head, budget - len(runs))
        if not error:
            error = _verify(memory, found, c)
        runs += found
        counts += [c + 1] * len(found)
        if error:
            errors.append(error)
    return runs, counts, errors


def _verify(memory: PhysicalMemory, runs: list[int], c: int) -> str:
    for f, owner in [(r, r) for r in runs] + [(r + c * PAGE_SIZE, r) for r in runs]:
        at = f + stack_node_offset(f)
        if not memory.contains(at, 24):
            return f"Stacked run {hex(owner)}: frame {hex(f)} is outside the dump."
        in_file = any(r.start <= at and at + 24 <= r.file_end for r in RANGES)
        marker, run, count = (memory.u64(at + 8 * k, "node") for k in range(3))
        if not in_file or (marker, run, count) != (_marker(f), owner, c + 1):
            return (f"Stacked run {hex(owner)}: frame {hex(f)} has marker {hex(marker)}, run "
                    f"{hex(run)}, count {count}, not those of a {c + 1}-frame run.")  # fmt: skip
    return ""


def _as_lists(view: FrameStackView) -> tuple[list, list, list]:
    return view.runs.tolist(), view.counts.tolist(), list(view.errors)


def _guessed(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record what each read_stack's stack_index returns (None: no guess taken)."""
    seen: list[Any] = []
    real = frame_stack.stack_index

    def recording(*args: Any) -> Any:
        seen.append(real(*args))
        return seen[-1]

    monkeypatch.setattr(frame_stack, "stack_index", recording)
    return seen


def _unguessed(
    memory: PhysicalMemory, state: Any, monkeypatch: pytest.MonkeyPatch
) -> FrameStackView:
    with monkeypatch.context() as m:
        m.setattr(frame_stack, "stack_index", lambda *_: None)
        return read_stack(memory, state)


links = st.one_of(st.sampled_from(PAGES), st.just(0), st.sampled_from(STRANGE))
words64 = st.one_of(links, st.integers(0, (1 << 64) - 1), st.integers(0, 17))


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    stacks=st.lists(
        st.tuples(
            st.sampled_from([0, 1, 2, 15]), st.lists(st.sampled_from(PAGES), max_size=40), links
        ),
        max_size=3,
    ),
    forged=st.lists(st.tuples(st.sampled_from(PAGES), st.integers(0, 17), links), max_size=6),
    spoilt=st.lists(st.tuples(st.sampled_from(PAGES), st.integers(0, 3), words64), max_size=4),
    budget=st.integers(0, 100),
    forged_first=st.booleans(),
    shift=st.sampled_from([13, 15, 18, 21]),
    slack=st.sampled_from([0, 3, 4096]),
)
def test_the_guessed_stack_is_the_node_by_node_stack(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stacks: list[tuple[int, list[int], int]],
    forged: list[tuple[int, int, int]],
    spoilt: list[tuple[int, int, int]],
    budget: int,
    forged_first: bool,
    shift: int,
    slack: int,
) -> None:
    monkeypatch.setattr(stack_chase, "SCAN_WINDOW_SHIFT", shift)  # windows of 2 to 512 frames
    monkeypatch.setattr(stack_chase, "SCAN_SLACK", slack)  # 0: forged markers give the guess up
    words: dict[int, int] = {}
    heads = [0] * STACK_RUN_MAX

    def write_forged() -> None:  # frames no stack holds that look like stacked runs
        for pa, count, nxt in forged:
            _node(words, pa, (_marker(pa), pa, count, nxt))

    if forged_first:
        write_forged()
    for c, chain, tail in stacks:  # later writes win: repeats and overlaps make loops, branches
        for k, first in enumerate(chain):
            nxt = chain[k + 1] if k + 1 < len(chain) else tail
            for f in {first, first + c * PAGE_SIZE}:
                _node(words, f, (_marker(f), first, c + 1, nxt))
        heads[c] = chain[0] if chain else tail
    if not forged_first:
        write_forged()
    for pa, k, value in spoilt:
        words[pa + stack_node_offset(pa) + 8 * k] = value
    memory = _dump(tmp_path, words)
    state = SimpleNamespace(stack=heads, stack_runs=budget, stack_key=KEY)
    expected = _reference(memory, heads, budget)
    seen = _guessed(monkeypatch)
    assert _as_lists(read_stack(memory, state)) == expected
    event("guessed" if seen[0] is not None else "not guessed")
    assert _as_lists(_unguessed(memory, state, monkeypatch)) == expected


def test_a_healthy_deep_stack_is_guessed_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    words: dict[int, int] = {}
    singles = [p for p in PAGES[::2] if p + PAGE_SIZE <= 0x40000]  # 1-frame runs, descending
    singles.reverse()
    pairs = [p for p in PAGES if p >= 1 << 20 and p + 2 * PAGE_SIZE <= 0x130000][::2]
    heads = [0] * STACK_RUN_MAX
    for c, chain in ((0, singles), (1, pairs)):
        for k, first in enumerate(chain):
            nxt = chain[k + 1] if k + 1 < len(chain) else 0
            for f in {first, first + c * PAGE_SIZE}:
                _node(words, f, (_marker(f), first, c + 1, nxt))
        heads[c] = chain[0]
    memory = _dump(tmp_path, words)
    state = SimpleNamespace(stack=heads, stack_runs=len(singles) + len(pairs), stack_key=KEY)
    seen = _guessed(monkeypatch)
    view = read_stack(memory, state)
    assert seen[0] is not None  # the guess was taken, so this checks the fast path
    assert view.errors == ()
    assert view.runs.tolist() == singles + pairs
    assert view.counts.tolist() == [1] * len(singles) + [2] * len(pairs)
    # One frame short of the budget: the last run is named, as the node-by-node walk names it.
    state.stack_runs -= 1
    short = read_stack(memory, state)
    assert short.errors == (
        f"Stacked run {hex(pairs[-1])} (linked from {hex(pairs[-2])}) closes a loop or passes "
        "stack_runs.",
    )
    assert np.array_equal(short.runs, view.runs[:-1])
