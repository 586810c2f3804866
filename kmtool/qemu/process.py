"""One QEMU process: start it, watch its serial output and stderr, wait, stop it, quit or kill it.

    process = QemuProcess(Launch(argv, serial_log, debugcon_log, qmp_socket), echo=print)
    process.start()
    stop = process.wait(limit=60.0, until_held=True)    # Stop.HELD: the kernel waits for kmtool
    process.monitor().stop()                            # QMP, only with a qmp_socket
    process.quit()
    process.close()                                     # always: kills what is left

QEMU runs with stdin on /dev/null, in its own session (a Ctrl-C at the terminal reaches kmtool, not
QEMU), and dies with kmtool however kmtool dies. Two threads read its pipes: stdout carries COM1,
whose every byte goes to `serial_log` as it arrives and through a `SerialWatcher` (serial.py),
each line to `echo`; stderr is kept, and a KVM internal error in it ends the wait. What the output
means for the run is the policy's business (runner.py); this module only reports why a wait ended.

A *detached* launch (a live session, docs/design.md §12) is meant to outlive kmtool: QEMU's stdout
goes straight into `serial_log` and its stderr into `stderr_log`, the threads follow those files
instead of pipes, and QEMU does not die with kmtool. `detach()` lets it go: the threads stop and
`close` no longer kills it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Any

from kmtool.errors import RunError
from kmtool.qemu.exceptions import ExceptionLog
from kmtool.qemu.qmp import Monitor
from kmtool.qemu.serial import Event, SerialWatcher

KVM_FAILURE = "KVM internal error"
KILL_GRACE_SECONDS = 2.0
POLL_SECONDS = 0.05
STATUS_POLL_SECONDS = 0.5  # how often a detached run without exception log asks QMP's status
RESET_STATUS = "shutdown"  # QMP query-status of a VM paused at a reset (-action shutdown=pause)

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Launch:
    """What to start: the full argv (cmdline.build_argv) and the files it names that kmtool
    reads or writes. `qmp_socket` is None when the command line has no QMP server."""

    argv: list[str]
    serial_log: Path
    debugcon_log: Path
    qmp_socket: Path | None = None
    exception_log: Path | None = None  # the FIFO of `-D` (cmdline.MachineSpec.exception_log)
    detached: bool = False  # QEMU may outlive kmtool (see the module docstring)
    stderr_log: Path | None = None  # where a detached QEMU's stderr goes


class Stop(Enum):
    """Why `QemuProcess.wait` returned."""

    EXITED = "exited"  # QEMU ended by itself; `returncode` is its status
    HELD = "held"  # the kernel reported it is held; QEMU still runs
    RESET = "reset"  # a triple fault: QEMU paused the VM at it (exception log) and still runs
    TIME_LIMIT = "time-limit"  # the limit ran out; QEMU was killed, or still runs if asked to
    KVM_FAILED = "kvm-failed"  # QEMU reported a KVM internal error and kmtool killed it


class SerialTap:
    """What the serial reader does with each chunk of COM1 output: append it to `log`, feed the
    watcher, echo each line, and set `held` once a held marker has been echoed.

    An `echo` that raises is dropped (a closed terminal must not stall QEMU's serial pipe).
    """

    def __init__(
        self,
        watcher: SerialWatcher,
        log: IO[bytes],
        echo: Echo | None = None,
        clock: Callable[[], float] = time.monotonic,
        held: threading.Event | None = None,
    ) -> None:
        self.watcher = watcher
        self.log = log
        self.echo = echo
        self.clock = clock
        self.held = held if held is not None else threading.Event()

    def take(self, chunk: bytes) -> None:
        """One chunk as read from the pipe."""
        self.log.write(chunk)
        self.log.flush()
        self._show(self.watcher.feed(chunk, self.clock()))

    def finish(self) -> None:
        """The pipe closed: the last unfinished line counts too."""
        self._show(self.watcher.finish(self.clock()))

    def _show(self, events: list[Event]) -> None:
        for event in events:
            if self.echo is not None:
                try:
                    self.echo(event.line)
                except Exception:  # noqa: BLE001 -- see the class docstring
                    self.echo = None
            if event.marker is not None and event.marker.held:
                self.held.set()


class QemuProcess:
    """The QEMU of one run. Nothing happens before `start`; `close` releases everything."""

    def __init__(self, launch: Launch, echo: Echo | None = None) -> None:
        self.launch = launch
        self.serial = SerialWatcher()
        self.echo = echo
        self.held = threading.Event()  # set by the serial reader after a held marker
        self.kvm_failed = threading.Event()
        self.stderr_parts: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.ended: float | None = None
        self.killed = False  # kmtool ended QEMU (time limit, KVM failure, clean-up)
        self._monitor: Monitor | None = None
        self._next_status = 0.0  # when _paused_at_reset may ask QMP again
        self._threads: list[threading.Thread] = []
        self._let_go = threading.Event()  # set by `detach`: the followers stop, QEMU lives on
        self.exceptions = (
            None if launch.exception_log is None else ExceptionLog(launch.exception_log)
        )

    @property
    def argv(self) -> list[str]:
        return self.launch.argv

    @property
    def returncode(self) -> int | None:
        """QEMU's exit status once it was reaped, else None."""
        return None if self.process is None else self.process.returncode

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_parts)

    def start(self) -> None:
        """Start QEMU and its two reader threads; RunError when it cannot be started."""
        self.launch.debugcon_log.write_bytes(b"")
        if self.exceptions is not None:
            self.exceptions.open()
        if self.launch.detached:
            self._start_detached()
            return
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
        log = open(self.launch.serial_log, "wb")  # noqa: SIM115 (closed by the reader thread)
        tap = SerialTap(self.serial, log, self.echo, held=self.held)
        self._spawn(self._read_serial, self.process.stdout.fileno(), tap)
        self._spawn(self._read_stderr, self.process.stderr.fileno())

    def _start_detached(self) -> None:
        """`start` for a detached launch: QEMU writes its output files itself, kmtool follows."""
        stderr_log = self.launch.stderr_log
        assert stderr_log is not None
        with open(self.launch.serial_log, "wb") as out, open(stderr_log, "wb") as err:
            try:
                self.process = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    start_new_session=True, preexec_fn=_detached_child_setup,
                )  # fmt: skip
            except OSError as error:
                raise RunError(
                    f"Could not start `{self.argv[0]}`: {error.strerror or error}."
                ) from error
        self.started = time.monotonic()
        sink = open(os.devnull, "wb")  # noqa: SIM115 (closed by the reader thread)
        tap = SerialTap(self.serial, sink, self.echo, held=self.held)
        self._spawn(self._read_serial, os.open(self.launch.serial_log, os.O_RDONLY), tap)
        self._spawn(self._read_stderr, os.open(stderr_log, os.O_RDONLY))

    def detach(self) -> None:
        """Let a detached QEMU run on after kmtool: stop following its output, drop the monitor
        connection; `close` then leaves QEMU alone."""
        assert self.launch.detached
        self._let_go.set()
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None
        self._join_readers()

    def wait(self, limit: float | None, until_held: bool, keep_at_limit: bool = False) -> Stop:
        """Block until QEMU exits, `limit` seconds from the start run out (QEMU is then killed,
        or with `keep_at_limit` left running), KVM fails (QEMU is killed), or -- with
        `until_held` -- the kernel reports it is held. Sets `ended` unless QEMU still runs."""
        assert self.process is not None
        deadline = None if limit is None else self.started + limit
        stop = Stop.EXITED
        while self.process.poll() is None:
            if until_held and self.held.is_set():
                return Stop.HELD
            if self.exceptions is not None and self.exceptions.triple.is_set():
                self.mark_ended()
                return Stop.RESET
            if self._paused_at_reset():
                self.mark_ended()
                return Stop.RESET
            if self.kvm_failed.is_set():
                self.kill()
                stop = Stop.KVM_FAILED
                break
            if deadline is not None and time.monotonic() >= deadline:
                if keep_at_limit:
                    self.ended = time.monotonic()
                    return Stop.TIME_LIMIT
                self.kill()
                stop = Stop.TIME_LIMIT
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=POLL_SECONDS)
        self.mark_ended()
        self._join_readers()
        return stop

    def _paused_at_reset(self) -> bool:
        """A detached launch has no exception log: whether QMP says the VM is paused at a reset
        (asked at most every STATUS_POLL_SECONDS; False while the socket does not answer yet)."""
        if not self.launch.detached or self.exceptions is not None:
            return False
        now = time.monotonic()
        if now < self._next_status or self.launch.qmp_socket is None:
            return False
        self._next_status = now + STATUS_POLL_SECONDS
        if not self.launch.qmp_socket.exists():
            return False
        try:
            return self.monitor().status() == RESET_STATUS
        except RunError:
            self._monitor = None
            return False

    def mark_ended(self) -> None:
        """Take now as the end of the run, unless an end was taken already."""
        self.ended = self.ended or time.monotonic()

    def monitor(self) -> Monitor:
        """The QMP monitor (connected on first use); RunError without a QMP socket."""
        if self.launch.qmp_socket is None:
            raise RunError("This run has no QMP monitor; start it with a dump or held.")
        if self._monitor is None:
            self._monitor = Monitor(self.launch.qmp_socket)
        return self._monitor

    def quit(self) -> None:
        """Ask QEMU to quit over QMP, then make sure it is gone."""
        if self._monitor is not None:
            self._monitor.quit()
            self._monitor.close()
            self._monitor = None
        if self.process is not None:
            try:
                self.process.wait(timeout=KILL_GRACE_SECONDS * 5)
            except subprocess.TimeoutExpired:
                self.kill()
        self.mark_ended()
        self._join_readers()

    def kill(self) -> None:
        """End QEMU: SIGTERM, then SIGKILL if it lingers."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        self.mark_ended()
        self.killed = True
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        """Release everything: monitor, process (unless detached), threads (idempotent)."""
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None
        if not self._let_go.is_set():
            self.kill()
        self._let_go.set()
        self._join_readers()
        if self.exceptions is not None:
            self.exceptions.close()

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _join_readers(self) -> None:
        for thread in self._threads:
            thread.join(timeout=KILL_GRACE_SECONDS)

    def _read_serial(self, fd: int, tap: SerialTap) -> None:
        with tap.log:
            for chunk in self._chunks(fd):
                tap.take(chunk)
            tap.finish()

    def _read_stderr(self, fd: int) -> None:
        for chunk in self._chunks(fd):
            self.stderr_parts.append(chunk.decode("utf-8", errors="replace"))
            if KVM_FAILURE in "".join(self.stderr_parts[-2:]):
                self.kvm_failed.set()

    def _chunks(self, fd: int) -> Iterator[bytes]:
        """What QEMU writes to `fd`: a pipe's chunks up to EOF; for a detached launch, a file's
        chunks as they are appended, until QEMU exits (then what is left) or `detach`."""
        if not self.launch.detached:
            while chunk := _read(fd):
                yield chunk
            return
        try:
            while not self._let_go.is_set():
                chunk = _read(fd)
                if chunk:
                    yield chunk
                elif self.process is not None and self.process.poll() is not None:
                    while chunk := _read(fd):
                        yield chunk
                    return
                else:
                    time.sleep(POLL_SECONDS)
        finally:
            os.close(fd)


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


def _detached_child_setup() -> None:
    """`_qemu_child_setup` without the death signal: a detached QEMU outlives kmtool."""
    import ctypes

    pr_set_thp_disable = 41
    with contextlib.suppress(OSError, AttributeError):
        if os.environ.get("KMTOOL_HOST_THP") != "1":
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_thp_disable, 1, 0, 0, 0)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""
