"""`kmtool gdb [SESSION] [-- GDB ARGS...]`: gdb attached to QEMU's stub, with the kernel's symbols,
breakpoints that work before the kernel is mapped, and the `km` commands (docs/design.md §12).

Thin: the target is decided by kmtool.gdb.target, the gdbinit written by kmtool.gdb.gdbinit, gdb
started by kmtool.gdb.launch. Exit status: gdb's; 1 for a bad input (a missing or stale session,
a session without a stub, a missing kernel ELF) before gdb starts.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="[SESSION] [-- GDB_ARGS...]")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="TCP port of QEMU's gdb stub [default: the session's, else 1234].",
)
@click.option(
    "--kernel",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The kernel ELF whose symbols gdb loads [default: the session's, else BUILD/kernel.elf].",
)
@click.option(
    "--build-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the session (BUILD/live/session.json) and kernel are looked for and the gdbinit "
    "is written [default: build/ in the source tree containing the current directory].",
)
def gdb(
    args: tuple[str, ...], port: int | None, kernel: Path | None, build_dir: Path | None
) -> None:
    """Start gdb attached to the guest of `kmtool run --gdb` or `kmtool run --live --gdb`.

    SESSION is a live session file (default: BUILD/live/session.json when its QEMU runs); the
    `km` commands (km summary, walk VA, pa PA, frames, heap, fault, aspaces) need one. Everything
    after `--` goes to gdb after the generated gdbinit, e.g. `-- -batch -ex 'break kmain'`.
    """
    from kmtool.artifacts import build_dir as default_build_dir
    from kmtool.cli.app import err_console
    from kmtool.gdb import launch, target

    build_dir = build_dir if build_dir is not None else default_build_dir()
    session = Path(args[0]) if args and not args[0].startswith("-") else None
    extra = list(args[1:] if session is not None else args)
    chosen = target.resolve(session, port, kernel, build_dir)
    if chosen.note:
        err_console.print(chosen.note, soft_wrap=True, highlight=False)
    argv = launch.gdb_argv(launch.write_gdbinit(chosen, build_dir), extra)
    launch.exec_gdb(argv)
