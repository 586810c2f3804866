"""kmtool.elf.lines, the DWARF line table, on the real built kernel against two independent
oracles: LLVM's decoder (`llvm-dwarfdump --debug-line`, every row of every unit) and binutils'
(`addr2line`, every byte of the kernel's code)."""

from __future__ import annotations

import posixpath
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import require, unavailable

from kmtool.build.driver import BuildPaths
from kmtool.elf.kernel import KernelElf, read_kernel

_UNIT = re.compile(r"^debug_line\[0x[0-9a-f]+\]$", re.M)
_DIR = re.compile(r'^include_directories\[\s*(\d+)\] = "(.*)"$', re.M)
_FILE = re.compile(r'^file_names\[\s*(\d+)\]:\n\s+name: "(.*)"\n\s+dir_index: (\d+)$', re.M)
_ROW = re.compile(r"^0x([0-9a-f]{16}) +(\d+) +(\d+) +(\d+) +\d+ +\d+ *(.*)$", re.M)


@pytest.fixture(scope="module")
def kernel(fresh_build: BuildPaths) -> KernelElf:
    return read_kernel(fresh_build.kernel)


def _dwarfdump() -> str:
    for name in ("llvm-dwarfdump-14", "llvm-dwarfdump"):
        if shutil.which(name):
            return name
    unavailable("required tool missing: llvm-dwarfdump")


def _llvm_ranges(path: Path) -> list[tuple[int, int, str, int, int]]:
    """(start, end, file, line, column) from llvm-dwarfdump's rows, by the rule the module
    documents: a row reaches the next row's address, the last row at an address stands for it, an
    end_sequence row closes its sequence, and a sequence at address 0 is discarded code."""
    out = subprocess.run(
        [_dwarfdump(), "--debug-line", str(path)], capture_output=True, text=True, check=True
    ).stdout
    ranges = []
    for unit in _UNIT.split(out)[1:]:
        dirs = {int(n): d for n, d in _DIR.findall(unit)}
        assert unit.count("version: 5") == 1  # DWARF 5: files and directories count from 0
        files = {
            int(n): posixpath.normpath(posixpath.join(dirs[int(d)], name))
            for n, name, d in _FILE.findall(unit)
        }
        sequence: list[tuple[int, int, int, int]] = []
        for address, line, column, file, flags in _ROW.findall(unit):
            sequence.append((int(address, 16), int(line), int(column), int(file)))
            if "end_sequence" not in flags:
                continue
            if sequence[0][0] != 0:
                for (start, ln, col, f), after in zip(sequence, sequence[1:], strict=False):
                    if after[0] > start:
                        ranges.append((start, after[0], files[f], ln, col))
            sequence = []
    return sorted(ranges)


def test_the_line_table_matches_llvm_dwarfdump(fresh_build: BuildPaths, kernel: KernelElf) -> None:
    expected = _llvm_ranges(fresh_build.kernel)
    got = [
        (r.start, r.end, r.source.file, r.source.line, r.source.column) for r in kernel.lines.rows
    ]
    assert len(got) > 1000
    assert got == expected
    assert {"kernel/main.c", "kernel/arch/x86_64/entry.S"} <= {r[2] for r in got}


def test_every_code_byte_agrees_with_addr2line(fresh_build: BuildPaths, kernel: KernelElf) -> None:
    """addr2line writes `FILE:?` for line 0 and, between functions, names the file symbol's file
    with `?`; kmtool gives line 0 and None there."""
    require("addr2line")
    code = [a for s in kernel.segments if s.executable for a in range(s.vaddr, s.vaddr + s.memsz)]
    out = subprocess.run(
        ["addr2line", "-e", str(fresh_build.kernel), *(f"{a:#x}" for a in code)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(out) == len(code) > 10000
    lines = 0
    for address, text in zip(code, out, strict=True):
        file, _, line = text.split(" (discriminator")[0].rpartition(":")
        mine = kernel.source_line(address)
        if mine is None:
            assert line in ("?", "0"), (hex(address), text)
        elif line == "?":
            assert (mine.line, mine.file) == (0, posixpath.normpath(file)), (hex(address), text)
        else:
            assert (mine.file, mine.line) == (posixpath.normpath(file), int(line)), hex(address)
            lines += 1
    assert lines > len(code) // 2


def test_a_return_address_is_looked_up_one_byte_earlier(kernel: KernelElf) -> None:
    row = next(r for r in kernel.lines.rows if r.source.line and r.end - r.start > 1)
    after = next(r for r in kernel.lines.rows if r.start == row.end)
    assert kernel.source_line(row.end) == after.source
    assert kernel.source_line(row.end, return_address=True) == row.source
    assert str(row.source) == f"{row.source.file}:{row.source.line}"


def test_an_elf_without_dwarf_has_an_empty_line_table(
    fresh_build: BuildPaths, tmp_path: Path
) -> None:
    require("objcopy")
    bare = tmp_path / "nodebug.elf"
    subprocess.run(["objcopy", "--strip-debug", str(fresh_build.kernel), str(bare)], check=True)
    elf = read_kernel(bare)
    assert elf.has_symtab and len(elf.lines) == 0
    assert elf.source_line(elf.entry) is None
    assert elf.function_at(elf.entry) is not None
