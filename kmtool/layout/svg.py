"""A picture of the address-space plan (`kmtool layout report --svg FILE`).

One bar per canonical half, high addresses at the top, the non-canonical hole drawn as a break
between them. Each region is a box whose height grows with log2 of its size (a 4 KiB stack and a
512 GiB map on one linear scale would leave one of them invisible); regions that contain others draw
them inside, and address ranges no region claims are drawn hatched as "unused". Every box carries
its name, start and size; the gutter shows the boundary addresses; a note beside each box gives
backing, page size, PML4 entries and the description. Regions blamed by a failed check are
outlined in red.

The SVG is plain and self-contained (no scripts, no external fonts). Each region is a
`<g class="region" data-name=... data-start=... data-end=... data-size=...>`, so tests (and other
tools) can read it back.
"""

from __future__ import annotations

import math
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kmtool import svgkit
from kmtool.errors import LayoutError
from kmtool.layout import table
from kmtool.layout.report import Report, pml4_text
from kmtool.layout.table import Backing, Region
from kmtool.svgkit import FAULT, INK, MUTED, UNUSED
from kmtool.units import hexaddr, plural, size_text

# Backing -> (fill, accent). Soft tints keep dark text readable; the accent marks the kind.
COLOURS = {
    Backing.STATIC: ("#dbe7f3", "#4e79a7"),
    Backing.OFFSET_MAPPED: ("#dcefd8", "#59a14f"),
    Backing.DEMAND_PAGED: ("#fde6cf", "#e8862a"),
    Backing.PER_PROCESS: ("#ecdff1", "#a06cb0"),
    Backing.CONTAINER: ("#f5f6f8", "#8a94a6"),
}

WIDTH = 980
GUTTER_RIGHT = 190  # address labels end here
BAR_LEFT = 200
BAR_RIGHT = 560
NOTE_LEFT = 580
MARGIN = 24
HEADER = 26  # band at the top of a box that holds other boxes
INSET = 10  # horizontal inset of nested boxes
MIN_LEAF = 36  # a box of the smallest size still fits two lines of text
PER_DOUBLING = 3.6  # pixels of height per doubling of size
HOLE = 54  # height of the break between the halves

LOWER_HALF = (0, (1 << (table.VIRTUAL_ADDRESS_BITS - 1)) - 1)
UPPER_HALF = (table.canonical(1 << (table.VIRTUAL_ADDRESS_BITS - 1)), (1 << 64) - 1)


@dataclass
class Box:
    """A region, or an unused range (region None), with the boxes drawn inside it."""

    start: int
    end: int
    region: Region | None = None
    children: list[Box] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    @property
    def height(self) -> float:
        if self.children:
            return HEADER + sum(c.height for c in self.children) + INSET / 2
        return leaf_height(self.size)


def leaf_height(size: int) -> float:
    """Height in pixels of a box with no boxes inside: MIN_LEAF for 4 KiB, growing with log2."""
    return MIN_LEAF + PER_DOUBLING * max(0.0, math.log2(max(size, 1)) - table.PAGE_SHIFT)


def _fill(start: int, end: int, regions: Sequence[Region], parent: str | None) -> list[Box]:
    """Boxes covering [start, end]: the regions whose parent is `parent`, and unused gaps."""
    inside = sorted(
        (r for r in regions if r.parent == parent and start <= r.start and r.end <= end),
        key=lambda r: r.start,
    )
    boxes: list[Box] = []
    cursor = start
    for r in inside:
        if r.start < cursor:  # overlaps a sibling: the checks report it; draw it once
            continue
        if r.start > cursor:
            boxes.append(Box(cursor, r.start - 1))
        kids = [c for c in regions if c.parent == r.name]
        box = Box(r.start, r.end, r)
        if kids:
            box.children = _fill(r.start, r.end, regions, r.name)
        boxes.append(box)
        cursor = r.end + 1
    if cursor <= end:
        boxes.append(Box(cursor, end))
    return boxes


