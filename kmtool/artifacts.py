"""Where the build's outputs are: one rule for the build directory, one name for each output.

The build directory is `build/` in the root of the source tree, the nearest directory at or above
the working directory that holds both `kernel/` and `efi/`. So every command finds the same one
from any directory of the repository: `kmtool build` writes there, and `kmtool run` and
`kmtool layout report` read from there. Outside any source tree (an image copied elsewhere) it is
`./build`, where those commands have always looked.

    BUILD/build.ninja    written by `kmtool build` (kmtool.build.ninjafile)
    BUILD/obj/...        the objects
    BUILD/kernel.elf     the kernel; on the ESP as /kernel.elf
    BUILD/BOOTX64.EFI    the UEFI loader; on the ESP as /EFI/BOOT/BOOTX64.EFI
    BUILD/kmtool.img     the GPT disk image `kmtool run` boots
    BUILD/serial.log     written by `kmtool run`: the guest's serial output
    BUILD/debugcon.log   written by `kmtool run`: what the guest wrote to port 0xe9

A leaf module: it imports nothing of kmtool but kmtool.errors.
"""

from __future__ import annotations

from pathlib import Path

from kmtool.errors import BuildError

BUILD_DIR_NAME = "build"
NINJA_FILE = "build.ninja"
KERNEL_ELF = "kernel.elf"
LOADER_EFI = "BOOTX64.EFI"
IMAGE = "kmtool.img"
SERIAL_LOG = "serial.log"
DEBUGCON_LOG = "debugcon.log"
EXCEPTIONS_LOG = "exceptions.log"  # the tail of QEMU's exception log after a triple fault

ESP_LOADER_PATH = "EFI/BOOT/BOOTX64.EFI"  # where UEFI looks for the default x86-64 boot loader
ESP_KERNEL_PATH = "kernel.elf"  # where the loader looks for the kernel (efi/main.c)


def source_root(start: Path) -> Path | None:
    """The nearest directory at or above `start` holding both `kernel/` and `efi/`, or None."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / "kernel").is_dir() and (candidate / "efi").is_dir():
            return candidate
    return None


def find_root(start: Path) -> Path:
    """`source_root(start)`, or BuildError when no source tree contains `start`."""
    root = source_root(start)
    if root is None:
        raise BuildError(
            f"No kmtool source tree (a directory with `kernel/` and `efi/`) contains "
            f"`{start.resolve()}`; run in the repository or pass `--root`."
        )
    return root


def build_dir(cwd: Path | None = None) -> Path:
    """The build directory for a command run in `cwd` (default: the working directory): the
    source tree's `build/`, spelled relative to `cwd` when it lies below it (so from the root it
    reads `build`), absolute otherwise; `build` (relative) outside any source tree."""
    here = Path.cwd() if cwd is None else cwd
    root = source_root(here)
    if root is None:
        return Path(BUILD_DIR_NAME)
    return shown(root / BUILD_DIR_NAME, here)


def shown(path: Path, cwd: Path | None = None) -> Path:
    """`path` relative to `cwd` (default: the working directory) when it lies below it, else as
    it is: how commands name their outputs to the user."""
    here = (Path.cwd() if cwd is None else cwd).resolve()
    try:
        return path.resolve().relative_to(here)
    except ValueError:
        return path
