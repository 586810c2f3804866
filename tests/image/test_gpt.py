"""GPT rendering: layout arithmetic, golden protective MBR, header CRCs, backup copy, sgdisk."""

from __future__ import annotations

import subprocess
import uuid
import zlib
from pathlib import Path

import pytest
from conftest import require

from kmtool.errors import ImageError
from kmtool.image import gpt
from kmtool.schemas import gpt as schema

DISK = uuid.UUID("11111111-2222-4333-8444-555555555555")
PART = uuid.UUID("66666666-7777-4888-9999-aaaaaaaaaaaa")
LAYOUT = gpt.GptLayout.for_partition(64 << 11)  # 64 MiB of 512-byte blocks


def test_layout_of_a_64_mib_partition() -> None:
    assert (LAYOUT.part_start, LAYOUT.part_end) == (2048, 2048 + 131072 - 1)
    assert LAYOUT.total_sectors == 135168  # 66 MiB: 1 MiB before, 1 MiB after (rounded)
    assert (LAYOUT.first_usable, LAYOUT.last_usable) == (34, 135168 - 34)
    assert LAYOUT.part_offset == 1 << 20


def test_protective_mbr_golden_bytes() -> None:
    head, _ = gpt.render(LAYOUT, DISK, PART, "EFI system partition")
    mbr = head[:512]
    assert mbr[:446] == bytes(446)  # boot code, disk signature, reserved: all zero
    assert mbr[446:462] == bytes.fromhex(
        "00"  # boot indicator: not bootable
        "000200"  # starting CHS: cylinder 0, head 0, sector 2 (= LBA 1)
        "ee"  # OS type: GPT protective
        "ffffff"  # ending CHS: out of range
        "01000000"  # starting LBA 1
        "ff0f0200"  # size in LBA: 135167 = 0x20fff (the disk minus LBA 0)
    )
    assert mbr[462:510] == bytes(48)  # records 1..3 unused
    assert mbr[510:] == b"\x55\xaa"


def _check_header(raw: bytes, entries: bytes) -> schema.GptHeader:  # type: ignore[valid-type]
    header = schema.GptHeader.parse(raw)
    zeroed = bytearray(raw[: header.header_size])
    zeroed[16:20] = bytes(4)
    assert header.header_crc32 == zlib.crc32(bytes(zeroed))
    assert header.partition_entry_array_crc32 == zlib.crc32(entries)
    assert raw[92:512] == bytes(420)
    return header


def test_primary_and_backup_headers() -> None:
    head, tail = gpt.render(LAYOUT, DISK, PART, "EFI system partition")
    assert len(head) == 34 * 512 and len(tail) == 33 * 512
    entries = head[1024:]
    assert tail[: 32 * 512] == entries
    primary = _check_header(head[512:1024], entries)
    backup = _check_header(tail[32 * 512 :], entries)
    assert (primary.my_lba, primary.alternate_lba, primary.partition_entry_lba) == (1, 135167, 2)
    assert (backup.my_lba, backup.alternate_lba, backup.partition_entry_lba) == (135167, 1, 135135)
    assert primary.disk_guid == backup.disk_guid == DISK
    assert head[512 + 56 : 512 + 72] == DISK.bytes_le  # mixed-endian on disk
    entry = schema.GptEntry.parse(entries[:128])
    assert entry.partition_type_guid == schema.ESP_TYPE_GUID
    assert entries[:4] == bytes.fromhex("28732ac1")  # C12A7328 little-endian
    assert entry.unique_partition_guid == PART
    assert (entry.starting_lba, entry.ending_lba) == (2048, 133119)
    assert entry.partition_name == "EFI system partition"
    assert entries[128:] == bytes(127 * 128)


def test_partition_outside_usable_blocks_is_refused() -> None:
    bad = gpt.GptLayout(total_sectors=1000, part_start=20, part_sectors=100)
    with pytest.raises(ImageError, match=r"does not fit the usable blocks `34\.\.966`"):
        gpt.render(bad, DISK, PART, "x")
    with pytest.raises(ImageError):
        gpt.GptLayout.for_partition(0)


def test_sgdisk_verifies_the_table(tmp_path: Path) -> None:
    require("sgdisk")
    head, tail = gpt.render(LAYOUT, DISK, PART, "EFI system partition")
    disk = tmp_path / "disk.img"
    with disk.open("wb") as f:
        f.truncate(LAYOUT.total_sectors * 512)
        f.write(head)
        f.seek((LAYOUT.total_sectors - 33) * 512)
        f.write(tail)
    verify = subprocess.run(["sgdisk", "-v", str(disk)], capture_output=True, text=True)
    assert verify.returncode == 0
    assert "No problems found." in verify.stdout
    info = subprocess.run(["sgdisk", "-i", "1", str(disk)], capture_output=True, text=True)
    assert "Partition GUID code: C12A7328-F81F-11D2-BA4B-00A0C93EC93B (EFI system partition)" in (
        info.stdout
    )
    assert f"Partition unique GUID: {str(PART).upper()}" in info.stdout
    assert "First sector: 2048 " in info.stdout and "Last sector: 133119 " in info.stdout
