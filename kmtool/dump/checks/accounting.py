"""The frame-accounting check (kmtool.dump.accounting; docs/design.md §10): every frame the kernel
can own has an owner; the ones without are leaks, named as merged ranges."""

from __future__ import annotations

from kmtool.dump.accounting import FrameAccounting
from kmtool.dump.checks.common import SHOWN, Verdict, listing
from kmtool.layout.table import PAGE_SIZE


def no_leaked_frames(accounting: FrameAccounting) -> Verdict:
    """Fails naming the unaccounted ranges (frames no owner holds)."""
    n = accounting.unaccounted_frames
    if not n:
        return Verdict(True, f"all {accounting.ownable} ownable frames have an owner")
    ranges = accounting.unaccounted_ranges(SHOWN)
    items = [f"{hex(s)}-{hex(e)} ({(e + 1 - s) // PAGE_SIZE} frames)" for s, e in ranges]
    total = len(accounting.unaccounted.start)
    return Verdict(
        False,
        f"{n} frames belong to no owner (not free, not a page table, not mapped, not the kernel "
        f"image or handoff data): {listing(items, total)}",
    )
