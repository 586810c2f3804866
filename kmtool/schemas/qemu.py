"""What QEMU's `dump-guest-memory` writes into the PT_NOTE segment of an x86-64 ELF core.

For every virtual CPU QEMU emits two notes, in this order (QEMU 7.2, target/i386/arch_dump.c):

1. name "CORE", type NT_PRSTATUS: an `ElfPrstatusX86_64` (the Linux `struct elf_prstatus` layout, 336
   bytes) when the first CPU was in long mode; `pr_pid` holds the CPU number (from 1).
2. name "QEMU", type 0: a `QemuCpuState` (struct QEMUCPUState). Version 1 is 432 bytes and ends with
   cr[0..4]; QEMU appends optional fields at the end without bumping the version, so a reader tells them
   apart by `size` (QEMU 7.2 writes 440 bytes: `kernel_gs_base` was added).

Note headers are `Elf64Nhdr`; the name and the descriptor are each padded to 4 bytes. All fields are
little-endian (QEMU converts nothing: it copies host structs, and every x86 host is little-endian).
"""

from construct import Array, Bytes, If, Int32ul, Int64ul, Struct, this

NT_PRSTATUS = 1
QEMU_NOTE_NAME = "QEMU"
QEMU_NOTE_TYPE = 0
CORE_NOTE_NAME = "CORE"
QEMU_CPU_STATE_VERSION = 1

Elf64Nhdr = Struct(
    "n_namesz" / Int32ul * "bytes of the name including its NUL (5 for 'QEMU' and 'CORE')",
    "n_descsz" / Int32ul * "bytes of the descriptor, without padding",
    "n_type" / Int32ul * "NT_PRSTATUS (1) for CORE, 0 for QEMU",
)

QemuCpuSegment = Struct(
    "selector" / Int32ul * "segment selector",
    "limit" / Int32ul * "segment limit from the hidden descriptor cache",
    "flags" / Int32ul * "descriptor flags (access byte at bits 8-15, L/D/G above)",
    "pad" / Int32ul * "zero",
    "base" / Int64ul * "segment base (GDTR/IDTR base for gdt and idt)",
)

_SEGMENTS = ("cs", "ds", "es", "fs", "gs", "ss", "ldt", "tr", "gdt", "idt")

QemuCpuStateV1 = Struct(
    "version" / Int32ul * "QEMUCPUSTATE_VERSION, 1",
    "size" / Int32ul * "sizeof(QEMUCPUState) as this QEMU built it; optional fields follow cr[]",
    "rax" / Int64ul,
    "rbx" / Int64ul,
    "rcx" / Int64ul,
    "rdx" / Int64ul,
    "rsi" / Int64ul,
    "rdi" / Int64ul,
    "rsp" / Int64ul,
    "rbp" / Int64ul,
    "r8" / Int64ul,
    "r9" / Int64ul,
    "r10" / Int64ul,
    "r11" / Int64ul,
    "r12" / Int64ul,
    "r13" / Int64ul,
    "r14" / Int64ul,
    "r15" / Int64ul,
    "rip" / Int64ul * "instruction pointer",
    "rflags" / Int64ul * "flags register",
    *[name / QemuCpuSegment for name in _SEGMENTS],
    "cr" / Array(5, Int64ul) * "CR0 to CR4 (cr[1] is always 0); cr[3] is the page-table root",
)

#: Bytes of version 1 without optional fields: everything up to and including cr[4].
QEMU_CPU_STATE_V1_SIZE = QemuCpuStateV1.sizeof()

QemuCpuState = Struct(
    *QemuCpuStateV1.subcons,
    "kernel_gs_base"
    / If(this.size >= QEMU_CPU_STATE_V1_SIZE + 8, Int64ul)
    * "IA32_KERNEL_GS_BASE (optional; QEMU 5.0 and later, None when absent)",
)

X86_64UserRegs = Struct(
    "r15" / Int64ul,
    "r14" / Int64ul,
    "r13" / Int64ul,
    "r12" / Int64ul,
    "rbp" / Int64ul,
    "rbx" / Int64ul,
    "r11" / Int64ul,
    "r10" / Int64ul,
    "r9" / Int64ul,
    "r8" / Int64ul,
    "rax" / Int64ul,
    "rcx" / Int64ul,
    "rdx" / Int64ul,
    "rsi" / Int64ul,
    "rdi" / Int64ul,
    "orig_rax" / Int64ul * "0 in QEMU dumps",
    "rip" / Int64ul,
    "cs" / Int64ul * "selector",
    "eflags" / Int64ul,
    "rsp" / Int64ul,
    "ss" / Int64ul * "selector",
    "fs_base" / Int64ul,
    "gs_base" / Int64ul,
    "ds" / Int64ul * "selector",
    "es" / Int64ul * "selector",
    "fs" / Int64ul * "selector",
    "gs" / Int64ul * "selector",
)

ElfPrstatusX86_64 = Struct(
    "pad1" / Bytes(32) * "signal info and current signal; zero in QEMU dumps",
    "pr_pid" / Int32ul * "QEMU writes the CPU number here, counting from 1",
    "pad2" / Bytes(76) * "ppid, pgrp, sid and times; zero in QEMU dumps",
    "pr_reg" / X86_64UserRegs * "general registers (struct user_regs_struct)",
    "pad3" / Bytes(8) * "pr_fpvalid and padding",
)