def half_boxes(regions: Sequence[Region], half: tuple[int, int]) -> list[Box]:
    """The top-level boxes of one canonical half, lowest address first."""
    return _fill(half[0], half[1], regions, None)


class _Canvas:
    """Accumulates SVG elements; y grows downwards, addresses upwards."""

    def __init__(self, faults: dict[str, list[str]], notes: dict[str, list[str]]) -> None:
        self.body = ET.Element("g")
        self.faults = faults  # region name -> names of the failed checks that blame it
        self.notes = notes  # region name -> extra lines for its note
        self.note_floor = 0.0  # notes are placed top-down; the next one starts at least here

    def note(self, y: float, lines: list[tuple[str, str, bool]]) -> None:
        """Write (text, colour, bold) lines beside the bar from baseline `y`, below other notes."""
        y = max(y, self.note_floor)
        for i, (content, colour, bold) in enumerate(lines):
            svgkit.text(self.body, NOTE_LEFT, y + 15 * i, content, 11, colour=colour, bold=bold)
        self.note_floor = y + 15 * len(lines) + 6

    def rect(
        self, parent: ET.Element, x: float, y: float, w: float, h: float, **attrs: str
    ) -> None:
        svgkit.rect(parent, x, y, w, h, **attrs)

    def address(self, y: float, address: int) -> None:
        svgkit.text(
            self.body,
            GUTTER_RIGHT,
            y + 4,
            hexaddr(address),
            11,
            mono=True,
            colour=MUTED,
            anchor="end",
        )
        ET.SubElement(
            self.body,
            "line",
            {
                "x1": f"{GUTTER_RIGHT + 3}",
                "x2": f"{BAR_LEFT}",
                "y1": f"{y:.1f}",
                "y2": f"{y:.1f}",
                "stroke": MUTED,
                "stroke-width": "1",
            },
        )

    def draw(self, box: Box, x0: float, x1: float, y: float, depth: int) -> None:
        """Draw `box` with its top edge at `y` between x0 and x1."""
        group = ET.SubElement(self.body, "g")
        if box.region is None:
            self._unused(group, box, x0, x1, y)
        else:
            self._region(group, box, box.region, x0, x1, y)
        # Children: highest address at the top.
        cy = y + (HEADER if box.children else 0)
        for child in reversed(box.children):
            self.draw(child, x0 + INSET, x1 - INSET, cy, depth + 1)
            cy += child.height
        if not box.children:
            self.address(y + box.height, box.start)

    def _unused(self, group: ET.Element, box: Box, x0: float, x1: float, y: float) -> None:
        """An address range no region claims: hatched, with its PML4 entries in the note."""
        h = box.height
        group.set("class", "unused")
        group.set("data-start", hexaddr(box.start))
        group.set("data-end", hexaddr(box.end))
        group.set("data-size", str(box.size))
        self.rect(
            group,
            x0,
            y,
            x1 - x0,
            h,
            fill="url(#hatch)",
            stroke=UNUSED[1],
            stroke_width="1",
            rx="3",
        )
        lo, hi = table.pml4_index(box.start), table.pml4_index(box.end)
        entries = f"PML4 {lo}" if lo == hi else f"PML4 {lo}-{hi}"
        svgkit.text(group, x0 + 12, y + h / 2 - 2, "unused", 13, bold=True, colour=MUTED)
        svgkit.text(
            group,
            x0 + 12,
            y + h / 2 + 13,
            f"{hexaddr(box.start)} · {size_text(box.size)}",
            11,
            mono=True,
            colour=MUTED,
        )
        self.note(y + h / 2 + 4, [(f"{entries}: no region claims it", MUTED, False)])

    def _region(
        self, group: ET.Element, box: Box, r: Region, x0: float, x1: float, y: float
    ) -> None:
        """A region's box (outlined in red when a check blames it), its label and its note."""
        h = box.height
        group.set("class", "region")
        group.set("data-name", r.name)
        group.set("data-start", hexaddr(r.start))
        group.set("data-end", hexaddr(r.end))
        group.set("data-size", str(r.size))
        fill, accent = COLOURS.get(r.backing, UNUSED)
        faults = self.faults.get(r.name, [])
        stroke = FAULT if faults else accent
        self.rect(
            group,
            x0,
            y,
            x1 - x0,
            h,
            fill=fill,
            stroke=stroke,
            stroke_width="2.5" if faults else "1.2",
            rx="4",
        )
        self.rect(group, x0, y, 6, h, fill=accent, rx="2")
        label = f"{hexaddr(r.start)} · {size_text(r.size)}"
        lines = self._note_lines(r, faults)
        if box.children:
            svgkit.text(group, x0 + 14, y + 17, r.name, 13, bold=True)
            svgkit.text(group, x1 - 10, y + 17, label, 11, mono=True, colour=MUTED, anchor="end")
            self.note(y + 13, lines)
        else:
            mid = y + h / 2
            svgkit.text(group, x0 + 14, mid - 3, r.name, 13, bold=True)
            svgkit.text(group, x0 + 14, mid + 12, label, 11, mono=True)
            self.note(mid - 3, lines)

    def _note_lines(self, r: Region, faults: list[str]) -> list[tuple[str, str, bool]]:
        """The note beside a region: its details, description, extra notes, failed checks."""
        details = f"{r.backing.value} · {size_text(r.page_size)} pages · PML4 {pml4_text(r)}"
        lines = [(details, MUTED, False), (r.description, INK, False)]
        lines += [(note, INK, False) for note in self.notes.get(r.name, [])]
        if faults:
            wrapped = textwrap.wrap("fails: " + ", ".join(faults), 58, break_on_hyphens=False)
            lines += [(line, FAULT, True) for line in wrapped]
        return lines


