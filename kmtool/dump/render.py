"""Human output of `kmtool inspect`, drawn from the same JSON document `--json` prints.

Rendering from the document (not from the decoders) keeps the two outputs saying the same thing.
Every function takes the document (`Inspection.to_json()`) and returns rich renderables; the CLI
prints them through the one console. The document is read through its declared types
(kmtool.dump.document), so a key renamed there is a mypy error here.

Narrow terminals (80 columns and up): no value is ever cut short. Summary values wrap only between
their items (`Flow`), table cells fold onto more lines rather than end in "...", and the CPU part is
key: value lines.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from kmtool.check import INSPECT, Check, check_table
from kmtool.dump import render_descriptors, render_kernel
from kmtool.dump.document import (
    BootInfoDoc,
    CheckDoc,
    CoreInfoDoc,
    CpuDoc,
    DescriptorTableDoc,
    FramesDoc,
    HeapDoc,
    InspectionDoc,
    MemoryMapDoc,
    PageTablesDoc,
    SourceDoc,
)
from kmtool.dump.render_flow import Flow
from kmtool.elf.kernel import build_ids_match
from kmtool.layout.table import PAGE_SIZE
from kmtool.units import plural, size_text

PARTS = ("summary", "cpu", "descriptors", "boot", "memmap", "pagetables", "frames", "heap", "fault",
         "aspaces", "checks")  # fmt: skip
MEMMAP_TOTALS_SHOWN = 4
RANGES_DRAWN = 500  # page-table ranges drawn as table rows (a wrong --cr3 can yield 65536 and more)


_KINDS = {"elf": "QEMU ELF core", "kdump": "kdump-compressed dump", "lime": "LiME dump",
          "raw": "raw physical image"}  # fmt: skip


def _grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    return grid


def _table(title: str, *columns: str, right: tuple[str, ...] = ()) -> Table:
    """A table whose cells fold onto more lines when the terminal is narrow, never truncated."""
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for name in columns:
        table.add_column(name, overflow="fold", justify="right" if name in right else "left")
    return table


def _unreadable(errors: dict[str, str], part: str) -> str | None:
    """The summary's word for a part whose structure is corrupt, or None."""
    return None if part not in errors else f"unreadable: {errors[part]}"


def _partial(part: FramesDoc | MemoryMapDoc | HeapDoc | None, line: str) -> str | None:
    """The summary's line for a part read up to a fault (its "error"), or None."""
    if part is None or part["error"] is None:
        return None
    return f"partial, {line}; then: {part['error']}"


def _not_ours(what: str, doc: InspectionDoc) -> Text:
    if doc["source"]["core_info_unreadable"] is not None:
        why = "this kmtool cannot read its core-info block: see the checks"
        return Text(f"{what}: none ({why}).", style="dim")
    return Text(f"{what}: none (no kmtool core-info block in this dump).", style="dim")


# -- summary ---------------------------------------------------------------------------------------


