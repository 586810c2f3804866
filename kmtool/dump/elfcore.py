"""QEMU ELF cores (`dump-guest-memory`): physical ranges from PT_LOADs, CPU state from notes.

pyelftools reads the ELF and program headers. PT_LOAD p_paddr is the guest-physical address; QEMU
writes one PT_LOAD per RAM block (low RAM is split around the legacy VGA/ROM windows and RAM above
4 GiB follows the PCI hole), and a segment may have p_filesz < p_memsz (the rest reads as zeros).
The PT_NOTE segment is parsed here with the schemas of kmtool.schemas.qemu, from a bounded slice of
the file, so a hostile n_descsz can neither read past the segment nor allocate gigabytes. Besides the
CPU notes it may hold the kernel's `VMCOREINFO` note (kmtool/schemas/vmcoreinfo.py), which names the
core-info block's address (docs/design.md §5.3). `read_notes` serves kdump files too, whose note
area holds the same notes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmtool.dump.cpu import CpuState
from kmtool.dump.memory import MemoryRange, PhysicalMemory
from kmtool.dump.records import parse
from kmtool.errors import DumpError
from kmtool.schemas.qemu import (
    CORE_NOTE_NAME,
    NT_PRSTATUS,
    QEMU_CPU_STATE_V1_SIZE,
    QEMU_CPU_STATE_VERSION,
    QEMU_NOTE_NAME,
    Elf64Nhdr,
    ElfPrstatusX86_64,
    QemuCpuState,
)
from kmtool.schemas.signatures import ELF_MAGIC
from kmtool.schemas.vmcoreinfo import NOTE_NAME as VMCOREINFO_NAME
from kmtool.schemas.vmcoreinfo import core_info_address

MAX_NOTE_BYTES = 16 << 20  # 16 MiB of notes is thousands of CPUs
MAX_SEGMENTS = 4096
PN_XNUM = 0xFFFF  # e_phnum meaning "see section header 0"
PHDR_SIZE = 56  # sizeof(Elf64_Phdr)

_GENERAL = (
    "rax",
    "rbx",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "rbp",
    "r8",
    "r9",
    "r10",
    "r11",
    "r12",
    "r13",
    "r14",
    "r15",
)


def is_elf(path: Path) -> bool:
    """True when the file starts with the ELF magic."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == ELF_MAGIC
    except OSError as err:
        raise DumpError(f"Cannot open dump `{path}`: {err.strerror}.") from None


@dataclass
class Notes:
    """What a dump's ELF notes say: the CPUs, and the core-info address of a VMCOREINFO note."""

    cpus: list[CpuState] = field(default_factory=list)
    core_info: int | None = None


def open_elf_core(path: Path) -> tuple[PhysicalMemory, Notes]:
    """The physical memory and the notes of the x86-64 QEMU ELF core at `path`."""
    from elftools.common.exceptions import ELFError
    from elftools.construct import ConstructError
    from elftools.elf.elffile import ELFFile

    ranges: list[MemoryRange] = []
    notes: list[tuple[int, int]] = []
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            if elf.elfclass != 64 or elf["e_machine"] != "EM_X86_64":
                raise DumpError(
                    f"Dump `{path}` is a {elf.elfclass}-bit {elf['e_machine']} ELF, not an x86-64 "
                    "core (QEMU writes EM_386 when the CPU was not in long mode)."
                )
            if elf["e_type"] != "ET_CORE":
                raise DumpError(f"`{path}` is an ELF {elf['e_type']} file, not a core dump.")
            _check_program_headers(path, elf.header, os.fstat(f.fileno()).st_size)
            count = elf.num_segments()
            for index in range(count):
                seg = elf.get_segment(index)
                if seg["p_type"] == "PT_LOAD":
                    ranges.append(
                        MemoryRange(
                            seg["p_paddr"], seg["p_memsz"], seg["p_offset"], seg["p_filesz"]
                        )
                    )
                elif seg["p_type"] == "PT_NOTE":
                    notes.append((seg["p_offset"], seg["p_filesz"]))
    except DumpError:
        raise
    except (ELFError, ConstructError, ValueError, OSError) as err:
        raise DumpError(f"Dump `{path}` is not a readable ELF core: {err}.") from None
    memory = PhysicalMemory(path, _disjoint(ranges))
    return memory, _segment_notes(memory, path, notes)


