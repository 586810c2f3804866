"""The live run policy: boot with guest RAM in a shared file, leave QEMU running, write the session.

    started = run_live(Path("build/kmtool.img"), RunOptions(memory=parse_size("512M")),
                       Path("build/live/session.json"))
    started.result.outcome, started.session          # Outcome.PASS, the session file

A live run (docs/design.md §12) is a held run (`hold` on the kernel command line) whose guest RAM
is the file FILE.ram beside the session file FILE.json (`memory-backend-file`, `share=on`;
kmtool/qemu/cmdline.py), whose QMP socket is FILE.qmp, and whose QEMU is detached
(kmtool/qemu/process.py): it runs on after kmtool returns, serial output still going to
BUILD_DIR/serial.log. kmtool returns

- when the kernel is ready or held after a panic (the outcome pass, fail or panic), or when the
  time limit runs out (timeout: the hung guest is left running, the state worth inspecting);
  the VM keeps running and the session file is written;
- with `gdb`, as soon as QEMU waits for the debugger (no outcome yet);
- when the CPU triple-faults before that: QEMU pauses the VM at the reset (a live run has no
  exception log, but still `-action shutdown=pause`; QMP's status says so), the outcome reset,
  the session written, the paused guest left for `kmtool inspect --live`;
- when QEMU exits before any of that: the outcome as for `kmtool run`, no session, the RAM file
  removed.

The session file (kmtool/schemas/livesession.py) is written last, once QEMU's RAM ranges are
known, so a session file always names a QEMU that was reachable. A session that still runs at the
same path is refused; a stale one is cleared away first.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

from kmtool.artifacts import KERNEL_ELF
from kmtool.live.session import (
    LiveError,
    SessionPaths,
    end_session,
    read_session,
    why_stale,
    write_session,
)
from kmtool.qemu.cmdline import GDB_HOST
from kmtool.qemu.dump import ram_ranges
from kmtool.qemu.outcome import Outcome
from kmtool.qemu.process import Echo, Stop
from kmtool.qemu.runner import (
    Boot,
    RunOptions,
    RunResult,
    boot_vm,
    exit_outcome,
    run_result,
    stopped_at,
)
from kmtool.schemas.livesession import session_document


@dataclass(frozen=True)
class LiveStart:
    """What `run_live` left: the run so far (None while QEMU waits for gdb) and the session file
    (None when QEMU had ended, so there is no session)."""

    result: RunResult | None
    session: Path | None
    gdb: str | None = None  # "127.0.0.1:PORT" when QEMU waits for gdb


def run_live(
    image: Path, options: RunOptions, session: Path, echo: Echo | None = None
) -> LiveStart:
    """Boot `image` as a live session described by the file `session` (see the module
    docstring). LiveError when a session runs there already; RunError/ToolError when the run
    cannot be set up."""
    paths = SessionPaths.of(session)
    _clear(paths)
    paths.session.parent.mkdir(parents=True, exist_ok=True)
    options = replace(options, hold=True, ram_file=paths.ram, qmp_socket=paths.qmp,
                      stderr_log=paths.stderr)  # fmt: skip
    try:
        with boot_vm(image, options, echo, hold=True) as boot:
            if options.gdb:
                _leave_running(boot, paths)
                return LiveStart(None, paths.session, f"{GDB_HOST}:{options.gdb_port}")
            boot.wait(until_held=True, keep_at_limit=True)
            if boot.process.held.is_set():
                result = run_result(boot, boot.process.serial.outcome(), held=True)
            elif boot.ended_by is Stop.RESET:
                result = _reset(boot, paths)
            elif boot.ended_by is Stop.TIME_LIMIT and boot.process.running:
                limit = f"No ready report within {options.timeout:g} s"
                result = run_result(boot, Outcome.TIMEOUT, f"{limit}; the guest runs on.")
            else:
                outcome, message = exit_outcome(boot)
                why = "QEMU ended before the kernel was ready, so there is no live session."
                _remove(paths)
                return LiveStart(run_result(boot, outcome, f"{message} {why}".strip()), None)
            _leave_running(boot, paths)
            result.live_session = paths.session
            return LiveStart(result, paths.session)
    except BaseException:
        _remove(paths)
        raise


def _reset(boot: Boot, paths: SessionPaths) -> RunResult:
    """A triple fault before the ready report: QEMU paused the VM at the reset, which stays as it
    is for `kmtool inspect --live` (a live run has no exception log to name the chain from)."""
    rip, where = stopped_at(boot, boot.process.monitor())
    message = (
        f"The CPU triple-faulted before the ready report; QEMU paused the VM at the reset.{where} "
        "A live run keeps no exception log, so the chain is not named here: "
        f"`kmtool inspect --live {paths.session}` decodes the paused guest, its descriptor "
        "tables included."
    )
    return run_result(boot, Outcome.RESET, message, rip=rip)


def _leave_running(boot: Boot, paths: SessionPaths) -> None:
    """Write the session file of the running QEMU and let it go."""
    options = boot.options
    process = boot.process
    assert process.process is not None
    ranges = ram_ranges(process.monitor())  # connects: QEMU is up (and waits, with gdb)
    kernel = (options.kernel or options.build_dir / KERNEL_ELF).absolute()
    doc = session_document(
        pid=process.process.pid,
        qmp=str(paths.qmp),
        ram=str(paths.ram),
        ranges=[(r.phys, r.offset, r.size) for r in ranges],
        gdb=f"{GDB_HOST}:{options.gdb_port}" if options.gdb else None,
        kernel=str(kernel) if kernel.is_file() else None,
        build_dir=str(options.build_dir.absolute()),
    )
    write_session(paths, doc)
    process.detach()


def _clear(paths: SessionPaths) -> None:
    """Refuse a session that still runs at `paths`; clear a stale or broken one away."""
    if paths.session.is_file():
        try:
            existing = read_session(paths.session, require_live=False)
        except LiveError:
            existing = None  # not a session file: ours to overwrite, by its name
        if existing is not None and why_stale(existing) is None:
            raise LiveError(
                f"A live session runs already at `{paths.session}` (QEMU pid {existing.pid}); "
                f"end it with `kmtool run --stop {paths.session}`, or pass another `--session`."
            )
        if existing is not None:
            end_session(paths.session)
    _remove(paths)


def _remove(paths: SessionPaths) -> None:
    for path in (paths.ram, paths.qmp, paths.session):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
