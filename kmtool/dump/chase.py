"""A singly linked list of physical-address nodes, chased through a dump in bulk (docs/design.md
§7.2, §10): bounded by the frames the dump holds, and stopping at the first structural fault with
the nodes read before it and the sentence naming it. kmtool.dump.frames chases the free list with
it; `chase` documents the windows and guesses that keep it array-fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

import construct
import numpy as np

from kmtool.dump.memory import WORD, PhysicalMemory
from kmtool.dump.records import field_offset, words_to_records
from kmtool.errors import DumpError
from kmtool.layout.table import PAGE_SHIFT, PAGE_SIZE

WINDOW = 16 << 20  # bytes of physical address space the chase maps at a time
DENSE_PAGES_PER_NODE = 64  # a window with at most this many pages per node is prefetched whole
GUESSES = 8  # vectorised guesses per dense window before it is followed node by node
THIN_STEPS = 8  # consecutive steps of at most one node before the chase goes node by node
NODE_BATCH = 1 << 16  # nodes one node-by-node step reads at most


class Chased(NamedTuple):
    """What `chase` read: the nodes' physical addresses and records, in list order, and why the walk
    stopped before the list's end (None: it reached the 0 that ends it)."""

    addresses: np.ndarray
    records: np.ndarray
    error: str | None


def chase(
    memory: PhysicalMemory,
    head: int,
    struct: construct.Struct,
    next_field: str,
    what: str,
    align: int = WORD,
    tag: tuple[str, int] | None = None,
) -> Chased:
    """The nodes of a singly linked list of `struct` records (see `Chased`).

    `next_field` holds the physical address of the next node; 0 ends the list. The walk stops at a
    node outside the dump or not `align`-aligned, or after more nodes than the dump has 4 KiB frames
    (a cycle); the nodes read before it are returned with the sentence naming it (for a cycle, the
    node that closes it, and the nodes up to the first one visited twice). `tag` (field, value: a
    magic every node carries) only speeds the walk up; the links alone decide what the list is.

    The list is followed window by window (WINDOW bytes of physical address space). Where nodes are
    dense, every page head of the window is read in one vectorised pass (`page_heads`; page-aligned
    nodes all fall in the same few cache sets, so a pointer-by-pointer walk would take a cache miss
    per node) and the window's part of the list is found with array operations (`_run_heads`).
    Sparse windows use a plain loop over a memoryview. Either way the window is unmapped afterwards
    (`release_range`), so resident memory stays bounded however long the list.
    """
    shape = _Shape.of(struct, next_field, what, align, tag)
    limit = memory.ram_bytes // PAGE_SIZE + 1
    parts: list[tuple[np.ndarray, np.ndarray]] = []  # (addresses, records) of each step
    total = 0
    a, last = head, 0  # the next node, and the node that linked to it (0: the list head)
    stepper = _Stepper(memory, shape)
    while a and total < limit and a not in stepper.seen:
        try:
            addresses, records, a = stepper.step(a, last, limit - total)
        except DumpError as err:  # outside the dump, misaligned, or a node cut by a range's end
            addresses, records = _joined(parts, shape)
            return Chased(addresses, records, str(err))
        parts.append((addresses, records))
        total += len(addresses)
        last = int(addresses[-1]) if len(addresses) else last
    addresses, records = _joined(parts, shape)
    if not a:
        return Chased(addresses, records, None)
    # A cycle: `a` is a node visited before (by the node-by-node steps' record) or the dump's
    # frame count is reached; the first repeat ends the list either way.
    j, message = _cycle([*addresses.tolist(), a], what)
    return Chased(addresses[:j], records[:j], message)


