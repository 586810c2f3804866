"""`kmtool diff A B --svg FILE`: what changed, coloured, on the axes of `inspect --svg`
(docs/design.md, Pictures).

Physical memory: every frame either side could own, coloured by its change: leaked (owned in A,
unaccounted in B), moved from one owner to another (coloured by the new owner, kind "free ->
page-table"), or unchanged (grey). Then one band per address space that changed: pages added,
removed, given another target, other rights, or both, against the unchanged pages of that space.
Drawn from the whole intervals of the comparison (kmtool.diff.compare), not the listed first
ranges, on the compressed axis and with the folding of kmtool.picture.scale, so a 64 GiB guest
draws in bounded time.
"""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from kmtool import svgkit
from kmtool.diff.compare import Diff
from kmtool.diff.mappings import PAGE_SHIFT, MappingChange
from kmtool.diff.snapshot import DiffError, Snapshot
from kmtool.dump.accounting import Intervals
from kmtool.picture import palette, track
from kmtool.picture.scale import HOLE, Block, fold, merge_adjacent
from kmtool.svgkit import MUTED
from kmtool.units import plural, size_text

LEAK, UNCHANGED = "leaked", "unchanged"
# Mapping changes -> (fill, accent): added green, removed red, retargeted blue, new rights amber.
_CHANGES = {
    "added": ("#dcefd8", "#59a14f"),
    "removed": ("#f8d0d0", "#d62728"),
    "changed target": ("#dbe7f3", "#4e79a7"),
    "changed rights": ("#fff3c4", "#c9a227"),
    "changed target and rights": ("#fde6cf", "#e8862a"),
}
_GREY = ("#f7f8fa", "#c9ced6")  # unchanged: the background the changes stand out from


def physical_colour(kind: str) -> tuple[str, str]:
    """A leak in the unaccounted red; "X -> Y" in the colours of the new owner Y."""
    if kind == LEAK:
        return palette.physical("unaccounted")
    if kind == UNCHANGED:
        return _GREY
    owner = kind.rsplit(" -> ", 1)[-1]
    # the accounting's one "mapped" owner: the picture of inspect splits it, the diff does not
    return palette.physical("kernel-mapped" if owner == "mapped" else owner)


def mapping_colour(kind: str) -> tuple[str, str]:
    return _CHANGES.get(kind, _GREY)


def render(diff: Diff, a: Snapshot, b: Snapshot, name_a: str, name_b: str) -> str:
    """The SVG document of the diff of A (`name_a`) and B."""
    body = ET.Element("g")
    title = f"kmtool diff {name_a} -> {name_b}"
    svgkit.text(body, track.LEFT, 34, title, 22, bold=True)
    found = ", ".join(sorted(diff.kinds)) if diff.kinds else "no change"
    y = _wrapped(body, 56, f"Findings: {found}. Widths grow with log2 of the size, as in "
                 "`kmtool inspect --svg`; exact ranges in the tooltips. Hatched: holes.")  # fmt: skip
    y = _physical(body, diff, a, b, y + 10)
    y = _virtual(body, diff, a, b, y + 16)
    return svgkit.document(body, track.WIDTH, y + 24, title)


def write(diff: Diff, a: Snapshot, b: Snapshot, names: tuple[str, str], path: Path) -> None:
    """Write the picture to `path` (DiffError when it cannot be written)."""
    svgkit.write(render(diff, a, b, *names), path, DiffError)


def _wrapped(body: ET.Element, y: float, content: str) -> float:
    for line in textwrap.wrap(content, 170):
        svgkit.text(body, track.LEFT, y, line, 11.5, colour=MUTED)
        y += 16
    return y


def _union(parts: list[Intervals]) -> Intervals:
    empty = np.zeros(0, dtype=np.uint64)
    return Intervals.of(np.concatenate([empty, *(p.start for p in parts)]),
                        np.concatenate([empty, *(p.end for p in parts)]))  # fmt: skip


def _blocks(parts: list[tuple[str, Intervals]]) -> list[Block]:
    """Blocks of each (kind, intervals), sorted, holes between, touching blocks of a kind merged."""
    rows = sorted((int(s), int(e), kind) for kind, iv in parts
                  for s, e in zip(iv.start.tolist(), iv.end.tolist(), strict=True))  # fmt: skip
    blocks: list[Block] = []
    for start, end, kind in rows:
        if blocks and start > blocks[-1].end:
            blocks.append(Block(blocks[-1].end, start, HOLE))
        blocks.append(Block(start, end, kind))
    return merge_adjacent(blocks)


