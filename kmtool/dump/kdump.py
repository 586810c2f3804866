"""kdump-compressed dumps (QEMU's `dump-guest-memory` formats kdump-zlib, -lzo and -snappy).

The layout is in kmtool/schemas/kdump.py. Opening reads the headers, checks every field a read
depends on against the file (each fault one sentence naming the field, its file offset and its
value), and keeps the bitmaps and the page descriptors where they are, in an mmap of the file:
nothing is decompressed until a read needs a page (kmtool.dump.paged caches what it decoded).

A frame's descriptor is found by rank: its index is the number of dumped frames below it, which
`_Bitmap` answers from a running count per 64-frame word (8 bytes per 512 frames of RAM: 16 MiB
for a 512 GiB guest). The notes are the ELF notes of an ELF core (CPU state, and the kernel's
VMCOREINFO note), read by kmtool.dump.elfcore.read_notes.
"""

from __future__ import annotations

import importlib
import mmap
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from kmtool.dump.elfcore import MAX_NOTE_BYTES, Notes, read_notes
from kmtool.dump.memory import MemoryRange
from kmtool.dump.paged import PagedMemory
from kmtool.dump.records import field_offset, numpy_dtype, parse
from kmtool.errors import DumpError
from kmtool.layout.table import PAGE_SHIFT, PAGE_SIZE
from kmtool.schemas.kdump import (
    DUMP_DH_COMPRESSED_LZO,
    DUMP_DH_COMPRESSED_SNAPPY,
    DUMP_DH_COMPRESSED_ZLIB,
    DUMP_DH_COMPRESSED_ZSTD,
    KNOWN_HEADER_VERSIONS,
    DiskDumpHeader,
    KdumpSubHeader,
    PageDescriptor,
)

MAX_FRAMES = 1 << 40  # 52-bit physical addresses
MAX_RUNS = 1 << 16  # memory ranges a dump may have (an ELF core's MAX_SEGMENTS is 4096)
_CODECS = {
    DUMP_DH_COMPRESSED_ZLIB: "zlib",
    DUMP_DH_COMPRESSED_LZO: "lzo",
    DUMP_DH_COMPRESSED_SNAPPY: "snappy",
    DUMP_DH_COMPRESSED_ZSTD: "zstd",
}


def open_kdump(path: Path) -> tuple[PagedMemory, Notes]:
    """The physical memory and the notes of the kdump-compressed file at `path`."""
    provider = KdumpPages(path)
    try:
        notes = provider.notes()
        return PagedMemory(provider), notes
    except BaseException:
        provider.close()
        raise


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_CHUNK_BYTES = 1 << 20  # bitmap bytes handled at once (8 Mi frames): bounded memory for any guest


