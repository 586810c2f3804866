"""Physical memory of a dump whose pages are stored one by one (a kdump file's compressed pages).

`PhysicalMemory` reads raw, ELF and LiME dumps through one mmap, where a physical range is a file
range. A kdump file has no such ranges: each page is stored on its own, compressed or not, found
through a page descriptor. `PagedMemory` serves the same reads (`read`, `u64`, `gather`, `table`,
`page_heads`, `range_words`, `word_view`, `scan`) from a `PageProvider`, which turns a frame number
into the page's 4 KiB, so every decoder works unchanged on either.

Pages are decoded on demand and kept in a bounded LRU cache (`CACHE_PAGES` pages, 16 MiB), never
the whole dump: resident memory stays bounded however large the dump and however long the walk.
A page that cannot be decoded (a descriptor past the file, data that does not decompress) is a
`DumpError` naming the frame and the file offset, raised by whichever read needed it, so it is a
failed part of the inspection (docs/design.md §10), never a traceback.

`range_words` and `word_view` hand out a `LazyWords`, which the list chases index like the
zero-copy arrays of `PhysicalMemory` (an int, or an integer array of any shape) and which fetches
the pages those words are in.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np

from kmtool.dump.memory import WORD, MemoryRange, PhysicalMemory, checked_ranges
from kmtool.errors import DumpError
from kmtool.layout.table import ENTRIES_PER_TABLE, PAGE_SHIFT, PAGE_SIZE

CACHE_PAGES = 4096  # 16 MiB of decoded pages
_BATCH_PAGES = 1024  # pages a bulk read holds at once (4 MiB)
_SCAN_PAGES = 256  # pages a scan decodes per step (1 MiB)
_WORDS_PER_PAGE = PAGE_SIZE // WORD


class PageProvider(Protocol):
    """The pages of one dump file, by frame number."""

    path: Path
    file_size: int

    def ranges(self) -> list[MemoryRange]:
        """The physical ranges the dump covers (page aligned; `file_size` == `size`)."""
        ...

    def page(self, pfn: int) -> bytes:
        """The PAGE_SIZE bytes of frame `pfn`, which lies in a range; zeros for a frame the dump
        covers but did not store. DumpError naming the frame when its page cannot be decoded."""
        ...

    def close(self) -> None:
        """Release the file."""
        ...


class PagedMemory(PhysicalMemory):
    """`PhysicalMemory` over a `PageProvider`; see the module docstring."""

    def __init__(self, provider: PageProvider) -> None:  # noqa: D107 -- no mmap of its own
        self.path = provider.path
        self.bounded = True
        self.file_size = provider.file_size
        self.provider = provider
        self.ranges = checked_ranges(provider.path, provider.ranges(), None)
        self._starts = [r.start for r in self.ranges]
        self._np_starts = np.array(self._starts, dtype=np.uint64)
        self._np_ends = np.array([r.end for r in self.ranges], dtype=np.uint64)
        self._words = []
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    # -- pages ------------------------------------------------------------------------------------

    def page_words(self, pfn: int) -> np.ndarray:
        """Frame `pfn` as a read-only array of 512 words, from the cache or decoded now."""
        words = self._cache.get(pfn)
        if words is not None:
            self._cache.move_to_end(pfn)
            return words
        words = np.frombuffer(self.provider.page(pfn), dtype="<u8")
        self._cache[pfn] = words
        if len(self._cache) > CACHE_PAGES:
            self._cache.popitem(last=False)
        return words

    def _in_dump(self, pas: np.ndarray, nbytes: int) -> np.ndarray:
        """True where [pa, pa + nbytes) lies inside one range."""
        idx = np.searchsorted(self._np_starts, pas, side="right").astype(np.int64) - 1
        good = idx >= 0
        ends = self._np_ends[np.maximum(idx, 0)]
        return good & (pas + np.uint64(nbytes) <= ends)

    # -- small reads ------------------------------------------------------------------------------

    def read(self, pa: int, length: int, what: str) -> bytes:
        """`length` bytes at physical `pa`; DumpError naming `what` when any byte is absent."""
        if pa < 0 or length < 0 or pa + length > 1 << 64:
            raise DumpError(f"`{what}` at {hex(pa)} is outside the physical address space.")
        parts: list[bytes] = []
        cur, left = pa, length
        while left > 0:
            if self.range_index(cur) < 0:
                raise DumpError(
                    f"`{what}` at {hex(pa)} ({length} bytes) is outside the dump "
                    f"(no memory at {hex(cur)})."
                )
            offset = cur % PAGE_SIZE
            step = min(left, PAGE_SIZE - offset)
            parts.append(self.page_words(cur >> PAGE_SHIFT).tobytes()[offset : offset + step])
            cur += step
            left -= step
        return b"".join(parts)

    def table(self, pa: int, what: str) -> np.ndarray:
        """The 512 entries of the page table at `pa` (read-only)."""
        if pa % PAGE_SIZE == 0 and self.range_index(pa) >= 0:
            return self.page_words(pa >> PAGE_SHIFT)
        return np.frombuffer(self.read(pa, PAGE_SIZE, what), dtype="<u8")

    # -- bulk reads -------------------------------------------------------------------------------

    def gather(self, pas: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """`PhysicalMemory.gather`: (values, ok), decoding the pages the rows fall in."""
        pas = np.asarray(pas, dtype=np.uint64)
        n = len(pas)
        out = np.zeros((n, width), dtype=np.uint64)
        ok = np.zeros(n, dtype=bool)
        if n == 0:
            return out, ok
        aligned = (pas & np.uint64(WORD - 1)) == 0
        ok[:] = aligned & self._in_dump(pas, width * WORD)
        rel = (pas & np.uint64(PAGE_SIZE - 1)).astype(np.int64)
        whole = ok & (rel + width * WORD <= PAGE_SIZE)
        rows = np.flatnonzero(whole)
        self._gather_pages(pas[rows], rel[rows] // WORD, width, out, rows)
        for j in np.flatnonzero(ok & ~whole).tolist():  # rows across a page boundary
            out[j] = np.frombuffer(self.read(int(pas[j]), width * WORD, "memory"), dtype="<u8")
        return out, ok

    def _gather_pages(
        self, pas: np.ndarray, first: np.ndarray, width: int, out: np.ndarray, rows: np.ndarray
    ) -> None:
        """Fill out[rows] with `width` words from word `first` of each row's page, batch by batch."""
        if not len(rows):
            return
        pfns = pas >> np.uint64(PAGE_SHIFT)
        unique, inverse = np.unique(pfns, return_inverse=True)
        cols = np.arange(width, dtype=np.int64)
        for lo in range(0, len(unique), _BATCH_PAGES):
            batch = unique[lo : lo + _BATCH_PAGES]
            pages = np.stack([self.page_words(int(p)) for p in batch.tolist()])
            sel = np.flatnonzero((inverse >= lo) & (inverse < lo + len(batch)))
            out[rows[sel]] = pages[(inverse[sel] - lo)[:, None], first[sel][:, None] + cols]

    def words_at(self, pas: np.ndarray) -> np.ndarray:
        """The word at each physical address of `pas` (8-aligned, inside the dump), same shape."""
        flat = np.asarray(pas, dtype=np.uint64).reshape(-1)
        out = np.zeros((len(flat), 1), dtype=np.uint64)
        rel = ((flat & np.uint64(PAGE_SIZE - 1)) // np.uint64(WORD)).astype(np.int64)
        self._gather_pages(flat, rel, 1, out, np.arange(len(flat)))
        return out.reshape(np.shape(pas))

    def page_heads(self, index: int, start: int, end: int, width: int) -> np.ndarray:
        """`PhysicalMemory.page_heads`, one decoded page at a time."""
        r = self.ranges[index]
        stop = min(end, r.file_end)
        heads = [self.page_words(pa >> PAGE_SHIFT)[:width] for pa in range(start, stop, PAGE_SIZE)]
        if not heads:
            return np.zeros((0, width), dtype=np.uint64)
        return np.stack(heads)

    def range_words(self, index: int) -> np.ndarray:
        """Range `index` as words (word k = physical start + 8k), fetched page by page."""
        return cast(np.ndarray, LazyWords(self, self.ranges[index]))  # indexed like an array

    def word_view(self, index: int) -> memoryview:
        """`range_words`, for the readers that index a memoryview."""
        return cast(memoryview, LazyWords(self, self.ranges[index]))  # indexed like a memoryview

    def release(self) -> None:
        """Nothing is mapped: decoded pages live in the bounded cache."""

    def release_all(self) -> None:
        """Empty the page cache."""
        self._cache.clear()

    def release_range(self, index: int, start: int, end: int) -> None:
        """Nothing is mapped; the cache bounds itself."""

    # -- scanning ---------------------------------------------------------------------------------

    def scan(self, needle: bytes, align: int = WORD) -> Iterator[int]:
        """`PhysicalMemory.scan`: every page decoded once, `_SCAN_PAGES` at a time, not cached."""
        overlap = len(needle) - 1
        for r in self.ranges:
            tail, tail_at = b"", r.start
            for first in range(r.start, r.end, _SCAN_PAGES * PAGE_SIZE):
                last = min(r.end, first + _SCAN_PAGES * PAGE_SIZE)
                pages = [self._scan_page(pa >> PAGE_SHIFT) for pa in range(first, last, PAGE_SIZE)]
                chunk = tail + b"".join(pages)
                at = chunk.find(needle)
                while at >= 0:
                    if (tail_at + at) % align == 0:
                        yield tail_at + at
                    at = chunk.find(needle, at + 1)
                keep = min(overlap, len(chunk))
                tail, tail_at = (chunk[len(chunk) - keep :], last - keep) if keep else (b"", last)

    def _scan_page(self, pfn: int) -> bytes:
        """The page for a scan: a page that cannot be decoded holds nothing to find (zeros); the
        read that needs it reports it."""
        try:
            return self.provider.page(pfn)
        except DumpError:
            return bytes(PAGE_SIZE)

    def close(self) -> None:
        """Release the cache and the file."""
        self._cache.clear()
        self.provider.close()


class LazyWords:
    """The words of one range of a `PagedMemory`, indexed like a numpy array: word k is at
    physical start + 8k; an int gives an int, an integer array an array of its shape."""

    def __init__(self, memory: PagedMemory, r: MemoryRange) -> None:
        self._memory = memory
        self._start = r.start
        self._count = r.file_size // WORD

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)):
            k = int(key)
            if not 0 <= k < self._count:
                raise IndexError(f"word {k} of a {self._count}-word range")
            pa = self._start + k * WORD
            return int(self._memory.page_words(pa >> PAGE_SHIFT)[(pa % PAGE_SIZE) // WORD])
        if isinstance(key, slice):
            key = np.arange(*key.indices(self._count), dtype=np.int64)
        index = np.asarray(key, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self._count):
            raise IndexError(f"words {index.min()}..{index.max()} of a {self._count}-word range")
        pas = np.uint64(self._start) + index.astype(np.uint64) * np.uint64(WORD)
        return self._memory.words_at(pas)


assert ENTRIES_PER_TABLE == _WORDS_PER_PAGE, "a page table is one page of words"
