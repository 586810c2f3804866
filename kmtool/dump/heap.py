"""The kernel heap (struct km_heap and the km_heap_block headers, kmtool.schemas.heap).

The heap is a buddy allocator over one fixed virtual range. Every block starts with a header except
the *untouched* free blocks (halves split off and never written, at most one per order, recorded in
`untouched`), so the blocks are found by descending the buddy tree from the whole range: at a block of
order o, the address in `untouched[o]` is an untouched free block (its memory is not read: its pages
are not backed); otherwise a header of order o *is* the block, and a header of a smaller order means
the block was split, and both halves are visited. Headers are read through the kernel's page tables
(the heap lives in virtual space); a block whose header page is not backed, or whose header makes no
sense, is recorded as a problem for the checks rather than guessed at. The free lists are then
followed from `free_heads` and compared with the free blocks the tree holds: the free blocks are
exactly the listed ones plus the untouched ones.

Work is bounded: at most `MAX_BLOCKS` blocks and list nodes. Past the bound the heap is *partial*
(`HeapView.error` names the order, or the list, where the descent stopped): the blocks of the orders
visited before it are kept, and the free lists are not compared with a tree that is not whole. A
heap state that makes no sense (orders, size, alignment) is a `DumpError`: there is no tree to
descend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kmtool.dump.document import HeapBlockDoc, HeapCountersDoc, HeapDoc, HeapOrderDoc
from kmtool.dump.memory import PhysicalMemory
from kmtool.dump.pagetable import PageTables
from kmtool.dump.records import parse, words_to_records
from kmtool.errors import DumpError
from kmtool.layout.table import PAGE_SIZE, canonical
from kmtool.schemas.heap import (
    HEAP_FREE_MAGIC,
    HEAP_MAX_ORDERS,
    HEAP_USED_MAGIC,
    Heap,
    HeapBlock,
)

MAX_BLOCKS = 1 << 18  # blocks and list nodes (a 16 MiB heap of 64-byte blocks)
BLOCKS_LISTED = 4096


@dataclass(frozen=True)
class HeapBlockView:
    """One block of the buddy tree."""

    va: int
    order: int
    used: bool
    size: int  # bytes requested (used blocks)
    next: int
    prev: int
    untouched: bool = False  # free, never written: no header (recorded in km_heap.untouched)


@dataclass
class HeapView:
    """The heap state, the blocks found in the tree, the free lists and what did not add up."""

    state_address: int
    state: Any  # construct Container of Heap
    blocks: list[HeapBlockView]
    free_lists: dict[int, list[int]]  # order -> block addresses in list order
    backed_pages: int  # 4 KiB pages mapped in the heap's range
    problems: list[str] = field(default_factory=list)
    error: str | None = None  # why the blocks stop before the tree's end (partial; see above)

    @property
    def used(self) -> list[HeapBlockView]:
        return [b for b in self.blocks if b.used]

    @property
    def free(self) -> list[HeapBlockView]:
        return [b for b in self.blocks if not b.used]

    @property
    def untouched(self) -> list[HeapBlockView]:
        return [b for b in self.blocks if b.untouched]

    def by_order(self) -> list[HeapOrderDoc]:
        rows: dict[int, HeapOrderDoc] = {}
        for b in self.blocks:
            row = rows.setdefault(
                b.order,
                {
                    "order": b.order,
                    "block_size": 1 << b.order,
                    "used": 0,
                    "free": 0,
                    "untouched": 0,
                    "requested_bytes": 0,
                },
            )
            if b.used:
                row["used"] += 1
                row["requested_bytes"] += b.size
            else:
                row["free"] += 1
                row["untouched"] += b.untouched
        return [rows[o] for o in sorted(rows)]

    def to_json(self) -> HeapDoc:
        used = self.used
        return {
            "state_address": hex(self.state_address),
            "base": hex(canonical(self.state.base)),
            "size": self.state.size,
            "min_order": self.state.min_order,
            "max_order": self.state.max_order,
            "blocks": len(self.blocks),
            "used_blocks": len(used),
            "free_blocks": len(self.blocks) - len(used),
            "untouched_blocks": len(self.untouched),
            "bytes_in_use": sum(b.size for b in used),
            "backed_pages": self.backed_pages,
            "by_order": self.by_order(),
            "block_list": [_block_doc(b) for b in self.blocks[:BLOCKS_LISTED]],
            "counters": self.counters(),
            "problems": self.problems,
            "error": self.error,
        }

    def counters(self) -> HeapCountersDoc:
        """km_heap's fields but the per-order arrays (free_heads, untouched), base canonical."""
        s = self.state
        return {
            "base": hex(canonical(s.base)),
            "size": s.size,
            "min_order": s.min_order,
            "max_order": s.max_order,
            "bytes_in_use": s.bytes_in_use,
            "blocks_in_use": s.blocks_in_use,
            "free_blocks": s.free_blocks,
            "backed_pages": s.backed_pages,
        }


