"""Run a disk image in QEMU and report how it ended; the Python API behind `kmtool run`.

    result = run_image(Path("build/kmtool.img"), RunOptions(memory=parse_size("512M")))
    result.outcome, result.exit_status, result.report        # Outcome.PASS, 0, {...}

    with held_vm(Path("build/kmtool.img"), RunOptions(cmdline="test")) as vm:
        tlb = vm.hmp("info tlb")                              # the VM is stopped at KM-READY
        vm.dump(Path("build/dump.elf"), "elf")

A run: copy the OVMF vars template to a temp directory, write the kernel command line to a temp
file (fw_cfg), start QEMU with stdin on /dev/null, and read its stdout (COM1) on a thread: every
byte goes to `serial.log` as it arrives; each line is handed to `echo` (ANSI escapes and control
characters removed) and checked for the kernel's markers (CONTEXT.md):

    KM-REPORT {json}   the ready report (parsed into RunResult.report; invalid JSON -> report_error)
    KM-READY           the kernel is ready and halted because the cmdline had `hold`
    KM-PANIC-HELD      the kernel panicked and halted because of `hold`
    panic: ...         a panic;   fail <name>: ...   a failed self test

Debugcon (port 0xe9) goes to `debugcon.log`. The run ends when QEMU exits (its status gives the
outcome), when the time limit runs out (QEMU is killed: timeout), or -- for a held run -- when the
kernel reports ready: then kmtool stops the VM, dumps memory if asked, and quits QEMU itself.
The time limit covers booting up to the exit or the ready marker; a dump afterwards is not limited.
With a dump asked for, a run that reaches the time limit is not killed: kmtool stops the VM,
dumps it (the state of a hang is the dump worth having) and quits QEMU; the outcome stays timeout.
With `gdb` there is no time limit (the VM waits for the debugger).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmtool.build.ninjafile import KERNEL_ELF
from kmtool.errors import RunError, ToolError
from kmtool.qemu import outcome as outcomes
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
from kmtool.qemu.firmware import find_ovmf
from kmtool.qemu.outcome import Outcome
from kmtool.qemu.panic import PanicReport, panic_report
from kmtool.qemu.qmp import Monitor
from kmtool.schemas.bootinfo import CMDLINE_MAX
from kmtool.schemas.gpt import GPT_SIGNATURE, MBR_SIGNATURE, SECTOR_SIZE

REPORT_MARKER = "KM-REPORT "
READY_MARKER = "KM-READY"
PANIC_HELD_MARKER = "KM-PANIC-HELD"
KVM_FAILURE = "KVM internal error"
KILL_GRACE_SECONDS = 2.0
POLL_SECONDS = 0.05

_ANSI = re.compile(r"\x1b(?:\[[0-9;?=]*[ -/]*[@-~]|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

Echo = Callable[[str], None]


def clean_line(raw: str) -> str:
    """A serial line made safe to print: ANSI escape sequences and control characters removed."""
    return _CONTROL.sub("", _ANSI.sub("", raw))


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
    build_dir: Path = Path("build")
    qemu: str = QEMU
    kernel: Path | None = None  # the ELF that symbolizes a panic; None: BUILD_DIR/kernel.elf


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
    dump_reason: str | None = None  # when the dump was taken: "ready", "panic" or "timeout"
    panic: PanicReport | None = None  # the kernel's panic report, symbolized

    @property
    def exit_status(self) -> int:
        return self.outcome.exit_status

    def to_json(self) -> dict[str, Any]:
        """The `kmtool run --json` object."""
        return {
            "outcome": self.outcome.value,
            "exit_status": self.exit_status,
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
            "command": self.command,
        }


@dataclass
class _Serial:
    """What the serial reader thread has seen (written by that thread only, read after events)."""

    lines: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None
    report_error: str | None = None
    report_at: float | None = None
    saw_panic: bool = False
    saw_fail: bool = False
    held: threading.Event = field(default_factory=threading.Event)


class Session:
    """One QEMU process: start it, watch serial and stderr, wait, stop, dump, quit, clean up."""

    def __init__(
        self,
        image: Path,
        options: RunOptions,
        echo: Echo | None = None,
        hold: bool = False,
    ) -> None:
        check_image(image)
        self.hold = hold or options.hold or options.dump is not None
        self.cmdline = kernel_cmdline(options.cmdline, self.hold)
        check_cmdline(self.cmdline, appended_hold=self.cmdline != options.cmdline)
        if options.dump is not None:
            check_dump_target(options.dump)
        if shutil.which(options.qemu) is None and not Path(options.qemu).is_file():
            raise ToolError(
                f"`{options.qemu}` was not found; install the Debian package `qemu-system-x86`."
            )
        self.image = image
        self.options = options
        self.echo = echo
        self.accel: Accel = Accel(options.accel, "chosen by caller") if options.accel else detect()
        options.build_dir.mkdir(parents=True, exist_ok=True)
        self.serial_log = options.build_dir / "serial.log"
        self.debugcon_log = options.build_dir / "debugcon.log"
        self.serial = _Serial()
        self.stderr_parts: list[str] = []
        self.kvm_failed = threading.Event()
        self.monitor: Monitor | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.ended: float | None = None
        self.timed_out = False
        self.killed = False  # kmtool ended QEMU (timeout, KVM failure, clean-up)
        self._threads: list[threading.Thread] = []
        firmware = find_ovmf()
        self._temp = Path(tempfile.mkdtemp(prefix="kmtool-run-"))
        self.qmp_socket = self._temp / "qmp.sock" if self.hold else None
        vars_copy = self._temp / "OVMF_VARS.fd"
        shutil.copyfile(firmware.vars, vars_copy)
        cmdline_file = None
        if self.cmdline:
            cmdline_file = self._temp / "cmdline.txt"
            cmdline_file.write_bytes(self.cmdline.encode("utf-8"))
        self.argv = build_argv(
            MachineSpec(
                image=image,
                firmware_code=firmware.code,
                firmware_vars=vars_copy,
                debugcon_log=self.debugcon_log,
                memory=options.memory,
                cpus=options.cpus,
                accel=self.accel.name,
                cpu=options.cpu or self.accel.cpu_model,
                cmdline_file=cmdline_file,
                qmp_socket=self.qmp_socket,
                gdb=options.gdb,
                gdb_port=options.gdb_port,
                qemu=options.qemu,
            )
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.debugcon_log.write_bytes(b"")
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C at the terminal reaches kmtool, not QEMU
                preexec_fn=_qemu_child_setup,
            )
        except OSError as err:
            raise RunError(f"Could not start `{self.argv[0]}`: {err.strerror or err}.") from err
        self.started = time.monotonic()
        assert self.process.stdout is not None and self.process.stderr is not None
        serial_log = open(self.serial_log, "wb")  # noqa: SIM115 (closed by the reader thread)
        self._spawn(self._read_serial, self.process.stdout.fileno(), serial_log)
        self._spawn(self._read_stderr, self.process.stderr.fileno())

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def wait(self, until_held: bool, keep_at_timeout: bool = False) -> None:
        """Block until QEMU exits, the time limit runs out (QEMU is then killed, or with
        `keep_at_timeout` left running for a dump), KVM fails, or -- with `until_held` -- the
        kernel reports it is held. Sets `timed_out` / `ended`."""
        assert self.process is not None
        limit = None if self.options.gdb else self.options.timeout
        deadline = None if limit is None else self.started + limit
        while True:
            if self.process.poll() is not None:
                break
            if until_held and self.serial.held.is_set():
                return
            if self.kvm_failed.is_set():
                self.kill()
                break
            if deadline is not None and time.monotonic() >= deadline:
                self.timed_out = True
                if keep_at_timeout:
                    self.ended = time.monotonic()
                    return
                self.kill()
                break
            try:
                self.process.wait(timeout=POLL_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        self.ended = self.ended or time.monotonic()
        self._join_readers()

    def connect(self) -> Monitor:
        """The QMP monitor (connected on first use); only for held sessions."""
        if self.qmp_socket is None:
            raise RunError("This run has no QMP monitor; start it with a dump or held.")
        if self.monitor is None:
            self.monitor = Monitor(self.qmp_socket)
        return self.monitor

    def quit(self) -> None:
        """Ask QEMU to quit over QMP, then make sure it is gone."""
        if self.monitor is not None:
            self.monitor.quit()
            self.monitor.close()
            self.monitor = None
        if self.process is not None:
            try:
                self.process.wait(timeout=KILL_GRACE_SECONDS * 5)
            except subprocess.TimeoutExpired:
                self.kill()
        self.ended = self.ended or time.monotonic()
        self._join_readers()

    def kill(self) -> None:
        """End QEMU: SIGTERM, then SIGKILL if it lingers."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        self.ended = self.ended or time.monotonic()
        self.killed = True
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        """Release everything: monitor, process, threads, the temp directory."""
        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None
        self.kill()
        self._join_readers()
        shutil.rmtree(self._temp, ignore_errors=True)

    def _join_readers(self) -> None:
        for thread in self._threads:
            thread.join(timeout=KILL_GRACE_SECONDS)

    # -- readers (threads) -----------------------------------------------------------------------

    def _read_serial(self, fd: int, log: Any) -> None:
        pending = b""
        with log:
            while chunk := _read(fd):
                log.write(chunk)
                log.flush()
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    self._line(raw)
            if pending:
                self._line(pending)

    def _line(self, raw: bytes) -> None:
        line = clean_line(raw.decode("utf-8", errors="replace"))
        state = self.serial
        state.lines.append(line)
        if self.echo is not None:
            try:
                self.echo(line)
            except Exception:  # a closed terminal must not stall QEMU's serial pipe
                self.echo = None
        text = line.strip()
        at = text.find(REPORT_MARKER)
        if at >= 0 and state.report_at is None:
            state.report_at = time.monotonic()
            try:
                parsed = json.loads(text[at + len(REPORT_MARKER) :])
                if not isinstance(parsed, dict):
                    raise ValueError("not a JSON object")
                state.report = parsed
            except ValueError as err:
                state.report_error = f"The `KM-REPORT` line is not a JSON object: {err}."
        elif text.startswith("panic:"):
            state.saw_panic = True
        elif text.startswith("fail "):
            state.saw_fail = True
        elif text.startswith(PANIC_HELD_MARKER):
            state.saw_panic = True
            state.held.set()
        elif text.startswith(READY_MARKER):
            state.held.set()

    def _read_stderr(self, fd: int) -> None:
        while chunk := _read(fd):
            text = chunk.decode("utf-8", errors="replace")
            self.stderr_parts.append(text)
            if KVM_FAILURE in "".join(self.stderr_parts[-2:]):
                self.kvm_failed.set()

    # -- results ---------------------------------------------------------------------------------

    def result(
        self,
        outcome: Outcome,
        message: str = "",
        dump: DumpInfo | None = None,
        held: bool = False,
        dump_reason: str | None = None,
    ) -> RunResult:
        assert self.process is not None
        ended = self.ended or time.monotonic()
        state = self.serial
        panic = None
        if outcome is Outcome.PANIC or state.saw_panic:
            kernel = self.options.kernel or self.options.build_dir / KERNEL_ELF
            panic = panic_report(state.lines, kernel)
        return RunResult(
            outcome=outcome,
            seconds=ended - self.started,
            qemu_status=self.process.returncode,
            accel=self.accel.name,
            command=list(self.argv),
            serial_log=self.serial_log,
            debugcon_log=self.debugcon_log,
            report=state.report,
            report_error=state.report_error,
            ready_seconds=None if state.report_at is None else state.report_at - self.started,
            serial="\n".join(state.lines),
            stderr="".join(self.stderr_parts),
            message=message,
            cmdline=self.cmdline,
            held=held,
            killed=self.killed,
            dump=dump,
            dump_reason=dump_reason,
            panic=panic,
        )

    def exit_outcome(self) -> tuple[Outcome, str]:
        """The outcome of a run that ended without kmtool quitting it, and what to say about it."""
        assert self.process is not None
        status = self.process.returncode
        outcome = outcomes.from_qemu_status(status, self.timed_out)
        if self.kvm_failed.is_set():
            return Outcome.QEMU_ERROR, (
                "KVM could not run the guest (QEMU: KVM internal error); set KMTOOL_ACCEL=tcg."
            )
        if outcome is Outcome.TIMEOUT:
            limit = self.options.timeout
            return outcome, f"No exit within {limit:g} s; QEMU was killed."
        if outcome is Outcome.QEMU_ERROR:
            stderr = "".join(self.stderr_parts).strip()
            return outcome, f"QEMU exited with status {status}." + (f"\n{stderr}" if stderr else "")
        return outcome, ""