def render(report: Report) -> str:
    """The SVG document for `report` (regions from the report; failed checks outline culprits)."""
    canvas = _Canvas(_faults(report), _notes(report))
    y = _title(canvas, MARGIN)
    y = _halves(canvas, report.regions, y)
    y += 22
    y = _legend(canvas, y)
    y = _summary(canvas, report, y)
    return _document(canvas, y + MARGIN)


def _faults(report: Report) -> dict[str, list[str]]:
    """Region name -> the failed checks that blame it (kernel segments blame kernel-image)."""
    faults: dict[str, list[str]] = {}
    names = {r.name for r in report.regions}
    for check in report.failed:
        for culprit in check.culprits:
            # Segments and symbols of the kernel are shown against the region they belong in.
            if culprit not in names and check.name.startswith("kernel-"):
                culprit = "kernel-image"
            if check.name not in faults.setdefault(culprit, []):
                faults[culprit].append(check.name)
    return faults


def _notes(report: Report) -> dict[str, list[str]]:
    """Region name -> extra note lines: the kernel ELF's extent beside kernel-image."""
    notes: dict[str, list[str]] = {}
    if report.kernel is not None and report.extent is not None and report.kernel.segments:
        k, extent = report.kernel, report.extent
        notes["kernel-image"] = [
            f"kernel ELF: {size_text(extent.size)} at {hexaddr(extent.start)}, "
            f"{plural(len(k.segments), 'PT_LOAD segment')}"
        ]
    return notes


def _title(canvas: _Canvas, y: float) -> float:
    """The title and the two subtitle lines from `y`; return the y below them."""
    svgkit.text(canvas.body, MARGIN, y + 18, "Virtual address-space plan", 22, bold=True)
    subtitle = (
        "x86-64, 4-level paging, 48-bit canonical addresses, high addresses at the top.",
        "Box heights grow with log2 of the size; each address on the left starts the box above it.",
    )
    for i, line in enumerate(subtitle):
        svgkit.text(canvas.body, MARGIN, y + 42 + 16 * i, line, 12, colour=MUTED)
    return y + 92


