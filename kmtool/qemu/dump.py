"""Capture guest memory from a stopped VM, as a QEMU ELF core, a kdump file or a raw physical image.

Both are written to `FILE.partial` and renamed to FILE when complete, so an interrupted dump never
sits under the final name.

ELF (`--dump-format elf`): QMP `dump-guest-memory` with paging off (physical memory only),
detached, polled with `query-dump` for progress, written by QEMU into a pipe that kmtool copies to
the file. The file has one PT_LOAD per RAM block and the per-CPU "QEMU" notes (CR0-CR4) next to
NT_PRSTATUS.

kdump (`--dump-format kdump`): the same QMP command with format `kdump-zlib`: every page zlib
compressed, zero pages stored once (kmtool/schemas/kdump.py). QEMU writes it in makedumpfile's
flattened form, which the copy reassembles into a plain kdump file (kmtool.qemu.kdumpflat).

ELF and raw are written through kmtool.qemu.dumpfile's BlockWriter: whole 2 MiB blocks at aligned
file offsets (so the page cache holds the dump in 2 MiB folios, which `kmtool inspect` maps
cheaply), and all-zero blocks are left as holes (so both formats are sparse files).

Raw (`--dump-format raw`): a flat image of guest-physical memory, **file offset == physical
address** (base 0), written as a sparse file: RAM ranges hold the guest's bytes, everything else
(the PCI hole between the end of low RAM and 4 GiB) is a hole that reads as zeros, and 2 MiB
blocks of RAM that are all zero are holes too. The RAM ranges come from QEMU's own memory tree
(`info mtree`: the `ram-below-4g` and `ram-above-4g` aliases of q35). Bytes are read with
`pmemsave` chunk by chunk.
Next to FILE kmtool writes the sidecar `FILE.layout.json` (kmtool inspect reads it): the RAM ranges
and each CPU's control registers, in the format kmtool/schemas/rawdump.py declares. Legacy windows
inside low RAM (0xa0000-0xbffff) hold whatever a non-SMM CPU read there.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kmtool.errors import DumpError, RunError
from kmtool.layout.table import PAGE_SIZE, MiB
from kmtool.qemu import dumpfile, kdumpflat
from kmtool.qemu.dumpfile import BlockWriter
from kmtool.qemu.qmp import Monitor
from kmtool.schemas.rawdump import RawCpu, layout_document, layout_path_for

if TYPE_CHECKING:
    from kmtool.dump.elfcore import Notes

FORMATS = ("elf", "raw", "kdump")
KDUMP_QEMU_FORMAT = "kdump-zlib"  # the kdump flavour every QEMU build offers (zlib is always there)
RAW_CHUNK = 256 * MiB  # bytes per pmemsave (also the temporary file's size bound)
PIPE_BYTES = 1 * MiB  # the ELF pipe's capacity (Linux's default pipe-max-size)
_PIPE_NAME = "kmtool-dump"  # the name QEMU knows the ELF pipe by (`getfd`)
POLL_SECONDS = 0.05
DRAIN_SECONDS = 30.0  # the ELF copy's bound after QEMU's last byte (a pipe and a block)

Progress = Callable[[int, int], None]  # (bytes done, bytes total)

_MTREE_RAM = re.compile(
    r"^\s*([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, ram\): alias (ram-(?:below|above)-4g) @"
    r"(?:\S+ ([0-9a-f]+)-)?",  # the backend's name and the alias's offset into it
    re.MULTILINE,
)
# `info registers` lines: "CR3=...", "RFL=..."; "CS =0008 <base> <limit> <flags>"; "GDT=     <base>
# <limit>" (QEMU's monitor output, target/i386/cpu-dump.c).
_REGISTER = re.compile(r"\b(CR0|CR2|CR3|CR4|EFER|RIP|RSP|RFL)=([0-9a-f]+)")
_SEGMENT = re.compile(r"^(CS|SS|TR) =([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+)", re.MULTILINE)
_TABLE = re.compile(r"^(GDT|IDT)= +([0-9a-f]+) ([0-9a-f]+)", re.MULTILINE)


@dataclass(frozen=True)
class RamRange:
    """One block of guest RAM at a guest-physical address."""

    name: str
    phys: int
    size: int
    offset: int = 0  # where the range starts in the RAM backend (a live session's RAM file)

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.phys + self.size


@dataclass(frozen=True)
class DumpInfo:
    """What a capture wrote."""

    path: Path
    format: str
    bytes_written: int  # guest bytes captured (RAM, not the file's apparent size)
    seconds: float
    layout_path: Path | None = None  # raw dumps only


def capture(monitor: Monitor, path: Path, fmt: str, progress: Progress | None = None) -> DumpInfo:
    """Dump the (already stopped) VM's memory to `path` in format "elf" or "raw"."""
    if fmt not in FORMATS:
        raise DumpError(f"The dump format `{fmt}` is not one of {', '.join(FORMATS)}.")
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if fmt in ("elf", "kdump"):
        written = _capture_elf(monitor, path, progress, kdump=fmt == "kdump")
        return DumpInfo(path, fmt, written, time.monotonic() - started)
    written, layout_path = _capture_raw(monitor, path, progress)
    return DumpInfo(path, fmt, written, time.monotonic() - started, layout_path)


