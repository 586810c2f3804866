"""`kmtool inspect --svg` on the dump fixture (no boot): the SVG parses, and its blocks and legend
hold every owner with the frame accounting's totals (kmtool/picture/dump.py)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import dump_fixtures as F
from click.testing import CliRunner

from kmtool.cli import cli
from kmtool.layout.table import PAGE_SIZE
from kmtool.picture.physical import MAPPED_KINDS

NS = "{http://www.w3.org/2000/svg}"


def _inspect(tmp_path: Path) -> tuple[ET.Element, dict]:
    dump = F.build().write_elf(tmp_path / "fixture.elf")
    svg = tmp_path / "fixture.svg"
    runner = CliRunner()
    out = runner.invoke(cli, ["inspect", str(dump), "--json", "--svg", str(svg)])
    assert out.exception is None or isinstance(out.exception, SystemExit), out.output
    return ET.parse(svg).getroot(), json.loads(out.stdout)


def _legend(root: ET.Element) -> dict[str, int]:
    return {g.get("data-kind"): int(g.get("data-bytes"))
            for g in root.iter(f"{NS}g") if g.get("class") == "legend"}  # fmt: skip


def test_physical_blocks_hold_every_owner_with_the_accounting_totals(tmp_path: Path) -> None:
    root, doc = _inspect(tmp_path)
    by_owner = doc["accounting"]["by_owner"]
    legend = _legend(root)
    for owner in ("free", "page-table", "kernel-image", "handoff", "unaccounted"):
        assert legend[owner] == by_owner[owner] * PAGE_SIZE, owner
    assert sum(legend[k] for k in MAPPED_KINDS) == by_owner["mapped"] * PAGE_SIZE
    # Each block's data-size is its [start, end), and plain blocks of an owner add up to it.
    sums: dict[str, int] = {}
    for g in root.iter(f"{NS}g"):
        if g.get("class") == "block":
            size = int(g.get("data-size"))
            assert int(g.get("data-end"), 16) - int(g.get("data-start"), 16) == size
            assert g.find(f"{NS}title") is not None
            sums[g.get("data-kind")] = sums.get(g.get("data-kind"), 0) + size
    assert sums.get("free", 0) <= legend["free"]
    assert by_owner["free"] > 0 and sums.get("free", 0) > 0


def test_one_virtual_band_per_address_space(tmp_path: Path) -> None:
    root, doc = _inspect(tmp_path)
    titles = [t.text or "" for t in root.iter(f"{NS}text")]
    spaces = (doc.get("address_spaces") or {}).get("spaces", [])
    assert any(t.startswith("Kernel tables:") for t in titles)
    assert sum(t.startswith("Address space ") for t in titles) == len(spaces)