def _block_doc(b: HeapBlockView) -> HeapBlockDoc:
    return {
        "va": hex(b.va),
        "order": b.order,
        "state": "used" if b.used else "free",
        "untouched": b.untouched,
        "size": b.size,
    }


def heap_initialized(memory: PhysicalMemory, state_pa: int) -> bool:
    """False while the heap state is still all zero (the kernel stopped before heap_init)."""
    return any(memory.read(state_pa, Heap.sizeof(), "heap state"))


def read_heap(memory: PhysicalMemory, state_pa: int, tables: PageTables) -> HeapView:
    """Decode the heap whose state is at physical `state_pa`, reading blocks through `tables`."""
    data = memory.read(state_pa, Heap.sizeof(), "heap state")
    state = parse(Heap, data, "heap state", state_pa)
    _check_state(state, state_pa)
    problems: list[str] = []
    header = _header_reader(memory, tables)
    untouched = _untouched(state, problems)
    blocks, error = _tree_blocks(
        state, state_pa, _bulk_headers(memory, tables), untouched, problems
    )
    free_lists: dict[int, list[int]] = {}
    if error is None:
        free_lists, error = _free_lists(state, blocks, header, problems)
    heap_pages = tables.ranges_in("kernel-heap")
    backed = int(heap_pages.size.sum()) // PAGE_SIZE if len(heap_pages) else 0
    return HeapView(state_pa, state, blocks, free_lists, backed, problems, error)


def _header_reader(memory: PhysicalMemory, tables: PageTables) -> Callable[[int], Any | None]:
    """A function from a block's virtual address to its decoded header (a construct Container of
    HeapBlock), or None when the header's page is not backed in the dump."""
    size = HeapBlock.sizeof()

    def header(va: int) -> Any | None:
        pa = tables.translate(va)
        if pa is None or not memory.contains(pa, size):
            return None
        return parse(HeapBlock, memory.read(pa, size, "heap block header"), "heap block header", va)

    return header


def _tree_blocks(
    state: Any,
    state_pa: int,
    headers: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    untouched: dict[int, int],
    problems: list[str],
) -> tuple[list[HeapBlockView], str | None]:
    """The blocks of the buddy tree, found by descending it from the whole range (see the module
    docstring) one order at a time, each order's headers read and judged in bulk; what makes no
    sense is added to `problems` (in address order). When an order holds more than MAX_BLOCKS
    blocks to visit, the descent stops there, before any of them is read: the blocks of the orders
    above, and the sentence saying where it stopped."""
    found: list[tuple[int, int, int, bool, int, int, int]] = []  # va, order, untouched, used, ...
    notes: list[tuple[int, str]] = []  # (va, problem)
    vas = np.array([canonical(state.base)], dtype=np.uint64)
    error = None
    for order in range(state.max_order, state.min_order - 1, -1):
        if len(found) + len(vas) > MAX_BLOCKS:
            error = (
                f"Heap at {hex(state_pa)}: more than {MAX_BLOCKS} blocks (at order {order}, "
                f"{len(vas)} split halves to visit); the blocks of orders above {order} are shown"
            )
            break
        if not len(vas):
            break
        mark = untouched.get(order)
        is_untouched = vas == np.uint64(mark) if mark is not None else np.zeros(len(vas), bool)
        for va in vas[is_untouched].tolist():
            found.append((va, order, 1, False, 0, 0, 0))
        vas = vas[~is_untouched]
        h, ok = headers(vas)
        vas = _judge(state, order, vas, h, ok, found, notes)
    notes.sort(key=lambda n: n[0])  # stable: one block's problems keep their order
    problems.extend(text for _, text in notes)
    found.sort(key=lambda b: b[0])
    found_untouched = {b[1] for b in found if b[2]}
    for order, va in sorted(untouched.items()):
        if order not in found_untouched and error is None:
            problems.append(
                f"km_heap.untouched[{order}] is {hex(va)}, not a block of order {order} in the tree"
            )
    blocks = [HeapBlockView(va, o, used, size, nxt, prev, untouched=bool(kind))
              for va, o, kind, used, size, nxt, prev in found]  # fmt: skip
    return blocks, error