def _capture_elf(
    monitor: Monitor, path: Path, progress: Progress | None, kdump: bool = False
) -> int:
    """QEMU writes the ELF core into a pipe (`fd:` protocol) and a `_PipeCopy` thread writes it to
    FILE.partial through a BlockWriter (kmtool.qemu.dumpfile): QEMU's own file writes go a page
    at a time, which would leave the dump in 4 KiB folios and its all-zero pages on disk.

    With `kdump`, QEMU writes the kdump-zlib format instead, as a flattened stream, and the thread
    reassembles it into a plain kdump-compressed file (kmtool.qemu.kdumpflat)."""
    partial = _partial(path)
    name = "kdump" if kdump else "ELF"
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):  # fewer, larger reads; the default 64 KiB works too
        fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    copy = _PipeCopy(read_end, partial, kdump)
    copy.start()  # from here the thread owns read_end; it ends at EOF, when no write end is left
    started = False
    try:
        try:
            monitor.send_fd(write_end, _PIPE_NAME)
        finally:
            os.close(write_end)  # QEMU holds its own copy; EOF comes when it closes that
        extra = {"format": KDUMP_QEMU_FORMAT} if kdump else {}
        monitor.command(
            "dump-guest-memory", paging=False, protocol=f"fd:{_PIPE_NAME}", detach=True, **extra
        )
        started = True
        status, total = _wait_for_dump(monitor, progress)
        copy.join(DRAIN_SECONDS)  # QEMU has closed the pipe or is about to: what is left is small
        if copy.is_alive():
            raise DumpError(
                f"The copy of the {name} dump `{path}` had not ended {DRAIN_SECONDS:.0f} s after "
                f"QEMU's dump {status}."
            )
        if status == "failed":
            why = f"; kmtool's copy: {copy.error}" if copy.error else ""
            raise DumpError(
                f"QEMU could not write the {name} dump `{path}` (query-dump: failed{why})."
            )
        if copy.error is not None:
            raise DumpError(f"Could not write the {name} dump `{path}`: {copy.error}.")
    except BaseException:
        if not started:  # QEMU still holds the pipe's write end: have it closed so the copy ends
            with contextlib.suppress(Exception):
                monitor.command("closefd", fdname=_PIPE_NAME)
        # Never wait out a dump here (an interrupt, say): the copy ends when QEMU quits.
        copy.join(1.0)
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return total


def _wait_for_dump(monitor: Monitor, progress: Progress | None) -> tuple[str, int]:
    """Poll `query-dump` until the dump is "completed" or "failed"; (status, total bytes)."""
    while True:
        state = monitor.command("query-dump")
        total = int(state.get("total", 0))
        if progress is not None and total:
            progress(int(state.get("completed", 0)), total)
        status = str(state.get("status"))
        if status in ("completed", "failed"):
            return status, total
        time.sleep(POLL_SECONDS)


class _PipeCopy(threading.Thread):
    """Reads the pipe to EOF into a new file through a BlockWriter; keeps the first OSError as a
    sentence in `error` and closes the pipe then, so QEMU's next write fails and its dump ends."""

    def __init__(self, read_end: int, path: Path, kdump: bool = False) -> None:
        super().__init__(name="kmtool-dump-copy", daemon=True)
        self.read_end = read_end
        self.path = path
        self.kdump = kdump
        self.error: str | None = None

    def run(self) -> None:
        try:
            if self.kdump:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    kdumpflat.reassemble(self.read_end, fd)
                finally:
                    os.close(fd)
                return
            with dumpfile.create(self.path) as writer:
                writer.finish(writer.copy_from(self.read_end))
        except OSError as err:
            self.error = err.strerror or str(err)
        finally:
            os.close(self.read_end)


def ram_ranges(monitor: Monitor) -> list[RamRange]:
    """Guest RAM as QEMU maps it (q35: low RAM below the PCI hole, the rest from 4 GiB)."""
    return parse_mtree(monitor.hmp("info mtree"))