def _check_program_headers(path: Path, header: Any, file_size: int) -> None:
    """The program-header table is one QEMU could have written and lies inside the file."""
    phnum, phentsize, phoff = header["e_phnum"], header["e_phentsize"], header["e_phoff"]
    if phnum == PN_XNUM:
        raise DumpError(
            f"Dump `{path}` has e_phnum {hex(phnum)} (PN_XNUM: the real count hidden in section "
            "header 0), which QEMU never writes; kmtool does not read such cores."
        )
    if phnum > MAX_SEGMENTS:
        raise DumpError(
            f"Dump `{path}` claims {phnum} program headers (e_phnum); at most {MAX_SEGMENTS} are read."
        )
    if phnum and phentsize != PHDR_SIZE:
        raise DumpError(
            f"Dump `{path}` has e_phentsize {phentsize}; an ELF64 program header is {PHDR_SIZE} "
            "bytes."
        )
    if phoff + phnum * phentsize > file_size:
        raise DumpError(
            f"Dump `{path}` has its {phnum} program headers at file offset {hex(phoff)} (e_phoff), "
            f"past the end of the {file_size}-byte file: truncated or damaged."
        )


def _disjoint(ranges: list[MemoryRange]) -> list[MemoryRange]:
    """The PT_LOADs as disjoint physical ranges.

    With `dump-guest-memory -p` (paging on) QEMU writes one PT_LOAD per virtual mapping, so the
    same physical bytes can appear in several; the first (lowest file offset) copy is kept.
    """
    out: list[MemoryRange] = []
    for r in sorted(ranges, key=lambda r: (r.start, r.file_offset)):
        if out and r.start < out[-1].end:
            skip = out[-1].end - r.start
            if skip >= r.size:
                continue
            r = MemoryRange(out[-1].end, r.size - skip, r.file_offset + skip,
                            max(0, r.file_size - skip))  # fmt: skip
        out.append(r)
    return out


def _segment_notes(memory: PhysicalMemory, path: Path, notes: list[tuple[int, int]]) -> Notes:
    blobs: list[tuple[bytes, int]] = []
    with open(path, "rb") as f:
        for offset, size in notes:
            if size > MAX_NOTE_BYTES or offset + size > memory.file_size:
                raise DumpError(
                    f"Dump `{path}` has a PT_NOTE segment at file offset {hex(offset)} of "
                    f"{hex(size)} bytes that does not fit the file."
                )
            f.seek(offset)
            blobs.append((f.read(size), offset))
    return read_notes(blobs, path)


def read_notes(blobs: list[tuple[bytes, int]], path: Path) -> Notes:
    """The notes in `blobs` (each the bytes of a note area and its file offset): CPU states from
    the QEMU and NT_PRSTATUS notes, the core-info address from the first VMCOREINFO note that names
    one."""
    qemu: list[bytes] = []
    prstatus: list[bytes] = []
    core_info: int | None = None
    vmcoreinfo = VMCOREINFO_NAME.rstrip(b"\0").decode()
    for data, offset in blobs:
        for name, kind, desc, _at in _iter_notes(data, offset):
            if name == QEMU_NOTE_NAME:
                qemu.append(desc)
            elif name == CORE_NOTE_NAME and kind == NT_PRSTATUS:
                prstatus.append(desc)
            elif name == vmcoreinfo and core_info is None:
                core_info = core_info_address(desc)
    return Notes(_cpus(qemu, prstatus, path), core_info)


