"""The live session file: what `kmtool run --live` writes so other commands find the guest.

    BUILD/live/session.json   {"format": "kmtool-live-session", "version": 1, "pid": QEMU's pid,
                               "qmp": socket path, "ram": RAM file path, "ram_bytes": ...,
                               "ram_ranges": [...], "gdb": "127.0.0.1:PORT" or null,
                               "kernel": ELF path or null, "build_dir": path}

The file is written by the live work (`kmtool run --live`); this module reads only the keys
`kmtool gdb` needs (pid, gdb, kernel, build_dir) and checks each one, so a stale, truncated or
foreign file is one sentence naming the file and the key, never a traceback. The file is small:
reading stops at `MAX_SESSION_BYTES`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from kmtool.errors import KmtoolError

SESSION_FORMAT = "kmtool-live-session"
SESSION_VERSION = 1
SESSION_DIR = "live"  # under the build directory
SESSION_FILE = "session.json"
MAX_SESSION_BYTES = 1 << 20


class StaleSessionError(KmtoolError):
    """The session file names a QEMU that is no longer running."""


@dataclass(frozen=True)
class GdbAddress:
    """Where QEMU's gdb stub listens: `host:port`."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Session:
    """The keys of a live session that `kmtool gdb` uses."""

    path: Path
    pid: int
    gdb: GdbAddress | None  # None: the guest was started without --gdb
    kernel: Path | None
    build_dir: Path | None


def default_session_path(build_dir: Path) -> Path:
    """BUILD/live/session.json: where `kmtool run --live` writes the session of that build."""
    return build_dir / SESSION_DIR / SESSION_FILE


def read_session(path: Path) -> Session:
    """The session in `path`; KmtoolError when it is missing, unreadable, not a session file of
    this version, or names a QEMU that is no longer running."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SESSION_BYTES + 1)
    except FileNotFoundError:
        raise KmtoolError(
            f"No live session at `{path}`: start the guest with `kmtool run --live --gdb`."
        ) from None
    except OSError as err:
        raise KmtoolError(f"Cannot read the live session `{path}`: {err.strerror}.") from None
    if len(raw) > MAX_SESSION_BYTES:
        raise KmtoolError(f"`{path}` is larger than {MAX_SESSION_BYTES} bytes: not a live session.")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise KmtoolError(f"`{path}` is not JSON ({err}): not a live session.") from None
    if not isinstance(doc, dict) or doc.get("format") != SESSION_FORMAT:
        raise KmtoolError(f'`{path}` has no `format` "{SESSION_FORMAT}": not a live session.')
    if doc.get("version") != SESSION_VERSION:
        raise KmtoolError(
            f"`{path}` is a live session of version {doc.get('version')!r}; this kmtool reads "
            f"version {SESSION_VERSION}."
        )
    session = Session(
        path=path,
        pid=_pid(path, doc.get("pid")),
        gdb=None if doc.get("gdb") is None else parse_gdb_address(doc["gdb"], f"`{path}` key gdb"),
        kernel=_optional_path(path, doc, "kernel"),
        build_dir=_optional_path(path, doc, "build_dir"),
    )
    if not _running(session.pid):
        raise StaleSessionError(
            f"The live session `{path}` names QEMU pid {session.pid}, which is no longer running: "
            "start the guest again with `kmtool run --live --gdb`."
        )
    return session


def parse_gdb_address(value: object, what: str) -> GdbAddress:
    """`HOST:PORT` as a GdbAddress; KmtoolError naming `what` and the value when it is not one."""
    if not isinstance(value, str) or value.count(":") != 1:
        raise KmtoolError(f"{what} is {value!r}, not HOST:PORT.")
    host, port_text = value.split(":")
    if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise KmtoolError(f"{what} is {value!r}: the port must be a number from 1 to 65535.")
    return GdbAddress(host, int(port_text))


def _pid(path: Path, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise KmtoolError(f"`{path}` key pid is {value!r}, not a process id.")
    return value


def _optional_path(path: Path, doc: dict[str, object], key: str) -> Path | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise KmtoolError(f"`{path}` key {key} is {value!r}, not a path.")
    return Path(value)


def _running(pid: int) -> bool:
    """Whether a process `pid` exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OverflowError:
        return False
    return True
