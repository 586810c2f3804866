"""`kmtool layout report`: exact text, JSON keys, exit status, --kernel default, and the SVG."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import layout_elves as elves
import pytest

from kmtool.layout import report, table
from kmtool.units import hexaddr, size_text

SVG = "{http://www.w3.org/2000/svg}"


def kmtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `kmtool layout report ARGS` in `cwd` as a user would, with plain 100-column output."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    env.pop("KMTOOL_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "kmtool", "layout", "report", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )


def plain(text: str) -> str:
    """`text` without the spaces rich pads table rows with."""
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


EXPECTED = """\
Virtual address-space plan (4-level paging, 48-bit canonical addresses)
region           start               end (incl.)            size  PML4     backing        page
───────────────────────────────────────────────────────────────────────────────────────────────
user-space       0x0000000000000000  0x00007fffffffffff  128 TiB  0-255    per-process    4 KiB
  user-stack     0x00007ffffffff000  0x00007fffffffffff    4 KiB  255      per-process    4 KiB
kernel-space     0xffffff0000000000  0xffffffffffffffff    1 TiB  510-511  container      4 KiB
  kernel-image   0xffffff0000000000  0xffffff003fffffff    1 GiB  510      static         4 KiB
  kernel-vspace  0xffffff0040000000  0xffffff77ffffffff  479 GiB  510      demand-paged   4 KiB
  kernel-heap    0xffffff7800000000  0xffffff7fffffffff   32 GiB  510      demand-paged   4 KiB
  offset-map     0xffffff8000000000  0xffffffffffffffff  512 GiB  511      offset-mapped  1 GiB

Page-table cost for 64 GiB of RAM
item                        tables            size  detail
──────────────────────────────────────────────────────────────────────────────────────────────────
kernel PML4                      1           4 KiB  the kernel's own top-level table
offset map, 1 GiB pages          1           4 KiB  1 PDPT mapping 64 GiB
offset map, 2 MiB fallback      65         260 KiB  1 PDPT + 64 PDs mapping 64 GiB without pdpe1gb
kernel image, 4 KiB pages        3          12 KiB  1 PDPT + 1 PD + 1 PT at least (no ELF)
kernel heap, fully backed    16416  64 MiB 128 KiB  32 PDs + 16384 PTs for all 32 GiB, on demand
Fixed costs: kernel image (not counted: no ELF), PML4, image tables, offset map.
The frame allocator adds nothing: its free list lives in the free frames.
Memory left with 1 GiB pages:         64 GiB - 20 KiB = 63 GiB 1023 MiB 1004 KiB
Memory left with the 2 MiB fallback:  64 GiB - 276 KiB = 63 GiB 1023 MiB 748 KiB

Checks
check                 result  detail
────────────────────────────────────────────────────────────────────────────────────────────────────
canonical             PASS    All 7 regions have canonical ends.
aligned               PASS    Every region starts and ends on its own page size.
no-overlap            PASS    No two sibling regions overlap.
nesting               PASS    All 5 nested regions lie inside their parents.
shared-pml4           PASS    All 5 kernel regions lie in PML4 entries 510-511.
offset-map-coverage   PASS    `offset-map` covers 512 GiB, the declared maximum is 512 GiB.
link-base             PASS    The kernel links at 0xffffff0000100000, inside `kernel-image`.
memory-in-offset-map  PASS    All 64 GiB of RAM lies inside `offset-map` (512 GiB).
memory-fixed-costs    PASS    Fixed costs of 20 KiB (1 GiB pages) or 276 KiB (2 MiB fallback) fit in
                              64 GiB.
