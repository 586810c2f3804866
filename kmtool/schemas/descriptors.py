"""x86-64 descriptor tables: IDT gates, GDT descriptors and the 64-bit TSS (docs/design.md §11).

Intel SDM vol. 3: 6.14.1 (64-bit IDT gate), 3.4.5 (segment descriptor), 8.2.3 and 7.7 (the 64-bit
TSS and its 16-byte descriptor). The kernel builds its tables with these structs (C
`struct km_idt_gate`, `struct km_system_descriptor`, `struct km_tss`, generated into
include/km/structs.h), and `kmtool inspect` decodes the tables of a dump with the same schemas
(kmtool/dump/descriptors.py). All fields are little-endian.

An 8-byte `SegmentDescriptor` is a code or data segment (access bit 4, S, set); a system
descriptor (S clear: a TSS or an LDT) takes 16 bytes in long mode, a `SystemDescriptor`, whose
second half holds the base's upper 32 bits. The TSS's RSP and IST fields are unaligned (at offset
4), so `struct km_tss` is packed.
"""

from construct import Array, Int8ul, Int16ul, Int32ul, Int64ul, Struct

IdtGate = Struct(
    "offset_low" / Int16ul * "handler address bits 15:0",
    "selector" / Int16ul * "code segment selector the handler runs with",
    "ist" / Int8ul * "bits 2:0: the IST stack (1-7) to switch to, 0 for none; bits 7:3 zero",
    "type_attr" / Int8ul * "bit 7 present, bits 6:5 DPL, bits 3:0 type (0xe interrupt, 0xf trap)",
    "offset_mid" / Int16ul * "handler address bits 31:16",
    "offset_high" / Int32ul * "handler address bits 63:32",
    "reserved" / Int32ul * "zero",
)

SegmentDescriptor = Struct(
    "limit_low" / Int16ul * "segment limit bits 15:0",
    "base_low" / Int16ul * "segment base bits 15:0",
    "base_mid" / Int8ul * "segment base bits 23:16",
    "access" / Int8ul * "bit 7 present, bits 6:5 DPL, bit 4 S (code/data), bits 3:0 type",
    "limit_high_flags"
    / Int8ul
    * "bits 3:0 limit bits 19:16; bit 7 G, bit 6 D/B, bit 5 L, bit 4 AVL",
    "base_high" / Int8ul * "segment base bits 31:24",
)

SystemDescriptor = Struct(
    *SegmentDescriptor.subcons,
    "base_upper" / Int32ul * "segment base bits 63:32 (long-mode system descriptors only)",
    "reserved" / Int32ul * "zero (bits 12:8 must be zero, the type of no descriptor)",
)

IST_COUNT = 7

Tss = Struct(
    "reserved0" / Int32ul * "zero",
    "rsp" / Array(3, Int64ul) * "RSP0-RSP2: the stack loaded on a change to privilege level 0-2",
    "reserved1" / Int64ul * "zero",
    "ist" / Array(IST_COUNT, Int64ul) * "IST1-IST7: stack tops a gate's IST field selects",
    "reserved2" / Int64ul * "zero",
    "reserved3" / Int16ul * "zero",
    "iomap_base" / Int16ul * "offset of the I/O permission bitmap; sizeof(struct km_tss): none",
)

IDT_GATE_BYTES = 16  # IdtGate.sizeof(); a 64-bit IDT holds (limit + 1) / 16 gates
DESCRIPTOR_BYTES = 8  # SegmentDescriptor.sizeof(); selectors step by 8
EXCEPTION_VECTORS = 32  # vectors 0-31 are the CPU's exceptions (SDM vol. 3, 6.3.1)

GATE_PRESENT = 0x80  # type_attr and access bit 7
GATE_TYPES = {0xE: "interrupt gate", 0xF: "trap gate"}  # the 64-bit gate types
#: type_attr of the kernel's gates: present, DPL 0, 64-bit interrupt gate.
GATE_ATTR_INTERRUPT = 0x8E
DESCRIPTOR_S = 0x10  # access bit 4: a code or data segment (clear: a system descriptor)
DESCRIPTOR_CODE = 0x08  # access type bit 3 of a code or data segment: code
FLAG_L = 0x20  # limit_high_flags bit 5: a 64-bit code segment
FLAG_G = 0x80  # limit_high_flags bit 7: the limit counts 4 KiB units
#: System descriptor types in long mode (access bits 3:0).
SYSTEM_TYPES = {0x2: "LDT", 0x9: "64-bit TSS (available)", 0xB: "64-bit TSS (busy)"}
#: access byte of the kernel's TSS descriptor: present, DPL 0, 64-bit TSS (available).
TSS_ACCESS_AVAILABLE = 0x89
