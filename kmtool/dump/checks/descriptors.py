"""Checks of the descriptor tables each CPU was using (kmtool.dump.descriptors; docs/design.md
§11): the IDT covers the exception vectors, their gates are present 64-bit gates, the IST stacks
they select are set and mapped, and TR names the GDT's TSS descriptor. They read the document of
the decoded tables, so a table that could not be read fails its check with the decoder's sentence.
"""

from __future__ import annotations

from kmtool.dump.checks.common import Verdict, problems
from kmtool.dump.descriptors import NULL_TR
from kmtool.dump.document_descriptors import DescriptorTablesDoc, GateDoc
from kmtool.schemas.descriptors import EXCEPTION_VECTORS, GATE_TYPES, IDT_GATE_BYTES
from kmtool.schemas.fault import CONFIDENTIAL_GUEST_VECTORS, exception_mnemonic
from kmtool.units import plural

NEEDED_LIMIT = EXCEPTION_VECTORS * IDT_GATE_BYTES - 1  # 0x1ff


def vector_span(vectors: list[int]) -> str:
    """`vectors 0-31`, `vector 3` or `vectors 3, 8` (runs of consecutive vectors joined)."""
    runs: list[list[int]] = []
    for v in vectors:
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    text = ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)
    return f"vector{'s' if len(vectors) > 1 else ''} {text}"


def idt_covers_exceptions(descriptors: list[DescriptorTablesDoc]) -> Verdict:
    """Every CPU's IDT limit covers the 32 exception gates (limit >= 0x1ff)."""
    bad = []
    for d in descriptors:
        idt = d["idt"]
        fit = idt["gates_fit"]
        if fit < EXCEPTION_VECTORS:
            beyond = vector_span(list(range(fit, EXCEPTION_VECTORS)))
            bad.append(
                f"CPU {d['cpu']}: the IDT at {idt['base']} has limit {idt['limit']}, room for "
                f"{fit} gates: {beyond} are beyond it (the exceptions need limit "
                f"{hex(NEEDED_LIMIT)})"
            )
    fits = ", ".join(f"CPU {d['cpu']} limit {d['idt']['limit']}" for d in descriptors)
    return problems(bad, f"{fits}: all {EXCEPTION_VECTORS} exception gates are inside")


def _gate_fault(g: GateDoc, limit: str, base: str) -> str | None:
    """Why the CPU cannot deliver through gate `g`, or None."""
    if not g["within_limit"]:
        return f"beyond the IDT limit {limit}"
    if not g["readable"]:
        return f"unreadable at {g['address'] or base}"
    if not g["present"]:
        return "not present"
    if g["type"] not in GATE_TYPES.values():
        return f"{g['type']}, not a 64-bit interrupt or trap gate"
    return None


def exception_gates_present(descriptors: list[DescriptorTablesDoc]) -> Verdict:
    """Every exception vector's gate is inside the limit, readable, present and a 64-bit gate;
    the vectors that fail for the same reason are named together."""
    bad = []
    for d in descriptors:
        idt = d["idt"]
        if not idt["gates"]:
            bad.append(f"CPU {d['cpu']}: the IDT at {idt['base']} cannot be read: {idt['error']}")
            continue
        why: dict[str, list[int]] = {}
        for g in idt["gates"]:
            fault = _gate_fault(g, idt["limit"], idt["base"])
            if fault is not None:
                why.setdefault(fault, []).append(g["vector"])
        bad += [f"CPU {d['cpu']}: {vector_span(vs)} {text}" for text, vs in why.items()]
    return problems(bad, f"all {EXCEPTION_VECTORS} present, on {plural(len(descriptors), 'CPU')}")


def ist_stacks_mapped(descriptors: list[DescriptorTablesDoc]) -> Verdict:
    """Every IST stack a gate selects is set, and every set one is mapped below its top; but one
    selected only by vectors a confidential guest alone raises (Linux maps its #VC stacks only in
    an SEV-ES guest) is named in the pass, not failed: outside such a guest nothing takes it."""
    bad, good = [], []
    for d in descriptors:
        tss = d["tss"]
        if tss is None:
            continue
        used = sorted({g["ist"] for g in d["idt"]["gates"] if g["ist"] and g["within_limit"]})
        if tss["error"] is not None:
            if used:
                ists = ", ".join(f"IST{i}" for i in used)
                bad.append(f"CPU {d['cpu']}: exception gates select {ists}, but {tss['error']}")
            continue
        for ist in tss["ist"]:
            name = f"CPU {d['cpu']} IST{ist['index']} (top {ist['top']})"
            users = "" if not ist["used_by"] else f", for {vector_span(ist['used_by'])}"
            unused = _unused_outside_confidential_guests(ist["used_by"])
            if unused and (int(ist["top"], 16) == 0 or not ist["mapped"]):
                good.append(f"IST{ist['index']} not mapped, {unused}")
            elif int(ist["top"], 16) == 0:
                bad.append(f"{name} is 0{users}")
            elif not ist["mapped"]:
                bad.append(f"{name} is not mapped below its top{users}")
            else:
                good.append(f"IST{ist['index']} {ist['region'] or 'mapped'}")
    return problems(bad, ", ".join(good) or "no IST stack set or selected")


def _unused_outside_confidential_guests(vectors: list[int]) -> str | None:
    """`only #VC (29) selects it, raised only in an SEV-ES guest` when every one of `vectors` is
    a confidential guest's own (CONFIDENTIAL_GUEST_VECTORS), else None (also for no vectors)."""
    if not vectors or any(v not in CONFIDENTIAL_GUEST_VECTORS for v in vectors):
        return None
    named = " and ".join(f"{exception_mnemonic(v)} ({v})" for v in vectors)
    guests = " or ".join(sorted({CONFIDENTIAL_GUEST_VECTORS[v] for v in vectors}))
    return f"only {named} select{'s' if len(vectors) == 1 else ''} it, raised only in {guests}"


def tss_descriptor_matches(descriptors: list[DescriptorTablesDoc]) -> Verdict:
    """TR's selector names a 64-bit TSS descriptor of the GDT whose base is TR's base."""
    bad, null = [], []
    for d in descriptors:
        tss = d["tss"]
        if tss is None or tss["error"] == NULL_TR:
            null += [] if tss is None else [d["cpu"]]
            continue
        rows = {r["selector"]: r for r in d["gdt"]["descriptors"]}
        row = rows.get(hex(int(tss["selector"], 16) & ~7))
        if row is None:
            bad.append(f"CPU {d['cpu']}: TR {tss['selector']} is past the GDT's decoded entries")
        elif "TSS" not in row["kind"] or row["base"] != tss["base"]:
            bad.append(
                f"CPU {d['cpu']}: TR {tss['selector']} (base {tss['base']}) names a "
                f"{row['kind']} descriptor with base {row['base']}"
            )
    if null and len(null) == len(descriptors):
        return Verdict(True, f"not applicable: {NULL_TR}")
    return problems(bad, "TR names the GDT's 64-bit TSS descriptor")
