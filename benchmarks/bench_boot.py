"""Boot-to-pass time of the real kernel image next to a bare "hello" EFI application, same run.

    .venv/bin/python benchmarks/bench_boot.py [--repeat 5] [--memory 512M] [--json]

Both are booted by kmtool's runner (`run_image`, the code path of `kmtool run`) with the same
machine: q35, OVMF, the accelerator kmtool picks (TCG on machines where KVM cannot run firmware).
The runs alternate (hello, kernel, hello, kernel, ...) so a busy host slows both alike, and the
table shows medians. The hello app (benchmarks/hello_efi.c) prints one line and writes the pass
value to the exit port at once, so its time is OVMF's own share: the difference is what the loader
and the kernel cost.

Columns: "to exit" = QEMU start to QEMU exit (the pass outcome); "to report" = QEMU start to the
KM-REPORT line on serial. Both the image and the hello app are built fresh into a temporary
directory first (not timed), each on a GPT disk made by kmtool's image assembler.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hello_efi import build_hello  # noqa: E402

from kmtool.build.ninjafile import ESP_LOADER_PATH, IMAGE  # noqa: E402
from kmtool.image.assemble import build_image as assemble_image  # noqa: E402
from kmtool.qemu.cmdline import parse_size  # noqa: E402
from kmtool.qemu.outcome import Outcome  # noqa: E402
from kmtool.qemu.runner import RunOptions, RunResult, run_image  # noqa: E402


def build_image(build_dir: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "kmtool", "build", "--build-dir", str(build_dir)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    return build_dir / IMAGE


def build_hello_image(work: Path) -> Path:
    """The hello app on the same kind of disk as the kernel: GPT + FAT32 ESP from kmtool's own
    image assembler (a vvfat directory would boot by a different, slower firmware path)."""
    esp = build_hello(work, "pass")
    image = work / "hello.img"
    assemble_image(image, {ESP_LOADER_PATH: esp / ESP_LOADER_PATH})
    return image


def summarize(results: list[RunResult]) -> dict[str, float | int | None]:
    totals = [r.seconds for r in results]
    ready = [r.ready_seconds for r in results if r.ready_seconds is not None]
    cycles = [
        r.report["bootstrap_cycles"]
        for r in results
        if r.report and isinstance(r.report.get("bootstrap_cycles"), int)
    ]
    return {
        "runs": len(results),
        "median_seconds": statistics.median(totals),
        "min_seconds": min(totals),
        "max_seconds": max(totals),
        "median_report_seconds": statistics.median(ready) if ready else None,
        "median_bootstrap_cycles": int(statistics.median(cycles)) if cycles else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="boots of each (default 5)")
    parser.add_argument("--memory", default="512M", help="guest RAM (default 512M)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kmtool-bench-boot-") as temp:
        work = Path(temp)
        subjects = {
            "hello EFI app (firmware only)": build_hello_image(work / "hello"),
            "kmtool image (loader + kernel)": build_image(work / "build"),
        }
        options = RunOptions(memory=parse_size(args.memory), timeout=120, build_dir=work / "logs")
        results: dict[str, list[RunResult]] = {name: [] for name in subjects}
        for _ in range(args.repeat):
            for name, image in subjects.items():
                result = run_image(image, options)
                if result.outcome is not Outcome.PASS:
                    print(
                        f"{name}: outcome {result.outcome.value}: {result.message}", file=sys.stderr
                    )
                    return 1
                results[name].append(result)

    accel = next(iter(results.values()))[0].accel
    table = {name: summarize(rs) for name, rs in results.items()}
    hello, kernel = (table[name]["median_seconds"] for name in subjects)
    assert isinstance(hello, float) and isinstance(kernel, float)
    if args.json:
        print(json.dumps({"accel": accel, "memory": args.memory, "subjects": table,
                          "firmware_share": hello / kernel}, indent=2))  # fmt: skip
        return 0

    print(f"boot to pass, {args.repeat} runs each, alternating; {args.memory}, accel {accel}")
    print(f"{'':32} {'median':>8} {'min':>8} {'max':>8} {'to report':>10} {'bootstrap':>12}")
    for name, row in table.items():
        report = row["median_report_seconds"]
        cycles = row["median_bootstrap_cycles"]
        print(
            f"{name:32} {row['median_seconds']:7.2f}s {row['min_seconds']:7.2f}s "
            f"{row['max_seconds']:7.2f}s {'-' if report is None else f'{report:.2f}s':>10} "
            f"{'-' if cycles is None else f'{cycles:,} cyc':>12}"
        )
    print(
        f"firmware share of boot-to-pass: {hello / kernel:.0%} (hello {hello:.2f} s of "
        f"{kernel:.2f} s); loader + kernel add {kernel - hello:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
