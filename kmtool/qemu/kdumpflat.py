"""Reassemble makedumpfile's flattened stream into a kdump-compressed file, as it arrives.

QEMU 7.2 writes its kdump formats in the *flattened* form (kmtool/schemas/kdump.py): it cannot seek
in a pipe, so each write becomes a record naming the file offset its bytes belong at. Reading that
stream from the pipe and writing each record where it says gives the plain kdump-compressed file
that kmtool inspect and crash read, with no second pass and no `makedumpfile -R`. Bytes no record
writes stay holes (the file is sparse there).
"""

from __future__ import annotations

import os

from kmtool.schemas.kdump import FLAT_END, FLAT_HEADER_BYTES, FlatHeader, FlatRecord
from kmtool.schemas.signatures import FLAT_SIGNATURE

MAX_RECORD = 64 << 20  # QEMU writes at most a few pages per record; more is not its stream
_CHUNK = 1 << 20


class FlatStreamError(OSError):
    """The stream is not a flattened kdump (a sentence saying where and what)."""


def reassemble(read_end: int, out_fd: int) -> int:
    """Read the flattened stream from `read_end` to its end record and write the file at `out_fd`;
    returns the reassembled file's size. Raises FlatStreamError on a stream that is not one."""
    header = _exactly(read_end, FLAT_HEADER_BYTES, "the flattened header")
    head = FlatHeader.parse(header)
    if head.signature != FLAT_SIGNATURE:
        raise FlatStreamError(
            f"QEMU's kdump stream starts with {head.signature!r}, not the makedumpfile signature."
        )
    size = 0
    record_bytes = FlatRecord.sizeof()
    while True:
        record = FlatRecord.parse(_exactly(read_end, record_bytes, "a record header"))
        if record.offset == FLAT_END:
            break
        if record.offset < 0 or not 0 <= record.buf_size <= MAX_RECORD:
            raise FlatStreamError(
                f"QEMU's kdump stream has a record for file offset {record.offset} of "
                f"{record.buf_size} bytes, which no kdump file holds."
            )
        left, at = record.buf_size, record.offset
        while left:
            data = _exactly(read_end, min(left, _CHUNK), "a record's bytes")
            os.pwrite(out_fd, data, at)
            at += len(data)
            left -= len(data)
        size = max(size, at)
    os.ftruncate(out_fd, size)
    return size


def _exactly(fd: int, count: int, what: str) -> bytes:
    parts: list[bytes] = []
    left = count
    while left:
        data = os.read(fd, min(left, _CHUNK))
        if not data:
            raise FlatStreamError(f"QEMU's kdump stream ended inside {what}.")
        parts.append(data)
        left -= len(data)
    return b"".join(parts)
