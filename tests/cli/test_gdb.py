"""`kmtool gdb`: each bad input is one sentence on stderr and status 1, before or as gdb starts."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import require, run_kmtool

if TYPE_CHECKING:
    from kmtool.build.driver import BuildPaths


def _error(done: subprocess.CompletedProcess[str]) -> str:
    """The one line of a failed run, without the `error: ` prefix."""
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0].removeprefix("error: ")


def test_a_named_session_that_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "session.json"
    assert _error(run_kmtool("gdb", str(missing), "--build-dir", str(tmp_path))) == (
        f"The live session file `{missing}` is missing; start a session with `kmtool run --live`."
    )


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_a_bad_port(tmp_path: Path, port: str) -> None:
    message = _error(run_kmtool("gdb", "--port", port, "--build-dir", str(tmp_path)))
    assert message.startswith("Invalid value for '--port': ")
    assert message.endswith(" (see `kmtool gdb --help`).")


def test_a_missing_kernel_elf(tmp_path: Path) -> None:
    assert _error(run_kmtool("gdb", "--build-dir", str(tmp_path))) == (
        f"The kernel ELF `{tmp_path / 'kernel.elf'}` does not exist."
    )


def test_no_stub_listening(fresh_build: BuildPaths, tmp_path: Path) -> None:
    require("gdb")
    with socket.socket() as s:  # a port nothing listens on (bound, then released)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = run_kmtool("gdb", "--port", str(port), "--kernel", str(fresh_build.kernel),
                      "--build-dir", str(tmp_path), "--", "-nx", "-batch", "-ex", "print 6 * 7")  # fmt: skip
    assert done.returncode == 1, done
    assert f"error: gdb cannot attach to QEMU's gdb stub at 127.0.0.1:{port} (" in done.stderr
    assert done.stderr.rstrip().endswith("start the guest with `kmtool run --gdb` or "
                                          "`kmtool run --live --gdb` first.")  # fmt: skip
    assert "$1 = 42" not in done.stdout  # the -ex commands after the gdbinit never ran
    assert (tmp_path / "kmtool.gdbinit").is_file()


def test_run_gdb_points_at_kmtool_gdb() -> None:
    """`kmtool run --gdb` tells the user to attach with `kmtool gdb` (its gdbinit), with the port
    and kernel of this run, not with a bare gdb command line."""
    from pathlib import Path

    from rich.console import Console

    from kmtool.cli.run import _print_gdb_hint

    console = Console(record=True, width=200)
    _print_gdb_hint(console, Path("/b/kernel.elf"), 4321)
    text = console.export_text()
    assert "kmtool gdb --port 4321 --kernel /b/kernel.elf" in text and "target remote" not in text
