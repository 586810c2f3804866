"""kmtool/gdb/target.py: what `kmtool gdb` attaches to, and every bad input as one sentence."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from elftools.elf.elffile import ELFFile

from kmtool.errors import KmtoolError
from kmtool.gdb.target import GdbAddress, parse_gdb_address, resolve, text_regions
from kmtool.qemu.cmdline import GDB_HOST, GDB_PORT

if TYPE_CHECKING:
    from kmtool.build.driver import BuildPaths


@pytest.fixture(scope="module")
def kernel_elf(fresh_build: BuildPaths) -> Path:
    """The kernel ELF of this tree (built once per test session)."""
    return fresh_build.kernel


def _session_doc(tmp: Path, **changes: object) -> dict[str, object]:
    """A session document as `kmtool run --live` writes it, naming this test's process as QEMU
    (the QMP socket path is on our own command line only if we put it there: see `_live`)."""
    doc: dict[str, object] = {
        "format": "kmtool-live-session", "version": 1, "pid": os.getpid(),
        "qmp": str(tmp / "session.qmp"), "ram": str(tmp / "session.ram"), "ram_bytes": 4096,
        "ram_ranges": [{"guest_physical": 0, "file_offset": 0, "size": 4096}],
        "gdb": "127.0.0.1:4321", "kernel": None, "build_dir": str(tmp),
    }  # fmt: skip
    doc.update(changes)
    return doc


def _write(tmp: Path, doc: dict[str, object]) -> Path:
    live = tmp / "live"
    live.mkdir(exist_ok=True)
    path = live / "session.json"
    path.write_text(json.dumps(doc))
    return path


def test_defaults_without_a_session(kernel_elf: Path, tmp_path: Path) -> None:
    target = resolve(None, None, kernel_elf, tmp_path)
    assert target.address == GdbAddress(GDB_HOST, GDB_PORT)
    assert target.session is None and target.note is None
    assert target.kernel == kernel_elf.resolve()


def test_text_regions_are_the_executable_segments_with_the_files_bytes(kernel_elf: Path) -> None:
    with kernel_elf.open("rb") as f:  # the oracle: pyelftools' own view of the program headers
        segs = [s for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD"]
        expected = [(s["p_vaddr"], s["p_vaddr"] + s["p_memsz"], s.data()[:16]) for s in segs
                    if s["p_flags"] & 1]  # fmt: skip
    regions = text_regions(kernel_elf)
    assert [(r.start, r.end, r.probe) for r in regions] == expected
    assert len(regions) >= 1 and all(len(r.probe) == 16 for r in regions)


def test_a_named_session_that_does_not_exist(kernel_elf: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(KmtoolError, match=r"The live session file `.*nope.json` is missing"):
        resolve(missing, None, kernel_elf, tmp_path)


def test_a_stale_named_session_is_an_error(kernel_elf: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, _session_doc(tmp_path))  # our pid, but no QEMU with that socket
    with pytest.raises(KmtoolError, match=r"is stale: no QEMU of this session runs as pid"):
        resolve(path, None, kernel_elf, tmp_path)


def test_a_stale_default_session_is_ignored_with_a_note(kernel_elf: Path, tmp_path: Path) -> None:
    _write(tmp_path, _session_doc(tmp_path))
    target = resolve(None, None, kernel_elf, tmp_path)
    assert target.session is None and target.address == GdbAddress(GDB_HOST, GDB_PORT)
    assert target.note is not None and target.note.startswith("Not using the live session `")


def test_a_foreign_file_as_session(kernel_elf: Path, tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"format": "something else"}')
    with pytest.raises(KmtoolError, match=r"is not a kmtool live session file: format"):
        resolve(path, None, kernel_elf, tmp_path)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("127.0.0.1", r"is '127.0.0.1', not HOST:PORT\."),
        (":1234", r"is ':1234', not HOST:PORT\."),
        ("127.0.0.1:0", r"is '127.0.0.1:0': the port must be a number from 1 to 65535\."),
        ("127.0.0.1:65536", r"is '127.0.0.1:65536': the port must be a number from 1 to 65535\."),
        ("127.0.0.1:http", r"is '127.0.0.1:http': the port must be a number from 1 to 65535\."),
    ],
)
def test_bad_stub_addresses(value: str, message: str) -> None:
    with pytest.raises(KmtoolError, match=r"^The key " + message + "$"):
        parse_gdb_address(value, "The key")


def test_stub_address() -> None:
    assert parse_gdb_address("127.0.0.1:4321", "x") == GdbAddress("127.0.0.1", 4321)
    assert str(GdbAddress("127.0.0.1", 4321)) == "127.0.0.1:4321"


def test_a_missing_kernel_elf(tmp_path: Path) -> None:
    with pytest.raises(KmtoolError, match=r"^The kernel ELF `.*kernel.elf` does not exist\.$"):
        resolve(None, None, None, tmp_path)  # BUILD/kernel.elf by default


def test_a_kernel_elf_that_is_not_an_elf(tmp_path: Path) -> None:
    bogus = tmp_path / "kernel.elf"
    bogus.write_bytes(b"MZ\x90\x00")
    with pytest.raises(KmtoolError, match=r"is not an ELF file: it begins with 4d 5a 90 00"):
        resolve(None, 1234, bogus, tmp_path)


@pytest.fixture
def live_doc(tmp_path: Path) -> Iterator[dict[str, object]]:
    """A session document that is not stale: a process whose command line names the QMP socket
    (as QEMU's does), the socket itself and the RAM file."""
    qmp = tmp_path / "session.qmp"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(qmp))
    (tmp_path / "session.ram").write_bytes(b"\0" * 4096)
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(qmp)])
    deadline = time.monotonic() + 10  # /proc/PID/cmdline reads empty for a moment after exec
    while str(qmp).encode() not in Path(f"/proc/{stand_in.pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, "the stand-in process never showed its command line"
        time.sleep(0.01)
    try:
        yield _session_doc(tmp_path, pid=stand_in.pid)
    finally:
        stand_in.kill()
        stand_in.wait()
        listener.close()


def test_a_live_session_gives_port_kernel_and_session(
    kernel_elf: Path, tmp_path: Path, live_doc: dict[str, object]
) -> None:
    path = _write(tmp_path, {**live_doc, "kernel": str(kernel_elf)})
    target = resolve(None, None, None, tmp_path)  # found as BUILD/live/session.json
    assert target.address == GdbAddress("127.0.0.1", 4321)
    assert target.kernel == kernel_elf.resolve()
    assert target.session is not None and target.session.path == path.absolute()
    assert resolve(path, 5555, None, tmp_path).address == GdbAddress("127.0.0.1", 5555)


def test_a_live_session_without_a_stub(
    kernel_elf: Path, tmp_path: Path, live_doc: dict[str, object]
) -> None:
    path = _write(tmp_path, {**live_doc, "gdb": None})
    with pytest.raises(KmtoolError, match=r"has no gdb stub .* `kmtool run --live --gdb`\.$"):
        resolve(path, None, kernel_elf, tmp_path)


def test_a_live_session_with_a_bad_stub_address(
    kernel_elf: Path, tmp_path: Path, live_doc: dict[str, object]
) -> None:
    path = _write(tmp_path, {**live_doc, "gdb": "127.0.0.1:99999"})
    with pytest.raises(KmtoolError, match=r"^The `gdb` key of `.*` is '127.0.0.1:99999': the port"):
        resolve(path, None, kernel_elf, tmp_path)
