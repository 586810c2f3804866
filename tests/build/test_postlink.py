"""Post-link checks of kernel.elf and BOOTX64.EFI, against readelf and objdump as oracles."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import require
from fixture_tree import make_tree
from oracles import readelf_program_headers

from kmtool.build import checks, driver
from kmtool.schemas import pe
from kmtool.errors import BuildError
from kmtool.layout import table
from kmtool.layout.kernel_checks import load_kernel


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> driver.BuildPaths:
    require("clang", "ld.lld", "lld-link", "mformat", "mmd", "mcopy")
    root = make_tree(tmp_path_factory.mktemp("postlink"))
    return driver.build(root).paths


def test_kernel_entry_and_segments_match_readelf(built: driver.BuildPaths) -> None:
    require("readelf")
    entry, loads = readelf_program_headers(built.kernel)
    image = load_kernel(built.kernel)
    assert image.entry == entry
    assert [(s.vaddr, s.memsz) for s in image.segments] == [(v, m) for v, m, _ in loads]
    assert [s.flags_text.replace("X", "E").replace("-", "") for s in image.segments] == [
        f for _, _, f in loads
    ]
    region = table.region("kernel-image")
    assert entry == table.KERNEL_LINK_BASE  # _start is first in .text at the link base
    assert table.pml4_index(entry) == 510
    for vaddr, memsz, _ in loads:
        assert region.start <= vaddr and vaddr + memsz - 1 <= region.end
    checks.check_kernel(built.kernel)  # passes


def test_kernel_type_is_exec(built: driver.BuildPaths) -> None:
    require("readelf")
    out = subprocess.run(
        ["readelf", "-hW", str(built.kernel)], capture_output=True, text=True, check=True
    ).stdout
    assert re.search(r"Type:\s+EXEC", out)
    assert re.search(r"Machine:\s+Advanced Micro Devices X86-64", out)
    assert re.search(r"Class:\s+ELF64", out)


def test_check_kernel_rejects_non_elf_and_relocatable(
    built: driver.BuildPaths, tmp_path: Path
) -> None:
    bogus = tmp_path / "kernel.elf"
    bogus.write_bytes(b"not an elf at all")
    with pytest.raises(BuildError, match=r"is not an ELF file"):
        checks.check_kernel(bogus, "k.elf")
    obj = built.build_dir / "obj/kernel/main.c.o"
    with pytest.raises(BuildError) as err:
        checks.check_kernel(obj, "main.o")
    assert "type ET_REL, not ET_EXEC" in str(err.value)
    assert str(err.value).startswith("The kernel `main.o` fails the post-link checks:")


def test_loader_headers_match_objdump(built: driver.BuildPaths) -> None:
    require("objdump")
    info = checks.check_loader(built.loader)
    assert info.machine == pe.IMAGE_FILE_MACHINE_AMD64
    assert info.magic == pe.PE32_PLUS_MAGIC
    assert info.subsystem == pe.IMAGE_SUBSYSTEM_EFI_APPLICATION
    out = subprocess.run(
        ["objdump", "-p", str(built.loader)], capture_output=True, text=True, check=True
    ).stdout
    assert "file format pei-x86-64" in out
    assert re.search(r"Magic\s+020b\s+\(PE32\+\)", out)
    assert re.search(r"Subsystem\s+0000000a\s+\(EFI application\)", out)
    assert int(re.search(r"AddressOfEntryPoint\s+([0-9a-f]+)", out).group(1), 16) == (  # type: ignore[union-attr]
        info.entry_rva
    )
    assert int(re.search(r"ImageBase\s+([0-9a-f]+)", out).group(1), 16) == info.image_base  # type: ignore[union-attr]


def _patched(src: Path, dst: Path, field: str, fmt: str, value: int) -> Path:
    """A copy of PE `src` with one optional-header or COFF field overwritten."""
    data = bytearray(src.read_bytes())
    lfanew = struct.unpack_from("<I", data, 0x3C)[0]
    coff = lfanew + 4
    opt = coff + pe.CoffFileHeader.sizeof()
    offsets = {"Machine": coff + 0, "Subsystem": opt + 68, "Magic": opt + 0}
    struct.pack_into(fmt, data, offsets[field], value)
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("Subsystem", 11, "subsystem 11, not EFI application (10)"),
        ("Machine", 0x14C, "machine 0x014c, not x86-64 (0x8664)"),
        ("Magic", 0x10B, "optional-header magic 0x10b, not PE32+ (0x20b)"),
    ],
)
def test_check_loader_rejects_wrong_headers(
    built: driver.BuildPaths, tmp_path: Path, field: str, value: int, message: str
) -> None:
    bad = _patched(built.loader, tmp_path / "bad.efi", field, "<H", value)
    with pytest.raises(BuildError) as err:
        checks.check_loader(bad, "BOOTX64.EFI")
    assert str(err.value) == f"The loader `BOOTX64.EFI` is unusable: {message}."


def test_check_loader_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "x.efi"
    bad.write_bytes(b"\x7fELF" + bytes(100))
    with pytest.raises(BuildError, match=r"^The loader `x.efi` is not a PE32\+ image"):
        checks.check_loader(bad, "x.efi")


def test_checks_module_exit_status(built: driver.BuildPaths, tmp_path: Path) -> None:
    assert checks.main(["kernel", str(built.kernel)]) == 0
    assert checks.main(["loader", str(built.loader)]) == 0
    assert checks.main(["loader", str(built.kernel), "--name", "k"]) == 1
