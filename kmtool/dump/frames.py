"""The frame allocator's free list, chased through the dump (DESIGN §4, kmtool.schemas.frames).

Each free span keeps one `FrameSpan` node in its own first frame; the allocator state
(struct km_frame_allocator) holds the head. The chase follows `next` physical pointers in a tight loop
over a memoryview of the dump (the only per-node Python work), bounded by the number of frames the dump
can hold, so a cyclic list ends in a `DumpError` naming the node that closes the cycle instead of a
hang. The nodes are then decoded and checked in bulk with numpy.

Structural faults stop decoding (a node outside the dump, misaligned, with the wrong magic, or a
cycle). Faults of meaning (unsorted, uncoalesced, a wrong `prev`, counts that disagree) are left to
the checks, which name them.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np

from kmtool.dump.memory import WORD, PhysicalMemory
from kmtool.dump.records import field_offset, gather_records, parse
from kmtool.errors import DumpError
from kmtool.layout.table import PAGE_SIZE
from kmtool.schemas.frames import FRAME_SPAN_MAGIC, FrameAllocator, FrameSpan

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
HASH_LIMIT = 1 << 20  # spans beyond which span_hash is not computed (pure Python, ~2 us a span)
SPAN_LIST_LIMIT = 1 << 16  # spans listed in JSON


@dataclass
class FreeList:
    """The allocator state and the decoded span nodes (a structured array in list order)."""

    state_address: int
    state: Any  # construct Container of FrameAllocator
    nodes: np.ndarray  # numpy_dtype(FrameSpan) records
    addresses: np.ndarray  # where each node was read (uint64)

    @property
    def starts(self) -> np.ndarray:
        return self.nodes["start"].astype(np.uint64)

    @property
    def counts(self) -> np.ndarray:
        return self.nodes["count"].astype(np.uint64)

    @property
    def ends(self) -> np.ndarray:
        """One past each span's last byte."""
        return self.starts + self.counts * np.uint64(PAGE_SIZE)

    @property
    def free_frames(self) -> int:
        return int(self.counts.sum()) if len(self.nodes) else 0

    def largest(self) -> tuple[int, int] | None:
        if not len(self.nodes):
            return None
        i = int(np.argmax(self.counts))
        return int(self.starts[i]), int(self.counts[i])

    def span_hash(self) -> str | None:
        """FNV-1a 64 over the (start, count) u64 little-endian pairs in list order, "0x" + 16 digits
        (as the ready report prints it)."""
        if len(self.nodes) > HASH_LIMIT:
            return None
        data = np.empty((len(self.nodes), 2), dtype="<u8")
        data[:, 0], data[:, 1] = self.nodes["start"], self.nodes["count"]
        h = FNV_OFFSET
        for byte in data.tobytes():
            h = ((h ^ byte) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
        return f"0x{h:016x}"

    def to_json(self) -> dict[str, Any]:
        largest = self.largest()
        free = self.free_frames
        spans = [
            [hex(s), c]
            for s, c in zip(
                self.starts[:SPAN_LIST_LIMIT].tolist(),
                self.counts[:SPAN_LIST_LIMIT].tolist(),
                strict=True,
            )
        ]
        return {
            "state_address": hex(self.state_address),
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
            "counters": {
                name: (hex(v) if name == "head" else v)
                for name, v in self.state.items()
                if not name.startswith("_")
            },
        }


def read_free_list(memory: PhysicalMemory, state_pa: int) -> FreeList:
    """Decode the allocator state at physical `state_pa` and every span node on its list."""
    data = memory.read(state_pa, FrameAllocator.sizeof(), "frame allocator state")
    state = parse(FrameAllocator, data, "frame allocator state", state_pa)
    addresses = chase(
        memory, state.head, field_offset(FrameSpan, "next"), FrameSpan.sizeof(), "frame free list"
    )
    nodes, ok = gather_records(memory, addresses, FrameSpan)
    if not ok.all():  # chase() saw these in the dump; only a node straddling a range gap lands here
        k = int(np.flatnonzero(~ok)[0])
        raise DumpError(f"Frame free list: node {hex(int(addresses[k]))} is outside the dump.")
    misaligned = np.flatnonzero(addresses % np.uint64(PAGE_SIZE))
    if len(misaligned):
        k = int(misaligned[0])
        raise DumpError(
            f"Frame free list: node {hex(int(addresses[k]))} is not page aligned (linked from "
            f"{_linked_from(addresses, k, state_pa)})."
        )
    wrong = np.flatnonzero(nodes["magic"] != np.uint64(FRAME_SPAN_MAGIC))
    if len(wrong):
        k = int(wrong[0])
        raise DumpError(
            f"Frame free list: node {hex(int(addresses[k]))} has magic {hex(int(nodes['magic'][k]))}"
            f", not {hex(FRAME_SPAN_MAGIC)} (linked from {_linked_from(addresses, k, state_pa)})."
        )
    return FreeList(state_pa, state, nodes, addresses)


def _linked_from(addresses: np.ndarray, k: int, state_pa: int) -> str:
    return f"node {hex(int(addresses[k - 1]))}" if k else f"the allocator head at {hex(state_pa)}"


def chase(
    memory: PhysicalMemory, head: int, next_offset: int, node_size: int, what: str
) -> np.ndarray:
    """Physical addresses of the nodes of a singly linked list (uint64 array, in list order).

    `next_offset` is the byte offset of the next pointer in a node; 0 ends the list. The walk stops
    with a DumpError on a node outside the dump, or after more nodes than the dump has 4 KiB frames
    (then naming the node that closes the cycle).
    """
    limit = memory.ram_bytes // PAGE_SIZE + 1
    found: list[int] = []
    append = found.append
    views: dict[int, memoryview] = {}
    a = head
    while a and len(found) < limit:
        i = memory.range_index(a)
        if i < 0:
            prev = hex(found[-1]) if found else "the list head"
            raise DumpError(
                f"{what.capitalize()}: node {hex(a)} (linked from {prev}) is outside the dump."
            )
        r = memory.ranges[i]
        hi = r.file_end - node_size
        if a > hi or r.start % WORD or a < r.start:
            # Zero tail, straddling a range end, or an unaligned range: the slow exact read.
            append(a)
            a = memory.u64(a + next_offset, f"{what} node at {hex(a)}")
            continue
        view = views.get(i)
        if view is None:
            view = views[i] = memory.word_view(i)
        word = (next_offset >> 3) - (
            r.start >> 3
        )  # view index of a node's next pointer, minus a >> 3
        # lo is at least 1 so the terminating 0 leaves the loop even in a range starting at 0.
        a = _run(view, a, max(r.start, 1), hi, word, append, limit - len(found))
    if a:
        raise DumpError(_cycle_message(found, what))
    return np.array(found, dtype=np.uint64)


def _run(view: memoryview, a: int, lo: int, hi: int, word: int, append: Any, budget: int) -> int:
    """Follow the list inside one range while nodes stay within [lo, hi]; return where it left.

    The hot loop of the chase: one compare, one append and one word load per node. (A misaligned
    node reads the word below its next pointer; read_free_list rejects it afterwards.)
    """
    for _ in repeat(None, budget):
        if not lo <= a <= hi:
            return a
        append(a)
        a = view[(a >> 3) + word]
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
