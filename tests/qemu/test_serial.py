"""Serial line handling without QEMU: cleaning, markers, the report, and the --json object."""

from __future__ import annotations

from pathlib import Path

from conftest import require

from kmtool.qemu.outcome import Outcome
from kmtool.qemu.runner import RunOptions, RunResult, Session, _no_dump_reason, clean_line


def test_clean_line_strips_ovmf_escape_sequences() -> None:
    raw = "\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001\r"
    assert clean_line(raw) == "BdsDxe: loading Boot0001"
    assert clean_line("tab\tkept\x07") == "tab\tkept"


def _session(tmp_path: Path, echoed: list[str]) -> Session:
    require("qemu-system-x86_64", "/usr/share/OVMF/OVMF_CODE_4M.fd")  # Session checks both
    image = tmp_path / "image"
    image.mkdir()
    return Session(image, RunOptions(build_dir=tmp_path, accel="tcg"), echo=echoed.append)


def test_markers_and_report(tmp_path: Path) -> None:
    echoed: list[str] = []
    session = _session(tmp_path, echoed)
    try:
        for line in [
            b"ok frames\r",
            b"fail heap: lost 4 bytes\r",
            b'KM-REPORT {"free_frames": 5}\r',
        ]:
            session._line(line)
        assert not session.serial.held.is_set()
        session._line(b"KM-READY\r")
    finally:
        session.close()
    state = session.serial
    assert echoed == [
        "ok frames",
        "fail heap: lost 4 bytes",
        'KM-REPORT {"free_frames": 5}',
        "KM-READY",
    ]
    assert state.report == {"free_frames": 5} and state.report_error is None
    assert state.saw_fail and not state.saw_panic and state.held.is_set()


def test_panic_held_and_a_bad_report(tmp_path: Path) -> None:
    session = _session(tmp_path, [])
    try:
        session._line(b"KM-REPORT {not json")
        session._line(b"panic: page fault at 0xdead")
        session._line(b"KM-PANIC-HELD")
    finally:
        session.close()
    state = session.serial
    assert state.report is None and state.report_error is not None
    assert state.report_error.startswith("The `KM-REPORT` line is not a JSON object")
    assert state.saw_panic and state.held.is_set()


def test_serial_and_report_are_utf8_with_replacement(tmp_path: Path) -> None:
    # The kernel prints command-line bytes raw, in its banner and in the report's JSON string;
    # both are decoded as UTF-8, a byte that is not UTF-8 becoming U+FFFD in both alike.
    echoed: list[str] = []
    session = _session(tmp_path, echoed)
    try:
        session._line(b'  cmdline      "caf\xc3\xa9 \xff"')
        session._line(b'KM-REPORT {"cmdline":"caf\xc3\xa9 \xff"}')
    finally:
        session.close()
    assert echoed[0] == '  cmdline      "café \ufffd"'
    assert session.serial.report == {"cmdline": "café \ufffd"}


def test_a_failing_echo_is_dropped_not_fatal(tmp_path: Path) -> None:
    require("qemu-system-x86_64", "/usr/share/OVMF/OVMF_CODE_4M.fd")
    image = tmp_path / "image"
    image.mkdir()

    def broken(line: str) -> None:
        raise BrokenPipeError

    session = Session(image, RunOptions(build_dir=tmp_path, accel="tcg"), echo=broken)
    try:
        session._line(b"KM-READY")
    finally:
        session.close()
    assert session.echo is None and session.serial.held.is_set()


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


def test_every_missing_dump_says_why_in_one_sentence() -> None:
    for outcome in Outcome:
        reason = _no_dump_reason(outcome)
        assert reason.endswith("so no dump was written.") and reason.count(".") == 1, reason
    assert _no_dump_reason(Outcome.FAIL) == (
        "The guest ended (outcome fail) without reporting ready, so no dump was written."
    )
