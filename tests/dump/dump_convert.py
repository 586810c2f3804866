"""Convert a dump into other formats for tests: LiME and kdump-compressed, built with the schemas.

QEMU cannot write LiME (it is what the LiME kernel module writes on a Linux guest), so the honest
way to test kmtool's LiME reader on a real machine's memory is to convert a real ELF dump's ranges:
`to_lime` writes each range as a LiME header and the range's bytes. `to_kdump` writes the
kdump-compressed layout of kmtool/schemas/kdump.py, with zlib pages (or pages stored as is), so the
corrupt-header tests can build small files; the real kdump files come from QEMU.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from kmtool.dump.memory import PhysicalMemory
from kmtool.schemas.kdump import (
    DUMP_DH_COMPRESSED_SNAPPY,
    DUMP_DH_COMPRESSED_ZLIB,
    DUMP_DH_COMPRESSED_ZSTD,
    DiskDumpHeader,
    KdumpSubHeader,
    PageDescriptor,
)
from kmtool.schemas.lime import LIME_VERSION, LimeRangeHeader
from kmtool.schemas.signatures import KDUMP_SIGNATURE, LIME_MAGIC

PAGE = 4096
CHUNK = 16 << 20


def to_lime(memory: PhysicalMemory, path: Path) -> Path:
    """Every range of `memory` as one LiME range, in address order."""
    with open(path, "wb") as out:
        for r in memory.ranges:
            out.write(LimeRangeHeader.build(dict(magic=LIME_MAGIC, version=LIME_VERSION,
                                                 s_addr=r.start, e_addr=r.end - 1,
                                                 reserved=bytes(8))))  # fmt: skip
            for at in range(r.start, r.end, CHUNK):
                out.write(memory.read(at, min(CHUNK, r.end - at), "lime copy"))
    return path


def _stored(page: bytes, codec: str) -> tuple[bytes, int]:
    """`page` as `codec` stores it ("zlib", "snappy", "zstd", or "none"), and the descriptor flags."""
    import cramjam

    if codec == "zlib":
        return zlib.compress(page), DUMP_DH_COMPRESSED_ZLIB
    if codec == "snappy":
        return bytes(cramjam.snappy.compress_raw(page)), DUMP_DH_COMPRESSED_SNAPPY
    if codec == "zstd":
        return bytes(cramjam.zstd.compress(page)), DUMP_DH_COMPRESSED_ZSTD
    return page, 0


def to_kdump(image: bytes, path: Path, compress: bool = True, notes: bytes = b"",
             codec: str = "zlib") -> Path:  # fmt: skip
    """`image` (physical address 0 up, a whole number of pages) as a kdump file with every page
    dumped, compressed with `codec` (stored as is without `compress`); `notes` go into the note
    area."""
    frames = len(image) // PAGE
    half = -(-frames // (8 * PAGE)) * PAGE
    bitmap = np.zeros(half, dtype=np.uint8)
    bitmap[: frames // 8] = 0xFF
    if frames % 8:
        bitmap[frames // 8] = (1 << (frames % 8)) - 1
    bitmap_at = 2 * PAGE
    desc_at = bitmap_at + 2 * half
    data_at = desc_at + frames * PageDescriptor.sizeof()
    note_at = PAGE + KdumpSubHeader.sizeof()
    descriptors, data = [], []
    for k in range(frames):
        page = image[k * PAGE : (k + 1) * PAGE]
        stored, flags = _stored(page, codec if compress else "none")
        descriptors.append(PageDescriptor.build(dict(offset=data_at, size=len(stored),
                                                     flags=flags, page_flags=0)))  # fmt: skip
        data.append(stored)
        data_at += len(stored)
    header = DiskDumpHeader.build(dict(
        signature=KDUMP_SIGNATURE, header_version=6,
        utsname=dict(sysname=bytes(65), nodename=bytes(65), release=bytes(65), version=bytes(65),
                     machine=b"x86_64".ljust(65, b"\0"), domainname=bytes(65)),
        pad1=bytes(6), timestamp_sec=0, timestamp_usec=0, status=DUMP_DH_COMPRESSED_ZLIB,
        block_size=PAGE, sub_hdr_size=1, bitmap_blocks=2 * half // PAGE, max_mapnr=frames,
        total_ram_blocks=0, device_blocks=0, written_blocks=0, current_cpu=0, nr_cpus=1,
    ))  # fmt: skip
    sub = KdumpSubHeader.build(dict(
        phys_base=0, dump_level=1, split=0, start_pfn=0, end_pfn=0, offset_vmcoreinfo=0,
        size_vmcoreinfo=0, offset_note=note_at if notes else 0, size_note=len(notes),
        offset_eraseinfo=0, size_eraseinfo=0, start_pfn_64=0, end_pfn_64=frames,
        max_mapnr_64=frames,
    ))  # fmt: skip
    with open(path, "wb") as out:
        out.write(header.ljust(PAGE, b"\0"))
        out.write((sub + notes).ljust(PAGE, b"\0"))
        out.write(bitmap.tobytes() * 2)
        out.write(b"".join(descriptors))
        out.write(b"".join(data))
    return path
