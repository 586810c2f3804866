"""The kernel ELF: segments, symbols, address -> function, build id (and, lazily, source lines).

    elf = read_kernel(Path("build/kernel.elf"))
    elf.segments                      the PT_LOAD program headers, numbered as readelf numbers them
    elf.symbol("km_core_info")        the first defined symbol of that name, or None
    elf.function_at(rip)              ("kmain", 0x1c8), or None outside every function
    elf.source_line(rip)              kernel/main.c:73 from the DWARF line table, or None
    build_ids_match(recorded, elf.build_id)

`read_kernel` opens the file once, copies out everything but the line table, and closes it; the
line table (kmtool.elf.lines) is read on the first `source_line` call, so callers that only need
symbols never pay for DWARF. Every failure is a `KernelElfError` naming the file and the fault: a
missing or unreadable file, no ELF magic, a truncated or malformed ELF, and (unless the caller asks
for any machine, as the layout checks do to report it themselves) an ELF that is not ELF64 x86-64.
A missing symbol table is not an error here: `has_symtab` is False and every lookup finds nothing;
`require_symbol` turns an absent symbol into the error.

The build id is the NT_GNU_BUILD_ID note that ld.lld writes with `--build-id=sha1`; the kernel
copies its first 16 bytes (zero-padded when shorter) into km_core_info.build_id and prints them in
its banner (docs/design.md §5), so `build_ids_match` is the one rule for "this ELF is that kernel".
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmtool.errors import KernelElfError

if TYPE_CHECKING:
    from kmtool.elf.lines import LineTable, SourceLine, UnitLines

EM_X86_64 = "EM_X86_64"
ELF_MAGIC = b"\x7fELF"
PF_X, PF_W, PF_R = 1, 2, 4


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD program header; `index` is its position in the program header table."""

    index: int
    vaddr: int
    memsz: int
    filesz: int
    offset: int
    flags: int

    @property
    def end(self) -> int:
        """The last byte of the segment in memory (inclusive)."""
        return self.vaddr + max(self.memsz, 1) - 1

    @property
    def flags_text(self) -> str:
        """`RWX` with `-` for each permission the segment lacks."""
        return "".join(
            c if self.flags & bit else "-" for c, bit in (("R", PF_R), ("W", PF_W), ("X", PF_X))
        )

    @property
    def writable(self) -> bool:
        return bool(self.flags & PF_W)

    @property
    def executable(self) -> bool:
        return bool(self.flags & PF_X)

    @property
    def name(self) -> str:
        """`program header 2`: the ELF program-header index, as readelf numbers it (from 0)."""
        return f"program header {self.index}"

    @property
    def label(self) -> str:
        """How a check describes this segment: `program header 2 (0x...-0x..., RW-)`."""
        return f"{self.name} ({self.vaddr:#018x}-{self.end:#018x}, {self.flags_text})"


@dataclass(frozen=True)
class Symbol:
    """One defined entry of .symtab (SHN_UNDEF entries are left out). `kind` and `bind` are
    pyelftools' names: `STT_FUNC`, `STT_OBJECT`, ...; `STB_GLOBAL`, `STB_LOCAL`, ..."""

    name: str
    value: int
    size: int
    kind: str
    bind: str


class FunctionIndex:
    """Function symbols sorted by address, for address -> (function, offset).

    An address belongs to the function whose [start, start + size) holds it; a function of
    unknown size (0, as for assembly labels without `.size`) reaches up to the next function.
    """

    def __init__(self, functions: Iterable[tuple[int, int, str]]) -> None:
        """`functions` are (start, size, name) triples in any order."""
        self._functions = sorted(functions)
        self._starts = [start for start, _, _ in self._functions]

    def __len__(self) -> int:
        return len(self._functions)

    def lookup(self, address: int, return_address: bool = False) -> tuple[str, int] | None:
        """(name, offset of `address` from its start), or None when no function holds it. A
        return address is looked up one byte earlier, so a call that ends its function is
        charged to that function, not to the next one; the offset is still from `address`."""
        probe = address - 1 if return_address else address
        at = bisect.bisect_right(self._starts, probe) - 1
        if at >= 0:
            start, size, name = self._functions[at]
            if size == 0 or probe < start + size:
                return name, address - start
        return None


