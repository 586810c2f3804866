"""Checks of the offset map: every offset-map leaf maps physical = virtual - OFFSET_MAP_BASE, and
every RAM range of the memory map is mapped so (docs/design.md §2)."""

from __future__ import annotations

import numpy as np

from kmtool.dump.checks.common import SHOWN, Verdict, contained, listing
from kmtool.dump.memmap import RAM_TYPES, MemoryMap, merge_intervals
from kmtool.dump.pagetable import PageTables
from kmtool.layout.table import OFFSET_MAP_BASE


def offset_mapped(kernel_tables: PageTables) -> tuple[np.ndarray, np.ndarray]:
    """Physical intervals the kernel's offset map maps correctly (va == pa + base)."""
    r = kernel_tables.ranges_in("offset-map")
    good = (r.start - np.uint64(OFFSET_MAP_BASE)) == r.phys
    return merge_intervals(r.phys[good], r.phys[good] + r.size[good])


def offset_map(memmap: MemoryMap, kernel_tables: PageTables) -> Verdict:
    """Every offset-map leaf maps physical = virtual - base, and every RAM range is mapped so."""
    r = kernel_tables.ranges_in("offset-map")
    wrong = np.flatnonzero((r.start - np.uint64(OFFSET_MAP_BASE)) != r.phys)
    found = [f"{hex(int(r.start[k]))} maps physical {hex(int(r.phys[k]))}" for k in wrong[:SHOWN]]
    rs, re_ = memmap.intervals(RAM_TYPES)
    os_, oe = offset_mapped(kernel_tables)
    missing = np.flatnonzero(~contained(rs, re_, os_, oe))
    found += [
        f"RAM {hex(int(rs[k]))}-{hex(int(re_[k]) - 1)} is not offset-mapped"
        for k in missing[:SHOWN]
    ]
    total = len(wrong) + len(missing)
    ram = int((re_ - rs).sum()) if len(rs) else 0
    return Verdict(
        not total, listing(found, total) if total else f"{ram >> 20} MiB of RAM in {len(rs)} ranges"
    )
