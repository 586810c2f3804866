"""The kernel's panic report, read from the serial output and symbolized with the kernel ELF.

What the kernel prints (kernel/lib/panic.c `panic`, kernel/arch/x86_64/trap.c `fault_report`):

    panic: page fault at 0x... (kernel-vspace), not-present read, supervisor mode, rip 0x...
      vector   14 (#PF page fault)                      a trap: the CPU's exception ...
      rip      0xffffffff80012345 (kernel-image)        ... and the faulting instruction
      caller   0xffffffff80012345                       panic(): the return address into its caller
      ...
      backtrace 0xffffffff80012400 0xffffffff80010000   return addresses, innermost first

`rip` is the trap's rip, or for a panic() call the caller line. Symbols come from the ELF's symbol
table (pyelftools): the function symbol containing the address (or, for a symbol of unknown size,
the nearest one below it) plus the offset. A return address is looked up one byte earlier, so a
call that is the last instruction of its function is charged to that function.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_FIELD = re.compile(r"^  (rip|caller)\s+0x([0-9a-f]+)\b")
_BACKTRACE = re.compile(r"^  backtrace((?: 0x[0-9a-f]+)*)\s*$")
_BUILD_ID = re.compile(r"kmtool kernel \(build id ([0-9a-f]+)\)")


@dataclass(frozen=True)
class Frame:
    """One code address and where it falls: `symbol` + `offset`, or None when no symbol does."""

    address: int
    symbol: str | None = None
    offset: int | None = None

    def __str__(self) -> str:
        where = f" {self.symbol}+{self.offset:#x}" if self.symbol is not None else ""
        return f"{self.address:#018x}{where}"

    def to_json(self) -> dict[str, Any]:
        return {"address": f"{self.address:#x}", "symbol": self.symbol, "offset": self.offset}


@dataclass(frozen=True)
class PanicReport:
    """The first panic in a run's serial output."""

    message: str
    rip: Frame | None = None
    backtrace: list[Frame] = field(default_factory=list)
    kernel: Path | None = None  # the ELF the symbols came from; None = not symbolized

    def to_json(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "rip": None if self.rip is None else self.rip.to_json(),
            "backtrace": [frame.to_json() for frame in self.backtrace],
            "kernel": None if self.kernel is None else str(self.kernel),
        }

    def lines(self) -> list[str]:
        """The report for a terminal: the message, rip, then one line per frame."""
        out = [f"panic: {self.message}"]
        if self.rip is not None:
            out.append(f"  rip {self.rip}")
        out += [f"  #{n:<2} {frame}" for n, frame in enumerate(self.backtrace)]
        if self.kernel is None and (self.rip is not None or self.backtrace):
            out.append("  (no symbols: no kernel ELF matching the booted kernel)")
        return out


class FunctionSymbols:
    """The function symbols of an ELF, sorted by address, for address -> symbol + offset."""

    def __init__(self, symbols: list[tuple[int, int, str]]) -> None:
        self._symbols = sorted(symbols)
        self._starts = [start for start, _, _ in self._symbols]

    @classmethod
    def from_elf(cls, path: Path) -> tuple[FunctionSymbols, str | None]:
        """The STT_FUNC symbols of the ELF at `path` and its GNU build id as hex (None if none).
        Raises OSError or pyelftools' errors for an unreadable file."""
        from elftools.elf.elffile import ELFFile
        from elftools.elf.sections import NoteSection, SymbolTableSection

        found: list[tuple[int, int, str]] = []
        build_id = None
        with open(path, "rb") as f:
            for section in ELFFile(f).iter_sections():
                if isinstance(section, SymbolTableSection):
                    for sym in section.iter_symbols():
                        if sym["st_info"]["type"] == "STT_FUNC" and sym["st_value"] and sym.name:
                            found.append((sym["st_value"], sym["st_size"], sym.name))
                elif isinstance(section, NoteSection) and build_id is None:
                    for note in section.iter_notes():
                        if note["n_type"] == "NT_GNU_BUILD_ID":
                            build_id = str(note["n_desc"])
        return cls(found), build_id

    def lookup(self, address: int, return_address: bool = False) -> Frame:
        """`address` with the function symbol it falls in."""
        probe = address - 1 if return_address else address
        at = bisect.bisect_right(self._starts, probe) - 1
        if at >= 0:
            start, size, name = self._symbols[at]
            if size == 0 or probe < start + size:
                return Frame(address, name, address - start)
        return Frame(address)


def parse_panic(lines: list[str]) -> tuple[str, int | None, bool, list[int]] | None:
    """(message, rip or None, whether that rip is a return address (panic()'s caller), backtrace
    addresses) of the first `panic:` in `lines`, or None when there is none."""
    for index, line in enumerate(lines):
        if not line.startswith("panic:"):
            continue
        message = line[len("panic:") :].strip()
        rip: int | None = None
        caller: int | None = None
        backtrace: list[int] = []
        for detail in lines[index + 1 :]:
            if not detail.startswith("  "):
                break
            if match := _FIELD.match(detail):
                value = int(match.group(2), 16)
                if match.group(1) == "rip":
                    rip = value
                else:
                    caller = value
            elif match := _BACKTRACE.match(detail):
                backtrace = [int(word, 16) for word in match.group(1).split()]
        if rip is not None:
            return message, rip, False, backtrace
        return message, caller, caller is not None, backtrace
    return None


def panic_report(lines: list[str], kernel: Path | None) -> PanicReport | None:
    """The first panic in the serial `lines`, symbolized with `kernel` when that ELF is readable
    and its build id matches the one the kernel printed (a stale ELF would name wrong functions)."""
    parsed = parse_panic(lines)
    if parsed is None:
        return None
    message, rip, rip_returns, backtrace = parsed
    symbols = None
    if kernel is not None and kernel.is_file():
        try:
            symbols, build_id = FunctionSymbols.from_elf(kernel)
        except Exception:  # an unreadable ELF only costs the symbols  # noqa: BLE001
            symbols, build_id = None, None
        printed = next((m.group(1) for line in lines if (m := _BUILD_ID.search(line))), None)
        if printed and build_id and not build_id.startswith(printed):
            symbols = None
    if symbols is None:
        return PanicReport(
            message, None if rip is None else Frame(rip), [Frame(a) for a in backtrace]
        )
    return PanicReport(
        message,
        None if rip is None else symbols.lookup(rip, return_address=rip_returns),
        [symbols.lookup(address, return_address=True) for address in backtrace],
        kernel,
    )