def summary(doc: InspectionDoc) -> RenderableType:
    """One line per part."""
    grid = _grid()
    src = doc["source"]
    kind = _KINDS.get(src["format"], src["format"])
    _flow_row(
        grid,
        "Dump",
        f"{src['path']}: {kind}, {size_text(src['ram_bytes'])} in "
        f"{plural(len(src['ranges']), 'range')}",
    )
    if doc["fault"] is not None:
        _flow_row(grid, "Fault", render_kernel.fault_headline(doc["fault"]))
    core = src["core_info"]
    if core is not None:
        _flow_row(grid, "Core info", _core_line(core))
        _flow_row(grid, "Build id", _build_id_line(core["build_id"], src))
    elif src["core_info_unreadable"] is not None:
        _flow_row(grid, "Core info", "unreadable: " + src["core_info_unreadable"]["detail"])
    else:
        _flow_row(grid, "Core info", "none: not a dump of a ready kmtool kernel")
    for cpu in doc["cpu"]:
        _flow_row(grid, f"CPU {cpu['index']}", _cpu_line(cpu))
    for tables in doc["descriptors"]:
        key = "Descriptors" if len(doc["descriptors"]) == 1 else f"Descriptors {tables['cpu']}"
        _flow_row(grid, key, render_descriptors.headline(tables))
    _flow_row(grid, "Boot info", _boot_line(doc["boot_info"]))
    errors = doc["part_errors"]
    memmap_line = _memmap_line(doc["memory_map"])
    _flow_row(grid, "Memory map", _partial(doc["memory_map"], memmap_line)
              or _unreadable(errors, "memory map") or memmap_line)  # fmt: skip
    _flow_row(grid, "Page tables", _pages_line(doc["page_tables"]))
    frames_line = _frames_line(doc["frames"])
    _flow_row(grid, "Frames", _partial(doc["frames"], frames_line)
              or _unreadable(errors, "frames") or frames_line)  # fmt: skip
    heap_line = _heap_line(doc["heap"])
    _flow_row(grid, "Heap", _partial(doc["heap"], heap_line)
              or _unreadable(errors, "heap") or heap_line)  # fmt: skip
    if doc["address_spaces"] is not None:
        spaces = doc["address_spaces"]["spaces"]
        pages = sum(s["user_pages"] for s in spaces)
        _flow_row(grid, "Spaces", f"{plural(len(spaces), 'address space')}, "
                                  f"{plural(pages, 'user page')}")  # fmt: skip
    grid.add_row("Checks", _checks_line(doc["checks"]))
    failed = [c for c in doc["checks"] if not c["ok"]]
    if not failed:
        return grid
    return Group(grid, checks_table(failed, "Failed checks"))


def _core_line(core: CoreInfoDoc) -> str:
    """Where the block is; the kernel PML4 and offset-map page size once the kernel built them."""
    text = f"{core['address']} (found by {core['found_by']}), kernel PML4 "
    if not int(core["kernel_pml4_phys"], 16):
        return text + "not built yet"
    text += core["kernel_pml4_phys"]
    if core["offset_map_page_size"]:
        text += f", offset map in {size_text(core['offset_map_page_size'])} pages"
    return text


def _flow_row(grid: Table, key: str, value: str) -> None:
    grid.add_row(key, Flow(value))


def _build_id_line(build_id: str, src: SourceDoc) -> str:
    """The dump's build id, and how the kernel ELF's (`--kernel`) compares."""
    text = build_id if int(build_id, 16) else f"{build_id} (none recorded)"
    if src["kernel"] is None:
        return text
    elf = src["kernel_build_id"]
    if elf is None:
        return f"{text} (kernel ELF: none)"
    same = build_ids_match(bytes.fromhex(build_id), bytes.fromhex(elf))
    return f"{text} (kernel ELF: {'the same' if same else elf})"


def _cpu_line(cpu: CpuDoc) -> str:
    parts = [f"{k} {cpu[k]}" for k in ("rip", "rsp", "cr0", "cr3", "cr4") if cpu[k] is not None]
    return "  ".join(parts) + f"  ({cpu['paging']} paging, from the {cpu['source']})"


def _boot_line(boot: BootInfoDoc | None) -> str:
    if boot is None:
        return "-"
    return (
        f"{boot['address']}: kernel {boot['kernel_phys_base']} "
        f"({size_text(boot['kernel_phys_size'])}) at {boot['kernel_virt_base']}, "
        f"{boot['scratch_count']} scratch pages at {boot['scratch_base']}, "
        f"cmdline {boot['cmdline']!r}"
    )


def _memmap_line(mm: MemoryMapDoc | None) -> str:
    if mm is None:
        return "-"
    totals = list(mm["totals"].items())
    shown = [f"{name} {size_text(size)}" for name, size in totals[:MEMMAP_TOTALS_SHOWN]]
    rest = sum(size for _, size in totals[MEMMAP_TOTALS_SHOWN:])
    if rest:
        shown.append(f"other {size_text(rest)}")
    return f"{mm['count']} descriptors of {mm['descriptor_size']} bytes: " + ", ".join(shown)


