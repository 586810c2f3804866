"""`kmtool layout`: the address-space plan (`gen` writes the C headers, `report` checks it)."""

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
    default=None,
    help="Repository root to write include/km/ under (default: the one containing the current "
    "directory).",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 when a generated file is stale.")
def gen(root: Path | None, check: bool) -> None:
    """Generate include/km/*.h and layout.ld from the region table and the schemas."""
    from kmtool.artifacts import find_root
    from kmtool.cli.app import abort
    from kmtool.layout import cgen

    if root is None:
        root = find_root(Path.cwd())  # as `kmtool build` does; BuildError outside a kmtool tree
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


@layout.command()
@click.option(
    "--kernel",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Kernel ELF to check against the plan [default: build/kernel.elf in the source tree "
    "containing the current directory, when it exists].",
)
@click.option("--no-kernel", is_flag=True, help="Check only the plan, even when a kernel is built.")
@click.option(
    "--memory",
    metavar="SIZE",
    default=None,
    help="RAM to cost the plan for, in binary units: 512M, 64G, 1T.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of tables.")
@click.option(
    "--svg",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also draw the address space to this SVG file.",
)
def report(
    kernel: Path | None, no_kernel: bool, memory: str | None, as_json: bool, svg: Path | None
) -> None:
    """Show the region table and check it (and a kernel ELF, and the cost for some RAM).

    Exits with status 1 when a check fails, naming the regions or segments at fault.
    """
    from kmtool.artifacts import KERNEL_ELF, build_dir
    from kmtool.cli.app import print_json
    from kmtool.errors import LayoutError
    from kmtool.layout import report as layout_report
    from kmtool.layout.cost import parse_size

    if no_kernel and kernel is not None:
        raise LayoutError("Give either `--kernel` or `--no-kernel`, not both.")
    if kernel is None and not no_kernel and (build_dir() / KERNEL_ELF).is_file():
        kernel = build_dir() / KERNEL_ELF
    ram = parse_size(memory) if memory is not None else None
    result = layout_report.build_report(kernel, ram)
    if svg is not None:
        from kmtool.layout import svg as layout_svg

        layout_svg.write(result, svg)
    if as_json:
        print_json(result.to_json())
    else:
        layout_report.render(result, console)
    if svg is not None and not as_json:
        console.print(f"wrote {svg}")
    if not result.ok:
        raise LayoutError(result.failure_message())