class _Stepper:
    """One step of `chase` at a time: the nodes of one window (or one exact node) from `a`."""

    def __init__(self, memory: PhysicalMemory, shape: _Shape) -> None:
        self.memory, self.shape = memory, shape
        self.views: dict[int, memoryview] = {}
        self.dense = True
        self.thin = 0  # consecutive steps that found at most one node
        self.seen: set[int] = set()  # the nodes node-by-node steps visited

    def step(self, a: int, last: int, budget: int) -> tuple[np.ndarray, np.ndarray, int]:
        """The nodes from `a` (`last` linked to it) up to `budget`, their records, and where the
        list goes on. A misaligned node inside a window ends the step there; the next step
        raises on it (`_range_of`), so every fault is named in one place."""
        memory, shape = self.memory, self.shape
        i = _range_of(memory, a, last, shape)
        if self.thin >= THIN_STEPS:
            # A list that leaves every window after one node (across ranges, say): window
            # set-up would cost more than the nodes, so read them one by one for a while.
            self.thin = 0
            return _node_by_node(memory, a, shape, min(budget, NODE_BATCH), self.seen)
        addresses, records, a = self._window_step(i, a, budget)
        self.thin = self.thin + 1 if len(addresses) <= 1 else 0
        misaligned = np.flatnonzero(addresses % np.uint64(shape.align))
        if len(misaligned):
            k = int(misaligned[0])
            return addresses[:k], records[:k], int(addresses[k])
        return addresses, records, a

    def _window_step(self, i: int, a: int, budget: int) -> tuple[np.ndarray, np.ndarray, int]:
        """The nodes from `a` (in range `i`) that one window holds, read in bulk."""
        memory, shape = self.memory, self.shape
        r = memory.ranges[i]
        hi = r.file_end - shape.node_size  # the last node start whose record is in the file
        if a > hi or a % WORD or r.start % WORD:
            # Zero tail, straddling a range end, a misaligned node or range: one exact read.
            return _exact_node(memory, a, shape)
        window = _Window(i, a, min(a - a % WINDOW + WINDOW, hi + 1))
        aligned = a % PAGE_SIZE == 0 and r.start % PAGE_SIZE == 0
        if self.dense and aligned and shape.node_size <= PAGE_SIZE:
            addresses, records, a = _dense_window(memory, window, shape, budget)
        else:
            addresses, records, a = _sparse_window(memory, self.views, window, shape, budget)
        memory.release_range(i, window.first, window.end + shape.node_size)
        # Dense (read the next window's page heads in bulk) when this one held enough nodes;
        # a window that yielded none falls back to the plain loop, which always makes progress.
        pages_spanned = (window.end - window.first) // PAGE_SIZE
        self.dense = len(addresses) > 0 and len(addresses) * DENSE_PAGES_PER_NODE >= pages_spanned
        return addresses, records, a


