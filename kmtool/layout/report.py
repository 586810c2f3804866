"""The layout report: one `Report` object, rendered as rich tables or as JSON with stable keys.

`build_report(kernel, memory)` runs the plan checks (layout/checks.py), the kernel checks when a
kernel ELF is given (layout/kernel_checks.py) and the cost model when a RAM size is given
(layout/cost.py). `Report.to_json()` is the machine form:

    regions   [{name, start, end, size, pml4: [first, last], backing, page_size, parent,
               description}]
    checks    [{name, ok, detail, culprits}]
    ok        true when every check passed
    constants {page_size, kernel_link_base, offset_map_base, max_physical_memory, shared_pml4}
    kernel    null, or {path, entry, start, end, size, segments: [...], symbols: {name: addr}}
              (start, end and size: the image from the link base up; segments lists every PT_LOAD)
    memory    null, or {ram, managed, unmanaged, image_bytes, image_known, page_tables: [...],
              fixed_bytes: {1gib_pages, 2mib_pages}, left_bytes: {1gib_pages, 2mib_pages}}

Addresses are canonical 16-digit "0x..." strings; sizes and counts are integers; `end` is inclusive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmtool.check import REPORT, Check, check_table
from kmtool.layout import checks, cost, kernel_checks, table
from kmtool.layout.cost import MemoryCost
from kmtool.layout.kernel_checks import KernelImage
from kmtool.layout.table import Region
from kmtool.units import exact_size_text, hexaddr, size_text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def pml4_text(region: Region) -> str:
    """`510` or `0-255`."""
    lo, hi = region.pml4
    return str(lo) if lo == hi else f"{lo}-{hi}"


def tree_order(regions: Sequence[Region]) -> list[tuple[Region, int]]:
    """Regions depth-first (parents before children, siblings by start) with their nesting depth.

    Regions whose parent is missing are shown at the top level (the nesting check reports them).
    """
    names = {r.name for r in regions}
    children: dict[str | None, list[Region]] = {}
    for r in regions:
        parent = r.parent if r.parent in names and r.parent != r.name else None
        children.setdefault(parent, []).append(r)
    out: list[tuple[Region, int]] = []
    seen: set[str] = set()

    def visit(parent: str | None, depth: int) -> None:
        for r in sorted(children.get(parent, []), key=lambda r: (r.start, -r.size)):
            if r.name in seen:  # a cycle or duplicate name: show it once
                continue
            seen.add(r.name)
            out.append((r, depth))
            visit(r.name, depth + 1)

    visit(None, 0)
    out += [(r, 0) for r in regions if r.name not in seen]  # members of parent cycles
    return out


@dataclass(frozen=True)
class Report:
    """Everything `kmtool layout report` shows."""

    regions: tuple[Region, ...]
    checks: tuple[Check, ...]
    kernel: KernelImage | None = None
    memory: MemoryCost | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def extent(self) -> kernel_checks.ImageExtent | None:
        """The kernel image from the link base up (None without a kernel)."""
        if self.kernel is None:
            return None
        return kernel_checks.image_extent(self.kernel, self.regions)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def failure_message(self) -> str:
        """One sentence naming each failed check and what it blames (empty when all passed)."""
        failed = self.failed
        if not failed:
            return ""
        parts = [
            f"`{c.name}` ({', '.join(c.culprits)})" if c.culprits else f"`{c.name}`" for c in failed
        ]
        noun = "check" if len(failed) == 1 else "checks"
        return f"{len(failed)} layout {noun} failed: {'; '.join(parts)}."

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON-ready data (see the module docstring for the keys)."""
        return {
            "regions": [
                {
                    "name": r.name,
                    "start": hexaddr(r.start),
                    "end": hexaddr(r.end),
                    "size": r.size,
                    "pml4": list(r.pml4),
                    "backing": r.backing.value,
                    "page_size": r.page_size,
                    "parent": r.parent,
                    "description": r.description,
                }
                for r, _ in tree_order(self.regions)
            ],
            "checks": [c.to_json(culprits=True) for c in self.checks],
            "ok": self.ok,
            "constants": {
                "page_size": table.PAGE_SIZE,
                "kernel_link_base": hexaddr(table.KERNEL_LINK_BASE),
                "offset_map_base": hexaddr(table.OFFSET_MAP_BASE),
                "max_physical_memory": table.MAX_PHYSICAL_MEMORY,
                "shared_pml4": [table.SHARED_PML4_FIRST, table.SHARED_PML4_LAST],
            },
            "kernel": None if self.kernel is None else _kernel_json(self.kernel, self.regions),
            "memory": None if self.memory is None else _memory_json(self.memory),
        }


def _kernel_json(k: KernelImage, regions: Sequence[Region]) -> dict[str, Any]:
    extent = kernel_checks.image_extent(k, regions)
    return {
        "path": k.path,
        "entry": hexaddr(k.entry),
        "start": hexaddr(extent.start),
        "end": hexaddr(max(extent.end - 1, extent.start)),
        "size": extent.size,
        "segments": [
            {
                "index": s.index,
                "start": hexaddr(s.vaddr),
                "end": hexaddr(s.end),
                "memsz": s.memsz,
                "filesz": s.filesz,
                "flags": s.flags_text,
            }
            for s in k.segments
        ],
        "symbols": {name: hexaddr(value) for name, value in sorted(k.symbols.items())},
    }


def _memory_json(m: MemoryCost) -> dict[str, Any]:
    return {
        "ram": m.ram,
        "managed": m.managed,
        "unmanaged": m.unmanaged,
        "image_bytes": m.image_bytes,
        "image_known": m.image_known,
        "page_tables": [
            {"key": i.key, "name": i.name, "tables": i.tables, "bytes": i.bytes, "detail": i.detail}
            for i in m.items
        ],
        "fixed_bytes": {"1gib_pages": m.fixed_1g, "2mib_pages": m.fixed_2m},
        "left_bytes": {"1gib_pages": m.left_1g, "2mib_pages": m.left_2m},
    }


