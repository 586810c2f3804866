"""`kmtool inspect DUMP`: decode a memory dump and check what the memory manager left in it.

Thin: options are parsed here, decoding is kmtool.dump.inspection, drawing is kmtool.dump.render.
Exit status: 0 when every check passes, 1 when one fails or the dump cannot be decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kmtool.cli.app import print_json
from kmtool.errors import KmtoolError

if TYPE_CHECKING:
    from kmtool.dump.inspection import Inspection, Options
    from kmtool.live.session import Session

PART_CHOICES = ("summary", "cpu", "descriptors", "boot", "memmap", "pagetables", "frames", "heap", "fault",
                "aspaces", "checks", "all")  # fmt: skip


class Address(click.ParamType):
    """A 64-bit address: 0x hex (the usual spelling), or decimal; underscores allowed."""

    name = "ADDR"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().replace("_", "")
        try:
            number = int(text, 0)
        except ValueError:
            self.fail(f"`{value}` is not an address (write it as 0x... or in decimal).", param, ctx)
        if not 0 <= number < 1 << 64:
            self.fail(f"`{value}` is not a 64-bit address.", param, ctx)
        return number


ADDRESS = Address()


@click.command()
@click.argument("dump", required=False, type=click.Path(dir_okay=True, path_type=Path))
@click.option(
    "--kernel",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The kernel ELF: find the core-info block through its symbols.",
)
@click.option("--cr3", type=ADDRESS, help="Walk the page tables under this PML4 (any x86-64 dump).")
@click.option(
    "--paging",
    type=click.Choice(["4-level", "5-level"]),
    help="The paging mode of the tables when the dump records no CR4 (5-level: CR4.LA57, PML5 "
    "tables, 57-bit addresses); default: CPU 0's CR4, else 4-level.",
)
@click.option("--base", type=ADDRESS, help="Physical address of a raw image's first byte [0].")
@click.option(
    "--part",
    "parts",
    type=click.Choice(PART_CHOICES),
    multiple=True,
    help="Show this part in full (repeatable); default: the summary.",
)
@click.option(
    "--walk",
    "walk_vas",
    type=ADDRESS,
    multiple=True,
    metavar="VA",
    help="Show each level's table, index and entry on the way to VA (repeatable).",
)
@click.option(
    "--pa",
    "pas",
    type=ADDRESS,
    multiple=True,
    metavar="PA",
    help="List every virtual address that maps physical PA (repeatable).",
)
@click.option(
    "--print",
    "expressions",
    multiple=True,
    metavar="EXPR",
    help="Print a kernel global with its C type (needs --kernel): NAME, then any .member, "
    "->member or [index] (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
@click.option(
    "--live",
    is_flag=True,
    help="Inspect the running guest of a live session (`kmtool run --live`) instead of a dump: "
    "DUMP is then its session file [default: BUILD_DIR/live/session.json]; the guest is paused "
    "while it is read and resumed if it was running; --kernel defaults to the session's kernel.",
)
@click.option(
    "--svg",
    "svg",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw physical memory by owner and every address space's mappings to this SVG file.",
)
@click.pass_context
def inspect(
    ctx: click.Context,
    dump: Path | None,
    kernel: Path | None,
    cr3: int | None,
    paging: str | None,
    base: int | None,
    parts: tuple[str, ...],
    walk_vas: tuple[int, ...],
    pas: tuple[int, ...],
    expressions: tuple[str, ...],
    as_json: bool,
    live: bool,
    svg: Path | None,
) -> None:
    """Decode a memory dump: CPU, boot info, page tables, frames, heap.

    DUMP is a QEMU ELF core (`kmtool run --dump FILE`) or a raw physical image (`--dump-format
    raw`; its FILE.layout.json is read when present). The kernel's core-info block is found by
    scanning for its magic, or through `--kernel`; `--cr3` walks the page tables of any x86-64
    dump, even of another kernel. With `--live`, the running guest of a live session is decoded
    the same way. Exits 1 when a check fails.
    """
    from kmtool.dump.inspection import Options, inspect_dump, inspect_source

    asked = _Asked(parts, walk_vas, pas, expressions, as_json, svg)
    if live:
        from kmtool.live.snapshot import paused

        session = _session(dump, base)
        kernel = kernel or session.kernel
        options = Options(kernel=kernel, cr3=cr3, walk=list(walk_vas), pa=list(pas), paging=paging)
        _need_kernel(options, expressions)
        with paused(session) as source:
            _show(ctx, inspect_source(source, options), session.path.name, asked)
        return
    if dump is None:
        raise click.UsageError("Missing argument 'DUMP'.")
    options = Options(kernel=kernel, cr3=cr3, base=base, walk=list(walk_vas), pa=list(pas),
                      paging=paging)  # fmt: skip
    _need_kernel(options, expressions)
    _show(ctx, inspect_dump(dump, options), dump.name, asked)


def _session(path: Path | None, base: int | None) -> Session:
    """The live session `--live` names: DUMP, or the build's default session file."""
    from kmtool.artifacts import build_dir
    from kmtool.live.session import default_session, read_session

    if base is not None:
        raise KmtoolError("`--base` places a raw image; a live session has its RAM ranges.")
    session = read_session(path or default_session(build_dir()))
    if session.kernel is not None and not session.kernel.is_file():
        return Session(session.path, {**session.doc, "kernel": None})  # rebuilt away: no default
    return session


