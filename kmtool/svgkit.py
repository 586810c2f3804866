"""The SVG conventions kmtool's pictures share (the layout plan, a dump, a diff): fonts, ink,
text and box helpers, and the self-contained document around a drawing (no scripts, no external
fonts, a white background, a hatch pattern for what nothing claims).

Elements are xml.etree elements, so a picture is built as a tree and read back the same way by
tests.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from kmtool.errors import KmtoolError

SANS = "DejaVu Sans, Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
INK = "#1f2933"
MUTED = "#5f6b7a"
FAULT = "#d62728"
UNUSED = ("#fafafa", "#b8bec8")
#: Approximate advance of one character per pixel of font size (DejaVu Sans), to fit labels.
CHAR_WIDTH = 0.62


def text(
    parent: ET.Element,
    x: float,
    y: float,
    content: str,
    size: float = 12,
    *,
    mono: bool = False,
    bold: bool = False,
    colour: str = INK,
    anchor: str = "start",
) -> ET.Element:
    """A <text> at baseline (x, y) under `parent`."""
    attrs = {
        "x": f"{x:.1f}",
        "y": f"{y:.1f}",
        "font-family": MONO if mono else SANS,
        "font-size": f"{size:g}",
        "fill": colour,
    }
    if bold:
        attrs["font-weight"] = "bold"
    if anchor != "start":
        attrs["text-anchor"] = anchor
    element = ET.SubElement(parent, "text", attrs)
    element.text = content
    return element


def rect(parent: ET.Element, x: float, y: float, w: float, h: float, **attrs: str) -> ET.Element:
    """A <rect> under `parent`; keyword names use _ for - (stroke_width=...)."""
    base = {"x": f"{x:.1f}", "y": f"{y:.1f}", "width": f"{w:.1f}", "height": f"{h:.1f}"}
    return ET.SubElement(
        parent, "rect", {**base, **{k.replace("_", "-"): v for k, v in attrs.items()}}
    )


def tooltip(element: ET.Element, content: str) -> None:
    """A <title> child: what a viewer shows on hover (exact addresses live here)."""
    ET.SubElement(element, "title").text = content


def fits(content: str, size: float, width: float) -> bool:
    """Whether `content` at font `size` fits in `width` pixels (estimated)."""
    return len(content) * size * CHAR_WIDTH <= width


def document(body: ET.Element, width: float, height: float, title: str) -> str:
    """The whole SVG text: title, the hatch pattern, a white background, then `body`."""
    svg = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "width": f"{width:.0f}",
            "height": f"{height:.0f}",
            "viewBox": f"0 0 {width:.0f} {height:.0f}",
        },
    )
    ET.SubElement(svg, "title").text = title
    defs = ET.SubElement(svg, "defs")
    pattern = ET.SubElement(
        defs,
        "pattern",
        {
            "id": "hatch",
            "width": "8",
            "height": "8",
            "patternUnits": "userSpaceOnUse",
            "patternTransform": "rotate(45)",
        },
    )
    ET.SubElement(pattern, "rect", {"width": "8", "height": "8", "fill": UNUSED[0]})
    ET.SubElement(
        pattern,
        "line",
        {"x1": "0", "y1": "0", "x2": "0", "y2": "8", "stroke": "#e3e6ea", "stroke-width": "3"},
    )
    ET.SubElement(svg, "rect", {"width": "100%", "height": "100%", "fill": "#ffffff"})
    svg.append(body)
    ET.indent(svg, space=" ")
    return ET.tostring(svg, encoding="unicode", xml_declaration=False) + "\n"


def write(svg: str, path: Path, error: type[KmtoolError] = KmtoolError) -> None:
    """Write `svg` to `path`; `error` (a KmtoolError) when the file cannot be written."""
    try:
        path.write_text(svg, encoding="utf-8")
    except OSError as err:
        raise error(f"The SVG file `{path}` cannot be written: {err.strerror}.") from err
