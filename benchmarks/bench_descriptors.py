"""What decoding the descriptor tables (IDT, GDT, TSS; kmtool/dump/descriptors.py) costs a whole
`kmtool inspect`: one `bug=idt` boot dumped at its triple fault, inspected in this process with
`--kernel` (gates symbolized with file:line) and without, each with the descriptor decode and, as
the anchor, without it
(`read_descriptor_tables` replaced by one that decodes nothing). The runs alternate so a busy host
slows both alike; the table shows medians and the difference. A last row times the decode alone
with hostile limits (IDTR and GDTR limits 0xffff over mapped memory: 4096 gates and 8192
descriptors claimed, 32 and 256 decoded).

    .venv/bin/python benchmarks/bench_descriptors.py [--repeat 9] [--memory 128M]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def capture(build: Path, dump: Path, memory: str) -> None:
    env = dict(os.environ, NO_COLOR="1")
    args = ["run", "--build-dir", str(build), "--memory", memory, "--dump", str(dump),
            "--cmdline", "bug=idt"]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "kmtool", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)  # fmt: skip
    if not dump.exists():
        raise SystemExit(f"no dump of bug=idt:\n{done.stdout}{done.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--memory", default="128M")
    args = parser.parse_args()
    from kmtool.dump import descriptors, inspection

    with tempfile.TemporaryDirectory(prefix="kmtool-bench-descriptors-") as tmp:
        build, dump = Path(tmp) / "build", Path(tmp) / "idt.elf"
        done = subprocess.run([sys.executable, "-m", "kmtool", "build", "--build-dir", str(build)],
                              capture_output=True, text=True, cwd=REPO)  # fmt: skip
        if done.returncode:
            raise SystemExit(done.stdout + done.stderr)
        capture(build, dump, args.memory)
        real = inspection.read_descriptor_tables
        medians: dict[str, tuple[float, float]] = {}
        for label, kernel in (("with --kernel", build / "kernel.elf"), ("without --kernel", None)):
            options = inspection.Options(kernel=kernel)
            with_, without = [], []
            inspection.inspect_dump(dump, options)  # warm the page cache
            for _ in range(args.repeat):
                for times, decode in ((with_, real), (without, lambda *a: [])):
                    inspection.read_descriptor_tables = decode  # type: ignore[assignment]
                    start = time.perf_counter()
                    inspection.inspect_dump(dump, options)
                    times.append(time.perf_counter() - start)
            inspection.read_descriptor_tables = real
            medians[label] = (statistics.median(without), statistics.median(with_))
        ins = inspection.inspect_dump(dump, options)
        cpu = ins.source.cpus[0]
        assert cpu.idt is not None and cpu.gdt is not None
        wide = dataclasses.replace(cpu, idt=(cpu.idt[0], 0xFFFF), gdt=(cpu.gdt[0], 0xFFFF))
        hostile = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            descriptors.read_descriptor_tables(ins.source.memory, [wide], hex, True)
            hostile.append(time.perf_counter() - start)
    print(f"bug=idt dump of {args.memory}, inspect_dump in one process, medians of {args.repeat}:")
    print("| inspect | without the decode (anchor) | with it | the descriptor tables add |")
    print("|---|---:|---:|---:|")
    for label, (a, b) in medians.items():
        print(f"| {label} | {a * 1000:.1f} ms | {b * 1000:.1f} ms | **{(b - a) * 1000:+.1f} ms** |")
    print(
        f"| decode alone, IDTR and GDTR limits 0xffff | | {statistics.median(hostile) * 1000:.1f} ms | |"
    )


if __name__ == "__main__":
    main()
