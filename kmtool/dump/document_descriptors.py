"""The descriptor-table part of the `kmtool inspect --json` document (kmtool.dump.descriptors):
the IDT, GDT and TSS of each CPU. Declared beside kmtool.dump.document, which holds the rest, and
read by the renderer and the checks through these types. Addresses are "0x..." strings. A leaf
module, without `from __future__ import annotations` (see kmtool.dump.document).
"""

from typing import TypedDict


class GateDoc(TypedDict):
    """One IDT gate of an exception vector, decoded from the dump whether or not the IDT's limit
    covers it (the bytes past a too-small limit still say what the table was meant to hold)."""

    vector: int
    name: str  # "#BP", or "vector 22"
    address: str | None  # the gate's virtual address; null when the IDT base is unusable
    within_limit: bool  # the CPU reads this gate (16 x vector + 15 <= limit)
    readable: bool  # its 16 bytes are mapped under CR3 and inside the dump
    present: bool | None  # type_attr bit 7; null when unreadable
    type: str | None  # "interrupt gate", "trap gate" or "type 0x.." (not a 64-bit gate)
    dpl: int | None
    selector: str | None
    ist: int | None  # 0 (no stack switch) or 1-7
    handler: str | None  # the handler's address
    handler_where: str | None  # function+offset (file:line) with --kernel, else the address


class IdtDoc(TypedDict):
    base: str
    limit: str
    gates_fit: int  # (limit + 1) // 16: vectors 0 .. gates_fit - 1 are covered
    error: str | None  # why the gates could not all be read (a sentence), or null
    gates: list[GateDoc]  # the 32 exception vectors


class SegmentDoc(TypedDict):
    """One GDT descriptor (a system descriptor's two slots are one row)."""

    selector: str
    kind: str  # "null", "64-bit code", "code", "data", "64-bit TSS (busy)", "LDT", ...
    present: bool
    dpl: int
    base: str
    limit: str  # in bytes (scaled by G)
    raw: str  # the 8 (or 16) bytes as one hex number


class GdtDoc(TypedDict):
    base: str
    limit: str
    entries: int  # (limit + 1) // 8 slots
    error: str | None
    descriptors: list[SegmentDoc]  # at most descriptors.MAX_DESCRIPTORS_SHOWN rows


class IstDoc(TypedDict):
    """One interrupt stack of the TSS, named by a gate or set (non-zero)."""

    index: int  # 1-7
    top: str  # the stack pointer the CPU loads (the first push goes below it)
    mapped: bool  # the byte below `top` is mapped under CR3 and inside the dump
    region: str | None  # the layout region of that byte (our kernel only)
    used_by: list[int]  # exception vectors whose gate selects this IST


class TssDoc(TypedDict):
    selector: str  # TR
    base: str  # TR's base (what the CPU uses, from its descriptor cache)
    limit: str
    error: str | None
    rsp: list[str]  # RSP0-RSP2
    ist: list[IstDoc]
    iomap_base: int | None


class DescriptorTablesDoc(TypedDict):
    """The IDT, GDT and TSS one CPU was using, read from the dump through its CR3."""

    cpu: int
    idt: IdtDoc
    gdt: GdtDoc
    tss: TssDoc | None  # null when the dump records no task register
