"""Writing a dump file: whole 2 MiB blocks at 2 MiB-aligned file offsets, all-zero blocks left as holes.

Why the block shape: Linux caches a file in folios whose size follows the writes that made them.
A file written a page at a time, as QEMU writes its own `dump-guest-memory` files and `pmemsave`
chunks, sits in 4 KiB folios. A mapping of such a file needs one page-table entry per 4 KiB page,
set up when `kmtool inspect` touches it and torn down when it lets go. For a free list scattered over
2 GiB of dump, that mapping costs about 0.27 s on ext4 under Linux 6.18, several times the chase
itself. Whole aligned 2 MiB blocks make 2 MiB folios, which the kernel maps with one entry each: the
same 2 GiB then costs 0.002 s. So every dump kmtool writes goes through a `BlockWriter`, and a dump
is quick to inspect right after `kmtool run --dump` (figures: BENCHMARKS.md, Inspect).

Holes: a block that holds only zeros is not written, so the file is sparse where guest memory is
empty, and a 256 GiB guest's dump takes the disk space of what the guest used.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from kmtool.layout.table import ENTRIES_PER_TABLE, PAGE_SIZE

BLOCK = PAGE_SIZE * ENTRIES_PER_TABLE  # the folio size to aim for: one PD entry's 2 MiB page
_ZERO = bytes(BLOCK)


@contextlib.contextmanager
def create(path: Path) -> Iterator[BlockWriter]:
    """A BlockWriter on the new file `path` (created or truncated, mode 0644), closed on exit. The
    caller ends with `finish`; what is still buffered when the block is left early is dropped."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        yield BlockWriter(fd)
    finally:
        os.close(fd)


class BlockWriter:
    """Writes one *new* file (opened with O_TRUNC) front to back in BLOCK-aligned blocks.

    The contract: the write position only moves forward (`seek`), every byte is written at most
    once, and a byte never written reads as zero. Each block that holds a non-zero byte is written
    with one pwrite of the whole block at its aligned offset, the bytes skipped inside it as zeros;
    only the file's last block may be shorter (it ends where the file does). A block of zeros is not
    written at all. Bytes wait in a one-block buffer until their block is complete, a `seek` leaves
    it, or `finish` is called, so memory stays bounded whatever the size of the dump.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buf = bytearray(BLOCK)
        self._view = memoryview(self._buf)
        self._block = 0  # file offset of the block in the buffer (a multiple of BLOCK)
        self._fill = 0  # bytes of the block received so far, skipped ones included (as zeros)

    @property
    def position(self) -> int:
        """The file offset the next byte goes to."""
        return self._block + self._fill

    def seek(self, offset: int) -> None:
        """Move the write position forward to `offset`; the skipped bytes are zeros (holes)."""
        if offset < self.position:
            raise ValueError(f"BlockWriter.seek({offset:#x}) behind position {self.position:#x}")
        if offset >= self._block + BLOCK:
            self._pad(BLOCK)
            self._flush()
            self._block = offset - offset % BLOCK
            self._fill = 0
        self._pad(offset - self._block)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append `data` at the write position."""
        view = memoryview(data).cast("B")
        while len(view):
            step = min(len(view), BLOCK - self._fill)
            self._buf[self._fill : self._fill + step] = view[:step]
            self._fill += step
            view = view[step:]
            if self._fill == BLOCK:
                self._next_block()

    def copy_from(self, fd: int) -> int:
        """Copy `fd` from its current offset to its end to the write position; return the bytes
        that came (holes included). The holes of a regular file are skipped, not read; a pipe is
        read until its writer closes it (EOF). Reads go straight into the buffer, no extra copy."""
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return self._copy_file(fd)
        total = 0
        while True:
            n = os.readv(fd, [self._view[self._fill :]])
            if n == 0:
                return total
            total += n
            self._fill += n
            if self._fill == BLOCK:
                self._next_block()

    def finish(self, size: int | None = None) -> None:
        """Write what is buffered; with `size`, set the file's length to it (a hole to the end)."""
        if size is not None:
            if size < self.position:
                raise ValueError(
                    f"BlockWriter.finish({size:#x}) behind position {self.position:#x}"
                )
            self._pad(min(BLOCK, size - self._block))  # the file goes on: write the block whole
        self._flush()
        if size is not None:
            os.ftruncate(self._fd, size)

    # -- internals --------------------------------------------------------------------------------

    def _copy_file(self, fd: int) -> int:
        start = pos = os.lseek(fd, 0, os.SEEK_CUR)
        end = os.fstat(fd).st_size
        base = self.position - start  # write position = base + source offset
        while pos < end:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
                hole = os.lseek(fd, data, os.SEEK_HOLE)
            except OSError as err:
                if err.errno == errno.ENXIO:  # only a hole is left
                    break
                if err.errno != errno.EINVAL:
                    raise
                data, hole = pos, end  # no SEEK_DATA on this file system: read it all
            self.seek(base + data)
            while data < hole:
                n = os.preadv(fd, [self._view[self._fill : self._fill + hole - data]], data)
                if n == 0:  # the file shrank under us
                    hole = data
                    break
                data += n
                self._fill += n
                if self._fill == BLOCK:
                    self._next_block()
            pos = hole
        self.seek(base + end)
        os.lseek(fd, end, os.SEEK_SET)
        return end - start

    def _pad(self, upto: int) -> None:
        """Zeros in the buffer from what was received up to block offset `upto`."""
        if upto > self._fill:
            self._buf[self._fill : upto] = _ZERO[: upto - self._fill]
            self._fill = upto

    def _next_block(self) -> None:
        self._flush()
        self._block += BLOCK
        self._fill = 0

    def _flush(self) -> None:
        """Write the buffered block [0, fill) unless it is all zeros. (Called once per block.)"""
        n = self._fill
        if n and self._buf[:n] != _ZERO[:n]:
            view, at = self._view[:n], self._block
            while len(view):
                done = os.pwrite(self._fd, view, at)
                view, at = view[done:], at + done
