"""Serial line handling without QEMU or OVMF: cleaning, markers, the report, the panic report, the
outcome of a held run, the reader's tap (log, echo, held), and the --json object."""

from __future__ import annotations

import io
from pathlib import Path

from kmtool.qemu.outcome import Outcome
from kmtool.qemu.process import SerialTap
from kmtool.qemu.runner import RunResult, _no_dump_reason
from kmtool.qemu.serial import Event, Marker, SerialWatcher, clean_line


def _tap(echo: list[str] | None = None) -> SerialTap:
    return SerialTap(SerialWatcher(), io.BytesIO(), None if echo is None else echo.append)


def _lines(tap: SerialTap, *lines: bytes) -> None:
    for line in lines:
        tap.take(line + b"\n")


def test_clean_line_strips_ovmf_escape_sequences() -> None:
    raw = "\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001\r"
    assert clean_line(raw) == "BdsDxe: loading Boot0001"
    assert clean_line("tab\tkept\x07") == "tab\tkept"


def test_markers_and_report() -> None:
    echoed: list[str] = []
    tap = _tap(echoed)
    _lines(tap, b"ok frames\r", b"fail heap: lost 4 bytes\r", b'KM-REPORT {"free_frames": 5}\r')
    assert not tap.held.is_set() and not tap.watcher.held
    _lines(tap, b"KM-READY\r")
    state = tap.watcher
    assert echoed == [
        "ok frames",
        "fail heap: lost 4 bytes",
        'KM-REPORT {"free_frames": 5}',
        "KM-READY",
    ]
    assert state.report == {"free_frames": 5} and state.report_error is None
    assert state.saw_fail and not state.saw_panic and state.held and tap.held.is_set()
    assert state.passed == ["ok frames"] and state.failed == ["fail heap: lost 4 bytes"]
    assert state.outcome() is Outcome.FAIL


def test_panic_held_and_a_bad_report() -> None:
    state = SerialWatcher()
    for line in (b"KM-REPORT {not json", b"panic: page fault at 0xdead", b"KM-PANIC-HELD"):
        state.line(line)
    assert state.report is None and state.report_error is not None
    assert state.report_error.startswith("The `KM-REPORT` line is not a JSON object")
    assert state.saw_panic and state.held
    assert state.saw_report and state.outcome() is Outcome.PANIC


def test_serial_and_report_are_utf8_with_replacement() -> None:
    # The kernel prints command-line bytes raw, in its banner and in the report's JSON string;
    # both are decoded as UTF-8, a byte that is not UTF-8 becoming U+FFFD in both alike.
    echoed: list[str] = []
    tap = _tap(echoed)
    _lines(tap, b'  cmdline      "caf\xc3\xa9 \xff"', b'KM-REPORT {"cmdline":"caf\xc3\xa9 \xff"}')
    assert echoed[0] == '  cmdline      "café \ufffd"'
    assert tap.watcher.report == {"cmdline": "café \ufffd"}


def test_a_failing_echo_is_dropped_not_fatal() -> None:
    def broken(line: str) -> None:
        raise BrokenPipeError

    tap = SerialTap(SerialWatcher(), io.BytesIO(), broken)
    _lines(tap, b"KM-READY", b"after")
    assert tap.echo is None and tap.held.is_set()
    assert tap.watcher.lines == ["KM-READY", "after"]


def test_lines_split_across_chunks_and_the_last_unfinished_line() -> None:
    state = SerialWatcher()
    assert state.feed(b"caf\xc3") == []  # nothing is a line before its newline
    assert state.feed(b"\xa9\r\nKM-REP") == [Event("café")]  # a UTF-8 sequence cut in two
    assert state.feed(b'ORT {"a": 1}\r\nKM-RE', now=7.5) == [
        Event('KM-REPORT {"a": 1}', Marker.REPORT)
    ]
    assert state.report == {"a": 1} and state.report_at == 7.5
    assert not state.held
    assert state.finish(now=9.0) == [Event("KM-RE")]  # no newline at the end: still a line
    assert state.finish() == []
    assert state.lines == ["café", 'KM-REPORT {"a": 1}', "KM-RE"]


def test_every_byte_reaches_the_log_unchanged() -> None:
    log = io.BytesIO()
    tap = SerialTap(SerialWatcher(), log, None, clock=lambda: 1.0)
    chunks = [b"\x1b[2J\x1b[01;01HBds", b"Dxe\r\n", b"KM-REPORT {}\r\npartial"]
    for chunk in chunks:
        tap.take(chunk)
    tap.finish()
    assert log.getvalue() == b"".join(chunks)
    assert tap.watcher.lines == ["BdsDxe", "KM-REPORT {}", "partial"]
    assert tap.watcher.report == {} and tap.watcher.report_at == 1.0