def _cpus(qemu: list[bytes], prstatus: list[bytes], path: Path) -> list[CpuState]:
    cpus: list[CpuState] = []
    for index, desc in enumerate(qemu):
        cpu = _from_qemu_note(index, desc, path)
        if index < len(prstatus):
            _add_prstatus(cpu, prstatus[index], path)
        cpus.append(cpu)
    if not qemu:
        for index, desc in enumerate(prstatus):
            cpu = CpuState(index, source="NT_PRSTATUS")
            _add_prstatus(cpu, desc, path)
            cpus.append(cpu)
    return cpus


def _iter_notes(data: bytes, base: int) -> Iterator[tuple[str, int, bytes, int]]:
    """(name, type, descriptor bytes, file offset) for each note in a PT_NOTE segment's bytes."""
    header = Elf64Nhdr.sizeof()
    pos = 0
    while pos + header <= len(data):
        h = Elf64Nhdr.parse(data[pos : pos + header])
        name_at = pos + header
        desc_at = name_at + _pad4(h.n_namesz)
        end = desc_at + _pad4(h.n_descsz)
        if desc_at + h.n_descsz > len(data):
            raise DumpError(
                f"ELF note at file offset {hex(base + pos)} overruns its segment "
                f"(n_namesz {h.n_namesz}, n_descsz {hex(h.n_descsz)})."
            )
        name = data[name_at : name_at + h.n_namesz].rstrip(b"\0").decode("ascii", "replace")
        yield name, h.n_type, data[desc_at : desc_at + h.n_descsz], base + pos
        pos = end


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def _from_qemu_note(index: int, desc: bytes, path: Path) -> CpuState:
    if len(desc) < QEMU_CPU_STATE_V1_SIZE:
        raise DumpError(
            f"QEMU CPU note {index} in `{path}` is {len(desc)} bytes, shorter than QEMUCPUState "
            f"version 1 ({QEMU_CPU_STATE_V1_SIZE} bytes)."
        )
    s = parse(QemuCpuState, desc, f"QEMUCPUState of CPU {index}", 0)
    if s.version != QEMU_CPU_STATE_VERSION or s.size > len(desc):
        raise DumpError(
            f"QEMU CPU note {index} in `{path}` has version {s.version} and size {s.size}; kmtool "
            f"reads version {QEMU_CPU_STATE_VERSION} of at most {len(desc)} bytes."
        )
    return CpuState(
        index=index,
        cr0=s.cr[0],
        cr2=s.cr[2],
        cr3=s.cr[3],
        cr4=s.cr[4],
        rip=s.rip,
        rsp=s.rsp,
        rflags=s.rflags,
        cs=s.cs.selector,
        ss=s.ss.selector,
        gdt=(s.gdt.base, s.gdt.limit),
        idt=(s.idt.base, s.idt.limit),
        tr=(s.tr.selector, s.tr.base, s.tr.limit),
        kernel_gs_base=s.kernel_gs_base,
        registers={name: s[name] for name in _GENERAL},
        source="QEMU note",
    )


def _add_prstatus(cpu: CpuState, desc: bytes, path: Path) -> None:
    if len(desc) < ElfPrstatusX86_64.sizeof():
        raise DumpError(
            f"NT_PRSTATUS note {cpu.index} in `{path}` is {len(desc)} bytes, not "
            f"{ElfPrstatusX86_64.sizeof()}."
        )
    regs = parse(ElfPrstatusX86_64, desc, f"NT_PRSTATUS of CPU {cpu.index}", 0).pr_reg
    cpu.registers.update({"fs_base": regs.fs_base, "gs_base": regs.gs_base})
    if cpu.rip is None:
        cpu.rip, cpu.rsp, cpu.rflags = regs.rip, regs.rsp, regs.eflags
        cpu.cs, cpu.ss = regs.cs, regs.ss
        cpu.registers.update({name: regs[name] for name in _GENERAL})