def _halves(canvas: _Canvas, regions: Sequence[Region], y: float) -> float:
    """Both canonical halves, upper first, with the hole between; return the y below them."""
    halves = (
        ("Upper canonical half: the kernel (PML4 256-511)", UPPER_HALF),
        ("Lower canonical half: user space (PML4 0-255)", LOWER_HALF),
    )
    for number, (title, half) in enumerate(halves):
        y += 14 if number else 0
        svgkit.text(canvas.body, BAR_LEFT, y, title, 14, bold=True)
        y += 14
        canvas.address(y, half[1])
        for box in reversed(half_boxes(regions, half)):
            canvas.draw(box, BAR_LEFT, BAR_RIGHT, y, 0)
            y += box.height
        if number == 0:
            y = _hole(canvas, y)
    return y


def _summary(canvas: _Canvas, report: Report, y: float) -> float:
    """One line saying whether every check passed; return the y of its baseline."""
    summary = (
        f"All {len(report.checks)} checks passed."
        if report.ok
        else f"{len(report.failed)} of {len(report.checks)} checks failed: "
        + ", ".join(c.name for c in report.failed)
    )
    svgkit.text(
        canvas.body, MARGIN, y + 14, summary, 12, bold=True, colour=MUTED if report.ok else FAULT
    )
    return y + 14


def _document(canvas: _Canvas, height: float) -> str:
    """The whole SVG text: title, the hatch pattern, a white background, then the drawing."""
    return svgkit.document(canvas.body, WIDTH, height, "kmtool virtual address-space plan")


def _hole(canvas: _Canvas, y: float) -> float:
    """Draw the non-canonical hole as a torn gap; return the y below it."""
    top, bottom = y + 10, y + HOLE - 10
    points_top, points_bottom = [], []
    steps = 18
    for i in range(steps + 1):
        x = BAR_LEFT + (BAR_RIGHT - BAR_LEFT) * i / steps
        points_top.append(f"{x:.1f},{top + (4 if i % 2 else 0):.1f}")
        points_bottom.append(f"{x:.1f},{bottom - (4 if i % 2 else 0):.1f}")
    for pts in (points_top, points_bottom):
        ET.SubElement(
            canvas.body,
            "polyline",
            {
                "points": " ".join(pts),
                "fill": "none",
                "stroke": MUTED,
                "stroke-width": "1",
                "stroke-dasharray": "3 2",
            },
        )
    lo = 1 << (table.VIRTUAL_ADDRESS_BITS - 1)
    hi = UPPER_HALF[0] - 1
    svgkit.text(
        canvas.body,
        (BAR_LEFT + BAR_RIGHT) / 2,
        y + HOLE / 2 + 4,
        "non-canonical hole",
        12,
        bold=True,
        colour=MUTED,
        anchor="middle",
    )
    svgkit.text(
        canvas.body,
        NOTE_LEFT,
        y + HOLE / 2 - 3,
        f"{hexaddr(lo)} - {hexaddr(hi)}",
        11,
        mono=True,
        colour=MUTED,
    )
    svgkit.text(
        canvas.body,
        NOTE_LEFT,
        y + HOLE / 2 + 12,
        "not addressable: bits 63-47 must all equal bit 47",
        11,
        colour=MUTED,
    )
    return y + HOLE


def _legend(canvas: _Canvas, y: float) -> float:
    """Colour key for the backings; return the y below it."""
    x = float(MARGIN)
    entries = [(b.value, *COLOURS[b]) for b in Backing] + [("unused", *UNUSED)]
    for name, fill, accent in entries:
        canvas.rect(
            canvas.body,
            x,
            y,
            16,
            16,
            fill="url(#hatch)" if name == "unused" else fill,
            stroke=accent,
            stroke_width="1.2",
            rx="3",
        )
        svgkit.text(canvas.body, x + 22, y + 12, name, 12)
        x += 36 + 7.2 * len(name)
    return y + 30


def write(report: Report, path: Path) -> None:
    """Write the picture of `report` to `path`; LayoutError when the file cannot be written."""
    svgkit.write(render(report), path, LayoutError)
