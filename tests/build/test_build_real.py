"""Build the repository's own kernel and loader (whatever is in the tree) and check the outputs.

Builds go to temporary directories, never to the repository's build/.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, require
from oracles import readelf_program_headers

from kmtool.build import checks, driver
from kmtool.schemas import pe
from kmtool.dump.kernel_elf import load_kernel_symbols
from kmtool.image import assemble
from kmtool.layout import table


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kernel_is_a_higher_half_executable(fresh_build: driver.BuildPaths) -> None:
    require("readelf")
    entry, loads = readelf_program_headers(fresh_build.kernel)
    region = table.region("kernel-image")
    assert loads, "no PT_LOAD segments"
    assert region.start <= entry <= region.end and table.pml4_index(entry) == 510
    for vaddr, memsz, _ in loads:
        assert region.start <= vaddr and vaddr + memsz - 1 <= region.end, hex(vaddr)
    symbols = subprocess.run(
        ["readelf", "-sW", str(fresh_build.kernel)], capture_output=True, text=True, check=True
    ).stdout
    start = next(line.split() for line in symbols.splitlines() if line.endswith(" _start"))
    assert int(start[1], 16) == entry
    checks.check_kernel(fresh_build.kernel)


def test_kernel_build_id_note_is_loaded_between_its_symbols(fresh_build: driver.BuildPaths) -> None:
    """ld.lld --build-id=sha1: a 20-byte NT_GNU_BUILD_ID note in the read-only segment, bracketed
    by the symbols the kernel copies it through, and the id kmtool inspect reads from the ELF."""
    require("readelf")

    def readelf(*args: str) -> str:
        return subprocess.run(["readelf", *args, str(fresh_build.kernel)], capture_output=True, text=True,
                              check=True).stdout  # fmt: skip

    build_id = re.search(r"Build ID: ([0-9a-f]+)", readelf("-nW"))
    assert build_id is not None and len(build_id.group(1)) == 40
    section = re.search(r"\.note\.gnu\.build-id\s+NOTE\s+([0-9a-f]+) [0-9a-f]+ ([0-9a-f]+)",
                        readelf("-SW"))  # fmt: skip
    assert section is not None
    address, size = int(section.group(1), 16), int(section.group(2), 16)
    assert size == 12 + 4 + 20  # note header, "GNU\0", SHA-1
    symbols = {fields[-1]: int(fields[1], 16) for fields in map(str.split, readelf("-sW").splitlines())
               if fields and fields[-1].startswith("__build_id_note_")}  # fmt: skip
    assert symbols == {"__build_id_note_start": address, "__build_id_note_end": address + size}
    _, loads = readelf_program_headers(fresh_build.kernel)
    assert [flags for vaddr, memsz, flags in loads
            if vaddr <= address and address + size <= vaddr + memsz] == ["R"]  # fmt: skip
    assert load_kernel_symbols(fresh_build.kernel).build_id == bytes.fromhex(build_id.group(1))


def test_loader_is_an_efi_application(fresh_build: driver.BuildPaths) -> None:
    info = checks.check_loader(fresh_build.loader)
    assert (info.machine, info.magic, info.subsystem) == (
        pe.IMAGE_FILE_MACHINE_AMD64,
        pe.PE32_PLUS_MAGIC,
        pe.IMAGE_SUBSYSTEM_EFI_APPLICATION,
    )


def test_image_verifies_and_lists_both_files(fresh_build: driver.BuildPaths) -> None:
    require("sgdisk", "mdir")
    verify = subprocess.run(
        ["sgdisk", "-v", str(fresh_build.image)], capture_output=True, text=True
    )
    assert verify.returncode == 0 and "No problems found." in verify.stdout
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1", MTOOLSRC=os.devnull)
    esp = f"{fresh_build.image}@@{1 << 20}"
    root = subprocess.run(["mdir", "-i", esp, "-b", "-/", "::"], env=env, capture_output=True,
                          text=True, check=True).stdout.split()  # fmt: skip
    assert sorted(root) == ["::/EFI/", "::/EFI/BOOT/", "::/EFI/BOOT/BOOTX64.EFI", "::/kernel.elf"]


def test_image_content_equals_the_build_outputs(
    fresh_build: driver.BuildPaths, tmp_path: Path
) -> None:
    """The image is exactly what build_image makes of the two outputs."""
    again = assemble.build_image(
        tmp_path / "again.img",
        {"EFI/BOOT/BOOTX64.EFI": fresh_build.loader, "kernel.elf": fresh_build.kernel},
    )
    assert _sha256(again.path) == _sha256(fresh_build.image)


def test_two_clean_builds_give_the_same_image(
    fresh_build: driver.BuildPaths, tmp_path: Path
) -> None:
    other = driver.build(REPO, tmp_path / "other").paths
    assert _sha256(other.kernel) == _sha256(fresh_build.kernel)
    assert _sha256(other.loader) == _sha256(fresh_build.loader)
    assert _sha256(other.image) == _sha256(fresh_build.image)
