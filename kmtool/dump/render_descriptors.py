"""Drawing the descriptor tables of an inspection (`--part descriptors`, and the summary's line):
each CPU's IDT with the gate of every exception vector, its GDT and its TSS with the IST stacks
(docs/design.md §11). Same conventions as kmtool.dump.render, which registers these."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from kmtool.dump.document import InspectionDoc
from kmtool.dump.document_descriptors import DescriptorTablesDoc, GateDoc, TssDoc
from kmtool.schemas.descriptors import EXCEPTION_VECTORS
from kmtool.units import plural

ADDRESS_WIDTH = 18  # "0x" and 16 hex digits: a column that holds one never folds it


def headline(d: DescriptorTablesDoc) -> str:
    """The summary's line for one CPU: what is wrong with its tables first, else their shape."""
    idt, gdt, tss = d["idt"], d["gdt"], d["tss"]
    fit = idt["gates_fit"]
    if fit < EXCEPTION_VECTORS:
        first = f"vector {fit}" if fit == EXCEPTION_VECTORS - 1 else f"vectors {fit}-31"
        meant = [g for g in idt["gates"][fit:] if g["present"]]
        text = f"IDT limit {idt['limit']}: {first} beyond the IDT limit"
        if meant and len(meant) == EXCEPTION_VECTORS - fit:
            text += "; their gates in memory are present, so the limit is wrong, not the table"
        return text
    absent = [g["vector"] for g in idt["gates"] if not g["present"]]
    if idt["error"] is not None:
        return f"IDT at {idt['base']}: {idt['error']}"
    text = f"IDT {idt['base']} limit {idt['limit']} ({plural(fit, 'gate')})"
    if absent:
        text += f", {plural(len(absent), 'exception gate')} not present"
    text += f"; GDT {gdt['base']} limit {gdt['limit']} ({plural(gdt['entries'], 'slot')})"
    if tss is not None:
        text += f"; TSS {tss['base']} (TR {tss['selector']})" + _ists(tss)
    return text


def _ists(tss: TssDoc) -> str:
    if tss["error"] is not None:
        return f": {tss['error']}"
    stacks = [f"IST{i['index']} {'mapped' if i['mapped'] else 'NOT mapped'}" for i in tss["ist"]]
    return "" if not stacks else ", " + ", ".join(stacks)


def descriptors(doc: InspectionDoc) -> RenderableType:
    """Every CPU's IDT (the 32 exception gates), GDT and TSS."""
    if not doc["descriptors"]:
        return Text("Descriptor tables: none (the dump records no IDTR: a raw image).", style="dim")
    items: list[RenderableType] = []
    for d in doc["descriptors"]:
        if items:
            items.append(Text(""))
        items += [Text(f"CPU {d['cpu']}: {headline(d)}", style="italic"), _idt(d), Text("")]
        items += [_gdt(d), Text(""), _tss(d["tss"])]
    return Group(*items)


def _idt(d: DescriptorTablesDoc) -> RenderableType:
    idt = d["idt"]
    title = (f"IDT at {idt['base']}, limit {idt['limit']}: {plural(idt['gates_fit'], 'gate')} "
             "fit; the exception vectors (inside: within the limit)")  # fmt: skip
    table = Table(title=title, title_justify="left")
    for col in ("vector", "inside", "present", "type", "dpl", "ist"):
        table.add_column(col, overflow="fold")
    table.add_column("handler", overflow="fold", min_width=ADDRESS_WIDTH)
    for g in idt["gates"]:
        name = "" if g["name"].startswith("vector") else f" {g['name']}"
        table.add_row(f"{g['vector']}{name}", _yes(g["within_limit"]), *_gate_cells(g))
    parts: list[RenderableType] = [table]
    if idt["error"] is not None:
        parts.append(Text(f"  {idt['error']}", style="red"))
    return Group(*parts)


def _gate_cells(g: GateDoc) -> list[str]:
    if not g["readable"]:
        return ["unreadable", "-", "-", "-", "-"]
    return [_yes(g["present"]), (g["type"] or "-").removesuffix(" gate"), str(g["dpl"]), str(g["ist"] or "-"),
            g["handler_where"] or "-"]  # fmt: skip


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def _gdt(d: DescriptorTablesDoc) -> RenderableType:
    gdt = d["gdt"]
    title = f"GDT at {gdt['base']}, limit {gdt['limit']} ({plural(gdt['entries'], 'slot')})"
    table = Table(title=title, title_justify="left")
    for col in ("sel", "kind", "present", "dpl"):
        table.add_column(col, overflow="fold")
    table.add_column("base", overflow="fold", min_width=ADDRESS_WIDTH)
    table.add_column("limit", overflow="fold")
    for r in gdt["descriptors"]:
        present = "-" if r["kind"] == "null" else _yes(r["present"])
        table.add_row(r["selector"], r["kind"], present, str(r["dpl"]), r["base"], r["limit"])
    parts: list[RenderableType] = [table]
    if len(gdt["descriptors"]) and gdt["entries"] > len(gdt["descriptors"]) + 1:
        parts.append(Text(f"  (the first {len(gdt['descriptors'])} descriptors are shown)"))
    if gdt["error"] is not None:
        parts.append(Text(f"  {gdt['error']}", style="red"))
    return Group(*parts)


def _tss(tss: TssDoc | None) -> RenderableType:
    if tss is None:
        return Text("TSS: the dump records no task register.", style="dim")
    title = f"TSS at {tss['base']} (TR {tss['selector']}, limit {tss['limit']})"
    if tss["error"] is not None:
        return Text(f"{title}: {tss['error']}", style="red")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for i, rsp in enumerate(tss["rsp"]):
        grid.add_row(f"rsp{i}", rsp)
    for ist in tss["ist"]:
        where = "mapped" if ist["mapped"] else "NOT mapped"
        if ist["region"]:
            where += f", in {ist['region']}"
        users = ", ".join(str(v) for v in ist["used_by"]) or "no gate inside the limit"
        grid.add_row(f"ist{ist['index']}", f"{ist['top']} ({where}; for {users})")
    return Group(Text(title), grid)
