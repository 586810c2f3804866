"""The exit statuses of every kmtool command: the one table (README.md "Exit statuses" shows it).

A leaf module: it imports nothing of kmtool, so outcome.py, the CLI and tests all read it.

- 0 and 2-6 are `kmtool run`'s outcomes (qemu/outcome.py maps each outcome to its status here).
  Status 1 is never an outcome, so a user error is never mistaken for a guest's result.
- 1 is every error the user can fix: bad input, a missing file or tool, a usage error (click's
  own status 2 is turned into 1 by `kmtool.cli.main`), a check that failed (`doctor`,
  `inspect`, `layout report`), and output to a pipe that was closed (`kmtool inspect | head`).
- An internal error is a kmtool bug: an exception that is not a `KmtoolError`. It gets 70, the
  EX_SOFTWARE of sysexits.h, far from the outcomes, so a bug during `kmtool run` cannot look like
  a failing guest.
- 130 and 143 are the shell's 128 + signal number, for SIGINT (Ctrl-C) and SIGTERM.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Every status a kmtool command exits with."""

    OK = 0
    USER_ERROR = 1
    FAIL = 2
    PANIC = 3
    RESET = 4
    TIMEOUT = 5
    QEMU_ERROR = 6
    INTERNAL_ERROR = 70
    INTERRUPTED = 130
    TERMINATED = 143


# status -> (its name in the README table, what it means); the README table is this, row by row.
MEANING: dict[ExitStatus, tuple[str, str]] = {
    ExitStatus.OK: ("ok", "success; for `kmtool run`, the outcome `pass`"),
    ExitStatus.USER_ERROR: (
        "user error",
        "bad input, a missing file or tool, a usage error, a failed check "
        "(`doctor`, `inspect`, `layout report`), or output to a closed pipe",
    ),
    ExitStatus.FAIL: ("fail", "`kmtool run`: the guest reported failure"),
    ExitStatus.PANIC: ("panic", "`kmtool run`: the kernel panicked"),
    ExitStatus.RESET: ("reset", "`kmtool run`: the guest reset (a triple fault)"),
    ExitStatus.TIMEOUT: ("timeout", "`kmtool run`: the time limit ran out"),
    ExitStatus.QEMU_ERROR: ("qemu-error", "`kmtool run`: QEMU failed or exited unexpectedly"),
    ExitStatus.INTERNAL_ERROR: (
        "internal error",
        "a kmtool bug; `KMTOOL_DEBUG=1` shows the traceback",
    ),
    ExitStatus.INTERRUPTED: ("interrupted", "Ctrl-C (SIGINT)"),
    ExitStatus.TERMINATED: ("terminated", "SIGTERM; `kmtool run` stops QEMU first"),
}
