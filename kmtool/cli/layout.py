"""`kmtool layout`: the address-space plan (gen writes the C headers; report shows and checks it)."""

from __future__ import annotations

from pathlib import Path

import click

from kmtool.cli.app import console


@click.group()
def layout() -> None:
    """Show, check and generate the virtual address-space plan."""


@layout.command()
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Repository root to write include/km/ under.",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 when a generated file is stale.")
def gen(root: Path, check: bool) -> None:
    """Generate include/km/*.h and layout.ld from the region table and the schemas."""
    from kmtool.cli.app import abort
    from kmtool.layout import cgen

    if check:
        stale = cgen.stale(root)
        if stale:
            abort(f"Generated files are stale: {', '.join(stale)}; run `kmtool layout gen`.")
        console.print("Generated files are up to date.")
        return
    changed = cgen.write(root)
    for rel in changed:
        console.print(f"wrote {rel}")
    if not changed:
        console.print("Generated files are up to date.")
