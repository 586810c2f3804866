"""The findings of `kmtool diff A B`, each of a kind that `--fail-on` can name:

    leak            frames unaccounted in B that were not in A (named as ranges, listed first)
    owner-change    frames whose owner changed (free -> page-table, mapped -> free, ...)
    mapping-change  a range added, removed or changed (target or rights) in an address space,
                    compared page by page as intervals and merged (kmtool.diff.mappings)
    wx              a kernel range writable and executable in B that was not in A
    heap-change     heap blocks of an order allocated or freed, or bytes in use changed
    counter-change  a kernel counter (km_frames, km_heap, km_page_stats) changed

Ranges are compared as intervals (kmtool.dump.accounting.Intervals), so the work follows the
number of ranges on each side, never the number of frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kmtool.diff.mappings import MappingChange, SpaceMap, space_changes
from kmtool.diff.snapshot import Snapshot
from kmtool.dump.accounting import OWNERS, Intervals
from kmtool.layout.table import PAGE_SIZE

KINDS = ("leak", "owner-change", "mapping-change", "wx", "heap-change", "counter-change")
LISTED = 200  # ranges listed per change in text and JSON (the counts are always whole)


@dataclass(frozen=True)
class OwnerChange:
    """Frames that belonged to `before` in A and to `after` in B."""

    before: str
    after: str
    frames: int
    ranges: list[tuple[int, int]]  # [first byte, last byte], the first LISTED
    intervals: Intervals | None = field(default=None, compare=False, repr=False)  # all of them

    def to_json(self) -> dict[str, Any]:
        return {"from": self.before, "to": self.after, "frames": self.frames,
                "ranges": [[hex(a), hex(b)] for a, b in self.ranges]}  # fmt: skip


@dataclass
class Diff:
    """Everything `kmtool diff` found, and which kinds of finding occurred."""

    leaks: OwnerChange | None = None
    owners: list[OwnerChange] = field(default_factory=list)
    owners_complete: bool = True
    mappings: list[MappingChange] = field(default_factory=list)
    mappings_complete: bool = True  # false when a document listed only its first ranges
    new_wx: list[MappingChange] = field(default_factory=list)
    heap: dict[int, tuple[int, int]] = field(default_factory=dict)  # order -> (used, free) delta
    heap_bytes: int = 0
    counters: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (A, B)

    @property
    def kinds(self) -> set[str]:
        found = {
            "leak": self.leaks is not None,
            "owner-change": bool(self.owners),
            "mapping-change": bool(self.mappings),
            "wx": bool(self.new_wx),
            "heap-change": bool(self.heap) or bool(self.heap_bytes),
            "counter-change": bool(self.counters),
        }
        return {kind for kind, yes in found.items() if yes}

    def to_json(self) -> dict[str, Any]:
        return {
            "findings": sorted(self.kinds, key=KINDS.index),
            "leaks": None if self.leaks is None else self.leaks.to_json(),
            "owner_changes": [c.to_json() for c in self.owners],
            "owner_changes_complete": self.owners_complete,
            "mapping_changes": [c.to_json() for c in self.mappings],
            "mapping_changes_complete": self.mappings_complete,
            "new_wx": [c.to_json() for c in self.new_wx],
            "heap": {str(o): {"used": u, "free": f} for o, (u, f) in sorted(self.heap.items())},
            "heap_bytes_in_use": self.heap_bytes,
            "counters": {
                k: {"a": a, "b": b, "delta": b - a} for k, (a, b) in self.counters.items()
            },
        }


def _change(before: str, after: str, iv: Intervals) -> OwnerChange | None:
    if not iv.total:
        return None
    ranges = [(int(a), int(b) - 1) for a, b in zip(iv.start[:LISTED], iv.end[:LISTED], strict=True)]
    return OwnerChange(before, after, iv.total // PAGE_SIZE, ranges, iv)


def _intersect(a: Intervals, b: Intervals) -> Intervals:
    return a.minus(a.minus(b))


def owner_changes(a: Snapshot, b: Snapshot) -> tuple[OwnerChange | None, list[OwnerChange]]:
    """The new leaks, and every (owner in A, owner in B) pair that holds frames, leaks excluded."""
    empty = Intervals.of(np.zeros(0), np.zeros(0))
    everyone = (*OWNERS, "unaccounted")
    leaked = b.owners.get("unaccounted", empty).minus(a.owners.get("unaccounted", empty))
    leaks = _change("owned", "unaccounted", leaked)
    changes = []
    for before in everyone:
        for after in everyone:
            if before == after or after == "unaccounted":
                continue
            found = _change(before, after, _intersect(a.owners.get(before, empty),
                                                      b.owners.get(after, empty)))  # fmt: skip
            if found is not None:
                changes.append(found)
    changes.sort(key=lambda c: -c.frames)
    return leaks, changes


def mapping_changes(a: Snapshot, b: Snapshot) -> list[MappingChange]:
    """Ranges added, removed or changed, space by space (kmtool.diff.mappings), the kernel's
    tables first; a space on one side only is all added or all removed."""
    out = []
    empty = SpaceMap.of([])
    for space in sorted(set(a.spaces) | set(b.spaces), key=lambda s: (s != "kernel", s)):
        out += space_changes(space, a.spaces.get(space, empty), b.spaces.get(space, empty))
    return out


def compare(a: Snapshot, b: Snapshot) -> Diff:
    """Everything that changed from A to B."""
    diff = Diff()
    diff.leaks, diff.owners = owner_changes(a, b)
    diff.owners_complete = a.owners_complete and b.owners_complete
    diff.mappings = mapping_changes(a, b)
    diff.mappings_complete = all(m.complete for side in (a, b) for m in side.spaces.values())
    diff.new_wx = [c for c in diff.mappings if c.space == "kernel" and c.after is not None
                   and "W" in c.after.flags and "X" in c.after.flags
                   and not (c.before is not None and "W" in c.before.flags
                            and "X" in c.before.flags)]  # fmt: skip
    for order in sorted(set(a.heap_orders) | set(b.heap_orders)):
        ua, fa = a.heap_orders.get(order, (0, 0))
        ub, fb = b.heap_orders.get(order, (0, 0))
        if (ua, fa) != (ub, fb):
            diff.heap[order] = (ub - ua, fb - fa)
    diff.heap_bytes = b.heap_bytes - a.heap_bytes
    for name in sorted(set(a.counters) | set(b.counters)):
        va, vb = a.counters.get(name, 0), b.counters.get(name, 0)
        if va != vb:
            diff.counters[name] = (va, vb)
    return diff
