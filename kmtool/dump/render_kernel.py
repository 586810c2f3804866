"""Drawing the second-wave parts of an inspection: the fault, the address spaces and the frame
owners (docs/design.md §10-§12). Same conventions as kmtool.dump.render, which registers these."""

from __future__ import annotations

from itertools import groupby

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from kmtool.dump.document import AccountingDoc, FaultDoc, FrameStackDoc, InspectionDoc
from kmtool.layout.table import PAGE_SIZE
from kmtool.units import plural, size_text


def _grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    return grid


def fault_headline(f: FaultDoc) -> str:
    """The summary's first line when the kernel recorded a fault."""
    if f["kind"] == "panic":
        return f"panic at {f['rip_where']}: {f['message']}"
    text = f"{f['exception']} at {f['rip_where']}"
    if f["vector"] == 14:
        text += f" on {f['cr2']}"
    if f["stopped_by"]:
        text += f": {f['stopped_by']}"
    if "guard page" in f["regions"]["rsp"]:
        text += ": RSP is in the guard page below the boot stack (a stack overflow)"
    return text


def fault(doc: InspectionDoc) -> RenderableType:
    """The fault part: the exception, the walk of CR2, the regions, the backtrace."""
    f = doc["fault"]
    if f is None:
        return Text("Fault        none: the kernel recorded no fault or panic")
    grid = _grid()
    grid.add_row("what", fault_headline(f))
    if f["kind"] == "exception":
        grid.add_row("error code", f"{f['error_code']}: " + (", ".join(f["error"]) or "none"))
        grid.add_row("message", f["message"])
    for reg, value in (("cr2", f["cr2"]), ("rip", f["rip"]), ("rsp", f["rsp"])):
        grid.add_row(reg, f"{value} ({f['regions'][reg]})")
    grid.add_row("cr3", f["cr3"])
    if f["page_now"]:
        grid.add_row("page now", f["page_now"])
    if f["rip_bytes"]:
        grid.add_row("bytes at rip", f["rip_bytes"])
    for note in f["notes"]:
        grid.add_row("note", note)
    parts: list[RenderableType] = [grid]
    walk = f["cr2_walk"]
    if walk is not None:
        steps = Table(title=f"CR2 {walk['va']} under CR3 {f['cr3']}", title_justify="left")
        for col in ("level", "table", "index", "entry", "flags"):
            steps.add_column(col, overflow="fold")
        for s in walk["steps"]:
            steps.add_row(s["level"], s["table"], str(s["index"]), s["entry"], s["flags"])
        parts += [Text(""), steps]
    runs = [(where, len(list(same))) for where, same in groupby(f["backtrace"])]
    trace = [
        f"#{i:<2} {where}" + (f"  (x{n})" if n > 1 else "") for i, (where, n) in enumerate(runs)
    ]
    parts += [Text(""), Text("backtrace"), *(Text("  " + t) for t in trace)]
    return Group(*parts)


def aspaces(doc: InspectionDoc) -> RenderableType:
    """Each address space the kernel lists: its user ranges with effective permissions."""
    a = doc["address_spaces"]
    if a is None:
        return Text("Address spaces  none listed by the kernel")
    parts: list[RenderableType] = []
    for s in a["spaces"]:
        shared = {True: "kernel half shared", False: "OWN kernel half", None: "no kernel PML4"}
        title = (f"Address space {s['id']}: PML4 {s['pml4']}, {plural(s['user_pages'], 'user page')}, "
                 f"{shared[s['kernel_half_shared']]}")  # fmt: skip
        table = Table(title=title, title_justify="left")
        for col in ("start", "end", "phys", "size", "flags"):
            table.add_column(col, overflow="fold")
        for r in s["user_ranges"]:
            table.add_row(r["start"], r["end"], r["phys"], size_text(r["size"]), r["flags"])
        parts.append(table)
        if s["error"]:
            parts.append(Text(f"  walk: {s['error']}", style="red"))
    return Group(*parts)


def owners(acc: AccountingDoc) -> RenderableType:
    """Frames by owner, and the unaccounted ranges (leaks)."""
    grid = _grid()
    for owner, n in acc["by_owner"].items():
        grid.add_row(owner, f"{plural(n, 'frame')} ({size_text(n * PAGE_SIZE)})")
    items: list[RenderableType] = [
        Text(f"Frame owners ({acc['ownable_frames']} ownable frames)"),
        grid,
    ]
    for r in acc["unaccounted_ranges"]:
        items.append(Text(f"  leaked: {r['start']}-{r['end']} ({r['frames']} frames)", style="red"))
    return Group(*items)


def stack(st: FrameStackDoc) -> RenderableType:
    """The stack half of the free list: how much it holds, its top runs, what stopped a walk."""
    grid = _grid()
    grid.add_row("frame stack", f"{plural(st['runs'], 'run')}, {plural(st['frames'], 'frame')}")
    top = ", ".join(f"{start} ({count})" for start, count in st["run_list"][:8])
    if top:
        grid.add_row("top runs", top + (" ..." if st["runs"] > 8 else ""))
    for error in st["errors"]:
        grid.add_row("walk", Text(error, style="red"))
    return grid
