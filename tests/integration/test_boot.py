"""Boot the real kernel image (issue 2 item 9 "boot"): outcome pass, memory map printed, report
parsed; and the --dump path of `kmtool run` on the real kernel. Two TCG boots.

The image is built fresh into a temporary build directory (`kmtool build` takes about a second),
so the test checks the sources of this tree, not whatever happens to be in build/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import BOOT_TOOLS, require, run_kmtool
from elftools.elf.elffile import ELFFile

from kmtool.layout.table import EXIT_PASS
from kmtool.qemu.outcome import qemu_status_for

MEMORY_MAP_ROW = re.compile(r"^\s*\d+\s+\S+\s+0x[0-9a-f]{16}\s+0x[0-9a-f]{16}\s+\d+\s+0x[0-9a-f]+$")


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(*BOOT_TOOLS)
    out = tmp_path_factory.mktemp("boot") / "build"
    done = run_kmtool("build", "--build-dir", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "kmtool.img").is_file()
    return out


@pytest.mark.qemu
def test_boot_passes_prints_the_memory_map_and_reports(build_dir: Path) -> None:
    done = run_kmtool("run", "--json", "--build-dir", str(build_dir), "--cmdline", "x=1,y=2 z é")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    expected = ("pass", 0, qemu_status_for(EXIT_PASS))
    assert (result["outcome"], result["exit_status"], result["qemu_status"]) == expected
    assert result["held"] is False and result["report_error"] is None
    report = result["report"]
    assert isinstance(report, dict)
    assert isinstance(report["bootstrap_cycles"], int) and report["bootstrap_cycles"] > 0
    assert report["cmdline"] == "x=1,y=2 z é"  # through fw_cfg, commas and UTF-8 and all
    assert result["cmdline"] == "x=1,y=2 z é"

    serial = Path(result["serial_log"]).read_text(encoding="utf-8", errors="replace")
    assert '  cmdline      "x=1,y=2 z é"' in serial.splitlines()  # the kernel prints the bytes raw
    rows = [line for line in serial.splitlines() if MEMORY_MAP_ROW.match(line)]
    assert len(rows) == report["memory_map_entries"] > 0
    assert any(" Conventional " in row for row in rows)
    assert serial.count("KM-REPORT ") == 1
    assert "KM-REPORT" in Path(result["debugcon_log"]).read_text(errors="replace")


@pytest.mark.qemu
def test_dump_on_ready(build_dir: Path) -> None:
    dump = build_dir / "dump.elf"
    done = run_kmtool("run", "--build-dir", str(build_dir), "--dump", str(dump))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "KM-READY" in lines
    assert re.fullmatch(
        rf"dump {re.escape(str(dump))}: elf, 512 MiB of RAM in \d+\.\d s", lines[-2]
    )
    assert lines[-1].startswith(
        "outcome pass: the kernel reported success (held, then stopped by kmtool, "
    )
    with open(dump, "rb") as f:
        elf = ELFFile(f)
        assert elf["e_type"] == "ET_CORE"
        loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        assert sum(s["p_memsz"] for s in loads) == 512 << 20
        notes = [n["n_name"] for s in elf.iter_segments() if s["p_type"] == "PT_NOTE"
                 for n in s.iter_notes()]  # fmt: skip
        assert "QEMU" in notes and "CORE" in notes
