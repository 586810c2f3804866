"""The mapping changes of `kmtool diff`: one address space in A against the same space in B.

Each side is a piecewise function from virtual pages to (physical page, rights), given as merged
ranges. The two are cut at every range boundary of either side; on each piece a page is *added*
(mapped in B only), *removed* (in A only), *changed* (mapped on both sides, to another frame or with
other rights) or the same. The pieces that differ are merged again where they continue one another:
the same kind, adjacent in virtual space, and on each side still one linear mapping with one set of
rights (`linear_changes`). So a page whose rights changed in the middle of a large range is one
changed range of one page, and a range that grew by N pages is one added range of N pages, whatever
the ranges were called on each side.

What a user reads (`space_changes`) merges once more: VA-contiguous linear changes of one kind with
one set of rights on each side become one range whatever frames they map, and `runs` says how many
linear pieces it holds (the heap backed by 335 scattered frames is one added range of 335 pages,
not 335 rows); `before` and `after` then give the first piece's target.

Work is numpy over the range boundaries: it follows the number of ranges, never of pages. Addresses
are held as page numbers, so a range that ends at the top of the address space does not wrap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kmtool.layout.table import PAGE_SIZE

PAGE_SHIFT = PAGE_SIZE.bit_length() - 1
CHANGED, ADDED, REMOVED = 0, 1, 2
KIND_NAMES = ("changed", "added", "removed")


@dataclass(frozen=True)
class Mapping:
    """One merged range of an address space: where it maps and with what rights."""

    start: int
    size: int
    phys: int
    flags: str


@dataclass(frozen=True)
class SpaceMap:
    """The merged ranges of one address space as parallel arrays (sorted by start, disjoint, page
    aligned); `complete` is false when a document listed only its first ranges."""

    start: np.ndarray  # uint64 virtual address
    size: np.ndarray  # uint64 bytes
    phys: np.ndarray  # uint64 physical address
    flags: np.ndarray  # str: "RWXU"-style rights
    complete: bool = True

    @classmethod
    def of(cls, rows: list[Mapping], complete: bool = True) -> SpaceMap:
        rows = sorted(rows, key=lambda m: m.start)
        u64 = np.uint64
        return cls(
            np.array([m.start for m in rows], dtype=u64),
            np.array([m.size for m in rows], dtype=u64),
            np.array([m.phys for m in rows], dtype=u64),
            np.array([m.flags for m in rows], dtype=str),
            complete,
        )

    def __len__(self) -> int:
        return len(self.start)


@dataclass(frozen=True)
class MappingChange:
    """A range of address space `space` that was `change`d: added, removed or changed. `before`
    and `after` are what the range mapped in A and in B (None where it was not mapped)."""

    space: str
    change: str
    before: Mapping | None
    after: Mapping | None
    runs: int = 1  # linear pieces (one target each) merged into this range

    @property
    def mapping(self) -> Mapping:
        """The range itself: as B maps it, or as A did when it was removed."""
        m = self.after if self.after is not None else self.before
        assert m is not None, "a change has at least one side"
        return m

    @property
    def what(self) -> str | None:
        """For a changed range: "target", "rights" or "target and rights"."""
        if self.before is None or self.after is None:
            return None
        moved, rights = self.before.phys != self.after.phys, self.before.flags != self.after.flags
        return "target and rights" if moved and rights else "target" if moved else "rights"

    def to_json(self) -> dict[str, Any]:
        def doc(m: Mapping | None) -> dict[str, Any] | None:
            return None if m is None else {"start": hex(m.start), "size": m.size,
                                           "phys": hex(m.phys), "flags": m.flags}  # fmt: skip

        return {"space": self.space, "change": self.change, "what": self.what,
                "before": doc(self.before), "after": doc(self.after),
                "runs": self.runs}  # fmt: skip


@dataclass(frozen=True)
class _Side:
    """One side's view of every piece: mapped or not, its physical page and its rights' id."""

    mapped: np.ndarray  # bool
    page: np.ndarray  # uint64 physical page number (0 where not mapped)
    rights: np.ndarray  # int64 index into the shared rights vocabulary (-1 where not mapped)


def space_changes(space: str, a: SpaceMap, b: SpaceMap) -> list[MappingChange]:
    """The ranges of `space` that differ from A to B, merged for reading (see the module
    docstring), in address order."""
    out: list[MappingChange] = []
    for c in linear_changes(space, a, b):
        last = out[-1] if out else None
        if last is not None and _extends(last, c):
            grow = c.mapping.size
            out[-1] = MappingChange(space, c.change, _longer(last.before, grow),
                                    _longer(last.after, grow), last.runs + 1)  # fmt: skip
        else:
            out.append(c)
    return out


def _extends(last: MappingChange, c: MappingChange) -> bool:
    """Whether `c` continues `last` in VA, of the same kind and rights on each side."""
    m = last.mapping
    if m.start + m.size != c.mapping.start or (last.change, last.what) != (c.change, c.what):
        return False
    return all((x is None) == (y is None) and (x is None or y is None or x.flags == y.flags)
               for x, y in ((last.before, c.before), (last.after, c.after)))  # fmt: skip


def _longer(m: Mapping | None, grow: int) -> Mapping | None:
    return None if m is None else Mapping(m.start, m.size + grow, m.phys, m.flags)


def linear_changes(space: str, a: SpaceMap, b: SpaceMap) -> list[MappingChange]:
    """The ranges of `space` that differ from A to B, each one linear mapping with one set of
    rights on each side, merged as far as that allows, in address order."""
    shift = np.uint64(PAGE_SHIFT)
    first = [m.start >> shift for m in (a, b)]
    end = [f + (m.size >> shift) for f, m in zip(first, (a, b), strict=True)]
    cuts = np.unique(np.concatenate((*first, *end)))
    if len(cuts) < 2:
        return []
    lo, hi = cuts[:-1], cuts[1:]
    vocab = np.unique(np.concatenate((a.flags, b.flags)))
    sa, sb = (_side(m, f, e, lo, vocab) for m, f, e in zip((a, b), first, end, strict=True))
    same = sa.mapped & sb.mapped & (sa.page == sb.page) & (sa.rights == sb.rights)
    keep = np.flatnonzero((sa.mapped | sb.mapped) & ~same)
    if not len(keep):
        return []
    lo, hi = lo[keep], hi[keep]
    sa, sb = (_Side(s.mapped[keep], s.page[keep], s.rights[keep]) for s in (sa, sb))
    kind = np.where(~sa.mapped, ADDED, np.where(~sb.mapped, REMOVED, CHANGED))
    heads = np.flatnonzero(~_continues(lo, hi, kind, sa, sb))
    tails = np.append(heads[1:], len(lo)) - 1
    out = []
    for h, t in zip(heads.tolist(), tails.tolist(), strict=True):
        start, size = int(lo[h]) << PAGE_SHIFT, int(hi[t] - lo[h]) << PAGE_SHIFT
        before, after = (_mapping(s, h, start, size, vocab) for s in (sa, sb))
        out.append(MappingChange(space, KIND_NAMES[int(kind[h])], before, after))
    return out


def _side(
    m: SpaceMap, first: np.ndarray, end: np.ndarray, lo: np.ndarray, vocab: np.ndarray
) -> _Side:
    """Which range of `m` holds each piece starting at page `lo` (ranges: pages first..end)."""
    i = np.searchsorted(first, lo, side="right").astype(np.int64) - 1
    j = np.maximum(i, 0)
    if not len(first):
        none = np.zeros(len(lo), dtype=bool)
        return _Side(none, np.zeros(len(lo), dtype=np.uint64), np.full(len(lo), -1))
    mapped = (i >= 0) & (lo < end[j])
    page = np.where(mapped, (m.phys[j] >> np.uint64(PAGE_SHIFT)) + (lo - first[j]), 0)
    rights = np.where(mapped, np.searchsorted(vocab, m.flags[j]), -1)
    return _Side(mapped, page.astype(np.uint64), rights.astype(np.int64))


def _continues(lo: np.ndarray, hi: np.ndarray, kind: np.ndarray, a: _Side, b: _Side) -> np.ndarray:
    """For each kept piece, whether it extends the piece before it into one range."""
    out = np.zeros(len(lo), dtype=bool)
    if len(lo) < 2:
        return out
    length = hi[:-1] - lo[:-1]
    cont = (lo[1:] == hi[:-1]) & (kind[1:] == kind[:-1])
    for s in (a, b):
        linear = (s.page[1:] == s.page[:-1] + length) & (s.rights[1:] == s.rights[:-1])
        cont &= ~s.mapped[1:] | linear
    out[1:] = cont
    return out


def _mapping(s: _Side, k: int, start: int, size: int, vocab: np.ndarray) -> Mapping | None:
    if not s.mapped[k]:
        return None
    return Mapping(start, size, int(s.page[k]) << PAGE_SHIFT, str(vocab[int(s.rights[k])]))
