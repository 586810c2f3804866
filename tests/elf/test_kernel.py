"""kmtool.elf.kernel, the one reader of the kernel ELF: the real built kernel against binutils'
readelf (an independent oracle), and the files it must refuse, each with its one sentence."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import require

from kmtool.build.driver import BuildPaths
from kmtool.elf import kernel as elf_kernel
from kmtool.elf.kernel import FunctionIndex, KernelElf, build_ids_match, read_kernel
from kmtool.errors import KernelElfError

E_MACHINE_OFFSET = 18  # Elf64_Ehdr.e_machine: after e_ident[16] and e_type
EM_AARCH64 = 183


def _readelf(*args: str) -> str:
    require("readelf")
    return subprocess.run(["readelf", *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def kernel(fresh_build: BuildPaths) -> KernelElf:
    return read_kernel(fresh_build.kernel)


def test_segments_match_readelf(fresh_build: BuildPaths, kernel: KernelElf) -> None:
    out = _readelf("-lW", str(fresh_build.kernel))
    entry = re.search(r"^Entry point (0x[0-9a-f]+)$", out, re.M)
    assert entry is not None and kernel.entry == int(entry.group(1), 16)
    headers = re.findall(r"^  (\w+)\s+(0x[0-9a-f]+) (0x[0-9a-f]+) 0x[0-9a-f]+ (0x[0-9a-f]+) "
                         r"(0x[0-9a-f]+) ([RWE ]{3})", out, re.M)  # fmt: skip
    expected = [  # readelf spells the flags `R E`; kmtool `R-X`
        (index, int(vaddr, 16), int(memsz, 16), int(filesz, 16), int(offset, 16),
         flags.replace("E", "X").replace(" ", "-"))
        for index, (kind, offset, vaddr, filesz, memsz, flags) in enumerate(headers)
        if kind == "LOAD"
    ]  # fmt: skip
    assert len(expected) >= 3
    got = [(s.index, s.vaddr, s.memsz, s.filesz, s.offset, s.flags_text) for s in kernel.segments]
    assert got == expected
    assert (kernel.elf_class, kernel.little_endian, kernel.machine, kernel.elf_type) == (
        64,
        True,
        "EM_X86_64",
        "ET_EXEC",
    )


def test_symbols_match_readelf(fresh_build: BuildPaths, kernel: KernelElf) -> None:
    out = _readelf("-sW", str(fresh_build.kernel))
    assert "Symbol table '.symtab'" in out and "'.dynsym'" not in out
    rows = re.findall(
        r"^\s+\d+: ([0-9a-f]{16})\s+(\d+) (\w+)\s+(\w+)\s+\w+\s+(\w+) (\S+)$", out, re.M
    )
    expected = [
        (name, int(value, 16), int(size), f"STT_{kind}", f"STB_{bind}")
        for value, size, kind, bind, ndx, name in rows
        if ndx != "UND"
    ]
    assert len(expected) > 100
    assert [(s.name, s.value, s.size, s.kind, s.bind) for s in kernel.symbols] == expected
    # by name: the first definition; a name that is not there is None, and required, an error
    for name, value, *_ in expected:
        if name in ("kmain", "_start", "km_core_info"):
            symbol = kernel.symbol(name)
            assert symbol is not None and symbol.value == value
    assert kernel.symbol("no_such_symbol") is None
    with pytest.raises(KernelElfError, match=r"`.*kernel\.elf` has no `no_such_symbol` symbol"):
        kernel.require_symbol("no_such_symbol")


def test_function_lookup_on_the_real_kernel(fresh_build: BuildPaths, kernel: KernelElf) -> None:
    out = _readelf("-sW", str(fresh_build.kernel))
    functions = [
        (name, int(value, 16), int(size))
        for value, size, name in re.findall(
            r"^\s+\d+: ([0-9a-f]{16})\s+(\d+) FUNC\s+\w+\s+\w+\s+\d+ (\S+)$", out, re.M
        )
    ]
    assert len(kernel.functions) == len(functions) > 20
    for name, start, size in functions:
        assert kernel.function_at(start) == (name, 0)
        assert kernel.function_at(start + size - 1) == (name, size - 1)
        # a return address right after the function's last byte is still charged to it
        assert kernel.function_at(start + size, return_address=True) == (name, size)
    assert kernel.function_at(0x1000) is None


def test_build_id_matches_readelf(fresh_build: BuildPaths, kernel: KernelElf) -> None:
    found = re.search(r"Build ID: ([0-9a-f]+)", _readelf("-nW", str(fresh_build.kernel)))
    assert found is not None and kernel.build_id == bytes.fromhex(found.group(1))
    assert kernel.build_id is not None and len(kernel.build_id) == 20  # --build-id=sha1


def test_build_ids_match_is_the_kernels_copying_rule() -> None:
    elf_id = bytes(range(1, 21))
    assert build_ids_match(elf_id[:16], elf_id)  # the 16 bytes the kernel keeps
    assert build_ids_match(elf_id, elf_id)
    assert not build_ids_match(elf_id[1:17], elf_id)
    assert not build_ids_match(bytes(16), elf_id)  # a kernel that recorded nothing
    assert build_ids_match(bytes([7, 8]) + bytes(14), bytes([7, 8]))  # a short id, zero-padded
    assert not build_ids_match(bytes([7, 8]) + bytes([1]) + bytes(13), bytes([7, 8]))


def test_function_index_of_unsized_symbols_reaches_the_next_function() -> None:
    index = FunctionIndex([(0x2000, 0, "asm_label"), (0x1000, 0x10, "c_function")])
    assert index.lookup(0x1008) == ("c_function", 8)
    assert index.lookup(0x1010) is None  # past c_function's size, below asm_label
    assert index.lookup(0x2345) == ("asm_label", 0x345)
    assert index.lookup(0x0FFF) is None


def test_the_line_table_is_not_read_until_asked(
    fresh_build: BuildPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kmtool.elf import lines

    def refuse(path: Path, build_id: bytes | None) -> lines.LineTable:
        raise AssertionError("the line table was read")

    monkeypatch.setattr(lines, "read_line_table", refuse)
    monkeypatch.setattr(lines, "read_unit_lines", refuse)  # source_line's reader, unit by unit
    elf = read_kernel(fresh_build.kernel)
    kmain = elf.require_symbol("kmain")
    assert elf.function_at(kmain.value + 1) == ("kmain", 1) and elf.build_id is not None
    with pytest.raises(AssertionError, match="the line table was read"):
        elf.source_line(kmain.value)


# --- files the reader refuses ----------------------------------------------------------------


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KernelElfError, match=r"^The kernel ELF `.*none\.elf` does not exist\.$"):
        read_kernel(tmp_path / "none.elf")


def test_a_file_that_is_not_an_elf(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an ELF\n")
    with pytest.raises(KernelElfError) as err:
        read_kernel(text)
    assert str(err.value) == (
        f"The kernel ELF `{text}` is not an ELF file: it begins with 6e 6f 74 20, "
        "not the ELF magic 7f 45 4c 46."
    )
    empty = tmp_path / "empty.elf"
    empty.write_bytes(b"")
    with pytest.raises(KernelElfError, match=r"`.*empty\.elf` is not an ELF file: it begins with "
                       r"nothing, not the ELF magic"):  # fmt: skip
        read_kernel(empty)


def test_a_kernel_for_another_machine(fresh_build: BuildPaths, tmp_path: Path) -> None:
    other = tmp_path / "aarch64.elf"
    data = bytearray(fresh_build.kernel.read_bytes())
    data[E_MACHINE_OFFSET : E_MACHINE_OFFSET + 2] = struct.pack("<H", EM_AARCH64)
    other.write_bytes(data)
    with pytest.raises(KernelElfError) as err:
        read_kernel(other)
    assert str(err.value) == (
        f"The kernel ELF `{other}` is an ELF64 file for EM_AARCH64, not an ELF64 file for "
        "x86-64 (EM_X86_64)."
    )
    assert read_kernel(other, any_machine=True).machine == "EM_AARCH64"  # for kernel-format


@pytest.mark.parametrize("keep", [64 + 10, 1 << 16])
def test_a_truncated_kernel(fresh_build: BuildPaths, tmp_path: Path, keep: int) -> None:
    cut = tmp_path / "cut.elf"
    cut.write_bytes(fresh_build.kernel.read_bytes()[:keep])
    with pytest.raises(KernelElfError, match=r"^The kernel ELF `.*cut\.elf` is truncated or "
                       r"malformed \(pyelftools: .*\)\.$"):  # fmt: skip
        read_kernel(cut)


def test_a_stripped_kernel_has_no_symbols(fresh_build: BuildPaths, tmp_path: Path) -> None:
    require("objcopy")
    stripped = tmp_path / "stripped.elf"
    subprocess.run(["objcopy", "--strip-all", str(fresh_build.kernel), str(stripped)], check=True)
    elf = read_kernel(stripped)
    assert not elf.has_symtab and elf.symbols == () and len(elf.functions) == 0
    assert elf.function_at(elf.entry) is None
    assert elf.build_id == read_kernel(fresh_build.kernel).build_id  # the note is loaded data
    assert elf.source_line(elf.entry) is None  # no DWARF either: an empty line table
    with pytest.raises(KernelElfError) as err:
        elf.require_symbol("km_core_info")
    assert str(err.value) == f"The kernel ELF `{stripped}` has no symbol table (stripped?)."


def test_a_kernel_rewritten_after_it_was_read(fresh_build: BuildPaths, tmp_path: Path) -> None:
    copy = tmp_path / "kernel.elf"
    shutil.copy(fresh_build.kernel, copy)
    elf = read_kernel(copy)
    assert elf.build_id is not None
    data = bytearray(copy.read_bytes())
    at = data.find(elf.build_id)
    data[at] ^= 0xFF
    copy.write_bytes(data)
    with pytest.raises(KernelElfError, match=r"`.*kernel\.elf` changed after kmtool read it"):
        elf.source_line(elf.entry)


def test_no_kmtool_package_but_errors_is_imported() -> None:
    source = Path(elf_kernel.__file__).parent
    imports = {
        m
        for f in source.glob("*.py")
        for m in re.findall(r"^\s*(?:from|import) (kmtool\.\w+)", f.read_text(), re.M)
    }
    assert imports <= {"kmtool.errors", "kmtool.elf"}, imports