def _node_by_node(
    memory: PhysicalMemory, a: int, shape: _Shape, budget: int, seen: set[int]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Up to `budget` nodes from `a`, one plain read each, across ranges; each goes into `seen`.
    Stops (returning that address) at the 0 ending the list, at a node visited before in `seen`
    (`chase` names the cycle), or at one outside the dump or misaligned (the next step names it)."""
    size = shape.width * WORD
    found: list[int] = []
    data: list[bytes] = []
    for _ in repeat(None, budget):
        if not a or a in seen or a % shape.align or not memory.contains(a, size):
            break
        chunk = memory.read(a, size, f"{shape.what} node")
        found.append(a)
        seen.add(a)
        data.append(chunk)
        a = int.from_bytes(chunk[shape.next_offset : shape.next_offset + WORD], "little")
    records = np.frombuffer(b"".join(data), dtype="<u8").reshape(len(found), shape.width)
    return np.array(found, dtype=np.uint64), records, a


def _range_of(memory: PhysicalMemory, a: int, last: int, shape: _Shape) -> int:
    """The index of the dump range holding node `a` (`last` linked to it); DumpError when no
    range does or `a` is not aligned."""
    i = memory.range_index(a)
    if i < 0:
        origin = hex(last) if last else "the list head"
        raise DumpError(
            f"{shape.what.capitalize()}: node {hex(a)} (linked from {origin}) is outside the dump."
        )
    if a % shape.align:
        raise _not_aligned(shape.what, a, last, shape.align)
    return i


def _exact_node(
    memory: PhysicalMemory, a: int, shape: _Shape
) -> tuple[np.ndarray, np.ndarray, int]:
    """The one node at `a`, read exactly as it stands: its address, its record, its next."""
    data = memory.read(a, shape.width * WORD, f"{shape.what} node")
    record = np.frombuffer(data, dtype="<u8").reshape(1, shape.width)
    nxt = int.from_bytes(data[shape.next_offset : shape.next_offset + WORD], "little")
    return np.array([a], dtype=np.uint64), record, nxt


class _Window(NamedTuple):
    """The part of one dump range a chase step covers."""

    range_index: int
    first: int  # the first node's address
    end: int  # one past the last address a node may start at


@dataclass(frozen=True)
class _Shape:
    """What `chase` needs to know of the list's records."""

    struct: construct.Struct
    what: str
    align: int
    node_size: int  # bytes of one record
    width: int  # words one record spans
    next_offset: int  # byte offset of the next pointer
    key: tuple[int, int] | None  # (word, value) of the tag, or None
    cols: np.ndarray  # 0 .. width - 1, to gather a record's words

    @classmethod
    def of(
        cls,
        struct: construct.Struct,
        next_field: str,
        what: str,
        align: int,
        tag: tuple[str, int] | None,
    ) -> _Shape:
        node_size = struct.sizeof()
        width = -(-node_size // WORD)
        next_offset = field_offset(struct, next_field)
        assert next_offset % WORD == 0, "next pointer must be a whole word"
        key = None if tag is None else (field_offset(struct, tag[0]) // WORD, tag[1])
        cols = np.arange(width, dtype=np.int64)
        return cls(struct, what, align, node_size, width, next_offset, key, cols)


def _dense_window(
    memory: PhysicalMemory, window: _Window, shape: _Shape, budget: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Read every page head of the window in one pass and chase it with array operations.
    Returns the window's nodes, their records, and where the list goes on."""
    i, first, end = window
    heads = memory.page_heads(i, first, end, shape.width)
    index, a = _run_heads(heads, first, shape.next_offset // WORD, shape.key, budget)
    addresses = np.uint64(first) + index.astype(np.uint64) * np.uint64(PAGE_SIZE)
    return addresses, heads.take(index, axis=0), a


def _sparse_window(
    memory: PhysicalMemory,
    views: dict[int, memoryview],
    window: _Window,
    shape: _Shape,
    budget: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """`_dense_window` for a sparse window: follow the list pointer by pointer over a memoryview
    of the range's words (made once per range, kept in `views`)."""
    i, first, end = window
    r = memory.ranges[i]
    view = views.get(i)
    if view is None:
        view = views[i] = memory.word_view(i)
    found: list[int] = []
    # lo is at least 1 so the terminating 0 leaves the loop even in a range starting at 0; the
    # view index of a node's next pointer is (a >> 3) + word.
    word = (shape.next_offset >> 3) - (r.start >> 3)
    a = _run(view, first, max(r.start, 1), end - 1, word, found.append, budget)
    addresses = np.array(found, dtype=np.uint64)
    rows = ((addresses - np.uint64(r.start)) >> np.uint64(3)).astype(np.int64)
    return addresses, memory.range_words(i)[rows[:, None] + shape.cols], a


def _joined(
    parts: list[tuple[np.ndarray, np.ndarray]], shape: _Shape
) -> tuple[np.ndarray, np.ndarray]:
    """The chase's steps as one address array and one record array."""
    if not parts:
        empty = np.zeros((0, shape.width), "<u8")
        return np.zeros(0, dtype=np.uint64), words_to_records(empty, shape.struct)
    addresses = np.concatenate([p[0] for p in parts])
    return addresses, words_to_records(np.concatenate([p[1] for p in parts]), shape.struct)


def _not_aligned(what: str, node: int, linked_from: int, align: int) -> DumpError:
    kind = "page" if align == PAGE_SIZE else f"{align}-byte"
    origin = f"node {hex(linked_from)}" if linked_from else "the list head"
    return DumpError(
        f"{what.capitalize()}: node {hex(node)} is not {kind} aligned (linked from {origin})."
    )


def _run(view: memoryview, a: int, lo: int, hi: int, word: int, append: Any, budget: int) -> int:
    """Follow the list while nodes stay within [lo, hi]; return the first address outside.

    The hot loop of the sparse chase: one compare, one append and one word load per node. (A
    misaligned node reads the word below its next pointer; `chase` rejects it after the window.)
    """
    for _ in repeat(None, budget):
        if not lo <= a <= hi:
            return a
        append(a)
        a = view[(a >> 3) + word]
    return a


def _run_heads(
    heads: np.ndarray, base: int, next_col: int, key: tuple[int, int] | None, budget: int
) -> tuple[np.ndarray, int]:
    """The dense-window chase. `heads[k]` holds the words of page `base + k * PAGE_SIZE`; follow
    the list from `base` (the first node) while each next node is a later page of the window.
    Returns the pages visited (indices into `heads`) and the first address that is not such a
    page: the 0 ending the list, a lower address, one past the window or a misaligned one, for
    `chase` to take up; or, when `budget` nodes are taken, the next node not visited.

    A correct list ascends, so if the dump is what it claims, the nodes after the current one are
    the later pages whose `key` word (column, value: the magic) matches, in page order. That guess
    costs a few array operations and is checked in one comparison (each candidate's next pointer
    must be the following candidate); the chase keeps the agreeing prefix and goes on from where
    its last node points, guessing again. Every step goes forward, so no cycle can form inside a
    window and none needs looking for. After GUESSES disagreements in a window (stale nodes that
    still carry the magic, say), or without a `key`, the rest is followed node by node.
    """
    nexts = heads[:, next_col]
    end = base + len(heads) * PAGE_SIZE
    runs: list[np.ndarray] = []
    k = 0
    if key is not None:
        tagged = np.flatnonzero(heads[:, key[0]] == np.uint64(key[1]))
        tagged_at = np.uint64(base) + tagged.astype(np.uint64) * np.uint64(PAGE_SIZE)
        for _ in range(GUESSES):
            j = int(np.searchsorted(tagged, k, side="right"))
            guess = np.concatenate(([k], tagged[j:]))
            agree = nexts[guess[:-1]] == tagged_at[j:]
            run = guess[: len(guess) if agree.all() else int(np.argmin(agree)) + 1][:budget]
            runs.append(run)
            budget -= len(run)
            a = int(nexts[run[-1]])
            if not budget or not base + int(run[-1]) * PAGE_SIZE < a < end or a % PAGE_SIZE:
                return np.concatenate(runs), a
            k = (a - base) >> PAGE_SHIFT
    pages: list[int] = []
    a = _run_pages(nexts.tolist(), base + k * PAGE_SIZE, base, pages.append, budget)
    runs.append(np.array(pages, dtype=np.intp))
    return np.concatenate(runs), a


def _run_pages(nexts: list[int], a: int, lo: int, append: Any, budget: int) -> int:
    """`_run_heads` node by node: nodes are page heads from `lo`, `nexts[k]` is the next pointer
    of page k. Follow while nodes are page-aligned heads inside the window, forwards or back;
    return the first one that is not (or the 0 that ends the list)."""
    hi = lo - lo % PAGE_SIZE + len(nexts) * PAGE_SIZE
    base = lo - lo % PAGE_SIZE
    for _ in repeat(None, budget):
        if not lo <= a < hi or a % PAGE_SIZE:
            return a
        k = (a - base) >> PAGE_SHIFT
        append(k)
        a = nexts[k]
    return a


def _cycle(found: list[int], what: str) -> tuple[int, str]:
    """Where a list that ran past the dump's frame count repeats itself: the index of its first node
    visited twice (the nodes before it are the list read so far), and the sentence naming the node
    that links back. Without a repeat (more nodes than frames, all distinct) every node is kept."""
    arr = np.array(found, dtype=np.uint64)
    order = np.argsort(arr, kind="stable")
    dup = order[1:][arr[order][1:] == arr[order][:-1]]
    if len(dup):
        j = int(dup.min())
        return j, (
            f"{what.capitalize()}: a cycle: node {hex(found[j - 1])} links back to "
            f"{hex(found[j])}, visited before."
        )
    return len(found), (
        f"{what.capitalize()}: more than {len(found) - 1} nodes, more than the dump has frames."
    )
