"""Assemble a bootable GPT disk image from a list of files for its EFI system partition.

`build_image(out, {"EFI/BOOT/BOOTX64.EFI": path_or_bytes, "kernel.elf": ...})` is the one entry
point: the build uses it for build/kmtool.img, tests and the runner use it to make images with a
missing or corrupt kernel, the benchmark to make a bare "hello" EFI image.

Guarantees:
- Reproducible: the same files (names and bytes) and epoch give a byte-identical image. The disk
  and partition GUIDs are derived from a hash of the files, the FAT serial and label are fixed,
  and every FAT time stamp is the epoch (SOURCE_DATE_EPOCH, else 1980-01-01 00:00 UTC).
- Atomic: the image is assembled under a temporary name in the output directory and renamed over
  `out` only when complete, so an interrupted build never leaves a half image under that name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from kmtool.errors import ImageError
from kmtool.image import fat, gpt

ESP_SIZE = 64 << 20  # bytes; FAT32 with 512-byte clusters (131072 clusters)
ESP_LABEL = "KMTOOL"
ESP_SERIAL = 0x4B4D544C  # "KMTL"
PARTITION_NAME = "EFI system partition"

FileSource = bytes | Path

_FAT_FORBIDDEN = frozenset('"*:<>?|')


@dataclass(frozen=True)
class ImageInfo:
    """What `build_image` wrote."""

    path: Path
    size: int
    disk_guid: uuid.UUID
    partition_guid: uuid.UUID
    partition_offset: int
    partition_size: int
    files: tuple[str, ...]  # absolute ESP paths, in the order they were copied


def esp_path(name: str) -> str:
    """`name` as an absolute ESP path ("EFI/BOOT/x" -> "/EFI/BOOT/x"); raises ImageError if odd."""
    parts = PurePosixPath("/" + name.replace("\\", "/").lstrip("/")).parts[1:]
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise ImageError(f"`{name}` is not a usable file path inside the ESP.")
    bad = sorted({c for c in name if c in _FAT_FORBIDDEN or ord(c) < 0x20})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise ImageError(f"`{name}` contains characters a FAT name cannot hold: {shown}.")
    return "/" + "/".join(parts)


def _guid(digest: bytes, purpose: str) -> uuid.UUID:
    """A random-format (version 4) GUID derived from `digest` and `purpose`."""
    raw = hashlib.sha256(purpose.encode() + b"\0" + digest).digest()[:16]
    return uuid.UUID(bytes=raw, version=4)


def _content_digest(files: Mapping[str, bytes], epoch: int, esp_size: int) -> bytes:
    h = hashlib.sha256(f"kmtool-image-v1 {epoch} {esp_size}".encode())
    for name in sorted(files):
        data = files[name]
        h.update(f"\0{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.digest()


def _load(files: Mapping[str, FileSource]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, source in files.items():
        path = esp_path(name)
        if path.upper() in {p.upper() for p in out}:
            raise ImageError(f"`{path}` is given twice (FAT names ignore case).")
        if isinstance(source, bytes):
            out[path] = source
        else:
            try:
                out[path] = Path(source).read_bytes()
            except OSError as err:
                raise ImageError(f"Cannot read `{source}` for `{path}`: {err.strerror}.") from None
    return out


def _parent_dirs(paths: list[str]) -> list[str]:
    """Every directory the paths need, parents first, without the root."""
    dirs: set[str] = set()
    for p in paths:
        parent = PurePosixPath(p).parent
        while str(parent) != "/":
            dirs.add(str(parent))
            parent = parent.parent
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def build_image(
    out: Path,
    files: Mapping[str, FileSource],
    *,
    epoch: int | None = None,
    esp_size: int = ESP_SIZE,
) -> ImageInfo:
    """Write a GPT disk image with one FAT32 ESP holding `files` (ESP path -> bytes or host file).

    Raises ImageError when a file cannot be read, a path is unusable, the files do not fit, or
    an mtools command fails; ToolError when mtools is not installed.
    """
    from kmtool.toolchain import require

    mtools = _Mtools(require("mformat"), require("mmd"), require("mcopy"))
    epoch = _checked_epoch(epoch, esp_size)
    contents = _load(files)
    digest = _content_digest(contents, epoch, esp_size)
    layout = gpt.GptLayout.for_partition(esp_size // gpt.SECTOR)
    disk_guid, part_guid = _guid(digest, "disk"), _guid(digest, "partition")
    head, tail = gpt.render(layout, disk_guid, part_guid, PARTITION_NAME)
    names = sorted(contents)  # copy order is part of the image bytes

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as disk:
            _write_gpt(disk, layout, head, tail)
        _fill_esp(mtools, tmp, layout, contents, names, epoch)
        with open(tmp, "rb+") as disk:
            os.fsync(disk.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ImageInfo(
        path=out,
        size=layout.total_sectors * gpt.SECTOR,
        disk_guid=disk_guid,
        partition_guid=part_guid,
        partition_offset=layout.part_offset,
        partition_size=layout.part_sectors * gpt.SECTOR,
        files=tuple(names),
    )


@dataclass(frozen=True)
class _Mtools:
    """Paths of the three mtools programs the ESP is made with."""

    mformat: str
    mmd: str
    mcopy: str


def _checked_epoch(epoch: int | None, esp_size: int) -> int:
    """The time stamp to use (the default when None); ImageError for one FAT cannot record or
    an ESP size that is not a whole number of MiB."""
    epoch = fat.default_epoch() if epoch is None else epoch
    if epoch < fat.FAT_EPOCH:
        raise ImageError(f"The time stamp `{epoch}` is before 1980-01-01, which FAT cannot record.")
    if esp_size % (1 << 20):
        raise ImageError(f"The ESP size `{esp_size}` is not a whole number of MiB.")
    return epoch


def _write_gpt(disk: BinaryIO, layout: gpt.GptLayout, head: bytes, tail: bytes) -> None:
    """Size the (sparse) disk and write the primary and backup GPT structures into it."""
    disk.truncate(layout.total_sectors * gpt.SECTOR)
    disk.write(head)
    disk.seek((layout.last_lba - gpt.ENTRY_ARRAY_SECTORS) * gpt.SECTOR)
    disk.write(tail)


def _fill_esp(
    mtools: _Mtools,
    disk: Path,
    layout: gpt.GptLayout,
    contents: Mapping[str, bytes],
    names: Sequence[str],
    epoch: int,
) -> None:
    """Format the ESP inside `disk` as FAT32, make the directories, then copy the files `names`
    (keys of `contents`) in that order, which is part of the image bytes."""
    offset = layout.part_offset
    fat.format_fat32(
        mtools.mformat, disk, offset, layout.part_sectors,
        label=ESP_LABEL, serial=ESP_SERIAL, epoch=epoch,
    )  # fmt: skip
    fat.make_dirs(mtools.mmd, disk, offset, _parent_dirs(list(names)), epoch=epoch)
    with tempfile.TemporaryDirectory(prefix="kmtool-esp-") as staging:
        for index, name in enumerate(names):
            source = Path(staging) / f"file{index}"
            source.write_bytes(contents[name])
            fat.copy_file(mtools.mcopy, disk, offset, source, name, epoch=epoch)