All 9 checks passed.
"""


def test_exact_report(tmp_path: Path) -> None:
    result = kmtool("--memory", "64G", cwd=tmp_path)  # no build/ here: no kernel section
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert plain(result.stdout) == EXPECTED


EXACT_SIZE = re.compile(r"(\d+) (B|KiB|MiB|GiB|TiB|PiB|EiB)")


def exact_bytes(text: str) -> int:
    """The bytes in `63 GiB 1023 MiB 748 KiB` (every part counted; nothing rounded)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    parts = EXACT_SIZE.findall(text)
    assert parts and " ".join(f"{n} {u}" for n, u in parts) == text.strip(), text
    return sum(int(n) << (10 * units.index(u)) for n, u in parts)


@pytest.mark.parametrize("memory", ["64G", "600G", "3000M", "1.5G", "1T"])
def test_memory_left_arithmetic_holds_exactly(tmp_path: Path, memory: str) -> None:
    from kmtool.layout.cost import parse_size

    result = kmtool("--memory", memory, cwd=tmp_path)
    lines = [line for line in result.stdout.splitlines() if line.startswith("Memory left")]
    assert len(lines) == 2, result.stdout
    managed = min(parse_size(memory), table.region("offset-map").size)
    for line in lines:
        total, rest = line.split(":", 1)[1].split(" - ")
        fixed, left = rest.split(" = ")
        assert exact_bytes(total) - exact_bytes(fixed) == exact_bytes(left), line
        assert exact_bytes(total) == managed


@pytest.mark.parametrize(
    "size", [0, 1, 1023, 4096, 64 << 30, (64 << 30) - 20 * 1024, 16416 * 4096, (1 << 64) - 1]
)
def test_exact_size_text_loses_nothing(size: int) -> None:
    from kmtool.units import exact_size_text

    assert exact_bytes(exact_size_text(size)) == size


def test_ram_beyond_the_offset_map_is_shown_as_unmanaged(tmp_path: Path) -> None:
    result = kmtool("--memory", "600G", cwd=tmp_path)
    assert result.returncode == 1
    out = plain(result.stdout)
    assert (
        "Page-table cost for 600 GiB of RAM (costed for the 512 GiB `offset-map` reaches)\n" in out
    )
    row = next(line for line in out.splitlines() if line.startswith("unmanaged RAM"))
    assert row.split()[2:5] == ["-", "88", "GiB"]
    assert "Only 512 GiB of the 600 GiB can be managed: 88 GiB would be unmanaged.\n" in out
    assert "88 GiB would be unmanaged." in " ".join(out.split())  # the failed check says it too
    assert result.stderr.strip() == (
        "error: 1 layout check failed: `memory-in-offset-map` (offset-map)."
    )
    data = json.loads(kmtool("--memory", "600G", "--json", cwd=tmp_path).stdout)["memory"]
    assert (data["ram"], data["managed"], data["unmanaged"]) == (600 << 30, 512 << 30, 88 << 30)
    fits = plain(kmtool("--memory", "512G", cwd=tmp_path).stdout)
    assert "unmanaged" not in fits and "costed for" not in fits


