"""Benchmark how `kmtool inspect` finds the core-info block on a 4 GiB dump, whole process, side by side.

    .venv/bin/python benchmarks/bench_coreinfo.py [--runs 5] [--keep DIR [--reuse]] [--against TREE]
        [--variants note ...]

The dump is bench_inspect.py's generated 4 GiB raw dump of our kernel (4 KiB offset map, 262,144
free spans). It is inspected as a user runs `kmtool inspect DUMP` (the summary) and
`kmtool inspect DUMP --json`, each a subprocess (wall time, peak RSS from wait4), with three
sidecars that differ only in what they tell (docs/design.md §5.3):

- `note`: the sidecar as `kmtool run --dump-format raw` writes it now, with `core_info` (the address
  the kernel published through `-device vmcoreinfo`): no scan at all;
- `cr3 only`: the sidecar without `core_info` (a dump from before): the pages mapped in the
  kernel-image region under CR3 are scanned;
- `nothing`: no CPU state and no `core_info` (a bare image of our kernel): the whole dump is
  scanned, the anchor the issue measured (1.6 s).

The runs of the three variants are interleaved, so they share the machine's state. With `--against
TREE` (another kmtool tree, such as main unpacked with `git archive`) each run is made in both
trees in turn, and the first row of each pair says whether both print the same bytes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from bench_inspect import (
    add_against,
    generate,
    row,
    same_output,
    subprocess_rss,
    tree_dirs,
    write_as_kmtool,
)

VARIANTS = ("note", "cr3 only", "nothing")


def _sidecars(dump: Path, tmp: Path) -> dict[str, Path]:
    """A hard link of `dump` per variant, each with its own sidecar."""
    base = json.loads(dump.with_name(dump.name + ".layout.json").read_text())
    assert "core_info" in base, "the generator writes core_info as kmtool run does"
    docs = {
        "note": base,
        "cr3 only": {k: v for k, v in base.items() if k != "core_info"},
        "nothing": {**{k: v for k, v in base.items() if k != "core_info"}, "cpus": []},
    }
    out = {}
    for i, (name, doc) in enumerate(docs.items()):
        path = tmp / f"variant{i}.raw"
        path.unlink(missing_ok=True)
        path.hardlink_to(dump)
        path.with_name(path.name + ".layout.json").write_text(json.dumps(doc))
        out[name] = path
    return out


def _measure(args: argparse.Namespace, paths: dict[str, Path], trees: dict[str, Path]) -> None:
    """Every variant in every tree, interleaved run by run; one table row each."""
    kmtool = [sys.executable, "-m", "kmtool", "inspect"]
    results: dict[tuple[str, bool, str], list[tuple[float, int, int]]] = {}
    for _ in range(args.runs):
        for as_json in (False, True):
            for name in args.variants:
                argv = [*kmtool, str(paths[name]), *(["--json"] if as_json else [])]
                for tree, cwd in trees.items():
                    results.setdefault((name, as_json, tree), []).append(subprocess_rss(argv, cwd))
    print("| measurement | median | min | max | runs | notes |")
    print("|---|---:|---:|---:|---:|---|")
    for (name, as_json, tree), runs in results.items():
        argv = [*kmtool, str(paths[name]), *(["--json"] if as_json else [])]
        what = f"kmtool inspect DUMP{' --json' if as_json else ''}, sidecar: {name}"
        if len(trees) > 1:
            what += f" ({tree})"
        rss = max(r for _, _, r in runs)
        statuses = sorted({s for _, s, _ in runs})
        same = same_output(trees, argv) if tree == next(iter(trees)) else ""
        notes = f"exit {statuses}, peak RSS {rss / 1024:.1f} MiB ({rss * 1024 / 1e6:.1f} MB)"
        print(row(what, [w for w, _, _ in runs], notes + (f", {same}" if same else "")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="Write the dump here and keep it.")
    parser.add_argument("--reuse", action="store_true", help="With --keep: reuse its dump.")
    add_against(parser)
    parser.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="Sidecars to run."
    )
    args = parser.parse_args()
    tmp = (
        Path(tempfile.mkdtemp(prefix="kmtool-bench-coreinfo-")) if args.keep is None else args.keep
    )
    tmp.mkdir(parents=True, exist_ok=True)
    dump = tmp / "dump4g.raw"
    try:
        if not (args.reuse and dump.exists()):
            pieces = tmp / "dump4g-pieces.raw"
            generate(pieces)
            write_as_kmtool(pieces, dump)
            pieces.unlink()
        _measure(args, _sidecars(dump, tmp), tree_dirs(args.against))
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
