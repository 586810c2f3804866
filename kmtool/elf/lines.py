"""The DWARF line table of the kernel ELF: code address -> source file and line.

`read_line_table(path, build_id)` runs every compilation unit's line program (pyelftools) once
and keeps one sorted list of address ranges; `LineTable.lookup(address)` is then a bisection.
Callers normally reach it through `KernelElf.source_line`, which reads it on first use only.

How the rows become ranges: a line program emits rows in sequences, each ending with an
`end_sequence` row one past its last byte. A row covers the addresses from its own up to the next
row's; when several rows share an address the last one stands for it (as llvm-symbolizer and
addr2line read it). A sequence at address 0 is code the linker discarded and is left out. File
names are joined to their include directory and normalized, so with the build's
`-ffile-prefix-map=ROOT=.` they read `kernel/main.c`, relative to the repository root. Line 0 (code
the compiler attributes to no line) is kept as it is.
"""

from __future__ import annotations

import bisect
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kmtool.errors import KernelElfError

T = TypeVar("T")


@dataclass(frozen=True)
class SourceLine:
    """Where an instruction came from: `kernel/main.c:73`."""

    file: str
    line: int
    column: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class LineRow:
    """One range of the table: the bytes [start, end) come from `source`."""

    start: int
    end: int
    source: SourceLine


