"""The compressed axis of kmtool's pictures: a block's width grows with log2 of its size.

Physical memory spans a 4 KiB handoff page, 4 GiB holes and 64 GiB of RAM; on a linear scale the
small owners vanish. Here 4 KiB is MIN_WIDTH pixels and each doubling adds PER_DOUBLING, so every
block stays visible and a 64 GiB span is about nine times as wide as a 4 KiB page; the labels and
tooltips give the exact sizes (the legend says so). Holes, address ranges the memory map does not
describe, are drawn as a break of a fixed width.

A drawing holds at most MAX_BLOCKS blocks: past that, runs of small neighbours are folded into one
*mixed* block that keeps the bytes of each kind it holds (drawn as stripes, listed in its tooltip),
so the totals stay exact and the cost follows MAX_BLOCKS, not the number of ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kmtool.layout.table import PAGE_SHIFT

MIN_WIDTH = 34.0
PER_DOUBLING = 9.0
HOLE_WIDTH = 26.0
MAX_BLOCKS = 160
MIXED = "mixed"
HOLE = "hole"


@dataclass
class Block:
    """[start, end) of one kind; a mixed block holds `parts` (kind -> bytes)."""

    start: int
    end: int
    kind: str
    parts: dict[str, int] = field(default_factory=dict)
    note: str = ""  # a short extra line for the tooltip (rights, target, region)

    @property
    def size(self) -> int:
        return self.end - self.start

    def composition(self) -> dict[str, int]:
        """Bytes per kind (a plain block is all of its kind)."""
        return self.parts if self.kind == MIXED else {self.kind: self.size}


def width(block: Block) -> float:
    """Pixels for `block` on the compressed axis."""
    if block.kind == HOLE:
        return HOLE_WIDTH
    doublings = max(0.0, math.log2(max(block.size, 1)) - PAGE_SHIFT)
    return MIN_WIDTH + PER_DOUBLING * doublings


def merge_adjacent(blocks: list[Block]) -> list[Block]:
    """Neighbours of one kind and note that touch become one block (input sorted by start)."""
    out: list[Block] = []
    for b in blocks:
        last = out[-1] if out else None
        if (last is not None and last.kind == b.kind != MIXED and last.end == b.start
                and last.note == b.note):  # fmt: skip
            last.end = b.end
        else:
            out.append(Block(b.start, b.end, b.kind, dict(b.parts), b.note))
    return out


def fold(blocks: list[Block], limit: int = MAX_BLOCKS) -> list[Block]:
    """At most `limit` blocks (about): runs of touching blocks smaller than a threshold become
    mixed blocks, the threshold doubling until the count fits. Holes are never folded."""
    threshold = 1 << (PAGE_SHIFT + 4)
    while len(blocks) > limit and threshold < 1 << 64:
        blocks = _fold_once(blocks, threshold)
        threshold <<= 1
    return blocks


def _fold_once(blocks: list[Block], threshold: int) -> list[Block]:
    out: list[Block] = []
    run: list[Block] = []

    def flush() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            parts: dict[str, int] = {}
            for b in run:
                for kind, size in b.composition().items():
                    parts[kind] = parts.get(kind, 0) + size
            out.append(Block(run[0].start, run[-1].end, MIXED, parts))
        run.clear()

    for b in blocks:
        small = b.kind != HOLE and b.size < threshold
        if small and run and run[-1].end == b.start:
            run.append(b)
            continue
        flush()
        if small:
            run.append(b)
        else:
            out.append(b)
    flush()
    return out
