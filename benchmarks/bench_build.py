"""Build benchmarks: clean build, no-op rebuild, one-header rebuild, image creation.

    .venv/bin/python benchmarks/bench_build.py [--runs 5] [--noop-runs 10] [--json]

Every figure is the wall time of what a user runs, measured from outside:
- clean build: `kmtool build --build-dir TMP` into an empty directory (Python start-up included);
- no-op rebuild: the same command again with nothing changed (target: under 0.5 s);
- header rebuild: after touching one kernel header that some files include;
- image: `python -m kmtool.image` as build.ninja runs it (start-up, GPT, mformat, mmd, 2x mcopy),
  and `build_image()` called in-process (the same work without the interpreter start).
Medians of several runs (min and max shown). The benchmark builds a copy of the repository's
kernel/, efi/ and include/ in a temporary directory, so it never touches the working tree.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def kmtool_argv() -> list[str]:
    """The `kmtool` console script beside this interpreter, else `python -m kmtool`."""
    script = Path(sys.executable).parent / "kmtool"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kmtool"]


def timed(argv: list[str], cwd: Path) -> float:
    """Wall seconds of one command run in `cwd`; exits if it fails."""
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"`{' '.join(argv)}` failed:\n{proc.stdout}{proc.stderr}")
    return elapsed


def measure(runs: int, once: Callable[[], float]) -> list[float]:
    return [once() for _ in range(runs)]


def header_with_users(root: Path) -> Path | None:
    """A header under kernel/include/ that at least one kernel source includes."""
    sources = [p.read_text(errors="replace") for p in sorted((root / "kernel").rglob("*.c"))]
    for header in sorted((root / "kernel" / "include").rglob("*.h")):
        if any(f'/{header.name}"' in s or f'"{header.name}"' in s for s in sources):
            return header
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each slow measurement")
    parser.add_argument("--noop-runs", type=int, default=10, help="runs of the no-op rebuild")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args()

    from kmtool.build.ninjafile import ESP_KERNEL_PATH, ESP_LOADER_PATH, KERNEL_ELF, LOADER_EFI
    from kmtool.image.assemble import build_image

    kmtool = kmtool_argv()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="kmtool-bench-") as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "src"
        for part in ("kernel", "efi", "include"):
            shutil.copytree(REPO / part, src / part)

        def clean_build() -> float:
            out = tmp / "clean"
            shutil.rmtree(out, ignore_errors=True)
            return timed([*kmtool, "build", "--build-dir", str(out)], src)

        results["clean build (kmtool build, empty build dir)"] = measure(args.runs, clean_build)
        build_dir = tmp / "clean"
        results["no-op rebuild (kmtool build, nothing changed)"] = measure(
            args.noop_runs, lambda: timed([*kmtool, "build", "--build-dir", str(build_dir)], src)
        )

        header = header_with_users(src)
        if header is not None:

            def header_rebuild() -> float:
                header.touch()
                return timed([*kmtool, "build", "--build-dir", str(build_dir)], src)

            name = f"one-header rebuild (touch {header.relative_to(src)})"
            results[name] = measure(args.runs, header_rebuild)

        loader, kernel = build_dir / LOADER_EFI, build_dir / KERNEL_ELF
        image = tmp / "bench.img"
        image_argv = [
            sys.executable, "-m", "kmtool.image", str(image),
            f"{ESP_LOADER_PATH}={loader}", f"{ESP_KERNEL_PATH}={kernel}",
        ]  # fmt: skip
        results["image step (python -m kmtool.image)"] = measure(
            args.runs, lambda: timed(image_argv, src)
        )

        def in_process() -> float:
            started = time.perf_counter()
            build_image(image, {ESP_LOADER_PATH: loader, ESP_KERNEL_PATH: kernel})
            return time.perf_counter() - started

        results["image in-process (build_image)"] = measure(args.runs, in_process)

    if args.json:
        print(
            json.dumps({k: {"median": statistics.median(v), "runs": v} for k, v in results.items()})
        )
        return 0
    print(f"Build benchmarks ({sys.platform}, Python {sys.version.split()[0]}; wall seconds)\n")
    print("| measurement | median | min | max | runs |")
    print("|---|---:|---:|---:|---:|")
    for name, values in results.items():
        print(
            f"| {name} | {statistics.median(values):.3f} s | {min(values):.3f} s "
            f"| {max(values):.3f} s | {len(values)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
