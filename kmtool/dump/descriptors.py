"""The descriptor tables a CPU was using: its IDT, GDT and TSS, read from the dump gate by gate and
descriptor by descriptor (docs/design.md §11).

The CPU state (kmtool.dump.cpu: IDTR, GDTR and TR from QEMU's note) gives each table's virtual
base and limit; the tables are read through that CPU's CR3 (physically when paging is off) and
decoded with the schemas of kmtool/schemas/descriptors.py, which the kernel's own tables are
generated from.

Which vectors: the 32 exception vectors, always. A dump records no exception chain (QEMU's log of
it belongs to the run, `kmtool run`'s outcome), and every chain that ends in a triple fault runs
through exception vectors only (#DF is 8), so showing all 32 shows each vector of any chain without
guessing at one. Each gate is decoded wherever its bytes are readable, also past the limit: a
table whose limit is too small still holds the gates it was meant to, and saying so tells a broken
limit from a broken table.

Untrusted input: IDTR and GDTR come from the dump. A non-canonical base, a limit wider than the
16 bits of the register, an unmapped page or one outside the dump is a sentence in the table's
`error`, never an exception, and the work is bounded by the 16-bit limit (at most 4096 gates or
8192 descriptors, of which 32 gates and `MAX_DESCRIPTORS_SHOWN` descriptors are decoded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kmtool.dump.cpu import CpuState
from kmtool.dump.document_descriptors import (
    DescriptorTablesDoc,
    GateDoc,
    GdtDoc,
    IdtDoc,
    IstDoc,
    SegmentDoc,
    TssDoc,
)
from kmtool.dump.levels import FOUR_LEVEL, MODES, PagingMode
from kmtool.dump.memory import PhysicalMemory
from kmtool.dump.translate import translate_many
from kmtool.layout.table import PAGE_SIZE, canonical, is_canonical, region_for
from kmtool.schemas.descriptors import (
    DESCRIPTOR_BYTES,
    DESCRIPTOR_CODE,
    DESCRIPTOR_S,
    EXCEPTION_VECTORS,
    FLAG_G,
    FLAG_L,
    GATE_PRESENT,
    GATE_TYPES,
    IDT_GATE_BYTES,
    IST_COUNT,
    SYSTEM_TYPES,
    IdtGate,
    SegmentDescriptor,
    SystemDescriptor,
    Tss,
)
from kmtool.schemas.fault import exception_mnemonic

MAX_LIMIT = 0xFFFF  # IDTR and GDTR limits are 16 bits
MAX_DESCRIPTORS_SHOWN = 256  # GDT rows decoded (of at most 8192)
TSS_BYTES = Tss.sizeof()
SELECTOR_RPL_TI = 7  # a selector's low bits: RPL (1:0) and TI (2); the rest is the index
NULL_TR = "TR is the null selector: no TSS is loaded (firmware runs so, all in ring 0, no IST)."

Locate = Callable[[int], str]  # a code address in words (function+offset and file:line)


@dataclass(frozen=True)
class Reader:
    """Reads a CPU's virtual addresses from the dump: through `root` (its CR3) in paging `mode`,
    or physically when paging is off (`root` None)."""

    memory: PhysicalMemory
    root: int | None
    mode: PagingMode = FOUR_LEVEL

    def canonical(self, va: int) -> bool:
        """True when `va` is canonical in the CPU's paging mode (48 or 57 bits)."""
        return is_canonical(va, self.mode.address_bits)

    def physical(self, va: int) -> int | None:
        """The physical address of `va`, or None when it is unmapped."""
        if self.root is None:
            return va
        phys, mapped = translate_many(
            self.memory, self.root, np.array([va], dtype=np.uint64), self.mode
        )
        return int(phys[0]) if mapped[0] else None

    def read(self, va: int, length: int, what: str) -> tuple[bytes, str | None]:
        """The bytes at `va` (length at most 64 KiB), or the readable first part of them and the
        sentence that says where reading stopped."""
        data = bytearray()
        while len(data) < length:
            at = va + len(data)
            if not self.canonical(at):
                return bytes(data), f"{what} reaches {hex(at)}, which is not canonical."
            chunk = min(length - len(data), PAGE_SIZE - at % PAGE_SIZE)
            pa = self.physical(at)
            if pa is None:
                return bytes(data), f"{what}: the page of {hex(at)} is not mapped under CR3."
            if not self.memory.contains(pa, chunk):
                return bytes(data), f"{what}: {hex(at)} is physical {hex(pa)}, outside the dump."
            data += self.memory.read(pa, chunk, what)
        return bytes(data), None


