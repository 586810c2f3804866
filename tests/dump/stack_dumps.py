"""What the frame stack's differential tests (tests/dump/test_stack_chase.py,
test_frame_stack_guess.py) share: the small dump they build stacks in, the plain node-by-node walk
they hold the guessed one against, and the fixture that forces the marker scan on with tiny
windows, so that the guess is taken on stacks of a few runs."""

from __future__ import annotations

import pytest

from kmtool.dump import stack_chase
from kmtool.dump.memory import MemoryRange, PhysicalMemory
from kmtool.dump.records import field_offset
from kmtool.layout.table import PAGE_SIZE, KiB
from kmtool.schemas.frames import FrameStack, stack_node_offset

# [0, 256 KiB) whole; [1 MiB, 1.25 MiB) with a 64 KiB zero tail; one range not page aligned.
RANGES = [
    MemoryRange(0, 256 * KiB, 0, 256 * KiB),
    MemoryRange(1 << 20, 256 * KiB, 256 * KiB, 192 * KiB),
    MemoryRange((2 << 20) + 8, 64 * KiB, 448 * KiB, 64 * KiB),
]
FILE_SIZE = 512 * KiB
NEXT = field_offset(FrameStack, "next")  # the link's byte offset in a stack node
PAGES = [p for r in RANGES for p in range(r.start, r.start + r.size, PAGE_SIZE) if p]


@pytest.fixture
def forced_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan taken for any stack: 32 KiB windows, no minimum of runs or of runs per page."""
    monkeypatch.setattr(stack_chase, "SCAN_WINDOW_SHIFT", 15)
    monkeypatch.setattr(stack_chase, "SCAN_MIN_RUNS", 0)
    monkeypatch.setattr(stack_chase, "SCAN_PAGES_PER_RUN", 1 << 20)


def reference_walk(memory: PhysicalMemory, head: int, budget: int) -> tuple[list[int], str]:
    """The walk as the module doc states it, one plain read per node."""
    out: list[int] = []
    a = head
    while a:
        origin = hex(out[-1]) if out else "the stack head"
        whole = any(r.start <= a and a + PAGE_SIZE <= r.file_end and r.start % 8 == 0
                    for r in RANGES)  # fmt: skip
        if not whole:
            return out, f"Stacked run {hex(a)} (linked from {origin}) is outside the dump."
        if a % PAGE_SIZE or len(out) >= budget:
            why = "is not frame aligned" if a % PAGE_SIZE else "closes a loop or passes stack_runs"
            return out, f"Stacked run {hex(a)} (linked from {origin}) {why}."
        out.append(a)
        a = memory.u64(a + stack_node_offset(a) + NEXT, "next")
    return out, ""
