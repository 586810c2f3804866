"""PhysicalMemory and the two kinds of source: ranges, bulk reads, scans, raw images and layout files."""

from __future__ import annotations

import json
from pathlib import Path

import dump_fixtures as F
import numpy as np
import pytest

from kmtool.dump.memory import PAGE_BUDGET, MemoryRange, PhysicalMemory
from kmtool.dump.source import open_dump
from kmtool.errors import DumpError


@pytest.fixture(scope="module")
def fx() -> F.Fixture:
    return F.build()


@pytest.fixture(scope="module")
def raw(fx: F.Fixture, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fx.write_raw(tmp_path_factory.mktemp("raw") / "dump.raw")


def test_raw_image_is_one_range_from_its_base(raw: Path, fx: F.Fixture) -> None:
    src = open_dump(raw)
    assert src.kind == "raw" and src.base == 0 and src.cpus == []
    assert [(r.start, r.size) for r in src.memory.ranges] == [(0, len(fx.image))]
    based = open_dump(raw, base=0x100000000)
    assert based.memory.read(0x100000000 + F.BOOT_INFO_PA, 8, "x") == bytes(
        fx.image[F.BOOT_INFO_PA : F.BOOT_INFO_PA + 8]
    )
    with pytest.raises(DumpError, match=r"is outside the dump \(no memory at 0x0\)"):
        based.memory.read(0, 8, "x")


def test_layout_file_gives_ranges_and_cr3(fx: F.Fixture, tmp_path: Path) -> None:
    path = fx.write_raw(tmp_path / "dump.raw", layout=True)
    src = open_dump(path)
    assert src.layout_path == tmp_path / "dump.raw.layout.json"
    assert [(r.start, r.size) for r in src.memory.ranges] == list(F.RAM)
    assert src.cpus[0].cr3 == fx.cr3 and src.cpus[0].source == "layout file"
    with pytest.raises(DumpError, match=r"no memory at 0x800000"):
        src.memory.read(0x800000, 8, "hole")
    # An explicit --base means a flat image; the layout file still gives the CPU state (CR3).
    flat = open_dump(path, base=0)
    assert [(r.start, r.size) for r in flat.memory.ranges] == [(0, path.stat().st_size)]
    assert flat.cpus[0].cr3 == fx.cr3 and flat.layout_path == tmp_path / "dump.raw.layout.json"


def test_malformed_layout_file(fx: F.Fixture, tmp_path: Path) -> None:
    path = fx.write_raw(tmp_path / "dump.raw", layout=True)
    layout = tmp_path / "dump.raw.layout.json"
    layout.write_text(json.dumps({"format": "something-else", "version": 1}))
    with pytest.raises(DumpError, match=r"is not kmtool-raw-physical version 1"):
        open_dump(path)
    layout.write_text("{not json")
    with pytest.raises(DumpError, match=r"Layout file `.*` is malformed: JSONDecodeError"):
        open_dump(path)
    assert open_dump(path, base=0).cpus == []  # --base reads past a broken layout file


def test_bad_paths_and_bases(raw: Path, tmp_path: Path, fx: F.Fixture) -> None:
    with pytest.raises(DumpError, match=r"does not exist"):
        open_dump(tmp_path / "nope.raw")
    with pytest.raises(DumpError, match=r"is a directory"):
        open_dump(tmp_path)
    with pytest.raises(DumpError, match=r"base 0x123 is not page aligned"):
        open_dump(raw, base=0x123)
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    with pytest.raises(DumpError, match=r"is empty"):
        open_dump(empty)
    elf = fx.write_elf(tmp_path / "d.elf")
    with pytest.raises(DumpError, match=r"`--base` applies to raw images only"):
        open_dump(elf, base=0x1000)


def test_overlapping_ranges_are_refused(raw: Path) -> None:
    with pytest.raises(DumpError, match=r"overlapping memory ranges at 0x0 and 0x1000"):
        PhysicalMemory(
            raw, [MemoryRange(0, 0x2000, 0, 0x2000), MemoryRange(0x1000, 0x1000, 0, 0x1000)]
        )


def test_gather_marks_absent_and_misaligned_rows(raw: Path, fx: F.Fixture) -> None:
    mem = open_dump(raw).memory
    pas = np.array([F.BOOT_INFO_PA, 0x801, len(fx.image), len(fx.image) - 8], dtype=np.uint64)
    words, ok = mem.gather(pas, 2)
    assert ok.tolist() == [True, False, False, False]  # misaligned; past the end; straddles it
    assert int(words[0, 0]) == fx.u64(F.BOOT_INFO_PA)
    assert words[1:].sum() == 0


def test_bounded_gather_reads_the_same_as_one_pass(raw: Path, fx: F.Fixture) -> None:
    mem = open_dump(raw).memory
    rng = np.random.default_rng(5)
    pas = (rng.integers(0, len(fx.image) // 8, 20 * PAGE_BUDGET) * 8).astype(np.uint64)
    bounded, ok1 = mem.gather(pas, 1)
    mem.bounded = False
    resident, ok2 = mem.gather(pas, 1)
    assert ok1.all() and ok2.all() and (bounded == resident).all()
    expect = np.frombuffer(bytes(fx.image), dtype="<u8")[(pas // np.uint64(8)).astype(np.int64)]
    assert (bounded[:, 0] == expect).all()


def test_scan_finds_only_whole_aligned_needles(tmp_path: Path) -> None:
    data = bytearray(40 << 20)  # crosses the 16 MiB scan chunks
    needle = b"KMCORE\x00\x01\x7fINFO\x00\x00\x01"
    for at in (0x1000, (16 << 20) - 8, (32 << 20) + 3, (33 << 20)):
        data[at : at + len(needle)] = needle
    data[0x5000 : 0x5000 + 6] = b"KMCORE"  # the search key alone is not a hit
    path = tmp_path / "scan.raw"
    path.write_bytes(bytes(data))
    mem = open_dump(path).memory
    assert list(mem.scan(needle)) == [0x1000, (16 << 20) - 8, 33 << 20]


def test_page_heads_and_release_keep_data_readable(raw: Path, fx: F.Fixture) -> None:
    mem = open_dump(raw).memory
    heads = mem.page_heads(0, 0x100000, 0x104000, 2)
    assert heads.shape == (4, 2)
    assert int(heads[1, 0]) == fx.u64(0x101000)
    mem.release()
    assert mem.u64(0x101000, "x") == fx.u64(0x101000)