def _table_bounds(reader: Reader, name: str, base: int, limit: int) -> tuple[int, str | None]:
    """The limit to read by (at most 16 bits), and the sentences when the register is unusable."""
    said = []
    if limit > MAX_LIMIT:
        said.append(
            f"The {name} limit {hex(limit)} is wider than the register's 16 bits; the table was "
            f"read up to {hex(MAX_LIMIT)}."
        )
        limit = MAX_LIMIT
    if not reader.canonical(base):
        said.append(f"The {name} base {hex(base)} is not canonical, so nothing of it can be read.")
    return limit, " ".join(said) or None


# -- IDT -------------------------------------------------------------------------------------------


def read_idt(reader: Reader, base: int, limit: int, locate: Locate) -> IdtDoc:
    """The IDT at `base` with `limit`: how many gates fit and the gate of each exception vector."""
    limit, error = _table_bounds(reader, "IDT", base, limit)
    usable = reader.canonical(base)
    data, stopped = b"", None
    if usable:
        data, stopped = reader.read(
            base, EXCEPTION_VECTORS * IDT_GATE_BYTES, f"The IDT at {hex(base)}"
        )
    gates = [
        _gate(v, base if usable else None, limit, data, locate) for v in range(EXCEPTION_VECTORS)
    ]
    return {
        "base": hex(base),
        "limit": hex(limit),
        "gates_fit": (limit + 1) // IDT_GATE_BYTES,
        "error": error or stopped,
        "gates": gates,
    }


def _gate(vector: int, base: int | None, limit: int, data: bytes, locate: Locate) -> GateDoc:
    offset = vector * IDT_GATE_BYTES
    doc: GateDoc = {
        "vector": vector, "name": exception_mnemonic(vector),
        "address": None if base is None else hex(canonical(base + offset)),
        "within_limit": offset + IDT_GATE_BYTES - 1 <= limit,
        "readable": len(data) >= offset + IDT_GATE_BYTES, "present": None, "type": None,
        "dpl": None, "selector": None, "ist": None, "handler": None, "handler_where": None,
    }  # fmt: skip
    if not doc["readable"]:
        return doc
    g = IdtGate.parse(data[offset : offset + IDT_GATE_BYTES])
    handler = g.offset_low | g.offset_mid << 16 | g.offset_high << 32
    kind = g.type_attr & 0xF
    doc["present"] = bool(g.type_attr & GATE_PRESENT)
    doc["type"] = GATE_TYPES.get(kind, f"type {kind:#x}")
    doc["dpl"] = (g.type_attr >> 5) & 3
    doc["selector"] = hex(g.selector)
    doc["ist"] = g.ist & 7
    doc["handler"] = hex(handler)
    doc["handler_where"] = locate(handler)
    return doc


# -- GDT -------------------------------------------------------------------------------------------


def read_gdt(reader: Reader, base: int, limit: int) -> GdtDoc:
    """The GDT at `base` with `limit`, descriptor by descriptor (a system descriptor's two slots
    as one row), at most MAX_DESCRIPTORS_SHOWN rows."""
    limit, error = _table_bounds(reader, "GDT", base, limit)
    entries = (limit + 1) // DESCRIPTOR_BYTES
    rows: list[SegmentDoc] = []
    if reader.canonical(base):
        length = min(entries, MAX_DESCRIPTORS_SHOWN) * DESCRIPTOR_BYTES
        data, stopped = reader.read(base, length, f"The GDT at {hex(base)}")
        error = error or stopped
        slot = 0
        while (slot + 1) * DESCRIPTOR_BYTES <= len(data):
            row, width = _descriptor(slot, data)
            rows.append(row)
            slot += width
    return {"base": hex(base), "limit": hex(limit), "entries": entries,
            "error": error, "descriptors": rows}  # fmt: skip


def _descriptor(slot: int, data: bytes) -> tuple[SegmentDoc, int]:
    """The descriptor at `slot` and how many 8-byte slots it takes (2 for a whole system one)."""
    at = slot * DESCRIPTOR_BYTES
    d = SegmentDescriptor.parse(data[at : at + DESCRIPTOR_BYTES])
    raw = int.from_bytes(data[at : at + DESCRIPTOR_BYTES], "little")
    base = d.base_low | d.base_mid << 16 | d.base_high << 24
    limit = d.limit_low | (d.limit_high_flags & 0xF) << 16
    if d.limit_high_flags & FLAG_G:
        limit = limit << 12 | 0xFFF
    width, kind = 1, _segment_kind(d.access, d.limit_high_flags)
    if raw and not d.access & DESCRIPTOR_S:
        whole = at + SystemDescriptor.sizeof()
        if len(data) >= whole:
            s = SystemDescriptor.parse(data[at:whole])
            base |= s.base_upper << 32
            raw = int.from_bytes(data[at:whole], "little")
            width = 2
        else:
            kind += " (its upper half is past the limit)"
    row: SegmentDoc = {
        "selector": hex(at), "kind": kind, "present": bool(d.access & GATE_PRESENT),
        "dpl": (d.access >> 5) & 3, "base": hex(base), "limit": hex(limit), "raw": hex(raw),
    }  # fmt: skip
    return row, width


