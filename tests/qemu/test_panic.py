"""The panic report: parsing the kernel's format (kernel/lib/panic.c, arch/x86_64/trap.c) and
symbolizing addresses. The real kernel's panic is checked in tests/integration/
test_kernel_selftest.py (`test fault`)."""

from __future__ import annotations

from pathlib import Path

from kmtool.elf.kernel import FunctionIndex
from kmtool.qemu.panic import Frame, PanicReport, frame_at, panic_report, parse_panic

TRAP = [
    "kmtool kernel (build id 00112233445566778899aabbccddeeff): entered at TSC 1",
    "",
    "panic: page fault at 0xffffff9000000000 (kernel-vspace), not-present read, rip 0xffffffff80001010",
    "  vector   14 (#PF page fault)",
    "  rip      0xffffffff80001010 (kernel-image)",
    "  cr2      0xffffff9000000000 (kernel-vspace)",
    "  rsi 0000000000000000 rdi 0000000000000000 rbp 0000000000000000 r8  0000000000000000",
    "  backtrace 0xffffffff80002000 0xffffffff80000105",
    "",
]
CALL = ["panic: pmm_free: frame 0x1000 already free", "  caller   0xffffffff80002000",
        "  cr2      0x0000000000000000", "  backtrace", "KM-PANIC-HELD"]  # fmt: skip


def test_parse_a_trap_and_a_panic_call() -> None:
    assert parse_panic(TRAP) == (
        "page fault at 0xffffff9000000000 (kernel-vspace), not-present read, "
        "rip 0xffffffff80001010",
        0xFFFFFFFF80001010,
        False,
        [0xFFFFFFFF80002000, 0xFFFFFFFF80000105],
    )
    # panic(): the caller line is a return address; an empty backtrace is an empty list
    assert parse_panic(CALL) == (
        "pmm_free: frame 0x1000 already free",
        0xFFFFFFFF80002000,
        True,
        [],
    )
    assert parse_panic(["ok frames", "KM-REPORT {}"]) is None


def test_lookup_nearest_function_and_offset() -> None:
    symbols = FunctionIndex(
        [
            (0xFFFFFFFF80001000, 0x100, "selftest_fault"),
            (0xFFFFFFFF80000100, 0x5, "kmain"),
            (0xFFFFFFFF80002000, 0, "isr_common"),
        ]  # fmt: skip
    )
    assert frame_at(symbols, 0xFFFFFFFF80001010) == Frame(
        0xFFFFFFFF80001010, "selftest_fault", 0x10
    )
    # a return address just past a function's last call belongs to that function
    assert frame_at(symbols, 0xFFFFFFFF80000105, return_address=True) == Frame(
        0xFFFFFFFF80000105, "kmain", 5
    )
    assert frame_at(symbols, 0xFFFFFFFF80000105) == Frame(0xFFFFFFFF80000105)  # past kmain's size
    assert frame_at(symbols, 0xFFFFFFFF80002345) == Frame(0xFFFFFFFF80002345, "isr_common", 0x345)
    assert frame_at(symbols, 0x1000) == Frame(0x1000)


def test_report_json_and_lines_without_a_kernel(tmp_path: Path) -> None:
    report = panic_report(TRAP, tmp_path / "missing.elf")
    assert isinstance(report, PanicReport) and report.kernel is None
    assert report.to_json() == {
        "message": parse_panic(TRAP)[0],  # type: ignore[index]
        "rip": {"address": "0xffffffff80001010", "symbol": None, "offset": None, "line": None},
        "backtrace": [
            {"address": "0xffffffff80002000", "symbol": None, "offset": None, "line": None},
            {"address": "0xffffffff80000105", "symbol": None, "offset": None, "line": None},
        ],
        "kernel": None,
    }
    assert report.lines()[1:] == [
        "  rip 0xffffffff80001010",
        "  #0  0xffffffff80002000",
        "  #1  0xffffffff80000105",
        "  (no symbols: no kernel ELF matching the booted kernel)",
    ]
