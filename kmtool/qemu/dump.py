"""Capture guest memory from a stopped VM, as a QEMU ELF core or as a raw physical image.

Both are written to `FILE.partial` and renamed to FILE when complete, so an interrupted dump never
sits under the final name.

ELF (`--dump-format elf`): QMP `dump-guest-memory` with paging off (physical memory only),
detached, polled with `query-dump` for progress. The file has one PT_LOAD per RAM block and the
per-CPU "QEMU" notes (CR0-CR4) next to NT_PRSTATUS.

Raw (`--dump-format raw`): a flat image of guest-physical memory, **file offset == physical
address** (base 0), written as a sparse file: RAM ranges hold the guest's bytes, everything else
(the PCI hole between the end of low RAM and 4 GiB) is a hole that reads as zeros, and pages of RAM
that are all zero are holes too. The RAM ranges come from QEMU's own memory tree (`info mtree`: the
`ram-below-4g` and `ram-above-4g` aliases of q35). Bytes are read with `pmemsave` chunk by chunk.
Next to FILE kmtool writes the sidecar `FILE.layout.json` (kmtool inspect reads it):

    {
      "format": "kmtool-raw-physical",      # fixed; anything else is not this format
      "version": 1,
      "machine": "q35",
      "memory_size": "0x20000000",          # guest RAM in bytes (the --memory value)
      "file_size": "0x20000000",            # == end of the highest range
      "ranges": [                           # sorted by phys, non-overlapping
        {"name": "ram-below-4g", "phys": "0x0", "size": "0x20000000", "file_offset": "0x0"},
        {"name": "ram-above-4g", "phys": "0x100000000", "size": "0x40000000",
         "file_offset": "0x100000000"}       # present only when RAM reaches past the PCI hole
      ],
      "cpus": [                             # from `info registers -a` of the stopped VM
        {"index": 0, "cr0": "0x80010033", "cr3": "0x7e01000", "cr4": "0x6a0", "efer": "0xd00"}
      ]
    }

All numbers are "0x..." strings except `version` and `index`; `file_offset` always equals `phys`.
Legacy windows inside low RAM (0xa0000-0xbffff) hold whatever a non-SMM CPU read there. The `cpus`
entry is a convenience: the kernel's core-info block remains the self-describing root of a raw dump.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kmtool.errors import DumpError, RunError
from kmtool.layout.table import MiB
from kmtool.qemu.qmp import Monitor

FORMATS = ("elf", "raw")
RAW_FORMAT_NAME = "kmtool-raw-physical"
RAW_FORMAT_VERSION = 1
RAW_CHUNK = 256 * MiB  # bytes per pmemsave (also the temporary file's size bound)
COPY_BLOCK = 1 * MiB  # sparse-copy granularity: an all-zero block becomes a hole
POLL_SECONDS = 0.05

Progress = Callable[[int, int], None]  # (bytes done, bytes total)

_MTREE_RAM = re.compile(
    r"^\s*([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, ram\): alias (ram-(?:below|above)-4g) @",
    re.MULTILINE,
)
_REGISTER = re.compile(r"\b(CR0|CR3|CR4|EFER)=([0-9a-f]+)")


@dataclass(frozen=True)
class RamRange:
    """One block of guest RAM at a guest-physical address."""

    name: str
    phys: int
    size: int

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
    if fmt == "elf":
        written = _capture_elf(monitor, path, progress)
        return DumpInfo(path, fmt, written, time.monotonic() - started)
    written, layout_path = _capture_raw(monitor, path, progress)
    return DumpInfo(path, fmt, written, time.monotonic() - started, layout_path)


def _capture_elf(monitor: Monitor, path: Path, progress: Progress | None) -> int:
    partial = _partial(path)
    monitor.command("dump-guest-memory", paging=False, protocol=f"file:{partial}", detach=True)
    total = 0
    while True:
        state = monitor.command("query-dump")
        total = int(state.get("total", 0))
        if progress is not None and total:
            progress(int(state.get("completed", 0)), total)
        status = state.get("status")
        if status == "completed":
            break
        if status == "failed":
            partial.unlink(missing_ok=True)
            raise DumpError(f"QEMU could not write the ELF dump `{path}` (query-dump: failed).")
        time.sleep(POLL_SECONDS)
    os.chmod(partial, 0o644)  # QEMU creates it owner-read-only
    os.replace(partial, path)
    return total


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
        found.setdefault(name, RamRange(name, start, last - start + 1))
    if not found:
        raise RunError("QEMU's memory tree (`info mtree`) shows no `ram-below-4g` RAM alias.")
    return sorted(found.values(), key=lambda r: r.phys)


def parse_registers(text: str) -> list[dict[str, str | int]]:
    """CR0, CR3, CR4 and EFER per CPU from `info registers -a` output ("0x..." strings)."""
    cpus: list[dict[str, str | int]] = []
    for index, block in enumerate(re.split(r"^CPU#\d+\s*$", text, flags=re.MULTILINE)[1:]):
        entry: dict[str, str | int] = {"index": index}
        for name, value in _REGISTER.findall(block):
            entry[name.lower()] = hex(int(value, 16))
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
        with open(partial, "wb") as out:
            for ram in ranges:
                offset = 0
                while offset < ram.size:
                    length = min(RAW_CHUNK, ram.size - offset)
                    monitor.command(
                        "pmemsave", val=ram.phys + offset, size=length, filename=str(chunk_file)
                    )
                    _copy_sparse(chunk_file, out, ram.phys + offset, length)
                    offset += length
                    done += length
                    if progress is not None:
                        progress(done, total)
            out.truncate(file_size)
    finally:
        chunk_file.unlink(missing_ok=True)
    layout = {
        "format": RAW_FORMAT_NAME,
        "version": RAW_FORMAT_VERSION,
        "machine": "q35",
        "memory_size": hex(total),
        "file_size": hex(file_size),
        "ranges": [
            {"name": r.name, "phys": hex(r.phys), "size": hex(r.size), "file_offset": hex(r.phys)}
            for r in ranges
        ],
        "cpus": cpus,
    }
    layout_path = layout_path_for(path)
    layout_path.write_text(json.dumps(layout, indent=2) + "\n")
    os.replace(partial, path)
    return total, layout_path


def _copy_sparse(source: Path, out: BinaryIO, file_offset: int, length: int) -> None:
    """Copy `source` (`length` bytes) into `out` at `file_offset`; all-zero blocks stay holes."""
    zero = bytes(COPY_BLOCK)
    with open(source, "rb") as chunk:
        if os.fstat(chunk.fileno()).st_size != length:
            raise DumpError(
                f"QEMU's pmemsave wrote {os.fstat(chunk.fileno()).st_size} bytes for the "
                f"{length}-byte range at physical {file_offset:#x}."
            )
        position = file_offset
        while block := chunk.read(COPY_BLOCK):
            if block != zero[: len(block)]:
                out.seek(position)
                out.write(block)
            position += len(block)


def layout_path_for(path: Path) -> Path:
    """The sidecar `FILE.layout.json` of the raw dump `path`."""
    return path.with_name(path.name + ".layout.json")


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")
