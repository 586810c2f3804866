"""The kernel's memory manager booted under QEMU (issue 4 items 1, 8, 9, 11).

Boots the real image with `--cmdline test` at every memory size issue 4 lists, once without the
pdpe1gb CPU flag (2 MiB offset map), and once with `test fault` (expects the panic outcome). Every
boot checks each self test printed `ok`, and the ready report against itself: the span list, the
span hash (recomputed here), the counters, and the self tests leaving nothing allocated.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, require

from kmtool.dump.kernel_elf import load_kernel_symbols
from kmtool.layout import table
from kmtool.qemu.cmdline import parse_size
from kmtool.qemu.outcome import Outcome
from kmtool.qemu.runner import RunOptions, RunResult, run_image
from kmtool.schemas.frames import SPAN_HASH_MULTIPLIER

TOOLS = ("clang", "ld.lld", "lld-link", "mformat", "mcopy", "qemu-system-x86_64",
         "/usr/share/OVMF/OVMF_CODE_4M.fd")  # fmt: skip
SELF_TESTS = ("frames_alloc_free", "frames_coalesce", "frames_partial", "frames_contig",
              "frames_exhaustion", "frames_fold", "allocator_interface", "heap_sizes", "heap_coalesce",
              "heap_lazy", "kvm_demand", "tlb_remap", "offset_map", "kernel_wx", "aspaces",
              "regions")  # fmt: skip
REPORT_KEYS = ("free_frames", "spans", "stack_depth", "folds", "span_list", "span_hash", "heap_bytes_in_use",
               "heap_backed_pages", "page_faults", "offset_map_page_size", "kernel_pml4",
               "bootstrap_cycles", "build_id")  # fmt: skip
GiB, MiB = table.GiB, table.MiB


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(*TOOLS)
    out = tmp_path_factory.mktemp("kernel") / "build"
    env = dict(os.environ, NO_COLOR="1")
    done = subprocess.run(
        [sys.executable, "-m", "kmtool", "build", "--build-dir", str(out)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def boot(build_dir: Path, memory: str, cmdline: str, cpu: str | None = None) -> RunResult:
    options = RunOptions(
        memory=parse_size(memory), cmdline=cmdline, cpu=cpu, timeout=180.0, build_dir=build_dir
    )
    return run_image(build_dir / "kmtool.img", options)


def span_hash(spans: list[tuple[int, int]]) -> int:
    """kmtool.schemas.frames' span hash: Horner's rule over the words start, count, mod 2^64."""
    h = 0
    for start, count in spans:
        for word in (start, count):
            h = (h * SPAN_HASH_MULTIPLIER + word) % (1 << 64)
    return h


def check_selftest_boot(result: RunResult, memory: int) -> dict[str, Any]:
    assert result.outcome is Outcome.PASS, result.serial[-3000:]
    lines = result.serial.splitlines()
    assert [line for line in lines if line.startswith("fail ")] == []
    assert [line[3:] for line in lines if line.startswith("ok ")] == list(SELF_TESTS)
    report = result.report
    assert report is not None, result.report_error
    for key in REPORT_KEYS:
        assert key in report, key
    assert (report["tests_passed"], report["tests_failed"]) == (len(SELF_TESTS), 0)

    spans = [(int(start, 16), count) for start, count in report["span_list"]]
    assert spans == sorted(spans)
    for (a, n), (b, _) in zip(spans, spans[1:], strict=False):
        assert a + n * table.PAGE_SIZE < b, "spans must be sorted and coalesced"
    assert len(spans) == min(report["spans"], 64)
    if report["spans"] <= 64:
        assert report["span_hash"] == f"0x{span_hash(spans):016x}"
        assert report["free_frames"] == sum(n for _, n in spans)
    assert spans[0][0] > 0, "frame 0 is never managed"
    assert report["folds"] >= 2, "the frames_fold self test folds twice"

    # the self tests give back everything they take
    assert report["heap_bytes_in_use"] == 0 and report["heap_blocks_in_use"] == 0
    assert report["address_spaces"] == 0
    assert report["free_frames"] <= report["managed_frames"] <= memory // table.PAGE_SIZE
    assert report["managed_frames"] >= 0.85 * memory // table.PAGE_SIZE
    assert re.fullmatch(r"0x[0-9a-f]+", report["kernel_pml4"])
    assert int(report["kernel_pml4"], 16) % table.PAGE_SIZE == 0
    assert report["page_faults"] >= report["heap_backed_pages"] > 0
    assert report["bootstrap_cycles"] > 0
    # the build id: the first 16 bytes of kernel.elf's GNU build-id note, in the banner too
    assert re.fullmatch(r"[0-9a-f]{32}", report["build_id"]) and int(report["build_id"], 16)
    assert f"kmtool kernel (build id {report['build_id']}): entered at TSC" in result.serial
    return report


@pytest.mark.qemu
@pytest.mark.parametrize("memory", ["128M", "512M", "3G", "8G", "64G", "256G"])
def test_self_tests_pass(build_dir: Path, memory: str) -> None:
    result = boot(build_dir, memory, "test")
    report = check_selftest_boot(result, parse_size(memory))
    elf_id = load_kernel_symbols(build_dir / "kernel.elf").build_id
    assert elf_id is not None and report["build_id"] == elf_id[:16].hex()
    assert report["offset_map_page_size"] == GiB  # -cpu max has pdpe1gb
    assert report["offset_map_size"] == 512 * GiB


@pytest.mark.qemu
def test_self_tests_pass_without_1gib_pages(build_dir: Path) -> None:
    result = boot(build_dir, "8G", "test", cpu="max,-pdpe1gb")
    report = check_selftest_boot(result, 8 * GiB)
    assert report["offset_map_page_size"] == 2 * MiB
    # RAM above 4 GiB (q35 puts 6 GiB there for an 8 GiB guest) is mapped and managed too
    assert report["offset_map_size"] >= 10 * GiB
    assert max(int(s, 16) for s, _ in report["span_list"]) >= 4 * GiB


@pytest.mark.qemu
def test_fault_outside_handed_out_ranges_panics(build_dir: Path) -> None:
    result = boot(build_dir, "512M", "test fault")
    assert result.outcome is Outcome.PANIC, result.serial[-3000:]
    serial = result.serial
    address = table.KERNEL_VSPACE_BASE + 64 * GiB
    assert f"panic: page fault at {address:#x} (kernel-vspace), not-present read" in serial
    assert re.search(r"^  vector   14 \(#PF page fault\)$", serial, re.M)
    assert re.search(r"^  rip      0x[0-9a-f]{16} \(kernel-image\)$", serial, re.M)
    assert f"  cr2      0x{address:016x} (kernel-vspace)" in serial
    assert "KM-REPORT" not in serial

    # kmtool symbolizes the panic with the built kernel ELF: the faulting function, then its callers
    panic = result.panic
    assert panic is not None and panic.kernel == build_dir / "kernel.elf"
    assert panic.message.startswith(f"page fault at {address:#x} (kernel-vspace), not-present read")
    assert panic.rip is not None and panic.rip.symbol == "selftest_fault", panic.lines()
    assert panic.rip.offset is not None and panic.rip.offset > 0
    assert f"rip 0x{panic.rip.address:016x}" in serial
    assert [frame.symbol for frame in panic.backtrace][:1] == ["kmain"], panic.lines()
    assert all(frame.symbol is not None for frame in panic.backtrace)
    data = result.to_json()["panic"]
    # ... and file:line from the DWARF line table
    assert panic.rip.line is not None and re.fullmatch(
        r"kernel/test/selftest\.c:\d+", panic.rip.line
    )
    assert panic.backtrace[0].line is not None and panic.backtrace[0].line.startswith(
        "kernel/main.c:"
    )
    assert data["rip"] == {"address": hex(panic.rip.address), "symbol": "selftest_fault",
                           "offset": panic.rip.offset, "line": panic.rip.line}  # fmt: skip
    assert data["backtrace"][0]["symbol"] == "kmain"
    assert panic.lines()[1] == (
        f"  rip 0x{panic.rip.address:016x} selftest_fault+{panic.rip.offset:#x} ({panic.rip.line})"
    )
