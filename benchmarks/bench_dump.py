"""Dump capture of the real kernel: kmtool's writers next to QEMU writing the file itself, same VM.

    .venv/bin/python benchmarks/bench_dump.py [--repeat 5] [--memory 512M]

Boots the image once with `hold` (kmtool.qemu.runner.held_vm), stops it at KM-READY, then dumps
the same stopped VM over and over, the three ways alternating so a busy host slows all alike:

- kmtool ELF: `kmtool run --dump FILE`'s path (kmtool.qemu.dump): QEMU writes the ELF core into a
  pipe, kmtool writes the file through a BlockWriter (2 MiB aligned blocks, zero blocks as holes);
- QEMU's own ELF file: `dump-guest-memory` with `protocol=file:` (what kmtool did before), written
  by QEMU a page at a time;
- kmtool raw: `--dump-format raw` (pmemsave chunks, copied through the same BlockWriter).

For each: wall time of the capture, the file's size and the disk it takes, and what the page cache
does with it right after (the share the kernel maps with 2 MiB entries, and the cost of mapping and
unmapping the whole file 16 MiB at a time, which is what a bounded `kmtool inspect` pays).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inspect import page_cache  # noqa: E402

from kmtool.build.ninjafile import IMAGE  # noqa: E402
from kmtool.dump.chase import WINDOW  # noqa: E402
from kmtool.layout.table import MiB  # noqa: E402
from kmtool.qemu.cmdline import parse_size  # noqa: E402
from kmtool.qemu.dump import capture  # noqa: E402
from kmtool.qemu.runner import HeldVm, RunOptions, held_vm  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def kmtool_elf(vm: HeldVm, path: Path) -> None:
    capture(vm.qmp, path, "elf")


def qemu_elf(vm: HeldVm, path: Path) -> None:
    vm.qmp.command("dump-guest-memory", paging=False, protocol=f"file:{path}")


def kmtool_raw(vm: HeldVm, path: Path) -> None:
    capture(vm.qmp, path, "raw")


WAYS = {
    "kmtool ELF (QEMU -> pipe -> BlockWriter)": kmtool_elf,
    "QEMU's own ELF file (protocol=file:)": qemu_elf,
    "kmtool raw (pmemsave -> BlockWriter)": kmtool_raw,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="dumps each way (default 5)")
    parser.add_argument("--memory", default="512M", help="guest RAM (default 512M)")
    args = parser.parse_args()

    rows: dict[str, dict[str, list[float]]] = {
        name: {"seconds": [], "size": [], "disk": [], "pmd": [], "map": []} for name in WAYS
    }
    with tempfile.TemporaryDirectory(prefix="kmtool-bench-dump-") as temp:
        work = Path(temp)
        subprocess.run([sys.executable, "-m", "kmtool", "build", "--build-dir", str(work)],
                       cwd=REPO, check=True, capture_output=True)  # fmt: skip
        options = RunOptions(memory=parse_size(args.memory), timeout=300, build_dir=work / "logs")
        with held_vm(work / IMAGE, options) as vm:
            for _ in range(args.repeat):
                for name, way in WAYS.items():
                    path = work / "dump"
                    t = time.perf_counter()
                    way(vm, path)
                    seconds = time.perf_counter() - t
                    st = path.stat()
                    share, cost = page_cache(path, 0, st.st_size, WINDOW)
                    row = rows[name]
                    row["seconds"].append(seconds)
                    row["size"].append(st.st_size / MiB)
                    row["disk"].append(st.st_blocks * 512 / MiB)
                    row["pmd"].append(share)
                    row["map"].append(cost)
                    path.unlink()
                    path.with_name(path.name + ".layout.json").unlink(missing_ok=True)

    print(f"dump capture of a {args.memory} guest held at KM-READY, {args.repeat} dumps each way, "
          "alternating (medians; min-max of the capture time in brackets)")  # fmt: skip
    print("| way | capture | file | on disk | in 2 MiB folios | map + unmap the file |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        s = row["seconds"]
        print(f"| {name} | {statistics.median(s):.2f} s [{min(s):.2f}-{max(s):.2f}] | "
              f"{statistics.median(row['size']):.0f} MiB | {statistics.median(row['disk']):.0f} MiB | "
              f"{statistics.median(row['pmd']):.0%} | {statistics.median(row['map']):.3f} s |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
