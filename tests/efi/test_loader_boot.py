"""The UEFI loader booted under QEMU/OVMF with good and bad kernel files (issue 2 items 5 and 9).

One boot per case, through kmtool's own image builder and runner: a GPT image whose ESP holds
/EFI/BOOT/BOOTX64.EFI (compiled here from efi/*.c with the build's loader flags) and a
/kernel.elf made by `_kernel_elf()` (or none). The bad files differ from the good one only in
the field under test, and the good one boots to the pass outcome, so each failing case fails for
the reason it names.

The good kernel is 46 bytes of machine code: it reads the boot-info magic through %rdi (a
physical address, identity-mapped) and again through the offset map (rdi + OFFSET_MAP_BASE),
then writes EXIT_PASS to the debug-exit port -- or EXIT_FAIL when either read is wrong.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import REPO, require, unavailable

from kmtool.layout import table
from kmtool.qemu.outcome import qemu_status_for as qemu_status
from kmtool.schemas.bootinfo import BOOT_INFO_MAGIC

if TYPE_CHECKING:
    from kmtool.qemu.runner import RunResult

QEMU = "qemu-system-x86_64"
BOOT_TIMEOUT = 60


# ---- the kernel files ----

ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
PROGRAM_HEADER = struct.Struct("<IIQQQQQQ")
ET_EXEC, EM_X86_64, PT_LOAD, PF_X, PF_R = 2, 62, 1, 1, 4
SEGMENT_OFFSET = 0x1000  # the one PT_LOAD's bytes start here in the file
SEGMENT_FILESZ = 0x1000  # code, padded with hlt (0xf4)
SEGMENT_MEMSZ = 0x2000  # one page of "bss" after it


def _pass_code() -> bytes:
    magic = struct.pack("<Q", BOOT_INFO_MAGIC)
    offset_map = struct.pack("<Q", table.OFFSET_MAP_BASE)
    code = b"".join(
        [
            b"\x48\x8b\x07",  # mov (%rdi), %rax            magic, identity-mapped
            b"\x48\xba" + magic,  # movabs $MAGIC, %rdx
            b"\x48\x39\xd0",  # cmp %rdx, %rax
            b"\x75\x17",  # jne fail
            b"\x48\xb9" + offset_map,  # movabs $OFFSET_MAP_BASE, %rcx
            b"\x48\x8b\x04\x0f",  # mov (%rdi,%rcx), %rax       magic through the offset map
            b"\x48\x39\xd0",  # cmp %rdx, %rax
            b"\x75\x04",  # jne fail
            b"\xb0" + bytes([table.EXIT_PASS]),  # mov $EXIT_PASS, %al
            b"\xe6" + bytes([table.DEBUG_EXIT_PORT]),  # out %al, $DEBUG_EXIT_PORT
            b"\xb0" + bytes([table.EXIT_FAIL]),  # fail: mov $EXIT_FAIL, %al
            b"\xe6" + bytes([table.DEBUG_EXIT_PORT]),  # out %al, $DEBUG_EXIT_PORT
            b"\xf4",  # hlt
        ]
    )
    return code.ljust(SEGMENT_FILESZ, b"\xf4")


def _kernel_elf(vaddr: int = table.KERNEL_LINK_BASE) -> bytes:
    """A minimal ET_EXEC x86-64 kernel: one R+X PT_LOAD at `vaddr`, entry at its first byte."""
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)  # ELFCLASS64, little-endian, version 1
    header = ELF_HEADER.pack(
        ident, ET_EXEC, EM_X86_64, 1, vaddr, ELF_HEADER.size, 0, 0,
        ELF_HEADER.size, PROGRAM_HEADER.size, 1, 0, 0, 0,
    )  # fmt: skip
    segment = PROGRAM_HEADER.pack(
        PT_LOAD, PF_R | PF_X, SEGMENT_OFFSET, vaddr, vaddr, SEGMENT_FILESZ, SEGMENT_MEMSZ, 0x1000
    )
    return (header + segment).ljust(SEGMENT_OFFSET, b"\0") + _pass_code()


def _bad_magic() -> bytes:
    return b"MZ\x90\x00" + _kernel_elf()[4:]  # a PE file's first bytes


def _outside_region() -> bytes:
    return _kernel_elf(vaddr=0x400000)  # a typical user-space link address


def _truncated() -> bytes:
    return _kernel_elf()[: SEGMENT_OFFSET + SEGMENT_FILESZ // 2]


KERNEL_IMAGE = table.region("kernel-image")

# case -> (kernel.elf bytes or None for no file, expected QEMU status, expected serial line)
CASES = {
    "good": (
        _kernel_elf(),
        qemu_status(table.EXIT_PASS),
        f"kmtool loader: kernel.elf {SEGMENT_OFFSET + SEGMENT_FILESZ} bytes, 1 segments, "
        f"entry {table.KERNEL_LINK_BASE:#x}",
    ),
    "missing": (
        None,
        qemu_status(table.EXIT_FAIL),
        r"fatal: open \kernel.elf: EFI_NOT_FOUND",
    ),
    "bad-magic": (
        _bad_magic(),
        qemu_status(table.EXIT_FAIL),
        r"fatal: kernel.elf: e_ident magic is 0x00905a4d, expected 0x464c457f (\x7fELF): "
        "EFI_LOAD_ERROR",
    ),
    "outside-region": (
        _outside_region(),
        qemu_status(table.EXIT_FAIL),
        f"fatal: kernel.elf: PT_LOAD 0 p_vaddr 0x400000 + p_memsz {SEGMENT_MEMSZ:#x} is outside "
        f"the kernel-image region {KERNEL_IMAGE.start:#x}..{KERNEL_IMAGE.end:#x}: EFI_LOAD_ERROR",
    ),
    "truncated": (
        _truncated(),
        qemu_status(table.EXIT_FAIL),
        f"fatal: kernel.elf: PT_LOAD 0 p_offset {SEGMENT_OFFSET:#x} + p_filesz "
        f"{SEGMENT_FILESZ:#x} runs past the end of the file "
        f"({SEGMENT_OFFSET + SEGMENT_FILESZ // 2} bytes): EFI_LOAD_ERROR",
    ),
}


# ---- building and booting ----


@pytest.fixture(scope="module")
def loader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BOOTX64.EFI compiled from efi/*.c with the build's own loader flags (kmtool.build.flags);
    only the loader, so these tests do not depend on the kernel building."""
    require("clang", "lld-link")
    from kmtool import toolchain
    from kmtool.build import flags

    clang, lld_link = toolchain.require("clang"), toolchain.require("lld-link")
    out = tmp_path_factory.mktemp("loader")
    objects = []
    for source in sorted((REPO / "efi").glob("*.c")):
        obj = out / (source.stem + ".o")
        argv = [clang, *flags.loader_cflags(str(REPO), release=False), "-c", str(source)]
        _run([*argv, "-o", str(obj)])
        objects.append(str(obj))
    efi = out / "BOOTX64.EFI"
    _run([lld_link, *flags.loader_ldflags(), f"-out:{efi}", *objects])
    return efi


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, f"{argv[0]} failed:\n{done.stdout}{done.stderr}"


