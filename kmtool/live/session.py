"""A live session on disk: its files, reading and checking the session file, writing it, ending it.

    paths = SessionPaths.of(Path("build/live/session.json"))   # .ram, .qmp, .stderr beside it
    session = read_session(paths.session)                       # LiveError: one sentence
    end_session(session)                                         # QEMU gone, files removed

The file's format is kmtool/schemas/livesession.py. A session is *stale* when its QEMU is gone (no
process with that pid, or one that is not the QEMU of this session) or its QMP socket is; reading
a stale, missing or malformed session file is a LiveError naming the file and what is wrong, never
a traceback (docs/design.md §12). `end_session` also clears up after a stale session.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmtool.errors import KmtoolError
from kmtool.schemas.livesession import (
    LIVE_FORMAT_NAME,
    LIVE_FORMAT_VERSION,
    RANGE_KEYS,
    SESSION_KEYS,
    LiveSessionDoc,
)

LIVE_DIR = "live"  # BUILD_DIR/live/ holds the default session
SESSION_FILE = "session.json"
MAX_SESSION_BYTES = 1 << 20  # a session file is a few hundred bytes
QUIT_SECONDS = 10.0  # how long `end_session` waits for QEMU to go after asking it to quit


class LiveError(KmtoolError):
    """A live session that cannot be used: missing, malformed or stale."""


@dataclass(frozen=True)
class SessionPaths:
    """The files of one session, all named after the session file: FILE.json beside FILE.ram (the
    guest's RAM), FILE.qmp (QEMU's monitor socket) and FILE.stderr (QEMU's stderr)."""

    session: Path
    ram: Path
    qmp: Path
    stderr: Path

    @classmethod
    def of(cls, session: Path) -> SessionPaths:
        session = session.absolute()
        return cls(session, session.with_suffix(".ram"), session.with_suffix(".qmp"),
                   session.with_suffix(".stderr"))  # fmt: skip


def default_session(build_dir: Path) -> Path:
    """BUILD_DIR/live/session.json."""
    return build_dir / LIVE_DIR / SESSION_FILE


@dataclass(frozen=True)
class Session:
    """A session file that was read and checked; `doc` is the file as written."""

    path: Path
    doc: LiveSessionDoc

    @property
    def pid(self) -> int:
        return self.doc["pid"]

    @property
    def qmp(self) -> Path:
        return Path(self.doc["qmp"])

    @property
    def ram(self) -> Path:
        return Path(self.doc["ram"])

    @property
    def kernel(self) -> Path | None:
        return None if self.doc["kernel"] is None else Path(self.doc["kernel"])

    @property
    def ranges(self) -> list[tuple[int, int, int]]:
        """(guest_physical, file_offset, size) of each RAM range."""
        return [(r["guest_physical"], r["file_offset"], r["size"]) for r in self.doc["ram_ranges"]]


def read_session(path: Path, require_live: bool = True) -> Session:
    """The checked session file at `path`; LiveError when it is missing, not a session file, or
    (with `require_live`) stale."""
    if not path.is_file():
        what = "a directory" if path.is_dir() else "missing"
        raise LiveError(
            f"The live session file `{path}` is {what}; start a session with `kmtool run --live`."
        )
    try:
        if path.stat().st_size > MAX_SESSION_BYTES:
            raise ValueError(f"it is larger than {MAX_SESSION_BYTES} bytes")
        doc = json.loads(path.read_bytes())
        _check_document(doc)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        why = err.strerror if isinstance(err, OSError) else str(err)
        raise LiveError(f"`{path}` is not a kmtool live session file: {why}.") from None
    session = Session(path, doc)
    if require_live:
        stale = why_stale(session)
        if stale is not None:
            raise LiveError(
                f"The live session `{path}` is stale: {stale}; remove it with "
                f"`kmtool run --stop {path}`."
            )
    return session


def _check_document(doc: Any) -> None:
    """ValueError naming the first key of `doc` that is not what LiveSessionDoc says."""
    if not isinstance(doc, dict):
        raise ValueError("it holds no JSON object")
    if doc.get("format") != LIVE_FORMAT_NAME or doc.get("version") != LIVE_FORMAT_VERSION:
        raise ValueError(
            f"format {doc.get('format')!r} version {doc.get('version')!r}, not "
            f"{LIVE_FORMAT_NAME!r} version {LIVE_FORMAT_VERSION}"
        )
    missing = [key for key in SESSION_KEYS if key not in doc]
    if missing:
        raise ValueError(f"the key `{missing[0]}` is missing")
    for key in ("pid", "ram_bytes"):
        if not _natural(doc[key]):
            raise ValueError(f"`{key}` is {doc[key]!r}, not a positive integer")
    for key in ("qmp", "ram", "build_dir"):
        if not isinstance(doc[key], str) or not doc[key]:
            raise ValueError(f"`{key}` is {doc[key]!r}, not a path")
    for key in ("gdb", "kernel"):
        if doc[key] is not None and not isinstance(doc[key], str):
            raise ValueError(f"`{key}` is {doc[key]!r}, neither a string nor null")
    ranges = doc["ram_ranges"]
    if not isinstance(ranges, list) or not ranges:
        raise ValueError("`ram_ranges` is not a non-empty list")
    for row in ranges:
        if not isinstance(row, dict) or not all(
            _natural(row.get(k)) or (k != "size" and row.get(k) == 0) for k in RANGE_KEYS
        ):
            raise ValueError(f"the RAM range {row!r} is not {{{', '.join(RANGE_KEYS)}}} integers")
    if sum(r["size"] for r in ranges) != doc["ram_bytes"]:
        raise ValueError(f"its RAM ranges do not add up to `ram_bytes` {doc['ram_bytes']}")


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def why_stale(session: Session) -> str | None:
    """Why `session` cannot be reached (its QEMU or its socket is gone), or None when it can."""
    if not _is_its_qemu(session):
        return f"no QEMU of this session runs as pid {session.pid}"
    if not session.qmp.is_socket():
        return f"its QMP socket `{session.qmp}` is gone"
    if not session.ram.is_file():
        return f"its RAM file `{session.ram}` is gone"
    return None


def _is_its_qemu(session: Session) -> bool:
    """True when process `pid` exists and its command line names this session's QMP socket (a pid
    reused by another process is not this session's QEMU)."""
    try:
        argv = Path(f"/proc/{session.pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(session.qmp).replace(",", ",,").encode() in argv  # escaped as cmdline.escape does


def write_session(paths: SessionPaths, doc: LiveSessionDoc) -> None:
    """Write the session file atomically (a reader never sees half of it)."""
    partial = paths.session.with_name(paths.session.name + ".partial")
    partial.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, paths.session)


def end_session(path: Path) -> str:
    """Stop the session's QEMU (QMP `quit`, then SIGTERM) and remove its RAM file, socket and
    session file; a stale session is cleared up too. Returns one sentence saying what was done."""
    session = read_session(path, require_live=False)
    paths = SessionPaths.of(path)
    running = _is_its_qemu(session)
    if running:
        _stop_qemu(session)
    for file in (session.ram, session.qmp, paths.stderr, paths.ram, paths.qmp, path):
        with contextlib.suppress(FileNotFoundError):
            file.unlink()
    done = f"stopped QEMU (pid {session.pid})" if running else "QEMU had already gone"
    return f"Live session `{path}` ended: {done}; its RAM file and session file are removed."


def _stop_qemu(session: Session) -> None:
    """Ask QEMU to quit over QMP; SIGTERM, then SIGKILL, when it is still there after a while."""
    from kmtool.errors import RunError
    from kmtool.qemu.qmp import Monitor

    with contextlib.suppress(RunError):
        with Monitor(session.qmp, connect_seconds=2.0) as monitor:
            monitor.quit()
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(session.pid, sig)
        deadline = time.monotonic() + QUIT_SECONDS / 2
        while time.monotonic() < deadline:
            if not _is_its_qemu(session):
                return
            time.sleep(0.05)
