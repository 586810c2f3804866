"""One track of a picture: a title, then blocks on the compressed axis (kmtool.picture.scale),
lowest address first, wrapped onto rows; a legend of kinds with their exact totals.

Every block is a `<g class="block" data-kind=... data-start=... data-end=... data-size=...>` (a
mixed block adds `data-parts="kind=bytes;..."`) with a <title> giving its exact range, so a viewer
shows addresses on hover and tests read the picture back.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence

from kmtool import svgkit
from kmtool.picture.scale import HOLE, MIXED, Block, width
from kmtool.svgkit import MUTED, UNUSED
from kmtool.units import hexaddr, size_text

LEFT = 24.0
RIGHT = 1176.0
WIDTH = 1200.0
BLOCK_HEIGHT = 34.0
ROW_HEIGHT = 58.0  # a block, its start address below it, and space
Palette = Callable[[str], tuple[str, str]]  # kind -> (fill, accent)


def parts_text(parts: dict[str, int]) -> str:
    """kind=bytes;... (data-parts of a mixed block), largest first."""
    return ";".join(f"{k}={v}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))


def _tooltip(b: Block) -> str:
    head = f"{hexaddr(b.start)} - {hexaddr(b.end - 1)} ({size_text(b.size)}, {b.size:#x} bytes)"
    if b.kind == MIXED:
        inside = ", ".join(f"{k} {size_text(v)}" for k, v in
                           sorted(b.parts.items(), key=lambda kv: -kv[1]))  # fmt: skip
        return f"{head}\nsmall ranges folded together: {inside}"
    return f"{head}\n{b.kind}" + (f"\n{b.note}" if b.note else "")


def _draw_block(body: ET.Element, b: Block, x: float, y: float, palette: Palette) -> None:
    w = width(b)
    group = ET.SubElement(body, "g", {"class": "block", "data-kind": b.kind,
                                      "data-start": hexaddr(b.start), "data-end": hexaddr(b.end),
                                      "data-size": str(b.size)})  # fmt: skip
    if b.kind == MIXED:
        group.set("data-parts", parts_text(b.parts))
    svgkit.tooltip(group, _tooltip(b))
    if b.kind == HOLE:
        svgkit.rect(group, x + 2, y + 6, w - 4, BLOCK_HEIGHT - 12, fill="url(#hatch)",
                    stroke=UNUSED[1], stroke_dasharray="3 2")  # fmt: skip
        return
    if b.kind == MIXED:
        _stripes(group, b, x, y, w, palette)
    else:
        fill, accent = palette(b.kind)
        svgkit.rect(group, x, y, w, BLOCK_HEIGHT, fill=fill, stroke=accent, stroke_width="1.2")
        svgkit.rect(group, x, y, w, 4, fill=accent)
    _label(group, b, x, y, w)


def _stripes(group: ET.Element, b: Block, x: float, y: float, w: float, palette: Palette) -> None:
    """A mixed block: one horizontal stripe per kind, its height its share of the bytes."""
    top = y
    for kind, size in sorted(b.parts.items(), key=lambda kv: -kv[1]):
        h = BLOCK_HEIGHT * size / max(b.size, 1)
        svgkit.rect(group, x, top, w, max(h, 1.0), fill=palette(kind)[1], opacity="0.75")
        top += h
    svgkit.rect(group, x, y, w, BLOCK_HEIGHT, fill="none", stroke=MUTED, stroke_width="1.2")


def _label(group: ET.Element, b: Block, x: float, y: float, w: float) -> None:
    """Kind and size inside the block, as much of them as fits."""
    name = "mixed" if b.kind == MIXED else b.kind
    size = size_text(b.size)
    if svgkit.fits(name, 10, w - 6):
        svgkit.text(group, x + 4, y + 17, name, 10, bold=True)
    if svgkit.fits(size, 9.5, w - 6):
        svgkit.text(group, x + 4, y + 29, size, 9.5, mono=True, colour=MUTED)


def draw(
    body: ET.Element,
    y: float,
    title: str,
    blocks: Sequence[Block],
    palette: Palette,
    caption: Callable[[Block], str] | None = None,
) -> float:
    """Draw a titled track of `blocks` from `y`; return the y below it. Under each row: its first
    address, or with `caption`, the caption (a region name) wherever it changes."""
    svgkit.text(body, LEFT, y + 14, title, 14, bold=True)
    y += 24
    if not blocks:
        svgkit.text(body, LEFT, y + 14, "nothing to draw", 11, colour=MUTED)
        return y + 30
    x, shown, free_from = LEFT, "", LEFT
    for b in blocks:
        w = width(b)
        if x + w > RIGHT and x > LEFT:
            x, y, free_from = LEFT, y + ROW_HEIGHT, LEFT
        if caption is None and x == LEFT:
            svgkit.text(body, x, y + BLOCK_HEIGHT + 13, hexaddr(b.start), 9, mono=True,
                        colour=MUTED)  # fmt: skip
        elif caption is not None and b.kind != HOLE and (caption(b) != shown or x == LEFT):
            shown = caption(b)
            if x >= free_from:  # never over the previous caption
                svgkit.rect(body, x, y + BLOCK_HEIGHT + 2, 2, 8, fill=MUTED)
                svgkit.text(body, x + 4, y + BLOCK_HEIGHT + 11, shown, 9.5, colour=MUTED)
                free_from = x + 10 + len(shown) * 9.5 * svgkit.CHAR_WIDTH
        _draw_block(body, b, x, y, palette)
        x += w + 1
    return y + ROW_HEIGHT + 4


def legend(body: ET.Element, y: float, totals: dict[str, int], palette: Palette) -> float:
    """One swatch per kind with its exact total (bytes), `<g class="legend" data-kind=...
    data-bytes=...>`; return the y below it."""
    x = LEFT
    for kind, size in totals.items():
        label = f"{kind} {size_text(size)}"
        need = 30 + len(label) * 11 * svgkit.CHAR_WIDTH
        if x + need > RIGHT:
            x, y = LEFT, y + 22
        group = ET.SubElement(body, "g", {"class": "legend", "data-kind": kind,
                                          "data-bytes": str(size)})  # fmt: skip
        fill, accent = palette(kind) if kind != HOLE else ("url(#hatch)", UNUSED[1])
        svgkit.rect(group, x, y, 14, 14, fill=fill, stroke=accent, stroke_width="1.2")
        svgkit.text(group, x + 19, y + 11.5, label, 11)
        x += need
    return y + 28


def totals(blocks: Sequence[Block]) -> dict[str, int]:
    """Bytes per kind over `blocks` (mixed blocks counted by their parts), largest first."""
    out: dict[str, int] = {}
    for b in blocks:
        for kind, size in b.composition().items():
            out[kind] = out.get(kind, 0) + size
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
