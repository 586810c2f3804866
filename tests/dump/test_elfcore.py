"""QEMU ELF cores: the note schemas (layout facts of QEMU 7.2), PT_LOADs, CPU state, bad input."""

from __future__ import annotations

import struct
from pathlib import Path

import dump_fixtures as F
import pytest

from kmtool.dump.elfcore import open_elf_core
from kmtool.dump.records import field_offset
from kmtool.errors import DumpError
from kmtool.schemas.qemu import (
    QEMU_CPU_STATE_V1_SIZE,
    ElfPrstatusX86_64,
    QemuCpuSegment,
    QemuCpuState,
    QemuCpuStateV1,
    X86_64UserRegs,
)


def test_qemu_cpu_state_layout_matches_qemu_7_2() -> None:
    # struct QEMUCPUState (target/i386/arch_dump.c): version, size, 18 u64 registers, 10 segments
    # of 24 bytes, cr[5]; QEMU 7.2 appends kernel_gs_base, giving descsz 440 (0x1b8) in its dumps.
    assert QemuCpuSegment.sizeof() == 24
    assert field_offset(QemuCpuStateV1, "rax") == 8
    assert field_offset(QemuCpuStateV1, "rip") == 8 + 16 * 8
    assert field_offset(QemuCpuStateV1, "cs") == 8 + 18 * 8
    assert field_offset(QemuCpuStateV1, "gdt") == 152 + 8 * 24
    assert field_offset(QemuCpuStateV1, "idt") == 152 + 9 * 24
    assert field_offset(QemuCpuStateV1, "cr") == 392
    assert QEMU_CPU_STATE_V1_SIZE == 432


def test_prstatus_layout_is_linux_x86_64() -> None:
    # struct elf_prstatus: 32 bytes, pr_pid, 76 bytes, 27 registers (216 bytes), pr_fpvalid+pad.
    assert X86_64UserRegs.sizeof() == 27 * 8
    assert ElfPrstatusX86_64.sizeof() == 336
    assert field_offset(ElfPrstatusX86_64, "pr_pid") == 32
    assert field_offset(ElfPrstatusX86_64, "pr_reg") == 112
    assert field_offset(X86_64UserRegs, "rip") == 16 * 8


def test_cpu_state_golden_bytes() -> None:
    raw = bytearray(440)
    struct.pack_into("<II", raw, 0, 1, 440)  # version, size
    struct.pack_into("<Q", raw, 8 + 16 * 8, 0xFFFFFF0000101234)  # rip
    struct.pack_into("<IIIIQ", raw, 152 + 8 * 24, 0, 0x37, 0, 0, 0xFFFFFF0000200000)  # gdt
    struct.pack_into("<5Q", raw, 392, 0x80010033, 0, 0xDEAD000, 0x9F000, 0x668)  # cr0..cr4
    struct.pack_into("<Q", raw, 432, 0x1234)  # kernel_gs_base
    s = QemuCpuState.parse(bytes(raw))
    assert (s.version, s.size, s.rip) == (1, 440, 0xFFFFFF0000101234)
    assert (s.gdt.base, s.gdt.limit) == (0xFFFFFF0000200000, 0x37)
    assert list(s.cr) == [0x80010033, 0, 0xDEAD000, 0x9F000, 0x668]
    assert s.kernel_gs_base == 0x1234
    assert QemuCpuState.parse(bytes(raw[:432])[:4] + struct.pack("<I", 432) + raw[8:432]
                              ).kernel_gs_base is None  # fmt: skip


@pytest.fixture(scope="module")
def elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return F.build().write_elf(tmp_path_factory.mktemp("elf") / "dump.elf", cpus=2)


def test_ranges_follow_the_pt_loads(elf: Path) -> None:
    memory, _ = open_elf_core(elf)
    spans = [(r.start, r.size, r.file_size) for r in memory.ranges]
    (a0, a_size), (b0, b_size) = F.RAM
    assert spans == [
        (a0, 0xA0000, 0xA0000),
        (0xA0000, a_size - 0xA0000, a_size - 0xA0000),
        (b0, b_size, b_size - F.ZERO_TAIL),
    ]
    assert memory.ram_bytes == a_size + b_size


