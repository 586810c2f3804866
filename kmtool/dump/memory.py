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
from kmtool.layout.table import ENTRIES_PER_TABLE, PAGE_SIZE

WORD = 8
MAX_PHYSICAL = 1 << 52  # x86-64 physical addresses have at most 52 bits
FAULT_AROUND_SHIFT = 16  # Linux maps up to 64 KiB of cached file pages around a faulting one
PAGE_BUDGET = 512  # fault-around blocks a bulk read may touch before `release`
BUDGET_BYTES = PAGE_BUDGET << FAULT_AROUND_SHIFT  # 32 MiB
_SCAN_CHUNK = 16 << 20
_MADV_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux 5.14; Python 3.11 lacks it


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

    def __init__(self, path: Path, ranges: list[MemoryRange], bounded: bool = True) -> None:
        self.path = path
        #: Keep resident memory bounded (see `release`); False keeps touched pages mapped, which
        #: makes repeated passes over the same pages faster at the price of resident memory.
        self.bounded = bounded
        try:
            self._file = open(path, "rb")  # noqa: SIM115 -- lives as long as the mmap
        except OSError as err:
            raise DumpError(f"Cannot open dump `{path}`: {err.strerror}.") from None
        self.file_size = os.fstat(self._file.fileno()).st_size
        if self.file_size == 0:
            raise DumpError(f"Dump `{path}` is empty.")
        self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        self.ranges = checked_ranges(path, ranges, self.file_size)
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
        if n <= PAGE_BUDGET or not self.bounded or int(pas.max() - pas.min()) <= BUDGET_BYTES:
            self._gather_into(pas, width, out, ok)
            return out, ok
        # Bound resident memory: visit the addresses in order, PAGE_BUDGET fault-around blocks at a
        # time, and drop the mappings after each group (see `release`).
        order = np.argsort(pas, kind="stable")
        blocks = pas[order] >> np.uint64(FAULT_AROUND_SHIFT)
        first = np.flatnonzero(np.concatenate(([True], blocks[1:] != blocks[:-1])))
        if len(first) <= PAGE_BUDGET:
            self._gather_into(pas, width, out, ok)
            return out, ok
        cuts = [*first[PAGE_BUDGET::PAGE_BUDGET].tolist(), n]
        lo = 0
        for hi in cuts:
            rows = order[lo:hi]
            part_out = np.zeros((len(rows), width), dtype=np.uint64)
            part_ok = np.zeros(len(rows), dtype=bool)
            self._gather_into(pas[rows], width, part_out, part_ok)
            out[rows], ok[rows] = part_out, part_ok
            self.release()
            lo = hi
        return out, ok

    def _gather_into(self, pas: np.ndarray, width: int, out: np.ndarray, ok: np.ndarray) -> None:
        """`gather` without the residency bound: fill `out`/`ok` for `pas` in place."""
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

    def release(self) -> None:
        """Drop this process's page mappings of the dump; the pages stay in the page cache.

        Touching a page of an mmap'd file maps it (and, by the kernel's fault-around, up to 15 of
        its neighbours) into the process, where it counts as resident memory until unmapped. Bulk
        readers call this between bounded batches so a scattered walk over a multi-GiB dump (a
        free list with a node in every other frame) never holds more than a few tens of MiB.
        """
        if self.bounded:
            self.release_all()

    def release_all(self) -> None:
        """`release`, whether or not the memory is bounded."""
        if _MADV_DONTNEED is not None:
            self._mm.madvise(_MADV_DONTNEED)

    def page_heads(self, index: int, start: int, end: int, width: int) -> np.ndarray:
        """The first `width` words of every page of range `index` from physical `start` (page
        aligned, inside the range) up to `end`, as a (pages, width) uint64 copy.

        This is how a dense list chase reads its nodes: one vectorised, parallel pass over the
        window's page heads (mapped first with MADV_POPULATE_READ), after which the chase itself
        follows pointers in a Python list instead of taking one cache miss per node.
        """
        r = self.ranges[index]
        words = self._words[index]
        step = PAGE_SIZE // WORD
        first = (start - r.start) // WORD
        pages = max(0, min((min(end, r.file_end) - start + PAGE_SIZE - 1) // PAGE_SIZE,
                           (len(words) - first - width) // step + 1))  # fmt: skip
        if pages == 0:
            return np.zeros((0, width), dtype=np.uint64)
        self.populate(index, start, start + pages * PAGE_SIZE)
        # One opaque `width`-word item per page: numpy copies those with a tight strided loop
        # (about a third faster than a (pages, width) view of words, which loops per row).
        view = np.ndarray(
            (pages,),
            dtype=f"V{width * WORD}",
            buffer=words,
            offset=first * WORD,
            strides=(PAGE_SIZE,),
        )
        return view.copy().view("<u8").reshape(pages, width)

    def populate(self, index: int, start: int, end: int) -> None:
        """Map the pages of range `index` holding physical [start, end) (inside its file part) in
        one call (MADV_POPULATE_READ), before a vectorised pass reads them; bounded memory only
        (unbounded readers keep their pages mapped anyway). A kernel without it: no effect."""
        if not self.bounded:
            return
        r = self.ranges[index]
        offset = r.file_offset + (start - r.start)
        aligned = offset - offset % mmap.PAGESIZE
        try:
            self._mm.madvise(_MADV_POPULATE_READ, aligned, offset + (end - start) - aligned)
        except (OSError, ValueError):
            pass

    def release_range(self, index: int, start: int, end: int) -> None:
        """`release`, limited to the pages of range `index` holding physical [start, end)."""
        if not self.bounded or _MADV_DONTNEED is None:
            return
        r = self.ranges[index]
        lo = max(start, r.start) - r.start
        hi = min(end, r.file_end) - r.start
        if hi <= lo:
            return
        first = r.file_offset + lo - (r.file_offset + lo) % mmap.PAGESIZE
        self._mm.madvise(_MADV_DONTNEED, first, r.file_offset + hi - first)

    def table(self, pa: int, what: str) -> np.ndarray:
        """The ENTRIES_PER_TABLE entries of the page-aligned page table at `pa` (a read-only uint64
        array)."""
        i = self.range_index(pa)
        if i >= 0 and pa % WORD == 0:
            r = self.ranges[i]
            rel = pa - r.start
            if rel + PAGE_SIZE <= r.file_size:
                start = rel // WORD
                return self._words[i][start : start + ENTRIES_PER_TABLE]
        return np.frombuffer(self.read(pa, PAGE_SIZE, what), dtype="<u8")

    def range_words(self, index: int) -> np.ndarray:
        """The file part of range `index` as a zero-copy uint64 array (word k = physical
        start + 8k)."""
        return self._words[index]

    def word_view(self, index: int) -> memoryview:
        """The file part of range `index` as a memoryview of native 64-bit words (x86 hosts)."""
        r = self.ranges[index]
        offset = r.file_offset
        return memoryview(self._mm)[offset : offset + (r.file_size // WORD) * WORD].cast("Q")

    # -- scanning ---------------------------------------------------------------------------------

    def scan(self, needle: bytes, align: int = WORD) -> Iterator[int]:
        """Yield physical addresses (multiples of `align`) where `needle` occurs, lowest first.

        Reads the file in bounded chunks with pread (skipping holes of sparse files), so a scan of a
        multi-GiB dump neither maps it all in nor grows resident memory. The search looks for the
        longest run of non-zero bytes in `needle` (bytes.find crawls on zero-filled memory when the
        needle itself holds zeros) and then compares the whole needle.
        """
        key, key_at = _search_key(needle)
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
                found = chunk.find(key, key_at)
                while found >= 0:
                    at = found - key_at
                    if at < count and chunk.startswith(needle, at):
                        pa = r.start + (pos - r.file_offset) + at
                        if pa % align == 0:
                            yield pa
                    found = chunk.find(key, found + 1)
                pos += count

    def close(self) -> None:
        """Release the mapping (views handed out before must be dropped first)."""
        self._words = []
        try:
            self._mm.close()
        except BufferError:  # a caller still holds a view; the mapping goes with the last one
            pass
        self._file.close()


def checked_ranges(
    path: Path, ranges: list[MemoryRange], file_size: int | None
) -> list[MemoryRange]:
    """`ranges` without empty ones, sorted by start; DumpError when two overlap, one needs bytes
    past `file_size` (None: the ranges are not file ranges), or one reaches past the 52-bit
    physical address space."""
    out = sorted((r for r in ranges if r.size > 0), key=lambda r: r.start)
    if not out:
        raise DumpError(f"Dump `{path}` describes no physical memory.")
    for prev, cur in zip(out, out[1:], strict=False):
        if cur.start < prev.end:
            raise DumpError(
                f"Dump `{path}` has overlapping memory ranges at {hex(prev.start)} and "
                f"{hex(cur.start)}."
            )
    for r in out:
        if file_size is not None and (
            r.file_size > r.size or r.file_offset + r.file_size > file_size
        ):
            raise DumpError(
                f"Dump `{path}` is truncated: the range at physical {hex(r.start)} needs file "
                f"bytes up to {hex(r.file_offset + r.file_size)} but the file has "
                f"{hex(file_size)}."
            )
        if r.start + r.size > MAX_PHYSICAL:
            raise DumpError(
                f"Dump `{path}` has a memory range at physical {hex(r.start)} of {hex(r.size)} "
                "bytes, past the 52-bit physical address space of x86-64: an absurd size."
            )
    return out


def _search_key(needle: bytes) -> tuple[bytes, int]:
    """The longest run of non-zero bytes in `needle` and its offset (the needle if none)."""
    best, best_at, run_at = b"", 0, 0
    for i in range(len(needle) + 1):
        if i == len(needle) or needle[i] == 0:
            if i - run_at > len(best):
                best, best_at = needle[run_at:i], run_at
            run_at = i + 1
    return (best, best_at) if best else (needle, 0)
