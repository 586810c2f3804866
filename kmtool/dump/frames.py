"""The frame allocator's free list, chased through the dump (docs/design.md §4.2, kmtool.schemas.frames).

Each free span keeps one `FrameSpan` node in its own first frame; the allocator state
(struct km_frame_allocator) holds the head. `chase` follows the `next` physical pointers window by
window (see its docstring) with array operations, no Python work per node where the list is dense
and ascending, bounded by the number of frames the dump can hold: a cyclic list ends in a
`DumpError` naming the node that closes the cycle instead of a hang. The nodes are decoded in bulk
with numpy as the chase goes, and checked in bulk afterwards.

Structural faults stop decoding (a node outside the dump, misaligned, with the wrong magic, a
count larger than the dump's RAM, or a cycle). Faults of meaning (unsorted, uncoalesced, a wrong
`prev`, counts that disagree, a treap that is not the list's) are left to the checks, which name
them. The treap links (`left`, `right`, `priority`, the state's `root`) are decoded with the nodes
and checked in bulk by kmtool.dump.checks; nothing here follows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from typing import Any, NamedTuple

import construct
import numpy as np

from kmtool.dump.document import FrameCountersDoc, FramesDoc
from kmtool.dump.frame_stack import FrameStackView, read_stack
from kmtool.dump.memory import MAX_PHYSICAL, WORD, PhysicalMemory
from kmtool.dump.records import field_offset, parse, words_to_records
from kmtool.errors import DumpError
from kmtool.layout.table import PAGE_SHIFT, PAGE_SIZE
from kmtool.schemas.frames import (
    FRAME_SPAN_MAGIC,
    SPAN_HASH_MULTIPLIER,
    FrameAllocator,
    FrameSpan,
)

SPAN_LIST_LIMIT = 1 << 16  # spans listed in JSON
WINDOW = 16 << 20  # bytes of physical address space the chase maps at a time
DENSE_PAGES_PER_NODE = 64  # a window with at most this many pages per node is prefetched whole
GUESSES = 8  # vectorised guesses per dense window before it is followed node by node


@dataclass
class FreeList:
    """The allocator state and the decoded span nodes (a structured array in list order)."""

    state_address: int
    state: Any  # construct Container of FrameAllocator
    nodes: np.ndarray  # numpy_dtype(FrameSpan) records
    addresses: np.ndarray  # where each node was read (uint64)
    stack: FrameStackView | None = None  # the stack half (None: not decoded)

    # Columns as contiguous uint64 arrays, made once: every span check reads them. (Read-only.)

    @cached_property
    def starts(self) -> np.ndarray:
        return _frozen(self.nodes["start"].astype(np.uint64))

    @cached_property
    def counts(self) -> np.ndarray:
        return _frozen(self.nodes["count"].astype(np.uint64))

    @cached_property
    def ends(self) -> np.ndarray:
        """One past each span's last byte, saturated at 2^64 - 1 instead of wrapping.

        `read_free_list` bounds every count by `max_span_frames`, so `count * PAGE_SIZE` cannot wrap;
        a start near 2^64 could, and its span then reaches the top of the address space (where no
        usable memory or offset map is, so the checks fail it).
        """
        size = self.counts * np.uint64(PAGE_SIZE)
        top = np.uint64((1 << 64) - 1)
        return _frozen(np.where(self.starts > top - size, top, self.starts + size))

    @property
    def initialized(self) -> bool:
        """False while km_frames is still all zero (the kernel stopped before the allocator was set
        up): then the empty list says nothing about free memory, and the span checks do not apply."""
        values = (v for k, v in self.state.items() if not k.startswith("_"))
        return any(any(v) if isinstance(v, list) else v for v in values)  # `stack` is a list

    @property
    def free_frames(self) -> int:
        """Free frames as the kernel counts them: the spans' counts (exact, summed in 32-bit halves,
        so no uint64 wrap) and the stacked frames."""
        stacked = self.stack.frames if self.stack is not None else 0
        if not len(self.nodes):
            return stacked
        high = int((self.counts >> np.uint64(32)).sum())
        low = int((self.counts & np.uint64(0xFFFFFFFF)).sum())
        return (high << 32) + low + stacked

    def largest(self) -> tuple[int, int] | None:
        if not len(self.nodes):
            return None
        i = int(np.argmax(self.counts))
        return int(self.starts[i]), int(self.counts[i])

    def span_hash(self) -> str:
        """The ready report's span_hash (defined in kmtool.schemas.frames), "0x" + 16 digits.

        h = sum(w_i * P^(M - i)) mod 2^64 over the M = 2 x spans words start, count in list order,
        in one vectorised pass: uint64 products and sums wrap mod 2^64, and the powers of P come
        from a cumulative product.
        """
        words = np.empty(2 * len(self.nodes), dtype=np.uint64)
        words[0::2], words[1::2] = self.nodes["start"], self.nodes["count"]
        powers = np.full(len(words), SPAN_HASH_MULTIPLIER, dtype=np.uint64)
        if len(powers):
            powers[0] = 1
        powers = np.cumprod(powers, dtype=np.uint64)  # powers[k] = P^k
        h = int(np.sum(words * powers[::-1], dtype=np.uint64))
        return f"0x{h:016x}"

    def to_json(self) -> FramesDoc:
        largest = self.largest()
        free = self.free_frames
        spans: list[list[str | int]] = [
            [hex(s), c]
            for s, c in zip(
                self.starts[:SPAN_LIST_LIMIT].tolist(),
                self.counts[:SPAN_LIST_LIMIT].tolist(),
                strict=True,
            )
        ]
        return {
            "state_address": hex(self.state_address),
            "initialized": self.initialized,
            "free_frames": free,
            "free_bytes": free * PAGE_SIZE,
            "spans": len(self.nodes),
            "span_list": spans,
            "span_list_truncated": len(self.nodes) > SPAN_LIST_LIMIT,
            "span_hash": self.span_hash(),
            "largest_span": None
            if largest is None
            else {"start": hex(largest[0]), "count": largest[1]},
            "fragmentation": 0.0
            if not free or largest is None
            else round(1 - largest[1] / free, 6),
            "counters": self.counters(),
            "stack": None if self.stack is None else self.stack.to_json(),
        }

    def counters(self) -> FrameCountersDoc:
        """km_frames field by field, its physical addresses as hex."""
        s = self.state
        return {
            "head": hex(s.head),
            "free_frames": s.free_frames,
            "spans": s.spans,
            "managed_frames": s.managed_frames,
            "alloc_calls": s.alloc_calls,
            "free_calls": s.free_calls,
            "root": hex(s.root),
            "limit": hex(s.limit),
            "stack_frames": s.stack_frames,
            "stack_runs": s.stack_runs,
            "stack_limit": s.stack_limit,
            "folds": s.folds,
            "stack_key": s.stack_key,
            "stack": list(s.stack),
        }


def read_free_list(memory: PhysicalMemory, state_pa: int) -> FreeList:
    """Decode the allocator state at physical `state_pa` and every span node on its list."""
    data = memory.read(state_pa, FrameAllocator.sizeof(), "frame allocator state")
    state = parse(FrameAllocator, data, "frame allocator state", state_pa)
    addresses, nodes = chase(memory, state.head, FrameSpan, "next", "frame free list", PAGE_SIZE,
                             tag=("magic", FRAME_SPAN_MAGIC))  # fmt: skip
    wrong = np.flatnonzero(nodes["magic"] != np.uint64(FRAME_SPAN_MAGIC))
    if len(wrong):
        k = int(wrong[0])
        raise DumpError(
            f"Frame free list: node {hex(int(addresses[k]))} has magic {hex(int(nodes['magic'][k]))}"
            f", not {hex(FRAME_SPAN_MAGIC)} (linked from {_linked_from(addresses, k, state_pa)})."
        )
    limit = max_span_frames(memory)
    absurd = np.flatnonzero(nodes["count"] > np.uint64(limit))
    if len(absurd):
        k = int(absurd[0])
        count = int(nodes["count"][k])
        raise DumpError(
            f"Frame free list: FrameSpan at phys {hex(int(addresses[k]))} has count {hex(count)} "
            f"({count} frames), more than the {limit} frames the dump holds."
        )
    return FreeList(state_pa, state, nodes, addresses, read_stack(memory, state))


def max_span_frames(memory: PhysicalMemory) -> int:
    """The most frames one span can hold: the dump's RAM, and never past 52-bit physical space."""
    return min(memory.ram_bytes, MAX_PHYSICAL) // PAGE_SIZE


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _linked_from(addresses: np.ndarray, k: int, state_pa: int) -> str:
    return f"node {hex(int(addresses[k - 1]))}" if k else f"the allocator head at {hex(state_pa)}"


