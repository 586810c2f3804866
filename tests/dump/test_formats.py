"""kdump-compressed and LiME dumps on the synthetic machine: the same decode as the raw image, every
corrupt header one sentence naming field, offset and value, a corrupt page a failed part, the page
cache bounded, and each kind told by its content. The real-QEMU oracle (ELF against kdump of one
VM) is tests/integration/test_dump_formats.py."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import dump_fixtures as F
import pytest
from conftest import REPO
from dump_convert import to_kdump, to_lime

from kmtool.dump import paged
from kmtool.dump.inspection import Options, inspect_dump
from kmtool.dump.records import field_offset
from kmtool.dump.source import open_dump
from kmtool.errors import DumpError
from kmtool.schemas.kdump import DiskDumpHeader, KdumpSubHeader, PageDescriptor
from kmtool.schemas.lime import LimeRangeHeader
from kmtool.schemas.vmcoreinfo import NOTE_NAME, CoreInfoNote, note_text

PAGE = 4096


@pytest.fixture(scope="module")
def fx() -> F.Fixture:
    return F.build()


@pytest.fixture(scope="module")
def kdump(fx: F.Fixture, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return to_kdump(bytes(fx.image), tmp_path_factory.mktemp("kdump") / "dump.kdump")


def _doc(path: Path, **options: object) -> dict:
    doc = dict(inspect_dump(path, Options(**options)).to_json())  # type: ignore[arg-type]
    doc.pop("source")
    return doc


@pytest.mark.parametrize("codec", ["zlib", "snappy", "zstd", "none"])
def test_kdump_decodes_like_the_raw_image(fx: F.Fixture, tmp_path: Path, codec: str) -> None:
    raw = fx.write_raw(tmp_path / "dump.raw")
    dump = to_kdump(bytes(fx.image), tmp_path / "dump.kdump", compress=codec != "none", codec=codec)
    src = open_dump(dump)
    assert src.kind == "kdump" and [(r.start, r.size) for r in src.memory.ranges] == [
        (0, len(fx.image))
    ]
    assert _doc(dump) == _doc(raw)


def test_kdump_notes_give_the_cpus_and_the_core_info_address(fx: F.Fixture, tmp_path: Path) -> None:
    text = note_text(fx.addresses["core"])
    note = CoreInfoNote.build(dict(n_namesz=len(NOTE_NAME), n_descsz=len(text), n_type=0,
                                   name=NOTE_NAME.ljust(12, b"\0"),
                                   text=text.ljust(36, b"\0")))  # fmt: skip
    dump = to_kdump(
        bytes(fx.image), tmp_path / "dump.kdump", notes=F._cpu_notes(0, fx.cr3, {}) + note
    )
    src = open_dump(dump)
    assert src.core_info_note == fx.addresses["core"]
    assert [c.cr3 for c in src.cpus] == [fx.cr3]
    ins = inspect_dump(dump, Options())
    assert ins.core is not None and ins.core.found_by == "note"
    assert ins.root_source == "CPU 0, QEMU note"


def _poke(path: Path, offset: int, fmt: str, value: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


SUB = PAGE  # the sub header's file offset
CORRUPT_HEADERS = [
    (0 + field_offset(DiskDumpHeader, "header_version"), "<I", 9, "header_version", "versions 1 to 6"),
    (field_offset(DiskDumpHeader, "block_size"), "<I", 8192, "block_size", "4096-byte pages"),
    (field_offset(DiskDumpHeader, "sub_hdr_size"), "<I", 0, "sub_hdr_size", "blocks"),
    (field_offset(DiskDumpHeader, "bitmap_blocks"), "<I", 1, "bitmap_blocks", "even count"),
    (SUB + field_offset(KdumpSubHeader, "max_mapnr_64"), "<Q", 0, "max_mapnr_64", "frame count"),
    (SUB + field_offset(KdumpSubHeader, "size_note"), "<Q", 1 << 40, "size_note", "do not fit"),
]  # fmt: skip


@pytest.mark.parametrize(("offset", "fmt", "value", "name", "why"), CORRUPT_HEADERS)
def test_every_corrupt_kdump_header_field_is_one_sentence(
    kdump: Path, tmp_path: Path, offset: int, fmt: str, value: int, name: str, why: str
) -> None:
    bad = tmp_path / "bad.kdump"
    bad.write_bytes(kdump.read_bytes())
    _poke(bad, offset, fmt, value)
    with pytest.raises(DumpError) as err:
        open_dump(bad)
    message = str(err.value)
    assert f"`{name}` at file offset {hex(offset)} is {value} ({hex(value)})" in message, message
    assert why in message and "\n" not in message


def test_a_corrupt_kdump_is_exit_status_1_without_a_traceback(kdump: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.kdump"
    bad.write_bytes(kdump.read_bytes())
    _poke(bad, field_offset(DiskDumpHeader, "block_size"), "<I", 8192)
    done = subprocess.run([sys.executable, "-m", "kmtool", "inspect", str(bad)], cwd=REPO,
                          capture_output=True, text=True, env=dict(os.environ, NO_COLOR="1"))  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    at = field_offset(DiskDumpHeader, "block_size")
    assert f"`block_size` at file offset {hex(at)} is 8192" in done.stderr


def _descriptor_at(path: Path, pfn: int) -> int:
    """File offset of frame `pfn`'s descriptor in a to_kdump file (every frame dumped)."""
    head = DiskDumpHeader.parse(path.read_bytes()[: DiskDumpHeader.sizeof()])
    return (1 + head.sub_hdr_size + head.bitmap_blocks) * PAGE + pfn * PageDescriptor.sizeof()