def test_json_keys_and_values(tmp_path: Path) -> None:
    result = kmtool("--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data) == ["regions", "checks", "ok", "constants", "kernel", "memory"]
    assert data["ok"] is True and data["kernel"] is None and data["memory"] is None
    assert [r["name"] for r in data["regions"]] == [
        "user-space",
        "user-stack",
        "kernel-space",
        "kernel-image",
        "kernel-vspace",
        "kernel-heap",
        "offset-map",
    ]
    for row in data["regions"]:
        region = table.region(row["name"])
        assert set(row) >= {"name", "start", "end", "size", "pml4"}
        assert row["start"] == hexaddr(region.start) and row["end"] == hexaddr(region.end)
        assert isinstance(row["size"], int) and row["size"] == region.size
        assert row["pml4"] == list(region.pml4)
        assert row["backing"] == region.backing.value and row["page_size"] == region.page_size
    heap = next(r for r in data["regions"] if r["name"] == "kernel-heap")
    assert heap == {
        "name": "kernel-heap",
        "start": "0xffffff7800000000",
        "end": "0xffffff7fffffffff",
        "size": 32 << 30,
        "pml4": [510, 510],
        "backing": "demand-paged",
        "page_size": 4096,
        "parent": "kernel-space",
        "description": table.region("kernel-heap").description,
    }
    for check in data["checks"]:
        assert set(check) == {"name", "ok", "detail", "culprits"}
        assert check["ok"] is True and check["detail"].endswith(".")
    assert data["constants"]["shared_pml4"] == [510, 511]


def test_json_memory_and_kernel_sections(tmp_path: Path) -> None:
    elf = elves.build_elf(tmp_path / "elves", elves.GOOD, "good.elf")
    result = kmtool("--json", "--memory", "1T", "--kernel", str(elf), cwd=tmp_path)
    assert result.returncode == 1  # 1 TiB is more than the offset map reaches
    data = json.loads(result.stdout)
    memory = data["memory"]
    assert memory["ram"] == 1 << 40 and memory["managed"] == 512 << 30
    assert memory["image_known"] is True and memory["image_bytes"] % 4096 == 0
    assert [t["key"] for t in memory["page_tables"]] == [
        "pml4",
        "offset-map-1g",
        "offset-map-2m",
        "image",
        "heap",
    ]
    assert set(memory["fixed_bytes"]) == set(memory["left_bytes"]) == {"1gib_pages", "2mib_pages"}
    kernel = data["kernel"]
    assert kernel["path"] == str(elf)
    assert kernel["entry"] == hexaddr(table.KERNEL_LINK_BASE)
    assert [s["flags"] for s in kernel["segments"]] == ["R-X", "R--", "RW-"]
    assert set(kernel["symbols"]) >= {"_start", "__kernel_start", "__kernel_end"}
    failed = [c["name"] for c in data["checks"] if not c["ok"]]
    assert failed == ["memory-in-offset-map"]
    assert "`memory-in-offset-map` (offset-map)" in result.stderr


def test_a_bad_kernel_exits_1_naming_the_segments(tmp_path: Path) -> None:
    elf = elves.build_elf(tmp_path / "elves", elves.WX, "wx.elf")
    result = kmtool("--kernel", str(elf), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "error: 1 layout check failed: `kernel-no-wx` (program header 0)."
    )
    row = next(line for line in result.stdout.splitlines() if line.startswith("kernel-no-wx"))
    assert row.split()[1] == "FAIL"
    assert "1 of 14 checks failed." in result.stdout


def test_a_segment_below_the_link_base_does_not_wrap_the_image_size(tmp_path: Path) -> None:
    elf = elves.build_elf(tmp_path / "elves", elves.BELOW, "below.elf")
    result = kmtool("--json", "--memory", "64G", "--kernel", str(elf), cwd=tmp_path)
    assert result.returncode == 1
    data = json.loads(result.stdout)
    kernel = data["kernel"]
    assert kernel["start"] == hexaddr(table.KERNEL_LINK_BASE) and kernel["size"] < 1 << 20
    assert [s["index"] for s in kernel["segments"]] == [0, 1, 2, 3]
    assert data["memory"]["image_bytes"] == -(-kernel["size"] // 4096) * 4096
    assert "`kernel-image-size` (program header 0)" in result.stderr
    text = kmtool("--kernel", str(elf), cwd=tmp_path).stdout
    assert "EiB" not in text and "lies below `kernel-image`" in " ".join(text.split())


def test_kernel_defaults_to_build_kernel_elf(tmp_path: Path) -> None:
    elf = elves.build_elf(tmp_path / "elves", elves.OUTSIDE, "outside.elf")
    (tmp_path / "build").mkdir()
    shutil.copy(elf, tmp_path / "build" / "kernel.elf")
    result = kmtool(cwd=tmp_path)
    assert result.returncode == 1
    assert "Kernel build/kernel.elf (entry" in result.stdout
    assert "`kernel-segments-in-image` (program header 2)" in result.stderr
    skipped = kmtool("--no-kernel", cwd=tmp_path)
    assert skipped.returncode == 0 and "Kernel" not in skipped.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--memory", "lots"], "error: The memory size `lots` is not a size"),
        (["--kernel", "nope.elf"], "error: The kernel ELF `nope.elf` does not exist.\n"),
        (["--kernel", "x.elf", "--no-kernel"], "error: Give either `--kernel` or `--no-kernel`"),
    ],
)
def test_user_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = kmtool(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "build it" not in result.stderr  # an explicit path gets no advice about building


def _svg_regions(path: Path) -> dict[str, ET.Element]:
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    return {g.get("data-name", ""): g for g in root.iter(f"{SVG}g") if g.get("class") == "region"}


def _texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


def _height(group: ET.Element) -> float:
    rect = group.find(f"{SVG}rect")
    assert rect is not None
    return float(rect.get("height", "0"))


def test_svg_labels_every_region_with_start_and_size(tmp_path: Path) -> None:
    out = tmp_path / "plan.svg"
    result = kmtool("--svg", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    groups = _svg_regions(out)
    assert set(groups) == {r.name for r in table.REGIONS}
    for r in table.REGIONS:
        g = groups[r.name]
        assert g.get("data-start") == hexaddr(r.start)
        assert g.get("data-end") == hexaddr(r.end)
        assert g.get("data-size") == str(r.size)
        texts = _texts(g)
        assert r.name in texts
        assert any(hexaddr(r.start) in t and size_text(r.size) in t for t in texts), texts


def test_svg_heights_grow_with_size_on_a_log_scale(tmp_path: Path) -> None:
    out = tmp_path / "plan.svg"
    kmtool("--svg", str(out), cwd=tmp_path)
    groups = _svg_regions(out)
    leaves = ["user-stack", "kernel-image", "kernel-heap", "kernel-vspace", "offset-map"]
    heights = [_height(groups[name]) for name in leaves]  # sizes: 4 KiB < 1 < 32 < 479 < 512 GiB
    assert heights == sorted(heights) and len(set(heights)) == len(heights)
    # Log scale: 1 GiB -> 512 GiB (x512) adds far less than 512 times the height.
    assert heights[-1] < 2 * heights[1]
    # Containers hold their children.
    assert _height(groups["kernel-space"]) > sum(
        _height(groups[n]) for n in ("kernel-image", "kernel-vspace", "kernel-heap", "offset-map")
    )


def test_svg_covers_both_halves_with_regions_and_unused_gaps() -> None:
    from kmtool.layout import svg

    for half in (svg.LOWER_HALF, svg.UPPER_HALF):
        boxes = svg.half_boxes(table.REGIONS, half)
        assert boxes[0].start == half[0] and boxes[-1].end == half[1]
        for a, b in zip(boxes, boxes[1:], strict=False):
            assert b.start == a.end + 1
    upper = svg.half_boxes(table.REGIONS, svg.UPPER_HALF)
    assert [b.region.name if b.region else None for b in upper] == [None, "kernel-space"]


def test_svg_outlines_the_culprits_of_failed_checks(tmp_path: Path) -> None:
    from dataclasses import replace

    from kmtool.layout import svg

    broken = [replace(r, size=256 << 30) if r.name == "offset-map" else r for r in table.REGIONS]
    text = svg.render(report.build_report(regions=broken))
    out = tmp_path / "broken.svg"
    out.write_text(text)
    groups = _svg_regions(out)
    rect = groups["offset-map"].find(f"{SVG}rect")
    assert rect is not None and rect.get("stroke") == svg.FAULT
    heap_rect = groups["kernel-heap"].find(f"{SVG}rect")
    assert heap_rect is not None and heap_rect.get("stroke") != svg.FAULT
    assert "fails: offset-map-coverage" in text
