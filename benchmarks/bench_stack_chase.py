"""The frame stack's chase beside the span chase, on one generated 4 GiB dump (issue 13: "the stack
chase runs at least as fast as today's span chase").

    .venv/bin/python benchmarks/bench_stack_chase.py [--runs 7] [--write]

The dump is bench_inspect's (262,144 one-frame spans in every other frame from 1 MiB up, all the
kernel state around them), copied as `kmtool run` writes a dump, with a deep stack added: 262,144
stacked one-frame runs, one in each frame between the spans, each with its node at its
per-frame offset (marker, run, count, next). Two stack orders, each written into the same dump in
turn:

  ascending   the top run is the lowest frame and each links to the next frame up: what freeing a
              process's frames one by one leaves (the allocator hands frames out from a span's top
              down, so a process's later frames sit lower);
  shuffled    a random order: what a long churn leaves.

Measured (medians, min and max alongside), interleaved in one process, bounded memory (the
default): the span chase (read_free_list with the span checks, as in bench_inspect, the anchor) and
the stack chase (kmtool.dump.frame_stack.read_stack: every stack walked and every run's first and
last frame verified), each after one untimed pass. With --write, replaces the "Frame stack chase"
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
from pathlib import Path

import numpy as np
from bench_inspect import SPAN_BASE, SPANS, generate, timed, write_as_kmtool
from benchmarks_md import write_section

from kmtool.dump import frame_stack
from kmtool.dump.checks import spans
from kmtool.dump.frame_stack import read_stack
from kmtool.dump.frames import read_free_list
from kmtool.dump.source import open_dump
from kmtool.layout.table import PAGE_SIZE
from kmtool.schemas.frames import FRAME_STACK_MAGIC, FrameAllocator, stack_node_offset

SECTION = "## Frame stack chase"
KEY = 0x1F2E3D4C5B6A7988
RUNS = SPANS  # one stacked frame between each two spans


def write_stack(path: Path, order: list[int]) -> int:
    """Write one stacked one-frame run into each frame of `order` (top first); return the top."""
    fd = os.open(path, os.O_WRONLY)
    try:
        for k, f in enumerate(order):
            nxt = order[k + 1] if k + 1 < len(order) else 0
            words = np.array([FRAME_STACK_MAGIC ^ f ^ KEY, f, 1, nxt], dtype="<u8")
            os.pwrite(fd, words.tobytes(), f + stack_node_offset(f))
    finally:
        os.close(fd)
    return order[0]


def measure(dump: Path, frames_pa: int, top: int, runs: int) -> list[list[float]]:
    """Interleaved runs of the span chase, the stack chase and the stack chase without its guess
    (node by node); their times."""
    memory = open_dump(dump).memory
    state = FrameAllocator.parse(memory.read(frames_pa, FrameAllocator.sizeof(), "state"))
    state.stack_runs = state.stack_frames = RUNS
    state.stack_key = KEY
    state.stack[0] = top
    checks = (spans.spans_aligned, spans.spans_sorted, spans.spans_coalesced, spans.span_links,
              spans.free_frames_counter, spans.spans_counter)  # fmt: skip

    def span_chase() -> None:
        fl = read_free_list(memory, frames_pa)
        assert all(c(fl).ok for c in checks) and len(fl.nodes) == SPANS

    def stack_chase() -> None:
        view = read_stack(memory, state)
        assert view.errors == () and len(view.runs) == RUNS, view.errors

    def unguessed() -> None:
        guess = frame_stack.stack_index
        frame_stack.stack_index = lambda *_: None  # type: ignore[assignment]
        try:
            stack_chase()
        finally:
            frame_stack.stack_index = guess

    times: list[list[float]] = [[], [], []]
    for fn in (span_chase, stack_chase, unguessed):
        fn()
    for _ in range(runs):
        for t, fn in zip(times, (span_chase, stack_chase, unguessed), strict=True):
            t += timed(fn, 1)[0]
    memory.close()
    return times


def cell(times: list[float], nodes: int) -> str:
    med = statistics.median(times)
    return (f"{med:.3f} s ({min(times):.3f}-{max(times):.3f}) | "
            f"{nodes / med / 1e6:.2f} M nodes/s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kmtool-bench-stack-"))
    rows = []
    try:
        pieces, dump = tmp / "pieces.raw", tmp / "dump.raw"
        frames_pa = generate(pieces)["frames"]
        between = [SPAN_BASE + (2 * k + 1) * PAGE_SIZE for k in range(RUNS)]
        shuffled = between[:]
        random.Random(13).shuffle(shuffled)
        for name, order in (("ascending", between), ("shuffled", shuffled)):
            top = write_stack(pieces, order)
            write_as_kmtool(pieces, dump)
            span_t, stack_t, plain_t = measure(dump, frames_pa, top, args.runs)
            ratio = statistics.median(span_t) / statistics.median(stack_t)
            rows.append(f"| {name} | {cell(span_t, SPANS)} | {cell(stack_t, RUNS)} | "
                        f"{ratio:.2f}x | {cell(plain_t, RUNS)} |")  # fmt: skip
            dump.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = "\n".join([
        SECTION,
        "",
        f"`.venv/bin/python benchmarks/bench_stack_chase.py --runs {args.runs} --write` (the "
        f"4 GiB dump of bench_inspect as kmtool writes dumps, plus {RUNS:,} stacked one-frame runs "
        "between its spans; span and stack chase interleaved in one process, bounded memory; "
        "medians, min-max in brackets):",
        "",
        "| stack order | span chase (anchor) | span: nodes/s | stack chase | stack: nodes/s | "
        "stack / span speed | stack, node by node (no guess) | nodes/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "- span chase: read_free_list with the span checks ("
        f"{SPANS:,} nodes), as in the free-list rows above. Stack chase: read_stack, every stack "
        "walked and every run's first and last frame checked for marker, run and count.",
        "- ascending: the top run is the lowest frame, each links to the next one up (what freeing "
        "a process's frames one by one leaves); shuffled: a random order (what a churn leaves).",
        "- How the stack chase is fast: kmtool/dump/stack_chase.py. The windows (16 MiB) the "
        "stacks reach are scanned, each in one vectorised pass over every frame's node (one "
        "strided copy), keeping the frames whose marker and run field name themselves: the guess. "
        "A table per scanned window maps frames to guessed nodes, so every guessed link is one "
        "array lookup; the walk finds every 16th node of the guessed path at C speed (a list "
        "extended from a map over itself, through each node's 16th successor) and the nodes "
        "between in 15 array steps; the scan's count words verify the guessed runs' first frames. "
        "Anything not guessed is read exactly, so runs and errors are the node-by-node walk's "
        "(tests/dump/test_stack_chase.py, tests/dump/test_frame_stack_guess.py). Node by node: "
        "the same walk with the guess turned off, one memoryview read per run (what a stack of "
        "fewer than 4,096 runs, or one in a dump of more than 32 frames per run, gets).",
        "",
    ])  # fmt: skip
    print(text)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
