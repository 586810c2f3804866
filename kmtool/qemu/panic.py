"""The kernel's panic report, read from the serial output and symbolized with the kernel ELF.

What the kernel prints (kernel/lib/panic.c `panic`, kernel/arch/x86_64/trap.c `fault_report`):

    panic: page fault at 0x... (kernel-vspace), not-present read, supervisor mode, rip 0x...
      vector   14 (#PF page fault)                      a trap: the CPU's exception ...
      rip      0xffffffff80012345 (kernel-image)        ... and the faulting instruction
      caller   0xffffffff80012345                       panic(): the return address into its caller
      ...
      backtrace 0xffffffff80012400 0xffffffff80010000   return addresses, innermost first

`rip` is the trap's rip, or for a panic() call the caller line. Symbols come from the ELF's symbol
table (kmtool.elf.kernel, the one reader of the kernel ELF): the function symbol containing the
address (or, for a symbol of unknown size, the nearest one below it) plus the offset. A return
address is looked up one byte earlier, so a call that is the last instruction of its function is
charged to that function.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmtool.elf.kernel import FunctionIndex, KernelElf, build_ids_match, read_kernel
from kmtool.errors import KernelElfError
from kmtool.units import hexaddr

_FIELD = re.compile(r"^  (rip|caller)\s+0x([0-9a-f]+)\b")
_BACKTRACE = re.compile(r"^  backtrace((?: 0x[0-9a-f]+)*)\s*$")
_BUILD_ID = re.compile(r"kmtool kernel \(build id ((?:[0-9a-f]{2})+)\)")


@dataclass(frozen=True)
class Frame:
    """One code address and where it falls: `symbol` + `offset`, or None when no symbol does; and
    its source line (`kernel/main.c:73`) from the DWARF line table, when that knows it."""

    address: int
    symbol: str | None = None
    offset: int | None = None
    line: str | None = None

    def __str__(self) -> str:
        where = f" {self.symbol}+{self.offset:#x}" if self.symbol is not None else ""
        source = f" ({self.line})" if self.line else ""
        return f"{hexaddr(self.address)}{where}{source}"

    def to_json(self) -> dict[str, Any]:
        return {
            "address": f"{self.address:#x}",
            "symbol": self.symbol,
            "offset": self.offset,
            "line": self.line,
        }


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


def frame_at(functions: FunctionIndex, address: int, return_address: bool = False) -> Frame:
    """`address` with the function symbol it falls in (kmtool.elf.kernel.FunctionIndex.lookup)."""
    found = functions.lookup(address, return_address)
    return Frame(address) if found is None else Frame(address, *found)


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
    elf = None if kernel is None else _matching_kernel(kernel, lines)
    if elf is None:
        return PanicReport(
            message, None if rip is None else Frame(rip), [Frame(a) for a in backtrace]
        )
    return PanicReport(
        message,
        None if rip is None else _located(elf, rip, rip_returns),
        [_located(elf, address, True) for address in backtrace],
        kernel,
    )


def _located(elf: KernelElf, address: int, return_address: bool) -> Frame:
    """`frame_at` plus the source line (a line table that cannot be read costs only the line)."""
    frame = frame_at(elf.functions, address, return_address)
    try:
        line = elf.source_line(address, return_address=return_address)
    except KernelElfError:
        line = None
    if line is None or not line.line:
        return frame
    return Frame(frame.address, frame.symbol, frame.offset, str(line))


def _matching_kernel(kernel: Path, lines: list[str]) -> KernelElf | None:
    """The kernel ELF at `kernel`, or None when it is unreadable (that only costs the symbols) or
    its build id differs from the one the booted kernel printed in `lines` (a stale ELF would name
    wrong functions)."""
    try:
        elf = read_kernel(kernel)
    except KernelElfError:
        return None
    printed = next((m.group(1) for line in lines if (m := _BUILD_ID.search(line))), None)
    if printed and elf.build_id and not build_ids_match(bytes.fromhex(printed), elf.build_id):
        return None
    return elf
