"""The UEFI loader booted under QEMU/OVMF with good and bad kernel files (issue 2 items 5 and 9).

One boot per case; the ESP is a host directory served by QEMU's vvfat driver, holding
/EFI/BOOT/BOOTX64.EFI (built here from efi/*.c with the contract's flags) and a /kernel.elf made
by `_kernel_elf()`. The bad files differ from the good one only in the field under test, and the
good one boots to the pass outcome, so each failing case fails for the reason it names.

The good kernel is 43 bytes of machine code: it reads the boot-info magic through %rdi (a
physical address, identity-mapped) and again through the offset map (rdi + OFFSET_MAP_BASE),
then writes EXIT_PASS to the debug-exit port -- or EXIT_FAIL when either read is wrong.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, require

from kmtool.layout import table
from kmtool.schemas.bootinfo import BOOT_INFO_MAGIC

QEMU = "qemu-system-x86_64"
BOOT_TIMEOUT = 60
ANSI = re.compile(r"\x1b(?:\[[0-9;?=]*[ -/]*[@-~]|[@-Z\\-_])")

LOADER_CFLAGS = [
    "--target=x86_64-unknown-windows",
    "-ffreestanding",
    "-fshort-wchar",
    "-mno-red-zone",
    "-fno-stack-protector",
    "-std=c11",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Iinclude",
    "-Iefi",
]
LOADER_LDFLAGS = ["-subsystem:efi_application", "-entry:efi_main", "-nodefaultlib"]


def qemu_status(exit_value: int) -> int:
    """QEMU's exit status when the guest writes `exit_value` to isa-debug-exit."""
    return (exit_value << 1) | 1


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
    """BOOTX64.EFI compiled from efi/*.c with the contract's flags."""
    require("clang", "lld-link")
    out = tmp_path_factory.mktemp("loader")
    objects = []
    for source in sorted((REPO / "efi").glob("*.c")):
        obj = out / (source.stem + ".o")
        subprocess.run(
            ["clang", *LOADER_CFLAGS, "-c", str(source), "-o", str(obj)],
            cwd=REPO, check=True, capture_output=True, text=True,
        )  # fmt: skip
        objects.append(str(obj))
    efi = out / "BOOTX64.EFI"
    subprocess.run(
        ["lld-link", *LOADER_LDFLAGS, f"-out:{efi}", *objects],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return efi


def _boot(esp: Path, work: Path) -> tuple[int, str]:
    """Boot the directory `esp` as a FAT disk; returns QEMU's exit status and the serial text
    (QEMU's own stderr appended, so a failed start explains itself in the assertion)."""
    require(QEMU)
    from kmtool.qemu.firmware import find_ovmf

    code, vars_template = find_ovmf()
    vars_copy = work / "vars.fd"
    shutil.copyfile(vars_template, vars_copy)
    argv = [
        QEMU, "-M", "q35", "-cpu", "max", "-m", "256M", "-accel", "tcg",
        "-drive", f"if=pflash,format=raw,readonly=on,file={code}",
        "-drive", f"if=pflash,format=raw,file={vars_copy}",
        "-drive", f"format=raw,file=fat:rw:{esp}",  # q35 IDE disks cannot be read-only
        "-serial", "stdio", "-display", "none", "-no-reboot",
        "-device", f"isa-debug-exit,iobase={table.DEBUG_EXIT_PORT:#x},iosize=0x04",
        "-debugcon", f"file:{work / 'debugcon.log'}",
    ]  # fmt: skip
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=BOOT_TIMEOUT)
    serial = ANSI.sub("", done.stdout.decode("utf-8", "replace")).replace("\r", "")
    return done.returncode, serial + done.stderr.decode("utf-8", "replace")


@pytest.mark.qemu
@pytest.mark.parametrize("case", CASES)
def test_loader_boot(case: str, loader: Path, tmp_path: Path) -> None:
    kernel, want_status, want_line = CASES[case]
    esp = tmp_path / "esp"
    (esp / "EFI" / "BOOT").mkdir(parents=True)
    shutil.copyfile(loader, esp / "EFI" / "BOOT" / "BOOTX64.EFI")
    if kernel is not None:
        (esp / "kernel.elf").write_bytes(kernel)

    status, serial = _boot(esp, tmp_path)

    lines = serial.splitlines()
    assert want_line in lines, f"{want_line!r} not on serial:\n{serial}"
    assert status == want_status, f"QEMU exit {status}, wanted {want_status}:\n{serial}"
    debugcon = (tmp_path / "debugcon.log").read_text("utf-8", "replace").splitlines()
    assert want_line in debugcon, "the loader's line is missing from debugcon"
    if case == "good":
        assert not any(line.startswith("fatal:") for line in lines)
        assert any(line.startswith("kmtool loader: jumping to ") for line in lines)
    else:
        assert not any("jumping to" in line for line in lines), "a bad kernel was entered"
