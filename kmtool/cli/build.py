"""`kmtool build`: compile the kernel and the loader and assemble the GPT disk image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kmtool.cli.app import console, err_console


@click.command()
@click.option(
    "--build-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where outputs go (default: build/ in the source tree).",
)
@click.option("--release", is_flag=True, help="Build without debug checks (KM_DEBUG=0, NDEBUG).")
@click.option("-v", "--verbose", is_flag=True, help="Print every command the build runs.")
@click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Source tree (default: the one containing the current directory).",
)
def build(build_dir: Path | None, release: bool, verbose: bool, root: Path | None) -> None:
    """Compile the kernel and loader with clang/lld and assemble the GPT disk image.

    Outputs: kernel.elf, BOOTX64.EFI and kmtool.img in the build directory. Incremental: ninja
    rebuilds only what changed, and a build with nothing to do runs no compiler.
    """
    from kmtool.artifacts import find_root
    from kmtool.build import driver

    source_root = root if root is not None else find_root(Path.cwd())
    progress = _Progress(verbose)
    try:
        with progress:
            result = driver.build(
                source_root,
                build_dir,
                release=release,
                verbose=verbose,
                on_event=progress.handle,
            )
    except driver.BuildFailure as failure:
        for f in failure.failures:  # with -v ninja has already printed the command
            for line in f.lines:
                err_console.out(line, highlight=False)
        raise
    _summary(result, release)


class _Progress:
    """A rich progress bar on a terminal; plain `[n/N] step` lines otherwise (or with -v)."""

    def __init__(self, verbose: bool):
        self.plain = verbose or not console.is_terminal
        self._bar: Any = None  # rich.progress.Progress, imported only on a terminal
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if not self.plain:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn("[bold]building[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                console=console,
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def handle(self, event: object) -> None:
        from kmtool.build.driver import Output, Status

        if isinstance(event, Status):
            if self._bar is not None and self._task is not None:
                self._bar.update(
                    self._task, completed=event.done, total=event.total, description=event.text
                )
            else:
                console.out(f"[{event.done}/{event.total}] {event.text}", highlight=False)
        elif isinstance(event, Output):
            console.out(event.line, highlight=False)


def _size(path: Path) -> str:
    from kmtool.units import size_text

    try:
        return size_text(path.stat().st_size)
    except OSError:
        return "?"


def _shown(path: Path) -> str:
    from kmtool.artifacts import shown

    return str(shown(path))


def _summary(result: object, release: bool) -> None:
    from kmtool.artifacts import KERNEL_ELF, LOADER_EFI
    from kmtool.build.driver import BuildResult

    assert isinstance(result, BuildResult)
    p = result.paths
    if result.up_to_date:
        console.print(f"{_shown(p.image)} is up to date ({result.seconds:.2f} s).", soft_wrap=True)
        return
    mode = "release" if release else "debug"
    console.print(
        f"Built {_shown(p.image)} ({_size(p.image)}, {mode}): {KERNEL_ELF} {_size(p.kernel)}, "
        f"{LOADER_EFI} {_size(p.loader)}; {len(result.steps)} steps in {result.seconds:.2f} s.",
        soft_wrap=True,
    )
