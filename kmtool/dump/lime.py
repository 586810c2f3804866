"""LiME dumps (the Linux Memory Extractor's `lime` format, kmtool/schemas/lime.py).

Each range's bytes follow its header in the file, uncompressed, so a LiME file is read like an ELF
core: one `MemoryRange` per header, through the one mmap of kmtool.dump.memory. The headers are
walked from the start of the file; every header must have the magic and version 1, end at or after
its start, and leave its bytes inside the file. A fault is one sentence naming the field, its file
offset and its value. LiME records no CPU state, so a LiME dump needs `--cr3` unless it holds a
core-info block.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kmtool.dump.memory import MemoryRange, PhysicalMemory
from kmtool.dump.records import field_offset, parse
from kmtool.errors import DumpError
from kmtool.schemas.lime import LIME_VERSION, LimeRangeHeader
from kmtool.schemas.signatures import LIME_MAGIC

MAX_RANGES = 1 << 16


def open_lime(path: Path) -> PhysicalMemory:
    """The physical memory of the LiME file at `path`."""
    header = LimeRangeHeader.sizeof()
    ranges: list[MemoryRange] = []
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        pos = 0
        while pos < size:
            if len(ranges) >= MAX_RANGES:
                raise DumpError(f"LiME dump `{path}` has more than {MAX_RANGES} ranges.")
            data = os.pread(f.fileno(), header, pos)
            if len(data) < header:
                raise DumpError(
                    f"LiME dump `{path}` ends inside the range header at file offset {hex(pos)} "
                    f"({len(data)} of {header} bytes): truncated."
                )
            h = parse(LimeRangeHeader, data, "LiME range header", pos)
            _check(path, pos, h, size)
            length = h.e_addr - h.s_addr + 1
            ranges.append(MemoryRange(h.s_addr, length, pos + header, length))
            pos += header + length
    return PhysicalMemory(path, ranges)


def _check(path: Path, pos: int, h: Any, size: int) -> None:
    def fail(name: str, value: int, why: str) -> DumpError:
        at = pos + field_offset(LimeRangeHeader, name)
        return DumpError(
            f"LiME dump `{path}`: `{name}` at file offset {hex(at)} is {hex(value)}; {why}."
        )

    magic, version, s_addr, e_addr = h.magic, h.version, h.s_addr, h.e_addr
    if magic != LIME_MAGIC:
        raise fail("magic", magic, f"a range header starts with {hex(LIME_MAGIC)}")
    if version != LIME_VERSION:
        raise fail("version", version, f"kmtool reads LiME version {LIME_VERSION}")
    if e_addr < s_addr:
        raise fail("e_addr", e_addr, f"the range's last byte is below its start {hex(s_addr)}")
    end = pos + LimeRangeHeader.sizeof() + (e_addr - s_addr + 1)
    if end > size:
        raise fail("e_addr", e_addr,
                   f"the range from {hex(s_addr)} needs file bytes up to {hex(end)} but the file "
                   f"has {hex(size)}: truncated")  # fmt: skip