CMDLINE_LIMIT = CMDLINE_MAX - 1  # bytes the loader keeps (the boot info's NUL-terminated field)


def check_image(image: Path) -> None:
    """Raise RunError unless `image` is a directory (served as a FAT disk) or a file that looks
    like a disk: a GPT header at LBA 1 or at least an MBR boot signature. Anything else would only
    boot into the UEFI shell and wait for the time limit."""
    if not image.exists():
        raise RunError(f"The image `{image}` does not exist; run `kmtool build` first.")
    if image.is_dir():
        return
    try:
        with open(image, "rb") as f:
            head = f.read(2 * SECTOR_SIZE)
    except OSError as err:
        raise RunError(f"The image `{image}` cannot be read: {err.strerror or err}.") from err
    gpt_header = head[SECTOR_SIZE : SECTOR_SIZE + len(GPT_SIGNATURE)]  # LBA 1
    boot_signature = head[SECTOR_SIZE - 2 : SECTOR_SIZE]  # the last two bytes of sector 0
    if gpt_header != GPT_SIGNATURE and boot_signature != MBR_SIGNATURE.to_bytes(2, "little"):
        raise RunError(
            f"`{image}` is not a disk image (no GPT header at LBA 1 and no MBR boot signature "
            "0x55AA), so it would not boot; pass the image `kmtool build` writes or a directory."
        )


