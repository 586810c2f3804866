"""The kernel ELF (`--kernel`): where the kernel's own state lives, by virtual address, and its
GNU build id (the note ld.lld writes with --build-id; the kernel copies its first 16 bytes into
km_core_info.build_id, so a dump can be matched with the ELF it came from)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kmtool.errors import DumpError

#: Symbols of record (CONTEXT: core-info and the mm state structs are C globals with these names).
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
    build id (the NT_GNU_BUILD_ID note's bytes; None when the ELF has no such note)."""

    path: Path
    symbols: dict[str, int]
    link_base: int
    build_id: bytes | None = None

    def address(self, name: str) -> int | None:
        return self.symbols.get(name)


def load_kernel_symbols(path: Path) -> KernelSymbols:
    """Read the symbol table and the GNU build-id note of the kernel ELF at `path`."""
    from elftools.common.exceptions import ELFError
    from elftools.construct import ConstructError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import NoteSection, SymbolTableSection

    wanted = {CORE_INFO_SYMBOL, *STATE_SYMBOLS.values()}
    found: dict[str, int] = {}
    build_id: bytes | None = None
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            if elf["e_machine"] != "EM_X86_64":
                raise DumpError(f"Kernel `{path}` is a {elf['e_machine']} ELF, not x86-64.")
            loads = [s["p_vaddr"] for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
            for section in elf.iter_sections():
                if isinstance(section, SymbolTableSection):
                    for sym in section.iter_symbols():
                        if sym.name in wanted and sym["st_shndx"] != "SHN_UNDEF":
                            found[sym.name] = sym["st_value"]
                elif isinstance(section, NoteSection) and build_id is None:
                    for note in section.iter_notes():
                        if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                            build_id = bytes.fromhex(note["n_desc"])
    except DumpError:
        raise
    except OSError as err:
        raise DumpError(f"Cannot read kernel `{path}`: {err.strerror}.") from None
    except (ELFError, ConstructError, ValueError) as err:
        raise DumpError(f"Kernel `{path}` is not a readable ELF file: {err}.") from None
    if CORE_INFO_SYMBOL not in found:
        raise DumpError(f"Kernel `{path}` has no `{CORE_INFO_SYMBOL}` symbol (stripped?).")
    return KernelSymbols(path, found, min(loads) if loads else 0, build_id)