class LineTable:
    """Address ranges sorted by start, each with its source line (see the module docstring)."""

    def __init__(self, rows: list[LineRow]) -> None:
        self.rows = sorted(rows, key=lambda row: row.start)
        self._starts = [row.start for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def lookup(self, address: int) -> SourceLine | None:
        """The source line of the byte at `address`, or None outside every range."""
        at = bisect.bisect_right(self._starts, address) - 1
        if at >= 0 and address < self.rows[at].end:
            return self.rows[at].source
        return None


def read_line_table(path: Path, build_id: bytes | None) -> LineTable:
    """The line table of the ELF at `path`, which must still have the build id `build_id` it had
    when it was first read; an ELF without DWARF gives an empty table. Raises KernelElfError."""
    return _with_dwarf(path, build_id, lambda dwarf: LineTable(_rows(dwarf)))


def _with_dwarf(path: Path, build_id: bytes | None, use: Callable[[Any], T]) -> T | LineTable:
    """`use(dwarf)` on the DWARF of the ELF at `path` (read whole into memory), after checking it
    still has `build_id`; an empty LineTable without DWARF. The one error policy of the module:
    every failure is a KernelElfError naming the file."""
    import io

    from elftools.elf.elffile import ELFFile

    from kmtool.elf.kernel import note_build_id

    try:
        elf = ELFFile(io.BytesIO(path.read_bytes()))
        now = note_build_id(elf)
        if now != build_id:
            raise KernelElfError(
                f"The kernel ELF `{path}` changed after kmtool read it (build id "
                f"{_hex(build_id)}, now {_hex(now)}); read it again."
            )
        if not elf.has_dwarf_info():
            return LineTable([])
        return use(elf.get_dwarf_info())
    except KernelElfError:
        raise
    except OSError as err:
        raise KernelElfError(f"The kernel ELF `{path}` cannot be read: {err.strerror}.") from None
    except Exception as err:  # pyelftools raises DWARFError, ELFError, construct and struct errors
        raise KernelElfError(
            f"The DWARF line table of the kernel ELF `{path}` is malformed (pyelftools: {err})."
        ) from None


class UnitLines:
    """The line table read one compilation unit at a time, for lookups: `lookup(address)` decodes
    only the units whose address range holds `address` (the CU's DW_AT_low_pc/high_pc; a unit
    with another form of range is decoded when the index is made), each once. Symbolizing a
    backtrace then costs the few units it touches instead of all of them (BENCHMARKS.md, Fault).
    The ELF's bytes are held in memory (the kernel is a few hundred KiB), so no file stays open."""

    def __init__(self, dwarf: Any) -> None:
        self._dwarf = dwarf
        self._units: list[tuple[int, int, Any]] = []  # (low, high, unit) with a plain range
        self._tables: dict[int, LineTable] = {}  # unit offset -> its decoded rows
        eager: list[LineRow] = []
        for unit in dwarf.iter_CUs():
            span = _unit_range(unit)
            if span is None:
                eager += _unit_rows(dwarf, unit)
            else:
                self._units.append((span[0], span[1], unit))
        self._eager = LineTable(eager)

    def lookup(self, address: int) -> SourceLine | None:
        for low, high, unit in self._units:
            if low <= address < high:
                table = self._tables.get(unit.cu_offset)
                if table is None:
                    table = self._tables[unit.cu_offset] = LineTable(_unit_rows(self._dwarf, unit))
                found = table.lookup(address)
                if found is not None:
                    return found
        return self._eager.lookup(address)


def _unit_range(unit: Any) -> tuple[int, int] | None:
    """[low, high) of a unit whose top DIE gives DW_AT_low_pc and DW_AT_high_pc, else None."""
    attrs = unit.get_top_DIE().attributes
    low, high = attrs.get("DW_AT_low_pc"), attrs.get("DW_AT_high_pc")
    if low is None or high is None or "DW_AT_ranges" in attrs:
        return None
    end = high.value if high.form == "DW_FORM_addr" else low.value + high.value  # DWARF 4+: length
    return int(low.value), int(end)


def read_unit_lines(path: Path, build_id: bytes | None) -> UnitLines | LineTable:
    """A `UnitLines` over the ELF at `path` (which must still have the build id `build_id`); an
    empty LineTable for an ELF without DWARF. Raises KernelElfError like `read_line_table`."""
    return _with_dwarf(path, build_id, UnitLines)


def _hex(build_id: bytes | None) -> str:
    return "none" if build_id is None else build_id.hex()


def _rows(dwarf: Any) -> list[LineRow]:
    """Every range of every compilation unit's line program."""
    rows: list[LineRow] = []
    for unit in dwarf.iter_CUs():
        rows += _unit_rows(dwarf, unit)
    return rows


def _unit_rows(dwarf: Any, unit: Any) -> list[LineRow]:
    """The ranges of one compilation unit's line program."""
    program = dwarf.line_program_for_CU(unit)
    if program is None:
        return []
    names = _file_names(program, unit)
    rows: list[LineRow] = []
    sequence: list[Any] = []
    for entry in program.get_entries():
        state = entry.state
        if state is None:
            continue
        sequence.append(state)
        if state.end_sequence:
            rows += _sequence_rows(sequence, names)
            sequence = []
    return rows


def _sequence_rows(states: list[Any], names: dict[int, str]) -> list[LineRow]:
    """The ranges of one sequence: each row up to the next one's address; empty ones dropped."""
    if states[0].address == 0:
        return []  # a function the linker discarded (its addresses were resolved to 0)
    rows = []
    for state, after in zip(states, states[1:], strict=False):
        if after.address > state.address:
            name = names.get(state.file, f"<file {state.file}>")
            source = SourceLine(name, state.line, state.column)
            rows.append(LineRow(state.address, after.address, source))
    return rows


def _file_names(program: Any, unit: Any) -> dict[int, str]:
    """File number (as the line program's rows use it) -> normalized path."""
    header = program.header
    version = header["version"]
    dirs = [_text(d) for d in header["include_directory"]]
    if version < 5:  # directory 0 is the unit's compilation directory; files count from 1
        top = unit.get_top_DIE().attributes.get("DW_AT_comp_dir")
        dirs = [_text(top.value) if top is not None else "", *dirs]
    first = 0 if version >= 5 else 1
    names = {}
    for number, entry in enumerate(header["file_entry"], start=first):
        directory = dirs[entry.dir_index] if entry.dir_index < len(dirs) else ""
        names[number] = posixpath.normpath(posixpath.join(directory, _text(entry.name)))
    return names


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
