"""Descriptor tables for the synthetic dumps, built with the schemas of
kmtool/schemas/descriptors.py the way kernel/arch/x86_64/gdt.c and idt.c build theirs: 256
interrupt gates (NMI, #DF and #MC on IST1), a GDT of null, kernel code and data, user data and
code and a 16-byte TSS descriptor at selector 0x28, and a TSS whose IST1 is set.

The values are computed here, without kmtool's decoders, so a decoder bug cannot hide in both.
"""

from __future__ import annotations

from kmtool.schemas.descriptors import (
    GATE_ATTR_INTERRUPT,
    IDT_GATE_BYTES,
    IST_COUNT,
    TSS_ACCESS_AVAILABLE,
    IdtGate,
    SystemDescriptor,
    Tss,
)

GATES = 256
IDT_LIMIT = GATES * IDT_GATE_BYTES - 1  # 0xfff, as idt.c loads it
IST1_VECTORS = (2, 8, 18)
TSS_SELECTOR = 0x28
TSS_LIMIT = Tss.sizeof() - 1  # 0x67
# Null, kernel code (L=1), kernel data, user data, user code: the words gdt.c starts from.
SEGMENTS = (0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF, 0x00CFF2000000FFFF, 0x00AFFA000000FFFF)
GDT_LIMIT = (len(SEGMENTS) + 2) * 8 - 1  # 0x37


def gate(handler: int, ist: int = 0, type_attr: int = GATE_ATTR_INTERRUPT) -> bytes:
    """One 64-bit gate to `handler` with code selector 0x08."""
    return IdtGate.build(
        {
            "offset_low": handler & 0xFFFF,
            "selector": 0x08,
            "ist": ist,
            "type_attr": type_attr,
            "offset_mid": (handler >> 16) & 0xFFFF,
            "offset_high": handler >> 32,
            "reserved": 0,
        }
    )


def handler(text_base: int, vector: int) -> int:
    """The fixture's handler address of `vector` (a 16-byte stub each, like isr.S)."""
    return text_base + 0x100 + 16 * min(vector, 32)


def idt(text_base: int) -> bytes:
    """The whole 256-gate IDT."""
    return b"".join(
        gate(handler(text_base, v), 1 if v in IST1_VECTORS else 0) for v in range(GATES)
    )


def gdt(tss_base: int) -> bytes:
    """The GDT with the TSS descriptor of `tss_base` (busy, as the CPU marks it on `ltr`)."""
    tss = SystemDescriptor.build(
        {
            "limit_low": TSS_LIMIT,
            "base_low": tss_base & 0xFFFF,
            "base_mid": (tss_base >> 16) & 0xFF,
            "access": TSS_ACCESS_AVAILABLE | 0x2,  # busy
            "limit_high_flags": 0,
            "base_high": (tss_base >> 24) & 0xFF,
            "base_upper": tss_base >> 32,
            "reserved": 0,
        }
    )
    return b"".join(word.to_bytes(8, "little") for word in SEGMENTS) + tss


def tss(ist1_top: int, *more: int) -> bytes:
    """The TSS with IST1 set to `ist1_top` (and IST2... to `more`) and no I/O bitmap."""
    return Tss.build(
        {
            "reserved0": 0,
            "rsp": [0, 0, 0],
            "reserved1": 0,
            "ist": [ist1_top, *more] + [0] * (IST_COUNT - 1 - len(more)),
            "reserved2": 0,
            "reserved3": 0,
            "iomap_base": Tss.sizeof(),
        }
    )
