"""The serial watcher: the guest's COM1 output turned into lines, events and an outcome.

Pure text handling. It starts no process and opens no file; the caller hands it the bytes QEMU
wrote and the time they arrived, and reads back what they said:

    watcher = SerialWatcher()
    for event in watcher.feed(b'ok frames\\nKM-REPORT {"free_frames": 5}\\nKM-READY\\n', now):
        print(event.line, event.marker)     # "ok frames" Marker.PASS ... "KM-READY" Marker.READY
    watcher.report, watcher.held            # {"free_frames": 5}, True
    watcher.outcome()                       # Outcome.PASS: the held run's outcome

The lines the kernel and the loader print for kmtool (the run protocol, docs/design.md §6):

    KM-REPORT {json}   the ready report, a JSON object (the first counts; invalid: report_error)
    KM-READY           the kernel is ready and halted because the command line had `hold`
    KM-PANIC-HELD      the kernel panicked and halted because of `hold`
    ok NAME            a self test passed
    fail NAME: WHY     a self test (or the loader) failed
    panic: MESSAGE     a panic; the indented lines after it (rip, caller, backtrace) are its report

Bytes are decoded as UTF-8, a byte that is not UTF-8 becoming U+FFFD; each line is cleaned of ANSI
escape sequences and control characters (OVMF paints its screen with them) before anything reads it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from kmtool.qemu import outcome as outcomes
from kmtool.qemu.outcome import Outcome

REPORT_MARKER = "KM-REPORT "
READY_MARKER = "KM-READY"
PANIC_HELD_MARKER = "KM-PANIC-HELD"
PANIC_PREFIX = "panic:"
FAIL_PREFIX = "fail "
PASS_PREFIX = "ok "
REPORT_DETAIL_INDENT = "  "  # the lines of a panic report after its `panic:` line

_ANSI = re.compile(r"\x1b(?:\[[0-9;?=]*[ -/]*[@-~]|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_line(raw: str) -> str:
    """A serial line made safe to print: ANSI escape sequences and control characters removed."""
    return _CONTROL.sub("", _ANSI.sub("", raw))


class Marker(Enum):
    """What a serial line tells kmtool."""

    REPORT = "report"  # the first `KM-REPORT {json}` line
    READY = "ready"  # `KM-READY`: ready and held
    PANIC_HELD = "panic-held"  # `KM-PANIC-HELD`: panicked and held
    PASS = "pass"  # `ok NAME`: a self test passed
    FAIL = "fail"  # `fail NAME: WHY`: a self test failed
    PANIC = "panic"  # `panic: MESSAGE`: a panic report begins
    PANIC_DETAIL = "panic-detail"  # an indented line of the first panic report

    @property
    def held(self) -> bool:
        """True for the two markers after which the kernel halts and waits for kmtool."""
        return self in (Marker.READY, Marker.PANIC_HELD)


@dataclass(frozen=True)
class Event:
    """One complete serial line, cleaned, and what it says (None: nothing kmtool acts on)."""

    line: str
    marker: Marker | None = None


class SerialWatcher:
    """What a run's serial output has said so far. `feed` it bytes in the order QEMU wrote them.

    Not thread-safe: one thread feeds it; others read its fields once that thread has signalled
    them (the held marker) or ended.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []  # every cleaned line, in order
        self.report: dict[str, Any] | None = None  # the first KM-REPORT's object, when valid
        self.report_error: str | None = None  # why the first KM-REPORT line is not one
        self.report_at: float | None = None  # the `now` of the chunk that ended that line
        self.saw_panic = False  # a `panic:` line or KM-PANIC-HELD
        self.saw_fail = False  # a `fail ` line
        self.held = False  # KM-READY or KM-PANIC-HELD: the kernel waits for kmtool
        self.passed: list[str] = []  # the `ok NAME` lines
        self.failed: list[str] = []  # the `fail NAME: WHY` lines
        self.panic_lines: list[str] = []  # the first panic report: its `panic:` line and details
        self._pending = b""  # the bytes after the last newline
        self._in_panic = False  # the previous line belonged to the first panic report

    @property
    def saw_report(self) -> bool:
        """A KM-REPORT line arrived, valid JSON or not: the kernel got as far as ready."""
        return self.report_at is not None

    def feed(self, chunk: bytes, now: float = 0.0) -> list[Event]:
        """The complete lines in `chunk` (with what earlier chunks left unfinished), as events."""
        *complete, self._pending = (self._pending + chunk).split(b"\n")
        return [self.line(raw, now) for raw in complete]

    def finish(self, now: float = 0.0) -> list[Event]:
        """The last line, when the output ended without a newline (call once, at the end)."""
        pending, self._pending = self._pending, b""
        return [self.line(pending, now)] if pending else []

    def line(self, raw: bytes, now: float = 0.0) -> Event:
        """Take one line (without its newline) and say what it was."""
        line = clean_line(raw.decode("utf-8", errors="replace"))
        self.lines.append(line)
        marker = self._marker(line, now)
        if marker is Marker.PASS:
            self.passed.append(line.strip())
        elif marker is Marker.FAIL:
            self.failed.append(line.strip())
        return Event(line, marker)

    def _marker(self, line: str, now: float) -> Marker | None:
        in_panic, self._in_panic = self._in_panic, False
        marker = self._protocol_marker(line.strip(), now)
        if marker is Marker.PANIC and not self.panic_lines:
            self.panic_lines.append(line)
            self._in_panic = True
        elif marker is None and in_panic and line.startswith(REPORT_DETAIL_INDENT):
            self.panic_lines.append(line)
            self._in_panic = True
            return Marker.PANIC_DETAIL
        return marker

    def _protocol_marker(self, text: str, now: float) -> Marker | None:
        """The marker of a stripped line, recording what it says (the order is the precedence)."""
        at = text.find(REPORT_MARKER)
        if at >= 0 and self.report_at is None:
            self.report_at = now
            self._take_report(text[at + len(REPORT_MARKER) :])
            return Marker.REPORT
        if text.startswith(PANIC_PREFIX):
            self.saw_panic = True
            return Marker.PANIC
        if text.startswith(FAIL_PREFIX):
            self.saw_fail = True
            return Marker.FAIL
        if text.startswith(PANIC_HELD_MARKER):
            self.saw_panic = self.held = True
            return Marker.PANIC_HELD
        if text.startswith(READY_MARKER):
            self.held = True
            return Marker.READY
        return Marker.PASS if text.startswith(PASS_PREFIX) else None

    def _take_report(self, text: str) -> None:
        try:
            parsed = json.loads(text)
            if not isinstance(parsed, dict):
                raise ValueError("not a JSON object")
            self.report = parsed
        except ValueError as err:
            self.report_error = f"The `KM-REPORT` line is not a JSON object: {err}."

    def outcome(self) -> Outcome:
        """The outcome of a run kmtool stopped itself once the kernel was held (outcome.py)."""
        return outcomes.from_held_run(self.saw_report, self.saw_panic, self.saw_fail)
