"""Render the GPT of a disk with exactly one partition: protective MBR, both headers, both arrays.

The blocks are built from the schemas in kmtool/schemas/gpt.py; nothing here writes a file.
Layout (512-byte blocks, `n` = total blocks):

    0              protective MBR
    1              primary header
    2 .. 33        primary entry array (128 x 128 bytes)
    start .. end   the partition (start is 1 MiB aligned)
    n-33 .. n-2    backup entry array
    n-1            backup header
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass

from kmtool.errors import ImageError
from kmtool.schemas import gpt as schema

SECTOR = schema.SECTOR_SIZE
ENTRY_ARRAY_SECTORS = schema.GPT_ENTRY_COUNT * schema.GPT_ENTRY_SIZE // SECTOR  # 32
ALIGNMENT_SECTORS = (1 << 20) // SECTOR  # partitions start on 1 MiB boundaries


@dataclass(frozen=True)
class GptLayout:
    """Where everything goes on a disk of `total_sectors` with one partition of `part_sectors`."""

    total_sectors: int
    part_start: int
    part_sectors: int

    @classmethod
    def for_partition(cls, part_sectors: int) -> GptLayout:
        """The smallest 1 MiB aligned disk that holds a partition of `part_sectors` blocks."""
        if part_sectors <= 0:
            raise ImageError(f"A partition of `{part_sectors}` blocks cannot be laid out.")
        start = ALIGNMENT_SECTORS
        tail = 1 + ENTRY_ARRAY_SECTORS  # backup array + backup header
        total = start + part_sectors + tail
        total = -(-total // ALIGNMENT_SECTORS) * ALIGNMENT_SECTORS
        return cls(total, start, part_sectors)

    @property
    def last_lba(self) -> int:
        return self.total_sectors - 1

    @property
    def first_usable(self) -> int:
        return 2 + ENTRY_ARRAY_SECTORS

    @property
    def last_usable(self) -> int:
        return self.last_lba - ENTRY_ARRAY_SECTORS - 1

    @property
    def part_end(self) -> int:
        """The partition's last block (inclusive)."""
        return self.part_start + self.part_sectors - 1

    @property
    def part_offset(self) -> int:
        """Byte offset of the partition in the disk."""
        return self.part_start * SECTOR


def _protective_mbr(layout: GptLayout) -> bytes:
    size = min(layout.total_sectors - 1, 0xFFFFFFFF)
    empty = dict(
        boot_indicator=0, starting_chs=bytes(3), os_type=0, ending_chs=bytes(3),
        starting_lba=0, size_in_lba=0,
    )  # fmt: skip
    record = dict(
        boot_indicator=0,
        starting_chs=b"\x00\x02\x00",  # head 0, sector 2, cylinder 0 = LBA 1
        os_type=schema.MBR_TYPE_PROTECTIVE,
        ending_chs=b"\xff\xff\xff",  # beyond CHS range, as the spec allows
        starting_lba=1,
        size_in_lba=size,
    )
    return bytes(
        schema.ProtectiveMbr.build(
            dict(
                boot_code=bytes(440),
                unique_mbr_signature=0,
                unknown=0,
                partition_record=[record, empty, empty, empty],
            )
        )
    )


def _entry_array(layout: GptLayout, part_guid: uuid.UUID, name: str) -> bytes:
    entry = schema.GptEntry.build(
        dict(
            partition_type_guid=schema.ESP_TYPE_GUID,
            unique_partition_guid=part_guid,
            starting_lba=layout.part_start,
            ending_lba=layout.part_end,
            attributes=0,
            partition_name=name,
        )
    )
    return entry + bytes(schema.GPT_ENTRY_SIZE * (schema.GPT_ENTRY_COUNT - 1))


def _header(layout: GptLayout, disk_guid: uuid.UUID, entries_crc: int, *, backup: bool) -> bytes:
    fields = dict(
        revision=schema.GPT_REVISION,
        header_size=schema.GPT_HEADER_SIZE,
        header_crc32=0,
        reserved=0,
        my_lba=layout.last_lba if backup else 1,
        alternate_lba=1 if backup else layout.last_lba,
        first_usable_lba=layout.first_usable,
        last_usable_lba=layout.last_usable,
        disk_guid=disk_guid,
        partition_entry_lba=(layout.last_usable + 1) if backup else 2,
        number_of_partition_entries=schema.GPT_ENTRY_COUNT,
        size_of_partition_entry=schema.GPT_ENTRY_SIZE,
        partition_entry_array_crc32=entries_crc,
    )
    unsigned = schema.GptHeader.build(fields)
    fields["header_crc32"] = zlib.crc32(unsigned)
    signed = schema.GptHeader.build(fields)
    return signed + bytes(SECTOR - len(signed))


def render(
    layout: GptLayout, disk_guid: uuid.UUID, part_guid: uuid.UUID, name: str
) -> tuple[bytes, bytes]:
    """(bytes for blocks 0..33, bytes for blocks n-33..n-1) of a GPT with one ESP."""
    if layout.part_start < layout.first_usable or layout.part_end > layout.last_usable:
        raise ImageError(
            f"The partition `{layout.part_start}..{layout.part_end}` does not fit the usable "
            f"blocks `{layout.first_usable}..{layout.last_usable}`."
        )
    entries = _entry_array(layout, part_guid, name)
    crc = zlib.crc32(entries)
    head = _protective_mbr(layout) + _header(layout, disk_guid, crc, backup=False) + entries
    tail = entries + _header(layout, disk_guid, crc, backup=True)
    return head, tail
