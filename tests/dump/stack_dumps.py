"""The small dump the frame stack's differential tests build stacks in (tests/dump/
test_stack_chase.py, test_frame_stack_guess.py), and the fixture that forces the marker scan on
with tiny windows, so that the guess is taken on stacks of a few runs."""

from __future__ import annotations

import pytest

from kmtool.dump import stack_chase
from kmtool.dump.memory import MemoryRange
from kmtool.layout.table import PAGE_SIZE, KiB

# [0, 256 KiB) whole; [1 MiB, 1.25 MiB) with a 64 KiB zero tail; one range not page aligned.
RANGES = [
    MemoryRange(0, 256 * KiB, 0, 256 * KiB),
    MemoryRange(1 << 20, 256 * KiB, 256 * KiB, 192 * KiB),
    MemoryRange((2 << 20) + 8, 64 * KiB, 448 * KiB, 64 * KiB),
]
FILE_SIZE = 512 * KiB
PAGES = [p for r in RANGES for p in range(r.start, r.start + r.size, PAGE_SIZE) if p]


@pytest.fixture
def forced_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan taken for any stack: 32 KiB windows, no minimum of runs or of runs per page."""
    monkeypatch.setattr(stack_chase, "SCAN_WINDOW_SHIFT", 15)
    monkeypatch.setattr(stack_chase, "SCAN_MIN_RUNS", 0)
    monkeypatch.setattr(stack_chase, "SCAN_PAGES_PER_RUN", 1 << 20)