def _segment_kind(access: int, flags: int) -> str:
    if access == 0 and flags == 0:
        return "null"
    if not access & DESCRIPTOR_S:
        return SYSTEM_TYPES.get(access & 0xF, f"system type {access & 0xF:#x}")
    if access & DESCRIPTOR_CODE:
        return "64-bit code" if flags & FLAG_L else "code"
    return "data"


# -- TSS -------------------------------------------------------------------------------------------


def read_tss(reader: Reader, tr: tuple[int, int, int], gates: list[GateDoc], ours: bool) -> TssDoc:
    """The 64-bit TSS that TR names: RSP0-2 and each IST stack a gate selects or that is set,
    with whether the byte below its top is mapped and its layout region (`ours`: our kernel)."""
    selector, base, limit = tr
    doc: TssDoc = {"selector": hex(selector), "base": hex(base), "limit": hex(limit),
                   "error": None, "rsp": [], "ist": [], "iomap_base": None}  # fmt: skip
    if not selector & ~SELECTOR_RPL_TI:
        doc["error"] = NULL_TR
        return doc
    if limit + 1 < TSS_BYTES:
        doc["error"] = (
            f"TR {hex(selector)} has limit {hex(limit)}, smaller than a 64-bit TSS "
            f"({TSS_BYTES} bytes); it is not read."
        )
        return doc
    data, stopped = (b"", None) if not reader.canonical(base) else reader.read(
        base, TSS_BYTES, f"The TSS at {hex(base)}"
    )  # fmt: skip
    if len(data) < TSS_BYTES:
        doc["error"] = stopped or f"The TSS base {hex(base)} (TR {hex(selector)}) is not canonical."
        return doc
    t = Tss.parse(data)
    doc["rsp"] = [hex(r) for r in t.rsp]
    doc["iomap_base"] = t.iomap_base
    for index in range(1, IST_COUNT + 1):
        used = [g["vector"] for g in gates if g["ist"] == index and g["within_limit"]]
        top = t.ist[index - 1]
        if top or used:
            doc["ist"].append(_ist(reader, index, top, used, ours))
    return doc


def _ist(reader: Reader, index: int, top: int, used: list[int], ours: bool) -> IstDoc:
    below = (top - 1) % (1 << 64)
    pa = reader.physical(below) if top and reader.canonical(below) else None
    mapped = pa is not None and reader.memory.contains(pa, 1)
    region = region_for(canonical(below)) if ours and top else None
    return {"index": index, "top": hex(top), "mapped": mapped,
            "region": None if region is None else region.name, "used_by": used}  # fmt: skip


# -- all of one CPU --------------------------------------------------------------------------------


def read_descriptor_tables(
    memory: PhysicalMemory, cpus: list[CpuState], locate: Locate, ours: bool
) -> list[DescriptorTablesDoc]:
    """The IDT, GDT and TSS of every CPU whose IDTR the dump records (QEMU's note), each read
    through that CPU's CR3. Never raises on what the dump holds: a table that cannot be read says
    why in its `error`."""
    out: list[DescriptorTablesDoc] = []
    for cpu in cpus:
        if cpu.idt is None or cpu.gdt is None:
            continue
        mode = cpu.paging_mode
        root = None if mode == "off" else cpu.page_table_root
        if mode not in ("off", *MODES) or root is None:
            out.append(_unreadable(cpu, f"CPU {cpu.index} uses {mode} paging; kmtool reads "
                                        "the tables of 4- and 5-level paging (or none)."))  # fmt: skip
            continue
        reader = Reader(memory, root, MODES.get(mode, FOUR_LEVEL))
        idt = read_idt(reader, *cpu.idt, locate)
        tss = None if cpu.tr is None else read_tss(reader, cpu.tr, idt["gates"], ours)
        out.append({"cpu": cpu.index, "idt": idt, "gdt": read_gdt(reader, *cpu.gdt), "tss": tss})
    return out


def _unreadable(cpu: CpuState, why: str) -> DescriptorTablesDoc:
    assert cpu.idt is not None and cpu.gdt is not None
    idt_base, idt_limit = cpu.idt
    gdt_base, gdt_limit = cpu.gdt
    return {
        "cpu": cpu.index,
        "idt": {"base": hex(idt_base), "limit": hex(idt_limit), "error": why,
                "gates_fit": (min(idt_limit, MAX_LIMIT) + 1) // IDT_GATE_BYTES, "gates": []},
        "gdt": {"base": hex(gdt_base), "limit": hex(gdt_limit), "error": why,
                "entries": (min(gdt_limit, MAX_LIMIT) + 1) // DESCRIPTOR_BYTES, "descriptors": []},
        "tss": None,
    }  # fmt: skip