def test_cpu_state_from_the_notes(elf: Path) -> None:
    cpus = open_elf_core(elf)[1].cpus
    assert [c.index for c in cpus] == [0, 1]
    cpu = cpus[0]
    fx = F.build()
    assert cpu.cr3 == fx.cr3 and cpu.page_table_root == fx.cr3
    assert (cpu.cr0, cpu.cr4) == (0x80010033, 0x6A0)
    assert cpu.rip == F.KERNEL_LINK_BASE + 0x1234
    assert cpu.gdt == (F.DATA_VA + 0x2000, 0x37)
    assert cpu.kernel_gs_base == 0
    assert cpu.registers["fs_base"] == 0  # from NT_PRSTATUS
    assert cpu.paging_mode == "4-level"
    doc = cpu.to_json()
    assert doc["cr3"] == hex(fx.cr3) and doc["rip"] == hex(F.KERNEL_LINK_BASE + 0x1234)


def test_reads_across_adjacent_pt_loads_and_the_zero_tail(elf: Path) -> None:
    memory, _ = open_elf_core(elf)
    fx = F.build()
    assert memory.read(0xA0000 - 8, 16, "x") == bytes(fx.image[0xA0000 - 8 : 0xA0000 + 8])
    tail = F.RAM[1][0] + F.RAM[1][1] - F.ZERO_TAIL
    assert memory.read(tail - 4, 8, "x") == bytes(fx.image[tail - 4 : tail]) + bytes(4)
    with pytest.raises(DumpError, match=r"`thing` at 0x800000 \(8 bytes\) is outside the dump"):
        memory.read(0x800000, 8, "thing")  # the hole


def _patch(path: Path, offset: int, fmt: str, *values: int) -> None:
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, *values)
    path.write_bytes(bytes(data))


def test_truncated_core_names_the_range(elf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.elf"
    cut.write_bytes(elf.read_bytes()[: 1 << 20])
    with pytest.raises(DumpError, match=r"is truncated: the range at physical 0xa0000 needs file"):
        open_elf_core(cut)


def test_not_x86_64(elf: Path, tmp_path: Path) -> None:
    other = tmp_path / "arm.elf"
    other.write_bytes(elf.read_bytes())
    _patch(other, 18, "<H", 183)  # e_machine = EM_AARCH64
    with pytest.raises(DumpError, match=r"is a 64-bit EM_AARCH64 ELF, not an x86-64 core"):
        open_elf_core(other)


def test_note_overrunning_its_segment(elf: Path, tmp_path: Path) -> None:
    bad = tmp_path / "note.elf"
    bad.write_bytes(elf.read_bytes())
    phnum = 4
    note_offset = 64 + 56 * phnum
    _patch(bad, note_offset + 4, "<I", 0x7FFFFFF0)  # n_descsz of the first note
    with pytest.raises(DumpError, match=r"ELF note at file offset 0x120 overruns its segment"):
        open_elf_core(bad)


def test_garbage_is_not_an_elf_core(tmp_path: Path) -> None:
    junk = tmp_path / "junk.elf"
    junk.write_bytes(b"\x7fELF" + bytes(20))
    with pytest.raises(DumpError, match=r"is not a readable ELF core|not an x86-64 core"):
        open_elf_core(junk)


def test_repeated_physical_ranges_are_read_once(elf: Path, tmp_path: Path) -> None:
    # As with `dump-guest-memory -p`: a second PT_LOAD repeats physical bytes already present.
    data = bytearray(elf.read_bytes())
    phdr = 64 + 56 * 2  # the second PT_LOAD (0xa0000, the rest of RAM A)
    struct.pack_into("<Q", data, phdr + 24, 0x9F000)  # p_paddr one page lower: overlaps the first
    path = tmp_path / "paging.elf"
    path.write_bytes(bytes(data))
    memory, _ = open_elf_core(path)
    starts = [(r.start, r.size) for r in memory.ranges]
    assert starts[:2] == [(0, 0xA0000), (0xA0000, F.RAM[0][1] - 0xA0000 - 0x1000)]
    assert memory.read(0x9F000, 8, "x") == bytes(F.build().image[0x9F000:0x9F008])
