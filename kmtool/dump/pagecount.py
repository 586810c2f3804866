"""The size of a page-table walk, counted before the walk builds anything (docs/design.md §7.2).

The walk of kmtool.dump.pagetable keeps one row per *path* to a table: a table that several entries
point to is read once but visited once per entry, because each visit maps other virtual addresses.
Shared tables multiply (the more so with 5-level paging, one level more): 255 PML4 entries naming
one PDPT whose 512 entries name one PD whose 512 entries name one PT make 66.8 million PT visits and
34 billion pages, from four pages of a dump. So the walk first counts, over *distinct* tables only,
how many times each is reached (the sum, over the entries naming it, of how often their table is
reached) and from that the pages and table visits of each level; it refuses when they pass its
bounds, before one per-path array exists.

The count reads each distinct table once per level it appears at, CHUNK_TABLES at a time, and
stops as soon as a bound is passed, or as soon as full tables all the way down could not pass one
(on a kernel's own tables: after the PML4 and its few PDPTs). It is an upper bound of the walk:
the walk also drops entries that point back at a table on their own path (recursive mappings), of
which the count drops only the direct ones (an entry naming its own table). Counts are float64:
exact far past the bounds, and they cannot wrap.
"""

from __future__ import annotations

import numpy as np

from kmtool.dump.levels import ADDRESS_MASK, FOUR_LEVEL, PagingMode, leaf_mask
from kmtool.dump.memory import PhysicalMemory
from kmtool.layout.table import ENTRIES_PER_TABLE
from kmtool.schemas.paging import Pte

CHUNK_TABLES = 512  # distinct tables read per bulk step (2 MiB of entries)
COMPACT_AT = 1 << 20  # child rows gathered before they are merged by address


def refusal(
    memory: PhysicalMemory,
    root: int,
    max_leaves: int,
    max_visits: int,
    mode: PagingMode = FOUR_LEVEL,
) -> str | None:
    """The sentence refusing the walk under the root table at `root` (a PML4, or a PML5 in
    5-level `mode`) when it would map more than `max_leaves` pages or visit more than
    `max_visits` tables at one level; None when it stays within both. Never raises on what the
    tables hold (a table outside the dump reads as empty; the walk names it)."""
    levels = mode.levels
    pas = np.array([root], dtype=np.uint64)
    reached = np.ones(1)  # how many paths reach each of `pas`
    leaves = 0.0
    for depth, level in enumerate(levels):
        visits = float(reached.sum())
        if visits > max_visits:
            what = f"visit {visits:.0f} {level.name} tables, more than {max_visits}"
            return _sentence(root, level.name, pas, reached, what)
        below = len(levels) - depth  # this level and those beneath it
        if (
            leaves + visits * ENTRIES_PER_TABLE**below <= max_leaves
            and visits * ENTRIES_PER_TABLE ** (below - 1) <= max_visits
        ):
            return None  # even full tables all the way down stay within both bounds
        children: list[tuple[np.ndarray, np.ndarray]] = []
        pending = 0
        for lo in range(0, len(pas), CHUNK_TABLES):
            chunk, times = pas[lo : lo + CHUNK_TABLES], reached[lo : lo + CHUNK_TABLES]
            entries, _ = memory.gather(chunk, ENTRIES_PER_TABLE)
            memory.release()
            present = (entries & np.uint64(Pte.PRESENT)) != 0
            leaf = leaf_mask(level, entries, present)
            leaves += float(leaf.sum(axis=1) @ times)
            if leaves > max_leaves:
                what = f"map more than {max_leaves} pages"
                return _sentence(root, level.name, chunk, times, what)
            if depth + 1 < len(levels):
                children.append(_named(chunk, times, entries, present & ~leaf))
                pending += len(children[-1][0])
                if pending > COMPACT_AT:
                    children = [_merge(children)]
                    pending = len(children[0][0])
        if not children:
            return None
        pas, reached = _merge(children)
        if not len(pas):
            return None
    return None


def _named(
    tables: np.ndarray, times: np.ndarray, entries: np.ndarray, pointing: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct tables the `pointing` entries name, each with how many paths reach it from
    these `tables` (reached `times` each); an entry naming its own table is left out."""
    rows, cols = np.nonzero(pointing)
    child = entries[rows, cols] & np.uint64(ADDRESS_MASK)
    keep = child != tables[rows]
    return _sum_by_address(child[keep], times[rows[keep]])


def _merge(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return _sum_by_address(np.concatenate([p[0] for p in parts]),
                           np.concatenate([p[1] for p in parts]))  # fmt: skip


def _sum_by_address(pas: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unique, inverse = np.unique(pas, return_inverse=True)
    return unique, np.bincount(inverse.reshape(-1), weights=weights, minlength=len(unique))


def _sentence(root: int, level: str, pas: np.ndarray, reached: np.ndarray, what: str) -> str:
    """The refusal, naming the most shared table of the level that passed a bound."""
    k = int(np.argmax(reached))
    return (
        f"Page table: the tables under CR3 {hex(root)} would {what} (at {level} level: the "
        f"{level} table at {hex(int(pas[k]))} is reached by {reached[k]:.0f} paths through "
        "shared tables); refusing to walk them."
    )