def parse_mtree(text: str) -> list[RamRange]:
    """The ram-below-4g / ram-above-4g alias ranges in `info mtree` output, sorted by address.

    The same alias appears once per address space that shows system memory; each is kept once.
    Raises RunError when there is no RAM alias at all (not a q35 memory map).
    """
    found: dict[str, RamRange] = {}
    for match in _MTREE_RAM.finditer(text):
        start, last, name = int(match.group(1), 16), int(match.group(2), 16), match.group(3)
        offset = int(match.group(4) or "0", 16)
        found.setdefault(name, RamRange(name, start, last - start + 1, offset))
    if not found:
        raise RunError("QEMU's memory tree (`info mtree`) shows no `ram-below-4g` RAM alias.")
    return sorted(found.values(), key=lambda r: r.phys)


def parse_registers(text: str) -> list[RawCpu]:
    """Per CPU from `info registers -a` output, as "0x..." strings under the sidecar's keys
    (kmtool.schemas.rawdump.CPU_REGISTERS): the control registers and EFER, RIP, RSP, RFLAGS, the
    CS and SS selectors, GDTR, IDTR and the task register (selector, cached base and limit)."""
    cpus: list[RawCpu] = []
    for index, block in enumerate(re.split(r"^CPU#\d+\s*$", text, flags=re.MULTILINE)[1:]):
        entry: RawCpu = {"index": index}
        for name, value in _REGISTER.findall(block):
            entry["rflags" if name == "RFL" else name.lower()] = hex(int(value, 16))
        for name, selector, base, limit in _SEGMENT.findall(block):
            key = name.lower()
            entry[key] = hex(int(selector, 16))
            if key == "tr":
                entry["tr_base"], entry["tr_limit"] = hex(int(base, 16)), hex(int(limit, 16))
        for name, base, limit in _TABLE.findall(block):
            key = name.lower()
            entry[f"{key}_base"], entry[f"{key}_limit"] = hex(int(base, 16)), hex(int(limit, 16))
        cpus.append(entry)
    return cpus


def _capture_raw(monitor: Monitor, path: Path, progress: Progress | None) -> tuple[int, Path]:
    ranges = ram_ranges(monitor)
    cpus = parse_registers(monitor.hmp("info registers -a"))
    total = sum(r.size for r in ranges)
    file_size = max(r.end for r in ranges)
    partial = _partial(path)
    chunk_file = path.with_name(path.name + ".chunk")
    done = 0
    try:
        with dumpfile.create(partial) as writer:  # file offset == physical address
            for ram in ranges:
                offset = 0
                while offset < ram.size:
                    length = min(RAW_CHUNK, ram.size - offset)
                    monitor.command(
                        "pmemsave", val=ram.phys + offset, size=length, filename=str(chunk_file)
                    )
                    writer.seek(ram.phys + offset)
                    _copy_chunk(chunk_file, writer, ram.phys + offset, length)
                    offset += length
                    done += length
                    if progress is not None:
                        progress(done, total)
            writer.finish(file_size)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        chunk_file.unlink(missing_ok=True)
    core_info = note_core_info(monitor, path.with_name(path.name + ".note"))
    layout = layout_document([(r.name, r.phys, r.size) for r in ranges], cpus, core_info)
    layout_path = layout_path_for(path)
    layout_path.write_text(json.dumps(layout, indent=2) + "\n")
    os.replace(partial, path)
    return total, layout_path


def note_core_info(monitor: Monitor, scratch: Path) -> int | None:
    """The core-info address the kernel published to QEMU (docs/design.md §5.3), read from QEMU's
    own copy of the VMCOREINFO note (`page_notes`). None when the kernel published none."""
    try:
        return page_notes(monitor, scratch).core_info
    except (RunError, DumpError):
        return None


def page_notes(monitor: Monitor, scratch: Path) -> Notes:
    """The notes QEMU writes into every ELF dump, from an ELF dump of one page written to
    `scratch` and removed again: each CPU's registers (NT_PRSTATUS and the QEMU note, the same
    state an ELF dump records, decoded by the same kmtool.dump.elfcore) and the kernel's
    VMCOREINFO note. One QMP command, whatever the size of the guest; it needs a stopped VM
    (QEMU would pause a running one itself). RunError/DumpError when QEMU or the file fails."""
    from kmtool.dump.elfcore import open_elf_core

    try:
        monitor.command("dump-guest-memory", paging=False, protocol=f"file:{scratch}",
                        begin=0, length=PAGE_SIZE)  # fmt: skip
        memory, notes = open_elf_core(scratch)
        memory.close()
        return notes
    finally:
        scratch.unlink(missing_ok=True)


def _copy_chunk(source: Path, writer: BlockWriter, phys: int, length: int) -> None:
    """Copy one pmemsave chunk (`length` bytes of guest memory from physical `phys`) to `writer`."""
    with open(source, "rb") as chunk:
        size = os.fstat(chunk.fileno()).st_size
        if size != length:
            raise DumpError(
                f"QEMU's pmemsave wrote {size} bytes for the {length}-byte range at physical "
                f"{phys:#x}."
            )
        writer.copy_from(chunk.fileno())


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")