def test_only_the_first_report_counts_wherever_it_starts() -> None:
    state = SerialWatcher()
    first = state.line(b'\x1b[0m[boot] KM-REPORT {"n": 1}\r', now=2.0)
    second = state.line(b'KM-REPORT {"n": 2}', now=3.0)
    assert first.marker is Marker.REPORT and second.marker is None
    assert state.report == {"n": 1} and state.report_at == 2.0


def test_a_report_that_is_json_but_not_an_object() -> None:
    state = SerialWatcher()
    state.line(b"KM-REPORT [1, 2]")
    assert state.report is None
    assert state.report_error == "The `KM-REPORT` line is not a JSON object: not a JSON object."
    assert state.saw_report and state.outcome() is Outcome.PASS  # it got to ready, held or not


def test_markers_survive_escape_sequences_and_carriage_returns() -> None:
    state = SerialWatcher()
    event = state.line(b"\x1b[0m\x1b[37mKM-READY\r")
    assert event == Event("KM-READY", Marker.READY) and Marker.READY.held and state.held
    assert not Marker.PANIC.held and Marker.PANIC_HELD.held


def test_the_panic_report_lines_are_the_first_panic_and_its_details() -> None:
    state = SerialWatcher()
    serial = [
        b"kmtool kernel (build id 0123abcd)",
        b"panic: page fault at 0x0 (null), not-present read, supervisor mode, rip 0xffff8000",
        b"  vector   14 (#PF page fault)",
        b"  rip      0xffffffff80012345 (kernel-image)",
        b"  backtrace 0xffffffff80012400 0xffffffff80010000",
        b"KM-PANIC-HELD",
        b"panic: a second panic",
        b"  rip      0xffffffff80000000",
    ]
    markers = [state.line(raw).marker for raw in serial]
    assert markers == [
        None,
        Marker.PANIC,
        Marker.PANIC_DETAIL,
        Marker.PANIC_DETAIL,
        Marker.PANIC_DETAIL,
        Marker.PANIC_HELD,
        Marker.PANIC,
        None,
    ]
    assert state.panic_lines == [line.decode() for line in serial[1:5]]
    assert state.saw_panic and state.held and state.outcome() is Outcome.PANIC


def test_indented_lines_without_a_panic_are_plain() -> None:
    state = SerialWatcher()
    assert [state.line(raw).marker for raw in (b"  rip 0x1", b"ok  x", b"okay")] == [
        None,
        Marker.PASS,
        None,
    ]
    assert state.panic_lines == [] and not state.saw_panic


def test_held_run_outcomes_from_the_serial_alone() -> None:
    def outcome(*lines: bytes) -> Outcome:
        state = SerialWatcher()
        for line in lines:
            state.line(line)
        return state.outcome()

    assert outcome(b"ok frames", b"KM-REPORT {}", b"KM-READY") is Outcome.PASS
    assert outcome(b"fail frames: lost", b"KM-REPORT {}", b"KM-READY") is Outcome.FAIL
    assert outcome(b"panic: oops", b"KM-PANIC-HELD") is Outcome.PANIC
    assert outcome(b"KM-READY") is Outcome.QEMU_ERROR  # held, but never reported ready


def test_json_object_keys(tmp_path: Path) -> None:
    result = RunResult(
        outcome=Outcome.PANIC, seconds=1.23456, qemu_status=37, accel="tcg", command=["q"],
        serial_log=tmp_path / "serial.log", debugcon_log=tmp_path / "debugcon.log",
    )  # fmt: skip
    data = result.to_json()
    assert data["outcome"] == "panic" and data["exit_status"] == 3 and data["seconds"] == 1.235
    assert data["report"] is None and data["command"] == ["q"] and data["qemu_status"] == 37
    assert {"outcome", "exit_status", "seconds", "serial_log", "report", "qemu_status", "accel",
            "command", "held", "killed", "dump", "dump_format", "dump_layout",
            "dump_reason"} <= set(data)  # fmt: skip
    assert data["dump_reason"] is None
    assert type(data["exit_status"]) is int  # a plain number in JSON, not the enum


def test_every_missing_dump_says_why_in_one_sentence() -> None:
    for outcome in Outcome:
        reason = _no_dump_reason(outcome)
        assert reason.endswith("so no dump was written.") and reason.count(".") == 1, reason
    assert _no_dump_reason(Outcome.FAIL) == (
        "The guest ended (outcome fail) without reporting ready, so no dump was written."
    )
