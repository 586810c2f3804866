"""Named run outcomes and the exit statuses `kmtool run` returns for them (docs/design.md §6).

| outcome    | status | how QEMU ended                                                      |
|------------|--------|---------------------------------------------------------------------|
| pass       | 0      | exit 33: the guest wrote EXIT_PASS (0x10) to isa-debug-exit         |
| fail       | 2      | exit 35: EXIT_FAIL (0x11), e.g. a self test or the loader failed    |
| panic      | 3      | exit 37: EXIT_PANIC (0x12), the kernel panicked                     |
| reset      | 4      | exit 0: under -no-reboot a guest reset (a triple fault) ends QEMU   |
| timeout    | 5      | kmtool killed QEMU when the time limit ran out                      |
| qemu-error | 6      | anything else: QEMU failed to start, died, or exited some other way |

The statuses come from the one table in kmtool/exitstatus.py, where 1 is a user error and 70 an
internal error (a kmtool bug), neither of them an outcome. QEMU turns a value v written to the
exit port into (v << 1) | 1, which is why a pass is odd and never 0 or 1. A run that was *held* on purpose
(`--dump`) ends with kmtool's `quit`; its outcome comes from the serial markers instead (see
`from_held_run`).
"""

from __future__ import annotations

from enum import Enum

from kmtool.exitstatus import ExitStatus
from kmtool.layout.table import EXIT_FAIL, EXIT_PANIC, EXIT_PASS


def qemu_status_for(value: int) -> int:
    """The QEMU exit status for `value` written to the isa-debug-exit port."""
    return (value << 1) | 1


class Outcome(Enum):
    """How a run ended. `.value` is the name printed and put in JSON; `.exit_status` is kmtool's."""

    PASS = "pass"
    FAIL = "fail"
    PANIC = "panic"
    RESET = "reset"
    TIMEOUT = "timeout"
    QEMU_ERROR = "qemu-error"

    @property
    def exit_status(self) -> ExitStatus:
        return EXIT_STATUS[self]

    @property
    def description(self) -> str:
        return DESCRIPTION[self]


EXIT_STATUS: dict[Outcome, ExitStatus] = {
    Outcome.PASS: ExitStatus.OK,
    Outcome.FAIL: ExitStatus.FAIL,
    Outcome.PANIC: ExitStatus.PANIC,
    Outcome.RESET: ExitStatus.RESET,
    Outcome.TIMEOUT: ExitStatus.TIMEOUT,
    Outcome.QEMU_ERROR: ExitStatus.QEMU_ERROR,
}

DESCRIPTION: dict[Outcome, str] = {
    Outcome.PASS: "the kernel reported success",
    Outcome.FAIL: "the guest reported failure",
    Outcome.PANIC: "the kernel panicked",
    Outcome.RESET: "the guest reset (a triple fault)",
    Outcome.TIMEOUT: "the time limit ran out",
    Outcome.QEMU_ERROR: "QEMU failed or exited unexpectedly",
}

_BY_QEMU_STATUS: dict[int, Outcome] = {
    qemu_status_for(EXIT_PASS): Outcome.PASS,
    qemu_status_for(EXIT_FAIL): Outcome.FAIL,
    qemu_status_for(EXIT_PANIC): Outcome.PANIC,
    0: Outcome.RESET,
}


def from_qemu_status(status: int | None, timed_out: bool = False) -> Outcome:
    """The outcome for QEMU's exit status (None when it never started or could not be reaped).

    A timeout wins over whatever status the killed process reports.
    """
    if timed_out:
        return Outcome.TIMEOUT
    if status is None:
        return Outcome.QEMU_ERROR
    return _BY_QEMU_STATUS.get(status, Outcome.QEMU_ERROR)


def from_held_run(saw_report: bool, saw_panic: bool, saw_fail: bool = False) -> Outcome:
    """The outcome of a run kmtool stopped itself after `KM-READY` / `KM-PANIC-HELD`.

    The guest never wrote the exit port, so the serial markers decide: a panic marker -> panic; the
    ready report with a failed self test line -> fail; the ready report otherwise -> pass.
    """
    if saw_panic:
        return Outcome.PANIC
    if saw_report:
        return Outcome.FAIL if saw_fail else Outcome.PASS
    return Outcome.QEMU_ERROR
