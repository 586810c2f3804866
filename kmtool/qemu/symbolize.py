"""A code address in words, from the kernel ELF: `kmain+0x1c8 (kernel/main.c:73)`.

For the run's own reports (where a hung CPU was spinning, where a triple fault began). An address
outside the kernel's functions, or a kernel that cannot be read, is just the hex address: the
image may not even be our kernel.
"""

from __future__ import annotations

from pathlib import Path

from kmtool.elf.kernel import KernelElf, read_kernel
from kmtool.errors import KernelElfError


def load(kernel: Path | None) -> KernelElf | None:
    """The kernel ELF at `kernel`, or None when there is none or it cannot be read."""
    if kernel is None or not kernel.is_file():
        return None
    try:
        return read_kernel(kernel)
    except KernelElfError:
        return None


def code_location(elf: KernelElf | None, address: int) -> str:
    """`function+0xoff (file:line)` (KernelElf.describe), or `0x...` without a kernel ELF."""
    return f"{address:#x}" if elf is None else elf.describe(address)
