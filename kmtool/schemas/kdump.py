"""The kdump-compressed format (makedumpfile's "diskdump" layout, which QEMU's `dump-guest-memory`
writes for the formats kdump-zlib, kdump-lzo and kdump-snappy), 64-bit x86 flavour.

The file is made of blocks of `block_size` bytes (the guest page size, 4096):

    block 0                      DiskDumpHeader        signature "KDUMP   ", sizes in blocks
    block 1 .. sub_hdr_size      KdumpSubHeader        where the notes and the vmcoreinfo are
    the next bitmap_blocks       two bitmaps of equal size, one bit per page frame (LSB first):
                                 the first marks frames that exist, the second the frames dumped
    then                         one PageDescriptor per set bit of the second bitmap, in frame order
    then                         the page data the descriptors point at

A page descriptor gives the file offset and size of its page's data and `flags`: 0 for a page stored
as is (`size` == block_size), or the one compression that was used. QEMU stores every all-zero page
once and points all their descriptors at it. The notes (`offset_note`, `size_note`) are the same ELF
notes an ELF core's PT_NOTE holds (per-CPU NT_PRSTATUS and QEMU notes, and the guest's VMCOREINFO
note); `offset_vmcoreinfo` is that note's descriptor alone.

QEMU's own files are written in makedumpfile's *flattened* form when the output cannot seek (a
pipe): a `FlatHeader` block, then records of `FlatRecord` + `buf_size` bytes to be written at
`offset`, ended by offset -1. `kmtool run --dump-format kdump` reassembles them as it copies; a
flattened file is recognised and refused with the way to reassemble it.
"""

from construct import Bytes, Int32ul, Int64sb, Int64ul, Struct

# KDUMP_SIGNATURE and FLAT_SIGNATURE are in signatures.py.
FLAT_HEADER_BYTES = 4096  # the flattened header is padded to this
FLAT_END = -1  # a record offset that ends the stream

DUMP_DH_COMPRESSED_ZLIB = 0x1
DUMP_DH_COMPRESSED_LZO = 0x2
DUMP_DH_COMPRESSED_SNAPPY = 0x4
DUMP_DH_COMPRESSED_ZSTD = 0x20
KNOWN_HEADER_VERSIONS = range(1, 7)  # makedumpfile's 1..6; QEMU writes 6

NewUtsname = Struct(
    "sysname" / Bytes(65),
    "nodename" / Bytes(65),
    "release" / Bytes(65),
    "version" / Bytes(65),
    "machine" / Bytes(65) * "x86_64 from QEMU",
    "domainname" / Bytes(65),
)

DiskDumpHeader = Struct(
    "signature" / Bytes(8) * "KDUMP_SIGNATURE",
    "header_version" / Int32ul * "1..6; the sub header's fields grow with it",
    "utsname" / NewUtsname * "copy of the guest's utsname (QEMU: machine only)",
    "pad1" / Bytes(6) * "alignment of the time stamp",
    "timestamp_sec" / Int64ul * "struct timeval: seconds",
    "timestamp_usec" / Int64ul * "struct timeval: microseconds",
    "status" / Int32ul * "DUMP_DH_COMPRESSED_* of the pages",
    "block_size" / Int32ul * "bytes per block and per page (4096)",
    "sub_hdr_size" / Int32ul * "blocks of the sub header",
    "bitmap_blocks" / Int32ul * "blocks of both bitmaps together",
    "max_mapnr" / Int32ul * "page frames the bitmaps cover (32 bits; see max_mapnr_64)",
    "total_ram_blocks" / Int32ul * "unused",
    "device_blocks" / Int32ul * "unused",
    "written_blocks" / Int32ul * "unused",
    "current_cpu" / Int32ul * "the CPU that took the dump",
    "nr_cpus" / Int32ul * "CPUs of the guest",
)

KdumpSubHeader = Struct(
    "phys_base" / Int64ul * "the guest's physical base (0 from QEMU)",
    "dump_level" / Int32ul * "makedumpfile's page filter (QEMU: 1)",
    "split" / Int32ul * "1 when the dump is split over files",
    "start_pfn" / Int64ul * "first frame (32-bit era; see start_pfn_64)",
    "end_pfn" / Int64ul * "one past the last frame (32-bit era)",
    "offset_vmcoreinfo" / Int64ul * "file offset of the VMCOREINFO descriptor (version 3+)",
    "size_vmcoreinfo" / Int64ul * "its bytes",
    "offset_note" / Int64ul * "file offset of the ELF notes (version 4+)",
    "size_note" / Int64ul * "their bytes",
    "offset_eraseinfo" / Int64ul * "makedumpfile's erase information (version 5+)",
    "size_eraseinfo" / Int64ul * "its bytes",
    "start_pfn_64" / Int64ul * "first frame (version 6+)",
    "end_pfn_64" / Int64ul * "one past the last frame (version 6+)",
    "max_mapnr_64" / Int64ul * "page frames the bitmaps cover (version 6+)",
)

PageDescriptor = Struct(
    "offset" / Int64ul * "file offset of the page's data",
    "size" / Int32ul * "bytes of the data (block_size when stored as is)",
    "flags" / Int32ul * "DUMP_DH_COMPRESSED_* used, 0 for none",
    "page_flags" / Int64ul * "the kernel's page flags (0 from QEMU)",
)

FlatHeader = Struct(
    "signature" / Bytes(16) * "FLAT_SIGNATURE",
    "type" / Int64sb * "big-endian: 1",
    "version" / Int64sb * "big-endian: 1",
)

FlatRecord = Struct(
    "offset" / Int64sb * "big-endian: where the bytes go in the reassembled file; -1 ends",
    "buf_size" / Int64sb * "big-endian: bytes that follow",
)