def test_a_corrupt_page_is_a_failed_part_not_a_traceback(
    fx: F.Fixture, kdump: Path, tmp_path: Path
) -> None:
    start, _count = F.build().truth["spans"][0]
    bad = tmp_path / "bad.kdump"
    bad.write_bytes(kdump.read_bytes())
    d = PageDescriptor.parse(bad.read_bytes()[_descriptor_at(bad, start // PAGE) :][:24])
    with open(bad, "r+b") as f:  # garble the zlib stream of the first span's node
        f.seek(d.offset + 2)
        f.write(b"\xff" * 16)
    ins = inspect_dump(bad, Options())
    # The first node cannot be read: the part is partial with no span, and says why.
    assert ins.frames is not None and len(ins.frames.nodes) == 0 and ins.frames.error is not None
    assert ins.part_errors["frames"] == ins.frames.error
    assert "does not decompress" in ins.part_errors["frames"]
    assert f"frame {hex(start // PAGE)}" in ins.part_errors["frames"]
    with pytest.raises(DumpError, match="zlib-compressed page of frame"):
        open_dump(bad).memory.read(start, 8, "span")


def test_a_page_of_a_missing_codec_names_the_package(kdump: Path, tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("lzo") is not None:
        pytest.skip("python-lzo is installed here, so no page lacks its codec")
    bad = tmp_path / "lzo.kdump"
    bad.write_bytes(kdump.read_bytes())
    _poke(bad, _descriptor_at(bad, 5) + field_offset(PageDescriptor, "flags"), "<I", 0x2)
    with pytest.raises(DumpError, match=r"LZO-compressed .* needs the Python package `python-lzo`"):
        open_dump(bad).memory.read(5 * PAGE, 8, "page 5")


def test_the_page_cache_is_bounded(kdump: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paged, "CACHE_PAGES", 8)
    memory = open_dump(kdump).memory
    assert isinstance(memory, paged.PagedMemory)
    for pa in range(0, 64 * PAGE, PAGE):
        memory.u64(pa, "page")
    assert len(memory._cache) == 8
    assert memory.read(0x100000, 16, "x") == zlib.decompress(
        zlib.compress(memory.read(0x100000, 16, "x"))
    )


def test_lime_decodes_like_the_raw_image(fx: F.Fixture, tmp_path: Path) -> None:
    raw = fx.write_raw(tmp_path / "dump.raw", layout=True)
    source = open_dump(raw)
    lime = to_lime(source.memory, tmp_path / "dump.lime")
    src = open_dump(lime)
    assert src.kind == "lime" and src.cpus == []
    assert [(r.start, r.size) for r in src.memory.ranges] == [
        (r.start, r.size) for r in source.memory.ranges
    ]
    assert _doc(lime, cr3=fx.cr3)["frames"] == _doc(raw)["frames"]


LIME_FIELDS = [
    ("magic", "<I", 0x1234, "a range header starts with 0x4c694d45"),
    ("version", "<I", 2, "LiME version 1"),
    ("e_addr", "<Q", 0, "below its start"),
]


@pytest.mark.parametrize(("name", "fmt", "value", "why"), LIME_FIELDS)
def test_every_corrupt_lime_header_is_one_sentence(
    fx: F.Fixture, tmp_path: Path, name: str, fmt: str, value: int, why: str
) -> None:
    raw = fx.write_raw(tmp_path / "dump.raw", layout=True)
    lime = to_lime(open_dump(raw).memory, tmp_path / "dump.lime")
    second = LimeRangeHeader.sizeof() + F.RAM[0][1]  # the second range's header
    at = second + field_offset(LimeRangeHeader, name)
    _poke(lime, at, fmt, value)
    with pytest.raises(DumpError) as err:
        open_dump(lime)
    message = str(err.value)
    assert f"`{name}` at file offset {hex(at)} is {hex(value)}" in message and why in message


def test_a_truncated_lime_names_the_range(fx: F.Fixture, tmp_path: Path) -> None:
    raw = fx.write_raw(tmp_path / "dump.raw", layout=True)
    lime = to_lime(open_dump(raw).memory, tmp_path / "dump.lime")
    os.truncate(lime, os.path.getsize(lime) - PAGE)
    with pytest.raises(DumpError, match=r"`e_addr` at file offset .* truncated"):
        open_dump(lime)


def test_kinds_are_told_by_content_not_by_name(fx: F.Fixture, kdump: Path, tmp_path: Path) -> None:
    disguised = tmp_path / "memory.elf"
    disguised.write_bytes(kdump.read_bytes())
    assert open_dump(disguised).kind == "kdump"
    flat = tmp_path / "flat.kdump"
    flat.write_bytes(b"makedumpfile\0\0\0\0" + bytes(PAGE))
    with pytest.raises(DumpError, match=r"flattened stream .*`makedumpfile -R"):
        open_dump(flat)
    assert open_dump(fx.write_raw(tmp_path / "x.kdump")).kind == "raw"
