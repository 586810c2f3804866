"""Write the gdbinit next to the build and replace kmtool with gdb.

    BUILD/kmtool.gdbinit   the generated script (kept: `gdb -x BUILD/kmtool.gdbinit` reruns it)

gdb replaces the kmtool process (`os.execv`): the terminal, Ctrl-C and the exit status are gdb's,
with no Python process left waiting in between. The `km` commands run kmtool again, through the
interpreter running now (`sys.executable -m kmtool`), so they find this kmtool and its packages
whatever gdb's own Python is.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from kmtool.errors import KmtoolError, ToolError
from kmtool.gdb.gdbinit import render
from kmtool.gdb.target import Target

GDBINIT_NAME = "kmtool.gdbinit"


def kmtool_argv() -> list[str]:
    """How gdb's `km` commands run this kmtool."""
    return [sys.executable, "-m", "kmtool"]


def write_gdbinit(target: Target, build_dir: Path) -> Path:
    """BUILD/kmtool.gdbinit for `target`; KmtoolError when it cannot be written."""
    path = build_dir / GDBINIT_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(target, kmtool_argv()), encoding="utf-8")
    except OSError as err:
        raise KmtoolError(f"Cannot write the gdbinit `{path}`: {err.strerror}.") from None
    return path


def gdb_argv(gdbinit: Path, extra: list[str]) -> list[str]:
    """`gdb -q -x GDBINIT EXTRA...`: the gdbinit runs first, then the caller's `-ex` commands in
    order (gdb runs -x and -ex in command-line order); `-batch`, `-nx` and others pass through."""
    gdb = shutil.which("gdb")
    if gdb is None:
        raise ToolError(
            "gdb is not installed: install the `gdb` package (scripts/install-system-deps does)."
        )
    return [gdb, "-q", "-x", str(gdbinit), *extra]


def exec_gdb(argv: list[str]) -> None:
    """Replace this process with gdb; KmtoolError when it cannot start. Never returns otherwise."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(argv[0], argv)
    except OSError as err:
        raise KmtoolError(f"Cannot start gdb `{argv[0]}`: {err.strerror}.") from None
