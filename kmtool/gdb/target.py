"""What `kmtool gdb` attaches to, decided and checked before gdb starts.

The stub's address: `--port` when given, else the session's `gdb` key, else QEMU's default
(GDB_HOST:GDB_PORT, what `kmtool run --gdb` uses). The kernel ELF: `--kernel`, else the session's
`kernel` key, else BUILD/kernel.elf. The session: the SESSION argument (which must exist and name
a running QEMU), else BUILD/live/session.json when that names a running QEMU, else none: the gdb
works without one, only the `km` commands need it (they read the guest's RAM file).

Each bad input is one sentence naming the thing: a session that is missing, stale or foreign, a
session without a gdb stub, a kernel ELF that is missing or not an x86-64 ELF, or one without an
executable segment to guard with hardware breakpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kmtool.artifacts import KERNEL_ELF
from kmtool.errors import KmtoolError
from kmtool.live.session import Session, default_session, read_session, why_stale
from kmtool.qemu.cmdline import GDB_HOST, GDB_PORT

PROBE_BYTES = 16  # bytes of each executable segment compared to tell "the kernel is mapped"


@dataclass(frozen=True)
class GdbAddress:
    """Where QEMU's gdb stub listens: `host:port`."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_gdb_address(value: str, what: str) -> GdbAddress:
    """`HOST:PORT` as a GdbAddress; KmtoolError naming `what` and the value when it is not one."""
    host, colon, port_text = value.rpartition(":")
    if not colon or not host:
        raise KmtoolError(f"{what} is {value!r}, not HOST:PORT.")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise KmtoolError(f"{what} is {value!r}: the port must be a number from 1 to 65535.")
    return GdbAddress(host, int(port_text))


@dataclass(frozen=True)
class TextRegion:
    """One executable PT_LOAD segment of the kernel: [start, end) and its first file bytes."""

    start: int
    end: int  # exclusive
    probe: bytes  # the segment's first bytes as the file holds them (what a mapped kernel reads)


@dataclass(frozen=True)
class Target:
    """Everything the gdbinit is generated from."""

    address: GdbAddress
    kernel: Path
    text: tuple[TextRegion, ...]
    session: Session | None
    note: str | None = None  # one line for the user (a stale default session ignored)


def resolve(
    session_path: Path | None, port: int | None, kernel: Path | None, build_dir: Path
) -> Target:
    """The target of `kmtool gdb [SESSION] [--port] [--kernel]`; KmtoolError on bad input."""
    session, note = _session(session_path, build_dir)
    stub = None
    if session is not None and session.doc["gdb"] is not None:
        stub = parse_gdb_address(session.doc["gdb"], f"The `gdb` key of `{session.path}`")
    if port is not None:
        address = GdbAddress(stub.host if stub else GDB_HOST, port)
    elif session is not None:
        if stub is None:
            raise KmtoolError(
                f"The live session `{session.path}` has no gdb stub (its guest was started "
                "without `--gdb`): start it with `kmtool run --live --gdb`."
            )
        address = stub
    else:
        address = GdbAddress(GDB_HOST, GDB_PORT)
    if kernel is None:
        kernel = session.kernel if session and session.kernel else build_dir / KERNEL_ELF
    kernel = kernel.resolve()  # the gdbinit may be rerun from another directory
    return Target(address, kernel, text_regions(kernel), session, note)


def _session(path: Path | None, build_dir: Path) -> tuple[Session | None, str | None]:
    """The named session (LiveError unless it is live), else the default one when it is live."""
    if path is not None:
        return read_session(path.absolute()), None
    default = default_session(build_dir).absolute()
    if not default.exists():
        return None, None
    session = read_session(default, require_live=False)
    stale = why_stale(session)
    if stale is not None:  # a session left over from an earlier run; `run --gdb` needs none
        return None, f"Not using the live session `{default}`: {stale}."
    return session, None


def text_regions(kernel: Path) -> tuple[TextRegion, ...]:
    """The executable segments of the kernel ELF at `kernel`, each with its probe bytes."""
    from kmtool.elf.kernel import read_kernel

    elf = read_kernel(kernel)
    regions = []
    with kernel.open("rb") as stream:
        for seg in elf.segments:
            if not seg.executable or seg.memsz == 0:
                continue
            stream.seek(seg.offset)
            probe = stream.read(min(PROBE_BYTES, seg.filesz))
            regions.append(TextRegion(seg.vaddr, seg.vaddr + seg.memsz, probe))
    if not regions or not any(r.probe for r in regions):
        raise KmtoolError(
            f"The kernel ELF `{kernel}` has no executable segment with bytes in the file: "
            "nothing to set breakpoints in."
        )
    return tuple(regions)
