"""`kmtool diff A B --svg` on the dump fixture (no boot): B leaks one frame and makes one kernel
text page writable. The picture parses; its physical track names the leaked frame and its virtual
band the one page whose rights changed, each with exact bytes; `--json` says the same."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from click.testing import CliRunner
from conftest import run_kmtool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dump"))

import dump_fixtures as F  # noqa: E402

from kmtool.cli import cli  # noqa: E402
from kmtool.dump.records import field_offset  # noqa: E402
from kmtool.dump.translate import walk_address  # noqa: E402
from kmtool.layout.table import PAGE_SIZE  # noqa: E402
from kmtool.schemas.frames import FrameAllocator, FrameSpan  # noqa: E402

NS = "{http://www.w3.org/2000/svg}"


def _changed(fx: F.Fixture, a: Path) -> tuple[F.Fixture, int]:
    """B: the last span's top frame leaks, and the first text page gains W; the leaked frame."""
    from kmtool.dump.source import open_dump

    b = F.Fixture(bytearray(fx.image), fx.cr3, fx.truth, dict(fx.addresses))
    start, count = fx.truth["spans"][-1]
    b.poke(start + field_offset(FrameSpan, "count"), count - 1)
    free = fx.addresses["frames"] + field_offset(FrameAllocator, "free_frames")
    b.poke(free, fx.u64(free) - 1)
    step = walk_address(open_dump(a).memory, fx.cr3, F.KERNEL_LINK_BASE)["steps"][-1]
    b.poke(int(step["entry_address"], 16), int(step["entry"], 16) | F.W)
    return b, start + (count - 1) * PAGE_SIZE


def _blocks(root: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{NS}g") if g.get("class") == "block"
            and g.get("data-kind") == kind]  # fmt: skip


def test_the_picture_colours_the_leak_and_the_changed_page(tmp_path: Path) -> None:
    fx = F.build()
    a = fx.write_raw(tmp_path / "a.raw")
    b_fx, leaked = _changed(fx, a)
    b = b_fx.write_raw(tmp_path / "b.raw")
    svg = tmp_path / "diff.svg"
    out = CliRunner().invoke(cli, ["diff", str(a), str(b), "--json", "--svg", str(svg)])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    (change,) = [c for c in doc["mapping_changes"] if c["space"] == "kernel"]
    assert change["change"] == "changed" and change["what"] == "rights"
    assert change["after"]["start"] == hex(F.KERNEL_LINK_BASE)
    assert change["after"]["size"] == PAGE_SIZE and "W" in change["after"]["flags"]
    root = ET.parse(svg).getroot()
    legend = {g.get("data-kind"): int(g.get("data-bytes") or -1)
              for g in root.iter(f"{NS}g") if g.get("class") == "legend"}  # fmt: skip
    assert legend["leaked"] == PAGE_SIZE and legend["changed rights"] == PAGE_SIZE
    assert legend["unchanged"] > 0 and "added" not in legend and "removed" not in legend
    (leak,) = _blocks(root, "leaked")
    assert int(leak.get("data-start") or "", 16) == leaked
    (page,) = _blocks(root, "changed rights")
    assert int(page.get("data-start") or "", 16) == F.KERNEL_LINK_BASE
    titles = [t.text or "" for t in root.iter(f"{NS}text")]
    assert any(t.startswith("kernel: 1 changed range") for t in titles), titles


def test_no_change_draws_no_band(tmp_path: Path) -> None:
    a = F.build().write_raw(tmp_path / "a.raw")
    svg = tmp_path / "same.svg"
    out = CliRunner().invoke(cli, ["diff", str(a), str(a), "--svg", str(svg)])
    assert out.exit_code == 0, out.output
    root = ET.parse(svg).getroot()
    kinds = {g.get("data-kind") for g in root.iter(f"{NS}g") if g.get("class") == "block"}
    assert kinds <= {"unchanged", "hole"} and "unchanged" in kinds


def test_an_unwritable_svg_path_is_one_sentence(tmp_path: Path) -> None:
    a = F.build().write_raw(tmp_path / "a.raw")
    done = run_kmtool("diff", str(a), str(a), "--svg", str(tmp_path / "no" / "x.svg"))
    assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout
    assert "x.svg` cannot be written" in done.stderr, done.stderr
