"""Physical memory by owner, as blocks for a picture (kmtool.picture.scale).

Frames the kernel can own take their owner from the frame accounting (kmtool/dump/accounting.py),
with `mapped` told apart by who maps the frame: `heap-backing` (a kernel-heap leaf), `user-pages`
(a leaf of a listed address space) and `kernel-mapped` (every other leaf outside the offset map).
Everything else the memory map describes keeps its firmware type (`boot-services-data`,
`reserved`, `acpi-nvs` ...); what it does not describe is a hole.
"""

from __future__ import annotations

import numpy as np

from kmtool.dump.accounting import FrameAccounting, Intervals
from kmtool.dump.memmap import MemoryMap, type_name
from kmtool.dump.pagetable import Ranges
from kmtool.dump.regions import partition
from kmtool.picture.scale import HOLE, Block, merge_adjacent

#: Owners in drawing order of the legend; the accounting's `mapped` is split three ways.
OWNER_KINDS = ("free", "page-table", "heap-backing", "user-pages", "kernel-mapped",
               "kernel-image", "handoff", "unaccounted")  # fmt: skip
MAPPED_KINDS = ("heap-backing", "user-pages", "kernel-mapped")
HEAP_REGION = "kernel-heap"


def _intersect(a: Intervals, b: Intervals) -> Intervals:
    return a.minus(a.minus(b))


def targets(ranges: Ranges) -> Intervals:
    """The physical frames the `ranges` map."""
    return Intervals.of(ranges.phys, ranges.phys + ranges.size)


def heap_ranges(ranges: Ranges) -> Ranges:
    """The ranges of the kernel's tables that lie in the kernel-heap region."""
    names = partition()[1]
    ids = [i for i, name in enumerate(names) if name == HEAP_REGION]
    return ranges.take(np.flatnonzero(np.isin(ranges.region, ids)))


def owner_intervals(acc: FrameAccounting, heap: Intervals, user: Intervals) -> dict[str, Intervals]:
    """OWNER_KINDS -> frames, `mapped` split by heap and user targets (heap first)."""
    mapped = acc.owned.get("mapped", Intervals.of(np.zeros(0), np.zeros(0)))
    in_heap = _intersect(mapped, heap)
    in_user = _intersect(mapped.minus(in_heap), user)
    out = {k: v for k, v in acc.owned.items() if k != "mapped"}
    out |= {"heap-backing": in_heap, "user-pages": in_user,
            "kernel-mapped": mapped.minus(in_heap).minus(in_user),
            "unaccounted": acc.unaccounted}  # fmt: skip
    return {k: out[k] for k in OWNER_KINDS if k in out}


def physical_blocks(memmap: MemoryMap, owners: dict[str, Intervals]) -> list[Block]:
    """Blocks covering the memory map's extent: owners' frames, the rest by firmware type, and
    holes between; sorted by address, touching blocks of one kind merged."""
    starts, ends, kinds = [], [], []
    for kind, iv in owners.items():
        starts.append(iv.start)
        ends.append(iv.end)
        kinds += [kind] * len(iv.start)
    owned = Intervals.of(np.concatenate(starts or [np.zeros(0)]),
                         np.concatenate(ends or [np.zeros(0)]))  # fmt: skip
    for t in sorted({int(x) for x in memmap.entries["type"]}):
        rest = Intervals.of(*memmap.intervals({t})).minus(owned)
        starts.append(rest.start)
        ends.append(rest.end)
        kinds += [type_name(t)] * len(rest.start)
    if not kinds:
        return []
    s = np.concatenate(starts).astype(np.uint64)
    e = np.concatenate(ends).astype(np.uint64)
    order = np.argsort(s, kind="stable")
    blocks: list[Block] = []
    cursor = int(s[order[0]])
    for i in order.tolist():
        start, end = int(s[i]), int(e[i])
        if start > cursor:
            blocks.append(Block(cursor, start, HOLE))
        blocks.append(Block(start, end, kinds[i]))
        cursor = max(cursor, end)
    return merge_adjacent(blocks)
