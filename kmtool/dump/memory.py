"""Guest physical memory read through one mmap of a dump file.

A `PhysicalMemory` is a sorted list of `MemoryRange`s, each mapping guest-physical bytes
[start, start + size) to the file bytes [file_offset, file_offset + file_size); bytes past file_size
(an ELF PT_LOAD with p_filesz < p_memsz) read as zeros. Addresses in no range are absent: reading them
raises `DumpError` naming the structure being read, so a wild pointer never becomes a traceback.

Nothing reads a whole dump into memory: small reads slice the mmap, bulk reads (page tables, list
nodes) are numpy gathers over zero-copy views of it, and scans use bounded `pread` chunks (so resident
memory stays small even when the whole file is searched).
"""

from __future__ import annotations

import errno
import mmap
import os
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kmtool.errors import DumpError

WORD = 8
_SCAN_CHUNK = 16 << 20


@dataclass(frozen=True)
class MemoryRange:
    """Guest-physical [start, start + size), stored at file_offset for its first file_size bytes."""

    start: int
    size: int
    file_offset: int
    file_size: int

    @property
    def end(self) -> int:
        """One past the last physical byte."""
        return self.start + self.size

    @property
    def file_end(self) -> int:
        """One past the last physical byte that is stored in the file."""
        return self.start + self.file_size


