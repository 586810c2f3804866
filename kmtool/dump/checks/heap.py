"""Checks of the kernel heap (docs/design.md §4): its block headers tile it, and the decoded blocks
agree with km_heap's counters."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kmtool.dump.checks.common import Verdict, problems

if TYPE_CHECKING:
    from kmtool.dump.heap import HeapView


def heap_headers(heap: HeapView) -> Verdict:
    return problems(
        heap.problems,
        f"{len(heap.blocks)} block(s) tile the heap; the free lists and the {len(heap.untouched)} "
        "untouched block(s) hold exactly the free blocks",
    )


def heap_counters(heap: HeapView) -> Verdict:
    used = heap.used
    pairs = [
        ("blocks_in_use", len(used)),
        ("free_blocks", len(heap.blocks) - len(used)),
        ("bytes_in_use", sum(b.size for b in used)),
        ("backed_pages", heap.backed_pages),
    ]
    wrong = [
        f"km_heap.{name} is {heap.state[name]}, decoded {value}"
        for name, value in pairs
        if heap.state[name] != value
    ]
    return Verdict(
        not wrong,
        "; ".join(wrong) if wrong else ", ".join(f"{name} {value}" for name, value in pairs),
    )
