"""Checks of the frame allocator's free list (docs/design.md §4): each span page aligned, sorted,
coalesced and correctly linked; inside usable memory and the offset map; holding no page table, no
mapped kernel page and no handoff data; and the list agrees with the kernel's counters. The treap
over the same nodes is checked in kmtool.dump.checks.treap."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from kmtool.dump.checks.common import SHOWN, Verdict, contained, offenders, overlapping, u64
from kmtool.dump.checks.offsetmap import offset_mapped
from kmtool.dump.frames import FreeList
from kmtool.dump.memmap import USABLE_TYPES, MemoryMap, merge_intervals
from kmtool.dump.pagetable import PageTables
from kmtool.layout.table import MEMTYPE_HANDOFF, OFFSET_MAP_BASE, PAGE_SIZE
from kmtool.schemas.bootinfo import BootInfo

if TYPE_CHECKING:
    from kmtool.dump.bootinfo import BootInfoView

KERNEL_REGIONS = ("kernel-image", "kernel-vspace", "kernel-heap")


def spans_aligned(frames: FreeList) -> Verdict:
    s = frames.starts
    return offenders(
        np.flatnonzero(s % np.uint64(PAGE_SIZE)),
        lambda k: f"span {hex(int(s[k]))}",
        "every span starts on a 4 KiB frame",
        " not page aligned",
    )


def spans_sorted(frames: FreeList) -> Verdict:
    s, e = frames.starts, frames.ends
    return offenders(
        np.flatnonzero(s[1:] < e[:-1]),
        lambda k: f"span {hex(int(s[k + 1]))} follows {hex(int(s[k]))}-{hex(int(e[k]) - 1)}",
        "ascending, no span overlaps the next",
    )


def spans_coalesced(frames: FreeList) -> Verdict:
    s, e = frames.starts, frames.ends
    return offenders(
        np.flatnonzero(s[1:] == e[:-1]),
        lambda k: f"span {hex(int(s[k]))} ends where {hex(int(s[k + 1]))} starts",
        "no two spans touch",
    )


def span_links(frames: FreeList) -> Verdict:
    """Each node records its own address as `start`, its predecessor as `prev`, and a count."""
    found: list[str] = []
    addr, nodes = frames.addresses, frames.nodes
    for k in np.flatnonzero(nodes["start"] != addr)[:SHOWN]:
        found.append(f"node {hex(int(addr[k]))} records start {hex(int(nodes['start'][k]))}")
    expected_prev = np.concatenate((u64([0]), addr[:-1])) if len(addr) else addr
    for k in np.flatnonzero(nodes["prev"] != expected_prev)[:SHOWN]:
        found.append(
            f"node {hex(int(addr[k]))} has prev {hex(int(nodes['prev'][k]))}, expected "
            f"{hex(int(expected_prev[k]))}"
        )
    for k in np.flatnonzero(nodes["count"] == 0)[:SHOWN]:
        found.append(f"node {hex(int(addr[k]))} has count 0")
    return Verdict(
        not found, "; ".join(found) if found else f"{len(addr)} nodes, prev and start agree"
    )


def spans_usable(frames: FreeList, memmap: MemoryMap) -> Verdict:
    s, e = frames.starts, frames.ends
    us, ue = memmap.intervals(USABLE_TYPES)
    return offenders(
        np.flatnonzero(~contained(s, e, us, ue)),
        lambda k: f"span {hex(int(s[k]))} (+{int(frames.counts[k])} frames)",
        f"{len(s)} spans inside {len(us)} usable ranges",
        " outside usable firmware ranges",
    )


def spans_offset_mapped(frames: FreeList, kernel_tables: PageTables) -> Verdict:
    s, e = frames.starts, frames.ends
    os_, oe = offset_mapped(kernel_tables)
    return offenders(
        np.flatnonzero(~contained(s, e, os_, oe)),
        lambda k: f"span {hex(int(s[k]))}-{hex(int(e[k]) - 1)}",
        f"every span is mapped at physical + {hex(OFFSET_MAP_BASE)}",
        " not reachable through the offset map",
    )


def _in_free_spans(
    frames: FreeList, what: str, starts: np.ndarray, ends: np.ndarray, label: Callable[[int], str]
) -> Verdict:
    """No interval [starts[k], ends[k]) (`what`, each named by `label(k)`) meets a free span."""
    us, ue = merge_intervals(frames.starts, frames.ends)
    _, j = overlapping(us, ue, u64(starts), u64(ends))
    return offenders(
        j,
        lambda k: f"{label(k)} is inside a free span",
        f"none of {len(starts)} {what} is in a free span",
    )


def spans_no_tables(
    frames: FreeList, tables: PageTables, kernel_tables: PageTables | None
) -> Verdict:
    pages = np.unique(np.concatenate([t.tables for t in (tables, kernel_tables) if t is not None]))
    return _in_free_spans(
        frames,
        "page-table pages",
        pages,
        pages + np.uint64(PAGE_SIZE),
        lambda j: f"page table {hex(int(pages[j]))}",
    )


def spans_no_kernel_pages(frames: FreeList, kernel_tables: PageTables) -> Verdict:
    parts = [kernel_tables.ranges_in(name) for name in KERNEL_REGIONS]
    phys = np.concatenate([p.phys for p in parts])
    size = np.concatenate([p.size for p in parts])
    vas = np.concatenate([p.start for p in parts])
    return _in_free_spans(
        frames,
        "kernel mappings",
        phys,
        phys + size,
        lambda j: f"physical {hex(int(phys[j]))} (mapped at {hex(int(vas[j]))})",
    )


def spans_no_handoff(frames: FreeList, boot: BootInfoView, memmap: MemoryMap) -> Verdict:
    sel = memmap.entries["type"] == MEMTYPE_HANDOFF
    starts = list(memmap.starts[sel]) + [boot.address, memmap.address]
    ends = list(memmap.ends[sel]) + [boot.address + BootInfo.sizeof(),
                                     memmap.address + memmap.map_size]  # fmt: skip
    names = [f"handoff range {hex(int(s))}" for s in memmap.starts[sel]] + [
        f"boot info {hex(boot.address)}",
        f"memory map {hex(memmap.address)}",
    ]
    return _in_free_spans(frames, "handoff ranges", u64(starts), u64(ends), lambda j: names[j])


def free_frames_counter(frames: FreeList) -> Verdict:
    return Verdict(
        frames.free_frames == frames.state.free_frames,
        f"list holds {frames.free_frames} frames, km_frames.free_frames is "
        f"{frames.state.free_frames}",
    )


def spans_counter(frames: FreeList) -> Verdict:
    return Verdict(
        len(frames.nodes) == frames.state.spans,
        f"list holds {len(frames.nodes)} spans, km_frames.spans is {frames.state.spans}",
    )