def build_report(
    kernel: Path | None = None,
    memory: int | None = None,
    regions: Sequence[Region] | None = None,
) -> Report:
    """Check the plan, and `kernel` (an ELF path) and the cost for `memory` bytes when given.

    Raises KernelElfError when `kernel` is missing or not an ELF; a failed check is not an error here.
    """
    plan = tuple(table.REGIONS if regions is None else regions)
    found: list[Check] = checks.check_plan(plan)
    image = None
    if kernel is not None:
        image = kernel_checks.load_kernel(kernel)
        found += kernel_checks.check_kernel(image, plan)
    mem = None
    if memory is not None:
        image_size = None
        if image is not None and image.segments:
            image_size = kernel_checks.image_extent(image, plan).size
        mem = cost.plan_cost(memory, image_size)
        found += cost.check_memory(mem)
    return Report(plan, tuple(found), image, mem)


def print_unclipped(console: Console, renderable: Any) -> None:
    """Print `renderable` at its natural width even on a narrower console: never cut an address."""
    from rich.measure import Measurement

    natural = Measurement.get(console, console.options.update_width(10_000), renderable).maximum
    width = console.width
    try:
        console.width = max(width, natural)
        console.print(renderable)
    finally:
        console.width = width


def render(report: Report, console: Console) -> None:
    """Print the report as tables: regions, kernel segments, memory cost, checks, then a summary."""
    from rich.text import Text

    _heading(console, "Virtual address-space plan (4-level paging, 48-bit canonical addresses)")
    print_unclipped(console, _regions_table(report.regions))
    if report.kernel is not None:
        k = report.kernel
        size = 0 if report.extent is None else report.extent.size
        _heading(
            console, f"Kernel {k.path} (entry {hexaddr(k.entry)}, {size_text(size)})", after=True
        )
        print_unclipped(console, _segments_table(k))
    if report.memory is not None:
        _print_cost(console, report.memory)
    _heading(console, "Checks", after=True)
    console.print(check_table(report.checks, REPORT))
    failed = len(report.failed)
    if failed:
        console.print(Text(f"{failed} of {len(report.checks)} checks failed.", style="bold red"))
    else:
        console.print(Text(f"All {len(report.checks)} checks passed.", style="green"))


def _heading(console: Console, title: str, after: bool = False) -> None:
    """The bold title of a section, `after` a blank line when another section came before it."""
    from rich.text import Text

    if after:
        console.print()
    console.print(Text(title, style="bold"))


def _table(*columns: str, right: tuple[str, ...] = (), wrap: tuple[str, ...] = ()) -> Table:
    """A report table: a rule under bold headers, no outer edge, one space between columns;
    `right` columns right-justified, and only the `wrap` columns may wrap."""
    from rich import box
    from rich.table import Table

    out = Table(
        box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, header_style="bold",
        show_edge=False,
    )  # fmt: skip
    for name in columns:
        out.add_column(name, no_wrap=name not in wrap, justify="right" if name in right else "left")
    return out


def _regions_table(regions: Sequence[Region]) -> Table:
    out = _table(
        "region", "start", "end (incl.)", "size", "PML4", "backing", "page", right=("size",)
    )
    for r, depth in tree_order(regions):
        out.add_row(
            "  " * depth + r.name,
            hexaddr(r.start),
            hexaddr(r.end),
            size_text(r.size),
            pml4_text(r),
            r.backing.value,
            size_text(r.page_size),
        )
    return out


def _segments_table(k: KernelImage) -> Table:
    columns = ("program header", "start", "end (incl.)", "memory", "file", "flags")
    out = _table(*columns, right=("memory", "file"))
    for s in k.segments:
        out.add_row(
            str(s.index),
            hexaddr(s.vaddr),
            hexaddr(s.end),
            size_text(s.memsz),
            size_text(s.filesz),
            s.flags_text,
        )
    return out


def _print_cost(console: Console, m: MemoryCost) -> None:
    """The page-table cost table and the arithmetic under it."""
    from rich.text import Text

    exact = exact_size_text  # every size here takes part in arithmetic: never truncate
    title = f"Page-table cost for {exact(m.ram)} of RAM"
    if m.unmanaged:
        title += f" (costed for the {exact(m.managed)} `offset-map` reaches)"
    _heading(console, title, after=True)
    costs = _table("item", "tables", "size", "detail", right=("tables", "size"), wrap=("detail",))
    for item in m.items:
        costs.add_row(item.name, str(item.tables), exact(item.bytes), item.detail)
    if m.unmanaged:
        costs.add_row(
            Text("unmanaged RAM", style="bold red"),
            "-",
            exact(m.unmanaged),
            "past `offset-map`: never mapped or used",
        )
    console.print(costs)
    image = f"{exact(m.image_bytes)} of pages" if m.image_known else "not counted: no ELF"
    managed = exact(m.managed)
    console.print(f"Fixed costs: kernel image ({image}), PML4, image tables, offset map.")
    console.print("The frame allocator adds nothing: its free list lives in the free frames.")
    if m.unmanaged:
        console.print(
            f"Only {managed} of the {exact(m.ram)} can be managed: {exact(m.unmanaged)} would "
            "be unmanaged."
        )
    console.print(
        f"Memory left with 1 GiB pages:         {managed} - {exact(m.fixed_1g)} = "
        f"{exact(m.left_1g)}"
    )
    console.print(
        f"Memory left with the 2 MiB fallback:  {managed} - {exact(m.fixed_2m)} = "
        f"{exact(m.left_2m)}"
    )
