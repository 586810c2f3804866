"""The GUID Partition Table as UEFI defines it (UEFI spec §5): protective MBR, header, entry.

Disk layout with 512-byte logical blocks (LBA n = byte n * 512):

    LBA 0           ProtectiveMbr: one partition record of type 0xEE covering the whole disk
    LBA 1           GptHeader (primary), 92 bytes, rest of the block zero
    LBA 2..33       GptEntry array: 128 entries of 128 bytes
    LBA 34..        first usable block ... partitions ... last usable block
    LBA last-32..   GptEntry array (backup copy, same bytes)
    LBA last        GptHeader (backup): my_lba / alternate_lba swapped, entries at last-32

GUIDs are stored in the mixed-endian layout of EFI_GUID (first three fields little-endian), which
is what Python's `uuid.UUID.bytes_le` gives; `Guid` converts to and from `uuid.UUID`.
CRC32s are the zlib/IEEE CRC; `header_crc32` covers `header_size` bytes with itself zeroed.
"""

import uuid

from construct import (
    Adapter,
    Array,
    Bytes,
    Const,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    PaddedString,
    Struct,
)

SECTOR_SIZE = 512
GPT_SIGNATURE = b"EFI PART"
GPT_REVISION = 0x00010000
GPT_HEADER_SIZE = 92
GPT_ENTRY_SIZE = 128
GPT_ENTRY_COUNT = 128
MBR_SIGNATURE = 0xAA55
MBR_TYPE_PROTECTIVE = 0xEE

# Partition type GUID of an EFI system partition.
ESP_TYPE_GUID = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")


class _GuidAdapter(Adapter):
    """16 bytes in EFI_GUID (mixed-endian) order <-> `uuid.UUID`."""

    def _decode(self, obj, context, path):  # type: ignore[no-untyped-def]
        return uuid.UUID(bytes_le=bytes(obj))

    def _encode(self, obj, context, path):  # type: ignore[no-untyped-def]
        return obj.bytes_le


Guid = _GuidAdapter(Bytes(16))

MbrPartitionRecord = Struct(
    "boot_indicator" / Int8ul * "0x80 = bootable; 0 for the protective record",
    "starting_chs" / Bytes(3) * "CHS of the first block (0x000200 for LBA 1)",
    "os_type" / Int8ul * "0xEE = GPT protective",
    "ending_chs" / Bytes(3) * "CHS of the last block (0xFFFFFF when out of CHS range)",
    "starting_lba" / Int32ul * "first block of the record (1: the GPT header)",
    "size_in_lba" / Int32ul * "blocks covered, the disk minus LBA 0, capped at 0xFFFFFFFF",
)

ProtectiveMbr = Struct(
    "boot_code" / Bytes(440) * "unused by UEFI; zero",
    "unique_mbr_signature" / Int32ul * "unused for a protective MBR; zero",
    "unknown" / Int16ul * "zero",
    "partition_record" / Array(4, MbrPartitionRecord) * "record 0 protective, 1..3 zero",
    "signature" / Const(MBR_SIGNATURE, Int16ul) * "0xAA55",
)

GptHeader = Struct(
    "signature" / Const(GPT_SIGNATURE) * '"EFI PART"',
    "revision" / Int32ul * "0x00010000 (1.0)",
    "header_size" / Int32ul * "92: bytes the header CRC covers",
    "header_crc32" / Int32ul * "CRC32 of the header_size bytes with this field zero",
    "reserved" / Int32ul * "zero",
    "my_lba" / Int64ul * "LBA of this header (1 for the primary)",
    "alternate_lba" / Int64ul * "LBA of the other header (the last block for the primary)",
    "first_usable_lba" / Int64ul * "first block a partition may use",
    "last_usable_lba" / Int64ul * "last block a partition may use (inclusive)",
    "disk_guid" / Guid * "identifies the disk",
    "partition_entry_lba" / Int64ul * "first block of this header's entry array",
    "number_of_partition_entries" / Int32ul * "entries in the array (128)",
    "size_of_partition_entry" / Int32ul * "bytes per entry (128)",
    "partition_entry_array_crc32" / Int32ul * "CRC32 of the whole entry array",
)

GptEntry = Struct(
    "partition_type_guid" / Guid * "kind of partition; all zero = unused entry",
    "unique_partition_guid" / Guid * "identifies this partition",
    "starting_lba" / Int64ul * "first block of the partition",
    "ending_lba" / Int64ul * "last block of the partition (inclusive)",
    "attributes" / Int64ul * "bit 0 required, bit 1 no block-IO protocol, bit 2 legacy bootable",
    "partition_name" / PaddedString(72, "utf_16_le") * "human-readable name, NUL padded",
)
