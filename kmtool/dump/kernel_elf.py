"""The kernel ELF (`--kernel`) as `kmtool inspect` uses it: where the kernel's own state lives, by
virtual address, and its GNU build id (the kernel copies its first 16 bytes into
km_core_info.build_id, so a dump can be matched with the ELF it came from).

Reading the file is kmtool.elf.kernel's job; this module picks the symbols the dump decoders need
and requires `km_core_info`. Its errors are that reader's `KernelElfError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kmtool.elf.kernel import KernelElf, read_kernel

#: Symbols of record (docs/design.md §5: core-info and the mm state structs are C globals with
#: these names).
CORE_INFO_SYMBOL = "km_core_info"
STATE_SYMBOLS = {
    "frame_state_phys": "km_frames",
    "heap_state_phys": "km_heap",
    "page_state_phys": "km_page_stats",
    "fault_phys": "km_fault_record",
    "aspaces_phys": "km_aspaces",
}


@dataclass(frozen=True)
class KernelSymbols:
    """Virtual addresses of the kernel globals kmtool uses, the lowest PT_LOAD address, and the
    build id (the NT_GNU_BUILD_ID note's bytes; None when the ELF has no such note). `elf` is the
    whole ELF as read, for function and source-line lookups."""

    path: Path
    symbols: dict[str, int]
    link_base: int
    build_id: bytes | None = None
    elf: KernelElf | None = field(default=None, compare=False, repr=False)

    def address(self, name: str) -> int | None:
        return self.symbols.get(name)


def load_kernel_symbols(path: Path) -> KernelSymbols:
    """The kmtool symbols and the build id of the x86-64 kernel ELF at `path`; KernelElfError when
    it is not a readable x86-64 ELF or lacks `km_core_info`."""
    elf = read_kernel(path)
    elf.require_symbol(CORE_INFO_SYMBOL)
    found = {
        name: sym.value
        for name in (CORE_INFO_SYMBOL, *STATE_SYMBOLS.values())
        if (sym := elf.symbol(name)) is not None
    }
    link_base = min((s.vaddr for s in elf.segments), default=0)
    return KernelSymbols(path, found, link_base, elf.build_id, elf)