@dataclass(frozen=True)
class KernelElf:
    """What kmtool knows of a kernel ELF, read by `read_kernel` (the file is closed again)."""

    path: Path
    elf_class: int  # 32 or 64
    little_endian: bool
    machine: str  # pyelftools' e_machine name: EM_X86_64, EM_386, ...
    elf_type: str  # ET_EXEC, ET_DYN, ...
    entry: int
    segments: tuple[Segment, ...]  # PT_LOAD only, in program-header order
    symbols: tuple[Symbol, ...]  # the defined .symtab entries, in table order
    has_symtab: bool
    build_id: bytes | None  # the NT_GNU_BUILD_ID note's bytes; None when there is no such note

    @cached_property
    def _by_name(self) -> dict[str, Symbol]:
        found: dict[str, Symbol] = {}
        for sym in self.symbols:
            found.setdefault(sym.name, sym)
        return found

    def symbol(self, name: str) -> Symbol | None:
        """The first defined symbol called `name` (table order), or None."""
        return self._by_name.get(name)

    def require_symbol(self, name: str) -> Symbol:
        """`symbol(name)`, or KernelElfError saying the file is stripped or lacks the symbol."""
        found = self.symbol(name)
        if found is not None:
            return found
        if not self.has_symtab:
            raise KernelElfError(f"The kernel ELF `{self.path}` has no symbol table (stripped?).")
        raise KernelElfError(f"The kernel ELF `{self.path}` has no `{name}` symbol (stripped?).")

    @cached_property
    def functions(self) -> FunctionIndex:
        """The named STT_FUNC symbols at a non-zero address."""
        return FunctionIndex(
            (s.value, s.size, s.name) for s in self.symbols if s.kind == "STT_FUNC" and s.value
        )

    def function_at(self, address: int, return_address: bool = False) -> tuple[str, int] | None:
        """(function, offset) holding `address` (see FunctionIndex.lookup), or None."""
        return self.functions.lookup(address, return_address)

    @cached_property
    def lines(self) -> LineTable:
        """The DWARF line table, read from the file on first use (KernelElfError when the file
        changed since `read_kernel` or its DWARF is malformed; empty without debug info)."""
        from kmtool.elf.lines import read_line_table

        return read_line_table(self.path, self.build_id)

    @cached_property
    def _unit_lines(self) -> UnitLines | LineTable:
        """The line table one unit at a time (kmtool.elf.lines.UnitLines), for `source_line`."""
        from kmtool.elf.lines import read_unit_lines

        return read_unit_lines(self.path, self.build_id)

    def describe(self, address: int, return_address: bool = False) -> str:
        """A code address in words: `kmain+0x1c8 (kernel/main.c:73)`, `kmain+0x1c8` when the line
        table does not know it (or cannot be read), the bare `0x...` outside every function."""
        found = self.function_at(address, return_address)
        if found is None:
            return f"{address:#x}"
        name, offset = found
        text = f"{name}+{offset:#x}" if offset else name
        try:
            line = self.source_line(address, return_address)
        except KernelElfError:
            line = None
        return f"{text} ({line})" if line is not None and line.line else text

    def source_line(self, address: int, return_address: bool = False) -> SourceLine | None:
        """The file and line of the instruction at `address` (one byte earlier for a return
        address), or None when the line table covers no such address. Reads only the units it
        needs (KernelElfError as for `lines`)."""
        return self._unit_lines.lookup(address - 1 if return_address else address)


def build_ids_match(recorded: bytes, elf_id: bytes) -> bool:
    """Whether `recorded` (the kernel's copy: the first bytes of its build id, zero-padded to
    their length when the id is shorter) is the start of the ELF's build id `elf_id`."""
    return elf_id[: len(recorded)].ljust(len(recorded), b"\0") == recorded


def read_kernel(path: Path, *, any_machine: bool = False) -> KernelElf:
    """Read the kernel ELF at `path`; KernelElfError when it is missing, unreadable, not an ELF,
    truncated or malformed, or (without `any_machine`) not an ELF64 x86-64 file."""
    if not path.is_file():
        raise KernelElfError(f"The kernel ELF `{path}` does not exist.")
    try:
        with path.open("rb") as stream:
            magic = stream.read(len(ELF_MAGIC))
            if magic != ELF_MAGIC:
                raise KernelElfError(
                    f"The kernel ELF `{path}` is not an ELF file: it begins with "
                    f"{magic.hex(' ') or 'nothing'}, not the ELF magic 7f 45 4c 46."
                )
            stream.seek(0)
            elf = _read(path, stream)
    except KernelElfError:
        raise
    except OSError as err:
        raise KernelElfError(f"The kernel ELF `{path}` cannot be read: {err.strerror}.") from None
    except Exception as err:  # pyelftools raises ELFError, construct, struct and value errors
        raise KernelElfError(
            f"The kernel ELF `{path}` is truncated or malformed (pyelftools: {err})."
        ) from None
    if not any_machine and (elf.elf_class != 64 or elf.machine != EM_X86_64):
        raise KernelElfError(
            f"The kernel ELF `{path}` is an ELF{elf.elf_class} file for {elf.machine}, "
            f"not an ELF64 file for x86-64 ({EM_X86_64})."
        )
    return elf


def _read(path: Path, stream: Any) -> KernelElf:
    """Everything but the line table, from the open file `stream` (pyelftools errors escape)."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    elf = ELFFile(stream)
    segments = tuple(
        Segment(index, s["p_vaddr"], s["p_memsz"], s["p_filesz"], s["p_offset"], s["p_flags"])
        for index, s in enumerate(elf.iter_segments())
        if s["p_type"] == "PT_LOAD"
    )
    symtab = elf.get_section_by_name(".symtab")
    symbols: tuple[Symbol, ...] = ()
    if isinstance(symtab, SymbolTableSection):
        symbols = tuple(
            Symbol(s.name, s["st_value"], s["st_size"], s["st_info"]["type"], s["st_info"]["bind"])
            for s in symtab.iter_symbols()
            if s.name and s["st_shndx"] != "SHN_UNDEF"
        )
    return KernelElf(
        path=path,
        elf_class=elf.elfclass,
        little_endian=elf.little_endian,
        machine=elf["e_machine"],
        elf_type=elf["e_type"],
        entry=elf["e_entry"],
        segments=segments,
        symbols=symbols,
        has_symtab=isinstance(symtab, SymbolTableSection),
        build_id=note_build_id(elf),
    )


def note_build_id(elf: Any) -> bytes | None:
    """The NT_GNU_BUILD_ID note's bytes of the open pyelftools ELFFile `elf` (the first such note
    of any note section), or None without one."""
    from elftools.elf.sections import NoteSection

    for section in elf.iter_sections():
        if isinstance(section, NoteSection):
            for note in section.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                    return bytes.fromhex(note["n_desc"])
    return None
