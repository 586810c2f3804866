"""The live session file: written and read back, and every bad one refused in one sentence (a
missing, garbage, wrong-format or incomplete file; a stale session whose QEMU or socket is gone),
through the module and through the commands that read it (`inspect --live`, `diff live:`,
`run --stop`). No QEMU: a stale session is one whose pid is not its QEMU."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import run_kmtool

from kmtool.live.session import (
    LiveError,
    SessionPaths,
    end_session,
    read_session,
    why_stale,
    write_session,
)
from kmtool.schemas.livesession import SESSION_KEYS, session_document

GiB = 1 << 30


def _doc(paths: SessionPaths, pid: int) -> Any:
    return session_document(
        pid=pid, qmp=str(paths.qmp), ram=str(paths.ram),
        ranges=[(4 * GiB, 2 * GiB, 2 * GiB), (0, 0, 2 * GiB)],
        gdb=None, kernel=None, build_dir=str(paths.session.parent),
    )  # fmt: skip


def _gone_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.fixture
def stale(tmp_path: Path) -> SessionPaths:
    """A well-formed session whose QEMU is gone; its RAM file and socket are still there."""
    paths = SessionPaths.of(tmp_path / "live" / "session.json")
    paths.session.parent.mkdir()
    paths.ram.write_bytes(b"")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(paths.qmp))
    server.close()
    write_session(paths, _doc(paths, _gone_pid()))
    return paths


def test_the_document_has_exactly_the_agreed_keys(stale: SessionPaths) -> None:
    doc = json.loads(stale.session.read_text())
    assert tuple(doc) == SESSION_KEYS
    assert doc["format"] == "kmtool-live-session" and doc["version"] == 1
    assert doc["ram_bytes"] == 4 * GiB
    assert doc["ram_ranges"] == [  # sorted by guest-physical address
        {"guest_physical": 0, "file_offset": 0, "size": 2 * GiB},
        {"guest_physical": 4 * GiB, "file_offset": 2 * GiB, "size": 2 * GiB},
    ]
    assert read_session(stale.session, require_live=False).ranges[1] == (4 * GiB, 2 * GiB, 2 * GiB)


def test_a_session_whose_qemu_is_gone_is_stale(stale: SessionPaths) -> None:
    session = read_session(stale.session, require_live=False)
    assert why_stale(session) == f"no QEMU of this session runs as pid {session.pid}"
    with pytest.raises(LiveError, match=r"is stale: no QEMU of this session runs as pid \d+; "
                       r"remove it with `kmtool run --stop "):  # fmt: skip
        read_session(stale.session)


def test_a_reused_pid_is_not_the_sessions_qemu(stale: SessionPaths) -> None:
    import os

    write_session(stale, _doc(stale, os.getpid()))  # alive, but not a QEMU with this socket
    assert "no QEMU of this session" in str(why_stale(read_session(stale.session, False)))


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "Expecting value"),
        (b"\x00\xffgarbage", "not a kmtool live session file"),
        (b"[1, 2]", "it holds no JSON object"),
        (b'{"format": "kmtool-raw-physical", "version": 1}', "format 'kmtool-raw-physical'"),
        (b'{"format": "kmtool-live-session", "version": 1}', "the key `pid` is missing"),
    ],
)
def test_a_file_that_is_not_a_session_is_one_sentence(
    tmp_path: Path, content: bytes, why: str
) -> None:
    path = tmp_path / "session.json"
    path.write_bytes(content)
    with pytest.raises(LiveError, match=f"^`{path}` is not a kmtool live session file: ") as err:
        read_session(path)
    assert why in str(err.value) and str(err.value).endswith(".")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"pid": "12"}, "`pid` is '12', not a positive integer"),
        ({"ram_bytes": 1}, "do not add up to `ram_bytes` 1"),
        ({"ram_ranges": [{"guest_physical": 0, "size": 1}]}, "is not {guest_physical, file_offset"),
        ({"qmp": None}, "`qmp` is None, not a path"),
        ({"gdb": 1234}, "`gdb` is 1234, neither a string nor null"),
    ],
)
def test_a_session_with_a_bad_key_names_it(
    stale: SessionPaths, change: dict[str, Any], why: str
) -> None:
    doc = {**json.loads(stale.session.read_text()), **change}
    stale.session.write_text(json.dumps(doc))
    with pytest.raises(LiveError, match="is not a kmtool live session file") as err:
        read_session(stale.session)
    assert why in str(err.value)


def test_ending_a_stale_session_removes_its_files(stale: SessionPaths) -> None:
    said = end_session(stale.session)
    assert said.endswith("QEMU had already gone; its RAM file and session file are removed.")
    assert not any(p.exists() for p in (stale.session, stale.ram, stale.qmp))


def test_the_commands_answer_a_bad_session_in_one_line(stale: SessionPaths, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    missing = tmp_path / "missing.json"
    for args, says in [
        (("inspect", "--live", str(missing)), f"The live session file `{missing}` is missing"),
        (("inspect", "--live", str(garbage)), "is not a kmtool live session file"),
        (("inspect", "--live", str(stale.session)), "is stale: no QEMU of this session runs"),
        (("diff", f"live:{stale.session}", str(garbage)), "is stale"),
        (("run", "--stop", str(garbage)), "is not a kmtool live session file"),
        (("run", "--session", str(missing)), "use it with `--live` or `--stop`"),
    ]:
        done = run_kmtool(*args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and "Traceback" not in done.stderr, args
    done = run_kmtool("run", "--stop", str(stale.session))
    assert done.returncode == 0 and "QEMU had already gone" in done.stdout
    assert not stale.session.exists() and not stale.ram.exists()
