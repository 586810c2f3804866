"""Frame accounting, an fsck of physical memory (docs/design.md §10).

Every frame the kernel can own (the RAM its memory map gives the frame allocator, plus the
loader's kernel image, handoff data and scratch pages) must belong to exactly one owner, taken in
this order:

    free         on the frame allocator's free list
    page-table   a page-table page of the kernel's tables or of a listed address space
    mapped       the target of a leaf outside the offset map: kernel image, kernel-vspace, heap
                 backing, user pages
    kernel-image the rest of the loader's kernel image (memory type km-kernel): the one page
                 left unmapped on purpose, the guard page below the boot stack
    handoff      the loader's boot info and memory map (memory type km-handoff)

A frame owned by none is *unaccounted*: the kernel took it from the allocator and nothing reaches
it any more, which is a leak. Everything here is interval arithmetic over sorted [start, end)
arrays (numpy), so the cost follows the number of spans, tables and ranges, never the number of
frames: a 256 GiB guest costs no more than a 256 MiB one with the same state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from kmtool.dump.document import AccountingDoc
from kmtool.dump.memmap import USABLE_TYPES, MemoryMap, merge_intervals
from kmtool.dump.pagetable import PageTables
from kmtool.layout.table import (
    MEMTYPE_HANDOFF,
    MEMTYPE_KERNEL,
    MEMTYPE_SCRATCH,
    OFFSET_MAP_BASE,
    OFFSET_MAP_SIZE,
    PAGE_SIZE,
)

OWNERS = ("free", "page-table", "mapped", "kernel-image", "handoff")
#: Unaccounted ranges listed in JSON and by the check (the totals always count all of them).
UNACCOUNTED_LISTED = 64
#: Ranges listed per owner in JSON, for `kmtool diff` of two saved documents (past this it says
#: its owner changes are partial; a diff of two dumps reads the whole accounting instead). Kept
#: small: on a free list of 262,144 spans, 65,536 listed ranges made the document 1.9 MB and the
#: whole inspect 0.6 s and 80 MiB more (BENCHMARKS.md, Inspect).
OWNER_RANGES_LISTED = 1 << 12
#: Intervals intersected at a time: the index arrays of one block are 4 MiB at most, whatever
#: the count (a 262,144-span free list made 16 MiB of them at once).
INTERSECT_BLOCK = 1 << 16
FEW = 64  # intervals intersected one by one (the pieces copied as runs, no index arrays)


@dataclass(frozen=True)
class Intervals:
    """Sorted, disjoint, non-adjacent [start, end) byte intervals (uint64 arrays)."""

    start: np.ndarray
    end: np.ndarray

    @classmethod
    def of(cls, start: np.ndarray, end: np.ndarray) -> Intervals:
        """The union of any intervals (overlapping, unsorted, empty ones dropped). Intervals that
        are already sorted, disjoint and non-adjacent (a free list, one walk's pages) are kept as
        they are: the union would only copy them."""
        start, end = np.asarray(start, dtype=np.uint64), np.asarray(end, dtype=np.uint64)
        keep = end > start
        if not keep.all():
            start, end = start[keep], end[keep]
        if len(start) > 1 and not bool((start[1:] > end[:-1]).all()):
            return cls(*merge_intervals(start, end))
        return cls(start, end)

    @property
    def total(self) -> int:
        """Bytes covered (exact: summed as Python ints past 2^63)."""
        return int(np.sum(self.end - self.start, dtype=np.uint64)) if len(self.start) else 0

    def intersect(self, other: Intervals) -> Intervals:
        """The parts of these intervals that `other` covers too.

        Both lists are sorted and disjoint, so the intervals of `other` that meet interval i of
        these are one run j in [lo[i], hi[i]), found by binary search; each pair gives one piece,
        max of the starts to min of the ends. The pieces come out sorted, disjoint, non-empty and
        non-adjacent (two pieces are separated by a gap of one list or the other), so no sort or
        merge is needed: O((n + m) log m) in the number of intervals, never in frames."""
        a, b = self, other
        if not len(a.start) or not len(b.start):
            return Intervals(a.start[:0], a.end[:0])
        if len(a.start) > INTERSECT_BLOCK:  # each interval's pieces are its own: a block at a time
            blocks = [
                Intervals(
                    a.start[k : k + INTERSECT_BLOCK], a.end[k : k + INTERSECT_BLOCK]
                ).intersect(b)
                for k in range(0, len(a.start), INTERSECT_BLOCK)
            ]
            return Intervals(np.concatenate([p.start for p in blocks]),
                             np.concatenate([p.end for p in blocks]))  # fmt: skip
        lo = np.searchsorted(b.end, a.start, side="right")  # first j with b.end[j] > a.start[i]
        n = np.searchsorted(b.start, a.end, side="left")  # first j with b.start[j] >= a.end[i]
        n -= lo  # pieces of interval i (in place: the arrays are as long as these intervals)
        np.maximum(n, 0, out=n)
        if len(a.start) <= FEW:
            return _intersect_few(a, b, lo, n)
        if int(n.max()) <= 1:  # each interval meets at most one of `other`'s: j is lo
            i = np.flatnonzero(n)
            j = lo[i]
        else:
            i = np.repeat(np.arange(len(a.start)), n)
            first = np.cumsum(n) - n  # where interval i's pieces begin in the output
            j = np.arange(len(i)) - np.repeat(first - lo, n)
        del lo, n
        start = a.start[i]
        np.maximum(start, b.start[j], out=start)
        end = a.end[i]
        np.minimum(end, b.end[j], out=end)
        return Intervals(start, end)

    def minus(self, other: Intervals) -> Intervals:
        """The parts of these intervals that `other` does not cover: these intervals intersected
        with the gaps of `other` (between its intervals, and before and after them as far as these
        reach)."""
        if not len(self.start) or not len(other.start):
            return self
        low, high = self.start[:1], self.end[-1:]
        start, end = np.concatenate((low, other.end)), np.concatenate((other.start, high))
        keep = end > start  # drops a gap before `low` or after `high`, never a real one
        if keep[1:-1].all():  # so: as slices, not copies
            lo, hi = int(not keep[0]), len(keep) - int(not keep[-1])
            return self.intersect(Intervals(start[lo:hi], end[lo:hi]))
        return self.intersect(Intervals(start[keep], end[keep]))

    def clip(self, low: int, high: int) -> Intervals:
        """These intervals cut to [low, high)."""
        start = np.maximum(self.start, np.uint64(low))
        end = np.minimum(self.end, np.uint64(high))
        return Intervals.of(start, end)


@dataclass(frozen=True)
class FrameAccounting:
    """Frames by owner (`by_owner`, in OWNERS order) out of the `ownable` ones, and the
    unaccounted ones. (`ownable` is more than the kernel's managed_frames counter: it includes
    the loader's kernel image and handoff data, which the allocator never holds.)"""

    ownable: int
    by_owner: dict[str, int]
    unaccounted: Intervals
    owned: dict[str, Intervals]  # owner -> the ownable frames it was given

    @property
    def unaccounted_frames(self) -> int:
        return self.unaccounted.total // PAGE_SIZE

    def unaccounted_ranges(self, limit: int = UNACCOUNTED_LISTED) -> list[tuple[int, int]]:
        """Up to `limit` unaccounted ranges as (first byte, last byte), lowest first."""
        u = self.unaccounted
        return [(int(s), int(e) - 1) for s, e in zip(u.start[:limit], u.end[:limit], strict=True)]

    def to_json(self) -> AccountingDoc:
        return {
            "ownable_frames": self.ownable,
            "by_owner": {**self.by_owner, "unaccounted": self.unaccounted_frames},
            "unaccounted_ranges": [
                {"start": hex(s), "end": hex(e), "frames": (e + 1 - s) // PAGE_SIZE}
                for s, e in self.unaccounted_ranges()
            ],
            "unaccounted_ranges_total": len(self.unaccounted.start),
            "owner_ranges": {
                name: [
                    [hex(int(a)), hex(int(b) - 1)]
                    for a, b in zip(
                        iv.start[:OWNER_RANGES_LISTED], iv.end[:OWNER_RANGES_LISTED], strict=True
                    )
                ]
                for name, iv in self.owned.items()
            },  # fmt: skip
            "owner_ranges_truncated": any(
                len(iv.start) > OWNER_RANGES_LISTED for iv in self.owned.values()
            ),
        }


def ownable(memmap: MemoryMap, limit: int) -> Intervals:
    """What the kernel can own: usable RAM and the loader's own types, from 4 KiB (frame 0 is never
    managed) up to `limit` (the allocator's) and the end of the offset map."""
    start, end = memmap.intervals(USABLE_TYPES | {MEMTYPE_KERNEL, MEMTYPE_HANDOFF, MEMTYPE_SCRATCH})
    return Intervals.of(start, end).clip(PAGE_SIZE, min(limit, OFFSET_MAP_SIZE))


def mapped_outside_offset_map(tables: PageTables) -> Intervals:
    """Physical targets of every range of `tables` that is not in the offset map."""
    r = tables.ranges
    base, top = np.uint64(OFFSET_MAP_BASE), np.uint64(OFFSET_MAP_BASE + OFFSET_MAP_SIZE - 1)
    outside = (r.start < base) | (r.start > top)
    phys = r.phys[outside]
    return Intervals.of(phys, phys + r.size[outside])


def table_pages(tables: PageTables) -> Intervals:
    t = np.asarray(tables.tables, dtype=np.uint64)
    return Intervals.of(t, t + np.uint64(PAGE_SIZE))


def account(ownable_memory: Intervals, owners: dict[str, Intervals]) -> FrameAccounting:
    """Each frame of `ownable_memory` given to the first owner (in OWNERS order) that covers it."""
    rest = ownable_memory
    by_owner: dict[str, int] = {}
    owned: dict[str, Intervals] = {}
    for name in OWNERS:
        owner = owners.get(name, Intervals.of(np.zeros(0), np.zeros(0)))
        left = rest.minus(owner)
        by_owner[name] = (rest.total - left.total) // PAGE_SIZE
        owned[name] = _kept(rest.intersect(owner), owner)
        rest = left
    return FrameAccounting(ownable_memory.total // PAGE_SIZE, by_owner, rest, owned)


def account_frames(
    memmap: MemoryMap,
    free_start: np.ndarray,
    free_end: np.ndarray,
    walks: list[PageTables],
    limit: int,
) -> FrameAccounting:
    """The accounting of a dump of our kernel: `free_*` are the free list's [start, end) runs,
    `walks` the kernel's tables and every listed address space's, `limit` the allocator's."""
    owners = {
        "free": Intervals.of(free_start, free_end),
        "page-table": _union(table_pages(t) for t in walks),
        "mapped": _union(mapped_outside_offset_map(t) for t in walks),
        "kernel-image": Intervals.of(*memmap.intervals({MEMTYPE_KERNEL})),
        "handoff": Intervals.of(*memmap.intervals({MEMTYPE_HANDOFF})),
    }
    return account(ownable(memmap, limit), owners)


def _intersect_few(a: Intervals, b: Intervals, lo: np.ndarray, n: np.ndarray) -> Intervals:
    """`a.intersect(b)` for a few intervals of `a` (each meeting the run of n[i] intervals of `b`
    from lo[i]), copied run by run into the result: only a run's first start and last end can
    be cut by a's interval, every other piece is b's own (b is sorted and disjoint)."""
    start = np.empty(int(n.sum()), dtype=np.uint64)
    end = np.empty(len(start), dtype=np.uint64)
    at = 0
    for i in np.flatnonzero(n).tolist():
        j, k = int(lo[i]), int(n[i])
        start[at : at + k], end[at : at + k] = b.start[j : j + k], b.end[j : j + k]
        start[at] = max(int(start[at]), int(a.start[i]))
        end[at + k - 1] = min(int(end[at + k - 1]), int(a.end[i]))
        at += k
    return Intervals(start, end)


def _kept(got: Intervals, owner: Intervals) -> Intervals:
    """`got`, or the equal `owner` it was cut from, so one copy stays (a free list all of whose
    spans are ownable: its arrays, not 4 MiB more of them)."""
    same = len(got.start) == len(owner.start)
    return (
        owner
        if same and np.array_equal(got.start, owner.start) and np.array_equal(got.end, owner.end)
        else got
    )


def _union(parts: Iterable[Intervals]) -> Intervals:
    """The union of `parts`: the smaller ones inserted into the largest where they sort (no sort
    of all of them, and one copy of the largest: a process's 262,144 pages, the kernel's 3).
    Pass a generator: the parts are dropped before the union is merged."""
    largest_first = sorted((p for p in parts if len(p.start)), key=lambda p: -len(p.start))
    if not largest_first:
        return Intervals.of(np.zeros(0), np.zeros(0))
    if len(largest_first) == 1:
        return largest_first[0]
    big, rest = largest_first[0], largest_first[1:]
    small = Intervals.of(np.concatenate([p.start for p in rest]),
                         np.concatenate([p.end for p in rest]))  # fmt: skip
    at = np.searchsorted(big.start, small.start)
    start, end = np.insert(big.start, at, small.start), np.insert(big.end, at, small.end)
    del largest_first, big, rest
    return Intervals.of(start, end)
