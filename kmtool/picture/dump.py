"""`kmtool inspect DUMP --svg FILE`: physical memory by owner, then the virtual mappings of every
address space against the layout plan (docs/design.md, Pictures).

Drawn from what inspect decoded (kmtool.dump.inspection.Inspection): the memory map, the whole frame
accounting (not the document's first ranges), the kernel's tables and the listed address spaces.
A part the dump lacks (a foreign dump has no accounting) is named, not drawn.
"""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kmtool import svgkit
from kmtool.dump.accounting import Intervals
from kmtool.errors import DumpError
from kmtool.layout.table import PAGE_SIZE, USER_SPACE_TOP
from kmtool.picture import palette, track
from kmtool.picture.physical import (
    OWNER_KINDS,
    heap_ranges,
    owner_intervals,
    physical_blocks,
    targets,
)
from kmtool.picture.scale import MAX_BLOCKS, MIN_WIDTH, PER_DOUBLING, fold
from kmtool.picture.virtual import band_blocks, region_of, rights_colour, user_half
from kmtool.svgkit import MUTED
from kmtool.units import plural, size_text

if TYPE_CHECKING:
    from kmtool.dump.inspection import Inspection

SCALE_NOTE = (f"Widths grow with log2 of the size (4 KiB = {MIN_WIDTH:g} px, +{PER_DOUBLING:g} px "
              "per doubling), so small owners stay visible: read sizes from the labels and the "
              "legend, exact addresses from the tooltips. Hatched: holes. Striped: small ranges "
              f"folded together (a track holds at most {MAX_BLOCKS} blocks).")  # fmt: skip


def render(ins: Inspection, name: str) -> str:
    """The SVG document for the inspection of dump `name`."""
    body = ET.Element("g")
    svgkit.text(body, track.LEFT, 34, f"kmtool inspect {name}", 22, bold=True)
    y = _wrapped(body, 56, SCALE_NOTE)
    y = _physical(body, ins, y + 10)
    y = _virtual(body, ins, y + 16)
    return svgkit.document(body, track.WIDTH, y + 24, f"kmtool inspect {name}")


def _wrapped(body: ET.Element, y: float, content: str, colour: str = MUTED) -> float:
    for line in textwrap.wrap(content, 170):
        svgkit.text(body, track.LEFT, y, line, 11.5, colour=colour)
        y += 16
    return y


def _physical(body: ET.Element, ins: Inspection, y: float) -> float:
    if ins.memmap is None or ins.accounting is None:
        why = "; ".join(f"{k}: {v}" for k, v in ins.part_errors.items()) or "not our kernel"
        svgkit.text(body, track.LEFT, y + 14, "Physical memory", 14, bold=True)
        return _wrapped(body, y + 34, f"No memory map or frame accounting to draw ({why}).")
    acc = ins.accounting
    kernel = ins.kernel_tables or ins.tables
    heap = targets(heap_ranges(kernel.ranges)) if kernel is not None else _empty()
    users = [targets(user_half(s.tables.ranges, USER_SPACE_TOP))
             for s in (ins.aspaces.spaces if ins.aspaces is not None else [])]  # fmt: skip
    user = Intervals.of(np.concatenate([_empty().start, *(u.start for u in users)]),
                        np.concatenate([_empty().end, *(u.end for u in users)]))  # fmt: skip
    owners = owner_intervals(acc, heap, user)
    blocks = fold(physical_blocks(ins.memmap, owners))
    top = max((b.end for b in blocks), default=0)
    title = (f"Physical memory by owner: {size_text(top)} of address space, "
             f"{plural(acc.ownable, 'frame')} the kernel can own")  # fmt: skip
    y = track.draw(body, y, title, blocks, palette.physical)
    totals = track.totals(blocks)
    ordered = {k: totals.pop(k, 0) for k in OWNER_KINDS} | {
        k: v for k, v in totals.items() if k != "hole"
    }
    y = track.legend(body, y, ordered, palette.physical)
    counts = ", ".join(f"{k} {n}" for k, n in {**acc.by_owner,
                                                "unaccounted": acc.unaccounted_frames}.items())  # fmt: skip
    return _wrapped(body, y, f"Frame accounting (frames of {size_text(PAGE_SIZE)}): {counts}.")


def _virtual(body: ET.Element, ins: Inspection, y: float) -> float:
    kernel = ins.kernel_tables or ins.tables
    bands = []
    if kernel is not None:
        bands.append(("Kernel tables", kernel.ranges))
    for s in ins.aspaces.spaces if ins.aspaces is not None else []:
        bands.append((f"Address space {s.id} (PML4 {s.pml4:#x}), user half",
                      user_half(s.tables.ranges, USER_SPACE_TOP)))  # fmt: skip
    if not bands:
        svgkit.text(body, track.LEFT, y + 14, "Virtual mappings", 14, bold=True)
        return _wrapped(body, y + 34, "No page tables to draw.")
    svgkit.text(body, track.LEFT, y + 16, "Virtual mappings against the layout plan", 17, bold=True)
    y = _wrapped(body, y + 36, "One band per address space, lowest address first; colour = "
                 "effective rights, the plan's region under each run, hatched = unmapped.")  # fmt: skip
    seen: dict[str, int] = {}
    for title, ranges in bands:
        blocks = fold(band_blocks(ranges))
        mapped = sum(int(n) for n in ranges.size.tolist())
        y = track.draw(body, y + 6, f"{title}: {size_text(mapped)} mapped", blocks,
                       rights_colour, caption=region_of)  # fmt: skip
        for kind, size in track.totals(blocks).items():
            if kind != "hole":
                seen[kind] = seen.get(kind, 0) + size
    return track.legend(body, y, seen, rights_colour)


def _empty() -> Intervals:
    return Intervals.of(np.zeros(0), np.zeros(0))


def write(ins: Inspection, name: str, path: Path) -> None:
    """Write the picture of `ins` to `path` (DumpError when it cannot be written)."""
    svgkit.write(render(ins, name), path, DumpError)
