"""Checks of the frame allocator's stack half (docs/design.md §14), decoded by
kmtool.dump.frame_stack: the walk found nothing wrong, the counters are the kernel's, and stacked
frames are outside every span, never a page table and never mapped in the kernel's regions."""

from __future__ import annotations

import numpy as np

from kmtool.dump.checks.common import SHOWN, Verdict, listing
from kmtool.dump.checks.spans import KERNEL_REGIONS
from kmtool.dump.frame_stack import FrameStackView
from kmtool.dump.frames import FreeList
from kmtool.dump.pagetable import PageTables
from kmtool.layout.table import PAGE_SIZE

NO_STACK = FrameStackView(np.zeros(0, np.uint64), np.zeros(0, np.uint64), ())


def _stack(frames: FreeList) -> FrameStackView:
    return frames.stack if frames.stack is not None else NO_STACK


def _runs(stack: FrameStackView) -> tuple[np.ndarray, np.ndarray]:
    """The stacked runs as sorted [start, end) byte ranges."""
    order = np.argsort(stack.runs, kind="stable")
    starts = stack.runs[order].astype(np.uint64)
    return starts, starts + stack.counts[order].astype(np.uint64) * np.uint64(PAGE_SIZE)


def _meets(starts: np.ndarray, ends: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Indices k where [lo[k], hi[k]) meets one of the sorted, disjoint ranges [starts, ends)."""
    if not len(starts) or not len(lo):
        return np.zeros(0, dtype=np.int64)
    i = np.searchsorted(starts, hi, side="left") - 1
    hit = np.zeros(len(lo), dtype=bool)
    ok = i >= 0
    hit[ok] = ends[i[ok]] > lo[ok]
    return np.flatnonzero(hit)


def _verdict(bad: list[str], total: int, passing: str) -> Verdict:
    return Verdict(not total, listing(bad, total) if total else passing)


def stack_decoded(frames: FreeList) -> Verdict:
    stack = _stack(frames)
    return _verdict(list(stack.errors[:SHOWN]), len(stack.errors),
                    f"{len(stack.runs)} stacked runs followed, links aligned, bounded, markers "
                    "intact")  # fmt: skip


def stack_counters(frames: FreeList) -> Verdict:
    stack, state = _stack(frames), frames.state
    ok = len(stack.runs) == state.stack_runs and stack.frames == state.stack_frames
    return Verdict(ok, f"stack holds {len(stack.runs)} runs of {stack.frames} frames; km_frames "
                       f"says stack_runs {state.stack_runs}, stack_frames {state.stack_frames}")  # fmt: skip


def stack_not_in_spans(frames: FreeList) -> Verdict:
    lo, hi = _runs(_stack(frames))
    hit = _meets(frames.starts, frames.starts + frames.counts * np.uint64(PAGE_SIZE), lo, hi)
    bad = [f"stacked run {hex(int(lo[k]))} is inside a free span" for k in hit[:SHOWN]]
    return _verdict(bad, len(hit), f"none of {len(lo)} stacked runs meets a span")


def stack_no_tables(
    frames: FreeList, tables: PageTables, kernel_tables: PageTables | None
) -> Verdict:
    walked = [t.tables for t in (tables, kernel_tables) if t is not None]
    pages = np.unique(np.concatenate(walked)).astype(np.uint64)
    lo, hi = _runs(_stack(frames))
    hit = _meets(lo, hi, pages, pages + np.uint64(PAGE_SIZE))
    bad = [f"page table {hex(int(pages[k]))} is on the frame stack" for k in hit[:SHOWN]]
    return _verdict(bad, len(hit), f"none of {len(pages)} page-table pages is stacked")


def stack_not_mapped(frames: FreeList, kernel_tables: PageTables) -> Verdict:
    parts = [kernel_tables.ranges_in(name) for name in KERNEL_REGIONS]
    phys = np.concatenate([p.phys for p in parts]).astype(np.uint64)
    size = np.concatenate([p.size for p in parts]).astype(np.uint64)
    order = np.argsort(phys, kind="stable")
    phys, size = phys[order], size[order]
    lo, hi = _runs(_stack(frames))
    hit = _meets(lo, hi, phys, phys + size)
    bad = [f"mapped kernel page at phys {hex(int(phys[k]))} is on the frame stack"
           for k in hit[:SHOWN]]  # fmt: skip
    return _verdict(bad, len(hit), f"none of {len(phys)} mapped kernel ranges is stacked")
