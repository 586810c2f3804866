"""The run policy: boot a disk image in QEMU and report how it ended (the API of `kmtool run`).

    result = run_image(Path("build/kmtool.img"), RunOptions(memory=parse_size("512M")))
    result.outcome, result.exit_status, result.report        # Outcome.PASS, 0, {...}

    with held_vm(Path("build/kmtool.img"), RunOptions(cmdline="test")) as vm:
        tlb = vm.hmp("info tlb")                              # the VM is stopped at KM-READY
        vm.dump(Path("build/dump.elf"), "elf")

A run (docs/design.md §6): the checks of preflight.py; then a temp directory with a copy of the
OVMF vars template and the kernel command line as a file (fw_cfg); then QEMU (process.py), whose
serial output the watcher reads (serial.py) and the caller's `echo` sees line by line, saved to
`serial.log`; debugcon goes to `debugcon.log`. What this module decides:

- The run ends when QEMU exits (its status gives the outcome, outcome.py), when the time limit
  runs out (QEMU is killed: timeout), or -- for a held run -- when the kernel reports ready or a
  held panic: then kmtool stops the VM, dumps memory if asked, and quits QEMU itself, and the
  serial markers give the outcome.
- The time limit covers booting up to the exit or the held marker; a dump afterwards is not
  limited. With `gdb` there is no time limit (the VM waits for the debugger).
- A run that reaches the time limit is not killed: kmtool stops the VM, says where its CPU was
  (RIP, symbolized), dumps it if asked (the state of a hang is the dump worth having) and quits
  QEMU; the outcome stays timeout. (A QEMU without a working QMP socket is killed.)
- A reset does not end QEMU: `-action reboot=shutdown,shutdown=pause` pauses the VM at the triple
  fault, and QEMU's exception log (exceptions.py) gives the chain of exceptions that led there.
  kmtool reports it as the outcome reset, dumps the paused VM if asked, keeps the log's tail in
  `exceptions.log` and quits QEMU.
- A run with a dump that ends otherwise says in its message why no dump was written.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmtool.artifacts import BUILD_DIR_NAME, DEBUGCON_LOG, EXCEPTIONS_LOG, KERNEL_ELF, SERIAL_LOG
from kmtool.errors import RunError
from kmtool.qemu import outcome as outcomes
from kmtool.qemu import symbolize
from kmtool.qemu.accel import Accel, detect
from kmtool.qemu.cmdline import (
    DEFAULT_MEMORY,
    GDB_PORT,
    QEMU,
    MachineSpec,
    build_argv,
    kernel_cmdline,
)
from kmtool.qemu.dump import DumpInfo, Progress, capture
from kmtool.qemu.exceptions import Delivery, describe, triple_fault_chain
from kmtool.qemu.firmware import Firmware, find_ovmf
from kmtool.qemu.outcome import Outcome
from kmtool.qemu.panic import PanicReport, panic_report
from kmtool.qemu.preflight import check_run
from kmtool.qemu.process import Echo, Launch, QemuProcess, Stop
from kmtool.qemu.qmp import Monitor
from kmtool.qemu.serial import READY_MARKER


@dataclass(frozen=True)
class RunOptions:
    """How to run. `memory` is in bytes (`cmdline.parse_size` reads "512M"); `timeout` is seconds
    (None: no limit); `accel`/`cpu` None means detect (KVM if it works) and its default model."""

    memory: int = DEFAULT_MEMORY
    cpus: int = 1
    cmdline: str = ""
    timeout: float | None = 60.0
    gdb: bool = False
    gdb_port: int = GDB_PORT
    cpu: str | None = None
    accel: str | None = None
    dump: Path | None = None
    dump_format: str = "elf"
    hold: bool = False  # append `hold` even without a dump (held_vm sets it)
    build_dir: Path = Path(BUILD_DIR_NAME)
    qemu: str = QEMU
    kernel: Path | None = None  # the ELF that symbolizes a panic; None: BUILD_DIR/kernel.elf
    # A live run (docs/design.md §12, kmtool/live/run.py): guest RAM in this shared file,
    # QMP and QEMU's stderr at these paths, and QEMU left running when kmtool is done.
    ram_file: Path | None = None
    qmp_socket: Path | None = None
    stderr_log: Path | None = None


@dataclass
class RunResult:
    """How a run ended, with everything `kmtool run --json` prints."""

    outcome: Outcome
    seconds: float
    qemu_status: int | None
    accel: str
    command: list[str]
    serial_log: Path
    debugcon_log: Path
    report: dict[str, Any] | None = None
    report_error: str | None = None
    ready_seconds: float | None = None  # from QEMU start to the KM-REPORT line
    serial: str = ""  # the whole serial output (cleaned lines joined by "\n")
    stderr: str = ""  # QEMU's stderr
    message: str = ""  # why, for outcomes that need saying (timeout, qemu-error, no dump)
    cmdline: str = ""
    held: bool = False  # the kernel halted at KM-READY/KM-PANIC-HELD and kmtool stopped QEMU
    killed: bool = False  # kmtool killed QEMU (timeout, or KVM failed); qemu_status is moot
    dump: DumpInfo | None = None
    dump_reason: str | None = None  # when: "ready", "panic", "timeout" or "reset"
    panic: PanicReport | None = None  # the kernel's panic report, symbolized
    stopped_at: int | None = None  # RIP where kmtool found the CPU (time limit, reset)
    reset_chain: list[Delivery] | None = None  # the exceptions that ended in a triple fault
    exceptions_log: Path | None = None  # the tail of QEMU's exception log, after a reset
    live_session: Path | None = None  # the session file of a live run whose QEMU runs on

    @property
    def exit_status(self) -> int:
        return self.outcome.exit_status

    def to_json(self) -> dict[str, Any]:
        """The `kmtool run --json` object."""
        return {
            "outcome": self.outcome.value,
            "exit_status": int(self.exit_status),
            "seconds": round(self.seconds, 3),
            "ready_seconds": None if self.ready_seconds is None else round(self.ready_seconds, 3),
            "qemu_status": self.qemu_status,
            "accel": self.accel,
            "held": self.held,
            "killed": self.killed,
            "cmdline": self.cmdline,
            "serial_log": str(self.serial_log),
            "debugcon_log": str(self.debugcon_log),
            "report": self.report,
            "report_error": self.report_error,
            "message": self.message or None,
            "dump": None if self.dump is None else str(self.dump.path),
            "dump_format": None if self.dump is None else self.dump.format,
            "dump_reason": None if self.dump is None else self.dump_reason,
            "dump_layout": None
            if self.dump is None or self.dump.layout_path is None
            else str(self.dump.layout_path),
            "panic": None if self.panic is None else self.panic.to_json(),
            "stopped_at": None if self.stopped_at is None else hex(self.stopped_at),
            "reset_chain": None
            if self.reset_chain is None
            else [d.to_json() for d in self.reset_chain],
            "exceptions_log": None if self.exceptions_log is None else str(self.exceptions_log),
            "live_session": None if self.live_session is None else str(self.live_session),
            "command": self.command,
        }


@dataclass
class Boot:
    """One run in progress: its options, what was decided before the start, and its QEMU."""

    options: RunOptions
    cmdline: str  # what the kernel gets (with `hold` when held)
    hold: bool
    accel: Accel
    process: QemuProcess
    ended_by: Stop | None = None  # why the last wait ended

    @property
    def limit(self) -> float | None:
        """Seconds from the start until the run counts as hung; None with gdb."""
        return None if self.options.gdb else self.options.timeout

    def wait(self, until_held: bool, keep_at_limit: bool = False) -> Stop:
        self.ended_by = self.process.wait(self.limit, until_held, keep_at_limit)
        return self.ended_by

    def stop_vm(self) -> Monitor:
        """Pause the guest over QMP; the run's time ends here unless it ended already."""
        monitor = self.process.monitor()
        monitor.stop()
        self.process.mark_ended()
        return monitor


