"""Checks of the kernel's address spaces (kmtool.dump.aspaces; docs/design.md §12): each listed
one shares the kernel half, maps no supervisor page in its user half, and maps no user page onto a
frame the kernel owns."""

from __future__ import annotations

import numpy as np

from kmtool.dump.accounting import Intervals, mapped_outside_offset_map
from kmtool.dump.aspaces import AddressSpaces
from kmtool.dump.checks.common import Verdict, overlapping, problems
from kmtool.dump.levels import PERM_U, perm_text
from kmtool.dump.memmap import MemoryMap
from kmtool.dump.pagetable import PageTables
from kmtool.layout.table import (
    KERNEL_SPACE_BASE,
    MEMTYPE_HANDOFF,
    MEMTYPE_KERNEL,
    PAGE_SIZE,
    SHARED_PML4_FIRST,
)


def kernel_half_shared(aspaces: AddressSpaces) -> Verdict:
    """Every listed address space's PML4 510-511 equal the kernel PML4's."""
    kernel = aspaces.kernel_half
    if kernel is None:
        return Verdict(True, "not applicable, no kernel PML4 to compare with")
    bad = [
        f"address space {s.id} (PML4 {hex(s.pml4)}) entry {SHARED_PML4_FIRST + i} is "
        f"{hex(mine)}, the kernel's {hex(theirs)}"
        for s in aspaces.spaces
        for i, (mine, theirs) in enumerate(zip(s.kernel_half, kernel, strict=True))
        if mine != theirs
    ]
    return problems(bad, f"all {len(aspaces.spaces)} address spaces share them")


def user_half_is_user(aspaces: AddressSpaces) -> Verdict:
    """No range of a user half lacks the U bit (a kernel page mapped into a process by mistake)."""
    bad = []
    for s in aspaces.spaces:
        u = s.user
        for i in np.flatnonzero((u.perm & PERM_U) == 0):
            bad.append(
                f"address space {s.id}: {hex(int(u.start[i]))} (+{int(u.size[i])} bytes, "
                f"{perm_text(int(u.perm[i]))}) -> {hex(int(u.phys[i]))}"
            )
    pages = sum(s.user_pages for s in aspaces.spaces)
    return problems(bad, f"all {pages} user pages are user-accessible")


def kernel_owned(kernel_tables: PageTables, aspaces: AddressSpaces, memmap: MemoryMap) -> Intervals:
    """Frames the kernel owns: every page-table page, the targets of kernel-half leaves outside
    the offset map (image, vspace, heap), the kernel image and the handoff data."""
    r = kernel_tables.ranges
    keep = np.flatnonzero(r.start >= np.uint64(KERNEL_SPACE_BASE))
    half = PageTables(kernel_tables.root, r.take(keep), {}, kernel_tables.tables)
    parts = [mapped_outside_offset_map(half)]
    for t in [kernel_tables, *(s.tables for s in aspaces.spaces)]:
        pages = np.asarray(t.tables, dtype=np.uint64)
        parts.append(Intervals.of(pages, pages + np.uint64(PAGE_SIZE)))
    parts.append(Intervals.of(*memmap.intervals({MEMTYPE_KERNEL, MEMTYPE_HANDOFF})))
    return Intervals.of(
        np.concatenate([p.start for p in parts]), np.concatenate([p.end for p in parts])
    )


def user_not_in_kernel_frames(
    kernel_tables: PageTables, aspaces: AddressSpaces, memmap: MemoryMap
) -> Verdict:
    """No user-half range targets a frame the kernel owns."""
    owned = kernel_owned(kernel_tables, aspaces, memmap)
    bad = []
    for s in aspaces.spaces:
        u = s.user
        _, hit = overlapping(owned.start, owned.end, u.phys, u.phys + u.size)
        bad += [
            f"address space {s.id}: {hex(int(u.start[i]))} -> {hex(int(u.phys[i]))} "
            f"(+{int(u.size[i])} bytes)"
            for i in hit
        ]
    return problems(bad, f"none of {len(aspaces.spaces)} address spaces does")
