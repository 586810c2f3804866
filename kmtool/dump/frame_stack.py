"""The frame allocator's stack half, followed through the dump (docs/design.md §14,
kmtool.schemas.frames): every stack of runs from `FrameAllocator.stack`, bounded by `stack_runs` and
by the dump's frames, each link checked for alignment and for lying inside the dump, then every run's
first and last frame checked in bulk for its free marker, run and length (the walk itself, and how
it stays array-fast on a deep stack, is kmtool/dump/stack_chase.py). Faults do not stop
inspect: they are kept in `FrameStackView.errors` (kmtool/dump/checks/stack.py reports them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kmtool.dump.document import FrameStackDoc
from kmtool.dump.memory import PhysicalMemory
from kmtool.dump.stack_chase import COUNT, StackIndex, Walk, stack_index, stack_links
from kmtool.layout.table import PAGE_SHIFT, PAGE_SIZE
from kmtool.schemas.frames import (
    FRAME_STACK_MAGIC,
    STACK_NODE_COLOURS,
    STACK_RUN_MAX,
    stack_node_offset,
)

RUN_LIST_LIMIT = 1 << 16  # stacked runs listed in JSON


@dataclass(frozen=True)
class FrameStackView:
    """The stack half (kmtool.schemas.frames): every stacked run, stack by stack from the top down.

    `errors` names what stopped a stack's walk (a link outside the dump or not frame aligned, a
    frame without its free marker, a wrong run or count, a loop); the runs before it are kept."""

    runs: np.ndarray  # first frame of each stacked run (uint64)
    counts: np.ndarray  # its length (uint64)
    errors: tuple[str, ...]

    @property
    def frames(self) -> int:
        return int(self.counts.sum())

    def to_json(self) -> FrameStackDoc:
        return {
            "runs": len(self.runs),
            "frames": self.frames,
            "run_list": [
                [hex(r), c]
                for r, c in zip(
                    self.runs[:RUN_LIST_LIMIT].tolist(), self.counts.tolist(), strict=False
                )
            ],  # fmt: skip
            "errors": list(self.errors),
        }


def _nodes_good(memory: PhysicalMemory, key: int, frames: np.ndarray, owners: np.ndarray,
                c: int) -> np.ndarray:  # fmt: skip
    """For each frame of runs of c + 1 frames: does its node hold its marker, its run's first
    frame `owners` and the count c + 1? (False also where the node is not wholly in the dump.)"""
    at = frames + (frames >> np.uint64(PAGE_SHIFT)) % np.uint64(STACK_NODE_COLOURS) * np.uint64(64)
    starts = np.array([r.start for r in memory.ranges], dtype=np.uint64)
    which = np.searchsorted(starts, at, side="right") - 1
    good = np.zeros(len(frames), dtype=bool)
    for i in np.unique(which[which >= 0]).tolist():
        sel = np.flatnonzero(which == i)
        words = memory.range_words(i)
        idx = ((at[sel] - starts[i]) >> np.uint64(3)).astype(np.int64)
        inside = idx + 3 <= len(words)
        sel, idx = sel[inside], idx[inside]
        marker = np.uint64(FRAME_STACK_MAGIC) ^ frames[sel] ^ np.uint64(key)
        good[sel] = ((words[idx] == marker) & (words[idx + 1] == owners[sel])
                     & (words[idx + 2] == np.uint64(c + 1)))  # fmt: skip
    return good


def _stack_verify(
    memory: PhysicalMemory, key: int, walk: Walk, index: StackIndex | None, c: int
) -> str:
    """Check, in bulk, every run's first and last frame: marker, run and count; "" when all hold.
    A guessed run's first frame was read by the scan, whose guess already matched its marker and
    run (kmtool.dump.stack_chase), so only its count is looked at, from what the scan read."""
    runs = walk.runs
    if not len(runs):
        return ""
    guessed = walk.guessed >= 0
    first = np.zeros(len(runs), dtype=bool)
    if index is not None and guessed.any():
        first[guessed] = (index.nodes[COUNT] == np.uint64(c + 1))[walk.guessed[guessed]]
    exact = np.flatnonzero(~guessed)
    if len(exact):
        first[exact] = _nodes_good(memory, key, runs[exact], runs[exact], c)
    lasts = runs + np.uint64(c * PAGE_SIZE)
    if c == 0:  # the first frame is the last
        bad = np.flatnonzero(~first)
    else:
        bad = np.flatnonzero(~np.concatenate([first, _nodes_good(memory, key, lasts, runs, c)]))
    if not len(bad):
        return ""
    k = int(bad[0])
    f, a = int(np.concatenate([runs, lasts])[k]), int(runs[k % len(runs)])
    at = f + stack_node_offset(f)
    found = memory.read(at, 24, "frame stack node") if memory.contains(at, 24) else b""
    if len(found) < 24:
        return f"Stacked run {hex(a)}: frame {hex(f)} is outside the dump."
    marker, run, count = (int(w) for w in np.frombuffer(found, dtype="<u8"))
    return (f"Stacked run {hex(a)}: frame {hex(f)} has marker {hex(marker)}, run {hex(run)}, count "
            f"{count}, not those of a {c + 1}-frame run.")  # fmt: skip


def read_stack(memory: PhysicalMemory, state: Any) -> FrameStackView:
    """Follow every stack of the state (bounded by stack_runs, and by the dump's frames)."""
    budget = min(int(state.stack_runs), memory.ram_bytes // PAGE_SIZE)
    key = int(state.stack_key)
    index = stack_index(memory, key, budget, [int(h) for h in state.stack])
    runs: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    errors: list[str] = []
    taken = 0
    for c in range(STACK_RUN_MAX):
        walk = stack_links(memory, int(state.stack[c]), budget - taken, index)
        error = walk.error or _stack_verify(memory, key, walk, index, c)
        runs.append(walk.runs)
        counts.append(np.full(len(walk.runs), c + 1, dtype=np.uint64))
        taken += len(walk.runs)
        if error:
            errors.append(error)
    return FrameStackView(np.concatenate(runs), np.concatenate(counts), tuple(errors))
