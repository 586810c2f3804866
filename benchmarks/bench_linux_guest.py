"""Benchmark `kmtool inspect --cr3` on Debian's Linux kernel, with 5-level and with 4-level paging.

    .venv/bin/python benchmarks/bench_linux_guest.py [--runs 5]

Boots the guest of tests/integration/linux_guest.py twice (one QEMU at a time): `-cpu max` (CR4.LA57,
5-level paging) and `-cpu max,-la57` (4-level), each until it panics for want of a root file
system, and dumps it (ELF core, 256 MiB; in a temporary directory, deleted afterwards). The kernel
comes from scripts/fetch-linux-guest. Measured side by side in the same run, medians of `--runs`:

- the whole process as a user runs it, `python -m kmtool inspect DUMP --cr3 CR3 --json` (wall time,
  and the peak RSS of the child from wait4);
- the walk alone in process (kmtool.dump.pagetable.walk with the dump's paging mode).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))

from linux_guest import GUEST, boot_and_dump  # noqa: E402

from kmtool.dump.levels import MODES  # noqa: E402
from kmtool.dump.pagetable import walk  # noqa: E402
from kmtool.dump.source import open_dump  # noqa: E402


def whole_process(args: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one command."""
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    _, _, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t, usage.ru_maxrss


def measure(dump: Path, runs: int) -> list[str]:
    """The two table rows of one dump."""
    source = open_dump(dump)
    cpu = source.cpus[0]
    root, mode = cpu.page_table_root, MODES[cpu.paging_mode]
    assert root is not None
    walks, leaves = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        tables = walk(source.memory, root, mode=mode)
        walks.append(time.perf_counter() - t)
        leaves = tables.leaf_total
    argv = [sys.executable, "-m", "kmtool", "inspect", str(dump), "--cr3", hex(root), "--json"]
    wholes = [whole_process(argv) for _ in range(runs)]
    seconds = [w for w, _ in wholes]
    rss = statistics.median(r for _, r in wholes) / 1024
    name = f"Linux 6.1 guest, {mode.name} paging"
    return [
        _row(
            f"{name}: `kmtool inspect --cr3 --json` (whole run)", seconds, f"peak RSS {rss:.0f} MiB"
        ),
        _row(f"{name}: the walk alone", walks, f"{leaves} leaves, {len(tables.ranges)} ranges"),
    ]


def _row(name: str, times: list[float], extra: str) -> str:
    med = statistics.median(times)
    return (f"| {name} | {med:.3f} s | {min(times):.3f} s | {max(times):.3f} s | {len(times)} | "
            f"{extra} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not (GUEST / "vmlinuz").is_file():
        sys.exit(f"No Linux guest kernel at {GUEST}/vmlinuz; run scripts/fetch-linux-guest.")
    work = Path(tempfile.mkdtemp(prefix="kmtool-bench-linux-"))
    rows = []
    try:
        for cpu in ("max", "max,-la57"):
            (work / cpu).mkdir()
            boot_and_dump(cpu, work / cpu)
            rows += measure(work / cpu / "dump.elf", args.runs)
            (work / cpu / "dump.elf").unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| measurement | median | min | max | runs | notes |")
    print("|---|---:|---:|---:|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