def _judge(
    state: Any,
    order: int,
    vas: np.ndarray,
    h: np.ndarray,
    ok: np.ndarray,
    found: list[tuple[int, int, int, bool, int, int, int]],
    notes: list[tuple[int, str]],
) -> np.ndarray:
    """One order of `_tree_blocks`: the blocks at `vas` with headers `h` (`ok`: backed) are whole
    blocks (into `found`), split (their halves, returned for the next order) or problems (into
    `notes`)."""
    header_size = HeapBlock.sizeof()
    magic = h["magic"]
    sane = ok & ((magic == HEAP_FREE_MAGIC) | (magic == HEAP_USED_MAGIC))
    whole = sane & (h["order"] == order)
    split = sane & (h["order"] >= state.min_order) & (h["order"] < order)
    for k in np.flatnonzero(~ok).tolist():
        va = int(vas[k])
        notes.append((va, f"block {hex(va)} (order {order}) has no backed header page"))
    for k in np.flatnonzero(ok & ~sane).tolist():
        va = int(vas[k])
        notes.append((va, f"block {hex(va)} (order {order}) has magic {hex(int(magic[k]))}"))
    for k in np.flatnonzero(sane & ~whole & ~split).tolist():
        va, got = int(vas[k]), int(h["order"][k])
        notes.append((va, f"block {hex(va)} (order {order}) has a header of order {got}"))
    for k in np.flatnonzero(whole).tolist():
        va, used, size = int(vas[k]), bool(magic[k] == HEAP_USED_MAGIC), int(h["size"][k])
        found.append((va, order, 0, used, size, int(h["next"][k]), int(h["prev"][k])))
        if used and size + header_size > 1 << order:
            notes.append(
                (va, f"used block {hex(va)} (order {order}) holds {size} bytes, more than fits")
            )
        if not used and size:
            notes.append((va, f"free block {hex(va)} has size {size}, not 0"))
    halves = vas[split]
    return np.concatenate((halves, halves + np.uint64(1 << (order - 1)))) if order else halves[:0]