@contextlib.contextmanager
def boot_vm(
    image: Path, options: RunOptions, echo: Echo | None, hold: bool = False
) -> Iterator[Boot]:
    """Check, prepare and start a run; on exit, kill what is left (unless detached: a live
    run) and remove the temp directory."""
    hold = hold or options.hold or options.dump is not None
    cmdline = kernel_cmdline(options.cmdline, hold)
    check_run(image, cmdline, cmdline != options.cmdline, options.dump, options.qemu)
    accel = Accel(options.accel, "chosen by caller") if options.accel else detect()
    options.build_dir.mkdir(parents=True, exist_ok=True)
    firmware = find_ovmf()
    temp = Path(tempfile.mkdtemp(prefix="kmtool-run-"))
    try:
        launch = _launch(image, options, cmdline, accel, firmware, temp, hold)
        process = QemuProcess(launch, echo)
        try:
            process.start()
            yield Boot(options, cmdline, hold, accel, process)
        finally:
            process.close()
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _launch(
    image: Path,
    options: RunOptions,
    cmdline: str,
    accel: Accel,
    firmware: Firmware,
    temp: Path,
    hold: bool,
) -> Launch:
    """The QEMU command line and files of a run; the per-run files go to `temp`."""
    vars_copy = temp / "OVMF_VARS.fd"
    shutil.copyfile(firmware.vars, vars_copy)
    cmdline_file = None
    if cmdline:
        cmdline_file = temp / "cmdline.txt"
        cmdline_file.write_bytes(cmdline.encode("utf-8"))
    debugcon_log = options.build_dir / DEBUGCON_LOG
    # Every run has QMP: a hang or a triple fault is inspected through it. A live QEMU outlives
    # the temp directory, so its socket is where the options say, and it has no exception log
    # (a FIFO nobody reads once kmtool is gone); a reset still pauses it (cmdline.py), and the
    # wait sees that in QMP's status (process.py).
    qmp_socket = options.qmp_socket or temp / "qmp.sock"
    exception_log = None if options.ram_file else temp / "exceptions.fifo"
    spec = MachineSpec(
        image=image,
        firmware_code=firmware.code,
        firmware_vars=vars_copy,
        debugcon_log=debugcon_log,
        memory=options.memory,
        cpus=options.cpus,
        accel=accel.name,
        cpu=options.cpu or accel.cpu_model,
        cmdline_file=cmdline_file,
        qmp_socket=qmp_socket,
        gdb=options.gdb,
        gdb_port=options.gdb_port,
        qemu=options.qemu,
        exception_log=exception_log,
        ram_file=options.ram_file,
    )
    serial_log = options.build_dir / SERIAL_LOG
    return Launch(build_argv(spec), serial_log, debugcon_log, qmp_socket, exception_log,
                  detached=options.ram_file is not None, stderr_log=options.stderr_log)  # fmt: skip


