"""Virtual mappings against the layout plan, as blocks for a picture: one band per address space
(the kernel's tables, then each listed address space's user half).

A block is a run of merged ranges (kmtool.dump.pagetable.Ranges) that are VA-contiguous, in one
layout region (kmtool/layout/table.py) and of one set of rights; its kind is the rights ("RW--",
"R-X-", "RW-U" ...). Unmapped gaps between runs are holes. `regions` names the region of each
block, so the band can draw the plan's regions above the blocks.
"""

from __future__ import annotations

import numpy as np

from kmtool.dump.levels import perm_text
from kmtool.dump.pagetable import Ranges
from kmtool.dump.regions import region_name
from kmtool.picture.scale import HOLE, Block, merge_adjacent
from kmtool.units import hexaddr

OUTSIDE = "outside the plan"

# Rights -> (fill, accent): read-only blue, writable green, executable orange, W+X red; user
# rights in the same hues, darker accents.
_RIGHTS = {
    "R---": ("#dbe7f3", "#4e79a7"),
    "RW--": ("#dcefd8", "#59a14f"),
    "R-X-": ("#fde6cf", "#e8862a"),
    "RWX-": ("#f8d0d0", "#d62728"),
    "R--U": ("#d3e0ee", "#2f5d8a"),
    "RW-U": ("#cfe8c9", "#3b7a33"),
    "R-XU": ("#f7dcc0", "#b5651d"),
    "RWXU": ("#f3c1c1", "#a31d1d"),
}


def rights_colour(kind: str) -> tuple[str, str]:
    return _RIGHTS.get(kind, ("#eeeeee", "#8a94a6"))


def band_blocks(ranges: Ranges) -> list[Block]:
    """Blocks of `ranges` (sorted by VA), unmapped gaps as holes; each block's note is its region
    and first target."""
    blocks: list[Block] = []
    cursor: int | None = None
    start, size = ranges.start.tolist(), ranges.size.tolist()
    phys, perm, region = ranges.phys.tolist(), ranges.perm.tolist(), ranges.region.tolist()
    for va, n, pa, p, r in zip(start, size, phys, perm, region, strict=True):
        if cursor is not None and va > cursor:
            blocks.append(Block(cursor, va, HOLE))
        name = region_name(r) or OUTSIDE
        blocks.append(Block(va, va + n, perm_text(p), note=f"{name}; maps {hexaddr(pa)}"))
        cursor = va + n
    # Runs of one region and rights become one block; its note keeps the first target.
    out: list[Block] = []
    for b in blocks:
        last = out[-1] if out else None
        if (last is not None and last.kind == b.kind != HOLE and last.end == b.start
                and region_of(last) == region_of(b)):  # fmt: skip
            last.end = b.end
        else:
            out.append(b)
    return merge_adjacent(out)


def region_of(block: Block) -> str:
    """The region named in a block's note (holes: "")."""
    return block.note.split(";", 1)[0] if block.kind != HOLE else ""


def user_half(ranges: Ranges, top: int) -> Ranges:
    """The ranges below `top` (an address space's own half)."""
    return ranges.take(np.flatnonzero(ranges.start < np.uint64(top)))
