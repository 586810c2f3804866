"""The bounds of issue 10 on the hostile suite: wall time and peak RSS of the whole `kmtool inspect`
process on each hostile dump (tests/dump/hostile_dumps.py: sparse 4 GiB images whose pointers make
naive work explode), beside the anchor, the healthy fixture written the same way, in the same run.

Each dump is generated once, then `python -m kmtool inspect DUMP` (the summary a user reads; with
`--json`, the document) runs `--runs` times, alternating across the cases so a busy host slows all
alike; the table shows the medians of wall time and of peak RSS (the child's own rusage, through
hostile_dumps.measured's launcher) and ends with the worst case. `--repo` runs another checkout's
kmtool on the same dumps (its .venv if it has one, else this interpreter from that directory: a
`git archive` of an older commit, say); `--only` picks cases by name; `--timeout` stops a run that
would not end (reported as exit -9).

    .venv/bin/python benchmarks/bench_hostile.py [--runs 5] [--json] [--only NAME ...]
                                                 [--repo /work/main] [--timeout 120]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "dump"))

import hostile_dumps as H  # noqa: E402

ANCHOR = "healthy fixture (anchor)"


def inspect_once(repo: Path, dump: Path, json_out: bool, timeout: float) -> tuple[float, int, int]:
    """One `kmtool inspect` of `dump` by the checkout at `repo`: wall seconds, peak RSS (bytes),
    exit status (-9 when stopped at `timeout`)."""
    venv = repo / ".venv" / "bin" / "python"  # that checkout's own install of kmtool
    python = str(venv) if venv.exists() else sys.executable
    argv = [python, "-m", "kmtool", "inspect", str(dump), *(["--json"] if json_out else [])]
    status, seconds, peak = H.measured(argv, dump.with_suffix(".out"), repo, timeout=timeout)
    return seconds, peak, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="time `inspect --json`")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--repo", type=Path, default=REPO)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    names = [n for n in H.CASES if args.only is None or n in args.only]
    with tempfile.TemporaryDirectory(prefix="kmtool-bench-hostile-") as tmp:
        dumps = {ANCHOR: H.Dump().write(Path(tmp) / "healthy.dump")}
        for name in names:
            dumps[name] = H.CASES[name].make().write(Path(tmp) / f"{name}.dump")
        runs: dict[str, list[tuple[float, int, int]]] = {name: [] for name in dumps}
        for dump in dumps.values():  # not timed: the first pass fills the page cache
            inspect_once(args.repo, dump, args.json, args.timeout)
        for _ in range(args.runs):
            for name, dump in dumps.items():
                runs[name].append(inspect_once(args.repo, dump, args.json, args.timeout))
    what = "inspect --json" if args.json else "inspect"
    print(f"{what} of sparse {H.SIZE >> 30} GiB dumps, {args.runs} runs, medians "
          f"(kmtool of {args.repo})")  # fmt: skip
    print(f"{'case':34} {'wall s':>8} {'peak RSS MiB':>13} {'exit':>5}")
    for name, rows in runs.items():
        wall = statistics.median(r[0] for r in rows)
        peak = statistics.median(r[1] for r in rows) / (1 << 20)
        status = ",".join(sorted({str(r[2]) for r in rows}))
        print(f"{name:34} {wall:8.2f} {peak:13.0f} {status:>5}")
    hostile = {n: r for n, r in runs.items() if n != ANCHOR}
    if hostile:
        slow = max(hostile, key=lambda n: statistics.median(r[0] for r in hostile[n]))
        big = max(hostile, key=lambda n: statistics.median(r[1] for r in hostile[n]))
        print(f"worst wall time: {slow}, {statistics.median(r[0] for r in hostile[slow]):.2f} s; "
              f"worst peak RSS: {big}, "
              f"{statistics.median(r[1] for r in hostile[big]) / (1 << 20):.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
