"""What `kmtool diff` costs next to inspecting both sides (issue 12: at most 2x), whole processes
as a user runs them, on two dumps of the real kernel: a plain boot and `workload=all`.

    .venv/bin/python benchmarks/bench_diff.py [--repeat 5] [--memory 4G] [--json]

Each repeat times `kmtool inspect A --json` plus `kmtool inspect B --json` (two processes, the
sum), then `kmtool diff A B --json` (one process), alternating so a busy host slows both alike.
The table shows medians and their ratio. The dumps are ELF cores written by `kmtool run --dump`
(sparse: all-zero guest RAM takes no disk).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def kmtool(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "kmtool", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=900)  # fmt: skip


def timed(*args: str) -> float:
    started = time.perf_counter()
    done = kmtool(*args)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1) or not done.stdout.startswith("{"):
        raise SystemExit(f"`kmtool {' '.join(args)}` failed:\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--memory", default="4G")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-diff-") as tmp:
        build = Path(tmp) / "build"
        if kmtool("build", "--build-dir", str(build)).returncode:
            raise SystemExit("build failed")
        a, b = Path(tmp) / "plain.elf", Path(tmp) / "workload.elf"
        for dump, cmdline in ((a, ""), (b, "workload=all")):
            run = ["run", "--build-dir", str(build), "--memory", args.memory, "--dump", str(dump)]
            kmtool(*run, *(["--cmdline", cmdline] if cmdline else []))
            if not dump.exists():
                raise SystemExit(f"no dump for `{cmdline or 'plain'}`")
        both, diff = [], []
        for _ in range(args.repeat):
            both.append(timed("inspect", str(a), "--json") + timed("inspect", str(b), "--json"))
            diff.append(timed("diff", str(a), str(b), "--json"))
    result = {"memory": args.memory, "repeat": args.repeat,
              "inspect_both_seconds": statistics.median(both),
              "diff_seconds": statistics.median(diff)}  # fmt: skip
    result["ratio"] = result["diff_seconds"] / result["inspect_both_seconds"]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.memory} guests, plain boot vs workload=all, median of {args.repeat}")
    print(f"  kmtool inspect A + kmtool inspect B   {result['inspect_both_seconds']:.3f} s")
    print(f"  kmtool diff A B                       {result['diff_seconds']:.3f} s")
    print(f"  ratio                                 {result['ratio']:.2f}x (target at most 2x)")


if __name__ == "__main__":
    main()
