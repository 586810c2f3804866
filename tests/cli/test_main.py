"""The root command: usage errors are one line and status 1, like every other user error."""

from __future__ import annotations

import subprocess
import sys

import pytest


def kmtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kmtool", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("bogus",), "No such command 'bogus' (see `kmtool --help`)."),
        (("inspect",), "Missing argument 'DUMP' (see `kmtool inspect --help`)."),
        (("run", "--cpus", "0"), "Invalid value for '--cpus'"),
        (("build", "--no-such-option"), "No such option '--no-such-option'"),
    ],
)
def test_usage_errors_are_one_line_and_status_1(args: tuple[str, ...], needle: str) -> None:
    done = kmtool(*args)
    assert done.returncode == 1, done
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert needle in lines[0]
    assert "Traceback" not in done.stderr


def test_help_lists_every_command() -> None:
    from kmtool.cli import COMMANDS

    done = kmtool("--help")
    assert done.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in done.stdout