def _bulk_headers(
    memory: PhysicalMemory, tables: PageTables
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A function from blocks' virtual addresses (uint64) to their headers (numpy records of
    HeapBlock) and which of them are backed in the dump (translated through `tables`)."""
    width = -(-HeapBlock.sizeof() // 8)
    start, size, phys = tables.ranges.start, tables.ranges.size, tables.ranges.phys

    def headers(vas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.searchsorted(start, vas, side="right").astype(np.int64) - 1
        j = np.maximum(i, 0)
        offset = vas - start[j] if len(start) else vas
        mapped = (i >= 0) & (offset < size[j]) if len(start) else np.zeros(len(vas), bool)
        pas = np.where(mapped, phys[j] + offset, 0) if len(start) else vas
        words, ok = memory.gather(pas[mapped], width)
        out = np.zeros((len(vas), width), dtype=np.uint64)
        backed = np.zeros(len(vas), dtype=bool)
        out[mapped], backed[mapped] = words, ok
        return words_to_records(out, HeapBlock), backed

    return headers


def _check_state(state: Any, pa: int) -> None:
    if not state.min_order <= state.max_order < HEAP_MAX_ORDERS:
        raise DumpError(
            f"Heap state at {hex(pa)}: orders {state.min_order}..{state.max_order} are not within "
            f"0..{HEAP_MAX_ORDERS - 1} (raw min_order {hex(state.min_order)}, max_order "
            f"{hex(state.max_order)})."
        )
    if state.size != 1 << state.max_order:
        raise DumpError(
            f"Heap state at {hex(pa)}: size {hex(state.size)} is not 2^max_order "
            f"(max_order {state.max_order})."
        )
    if state.base % state.size:
        raise DumpError(
            f"Heap state at {hex(pa)}: base {hex(state.base)} is not aligned to its "
            f"size {hex(state.size)}."
        )
    if 1 << state.min_order < HeapBlock.sizeof():
        raise DumpError(
            f"Heap state at {hex(pa)}: min_order {state.min_order} blocks cannot hold "
            f"a {HeapBlock.sizeof()}-byte header."
        )


def _untouched(state: Any, problems: list[str]) -> dict[int, int]:
    """order -> address of the untouched block recorded for it; impossible entries are problems
    (and left out, so the tree walk reads their headers instead)."""
    out: dict[int, int] = {}
    base = canonical(state.base)
    for order, raw in enumerate(state.untouched):
        if not raw:
            continue
        va = canonical(raw)
        offset = va - base
        if not state.min_order <= order < state.max_order:
            problems.append(
                f"km_heap.untouched[{order}] is {hex(va)}, but no block of that order "
                f"can be untouched (orders {state.min_order}..{state.max_order - 1})"
            )
        elif not 0 <= offset < state.size or offset % (1 << order) or not offset >> order & 1:
            problems.append(
                f"km_heap.untouched[{order}] is {hex(va)}, not the upper half of a split block"
            )
        else:
            out[order] = va
    return out


def _free_lists(
    state: Any,
    blocks: list[HeapBlockView],
    header: Callable[[int], Any | None],
    problems: list[str],
) -> tuple[dict[int, list[int]], str | None]:
    """Each order's free list followed from `free_heads` and compared with the tree's free blocks
    (mismatches into `problems`); past MAX_BLOCKS nodes in all, the lists read so far and the
    sentence naming the list and node where the reading stopped."""
    free_at = {b.va: b for b in blocks if not b.used and not b.untouched}
    untouched_at = {b.va for b in blocks if b.untouched}
    lists: dict[int, list[int]] = {}
    budget = MAX_BLOCKS
    for order, head in enumerate(state.free_heads):
        if not head:
            continue
        seen: list[int] = []
        seen_set: set[int] = set()
        prev = 0
        va = canonical(head)
        while va:
            budget -= 1
            if budget < 0:
                lists[order] = seen
                return lists, (
                    f"Heap free list of order {order} at node {hex(va)}: more than {MAX_BLOCKS} "
                    "nodes in all lists; the nodes before it are shown"
                )
            block = free_at.get(va)
            if va in untouched_at:
                problems.append(f"free list {order} holds the untouched block {hex(va)}")
                break
            if block is None or block.order != order:
                h = header(va)
                what = "unbacked" if h is None else f"magic {hex(h.magic)} order {h.order}"
                problems.append(
                    f"free list {order} holds {hex(va)}, not a free block of order {order} ({what})"
                )
                break
            if va in seen_set:
                problems.append(f"free list {order} cycles back to {hex(va)}")
                break
            if canonical(block.prev) != prev:
                problems.append(
                    f"free block {hex(va)} has prev {hex(block.prev)}, expected {hex(prev)}"
                )
            seen.append(va)
            seen_set.add(va)
            prev, va = va, canonical(block.next) if block.next else 0
        lists[order] = seen
    listed = {va for vas in lists.values() for va in vas}
    for b in blocks:
        if not b.used and not b.untouched and b.va not in listed:
            problems.append(f"free block {hex(b.va)} (order {b.order}) is on no free list")
    return lists, None
