"""The QEMU process layer with a stand-in program (a few lines of Python) instead of QEMU: why a
wait ends, the logs, the kill, stderr. No QEMU, no OVMF, each case well under a second."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kmtool.errors import RunError
from kmtool.qemu.process import Launch, QemuProcess, Stop


def _process(tmp_path: Path, script: str, echo: list[str] | None = None) -> QemuProcess:
    launch = Launch(
        [sys.executable, "-c", script], tmp_path / "serial.log", tmp_path / "debugcon.log"
    )
    return QemuProcess(launch, None if echo is None else echo.append)


def test_exit_status_serial_log_and_echo(tmp_path: Path) -> None:
    echoed: list[str] = []
    process = _process(
        tmp_path,
        "import sys; sys.stdout.write('\\x1b[2Jhello\\r\\nKM-REPORT {}\\r\\nlast'); sys.exit(33)",
        echoed,
    )
    try:
        process.start()
        assert process.wait(limit=30, until_held=True) is Stop.EXITED
    finally:
        process.close()
    assert process.returncode == 33 and not process.killed and not process.running
    assert echoed == ["hello", "KM-REPORT {}", "last"]
    assert (tmp_path / "serial.log").read_bytes() == b"\x1b[2Jhello\r\nKM-REPORT {}\r\nlast"
    assert (tmp_path / "debugcon.log").read_bytes() == b""  # created empty for the guest
    assert process.serial.report == {} and not process.held.is_set()
    assert process.ended is not None and process.ended >= process.started


def test_a_held_marker_ends_the_wait_with_the_process_running(tmp_path: Path) -> None:
    process = _process(tmp_path, "import time; print('KM-READY', flush=True); time.sleep(60)")
    try:
        process.start()
        assert process.wait(limit=30, until_held=True) is Stop.HELD
        assert process.running and process.ended is None and process.serial.held
    finally:
        process.close()
    assert not process.running and process.killed  # close() ends what is left


def test_the_time_limit_kills_or_keeps(tmp_path: Path) -> None:
    script = "import time; time.sleep(60)"
    killed = _process(tmp_path, script)
    kept = _process(tmp_path, script)
    try:
        killed.start()
        assert killed.wait(limit=0.3, until_held=False) is Stop.TIME_LIMIT
        assert killed.killed and not killed.running and killed.returncode is not None
        kept.start()
        assert kept.wait(limit=0.3, until_held=False, keep_at_limit=True) is Stop.TIME_LIMIT
        assert kept.running and not kept.killed and kept.ended is not None
    finally:
        killed.close()
        kept.close()


def test_a_kvm_internal_error_on_stderr_ends_the_run(tmp_path: Path) -> None:
    script = (
        "import sys, time; sys.stderr.write('KVM internal error. Suberror: 1\\n'); "
        "sys.stderr.flush(); time.sleep(60)"
    )
    process = _process(tmp_path, script)
    try:
        process.start()
        assert process.wait(limit=30, until_held=False) is Stop.KVM_FAILED
    finally:
        process.close()
    assert process.killed and process.kvm_failed.is_set()
    assert process.stderr.startswith("KVM internal error")


def test_a_program_that_cannot_start_and_a_run_without_qmp(tmp_path: Path) -> None:
    launch = Launch([str(tmp_path / "no-qemu")], tmp_path / "serial.log", tmp_path / "d.log")
    process = QemuProcess(launch)
    with pytest.raises(RunError, match=r"^Could not start `.*no-qemu`: No such file"):
        process.start()
    with pytest.raises(RunError, match="This run has no QMP monitor"):
        process.monitor()
    process.close()  # nothing started: nothing to do
