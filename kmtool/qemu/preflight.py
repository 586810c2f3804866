"""Checks made before booting, so a run that cannot succeed fails in a second with one sentence.

Each raises a `KmtoolError` (exit status 1) naming the thing at fault; none starts a process.
`check_run` makes them all in the order a user meets them: the image, the kernel command line,
the dump's directory, then QEMU itself.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from kmtool.errors import RunError, ToolError
from kmtool.schemas.bootinfo import CMDLINE_MAX
from kmtool.schemas.gpt import GPT_SIGNATURE, MBR_SIGNATURE, SECTOR_SIZE

CMDLINE_LIMIT = CMDLINE_MAX - 1  # bytes the loader keeps (the boot info's NUL-terminated field)


def check_run(image: Path, cmdline: str, appended_hold: bool, dump: Path | None, qemu: str) -> None:
    """Every check for one run: `cmdline` is what the kernel will get, `appended_hold` whether
    kmtool added the `hold` in it, `dump` the file asked for (None: no dump)."""
    check_image(image)
    check_cmdline(cmdline, appended_hold)
    if dump is not None:
        check_dump_target(dump)
    check_qemu(qemu)


def check_image(image: Path) -> None:
    """Raise RunError unless `image` is a directory (served as a FAT disk) or a file that looks
    like a disk: a GPT header at LBA 1 or at least an MBR boot signature. Anything else would only
    boot into the UEFI shell and wait for the time limit."""
    if not image.exists():
        raise RunError(f"The image `{image}` does not exist; run `kmtool build` first.")
    if image.is_dir():
        return
    try:
        with open(image, "rb") as f:
            head = f.read(2 * SECTOR_SIZE)
    except OSError as err:
        raise RunError(f"The image `{image}` cannot be read: {err.strerror or err}.") from err
    gpt_header = head[SECTOR_SIZE : SECTOR_SIZE + len(GPT_SIGNATURE)]  # LBA 1
    boot_signature = head[SECTOR_SIZE - 2 : SECTOR_SIZE]  # the last two bytes of sector 0
    if gpt_header != GPT_SIGNATURE and boot_signature != MBR_SIGNATURE.to_bytes(2, "little"):
        raise RunError(
            f"`{image}` is not a disk image (no GPT header at LBA 1 and no MBR boot signature "
            "0x55AA), so it would not boot; pass the image `kmtool build` writes or a directory."
        )


def check_cmdline(cmdline: str, appended_hold: bool = False) -> None:
    """Raise RunError when the kernel command line is longer than the loader keeps (it would be
    cut silently)."""
    size = len(cmdline.encode("utf-8"))
    if size > CMDLINE_LIMIT:
        held = " (with the `hold` that kmtool appends for --dump)" if appended_hold else ""
        raise RunError(
            f"The kernel command line is {size} bytes long{held}, over the loader's limit of "
            f"{CMDLINE_LIMIT} bytes."
        )


def check_dump_target(path: Path) -> None:
    """Raise RunError unless the dump's directory exists and a file can be created in it, so a
    run never boots only to fail at the dump."""
    directory = path.parent
    if not directory.is_dir():
        raise RunError(f"The directory `{directory}` for the dump `{path}` does not exist.")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise RunError(
            f"The dump `{path}` cannot be written: the directory `{directory}` is not writable "
            f"({err.strerror or err})."
        ) from err


def check_qemu(qemu: str) -> None:
    """Raise ToolError unless `qemu` is a program on PATH or an existing file."""
    if shutil.which(qemu) is None and not Path(qemu).is_file():
        raise ToolError(f"`{qemu}` was not found; install the Debian package `qemu-system-x86`.")
