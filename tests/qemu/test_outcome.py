"""Outcome mapping: QEMU exit status -> named outcome -> kmtool exit status (docs/design.md §6)."""

from __future__ import annotations

import pytest

from kmtool.layout.table import EXIT_FAIL, EXIT_PANIC, EXIT_PASS
from kmtool.qemu.outcome import Outcome, from_held_run, from_qemu_status, qemu_status_for


@pytest.mark.parametrize(
    ("qemu_status", "outcome", "exit_status"),
    [
        (33, Outcome.PASS, 0),
        (35, Outcome.FAIL, 2),
        (37, Outcome.PANIC, 3),
        (0, Outcome.RESET, 4),
        (1, Outcome.QEMU_ERROR, 6),  # QEMU's own failure (bad option, missing file)
        (-9, Outcome.QEMU_ERROR, 6),  # killed by a signal nobody asked for
        (39, Outcome.QEMU_ERROR, 6),  # an exit value no part of the project writes
        (None, Outcome.QEMU_ERROR, 6),  # never started
    ],
)
def test_qemu_status_to_outcome(
    qemu_status: int | None, outcome: Outcome, exit_status: int
) -> None:
    got = from_qemu_status(qemu_status)
    assert got is outcome
    assert got.exit_status == exit_status


def test_timeout_wins_over_the_killed_status() -> None:
    assert from_qemu_status(-15, timed_out=True) is Outcome.TIMEOUT
    assert from_qemu_status(33, timed_out=True).exit_status == 5


def test_exit_port_values_from_the_table() -> None:
    assert [qemu_status_for(v) for v in (EXIT_PASS, EXIT_FAIL, EXIT_PANIC)] == [33, 35, 37]


def test_statuses_are_distinct_and_leave_1_for_usage_errors() -> None:
    statuses = [o.exit_status for o in Outcome]
    assert len(set(statuses)) == len(statuses)
    assert 1 not in statuses
    assert [o.value for o in Outcome] == ["pass", "fail", "panic", "reset", "timeout", "qemu-error"]


def test_held_run_outcomes() -> None:
    assert from_held_run(saw_report=True, saw_panic=False) is Outcome.PASS
    assert from_held_run(saw_report=True, saw_panic=False, saw_fail=True) is Outcome.FAIL
    assert from_held_run(saw_report=True, saw_panic=True) is Outcome.PANIC
    assert from_held_run(saw_report=False, saw_panic=True) is Outcome.PANIC
    assert from_held_run(saw_report=False, saw_panic=False) is Outcome.QEMU_ERROR


def test_statuses_come_from_the_one_exit_table() -> None:
    from kmtool.exitstatus import MEANING, ExitStatus

    for outcome in Outcome:
        assert isinstance(outcome.exit_status, ExitStatus) and outcome.exit_status in MEANING
    assert ExitStatus.INTERNAL_ERROR not in [o.exit_status for o in Outcome]