def _need_kernel(options: Options, expressions: tuple[str, ...]) -> None:
    if expressions and options.kernel is None:
        raise KmtoolError("`--print` reads the kernel's types from its ELF: pass `--kernel ELF`.")


@dataclass(frozen=True)
class _Asked:
    """What the options ask to be shown."""

    parts: tuple[str, ...]
    walk_vas: tuple[int, ...]
    pas: tuple[int, ...]
    expressions: tuple[str, ...]
    as_json: bool
    svg: Path | None


def _show(ctx: click.Context, ins: Inspection, name: str, asked: _Asked) -> None:
    """Print what was asked of the inspection `ins` of the dump called `name`; exit 1 when a
    check failed. rich and kmtool.dump.render are imported only to draw: `--json` needs neither."""
    parts, walk_vas, pas, expressions = asked.parts, asked.walk_vas, asked.pas, asked.expressions
    as_json, svg = asked.as_json, asked.svg

    if expressions:
        _print(ins, list(expressions), as_json)
        return
    if svg is not None:
        from kmtool.picture import dump as picture

        picture.write(ins, name, svg)
    chosen: list[str] = []
    if as_json:
        print_json(ins.to_json())
    else:
        from kmtool.cli.app import console
        from kmtool.dump import render

        chosen = list(render.PARTS) if "all" in parts else list(dict.fromkeys(parts))
        if not chosen and not (walk_vas or pas):
            chosen = ["summary"]
        doc = ins.to_json(span_list="frames" in chosen)  # only `frames` draws the span list
        for i, part in enumerate(chosen):
            if i:
                console.print()
            console.print(render.RENDERERS[part](doc))
        if walk_vas or pas:
            if chosen:
                console.print()
            console.print(render.walks(doc))
    failed = ins.failed
    if failed:
        if not as_json and not {"summary", "checks"} & set(chosen):
            from kmtool.cli.app import err_console

            names = ", ".join(f"`{c.name}`" for c in failed)
            err_console.print(f"[red]{len(failed)} of {len(ins.checks)} checks failed:[/] {names}.")
        ctx.exit(1)


def _print(ins: Inspection, expressions: list[str], as_json: bool) -> None:
    """`--print`: each expression's value, read through the kernel's tables (or the dump's)."""
    from rich.text import Text

    from kmtool.cli.app import console
    from kmtool.dump.printer import print_expressions, virtual_reader
    from kmtool.elf.dwarf import read_dwarf

    assert ins.options.kernel is not None
    tables = ins.kernel_tables or ins.tables
    if tables is None:
        raise KmtoolError("`--print` needs page tables to read through, and the dump has none.")
    read = virtual_reader(ins.source.memory, tables.translate)
    elf = ins.kernel.elf if ins.kernel is not None else None

    def symbolize(address: int) -> str | None:  # a function pointer's target, when it is one
        return None if elf is None or elf.function_at(address) is None else elf.describe(address)

    printed = print_expressions(read_dwarf(ins.options.kernel), read, expressions, symbolize)
    if as_json:
        print_json({"print": [p.to_json() for p in printed]})
        return
    for p in printed:
        console.print(Text(p.text()), soft_wrap=True)