def chase(
    memory: PhysicalMemory,
    head: int,
    struct: construct.Struct,
    next_field: str,
    what: str,
    align: int = WORD,
    tag: tuple[str, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The nodes of a singly linked list of `struct` records: (physical addresses, records).

    `next_field` holds the physical address of the next node; 0 ends the list. The walk stops with
    a DumpError on a node outside the dump or not `align`-aligned, or after more nodes than the dump
    has 4 KiB frames (then naming the node that closes the cycle). `tag` (field, value: a magic
    every node carries) only speeds the walk up; the links alone decide what the list is.

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
    views: dict[int, memoryview] = {}
    total = 0
    dense = True
    a, last = head, 0  # the next node, and the node that linked to it (0: the list head)
    while a and total < limit:
        i = _range_of(memory, a, last, shape)
        r = memory.ranges[i]
        hi = r.file_end - shape.node_size  # the last node start whose record is in the file
        if a > hi or a % WORD or r.start % WORD:
            # Zero tail, straddling a range end, a misaligned node or range: one exact read.
            addresses, records, a = _exact_node(memory, a, shape)
        else:
            window = _Window(i, a, min(a - a % WINDOW + WINDOW, hi + 1))
            aligned = a % PAGE_SIZE == 0 and r.start % PAGE_SIZE == 0
            if dense and aligned and shape.node_size <= PAGE_SIZE:
                addresses, records, a = _dense_window(memory, window, shape, limit - total, last)
            else:
                addresses, records, a = _sparse_window(
                    memory, views, window, shape, limit - total, last
                )
            memory.release_range(i, window.first, window.end + shape.node_size)
            # Dense (read the next window's page heads in bulk) when this one held enough nodes;
            # a window that yielded none falls back to the plain loop, which always makes progress.
            pages_spanned = (window.end - window.first) // PAGE_SIZE
            dense = len(addresses) > 0 and len(addresses) * DENSE_PAGES_PER_NODE >= pages_spanned
        parts.append((addresses, records))
        total += len(addresses)
        last = int(addresses[-1]) if len(addresses) else last
    if a:
        raise DumpError(_cycle_message(np.concatenate([p[0] for p in parts]).tolist(), what))
    return _joined(parts, shape)


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
    memory: PhysicalMemory, window: _Window, shape: _Shape, budget: int, last: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Read every page head of the window in one pass and chase it with array operations.
    Returns the window's nodes, their records, and where the list goes on; `last` linked to the
    window's first node."""
    i, first, end = window
    heads = memory.page_heads(i, first, end, shape.width)
    index, a = _run_heads(heads, first, shape.next_offset // WORD, shape.key, budget)
    addresses = np.uint64(first) + index.astype(np.uint64) * np.uint64(PAGE_SIZE)
    records = heads.take(index, axis=0)
    if PAGE_SIZE % shape.align:
        _check_aligned(addresses, shape.align, shape.what, last)
    return addresses, records, a


def _sparse_window(
    memory: PhysicalMemory,
    views: dict[int, memoryview],
    window: _Window,
    shape: _Shape,
    budget: int,
    last: int,
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
    records = memory.range_words(i)[rows[:, None] + shape.cols]
    _check_aligned(addresses, shape.align, shape.what, last)
    return addresses, records, a


def _joined(
    parts: list[tuple[np.ndarray, np.ndarray]], shape: _Shape
) -> tuple[np.ndarray, np.ndarray]:
    """The chase's steps as one address array and one record array."""
    if not parts:
        empty = np.zeros((0, shape.width), "<u8")
        return np.zeros(0, dtype=np.uint64), words_to_records(empty, shape.struct)
    addresses = np.concatenate([p[0] for p in parts])
    return addresses, words_to_records(np.concatenate([p[1] for p in parts]), shape.struct)


def _check_aligned(addresses: np.ndarray, align: int, what: str, last: int) -> None:
    """Raise on the first of a window's nodes that is not `align`-aligned (`last` linked to the
    window's first node)."""
    misaligned = np.flatnonzero(addresses % np.uint64(align))
    if len(misaligned):
        k = int(misaligned[0])
        linked = int(addresses[k - 1]) if k else last
        raise _not_aligned(what, int(addresses[k]), linked, align)


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


def _cycle_message(found: list[int], what: str) -> str:
    arr = np.array(found, dtype=np.uint64)
    order = np.argsort(arr, kind="stable")
    dup = order[1:][arr[order][1:] == arr[order][:-1]]
    if len(dup):
        j = int(dup.min())
        return (
            f"{what.capitalize()}: a cycle: node {hex(found[j - 1])} links back to "
            f"{hex(found[j])}, visited before."
        )
    return f"{what.capitalize()}: more than {len(found) - 1} nodes, more than the dump has frames."
