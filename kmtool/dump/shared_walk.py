"""The walk of an address space whose PML4 shares the kernel's half, without walking it again.

Every address space of our kernel names the kernel's own PDPTs in its shared PML4 entries
(`SHARED_PML4_FIRST`..`SHARED_PML4_LAST` in kmtool/layout/table.py; docs/design.md §12), so the
full walk of a listed PML4 would decode the kernel's tables once more: on the 4 GiB benchmark
dump a million offset-map leaves, a third of a whole inspect's memory. This module finds the
shared slots by comparing the two PML4s, not from the table, so it holds for any kernel.
The same PML4 slot holding the same raw entry names the same tables with the same
permissions at the same virtual addresses, so the leaves beneath it are the kernel walk's.

`walk_sharing(memory, root, kernel, max_leaves)` returns what `walk(memory, root,
max_leaves=max_leaves)` returns, array for array and sentence for sentence: it walks only the
slots the kernel does not fill and joins the kernel walk's ranges, leaf counts and tables in. It
does so only where that is provably the same result, and otherwise walks in full:

- the kernel walk is a clean 4-level walk (no error, no recursive entry, leaves not kept), and
  every entry present in the kernel PML4 is equal in this one; this PML4 is none of the kernel's
  tables (an entry beneath the shared slots pointing to it would be recursive here only);
- the walk of the other slots found no error or recursive entry (the full walk's list of them
  would hold the same, but a refusal of the whole tree is told apart more simply by walking it),
  and the pages of both stay within the leaf and range bounds (so the full walk would not stop);
- no range of the other slots joins one of the kernel's (the full walk merges ranges of one level
  that are contiguous across the boundary of two slots).
"""

from __future__ import annotations

import numpy as np

from kmtool.dump.distinct import distinct
from kmtool.dump.levels import FOUR_LEVEL
from kmtool.dump.memory import PhysicalMemory
from kmtool.dump.pagetable import MAX_RANGES, TABLE_BYTES, PageTables, Ranges, walk
from kmtool.schemas.paging import Pte


def walk_sharing(
    memory: PhysicalMemory, root: int, kernel: PageTables | None, max_leaves: int
) -> PageTables:
    """`walk(memory, root, max_leaves=max_leaves)`, reusing the walk `kernel` of the kernel's
    PML4 for the entries this PML4 shares with it (see the module docstring)."""
    shared = _shared_slots(memory, root, kernel)
    if kernel is None or shared is None:
        return walk(memory, root, max_leaves=max_leaves)
    part = walk(memory, root, max_leaves=max_leaves, omit=shared)
    total = part.leaf_total + kernel.leaf_total
    joined = None if part.errors or part.recursive else _joined(part.ranges, kernel.ranges)
    if joined is None or total > min(max_leaves, MAX_RANGES):
        return walk(memory, root, max_leaves=max_leaves)
    counts = {
        size: part.leaf_counts.get(size, 0) + kernel.leaf_counts.get(size, 0)
        for size in sorted({*part.leaf_counts, *kernel.leaf_counts}, reverse=True)
    }  # the full walk's order: by level, from the largest pages down
    below = kernel.tables[kernel.tables != np.uint64(kernel.root)]
    tables = distinct(np.concatenate((part.tables, below)))
    return PageTables(part.root, joined, counts, tables, mode=part.mode)


def _shared_slots(
    memory: PhysicalMemory, root: int, kernel: PageTables | None
) -> tuple[int, ...] | None:
    """The PML4 slots of `root` to take from `kernel`, or None when the kernel walk cannot be
    reused (then `root` is walked in full)."""
    if kernel is None or kernel.errors or kernel.recursive or kernel.leaves is not None:
        return None
    if kernel.mode != FOUR_LEVEL or bool((kernel.tables == np.uint64(root)).any()):
        return None
    pair = np.array([kernel.root, root], dtype=np.uint64)
    entries, ok = memory.gather(pair, TABLE_BYTES // 8)
    if not ok.all():
        return None
    present = np.flatnonzero(entries[0] & np.uint64(Pte.PRESENT))
    if not len(present) or bool((entries[0, present] != entries[1, present]).any()):
        return None
    return tuple(int(i) for i in present)


def _joined(part: Ranges, kernel: Ranges) -> Ranges | None:
    """Both walks' ranges in address order, as the full walk sorts them; None when a range of one
    is contiguous with a neighbour of the other that the full walk would have merged it with."""
    joined = Ranges.concat([part, kernel])
    if len(joined) < 2:
        return joined
    if not len(part) or not len(kernel) or part.start[-1] < kernel.start[0]:
        seam = np.array([len(part) - 1]) if len(part) and len(kernel) else np.zeros(0, np.int64)
    else:  # the kernel's slots are not all above the others: sort (a copy more)
        order = np.argsort(joined.start, kind="stable")
        joined = joined.take(order)
        from_kernel = order >= len(part)
        seam = np.flatnonzero(from_kernel[1:] != from_kernel[:-1])  # pair (k, k + 1) of two walks
    a, b = seam, seam + 1
    end = joined.start[a] + joined.size[a]
    merges = (
        (joined.start[b] == end)
        & (joined.phys[b] == joined.phys[a] + joined.size[a])
        & (joined.perm[b] == joined.perm[a])
        & (joined.region[b] == joined.region[a])
        & (joined.page_size[b] == joined.page_size[a])
        & (end != 0)
    )
    return None if merges.any() else joined
