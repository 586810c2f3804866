"""Benchmark `kmtool inspect --cr3 X --json` on a dump of another kernel against volatility3, whole processes.

    .venv/bin/python benchmarks/bench_foreign.py [--runs 5] [--volatility-runs 3] [--keep DIR [--reuse]]
        [--against TREE]

Issue 11 item 5: on a 1 GiB raw dump of another kernel, the whole `kmtool inspect --cr3 X --json`
process must be at least 10x faster than volatility3 enumerating the same mappings (install it into
the venv for this only: `.venv/bin/pip install volatility3`; it is no dependency of kmtool).

The dump is generated in a temporary directory (deleted afterwards) as a sparse 1 GiB raw image,
file offset == physical address, with no layout file and no kmtool core-info block: a Linux-like
x86-64 kernel whose direct map uses 4 KiB pages, the worst case for a walker:

- PML4 entry 273 -> one PDPT -> one PD -> 512 PTs: 262,144 4 KiB leaves mapping physical 0..1 GiB
  at 0xffff888000000000 (writable, no-execute);
- PML4 entry 511 -> PDPT entry 510 -> PD entries 8-15 -> 8 PTs: 4096 4 KiB leaves of a 16 MiB
  kernel image at 0xffffffff81000000 (first half read-only executable, second half writable
  no-execute), from physical 16 MiB;
- 266,240 leaves in all; the tables sit together at physical 0x3f000000.

Measured, the runs of the two interleaved (wall time of each process, peak RSS from wait4):
- `python -m kmtool inspect DUMP --cr3 X --json`, stdout discarded;
- `python -c VOLATILITY` (below): volatility3's Intel32e layer over a FileLayer of the same file and
  CR3, `mapping()` over the whole 48-bit space, counting the mappings and bytes, as
  bench_inspect.py's in-process comparison does. It must enumerate 266,240 pages, as kmtool does.

With `--against TREE` (another kmtool tree, such as main unpacked with `git archive` and
byte-compiled) kmtool runs in both trees in turn, interleaved with volatility3, and each tree gets
its row and its ratio; the first tree's row says whether both print the same bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from bench_inspect import add_against, row, same_output, subprocess_rss, tree_dirs

GiB, MiB, PAGE = 1 << 30, 1 << 20, 4096
RAM = 1 * GiB
TABLES = 0x3F00_0000
DIRECT_MAP = 0xFFFF_8880_0000_0000
TEXT, TEXT_PHYS, TEXT_PAGES = 0xFFFF_FFFF_8100_0000, 16 * MiB, 4096
P, W, NX = 1, 2, 1 << 63
LEAVES = RAM // PAGE + TEXT_PAGES

# Run `kmtool ARGS` in this process as the console script does, then print what it imported.
IMPORTS = """
import sys
from kmtool.cli import main
sys.argv = ["kmtool", *sys.argv[1:]]
try:
    main()
finally:
    names = set(sys.modules)
    ours = sorted(n for n in names if n == "kmtool" or n.startswith("kmtool."))
    print(len(ours), int("construct" in names), int("numpy.ma" in names), file=sys.stderr)
"""

VOLATILITY = """
import sys
from pathlib import Path
from volatility3.framework import contexts
from volatility3.framework.layers.intel import Intel32e
from volatility3.framework.layers.physical import FileLayer

ctx = contexts.Context()
ctx.config["base.location"] = Path(sys.argv[1]).as_uri()
ctx.add_layer(FileLayer(ctx, "base", "base"))
ctx.config["intel.memory_layer"] = "base"
ctx.config["intel.page_map_offset"] = int(sys.argv[2], 0)
layer = Intel32e(ctx, "intel", "intel")
count = size = 0
for _off, sublength, _mapped, _mlen, _name in layer.mapping(0, 1 << 48, ignore_errors=True):
    count += 1
    size += sublength
