"""The root command: usage errors are one line and status 1, like every other user error; an
internal error (a kmtool bug) is status 70, no outcome's; README's exit-status table is the code's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest
from conftest import REPO

from kmtool.exitstatus import MEANING, ExitStatus
from kmtool.qemu.outcome import Outcome


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


def test_an_internal_error_has_its_own_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A bug inside `kmtool run` must not exit 2, the status of a guest that reported failure.
    import kmtool.qemu.runner
    from kmtool.cli import main

    def bug(*args: object, **kwargs: object) -> NoReturn:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(kmtool.qemu.runner, "run_image", bug)
    monkeypatch.delenv("KMTOOL_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["kmtool", "run", str(tmp_path), "--build-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == ExitStatus.INTERNAL_ERROR == 70
    assert exited.value.code not in [outcome.exit_status for outcome in Outcome]
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        "error: Internal error: ZeroDivisionError: division by zero "
        "(set KMTOOL_DEBUG=1 for a traceback)."
    )


def test_an_internal_error_through_the_console_script() -> None:
    # The same in a real process: a kmtool module that raises a plain exception (a bug).
    script = (
        "import sys, kmtool.qemu.runner as r\n"
        "def bug(*a, **k): raise KeyError('oops')\n"
        "r.run_image = bug\n"
        "sys.argv = ['kmtool', 'run', '.']\n"
        "from kmtool.cli import main\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KMTOOL_DEBUG"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 70, done
    assert done.stderr.startswith("error: Internal error: KeyError: 'oops'")
    assert "Traceback" not in done.stderr


def _readme_exit_table() -> list[tuple[int, str, str]]:
    text = (REPO / "README.md").read_text()
    section = text.split("\n### Exit statuses\n", 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].isdigit():
            rows.append((int(cells[0]), cells[1], cells[2]))
    return rows


def test_the_readme_exit_table_is_the_code_table() -> None:
    code_table = [(int(status), name, meaning) for status, (name, meaning) in MEANING.items()]
    assert _readme_exit_table() == code_table
    assert [status for status, _, _ in code_table] == sorted(int(s) for s in ExitStatus)


def test_the_exit_table_names_every_outcome_and_keeps_1_and_70_apart() -> None:
    for outcome in Outcome:
        assert MEANING[outcome.exit_status][0] == outcome.value or outcome is Outcome.PASS
    outcome_statuses = {outcome.exit_status for outcome in Outcome}
    assert ExitStatus.USER_ERROR not in outcome_statuses
    assert ExitStatus.INTERNAL_ERROR not in outcome_statuses
    assert ExitStatus.INTERRUPTED == 128 + signal.SIGINT
    assert ExitStatus.TERMINATED == 128 + signal.SIGTERM
