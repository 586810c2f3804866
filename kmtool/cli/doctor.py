"""`kmtool doctor`: is every host tool kmtool drives installed, and which package provides it."""

from __future__ import annotations

import click

from kmtool.cli.app import console, print_json


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def doctor(as_json: bool) -> int:
    """Check that the host toolchain, QEMU and OVMF are installed.

    Exits 1 when anything required is missing, naming the Debian package to install.
    """
    from kmtool import toolchain
    from kmtool.qemu import firmware

    rows = [*toolchain.probe_all(), *firmware.probe()]
    missing = [r for r in rows if r.required and not r.ok]
    packages = sorted({r.package for r in rows if not r.ok})
    if as_json:
        print_json(
            {
                "ok": not missing,
                "tools": [r.as_json() for r in rows],
                "missing_packages": packages,
            }
        )
        return 1 if missing else 0

    from rich.table import Table

    table = Table(title="kmtool doctor", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("tool", no_wrap=True)
    table.add_column("path", overflow="fold")
    table.add_column("version", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for r in rows:
        if r.ok:
            status = "[green]ok[/]"
        elif r.path is None:
            style = "red" if r.required else "yellow"
            kind = "missing" if r.required else "missing (optional)"
            status = f"[{style}]{kind}[/]: install `{r.package}`"
        else:
            status = f"[red]broken[/]: {r.problem}"
        table.add_row(r.name, r.path or "-", r.version or "-", status)
    console.print(table)
    if packages:
        console.print(f"To install what is missing: apt-get install {' '.join(packages)}")
    if missing:
        names = ", ".join(f"`{r.name}`" for r in missing)
        console.print(f"[red]Missing required tools:[/] {names}.")
        return 1
    console.print("[green]Everything kmtool needs is installed.[/]")
    return 0
