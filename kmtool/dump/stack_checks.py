"""Checks of the frame allocator's stack half (docs/design.md §14), decoded by
kmtool.dump.frames.read_stack: the walk found nothing wrong, the counters are the kernel's, and
stacked frames are free, outside every span, never a page table and never mapped in the kernel's
regions. Each function takes the inspection and returns one row of the existing `Check` type, or
None when there is nothing to check (no frame allocator state, or no stack decoded).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kmtool.check import Check
from kmtool.dump.checks.registry import NOT_BUILT, NOT_BUILT_YET, not_built
from kmtool.dump.checks.spans import KERNEL_REGIONS
from kmtool.layout.table import PAGE_SIZE

if TYPE_CHECKING:
    from kmtool.dump.frames import FrameStackView
    from kmtool.dump.inspection import Inspection

SHOWN = 5  # offending items named in a row's detail


def _not_applicable(ins: Inspection, name: str) -> Check | None:
    """The passing "not applicable" row while km_frames is not built (registry rule 2)."""
    missing = not_built(ins)
    if "frames" not in missing:
        return None
    prefix = NOT_BUILT if ins.core is not None and ins.core.ready_tsc else NOT_BUILT_YET
    return Check(name, True, f"{prefix} ({missing['frames']})")


def _stack(ins: Inspection, name: str) -> FrameStackView | Check | None:
    """The decoded stack; or the passing "not applicable" row while km_frames is not set up (the
    same rows as on a ready kernel, as for the span checks); or None without a frame allocator."""
    fl = ins.frames
    if fl is None or fl.stack is None:
        return None
    return _not_applicable(ins, name) or fl.stack


def _runs(stack: FrameStackView) -> tuple[np.ndarray, np.ndarray]:
    """The stacked runs as sorted [start, end) byte ranges."""
    order = np.argsort(stack.runs, kind="stable")
    starts = stack.runs[order]
    return starts, starts + stack.counts[order] * np.uint64(PAGE_SIZE)


def _meets(starts: np.ndarray, ends: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Indices k where [lo[k], hi[k]) meets one of the sorted, disjoint ranges [starts, ends)."""
    if not len(starts) or not len(lo):
        return np.zeros(0, dtype=np.int64)
    i = np.searchsorted(starts, hi, side="left") - 1
    ok = i >= 0
    hit = np.zeros(len(lo), dtype=bool)
    hit[ok] = ends[i[ok]] > lo[ok]
    return np.flatnonzero(hit)


def _row(name: str, bad: list[str], total: int, passing: str) -> Check:
    more = f" (and {total - len(bad)} more)" if total > len(bad) else ""
    return Check(name, not total, "; ".join(bad) + more if total else passing)


def stack_decoded(ins: Inspection) -> Check | None:
    name = "frame stack decodes"
    stack = _stack(ins, name)
    if isinstance(stack, Check):
        return stack
    if stack is None:
        return None
    return _row(name, list(stack.errors[:SHOWN]), len(stack.errors),
                f"{len(stack.runs)} stacked runs followed, links aligned, bounded, markers "
                "intact")  # fmt: skip


def stack_counters(ins: Inspection) -> Check | None:
    name = "frame stack matches the kernel counters"
    stack = _stack(ins, name)
    if isinstance(stack, Check):
        return stack
    if stack is None or ins.frames is None:
        return None
    state = ins.frames.state
    ok = len(stack.runs) == state.stack_runs and stack.frames == state.stack_frames
    return Check(name, ok,
                 f"stack holds {len(stack.runs)} runs of {stack.frames} frames; km_frames says "
                 f"stack_runs {state.stack_runs}, stack_frames {state.stack_frames}")  # fmt: skip


def stack_not_in_spans(ins: Inspection) -> Check | None:
    name = "stacked frames are in no span"
    stack = _stack(ins, name)
    if isinstance(stack, Check):
        return stack
    if stack is None or ins.frames is None:
        return None
    lo, hi = _runs(stack)
    fl = ins.frames
    hit = _meets(fl.starts, fl.starts + fl.counts * np.uint64(PAGE_SIZE), lo, hi)
    bad = [f"stacked run {hex(int(lo[k]))} is inside a free span" for k in hit[:SHOWN]]
    return _row(name, bad, len(hit),
                f"none of {len(lo)} stacked runs meets a span")  # fmt: skip


def stack_no_tables(ins: Inspection) -> Check | None:
    name = "frame stack holds no page table"
    stack = _stack(ins, name)
    if isinstance(stack, Check):
        return stack
    tables = [t.tables for t in (ins.tables, ins.kernel_tables) if t is not None]
    if stack is None or not tables:
        return None
    pages = np.unique(np.concatenate(tables)).astype(np.uint64)
    lo, hi = _runs(stack)
    hit = _meets(lo, hi, pages, pages + np.uint64(PAGE_SIZE))
    bad = [f"page table {hex(int(pages[k]))} is on the frame stack" for k in hit[:SHOWN]]
    return _row(name, bad, len(hit),
                f"none of {len(pages)} page-table pages is stacked")  # fmt: skip


def stack_not_mapped(ins: Inspection) -> Check | None:
    name = "frame stack holds no mapped kernel page"
    stack = _stack(ins, name)
    if isinstance(stack, Check):
        return stack
    kt = ins.kernel_tables
    if stack is None or kt is None:
        return None
    parts = [kt.ranges_in(name) for name in KERNEL_REGIONS]
    phys = np.concatenate([p.phys for p in parts]).astype(np.uint64)
    size = np.concatenate([p.size for p in parts]).astype(np.uint64)
    lo, hi = _runs(stack)
    hit = _meets(lo, hi, phys, phys + size)
    bad = [f"mapped kernel page at phys {hex(int(phys[k]))} is on the frame stack"
           for k in hit[:SHOWN]]  # fmt: skip
    return _row(name, bad, len(hit),
                f"none of {len(phys)} mapped kernel ranges is stacked")  # fmt: skip


STACK_CHECKS = (stack_decoded, stack_counters, stack_not_in_spans, stack_no_tables,
                stack_not_mapped)  # fmt: skip
