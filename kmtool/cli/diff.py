"""`kmtool diff A B`: what changed between two dumps or `inspect --json` documents.

Thin: reading is kmtool.diff.snapshot, comparing kmtool.diff.compare, drawing kmtool.diff.render.
Exit status 1 when a finding named by `--fail-on` occurs (or a side cannot be read), else 0.
"""

from __future__ import annotations

from pathlib import Path

import click

from kmtool.cli.app import abort, console, print_json


@click.command()
@click.argument("a", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("b", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the findings as one JSON object.")
@click.option(
    "--fail-on",
    "fail_on",
    default="",
    metavar="KINDS",
    help="Exit 1 when one of these findings occurs, comma-separated: leak, owner-change, "
    "mapping-change, wx, heap-change, counter-change.",
)
@click.option(
    "--svg",
    "svg",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw what changed to this SVG file: frames by their change of owner, and each "
    "changed address space's pages added, removed or changed.",
)
@click.pass_context
def diff(
    ctx: click.Context, a: Path, b: Path, as_json: bool, fail_on: str, svg: Path | None
) -> None:
    """Compare two dumps (or two `kmtool inspect --json` documents) of the kernel: frames that
    changed owner (leaked frames first), mappings added, removed or changed per address space
    (merged into ranges), heap blocks by order, and counters.

    Either side may be `live:` or `live:SESSION`, the running guest of a live session (`kmtool
    run --live`; SESSION defaults to BUILD_DIR/live/session.json), paused while it is read and
    resumed if it was running: `kmtool diff before.elf live:`."""
    from kmtool.diff.compare import KINDS, compare
    from kmtool.diff.render import render
    from kmtool.diff.snapshot import load

    wanted = {k.strip() for k in fail_on.split(",") if k.strip()}
    unknown = sorted(wanted - set(KINDS))
    if unknown:
        abort(
            f"`--fail-on {fail_on}` names {', '.join(unknown)}; the kinds are {', '.join(KINDS)}."
        )
    side_a, side_b = load(a), load(b)
    result = compare(side_a, side_b)
    if svg is not None:
        from kmtool.picture.diff import write

        write(result, side_a, side_b, (str(a), str(b)), svg)
    if as_json:
        print_json(result.to_json())
    else:
        console.print(render(result, str(a), str(b)))
    if wanted & result.kinds:
        ctx.exit(1)
