"""What live inspection costs next to inspecting a dump (issue 12: at most 1.5x), whole processes
as a user runs them, on the same guest of the real kernel.

    .venv/bin/python benchmarks/bench_live.py [--repeat 7] [--memory 4G] [--cmdline workload=all]
                                              [--json]

One `kmtool run --live` boot; then QMP stops the guest, writes its ELF core (the anchor, QEMU's own
`dump-guest-memory`, as `kmtool run --dump` takes it) and resumes it. Each repeat then times
`kmtool inspect DUMP --json --kernel K` and `kmtool inspect --live SESSION --json` (which pauses
the running guest, reads its CPU state, maps the RAM file, decodes, and resumes it), alternating
so a busy host slows both alike. The table shows medians and their ratio; the two documents are
checked equal but for the part that describes the file, so the figures compare the same work.
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
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def kmtool(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "kmtool", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=900)  # fmt: skip


def timed(*args: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    done = kmtool(*args)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1) or not done.stdout.startswith("{"):
        raise SystemExit(f"`kmtool {' '.join(args)}` failed:\n{done.stderr}")
    return seconds, json.loads(done.stdout)


def dump_paused(session: dict[str, Any], path: Path) -> None:
    """The ELF core of the session's guest, taken by QMP while it is paused; then resume it."""
    from kmtool.qemu.dump import capture
    from kmtool.qemu.qmp import Monitor

    with Monitor(Path(session["qmp"])) as monitor:
        monitor.stop()
        capture(monitor, path, "elf")
        monitor.command("cont")


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    build = tmp / "build"
    if kmtool("build", "--build-dir", str(build)).returncode:
        raise SystemExit("build failed")
    session_path = build / "live" / "session.json"
    run = kmtool("run", "--live", "--build-dir", str(build), "--memory", args.memory,
                 *(["--cmdline", args.cmdline] if args.cmdline else []))  # fmt: skip
    if run.returncode:
        raise SystemExit(f"`kmtool run --live` failed:\n{run.stdout}{run.stderr}")
    try:
        session = json.loads(session_path.read_text())
        dump = tmp / "guest.elf"
        dump_paused(session, dump)
        kernel = str(build / "kernel.elf")
        from_dump, live = [], []
        for _ in range(args.repeat):
            seconds, dump_doc = timed("inspect", str(dump), "--json", "--kernel", kernel)
            from_dump.append(seconds)
            seconds, live_doc = timed("inspect", "--live", str(session_path), "--json")
            live.append(seconds)
        same = {k: v for k, v in dump_doc.items() if k != "source"} == {
            k: v for k, v in live_doc.items() if k != "source"
        }
        if not same:
            raise SystemExit("the live document differs from the dump's: not the same work")
    finally:
        kmtool("run", "--stop", str(session_path))
    result: dict[str, Any] = {
        "memory": args.memory, "cmdline": args.cmdline, "repeat": args.repeat,
        "dump_seconds": statistics.median(from_dump), "live_seconds": statistics.median(live),
        "ram_ranges": session["ram_ranges"],
    }  # fmt: skip
    result["ratio"] = result["live_seconds"] / result["dump_seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--memory", default="4G")
    parser.add_argument("--cmdline", default="workload=all")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        result = measure(args, Path(tmp))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    ranges = len(result["ram_ranges"])
    print(f"{args.memory} guest ({ranges} RAM ranges), `{args.cmdline}`, median of {args.repeat}")
    print(f"  kmtool inspect DUMP --json          {result['dump_seconds']:.3f} s")
    print(f"  kmtool inspect --live --json        {result['live_seconds']:.3f} s")
    print(f"  ratio                               {result['ratio']:.2f}x (target at most 1.5x)")


if __name__ == "__main__":
    main()
