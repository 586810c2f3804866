"""Checks before booting, called directly (tests/qemu/test_runner.py has them through the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmtool.errors import RunError, ToolError
from kmtool.qemu.preflight import CMDLINE_LIMIT, check_cmdline, check_qemu, check_run


def test_qemu_must_be_on_path_or_a_file(tmp_path: Path) -> None:
    check_qemu("sh")  # on PATH
    program = tmp_path / "qemu"
    program.write_text("")
    check_qemu(str(program))  # a file given by path
    with pytest.raises(ToolError) as err:
        check_qemu("no-such-qemu")
    assert str(err.value) == (
        "`no-such-qemu` was not found; install the Debian package `qemu-system-x86`."
    )


def test_the_command_line_limit_is_in_bytes_not_characters() -> None:
    check_cmdline("x" * CMDLINE_LIMIT)
    check_cmdline("é" * (CMDLINE_LIMIT // 2))
    with pytest.raises(RunError, match=f"is {CMDLINE_LIMIT + 1} bytes long, over"):
        check_cmdline("é" * (CMDLINE_LIMIT // 2) + "xx")


def test_checks_run_in_the_order_a_user_meets_them(tmp_path: Path) -> None:
    missing = tmp_path / "none.img"
    long = "x" * (CMDLINE_LIMIT + 1)
    no_dir = tmp_path / "nope" / "d.elf"
    with pytest.raises(RunError, match="does not exist; run `kmtool build` first"):
        check_run(missing, long, False, no_dir, "no-such-qemu")
    with pytest.raises(RunError, match="command line is"):
        check_run(tmp_path, long, False, no_dir, "no-such-qemu")
    with pytest.raises(RunError, match="for the dump"):
        check_run(tmp_path, "", False, no_dir, "no-such-qemu")
    with pytest.raises(ToolError):
        check_run(tmp_path, "", False, tmp_path / "d.elf", "no-such-qemu")
    check_run(tmp_path, "hold", True, None, "sh")