def _require_firmware() -> None:
    from kmtool.errors import ToolError
    from kmtool.qemu.firmware import find_ovmf

    try:
        find_ovmf()
    except ToolError as err:
        unavailable(str(err))


def _boot(kernel: bytes | None, loader: Path, work: Path) -> RunResult:
    """Build a GPT image with the loader (and `kernel` as /kernel.elf unless None) and run it."""
    require(QEMU, "mformat", "mmd", "mcopy")
    _require_firmware()
    from kmtool.image.assemble import build_image
    from kmtool.qemu.runner import RunOptions, run_image

    files: dict[str, bytes | Path] = {"EFI/BOOT/BOOTX64.EFI": loader}
    if kernel is not None:
        files["kernel.elf"] = kernel
    image = work / "disk.img"
    build_image(image, files)
    options = RunOptions(memory=256 * table.MiB, timeout=BOOT_TIMEOUT, build_dir=work)
    return run_image(image, options)


@pytest.mark.qemu
@pytest.mark.parametrize("case", CASES)
def test_loader_boot(case: str, loader: Path, tmp_path: Path) -> None:
    from kmtool.qemu.outcome import Outcome

    kernel, want_status, want_line = CASES[case]
    result = _boot(kernel, loader, tmp_path)

    lines = result.serial.splitlines()
    context = f"QEMU exit {result.qemu_status}; serial:\n{result.serial}\n{result.stderr}"
    assert want_line in lines, f"{want_line!r} is not a serial line. {context}"
    assert result.qemu_status == want_status, context
    assert result.outcome is (Outcome.PASS if case == "good" else Outcome.FAIL), context
    debugcon = result.debugcon_log.read_text("utf-8", "replace").splitlines()
    assert want_line in debugcon, f"{want_line!r} is missing from debugcon"
    if case == "good":
        assert not any(line.startswith("fatal:") for line in lines), context
        assert any(line.startswith("kmtool loader: jumping to ") for line in lines), context
    else:
        assert not any("jumping to" in line for line in lines), (
            f"a bad kernel was entered. {context}"
        )