def _root_text(pt: PageTablesDoc) -> str:
    """Where the root came from, and the paging mode when it is not our kernel's 4 levels."""
    return pt["root_source"] + ("" if pt["paging"] == "4-level" else f", {pt['paging']} paging")


def _pages_line(pt: PageTablesDoc | None) -> str:
    if pt is None:
        return "-"
    counts = ", ".join(f"{k} {v}" for k, v in pt["leaf_counts"].items())
    return (
        f"CR3 {pt['cr3']} (from {_root_text(pt)}): {plural(pt['regions_total'], 'range')}, "
        f"{pt['leaves']} pages ({counts or 'none'}), {pt['tables']} tables"
    )


def _frames_line(fr: FramesDoc | None) -> str:
    if fr is None:
        return "-"
    if not fr["initialized"]:
        return f"allocator not set up (km_frames at {fr['state_address']} is all zero)"
    largest = fr["largest_span"]
    big = (
        ""
        if largest is None
        else (
            f"; largest {largest['start']} ({largest['count']} frames), "
            f"fragmentation {fr['fragmentation']:.3f}"
        )
    )
    free = f"{fr['free_frames']} free ({size_text(fr['free_bytes'])})"
    return f"{free} in {plural(fr['spans'], 'span')}{big}"


def _heap_line(heap: HeapDoc | None) -> str:
    if heap is None:
        return "-"
    return (
        f"{plural(heap['blocks'], 'block')}: {heap['used_blocks']} used ({heap['bytes_in_use']} "
        f"bytes requested), {heap['free_blocks']} free; {plural(heap['backed_pages'], 'backed page')}"
    )


def _checks_line(checks: list[CheckDoc]) -> Text:
    failed = sum(1 for c in checks if not c["ok"])
    passed = len(checks) - failed
    if not checks:
        return Text("none apply")
    style = "red" if failed else "green"
    return Text(f"{passed} passed, {failed} failed", style=style)


# -- parts -----------------------------------------------------------------------------------------


def cpu(doc: InspectionDoc) -> RenderableType:
    """Each CPU's registers as key: value lines (a table of ten hex columns does not fit 80)."""
    if not doc["cpu"]:
        return Text("No CPU state in this dump (raw image without a layout file).", style="dim")
    items: list[RenderableType] = []
    for c in doc["cpu"]:
        grid = _grid()
        for key in ("rip", "rsp", "rflags", "cr0", "cr2", "cr3", "cr4"):
            grid.add_row(key, c[key] or "-")
        grid.add_row("gdt", _descriptor_table(c["gdt"]))
        grid.add_row("idt", _descriptor_table(c["idt"]))
        grid.add_row("paging", f"{c['paging']} (from the {c['source']})")
        if items:
            items.append(Text(""))
        items.append(Group(Text(f"CPU {c['index']}", style="italic"), grid))
    return Group(*items)


def _descriptor_table(dt: DescriptorTableDoc | None) -> str:
    return "-" if dt is None else f"base {dt['base']}, limit {dt['limit']}"


def boot(doc: InspectionDoc) -> RenderableType:
    if doc["boot_info"] is None:
        return _not_ours("Boot info", doc)
    grid = _grid()
    for key, value in doc["boot_info"].items():
        grid.add_row(
            key, repr(value) if isinstance(value, str) and key == "cmdline" else str(value)
        )
    return Group(Text("Boot info", style="italic"), grid)


