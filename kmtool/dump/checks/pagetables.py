"""Checks of the page tables: the walk itself, the shared kernel PML4 entries, and W^X in kernel
space (docs/design.md §2). The offset map, which is checked against the memory map, is offsetmap.py:
a foreign dump, whose only row here is "page tables walked", imports no memory-map decoder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kmtool.dump.checks.common import SHOWN, Verdict, listing, offenders
from kmtool.dump.levels import ADDRESS_MASK, FOUR_LEVEL, PERM_W, PERM_X, PagingMode, perm_text
from kmtool.dump.pagetable import PageTables
from kmtool.layout.table import (
    KERNEL_SPACE_BASE,
    PAGE_SIZE,
    SHARED_PML4_FIRST,
    SHARED_PML4_LAST,
)
from kmtool.schemas.paging import Pte

if TYPE_CHECKING:
    from kmtool.dump.coreinfo import CoreInfoBlock
    from kmtool.dump.source import DumpSource

PML5_KERNEL_ENTRY = 511  # with 5 levels, the 48-bit kernel half sits under the PML5's last entry


def page_tables_walked(
    tables: PageTables, kernel_tables: PageTables | None, foreign: bool
) -> Verdict:
    """The walk under CR3 (and the kernel PML4) met no table outside the dump and no limit.

    Recursive entries (kmtool.dump.pagetable) are skipped by the walk: a failure on a dump of our
    kernel, which makes none; a note on a foreign dump, where they are a common design.
    """
    walked = {t.root: t for t in (tables, kernel_tables) if t is not None}
    errors = [e for t in walked.values() for e in t.errors]
    recursive = [r for t in walked.values() for r in t.recursive]
    if errors:
        return Verdict(False, listing(errors[:SHOWN], len(errors)))
    if recursive and not foreign:
        return Verdict(False, "recursive mapping (kmtool's kernel makes none): "
                       + listing(recursive[:SHOWN], len(recursive)))  # fmt: skip
    roots = ", ".join(hex(r) for r in walked)
    note = "; skipped recursive " + listing(recursive[:SHOWN], len(recursive)) if recursive else ""
    leaves = sum(t.leaf_total for t in walked.values())
    return Verdict(True, f"{leaves} pages under {roots}{note}")


def shared_entries(
    core: CoreInfoBlock, source: DumpSource, root: int | None, mode: PagingMode = FOUR_LEVEL
) -> Verdict:
    """The kernel PML4's shared entries are present, and CR3's table (`root`, when another one)
    points them at the same tables; with 5-level paging (`mode`) CR3's PML4 for the kernel's
    addresses is the one its PML5 entry 511 names."""
    pml4 = core.kernel_pml4_phys & ADDRESS_MASK
    memory = source.memory
    if not memory.contains(pml4, PAGE_SIZE):
        return Verdict(False, f"the kernel PML4 at {hex(pml4)} is outside the dump")
    found = []
    if root is not None and len(mode.levels) > len(FOUR_LEVEL.levels) and memory.contains(root, 8):
        top = memory.u64(root + PML5_KERNEL_ENTRY * 8, f"PML5 entry {PML5_KERNEL_ENTRY} under CR3")
        if not top & Pte.PRESENT:
            found.append(f"CR3's PML5 entry {PML5_KERNEL_ENTRY} is {hex(top)} (not present)")
        root = top & ADDRESS_MASK if top & Pte.PRESENT else None
    live_root = root if root is not None and root != pml4 else None
    if live_root is not None and not memory.contains(live_root, PAGE_SIZE):
        live_root = None  # "page tables walked" names it
    for index in range(SHARED_PML4_FIRST, SHARED_PML4_LAST + 1):
        entry = memory.u64(pml4 + index * 8, f"kernel PML4 entry {index}")
        if not entry & Pte.PRESENT:
            found.append(f"entry {index} is {hex(entry)} (not present)")
        if live_root is not None:
            live = memory.u64(live_root + index * 8, f"PML4 entry {index} under CR3")
            if live & ADDRESS_MASK != entry & ADDRESS_MASK:
                found.append(f"CR3's entry {index} is {hex(live)}, the kernel's {hex(entry)}")
    return Verdict(not found, "; ".join(found) if found else f"PML4 at {hex(pml4)}")


def no_wx(kernel_tables: PageTables) -> Verdict:
    r = kernel_tables.ranges
    kernel = r.start >= np.uint64(KERNEL_SPACE_BASE)
    return offenders(
        np.flatnonzero(kernel & ((r.perm & (PERM_W | PERM_X)) == (PERM_W | PERM_X))),
        lambda k: f"{hex(int(r.start[k]))} (+{int(r.size[k])} bytes, {perm_text(int(r.perm[k]))})",
        f"{int(kernel.sum())} kernel ranges, none W+X",
        " writable and executable",
    )