def check_cmdline(cmdline: str, appended_hold: bool = False) -> None:
    """Raise RunError when the kernel command line is longer than the loader keeps (it would be
    cut silently)."""
    size = len(cmdline.encode("utf-8"))
    if size > CMDLINE_LIMIT:
        held = " (with the `hold` that kmtool appends for --dump)" if appended_hold else ""
        raise RunError(
            f"The kernel command line is {size} bytes long{held}, over the loader's limit of "
            f"{CMDLINE_LIMIT} bytes."
        )


def check_dump_target(path: Path) -> None:
    """Raise RunError unless the dump's directory exists and a file can be created in it, so a
    run never boots only to fail at the dump."""
    directory = path.parent
    if not directory.is_dir():
        raise RunError(f"The directory `{directory}` for the dump `{path}` does not exist.")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise RunError(
            f"The dump `{path}` cannot be written: the directory `{directory}` is not writable "
            f"({err.strerror or err})."
        ) from err


def _qemu_child_setup() -> None:
    """In the child before exec (both settings are inherited across execve):

    - PR_SET_PDEATHSIG: Linux SIGKILLs QEMU when kmtool dies, however it dies (a SIGTERM or SIGKILL
      skips kmtool's clean-up, and QEMU is in its own session).
    - PR_SET_THP_DISABLE: no transparent huge pages for guest RAM. QEMU madvises guest RAM for huge
      pages; with lazily backed RAM the guest's first write to a fresh 2 MiB area then makes the
      host zero 2 MiB, a stall of milliseconds that lands inside the guest's TSC-timed bootstrap
      (benchmarks/bench_bootstrap.py measures both). The guest touches little of its RAM, so huge
      pages buy nothing here. KMTOOL_HOST_THP=1 keeps the host's setting (the benchmark compares).
    """
    import ctypes

    pr_set_pdeathsig = 1
    pr_set_thp_disable = 41
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        if os.environ.get("KMTOOL_HOST_THP") != "1":
            libc.prctl(pr_set_thp_disable, 1, 0, 0, 0)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


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
    session = Session(image, options, echo)
    try:
        session.start()
        session.wait(until_held=session.hold, keep_at_timeout=options.dump is not None)
        assert session.process is not None
        if options.dump is not None and session.timed_out and session.process.poll() is None:
            # A hang: the VM as it is at the time limit is the most useful dump there is.
            monitor = session.connect()
            monitor.stop()
            hang_dump = capture(monitor, options.dump, options.dump_format, progress)
            session.quit()
            message = (
                f"No exit within {options.timeout:g} s; kmtool stopped the VM, dumped it and "
                "quit QEMU."
            )
            return session.result(Outcome.TIMEOUT, message, dump=hang_dump, dump_reason="timeout")
        if not session.serial.held.is_set():
            outcome, message = session.exit_outcome()
            if options.dump is not None:
                message = (message + " " if message else "") + _no_dump_reason(outcome)
            return session.result(outcome, message.strip())
        monitor = session.connect()
        monitor.stop()
        session.ended = time.monotonic()
        dump = None
        if options.dump is not None:
            dump = capture(monitor, options.dump, options.dump_format, progress)
        session.quit()
        state = session.serial
        outcome = outcomes.from_held_run(
            state.report is not None or state.report_at is not None, state.saw_panic, state.saw_fail
        )
        reason = None if dump is None else ("panic" if state.saw_panic else "ready")
        return session.result(outcome, dump=dump, held=True, dump_reason=reason)
    finally:
        session.close()


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


class HeldVm:
    """A VM stopped at `KM-READY` (or `KM-PANIC-HELD`), with its QMP monitor."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def qmp(self) -> Monitor:
        return self._session.connect()

    @property
    def report(self) -> dict[str, Any] | None:
        return self._session.serial.report

    @property
    def serial(self) -> str:
        return "\n".join(self._session.serial.lines)

    @property
    def panicked(self) -> bool:
        return self._session.serial.saw_panic

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
    session = Session(image, options, echo, hold=True)
    try:
        session.start()
        session.wait(until_held=True)
        if not session.serial.held.is_set():
            outcome, message = session.exit_outcome()
            raise RunError(
                f"The kernel never reported `{READY_MARKER}` (outcome {outcome.value}; "
                f"see `{session.serial_log}`). {message}".strip()
            )
        session.connect().stop()
        yield HeldVm(session)
        session.quit()
    finally:
        session.close()