def memmap(doc: InspectionDoc) -> RenderableType:
    mm = doc["memory_map"]
    if mm is None and "memory map" in doc["part_errors"]:
        return Text(f"Memory map: {_unreadable(doc['part_errors'], 'memory map')}", style="red")
    if mm is None:
        return _not_ours("Memory map", doc)
    table = _table(
        f"Memory map at {mm['address']}: {mm['count']} descriptors of "
        f"{mm['descriptor_size']} bytes"
        + ("" if mm["error"] is None else f", partial: {mm['error']}"),
        "#",
        "type",
        "start",
        "end",
        "pages",
        "attribute",
        right=("#", "pages"),
    )
    for i, e in enumerate(mm["entries"]):
        table.add_row(str(i), e["type_name"], e["start"], e["end"], str(e["pages"]), e["attribute"])
    totals = _table("Totals by type", "type", "size", right=("size",))
    for name, size in mm["totals"].items():
        totals.add_row(name, size_text(size))
    return Group(table, Text(""), totals)


def pagetables(doc: InspectionDoc) -> RenderableType:
    pt = doc["page_tables"]
    if pt is None:
        return Text("No page tables (no CR3 and no core-info block).", style="dim")
    table = _table(
        f"Page tables under CR3 {pt['cr3']} ({_root_text(pt)})",
        "start",
        "end",
        "size",
        "phys",
        "page",
        "flags",
        "region",
        right=("size",),
    )
    for r in pt["regions"][:RANGES_DRAWN]:
        table.add_row(
            r["start"],
            r["end"],
            size_text(r["size"]),
            r["phys"],
            size_text(r["page_size"]),
            r["flags"],
            r["region"] or "-",
        )
    items: list[RenderableType] = [table]
    drawn = min(len(pt["regions"]), RANGES_DRAWN)
    if pt["regions_total"] > drawn:
        more = pt["regions_total"] - drawn
        listed = len(pt["regions"])
        rest = "all" if listed == pt["regions_total"] else f"the first {listed}"
        items.append(Text(f"... and {plural(more, 'more range')}; use --json for {rest}."))
    items.append(Text(_pages_line(pt)))
    if pt["error"]:
        items.append(Text(f"error: {pt['error']}", style="red"))
    for entry in pt["recursive_entries"]:
        items.append(Text(f"recursive: {entry}", style="yellow"))
    return Group(*items)


def walks(doc: InspectionDoc) -> RenderableType:
    pt = doc["page_tables"]
    if pt is None:
        return Group()
    items: list[RenderableType] = []
    for w in pt.get("walks", []):
        table = _table(
            f"Walk of {w['va']}", "level", "table", "index", "entry", "flags", right=("index",)
        )
        for s in w["steps"]:
            table.add_row(s["level"], s["table"], str(s["index"]), s["entry"], s["flags"])
        items.append(table)
        if w["phys"] is not None and w["page_size"] is not None:
            page = size_text(w["page_size"])
            items.append(Text(f"{w['va']} -> {w['phys']} ({page} page, {w['flags']})"))
        else:
            items.append(Text(f"{w['va']} is not mapped: {w['stopped']}.", style="yellow"))
    for pa, aliases in pt.get("aliases", {}).items():
        if not aliases:
            why = f"Physical {pa} is not mapped under CR3 {pt['cr3']}."
            items.append(Text(why, style="yellow"))
            continue
        table = _table(f"Virtual aliases of physical {pa}", "va", "page", "flags", "region")
        for a in aliases:
            table.add_row(a["va"], size_text(a["page_size"]), a["flags"], a["region"] or "-")
        items.append(table)
    return Group(*items)