print(count, size // 4096)
"""


def generate(path: Path) -> int:
    """Write the foreign dump (module docstring); return its CR3."""
    pml4, pdpt_dm, pd_dm, pdpt_k, pd_k = (TABLES + i * PAGE for i in range(5))
    pts_dm = TABLES + 5 * PAGE  # 512 PTs, then the image's 8
    pts_k = pts_dm + 512 * PAGE
    u64 = np.uint64
    top = np.zeros(5 * 512, dtype=u64)  # PML4, direct-map PDPT and PD, image PDPT and PD
    top[(DIRECT_MAP >> 39) & 511] = pdpt_dm | P | W
    top[511] = pdpt_k | P | W
    top[512 + ((DIRECT_MAP >> 30) & 511)] = pd_dm | P | W
    top[1024:1536] = (pts_dm + np.arange(512, dtype=u64) * u64(PAGE)) | u64(P | W)
    top[1536 + ((TEXT >> 30) & 511)] = pd_k | P | W
    first = (TEXT >> 21) & 511
    top[2048 + first : 2048 + first + 8] = (pts_k + np.arange(8, dtype=u64) * u64(PAGE)) | u64(
        P | W
    )
    direct = (np.arange(RAM // PAGE, dtype=u64) * u64(PAGE)) | u64(P | W | NX)
    text = TEXT_PHYS + np.arange(TEXT_PAGES, dtype=u64) * u64(PAGE)
    text[TEXT_PAGES // 2 :] |= u64(W | NX)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, RAM)
        os.pwrite(fd, top.astype("<u8").tobytes(), TABLES)
        os.pwrite(fd, direct.astype("<u8").tobytes(), pts_dm)
        os.pwrite(fd, (text | u64(P)).astype("<u8").tobytes(), pts_k)
        os.pwrite(fd, b"\xcc" * (TEXT_PAGES // 2 * PAGE), TEXT_PHYS)  # some image bytes
    finally:
        os.close(fd)
    return pml4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--volatility-runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="Write the dump here and keep it.")
    parser.add_argument("--reuse", action="store_true", help="With --keep: reuse its dump.")
    add_against(parser)
    args = parser.parse_args()
    trees = tree_dirs(args.against)
    tmp = Path(tempfile.mkdtemp(prefix="kmtool-bench-foreign-")) if args.keep is None else args.keep
    tmp.mkdir(parents=True, exist_ok=True)
    dump = tmp / "foreign1g.raw"
    try:
        cr3 = TABLES
        if not (args.reuse and dump.exists()):
            cr3 = generate(dump)
        kmtool = [sys.executable, "-m", "kmtool", "inspect", str(dump), "--cr3", hex(cr3), "--json"]
        for cwd in trees.values():
            check = subprocess.run(kmtool, cwd=cwd, capture_output=True, text=True, check=False)
            assert f'"leaves": {LEAVES},' in check.stdout, check.stderr
        vol = [sys.executable, "-c", VOLATILITY, str(dump), hex(cr3)]
        have_vol = args.volatility_runs > 0
        if have_vol:
            out = subprocess.run(vol, capture_output=True, text=True, check=False)
            have_vol = out.returncode == 0
            if have_vol:
                assert int(out.stdout.split()[1]) == LEAVES, out.stdout
        imports = {tree: _imports(kmtool[3:], cwd) for tree, cwd in trees.items()}
        km_runs: dict[str, list[tuple[float, int, int]]] = {tree: [] for tree in trees}
        vol_runs = []
        for i in range(max(args.runs, args.volatility_runs if have_vol else 0)):
            if i < args.runs:
                for tree, cwd in trees.items():
                    km_runs[tree].append(subprocess_rss(kmtool, cwd))
            if have_vol and i < args.volatility_runs:
                vol_runs.append(subprocess_rss(vol))
        _report(km_runs, vol_runs, same_output(trees, kmtool), imports)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


def _imports(args: list[str], cwd: Path) -> str:
    """What one `kmtool ARGS` process run in `cwd` imports, as a note."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS, *args], cwd=cwd, capture_output=True, text=True
    )
    ours, construct, masked = (int(x) for x in done.stderr.split()[-3:])
    return (f"{ours} kmtool modules, {'with' if construct else 'no'} construct, "
            f"{'with' if masked else 'no'} numpy.ma")  # fmt: skip


def _report(
    km_runs: dict[str, list[tuple[float, int, int]]],
    vol_runs: list[tuple[float, int, int]],
    same: str,
    imports: dict[str, str],
) -> None:
    """One row per kmtool tree, then volatility3's with each tree's ratio."""
    print("| measurement | median | min | max | runs | notes |")
    print("|---|---:|---:|---:|---:|---|")
    medians = {}
    for i, (tree, runs) in enumerate(km_runs.items()):
        times = [t for t, _, _ in runs]
        medians[tree] = statistics.median(times)
        statuses = sorted({s for _, s, _ in runs})
        rss = max(r for _, _, r in runs)
        what = "kmtool inspect DUMP --cr3 X --json (whole process)"
        if len(km_runs) > 1:
            what += f" ({tree})"
        print(row(what, times, f"exit {statuses}, peak RSS {rss / 1024:.0f} MiB, {LEAVES} leaves, "
                  f"imports {imports[tree]}" + (f", {same}" if same and not i else "")))  # fmt: skip
    if not vol_runs:
        print("| volatility3 Intel32e mapping() (whole process) | - | - | - | 0 | not installed |")
        return
    vol_t = [t for t, _, _ in vol_runs]
    ratios = ", ".join(
        f"{tree}: {statistics.median(vol_t) / m:.1f}x" for tree, m in medians.items()
    )
    rss = max(r for _, _, r in vol_runs)
    print(row("volatility3 Intel32e mapping() (whole process)", vol_t,
              f"peak RSS {rss / 1024:.0f} MiB; kmtool is faster by {ratios} (target 10x)"))  # fmt: skip


if __name__ == "__main__":
    main()
