"""The raw-dump sidecar format (kmtool/schemas/rawdump.py): what the capture writes, inspect reads."""

from __future__ import annotations

import json
from pathlib import Path

from kmtool.dump.source import open_dump
from kmtool.schemas import rawdump

GiB = 1 << 30
LOW, HIGH = ("ram-below-4g", 0, 2 * GiB), ("ram-above-4g", 4 * GiB, 1 * GiB)
CPU: rawdump.RawCpu = {"index": 0, "cr0": "0x80010033", "cr3": "0x7e01000", "cr4": "0x6a0"}


def test_layout_document_has_the_documented_shape() -> None:
    assert rawdump.layout_document([LOW, HIGH], [CPU]) == {
        "format": "kmtool-raw-physical",
        "version": 1,
        "machine": "q35",
        "memory_size": "0xc0000000",  # 2 GiB + 1 GiB of RAM
        "file_size": "0x140000000",  # the end of ram-above-4g
        "ranges": [
            {"name": "ram-below-4g", "phys": "0x0", "size": "0x80000000", "file_offset": "0x0"},
            {
                "name": "ram-above-4g",
                "phys": "0x100000000",
                "size": "0x40000000",
                "file_offset": "0x100000000",
            },
        ],
        "cpus": [CPU],
    }


def test_layout_path_is_beside_the_dump() -> None:
    assert rawdump.layout_path_for(Path("/d/x.raw")) == Path("/d/x.raw.layout.json")


def test_inspect_reads_what_the_capture_writes(tmp_path: Path) -> None:
    dump = tmp_path / "small.raw"
    with dump.open("wb") as f:
        f.truncate(3 << 20)
    doc = rawdump.layout_document(
        [("ram-below-4g", 0, 1 << 20), ("ram-x", 2 << 20, 1 << 20)], [CPU]
    )
    rawdump.layout_path_for(dump).write_text(json.dumps(doc))
    source = open_dump(dump)
    assert source.layout_path == tmp_path / "small.raw.layout.json"
    assert [(r.start, r.size, r.file_offset) for r in source.memory.ranges] == [
        (0, 1 << 20, 0),
        (2 << 20, 1 << 20, 2 << 20),
    ]
    assert [(c.index, c.cr3, c.efer) for c in source.cpus] == [(0, 0x7E01000, None)]
