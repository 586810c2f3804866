"""Dump helpers without QEMU: the RAM layout from `info mtree`, registers, the chunk copy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kmtool.errors import DumpError, RunError
from kmtool.qemu import dump
from kmtool.qemu.dump import RamRange, parse_mtree, parse_registers
from kmtool.qemu.dumpfile import BLOCK, BlockWriter

# Excerpt of QEMU 7.2 `info mtree` for q35 with 3 GiB (RAM split around the PCI hole); the
# aliases appear once per address space that shows system memory.
MTREE_3G = """\
address-space: memory
  0000000000000000-ffffffffffffffff (prio 0, i/o): system
    0000000000000000-000000007fffffff (prio 0, ram): alias ram-below-4g @ram 0000000000000000-000000007fffffff
    00000000000a0000-00000000000bffff (prio 1, i/o): alias smram-region @pci 00000000000a0000-00000000000bffff
    0000000100000000-000000013fffffff (prio 0, ram): alias ram-above-4g @ram 0000000080000000-00000000bfffffff
memory-region: smram
  0000000000000000-00000000ffffffff (prio 0, i/o): smram
    0000000000000000-000000007fffffff (prio 0, ram): alias ram-below-4g @ram 0000000000000000-000000007fffffff
    0000000100000000-000000013fffffff (prio 0, ram): alias ram-above-4g @ram 0000000080000000-00000000bfffffff
memory-region: ram
  0000000000000000-00000000bfffffff (prio 0, ram): ram
"""  # noqa: E501

REGISTERS = """\
CPU#0
RAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000000 RDX=0000000000000000
RSI=0000000000000000 RDI=0000000000000000 RBP=0000000000000000 RSP=ffffff0000105f88
RIP=ffffff0000001234 RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1
ES =0010 0000000000000000 ffffffff 00c09300 DPL=0 DS   [-WA]
CS =0008 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]
SS =0010 0000000000000000 ffffffff 00c09300 DPL=0 DS   [-WA]
LDT=0000 0000000000000000 0000ffff 00008200 DPL=0 LDT
TR =0028 ffffff0000110000 00000067 00008900 DPL=0 TSS64-busy
GDT=     ffffff0000112000 00000037
IDT=     ffffff0000113000 00000fff
CR0=80010033 CR2=00000000deadb000 CR3=000000001de71000 CR4=00000668
EFER=0000000000000d00
CPU#1
CR0=60000010 CR2=0000000000000000 CR3=0000000000000000 CR4=00000000
EFER=0000000000000000
"""


def test_mtree_ranges_split_around_the_pci_hole() -> None:
    assert parse_mtree(MTREE_3G) == [
        RamRange("ram-below-4g", 0, 0x80000000),
        RamRange("ram-above-4g", 0x100000000, 0x40000000, offset=0x80000000),  # file offset
    ]


def test_mtree_without_ram_is_an_error() -> None:
    with pytest.raises(RunError, match="ram-below-4g"):
        parse_mtree("memory-region: ram\n  0000000000000000-000000000fffffff (prio 0, ram): ram\n")


def test_registers_per_cpu() -> None:
    assert parse_registers(REGISTERS) == [
        {
            "index": 0,
            "rsp": "0xffffff0000105f88",
            "rip": "0xffffff0000001234",
            "rflags": "0x246",
            "cr0": "0x80010033",
            "cr2": "0xdeadb000",
            "cr3": "0x1de71000",
            "cr4": "0x668",
            "efer": "0xd00",
            "cs": "0x8",
            "ss": "0x10",
            "tr": "0x28",
            "tr_base": "0xffffff0000110000",
            "tr_limit": "0x67",
            "gdt_base": "0xffffff0000112000",
            "gdt_limit": "0x37",
            "idt_base": "0xffffff0000113000",
            "idt_limit": "0xfff",
        },
        {"index": 1, "cr0": "0x60000010", "cr2": "0x0", "cr3": "0x0", "cr4": "0x0", "efer": "0x0"},
    ]


def test_chunk_copy_places_bytes_at_their_offset_and_leaves_zero_holes(tmp_path: Path) -> None:
    block = BLOCK
    chunk = tmp_path / "chunk"
    chunk.write_bytes(bytes(block) + b"\x5a" * block + bytes(block))
    out_path = tmp_path / "out"
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        writer = BlockWriter(fd)
        writer.seek(4 * block)
        dump._copy_chunk(chunk, writer, 4 * block, 3 * block)
        writer.finish(8 * block)
    finally:
        os.close(fd)
    data = out_path.read_bytes()
    assert len(data) == 8 * block
    assert data[5 * block : 6 * block] == b"\x5a" * block
    assert data.count(0) == 7 * block
    # Only the one non-zero block was written: the file is sparse where the filesystem allows.
    assert os.stat(out_path).st_blocks * 512 <= 2 * block


def test_chunk_copy_rejects_a_short_chunk(tmp_path: Path) -> None:
    chunk = tmp_path / "chunk"
    chunk.write_bytes(b"\1" * 100)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with pytest.raises(DumpError, match="0x1000"):
            dump._copy_chunk(chunk, BlockWriter(fd), 0x1000, 200)
    finally:
        os.close(fd)


class PipeQemu:
    """Stands in for QEMU's side of the ELF pipe in `_capture_elf`: keeps a duplicate of the fd it
    is sent, writes `data` into it for `dump-guest-memory` and closes it, as QEMU's dump thread
    does; `closefd` closes it unused. (The real QEMU path is tests/integration's oracle.)"""

    def __init__(self, data: bytes, status: str = "completed", refuse: bool = False) -> None:
        self.data, self.status, self.refuse = data, status, refuse
        self.fd: int | None = None
        self.commands: list[str] = []

    def send_fd(self, fd: int, name: str) -> None:
        self.fd = os.dup(fd)

    def command(self, name: str, **arguments: object) -> dict[str, object]:
        self.commands.append(name)
        assert self.fd is not None
        if name == "closefd":
            os.close(self.fd)
        elif name == "dump-guest-memory":
            if self.refuse:
                raise RunError("The QMP command `dump-guest-memory` failed: no.")
            with os.fdopen(self.fd, "wb") as out:
                out.write(self.data)
        elif name == "query-dump":
            return {"status": self.status, "completed": len(self.data), "total": len(self.data)}
        return {}


def test_elf_capture_writes_what_qemu_sends(tmp_path: Path) -> None:
    data = b"\x7fELF" + bytes(BLOCK) + b"\x5a" * 5000
    qemu = PipeQemu(data)
    assert dump._capture_elf(qemu, tmp_path / "d.elf", None) == len(data)  # type: ignore[arg-type]
    assert (tmp_path / "d.elf").read_bytes() == data
    assert not (tmp_path / "d.elf.partial").exists()


def test_elf_capture_refused_by_qemu_closes_the_pipe_and_leaves_no_file(tmp_path: Path) -> None:
    qemu = PipeQemu(b"", refuse=True)
    with pytest.raises(RunError, match="dump-guest-memory"):
        dump._capture_elf(qemu, tmp_path / "d.elf", None)  # type: ignore[arg-type]
    assert qemu.commands == ["dump-guest-memory", "closefd"]
    assert list(tmp_path.iterdir()) == []


def test_elf_capture_failed_in_qemu_is_one_sentence(tmp_path: Path) -> None:
    qemu = PipeQemu(b"\1" * 100, status="failed")
    with pytest.raises(
        DumpError, match=r"^QEMU could not write the ELF dump `.*d\.elf` \(query-dump: failed\)\.$"
    ):
        dump._capture_elf(qemu, tmp_path / "d.elf", None)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
