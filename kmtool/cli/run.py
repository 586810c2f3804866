"""`kmtool run`: boot the image in QEMU with OVMF, show the serial output live, report the outcome.

Exit status = the outcome's (pass 0, fail 2, panic 3, reset 4, timeout 5, qemu-error 6); 1 stays
for user errors (a missing image, a bad --memory), 70 for a kmtool bug (kmtool/exitstatus.py has
the table). The work is done by kmtool.qemu.runner; this module parses options and prints.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kmtool.cli.app import console
from kmtool.errors import KmtoolError
from kmtool.qemu.cmdline import DEFAULT_MEMORY, GDB_PORT
from kmtool.units import suffix_size_text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from kmtool.qemu.process import Echo
    from kmtool.qemu.runner import RunOptions, RunResult


@click.command()
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.option(
    "--memory",
    default=suffix_size_text(DEFAULT_MEMORY),
    show_default=True,
    help="Guest RAM, e.g. 128M, 3G, 256G.",
)
@click.option("--cpus", default=1, show_default=True, type=click.IntRange(1, 64), help="vCPUs.")
@click.option("--cmdline", default="", help="Kernel command line (e.g. `test`), via fw_cfg.")
@click.option(
    "--timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds until QEMU is killed (outcome timeout); none with --gdb.",
)
@click.option(
    "--gdb", is_flag=True, help="Start QEMU's gdb stub on 127.0.0.1:GDB_PORT and wait for gdb."
)
@click.option(
    "--gdb-port",
    default=GDB_PORT,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="TCP port of the gdb stub (loopback only).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a summary.")
@click.option(
    "--dump",
    type=click.Path(dir_okay=False, path_type=Path),
    help="When the kernel is ready (or panics, or the time limit runs out), stop the VM and write "
    "its memory here. kmtool appends `hold` to the kernel command line so the kernel waits to be "
    "dumped; that is why its banner shows `hold`.",
)
@click.option(
    "--dump-format",
    type=click.Choice(["elf", "raw", "kdump"]),
    default="elf",
    show_default=True,
    help="QEMU ELF core, raw physical memory (+ FILE.layout.json), or kdump-compressed (zlib).",
)
@click.option(
    "--live",
    is_flag=True,
    help="Back guest RAM with a shared sparse file and return once the kernel is ready (with "
    "--gdb: once QEMU waits for gdb), leaving QEMU running as a live session for `kmtool inspect "
    "--live`, `kmtool diff live:` and gdb.",
)
@click.option(
    "--session",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The live session file [default: BUILD_DIR/live/session.json]; the RAM file, QMP socket "
    "and QEMU's stderr sit beside it (.ram, .qmp, .stderr).",
)
@click.option(
    "--stop",
    is_flag=True,
    help="`kmtool run --stop [SESSION]`: end a live session (stop its QEMU, remove its RAM file "
    "and session file); SESSION defaults to --session's default.",
)
@click.option("--cpu", "cpu_model", help="QEMU CPU model (default: max under TCG, host under KVM).")
@click.option(
    "--build-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the image is and the serial/debugcon logs go [default: build/ in the source tree "
    "containing the current directory].",
)
def run(
    image: Path | None,
    memory: str,
    cpus: int,
    cmdline: str,
    timeout: float,
    gdb: bool,
    gdb_port: int,
    as_json: bool,
    dump: Path | None,
    dump_format: str,
    live: bool,
    session: Path | None,
    stop: bool,
    cpu_model: str | None,
    build_dir: Path | None,
) -> int:
    """Boot the image in QEMU with OVMF and report the outcome.

    IMAGE defaults to BUILD_DIR/kmtool.img. The serial output is shown live and saved to
    BUILD_DIR/serial.log (debugcon to BUILD_DIR/debugcon.log). Exit status: pass 0, fail 2,
    panic 3, reset 4, timeout 5, qemu-error 6.

    `--live` returns with that status once the kernel is ready and leaves QEMU running (`kmtool
    inspect --live`, `kmtool diff live: B`); `kmtool run --stop` ends the session.
    """
    from kmtool.artifacts import IMAGE, KERNEL_ELF
    from kmtool.artifacts import build_dir as default_build_dir
    from kmtool.cli.app import err_console, print_json
    from kmtool.qemu.cmdline import parse_size
    from kmtool.qemu.runner import RunOptions, run_image

    build_dir = build_dir if build_dir is not None else default_build_dir()
    if stop:
        return _stop(image or _session_file(build_dir, session), live or dump is not None)
    session = _live_session(build_dir, session, live, dump is not None)
    options = RunOptions(
        memory=parse_size(memory),
        cpus=cpus,
        cmdline=cmdline,
        timeout=None if gdb else timeout,
        gdb=gdb,
        gdb_port=gdb_port,
        cpu=cpu_model,
        dump=dump,
        dump_format=dump_format,
        build_dir=build_dir,
    )
    image = image or build_dir / IMAGE
    if gdb:
        _print_gdb_hint(err_console if as_json else console, build_dir / KERNEL_ELF, gdb_port)
    if session is not None:
        return _live(image, options, session, _echo, as_json)
    with _terminate_cleanly(), _DumpProgress(err_console if as_json else console) as progress:
        result = run_image(image, options, echo=None if as_json else _echo, progress=progress)

    print_json(result.to_json()) if as_json else _print_result(result)
    return result.exit_status


def _echo(line: str) -> None:
    """One serial line of the guest, as it arrives."""
    console.out(line, highlight=False)


def _session_file(build_dir: Path, session: Path | None) -> Path:
    from kmtool.live.session import default_session

    return session or default_session(build_dir)


def _live_session(build_dir: Path, session: Path | None, live: bool, dump: bool) -> Path | None:
    """The session file of a `--live` run, None for another run; KmtoolError on a misuse."""
    if not live:
        if session is not None:
            raise KmtoolError("`--session` names a live session: use it with `--live` or `--stop`.")
        return None
    if dump:
        raise KmtoolError("`--live` leaves the guest running; dump it with QMP, not `--dump`.")
    return _session_file(build_dir, session)


def _stop(session: Path, conflicting: bool) -> int:
    """`--stop`: end the live session `session` and say so."""
    from rich.text import Text

    from kmtool.live.session import end_session

    if conflicting:
        raise KmtoolError("`--stop` ends a session; it takes no `--live` or `--dump`.")
    console.print(Text(end_session(session)), soft_wrap=True)
    return 0


def _live(image: Path, options: RunOptions, session: Path, echo: Echo, as_json: bool) -> int:
    """`--live`: boot, leave QEMU running, print the run (or the gdb hint) and the session."""
    from rich.text import Text

    from kmtool.cli.app import err_console, print_json
    from kmtool.live.run import run_live

    with _terminate_cleanly():
        started = run_live(image, options, session, echo=None if as_json else echo)
    result = started.result
    if as_json:
        doc = {} if result is None else result.to_json()
        print_json({**doc, "live_session": None if started.session is None else
                    str(started.session), "gdb": started.gdb})  # fmt: skip
    elif result is not None:
        _print_result(result)
    if started.session is not None and not as_json:
        (err_console if as_json else console).print(Text(
            f"live session {started.session}: QEMU runs on; `kmtool inspect --live "
            f"{started.session}`, end it with `kmtool run --stop {started.session}`."
        ), soft_wrap=True)  # fmt: skip
    return 0 if result is None else result.exit_status


def _print_gdb_hint(target: Console, kernel: Path, port: int) -> None:
    """How to attach: `kmtool gdb`, whose gdbinit avoids the traps a bare `gdb -ex 'target
    remote'` falls into (docs/design.md §12)."""
    from rich.text import Text

    from kmtool.qemu.cmdline import GDB_HOST

    target.print(Text(f"QEMU waits for gdb on {GDB_HOST}:{port}; in another terminal run:"))
    target.print(Text(f"  kmtool gdb --port {port} --kernel {kernel}"), soft_wrap=True)


def _print_result(result: RunResult) -> None:
    """The end of a run for a terminal: the message, the dump, the outcome line, the panic."""
    from rich.text import Text

    if result.message:
        console.print(Text(result.message), soft_wrap=True)
    if result.report_error:
        console.print(Text(result.report_error, style="yellow"), soft_wrap=True)
    if result.dump is not None:
        console.print(Text(_dump_line(result)), soft_wrap=True)
    console.print(_summary(result), soft_wrap=True)
    if result.panic is not None:
        for line in result.panic.lines():
            console.print(Text(line), soft_wrap=True)


def _summary(result: RunResult) -> Text:
    """`outcome NAME: what it means (how QEMU ended, seconds, accelerator); exit status N`."""
    from rich.text import Text

    from kmtool.qemu.outcome import Outcome

    style = "green" if result.outcome is Outcome.PASS else "red"
    if result.live_session is not None:
        status = "held" if result.held else "still running"
        if result.outcome is Outcome.RESET:
            status = "paused by QEMU at the reset"
        status += ", QEMU left running as a live session"
    elif result.held:
        status = "held, then stopped by kmtool"
    elif result.outcome is Outcome.TIMEOUT and not result.killed:
        status = "stopped by kmtool at the time limit"
    elif result.reset_chain is not None:
        status = "paused by QEMU at the reset, then quit by kmtool"
    elif result.killed:
        status = "killed by kmtool"
    else:
        status = f"QEMU exit {result.qemu_status}"
    summary = Text(f"outcome {result.outcome.value}", style=f"bold {style}")
    summary += Text(
        f": {result.outcome.description} ({status}, {result.seconds:.1f} s, {result.accel}); "
        f"exit status {result.exit_status}"
    )
    return summary


def _dump_line(result: RunResult) -> str:
    """What was dumped, where, how much and when."""
    info = result.dump
    assert info is not None
    extra = f" + {info.layout_path}" if info.layout_path else ""
    when = {"timeout": " (taken when the time limit ran out)", "panic": " (after the panic)"}
    return (
        f"dump {info.path}{extra}: {info.format}, {info.bytes_written >> 20} MiB of RAM "
        f"in {info.seconds:.1f} s{when.get(result.dump_reason or '', '')}"
    )


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """While QEMU runs, turn SIGTERM into SystemExit(143) so the runner's clean-up (kill QEMU,
    remove the temp directory) happens; Linux kills QEMU by itself if kmtool dies harder."""
    import signal

    from kmtool.exitstatus import ExitStatus

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(ExitStatus.TERMINATED)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _DumpProgress:
    """A rich progress bar that appears only once a dump reports progress."""

    def __init__(self, target: object) -> None:
        from rich.console import Console

        assert isinstance(target, Console)
        self._console = target
        self._progress: object | None = None
        self._task: object | None = None

    def __enter__(self) -> _DumpProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        from rich.progress import Progress

        if isinstance(self._progress, Progress):
            self._progress.stop()

    def __call__(self, done: int, total: int) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TaskID,
            TextColumn,
            TimeRemainingColumn,
        )

        if self._progress is None:
            progress = Progress(
                TextColumn("dumping guest memory"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TimeRemainingColumn(),
                console=self._console,
                transient=True,
            )
            progress.start()
            self._task = progress.add_task("dump", total=total)
            self._progress = progress
        assert isinstance(self._progress, Progress) and isinstance(self._task, int)
        self._progress.update(TaskID(self._task), completed=done, total=total)