class _Bitmap:
    """One of the two bitmaps: bit `pfn` (LSB first), and the rank of a set bit. Built a chunk at
    a time, so a 512 GiB guest's 16 MiB bitmap never becomes a byte per frame."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.words = data.view("<u8")
        counts = np.empty(len(self.words), dtype=np.int64)
        for lo in range(0, len(data), _CHUNK_BYTES):
            chunk = _POPCOUNT[data[lo : lo + _CHUNK_BYTES]].reshape(-1, 8).sum(axis=1)
            counts[lo // 8 : lo // 8 + len(chunk)] = chunk
        self.before = np.concatenate(([0], np.cumsum(counts)))  # set bits before each word

    def __contains__(self, pfn: int) -> bool:
        return bool((int(self.words[pfn >> 6]) >> (pfn & 63)) & 1)

    def rank(self, pfn: int) -> int:
        """Set bits below `pfn`."""
        low = int(self.words[pfn >> 6]) & ((1 << (pfn & 63)) - 1)
        return int(self.before[pfn >> 6]) + low.bit_count()

    def runs(self) -> list[tuple[int, int]]:
        """(first frame, frames) of every run of set bits, runs across chunk edges joined."""
        out: list[tuple[int, int]] = []
        for lo in range(0, len(self.data), _CHUNK_BYTES):
            bits = np.unpackbits(self.data[lo : lo + _CHUNK_BYTES], bitorder="little")
            edges = np.flatnonzero(np.diff(np.concatenate(([0], bits.astype(np.int8), [0]))))
            base = lo * 8
            for a, b in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
                if out and out[-1][0] + out[-1][1] == base + a:
                    out[-1] = (out[-1][0], out[-1][1] + b - a)
                else:
                    out.append((base + a, b - a))
            if len(out) > MAX_RUNS:
                raise DumpError(f"The kdump bitmap describes more than {MAX_RUNS} memory ranges.")
        return out


class KdumpPages:
    """A kdump file's pages by frame number (a `kmtool.dump.paged.PageProvider`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = open(path, "rb")  # noqa: SIM115 -- lives as long as the mmap
            self.file_size = os.fstat(self._file.fileno()).st_size
            self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as err:
            raise DumpError(f"Cannot open dump `{path}`: {err}.") from None
        try:
            self._read_headers()
        except BaseException:
            self.close()
            raise

    def _fail(self, struct: Any, base: int, name: str, value: int, why: str) -> DumpError:
        at = base + field_offset(struct, name)
        return DumpError(
            f"kdump `{self.path}`: `{name}` at file offset {hex(at)} is {value} ({hex(value)}); "
            f"{why}."
        )

    def _read_headers(self) -> None:
        h = parse(DiskDumpHeader, self._bytes(0, DiskDumpHeader.sizeof(), "header"), "header", 0)
        if h.header_version not in KNOWN_HEADER_VERSIONS:
            raise self._fail(DiskDumpHeader, 0, "header_version", h.header_version,
                             "kmtool reads versions 1 to 6")  # fmt: skip
        if h.block_size != PAGE_SIZE:
            raise self._fail(DiskDumpHeader, 0, "block_size", h.block_size,
                             f"kmtool reads x86-64 dumps of {PAGE_SIZE}-byte pages")  # fmt: skip
        blocks = self.file_size // PAGE_SIZE
        if not 1 <= h.sub_hdr_size <= blocks:
            raise self._fail(DiskDumpHeader, 0, "sub_hdr_size", h.sub_hdr_size,
                             f"the file has {blocks} blocks")  # fmt: skip
        sub_at = PAGE_SIZE
        sub = parse(KdumpSubHeader, self._bytes(sub_at, KdumpSubHeader.sizeof(), "sub header"),
                    "sub header", sub_at)  # fmt: skip
        self.sub = sub
        frames = sub.max_mapnr_64 if h.header_version >= 6 else h.max_mapnr
        if not 0 < frames <= MAX_FRAMES:
            name = "max_mapnr_64" if h.header_version >= 6 else "max_mapnr"
            struct, base = (
                (KdumpSubHeader, sub_at) if h.header_version >= 6 else (DiskDumpHeader, 0)
            )
            raise self._fail(struct, base, name, frames, "not a frame count of x86-64")
        bitmap_at = (1 + h.sub_hdr_size) * PAGE_SIZE
        half = h.bitmap_blocks * PAGE_SIZE // 2
        if h.bitmap_blocks % 2 or half * 8 < frames or bitmap_at + 2 * half > self.file_size:
            raise self._fail(DiskDumpHeader, 0, "bitmap_blocks", h.bitmap_blocks,
                             f"two bitmaps of {frames} frames that fit the "
                             f"{self.file_size}-byte file need an even count of at least "
                             f"{2 * (-(-frames // (8 * PAGE_SIZE)))}")  # fmt: skip
        raw = np.frombuffer(self._mm, dtype=np.uint8, count=2 * half, offset=bitmap_at)
        self.exists = _Bitmap(raw[:half])
        self.dumped = _Bitmap(raw[half:])
        self.frames = frames
        self._descriptors(bitmap_at + 2 * half)

    def _descriptors(self, at: int) -> None:
        dtype = numpy_dtype(PageDescriptor)
        count = int(self.dumped.before[-1])
        if at + count * dtype.itemsize > self.file_size:
            raise DumpError(
                f"kdump `{self.path}` is truncated: its {count} page descriptors at file offset "
                f"{hex(at)} need {count * dtype.itemsize} bytes, past the end of the "
                f"{self.file_size}-byte file."
            )
        self.descriptors = np.frombuffer(self._mm, dtype=dtype, count=count, offset=at)
        self._descriptors_at = at

    def _bytes(self, offset: int, size: int, what: str) -> bytes:
        if offset + size > self.file_size:
            raise DumpError(
                f"kdump `{self.path}` is truncated: its {what} at file offset {hex(offset)} "
                f"({size} bytes) is past the end of the {self.file_size}-byte file."
            )
        return self._mm[offset : offset + size]

    def notes(self) -> Notes:
        """The ELF notes of the note area (version 4 and later; none before)."""
        sub, base = self.sub, PAGE_SIZE
        if sub.size_note == 0:
            return Notes()
        if sub.size_note > MAX_NOTE_BYTES or sub.offset_note + sub.size_note > self.file_size:
            raise self._fail(KdumpSubHeader, base, "size_note", sub.size_note,
                             f"the notes at file offset {hex(sub.offset_note)} do not fit the "
                             f"{self.file_size}-byte file")  # fmt: skip
        data = self._bytes(sub.offset_note, sub.size_note, "notes")
        return read_notes([(data, sub.offset_note)], self.path)

    def ranges(self) -> list[MemoryRange]:
        """Every run of existing frames, as a physical range stored whole (pages not dumped read
        as zeros)."""
        return [
            MemoryRange(first << PAGE_SHIFT, count << PAGE_SHIFT, 0, count << PAGE_SHIFT)
            for first, count in self.exists.runs()
            if first < self.frames
        ]

    def page(self, pfn: int) -> bytes:
        """Frame `pfn`'s 4 KiB, decompressed."""
        if pfn >= self.frames or pfn not in self.dumped:
            return bytes(PAGE_SIZE)
        k = self.dumped.rank(pfn)
        d = self.descriptors[k]
        offset, size, flags = int(d["offset"]), int(d["size"]), int(d["flags"])
        where = (f"frame {hex(pfn)} (physical {hex(pfn << PAGE_SHIFT)}) of kdump `{self.path}`, "
                 f"descriptor {k} at file offset {hex(self._descriptors_at + 24 * k)}")  # fmt: skip
        if size == 0 or size > PAGE_SIZE or offset + size > self.file_size:
            raise DumpError(
                f"The page data of {where} is {size} bytes at file offset {hex(offset)}, which "
                f"is not inside the {self.file_size}-byte file or not a page's worth."
            )
        data = self._mm[offset : offset + size]
        if flags == 0:
            if size != PAGE_SIZE:
                raise DumpError(
                    f"The uncompressed page of {where} is {size} bytes, not {PAGE_SIZE}."
                )
            return data
        page = decompress(flags, data, where)
        if len(page) != PAGE_SIZE:
            raise DumpError(
                f"The page of {where} decompresses to {len(page)} bytes, not {PAGE_SIZE}."
            )
        return page

    def close(self) -> None:
        """Release the mapping and the file."""
        for name in ("descriptors", "exists", "dumped"):
            self.__dict__.pop(name, None)
        mm = self.__dict__.get("_mm")
        if mm is not None:
            try:
                mm.close()
            except BufferError:  # a caller still holds a view; the mapping goes with the last one
                pass
        f = self.__dict__.get("_file")
        if f is not None:
            f.close()


