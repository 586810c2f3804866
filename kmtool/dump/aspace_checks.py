"""Checks of the address spaces and of frame accounting (docs/design.md §10, §12).

Each function takes the decoded parts it reads and returns one `Check`; callers decide whether a
check applies (a foreign dump has no address-space list and no accounting).
"""

from __future__ import annotations

import numpy as np

from kmtool.dump.accounting import FrameAccounting, Intervals, mapped_outside_offset_map
from kmtool.dump.aspaces import AddressSpaces
from kmtool.dump.checks import SHOWN, Check, overlapping
from kmtool.dump.memmap import MemoryMap
from kmtool.dump.pagetable import PERM_U, PageTables, perm_text
from kmtool.layout.table import (
    KERNEL_SPACE_BASE,
    MEMTYPE_HANDOFF,
    MEMTYPE_KERNEL,
    PAGE_SIZE,
    SHARED_PML4_FIRST,
)

NO_LEAKS = "no leaked frames"
SHARED_HALF = "every address space shares the kernel's PML4 510-511"
USER_HALF_USER = "no supervisor-only page in a user half"
USER_NOT_KERNEL = "no user mapping points into kernel-owned frames"


def _listed(items: list[str], total: int) -> str:
    more = f" (and {total - len(items)} more)" if total > len(items) else ""
    return "; ".join(items) + more


def no_leaked_frames(acc: FrameAccounting) -> Check:
    """Fails naming the unaccounted ranges (frames no owner holds: leaks)."""
    n = acc.unaccounted_frames
    if not n:
        return Check(NO_LEAKS, True, f"all {acc.ownable} ownable frames have an owner")
    ranges = acc.unaccounted_ranges(SHOWN)
    items = [f"{hex(s)}-{hex(e)} ({(e + 1 - s) // PAGE_SIZE} frames)" for s, e in ranges]
    total = len(acc.unaccounted.start)
    return Check(
        NO_LEAKS,
        False,
        f"{n} frames belong to no owner (not free, not a page table, not mapped, not handoff "
        f"data): {_listed(items, total)}",
    )


def kernel_half_shared(spaces: AddressSpaces) -> Check:
    """Every listed address space's PML4 510-511 equal the kernel PML4's."""
    if spaces.kernel_half is None:
        return Check(SHARED_HALF, True, "not applicable, no kernel PML4 to compare with")
    bad = []
    for s in spaces.spaces:
        for i, (mine, kernel) in enumerate(zip(s.kernel_half, spaces.kernel_half, strict=True)):
            if mine != kernel:
                bad.append(
                    f"address space {s.id} (PML4 {hex(s.pml4)}) entry {SHARED_PML4_FIRST + i} is "
                    f"{hex(mine)}, the kernel's {hex(kernel)}"
                )
    if bad:
        return Check(SHARED_HALF, False, _listed(bad[:SHOWN], len(bad)))
    return Check(SHARED_HALF, True, f"all {len(spaces.spaces)} address spaces share them")


def user_half_is_user(spaces: AddressSpaces) -> Check:
    """No range of a user half lacks the U bit (a kernel page mapped into a process by mistake)."""
    bad = []
    for s in spaces.spaces:
        u = s.user
        for i in np.flatnonzero((u.perm & PERM_U) == 0):
            bad.append(
                f"address space {s.id}: {hex(int(u.start[i]))} (+{int(u.size[i])} bytes, "
                f"{perm_text(int(u.perm[i]))}) -> {hex(int(u.phys[i]))}"
            )
    if bad:
        return Check(USER_HALF_USER, False, _listed(bad[:SHOWN], len(bad)))
    pages = sum(s.user_pages for s in spaces.spaces)
    return Check(USER_HALF_USER, True, f"all {pages} user pages are user-accessible")


def kernel_owned(kernel: PageTables, spaces: AddressSpaces, memmap: MemoryMap) -> Intervals:
    """Frames the kernel owns: every page-table page, the targets of kernel-half leaves outside
    the offset map (image, vspace, heap), the kernel image and the handoff data."""
    parts = [mapped_outside_offset_map(_kernel_half(kernel))]
    for t in [kernel, *(s.tables for s in spaces.spaces)]:
        pages = np.asarray(t.tables, dtype=np.uint64)
        parts.append(Intervals.of(pages, pages + np.uint64(PAGE_SIZE)))
    parts.append(Intervals.of(*memmap.intervals({MEMTYPE_KERNEL, MEMTYPE_HANDOFF})))
    return Intervals.of(
        np.concatenate([p.start for p in parts]), np.concatenate([p.end for p in parts])
    )


def user_not_in_kernel_frames(
    kernel: PageTables, spaces: AddressSpaces, memmap: MemoryMap
) -> Check:
    """No user-half range targets a frame the kernel owns."""
    owned = kernel_owned(kernel, spaces, memmap)
    bad = []
    for s in spaces.spaces:
        u = s.user
        _, hit = overlapping(owned.start, owned.end, u.phys, u.phys + u.size)
        for i in hit:
            bad.append(
                f"address space {s.id}: {hex(int(u.start[i]))} -> {hex(int(u.phys[i]))} "
                f"(+{int(u.size[i])} bytes)"
            )
    if bad:
        return Check(USER_NOT_KERNEL, False, _listed(bad[:SHOWN], len(bad)))
    return Check(USER_NOT_KERNEL, True, f"none of {len(spaces.spaces)} address spaces does")


def _kernel_half(tables: PageTables) -> PageTables:
    """`tables` with only its kernel-space ranges (a view for `mapped_outside_offset_map`)."""
    r = tables.ranges
    keep = np.flatnonzero(r.start >= np.uint64(KERNEL_SPACE_BASE))
    return PageTables(tables.root, r.take(keep), tables.leaf_counts, tables.tables)