def _physical(body: ET.Element, diff: Diff, a: Snapshot, b: Snapshot, y: float) -> float:
    if not a.owners or not b.owners:
        svgkit.text(body, track.LEFT, y + 14, "Physical memory", 14, bold=True)
        return _wrapped(body, y + 34, "A side has no frame accounting (not a dump of our "
                        "kernel, or its free list is unreadable): no frames to draw.")  # fmt: skip
    changes = [(LEAK, diff.leaks)] if diff.leaks is not None else []
    changes += [(f"{c.before} -> {c.after}", c) for c in diff.owners]
    parts = [(kind, c.intervals) for kind, c in changes if c.intervals is not None]
    every = _union([*a.owners.values(), *b.owners.values()])
    parts.append((UNCHANGED, every.minus(_union([iv for _, iv in parts]))))
    blocks = fold(_blocks(parts))
    moved = sum(c.frames for _, c in changes)
    y = track.draw(body, y, f"Physical memory: {plural(moved, 'frame')} changed owner "
                   f"({size_text(moved << PAGE_SHIFT)})", blocks, physical_colour)  # fmt: skip
    totals = track.totals(blocks)
    totals.pop(HOLE, None)
    y = track.legend(body, y, totals, physical_colour)
    if not diff.owners_complete:
        y = _wrapped(body, y, "A side is a document that listed only its first owner ranges: "
                     "diff the dumps for every frame.")  # fmt: skip
    return y


def _virtual(body: ET.Element, diff: Diff, a: Snapshot, b: Snapshot, y: float) -> float:
    svgkit.text(body, track.LEFT, y + 16, "Virtual mappings that changed", 17, bold=True)
    by_space: dict[str, list[MappingChange]] = {}
    for c in diff.mappings:
        by_space.setdefault(c.space, []).append(c)
    quiet = [s for s in sorted(set(a.spaces) | set(b.spaces)) if s not in by_space]
    y = _wrapped(body, y + 36, "One band per address space with a change; grey: pages mapped "
                 "the same on both sides. " + (f"No change in: {', '.join(quiet)}." if quiet
                                              else ""))  # fmt: skip
    seen: dict[str, int] = {}
    for space, changes in by_space.items():
        blocks = fold(_band(space, changes, a, b))
        changed = sum(c.mapping.size for c in changes)
        y = track.draw(body, y + 6, f"{space}: {plural(len(changes), 'changed range')}, "
                       f"{size_text(changed)}", blocks, mapping_colour)  # fmt: skip
        for kind, size in track.totals(blocks).items():
            if kind != HOLE:
                seen[kind] = seen.get(kind, 0) + size
    return track.legend(body, y, seen, mapping_colour) if by_space else y


def _band(space: str, changes: list[MappingChange], a: Snapshot, b: Snapshot) -> list[Block]:
    """Blocks of one space's changes and of its unchanged pages, in page numbers then bytes (a
    range at the top of the address space ends at 2^64, which uint64 bytes cannot hold)."""
    parts: dict[str, tuple[list[int], list[int]]] = {}
    for c in changes:
        m = c.mapping
        kind = c.change if c.what is None else f"changed {c.what}"
        starts, ends = parts.setdefault(kind, ([], []))
        starts.append(m.start >> PAGE_SHIFT)
        ends.append((m.start + m.size) >> PAGE_SHIFT)
    changed = [
        Intervals.of(np.array(s, np.uint64), np.array(e, np.uint64)) for s, e in parts.values()
    ]
    mapped = []
    for side in (a, b):
        sm = side.spaces.get(space)
        if sm is not None and len(sm):
            first = sm.start >> np.uint64(PAGE_SHIFT)
            mapped.append(Intervals.of(first, first + (sm.size >> np.uint64(PAGE_SHIFT))))
    pieces = [*zip(parts, changed, strict=True), (UNCHANGED, _union(mapped).minus(_union(changed)))]
    blocks = _blocks(pieces)
    return [Block(x.start << PAGE_SHIFT, x.end << PAGE_SHIFT, x.kind) for x in blocks]