def decompress(flags: int, data: bytes, where: str) -> bytes:
    """The page `data` compressed as `flags` says; DumpError naming `where` when it does not
    decompress or the codec's package is missing."""
    codec = _CODECS.get(flags)
    if codec is None:
        raise DumpError(f"The page of {where} has flags {hex(flags)}, no compression kmtool knows.")
    try:
        if codec == "zlib":
            return zlib.decompress(data)
        if codec == "lzo":
            return _lzo(data, where)
        if codec == "snappy":
            return _snappy(data, where)
        return _zstd(data, where)
    except DumpError:
        raise
    except Exception as err:  # each codec raises its own error type on corrupt input
        raise DumpError(
            f"The {codec}-compressed page of {where} ({len(data)} bytes) does not decompress: "
            f"{type(err).__name__}: {err}."
        ) from None


def _missing(codec: str, package: str, where: str) -> DumpError:
    return DumpError(
        f"The page of {where} is {codec}-compressed (QEMU's kdump-{codec.lower()}); reading it "
        f"needs the Python package `{package}`, which is not installed (pip install {package})."
    )


def _codec_module(name: str, codec: str, package: str, where: str) -> Any:
    """The optional codec module `name`, imported only when a page needs it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise _missing(codec, package, where) from None


def _lzo(data: bytes, where: str) -> bytes:
    lzo = _codec_module("lzo", "LZO", "python-lzo", where)
    return bytes(lzo.decompress(data, False, PAGE_SIZE))


def _snappy(data: bytes, where: str) -> bytes:
    cramjam = _codec_module("cramjam", "Snappy", "cramjam", where)
    return bytes(cramjam.snappy.decompress_raw(data))


def _zstd(data: bytes, where: str) -> bytes:
    cramjam = _codec_module("cramjam", "zstd", "cramjam", where)
    return bytes(cramjam.zstd.decompress(data))
