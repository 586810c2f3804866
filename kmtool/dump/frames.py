"""The frame allocator's free list, chased through the dump (docs/design.md §4.2, §10,
kmtool.schemas.frames).

Each free span keeps one `FrameSpan` node in its own first frame; the allocator state
(struct km_frame_allocator) holds the head. `kmtool.dump.chase` follows the `next` physical
pointers window by window (see its docstring) with array operations, no Python work per node where
the list is dense and ascending, bounded by the number of frames the dump can hold: a cyclic list
ends with the sentence naming the node that closes the cycle instead of a hang. The nodes are
decoded in bulk with numpy as the chase goes, and checked in bulk afterwards.

Structural faults end the list where they are (a node outside the dump, misaligned, with the wrong
magic, a count larger than the dump's RAM, or a cycle): the spans read before the bad node are kept,
and `FreeList.error` is the sentence naming the structure, the node, its raw value and the node that
linked to it (docs/design.md §10: a corrupt structure leaves its part partial). Faults of meaning
(unsorted, uncoalesced, a wrong `prev`, counts that disagree, a treap that is not the list's) are
left to the checks, which name them. The treap links (`left`, `right`, `priority`, the state's
`root`) are decoded with the nodes and checked in bulk by kmtool.dump.checks; nothing here follows
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from kmtool.dump.chase import chase
from kmtool.dump.document import FrameCountersDoc, FramesDoc
from kmtool.dump.frame_stack import FrameStackView, read_stack
from kmtool.dump.memory import MAX_PHYSICAL, PhysicalMemory
from kmtool.dump.records import parse
from kmtool.layout.table import PAGE_SIZE
from kmtool.schemas.frames import (
    FRAME_SPAN_MAGIC,
    SPAN_HASH_MULTIPLIER,
    FrameAllocator,
    FrameSpan,
)

SPAN_LIST_LIMIT = 1 << 16  # spans listed in JSON
HASH_BLOCK = 1 << 16  # words of the span hash summed at a time (even: whole spans)


@dataclass
class FreeList:
    """The allocator state and the decoded span nodes (a structured array in list order)."""

    state_address: int
    state: Any  # construct Container of FrameAllocator
    nodes: np.ndarray  # numpy_dtype(FrameSpan) records
    addresses: np.ndarray  # where each node was read (uint64)
    stack: FrameStackView | None = None  # the stack half (None: not decoded)
    error: str | None = None  # why the list ends before its end (the nodes are those read before)

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

        h = sum(w_i * P^(M - 1 - i)) mod 2^64 over the M = 2 x spans words start, count in list
        order, vectorised HASH_BLOCK words at a time: uint64 products and sums wrap mod 2^64; in
        a block of L words from word i0 the weights are P^(M - i0 - L) times P^(L - 1 - k), the
        latter a cumulative product made once. (Whole arrays of words and powers were 16 MiB at
        262,144 spans.)
        """
        m = 2 * len(self.nodes)
        step = min(HASH_BLOCK, m) or 2  # even: whole spans in each block
        powers = np.full(step, SPAN_HASH_MULTIPLIER, dtype=np.uint64)
        if step:
            powers[0] = 1
        np.cumprod(powers, dtype=np.uint64, out=powers)  # powers[k] = P^k
        h = 0
        words = np.empty(step, dtype=np.uint64)
        for i0 in range(0, m, step):
            nodes = self.nodes[i0 // 2 : (i0 + step) // 2]
            block = words[: 2 * len(nodes)]
            block[0::2], block[1::2] = nodes["start"], nodes["count"]
            block *= powers[: len(block)][::-1]
            scale = pow(SPAN_HASH_MULTIPLIER, m - i0 - len(block), 1 << 64)
            h = (h + scale * int(np.sum(block, dtype=np.uint64))) & ((1 << 64) - 1)
        return f"0x{h:016x}"

    def to_json(self, span_list: bool = True) -> FramesDoc:
        """The `frames` part of the document; with `span_list` False its span list is left empty
        (the summary shows none of it: 65,536 listed spans are 9 MiB of Python objects)."""
        largest = self.largest()
        free = self.free_frames
        listed = SPAN_LIST_LIMIT if span_list else 0
        spans: list[list[str | int]] = [
            [hex(s), c]
            for s, c in zip(
                self.starts[:listed].tolist(), self.counts[:listed].tolist(), strict=True
            )
        ]
        return {
            "error": self.error,
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
    """Decode the allocator state at physical `state_pa` and the span nodes on its list, up to the
    first structural fault (then `error` names it). DumpError only when the state is unreadable."""
    data = memory.read(state_pa, FrameAllocator.sizeof(), "frame allocator state")
    state = parse(FrameAllocator, data, "frame allocator state", state_pa)
    addresses, nodes, error = chase(memory, state.head, FrameSpan, "next", "frame free list",
                                    PAGE_SIZE, tag=("magic", FRAME_SPAN_MAGIC))  # fmt: skip
    bad = _first_bad_node(nodes, max_span_frames(memory))
    if bad is not None:
        k, why = bad
        error = (
            f"Frame free list: node {hex(int(addresses[k]))} {why} "
            f"(linked from {_linked_from(addresses, k, state_pa)})."
        )
        addresses, nodes = addresses[:k], nodes[:k]
    return FreeList(state_pa, state, nodes, addresses, read_stack(memory, state), error)


def _first_bad_node(nodes: np.ndarray, limit: int) -> tuple[int, str] | None:
    """The first node (list index, what is wrong) whose magic is not FRAME_SPAN_MAGIC or whose
    count is more than the `limit` frames the dump holds; None when every node is sound."""
    wrong = np.flatnonzero(nodes["magic"] != np.uint64(FRAME_SPAN_MAGIC))
    absurd = np.flatnonzero(nodes["count"] > np.uint64(limit))
    firsts = [int(w[0]) for w in (wrong, absurd) if len(w)]
    if not firsts:
        return None
    k = min(firsts)
    if len(wrong) and int(wrong[0]) == k:
        return k, f"has magic {hex(int(nodes['magic'][k]))}, not {hex(FRAME_SPAN_MAGIC)}"
    count = int(nodes["count"][k])
    return (
        k,
        f"has count {hex(count)} ({count} frames), more than the {limit} frames the dump holds",
    )


def max_span_frames(memory: PhysicalMemory) -> int:
    """The most frames one span can hold: the dump's RAM, and never past 52-bit physical space."""
    return min(memory.ram_bytes, MAX_PHYSICAL) // PAGE_SIZE


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _linked_from(addresses: np.ndarray, k: int, state_pa: int) -> str:
    return f"node {hex(int(addresses[k - 1]))}" if k else f"the allocator head at {hex(state_pa)}"