class PhysicalMemory:
    """Guest-physical memory of one dump file; see the module docstring."""

    def __init__(self, path: Path, ranges: list[MemoryRange]) -> None:
        self.path = path
        try:
            self._file = open(path, "rb")  # noqa: SIM115 -- lives as long as the mmap
        except OSError as err:
            raise DumpError(f"Cannot open dump `{path}`: {err.strerror}.") from None
        self.file_size = os.fstat(self._file.fileno()).st_size
        if self.file_size == 0:
            raise DumpError(f"Dump `{path}` is empty.")
        self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        self.ranges = sorted((r for r in ranges if r.size > 0), key=lambda r: r.start)
        if not self.ranges:
            raise DumpError(f"Dump `{path}` describes no physical memory.")
        for prev, cur in zip(self.ranges, self.ranges[1:], strict=False):
            if cur.start < prev.end:
                raise DumpError(
                    f"Dump `{path}` has overlapping memory ranges at {hex(prev.start)} and "
                    f"{hex(cur.start)}."
                )
        for r in self.ranges:
            if r.file_size > r.size or r.file_offset + r.file_size > self.file_size:
                raise DumpError(
                    f"Dump `{path}` is truncated: the range at physical {hex(r.start)} needs file "
                    f"bytes up to {hex(r.file_offset + r.file_size)} but the file has "
                    f"{hex(self.file_size)}."
                )
            if r.start + r.size > 1 << 64:
                raise DumpError(f"Dump `{path}` has a memory range past 2^64 at {hex(r.start)}.")
        self._starts = [r.start for r in self.ranges]
        self._np_starts = np.array(self._starts, dtype=np.uint64)
        # Zero-copy 64-bit word views of each range's file part (file offsets need not be aligned).
        self._words = [
            np.frombuffer(self._mm, dtype="<u8", count=r.file_size // WORD, offset=r.file_offset)
            for r in self.ranges
        ]

    # -- lookup -----------------------------------------------------------------------------------

    @property
    def ram_bytes(self) -> int:
        """Bytes of physical address space the dump covers."""
        return sum(r.size for r in self.ranges)

    def range_index(self, pa: int) -> int:
        """Index of the range holding physical address `pa`, or -1."""
        i = bisect_right(self._starts, pa) - 1
        if i >= 0 and pa < self.ranges[i].end:
            return i
        return -1

    def contains(self, pa: int, length: int = 1) -> bool:
        """True when every byte of [pa, pa + length) is in the dump."""
        while length > 0:
            i = self.range_index(pa)
            if i < 0:
                return False
            step = min(length, self.ranges[i].end - pa)
            pa += step
            length -= step
        return True

    # -- small reads ------------------------------------------------------------------------------

    def read(self, pa: int, length: int, what: str) -> bytes:
        """`length` bytes at physical `pa`; `DumpError` naming `what` when any byte is absent."""
        if pa < 0 or length < 0 or pa + length > 1 << 64:
            raise DumpError(f"`{what}` at {hex(pa)} is outside the physical address space.")
        parts: list[bytes] = []
        cur, left = pa, length
        while left > 0:
            i = self.range_index(cur)
            if i < 0:
                raise DumpError(
                    f"`{what}` at {hex(pa)} ({length} bytes) is outside the dump "
                    f"(no memory at {hex(cur)})."
                )
            r = self.ranges[i]
            step = min(left, r.end - cur)
            in_file = max(0, min(step, r.file_end - cur))
            if in_file:
                offset = r.file_offset + (cur - r.start)
                parts.append(self._mm[offset : offset + in_file])
            if step > in_file:
                parts.append(bytes(step - in_file))
            cur += step
            left -= step
        return b"".join(parts)

    def u64(self, pa: int, what: str) -> int:
        """The little-endian 64-bit word at physical `pa`."""
        return int.from_bytes(self.read(pa, WORD, what), "little")

    def c_string(self, pa: int, limit: int, what: str) -> bytes:
        """Bytes at `pa` up to (not including) the first NUL, reading at most `limit` bytes."""
        data = self.read(pa, limit, what)
        end = data.find(b"\0")
        return data if end < 0 else data[:end]

    # -- bulk reads -------------------------------------------------------------------------------

    def gather(self, pas: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Read `width` little-endian words at each physical address in `pas` (uint64, 8-aligned).

        Returns (values, ok): values is a (len(pas), width) uint64 array, ok a bool array that is False
        where any word was absent from the dump or the address was misaligned (those rows are 0).
        """
        pas = np.asarray(pas, dtype=np.uint64)
        n = len(pas)
        out = np.zeros((n, width), dtype=np.uint64)
        ok = np.zeros(n, dtype=bool)
        if n == 0:
            return out, ok
        nbytes = np.uint64(width * WORD)
        aligned = (pas & np.uint64(WORD - 1)) == 0
        idx = np.searchsorted(self._np_starts, pas, side="right").astype(np.int64) - 1
        cols = np.arange(width, dtype=np.int64)
        for i, r in enumerate(self.ranges):
            sel = np.flatnonzero((idx == i) & aligned)
            if len(sel) == 0:
                continue
            if r.size < width * WORD:
                continue
            rel = pas[sel] - np.uint64(r.start)
            inside = rel <= np.uint64(r.size - width * WORD)
            sel, rel = sel[inside], rel[inside]
            in_file = rel + nbytes <= np.uint64(r.file_size)
            words = self._words[i]
            fsel = sel[in_file]
            if len(fsel):
                rows = (rel[in_file] // np.uint64(WORD)).astype(np.int64)
                out[fsel] = words[rows[:, None] + cols]
            ok[fsel] = True
            tail = ~in_file
            if tail.any():
                for j, k in zip(sel[tail], rel[tail], strict=True):  # straddlers and zero tails
                    data = self.read(r.start + int(k), width * WORD, "memory")
                    out[j] = np.frombuffer(data, dtype="<u8")
                    ok[j] = True
        return out, ok

    def table(self, pa: int, what: str) -> np.ndarray:
        """The 512 entries of the page-aligned page table at `pa` (a read-only uint64 array)."""
        i = self.range_index(pa)
        if i >= 0 and pa % WORD == 0:
            r = self.ranges[i]
            rel = pa - r.start
            if rel + 4096 <= r.file_size:
                start = rel // WORD
                return self._words[i][start : start + 512]
        return np.frombuffer(self.read(pa, 4096, what), dtype="<u8")

    def word_view(self, index: int) -> memoryview:
        """The file part of range `index` as a memoryview of native 64-bit words (x86 hosts)."""
        r = self.ranges[index]
        offset = r.file_offset
        return memoryview(self._mm)[offset : offset + (r.file_size // WORD) * WORD].cast("Q")

    # -- scanning ---------------------------------------------------------------------------------

    def scan(self, needle: bytes, align: int = WORD) -> Iterator[int]:
        """Yield physical addresses (multiples of `align`) where `needle` occurs, lowest first.

        Reads the file in bounded chunks with pread (skipping holes of sparse files), so a scan of a
        multi-GiB dump neither maps it all in nor grows resident memory.
        """
        fd = self._file.fileno()
        overlap = len(needle) - 1
        for r in self.ranges:
            pos, end = r.file_offset, r.file_offset + r.file_size
            while pos < end:
                try:
                    data_at = os.lseek(fd, pos, os.SEEK_DATA)
                except OSError as err:
                    if err.errno == errno.ENXIO:  # only a hole remains
                        break
                    data_at = pos  # no SEEK_DATA support: read everything
                if data_at >= end:
                    break
                if data_at > pos:
                    pos = data_at - data_at % WORD
                count = min(_SCAN_CHUNK, end - pos)
                chunk = os.pread(fd, min(count + overlap, end - pos), pos)
                found = chunk.find(needle)
                while found >= 0:
                    if found < count:
                        pa = r.start + (pos - r.file_offset) + found
                        if pa % align == 0:
                            yield pa
                    found = chunk.find(needle, found + 1)
                pos += count

    def close(self) -> None:
        """Release the mapping (views handed out before must be dropped first)."""
        self._words = []
        try:
            self._mm.close()
        except BufferError:  # a caller still holds a view; the mapping goes with the last one
            pass
        self._file.close()