def frames(doc: InspectionDoc) -> RenderableType:
    fr = doc["frames"]
    if fr is None and "frames" in doc["part_errors"]:
        return Text(f"Frames: {_unreadable(doc['part_errors'], 'frames')}", style="red")
    if fr is None:
        return _not_ours("Frames", doc)
    partial = fr["error"] is not None  # the spans read before the fault it names
    table = _table(
        f"Free spans (list head in km_frames at {fr['state_address']})"
        + (", partial: read up to the fault below" if partial else ""),
        "#",
        "start",
        "end",
        "frames",
        "size",
        right=("#", "frames", "size"),
    )
    for i, pair in enumerate(fr["span_list"]):
        start, count = _span(pair)
        first = int(start, 16)
        table.add_row(
            str(i),
            start,
            hex(first + count * PAGE_SIZE - 1),
            str(count),
            size_text(count * PAGE_SIZE),
        )
    grid = _grid()
    if partial:
        grid.add_row("list", Text(f"partial: {fr['error']}", style="red"))
    if not fr["initialized"]:
        grid.add_row("allocator", "not set up (km_frames is all zero)")
    grid.add_row("free frames", f"{fr['free_frames']} ({size_text(fr['free_bytes'])})")
    grid.add_row("spans", str(fr["spans"]))
    if fr["largest_span"] is not None:
        grid.add_row(
            "largest span", f"{fr['largest_span']['start']} ({fr['largest_span']['count']} frames)"
        )
    grid.add_row("fragmentation", f"{fr['fragmentation']:.3f} (1 - largest / free)")
    grid.add_row("span hash", str(fr["span_hash"]))
    for key, value in fr["counters"].items():
        grid.add_row(f"km_frames.{key}", str(value))
    extra = [] if fr["stack"] is None else [Text(""), render_kernel.stack(fr["stack"])]
    if doc["accounting"] is not None and not partial:  # owners need every span
        extra += [Text(""), render_kernel.owners(doc["accounting"])]
    return Group(table, Text(""), grid, *extra)


def _span(pair: list[str | int]) -> tuple[str, int]:
    """A `span_list` item, [start "0x...", frame count] (a JSON array), as a typed pair."""
    start, count = pair
    assert isinstance(start, str) and isinstance(count, int), pair
    return start, count


def heap(doc: InspectionDoc) -> RenderableType:
    h = doc["heap"]
    if h is None and "heap" in doc["part_errors"]:
        return Text(f"Heap: {_unreadable(doc['part_errors'], 'heap')}", style="red")
    if h is None:
        return _not_ours("Heap", doc)
    table = _table(
        "Heap blocks by order",
        "order",
        "block size",
        "used",
        "free",
        "requested",
        right=("order", "used", "free", "requested", "block size"),
    )
    for row in h["by_order"]:
        table.add_row(
            str(row["order"]),
            size_text(row["block_size"]),
            str(row["used"]),
            str(row["free"]),
            str(row["requested_bytes"]),
        )
    grid = _grid()
    grid.add_row(
        "blocks",
        f"{h['blocks']} ({h['used_blocks']} used, {h['free_blocks']} free, "
        f"{h['untouched_blocks']} of them untouched)",
    )
    grid.add_row("bytes in use", str(h["bytes_in_use"]))
    grid.add_row(
        "backed pages", f"{h['backed_pages']} ({size_text(h['backed_pages'] * PAGE_SIZE)})"
    )
    for key, value in h["counters"].items():
        grid.add_row(f"km_heap.{key}", str(value))
    items: list[RenderableType] = [table, Text(""), grid]
    if h["error"] is not None:
        items.append(Text(f"partial: {h['error']}", style="red"))
    for problem in h["problems"]:
        items.append(Text(f"problem: {problem}", style="red"))
    return Group(*items)


def checks(doc: InspectionDoc) -> RenderableType:
    if not doc["checks"]:
        return Text("No checks apply to this dump (not a kmtool kernel).", style="dim")
    return checks_table(doc["checks"], "Checks")


def checks_table(rows: list[CheckDoc], title: str) -> Table:
    """The document's check rows, drawn by the one check renderer in the inspect style."""
    return check_table([Check.from_json(c) for c in rows], INSPECT, title)


RENDERERS = {
    "summary": summary,
    "cpu": cpu,
    "descriptors": render_descriptors.descriptors,
    "boot": boot,
    "memmap": memmap,
    "pagetables": pagetables,
    "frames": frames,
    "heap": heap,
    "fault": render_kernel.fault,
    "aspaces": render_kernel.aspaces,
    "checks": checks,
}
