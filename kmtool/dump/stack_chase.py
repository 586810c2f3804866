"""One frame stack's links, followed through a dump (docs/design.md §14): from the top run's first
frame along `FrameStack.next`, at most a budget of runs (stack_runs, itself at most the dump's
frames), each link checked to name a frame aligned address whose whole frame is in the dump.
kmtool.dump.frame_stack verifies the runs it returns (markers, run and count fields).

A stack is not sorted: it is last in, first out, so after a churn its runs lie anywhere in any
order, and the span chase's guess that a list ascends (kmtool.dump.chase) does not apply. What every
stacked run does carry is its free marker, at a known place in its first frame. So when the stack is
deep against the dump (`stack_index`), one vectorised pass over every frame of the dump (window by
window, the windows unmapped afterwards) reads each frame's node and keeps the frames whose marker
and run field name that frame itself: the first frames of stacked runs, which is the guess. A sorted
search links each guessed node to the guessed node its `next` names. The walk then follows guessed
links in a tight loop over machine integers, and reads every node that is not guessed (a frame whose
marker was overwritten, say) exactly from the dump, as it reads the link leaving it. The guess
decides only how a node is read, never what the walk finds: a guessed node's `next` is the very word
the exact read returns, guessed nodes pass every link check by construction, and the budget is
counted node by node, so runs and error are those of the node-by-node walk.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from itertools import repeat
from typing import NamedTuple

import numpy as np

from kmtool.dump.memory import WORD, PhysicalMemory
from kmtool.dump.records import field_offset
from kmtool.layout.table import PAGE_SHIFT, PAGE_SIZE
from kmtool.schemas.frames import FRAME_STACK_MAGIC, STACK_NODE_COLOURS, FrameStack

MARKER, RUN, NEXT = (field_offset(FrameStack, f) // WORD for f in ("marker", "run", "next"))
COLOUR_WORDS = 64 // WORD  # words between the nodes of neighbouring frames (stack_node_offset)
SCAN_WINDOW = 16 << 20  # bytes of a range one scan step reads
SCAN_MIN_RUNS = 4096  # below this many stacked runs the walk goes node by node
SCAN_PAGES_PER_RUN = 32  # ... and also when the dump has more frames than this per stacked run
SCAN_MAX_PAGES = 1 << 22  # frames (16 GiB) a scan reads at most
SCAN_SLACK = 4096  # frames with a marker beyond the budget before the guess is given up


class StackIndex(NamedTuple):
    """The guess: first frames of stacked runs (their own marker and run), ascending; each one's
    `next` word; and the index of the guessed node that `next` names (-1: none)."""

    addresses: array[int]
    nexts: array[int]
    succ: array[int]


def stack_index(memory: PhysicalMemory, key: int, budget: int) -> StackIndex | None:
    """The guess for a stack of `budget` runs under marker key `key`, or None when a walk node by
    node is cheaper (few runs, or a dump of many frames per run, or larger than SCAN_MAX_PAGES) or
    when more frames carry a marker than the budget allows (then the walk goes node by node)."""
    scanned = [i for i, r in enumerate(memory.ranges) if r.start % PAGE_SIZE == 0]
    pages = sum(memory.ranges[i].file_size // PAGE_SIZE for i in scanned)
    if budget < SCAN_MIN_RUNS or pages > SCAN_MAX_PAGES or budget * SCAN_PAGES_PER_RUN < pages:
        return None
    found: list[tuple[np.ndarray, np.ndarray]] = []
    total = 0
    for i in scanned:
        for part in _scan_range(memory, i, key):
            found.append(part)
            total += len(part[0])
            if total > budget + SCAN_SLACK:
                return None
    if not found:
        return StackIndex(array("Q"), array("Q"), array("q"))
    addresses = np.concatenate([a for a, _ in found])
    nexts = np.concatenate([n for _, n in found])
    pos = np.minimum(np.searchsorted(addresses, nexts), len(addresses) - 1)
    succ = np.where(addresses[pos] == nexts, pos, -1).astype(np.int64)
    return StackIndex(array("Q", addresses.astype(np.uint64).tobytes()),
                      array("Q", nexts.astype(np.uint64).tobytes()),
                      array("q", succ.tobytes()))  # fmt: skip


def _scan_range(memory: PhysicalMemory, i: int, key: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The guessed nodes of range `i` (page aligned), window by window: (addresses, nexts)."""
    r = memory.ranges[i]
    words = memory.range_words(i)
    pages = r.file_size // PAGE_SIZE  # frames stored whole
    step = SCAN_WINDOW // PAGE_SIZE
    first_colour = (r.start >> PAGE_SHIFT) % STACK_NODE_COLOURS
    out = []
    for first in range(0, pages, step):
        k = np.arange(first, min(pages, first + step), dtype=np.int64)
        start, end = r.start + first * PAGE_SIZE, r.start + (first + len(k)) * PAGE_SIZE
        memory.populate(i, start, end)
        at = k * (PAGE_SIZE // WORD) + (k + first_colour) % STACK_NODE_COLOURS * COLOUR_WORDS
        phys = np.uint64(r.start) + k.astype(np.uint64) * np.uint64(PAGE_SIZE)
        mine = (words[at + MARKER] == np.uint64(FRAME_STACK_MAGIC ^ key) ^ phys) & (
            words[at + RUN] == phys
        )
        if mine.any():
            out.append((phys[mine], words[at[mine] + NEXT].copy()))
        memory.release_range(i, start, end)
    return out


def stack_links(
    memory: PhysicalMemory, head: int, budget: int, index: StackIndex | None = None
) -> tuple[list[int], str]:
    """Follow one stack's `next` words from `head`, at most `budget` runs: the runs' first frames
    and what stopped the walk early ("" at the bottom). A link stops it when its frame is not
    wholly in the dump, when it is not frame aligned, or when the budget is spent (a loop, or more
    runs than stack_runs). `index` (from `stack_index`) only speeds the walk up (module doc)."""
    out: list[int] = []
    append = out.append
    guessed = index.addresses if index is not None else array("Q")
    views: dict[int, memoryview] = {}
    a, lo, hi, base, view = head, 1, 0, 0, memoryview(b"").cast("Q")
    while a:
        if not lo <= a <= hi:
            i = memory.range_index(a)
            r = memory.ranges[i] if i >= 0 else None
            if r is None or r.start % WORD or a > r.file_end - PAGE_SIZE:
                return (
                    out,
                    f"Stacked run {hex(a)} (linked from {_origin(out)}) is outside the dump.",
                )
            if i not in views:
                views[i] = memory.word_view(i)
            lo, hi, base, view = r.start, r.file_end - PAGE_SIZE, r.start, views[i]
        if a % PAGE_SIZE or len(out) >= budget:
            why = "is not frame aligned" if a % PAGE_SIZE else "closes a loop or passes stack_runs"
            return out, f"Stacked run {hex(a)} (linked from {_origin(out)}) {why}."
        k = bisect_left(guessed, a)
        if k < len(guessed) and guessed[k] == a and index is not None:
            a = _follow(index, k, out, budget)
            continue
        append(a)
        a = view[(a - base >> 3) + (a >> PAGE_SHIFT) % STACK_NODE_COLOURS * COLOUR_WORDS + NEXT]
    return out, ""


def _follow(index: StackIndex, k: int, out: list[int], budget: int) -> int:
    """Append guessed node `k` and the guessed nodes it links to, while the budget lasts; return
    the address the last one links to (a node not guessed, or 0), or the next guessed node when
    the budget is spent (the caller then names it)."""
    addresses, nexts, succ = index
    append = out.append
    for _ in repeat(None, budget - len(out)):
        append(addresses[k])
        j = succ[k]
        if j < 0:
            return nexts[k]
        k = j
    return addresses[k]


def _origin(out: list[int]) -> str:
    return hex(out[-1]) if out else "the stack head"
