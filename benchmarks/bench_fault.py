"""What explaining a fault costs a whole `kmtool inspect`: the same kernel, dumped held at ready
and held after `bug=stack-overflow` (a #DF with a 16-frame backtrace), each inspected as a user
runs it (`python -m kmtool inspect DUMP --kernel ELF --json`, a fresh process every time).

    .venv/bin/python benchmarks/bench_fault.py [--repeat 5] [--memory 256M] [--json]

The ready dump has no fault record, so its inspection decodes everything but the fault; the fault
dump's adds the fault part: the record, CR2 walked, the regions, and RIP and every return address
symbolized with function+offset and file:line (the DWARF line table is read for it). The runs
alternate (ready, fault, ready, ...) so a busy host slows both alike; the table shows medians and
the difference, which is the figure issue 10 bounds (at most 0.2 s).
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
                          text=True, env=env, cwd=REPO, timeout=600)  # fmt: skip


def capture(build: Path, dump: Path, memory: str, cmdline: str) -> None:
    args = ["run", "--build-dir", str(build), "--memory", memory, "--dump", str(dump)]
    done = kmtool(*args, *(["--cmdline", cmdline] if cmdline else []))
    if not dump.exists():
        raise SystemExit(f"no dump of `{cmdline or 'ready'}`:\n{done.stdout}{done.stderr}")


def timed(dump: Path, kernel: Path) -> float:
    started = time.perf_counter()
    done = kmtool("inspect", str(dump), "--kernel", str(kernel), "--json")
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1) or not done.stdout.startswith("{"):
        raise SystemExit(f"inspect of {dump} failed:\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--memory", default="256M")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fault-") as tmp:
        build = Path(tmp) / "build"
        done = kmtool("build", "--build-dir", str(build))
        if done.returncode:
            raise SystemExit(done.stdout + done.stderr)
        kernel = build / "kernel.elf"
        ready, fault = Path(tmp) / "ready.elf", Path(tmp) / "fault.elf"
        capture(build, ready, args.memory, "")
        capture(build, fault, args.memory, "bug=stack-overflow")
        times: dict[str, list[float]] = {"ready": [], "fault": []}
        for _ in range(args.repeat):
            times["ready"].append(timed(ready, kernel))
            times["fault"].append(timed(fault, kernel))
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {"memory": args.memory, "repeat": args.repeat, "median_seconds": medians,
              "fault_adds_seconds": medians["fault"] - medians["ready"], "runs": times}  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"kmtool inspect --kernel --json, {args.memory} guest, median of {args.repeat}")
    print(f"  ready dump (no fault)       {medians['ready']:.3f} s")
    print(f"  stack-overflow dump (#DF)   {medians['fault']:.3f} s")
    print(f"  the fault part adds         {result['fault_adds_seconds']:+.3f} s")


if __name__ == "__main__":
    main()