def run_image(
    image: Path,
    options: RunOptions,
    echo: Echo | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Boot `image` (a disk image, or a directory served as a FAT disk) and report how it ended.

    `echo` receives each serial line as it arrives; `progress` receives (done, total) bytes while
    a dump is written. Raises RunError/ToolError only when the run cannot be set up at all; a QEMU
    that fails is the outcome qemu-error.
    """
    with boot_vm(image, options, echo) as boot:
        boot.wait(until_held=boot.hold, keep_at_limit=True)
        if boot.ended_by is Stop.RESET:
            return _finish_reset(boot, progress)
        if boot.ended_by is Stop.TIME_LIMIT and boot.process.running:
            return _finish_hang(boot, progress)
        if not boot.process.held.is_set():
            outcome, message = exit_outcome(boot)
            if options.dump is not None:
                message = (message + " " if message else "") + _no_dump_reason(outcome)
            return run_result(boot, outcome, message.strip())
        return _finish_held(boot, progress)


def _finish_hang(boot: Boot, progress: Progress | None) -> RunResult:
    """A hang: stop the VM, say where the CPU was, dump it if asked (the state of a hang is the
    most useful dump there is), quit QEMU. A QEMU whose QMP socket does not answer is killed."""
    limit = f"No exit within {boot.options.timeout:g} s;"
    try:
        monitor = boot.stop_vm()
        rip, where = stopped_at(boot, monitor)
    except RunError:
        boot.process.kill()
        return run_result(boot, Outcome.TIMEOUT, f"{limit} QEMU was killed.")
    dump = None
    if boot.options.dump is not None:
        dump = capture(monitor, boot.options.dump, boot.options.dump_format, progress)
    boot.process.quit()
    done = "kmtool stopped the VM, dumped it and quit QEMU" if dump else "kmtool stopped the VM"
    message = f"{limit} {done}.{where}"
    reason = None if dump is None else "timeout"
    return run_result(boot, Outcome.TIMEOUT, message, dump=dump, dump_reason=reason, rip=rip)


def _finish_reset(boot: Boot, progress: Progress | None) -> RunResult:
    """A triple fault, the VM paused at it: name the chain, keep the log, dump it if asked."""
    log = boot.process.exceptions
    assert log is not None
    text = log.text()
    chain = triple_fault_chain(text) or []
    saved = boot.options.build_dir / EXCEPTIONS_LOG
    saved.write_text(text, encoding="utf-8")
    monitor = boot.process.monitor()
    rip = _rip(monitor)
    dump = None
    if boot.options.dump is not None:
        dump = capture(monitor, boot.options.dump, boot.options.dump_format, progress)
    boot.process.quit()
    elf = symbolize.load(_kernel(boot))
    what = describe(chain, lambda a: symbolize.code_location(elf, a)) if chain else "triple fault"
    message = f"The CPU triple-faulted: {what} (QEMU's exception log: `{saved}`)."
    return run_result(boot, Outcome.RESET, message, dump=dump, dump_reason="reset", rip=rip,
                   chain=chain, exceptions_log=saved)  # fmt: skip


def _rip(monitor: Monitor) -> int | None:
    """CPU 0's RIP (EIP in 32-bit mode) from `info registers` on the stopped VM, or None when it
    does not say."""
    m = re.search(r"\b[RE]IP=([0-9a-f]{8,16})\b", monitor.hmp("info registers"))
    return None if m is None else int(m.group(1), 16)


def _kernel(boot: Boot) -> Path:
    return boot.options.kernel or boot.options.build_dir / KERNEL_ELF


def stopped_at(boot: Boot, monitor: Monitor) -> tuple[int | None, str]:
    """CPU 0's RIP on the stopped VM and the sentence ` The CPU was at FUNCTION+OFF (FILE:LINE).`
    (symbolised with the run's kernel ELF), or (None, "") when QEMU does not say."""
    rip = _rip(monitor)
    if rip is None:
        return None, ""
    return rip, f" The CPU was at {symbolize.code_location(symbolize.load(_kernel(boot)), rip)}."


def _finish_held(boot: Boot, progress: Progress | None) -> RunResult:
    """The kernel is held (ready, or after a panic): stop it, dump it if asked, quit QEMU."""
    monitor = boot.stop_vm()
    dump = None
    if boot.options.dump is not None:
        dump = capture(monitor, boot.options.dump, boot.options.dump_format, progress)
    boot.process.quit()
    serial = boot.process.serial
    reason = None if dump is None else ("panic" if serial.saw_panic else "ready")
    return run_result(boot, serial.outcome(), dump=dump, held=True, dump_reason=reason)


def exit_outcome(boot: Boot) -> tuple[Outcome, str]:
    """The outcome of a run that ended without kmtool quitting it, and what to say about it."""
    status = boot.process.returncode
    outcome = outcomes.from_qemu_status(status, timed_out=boot.ended_by is Stop.TIME_LIMIT)
    if boot.process.kvm_failed.is_set():
        return Outcome.QEMU_ERROR, (
            "KVM could not run the guest (QEMU: KVM internal error); set KMTOOL_ACCEL=tcg."
        )
    if outcome is Outcome.TIMEOUT:
        return outcome, f"No exit within {boot.options.timeout:g} s; QEMU was killed."
    if outcome is Outcome.QEMU_ERROR:
        stderr = boot.process.stderr.strip()
        return outcome, f"QEMU exited with status {status}." + (f"\n{stderr}" if stderr else "")
    return outcome, ""


def _no_dump_reason(outcome: Outcome) -> str:
    """One sentence: why a run with --dump wrote no dump."""
    if outcome is Outcome.QEMU_ERROR:
        return "QEMU failed before the kernel was ready, so no dump was written."
    if outcome is Outcome.TIMEOUT:
        return "QEMU was gone by the time limit, so no dump was written."
    return (
        f"The guest ended (outcome {outcome.value}) without reporting ready, so no dump was "
        "written."
    )


def run_result(
    boot: Boot,
    outcome: Outcome,
    message: str = "",
    dump: DumpInfo | None = None,
    held: bool = False,
    dump_reason: str | None = None,
    rip: int | None = None,
    chain: list[Delivery] | None = None,
    exceptions_log: Path | None = None,
) -> RunResult:
    process, serial = boot.process, boot.process.serial
    ended = process.ended or time.monotonic()
    panic = None
    if outcome is Outcome.PANIC or serial.saw_panic:
        panic = panic_report(serial.lines, _kernel(boot))
    return RunResult(
        outcome=outcome,
        seconds=ended - process.started,
        qemu_status=process.returncode,
        accel=boot.accel.name,
        command=list(process.argv),
        serial_log=process.launch.serial_log,
        debugcon_log=process.launch.debugcon_log,
        report=serial.report,
        report_error=serial.report_error,
        ready_seconds=None if serial.report_at is None else serial.report_at - process.started,
        serial="\n".join(serial.lines),
        stderr=process.stderr,
        message=message,
        cmdline=boot.cmdline,
        held=held,
        killed=process.killed,
        dump=dump,
        dump_reason=dump_reason,
        panic=panic,
        stopped_at=rip,
        reset_chain=chain,
        exceptions_log=exceptions_log,
    )


class HeldVm:
    """A VM stopped at `KM-READY` (or `KM-PANIC-HELD`), with its QMP monitor."""

    def __init__(self, process: QemuProcess) -> None:
        self._process = process

    @property
    def qmp(self) -> Monitor:
        return self._process.monitor()

    @property
    def report(self) -> dict[str, Any] | None:
        return self._process.serial.report

    @property
    def serial(self) -> str:
        return "\n".join(self._process.serial.lines)

    @property
    def panicked(self) -> bool:
        return self._process.serial.saw_panic

    def hmp(self, command_line: str) -> str:
        """Output of a human-monitor command on the stopped VM (e.g. `info tlb`)."""
        return self.qmp.hmp(command_line)

    def dump(self, path: Path, fmt: str = "elf", progress: Progress | None = None) -> DumpInfo:
        """Write the stopped VM's memory to `path` ("elf" or "raw"; see kmtool.qemu.dump)."""
        return capture(self.qmp, path, fmt, progress)


@contextlib.contextmanager
def held_vm(image: Path, options: RunOptions, echo: Echo | None = None) -> Iterator[HeldVm]:
    """Boot with `hold`, wait for the kernel to be ready, stop the VM and yield it; quit on exit.

    Raises RunError when the kernel does not get there (the message has the outcome and the log).
    """
    with boot_vm(image, options, echo, hold=True) as boot:
        boot.wait(until_held=True)
        if not boot.process.held.is_set():
            outcome, message = exit_outcome(boot)
            raise RunError(
                f"The kernel never reported `{READY_MARKER}` (outcome {outcome.value}; "
                f"see `{boot.process.launch.serial_log}`). {message}".strip()
            )
        boot.process.monitor().stop()
        yield HeldVm(boot.process)
        boot.process.quit()
