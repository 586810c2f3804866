"""Cross-checks of a decoded dump: each is one named row that passes or says what is wrong.

The decoders (memmap, frames, heap, pagetable) assume the data means what it claims and stop only on
structural faults; the invariants the design promises are checked here, each by one function that
returns a `Check` (or None when it does not apply, for example on a foreign dump). On a dump of
our kernel taken before it built a structure (its PML4, the frame allocator, the heap: `not_built`),
every check that reads that structure is still a row, passing, its detail "not applicable, ..." with
the reason, so an empty allocator never "passes" and no row silently vanishes. Checks are bulk
numpy comparisons, so they cost little even with a million spans or leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kmtool.dump.memmap import RAM_TYPES, USABLE_TYPES, merge_intervals, type_name
from kmtool.dump.pagetable import ADDRESS_MASK, PERM_W, PERM_X, Pte, perm_text
from kmtool.layout.table import (
    HEAP_BASE,
    HEAP_SIZE,
    KERNEL_SPACE_BASE,
    MEMTYPE_HANDOFF,
    OFFSET_MAP_BASE,
    PAGE_SIZE,
    SHARED_PML4_FIRST,
    SHARED_PML4_LAST,
    canonical,
)
from kmtool.schemas.bootinfo import BootInfo
from kmtool.schemas.memmap import EfiMemoryDescriptor

if TYPE_CHECKING:
    from kmtool.dump.inspection import Inspection

KERNEL_REGIONS = ("kernel-image", "kernel-vspace", "kernel-heap")
# The detail of a check whose structure the kernel had not built when the dump was taken: it passes
# (nothing to contradict) without reading anything; "kernel reached ready" is the one that fails.
NOT_BUILT_YET = "not applicable, not built yet: the kernel did not reach ready"
NOT_BUILT = "not applicable, not built"  # the same, when ready_tsc says the kernel did reach ready
SHOWN = 3  # offenders named in a failing check's detail


@dataclass(frozen=True)
class Check:
    """One row of `kmtool inspect`'s checks."""

    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def not_built(ins: Inspection) -> dict[str, str]:
    """The kernel structures a dump of our kernel does not hold yet, each with the reason:
    "kernel_pml4" (kernel_pml4_phys is 0), "frames" (km_frames all zero), "heap" (km_heap all zero,
    or no kernel PML4 to reach it through). Empty for a foreign dump."""
    c = ins.core
    if c is None:
        return {}
    out = {}
    if not c.kernel_pml4_phys & ADDRESS_MASK:
        out["kernel_pml4"] = "kernel_pml4_phys is 0"
        out["heap"] = "kernel_pml4_phys is 0, and the heap is read through the kernel's tables"
    fl = ins.frames
    if fl is not None and not fl.initialized:
        out["frames"] = (
            f"km_frames at {hex(fl.state_address)} is all zero: the frame allocator was not set up"
        )
    kt = ins.kernel_tables
    if kt is not None and not kt.errors and ins.heap is None:
        out["heap"] = f"km_heap at {hex(c.heap_state_phys)} is all zero: the heap was not set up"
    return out


def _not_applicable(ins: Inspection, name: str, *parts: str) -> Check | None:
    """The passing "not applicable" row `name` when one of `parts` (keys of `not_built`) is not
    built yet; None when all of them are built."""
    missing = not_built(ins)
    for part in parts:
        if part in missing:
            prefix = NOT_BUILT if ins.core is not None and ins.core.ready_tsc else NOT_BUILT_YET
            return Check(name, True, f"{prefix} ({missing[part]})")
    return None


def _list(items: list[str], total: int) -> str:
    more = f" (and {total - len(items)} more)" if total > len(items) else ""
    return "; ".join(items) + more


def _u64(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.uint64)


def overlapping(
    a_start: np.ndarray, a_end: np.ndarray, b_start: np.ndarray, b_end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) where [a_start[i], a_end[i]) meets [b_start[j], b_end[j]); `a` sorted, disjoint.

    For each b only the last a starting before b's end is tested, which is exact when the a
    intervals are sorted and disjoint (callers pass a union otherwise).
    """
    if len(a_start) == 0 or len(b_start) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    i = np.searchsorted(a_start, b_end, side="left") - 1
    valid = i >= 0
    hit = np.zeros(len(b_start), dtype=bool)
    hit[valid] = a_end[i[valid]] > b_start[valid]
    j = np.flatnonzero(hit)
    return i[j], j


def contained(
    starts: np.ndarray, ends: np.ndarray, u_start: np.ndarray, u_end: np.ndarray
) -> np.ndarray:
    """Bool per interval: inside one interval of the sorted, disjoint union (u_start, u_end)."""
    if len(u_start) == 0:
        return np.zeros(len(starts), dtype=bool)
    i = np.searchsorted(u_start, starts, side="right") - 1
    ok = i >= 0
    ok[ok] = ends[ok] <= u_end[i[ok]]
    return ok


# -- memory map ------------------------------------------------------------------------------------


def memory_map_sorted(ins: Inspection) -> Check | None:
    if ins.memmap is None:
        return None
    s = ins.memmap.starts
    bad = np.flatnonzero(s[1:] < s[:-1])
    items = [f"entry {k + 1} at {hex(int(s[k + 1]))} follows {hex(int(s[k]))}" for k in bad[:SHOWN]]
    return Check(
        "memory map sorted",
        not len(bad),
        _list(items, len(bad)) if len(bad) else f"{len(s)} descriptors in address order",
    )


def memory_map_disjoint(ins: Inspection) -> Check | None:
    if ins.memmap is None:
        return None
    order = np.argsort(ins.memmap.starts, kind="stable")
    s, e = ins.memmap.starts[order], ins.memmap.ends[order]
    bad = np.flatnonzero(s[1:] < e[:-1])
    items = [
        f"{hex(int(s[k]))}-{hex(int(e[k]) - 1)} overlaps {hex(int(s[k + 1]))}" for k in bad[:SHOWN]
    ]
    return Check(
        "memory map non-overlapping",
        not len(bad),
        _list(items, len(bad)) if len(bad) else "no descriptor overlaps another",
    )


def memory_map_stepping(ins: Inspection) -> Check | None:
    mm = ins.memmap
    if mm is None:
        return None
    problems = []
    if mm.map_size % mm.descriptor_size:
        problems.append(
            f"map size {mm.map_size} is not a multiple of descriptor size {mm.descriptor_size}"
        )
    starts = mm.starts
    unaligned = np.flatnonzero(starts % np.uint64(PAGE_SIZE))
    for k in unaligned[:SHOWN]:
        problems.append(
            f"entry {k} starts at {hex(int(starts[k]))}, not page aligned "
            "(stepped by the wrong size?)"
        )
    empty = np.flatnonzero(mm.entries["number_of_pages"] == 0)
    for k in empty[:SHOWN]:
        problems.append(f"entry {k} ({type_name(int(mm.entries['type'][k]))}) has 0 pages")
    detail = (
        f"{len(starts)} descriptors of {mm.descriptor_size} bytes "
        f"(struct is {EfiMemoryDescriptor.sizeof()})"
    )
    return Check(
        "memory map stepped by descriptor size",
        not problems,
        _list(problems[:SHOWN], len(problems)) if problems else detail,
    )


# -- free spans ------------------------------------------------------------------------------------


def _spans(ins: Inspection) -> tuple[np.ndarray, np.ndarray] | None:
    if ins.frames is None:
        return None
    return ins.frames.starts, ins.frames.ends


def _span_union(ins: Inspection) -> tuple[np.ndarray, np.ndarray]:
    s, e = _spans(ins)  # type: ignore[misc]
    return merge_intervals(s, e)


def _overlap_check(
    ins: Inspection,
    name: str,
    what: str,
    t_start: np.ndarray,
    t_end: np.ndarray,
    labels: Callable[[int], str],
) -> Check | None:
    if ins.frames is None:
        return None
    if na := _not_applicable(ins, name, "frames"):
        return na
    us, ue = _span_union(ins)
    _, j = overlapping(us, ue, _u64(t_start), _u64(t_end))
    items = [f"{labels(int(k))} is inside a free span" for k in j[:SHOWN]]
    ok = not len(j)
    return Check(
        name,
        ok,
        _list(items, len(j)) if not ok else f"none of {len(t_start)} {what} is in a free span",
    )


def spans_usable(ins: Inspection) -> Check | None:
    if ins.frames is None or ins.memmap is None:
        return None
    if na := _not_applicable(ins, "spans inside usable memory", "frames"):
        return na
    s, e = _spans(ins)  # type: ignore[misc]
    us, ue = ins.memmap.intervals(USABLE_TYPES)
    inside = contained(s, e, us, ue)
    bad = np.flatnonzero(~inside)
    items = [f"span {hex(int(s[k]))} (+{int(ins.frames.counts[k])} frames)" for k in bad[:SHOWN]]
    return Check(
        "spans inside usable memory",
        not len(bad),
        _list(items, len(bad)) + " outside usable firmware ranges"
        if len(bad)
        else f"{len(s)} spans inside {len(us)} usable ranges",
    )


def spans_offset_mapped(ins: Inspection) -> Check | None:
    if ins.frames is None:
        return None
    if na := _not_applicable(ins, "spans inside the offset map", "frames", "kernel_pml4"):
        return na
    if ins.kernel_tables is None:
        return None
    s, e = _spans(ins)  # type: ignore[misc]
    os_, oe = _offset_mapped(ins)
    inside = contained(s, e, os_, oe)
    bad = np.flatnonzero(~inside)
    items = [f"span {hex(int(s[k]))}-{hex(int(e[k]) - 1)}" for k in bad[:SHOWN]]
    return Check(
        "spans inside the offset map",
        not len(bad),
        _list(items, len(bad)) + " not reachable through the offset map"
        if len(bad)
        else f"every span is mapped at physical + {hex(OFFSET_MAP_BASE)}",
    )


def _offset_mapped(ins: Inspection) -> tuple[np.ndarray, np.ndarray]:
    """Physical intervals the kernel's offset map maps correctly (va == pa + base)."""
    r = ins.kernel_tables.ranges_in("offset-map")  # type: ignore[union-attr]
    good = (r.start - np.uint64(OFFSET_MAP_BASE)) == r.phys
    return merge_intervals(r.phys[good], r.phys[good] + r.size[good])


def spans_aligned(ins: Inspection) -> Check | None:
    if ins.frames is None:
        return None
    if na := _not_applicable(ins, "spans page aligned", "frames"):
        return na
    s = ins.frames.starts
    bad = np.flatnonzero(s % np.uint64(PAGE_SIZE))
    items = [f"span {hex(int(s[k]))}" for k in bad[:SHOWN]]
    return Check(
        "spans page aligned",
        not len(bad),
        _list(items, len(bad)) + " not page aligned"
        if len(bad)
        else "every span starts on a 4 KiB frame",
    )


def spans_sorted(ins: Inspection) -> Check | None:
    if ins.frames is None:
        return None
    if na := _not_applicable(ins, "spans sorted and non-overlapping", "frames"):
        return na
    s, e = _spans(ins)  # type: ignore[misc]
    bad = np.flatnonzero(s[1:] < e[:-1])
    items = [
        f"span {hex(int(s[k + 1]))} follows {hex(int(s[k]))}-{hex(int(e[k]) - 1)}"
        for k in bad[:SHOWN]
    ]
    return Check(
        "spans sorted and non-overlapping",
        not len(bad),
        _list(items, len(bad)) if len(bad) else "ascending, no span overlaps the next",
    )


def spans_coalesced(ins: Inspection) -> Check | None:
    if ins.frames is None:
        return None
    if na := _not_applicable(ins, "spans coalesced", "frames"):
        return na
    s, e = _spans(ins)  # type: ignore[misc]
    bad = np.flatnonzero(s[1:] == e[:-1])
    items = [f"span {hex(int(s[k]))} ends where {hex(int(s[k + 1]))} starts" for k in bad[:SHOWN]]
    return Check(
        "spans coalesced",
        not len(bad),
        _list(items, len(bad)) if len(bad) else "no two spans touch",
    )


def span_links(ins: Inspection) -> Check | None:
    fl = ins.frames
    if fl is None:
        return None
    if na := _not_applicable(ins, "span links consistent", "frames"):
        return na
    problems: list[str] = []
    addr, nodes = fl.addresses, fl.nodes
    for k in np.flatnonzero(nodes["start"] != addr)[:SHOWN]:
        problems.append(f"node {hex(int(addr[k]))} records start {hex(int(nodes['start'][k]))}")
    expected_prev = np.concatenate((_u64([0]), addr[:-1])) if len(addr) else addr
    for k in np.flatnonzero(nodes["prev"] != expected_prev)[:SHOWN]:
        problems.append(
            f"node {hex(int(addr[k]))} has prev {hex(int(nodes['prev'][k]))}, expected "
            f"{hex(int(expected_prev[k]))}"
        )
    for k in np.flatnonzero(nodes["count"] == 0)[:SHOWN]:
        problems.append(f"node {hex(int(addr[k]))} has count 0")
    return Check(
        "span links consistent",
        not problems,
        "; ".join(problems) if problems else f"{len(addr)} nodes, prev and start agree",
    )


TREAP_CHECK = "span treap matches the list"


def span_treap(ins: Inspection) -> Check | None:
    """The treap over the span nodes (kmtool.schemas.frames): every span on the list is reached from
    `root` exactly once and nothing else is; addresses in search-tree order; priorities in heap
    order. Vectorised: the links are resolved with one sort, reachability and the subtree bounds
    by pointer jumping (O(spans log depth))."""
    fl = ins.frames
    if fl is None:
        return None
    if na := _not_applicable(ins, TREAP_CHECK, "frames"):
        return na
    n, root = len(fl.nodes), int(fl.state.root)
    if n == 0:
        ok = root == 0
        return Check(TREAP_CHECK, ok, "no spans and no root" if ok else
                     f"no spans on the list, but the treap root is {hex(root)}")  # fmt: skip
    problems, depth = _treap_problems(fl.addresses, fl.nodes, root)
    return Check(
        TREAP_CHECK,
        not problems,
        _list(problems[:SHOWN], len(problems))
        if problems
        else f"{n} spans, each reached once from root {hex(root)}; address and priority order "
        f"hold (depth {depth})",
    )


def _treap_problems(addr: np.ndarray, nodes: np.ndarray, root: int) -> tuple[list[str], int]:
    """(problems, depth in nodes) of the treap whose nodes are the list's `nodes` at `addr`."""
    n = len(addr)
    key = _u64(addr)
    index_of = _address_index(key)
    left, right = _u64(nodes["left"]), _u64(nodes["right"])
    li, ri = index_of(left), index_of(right)
    r = int(index_of(_u64([root]))[0])
    problems = [] if r >= 0 else [f"root {hex(root)} is not a span on the list"]
    for name, links, idx in (("left", left, li), ("right", right, ri)):
        for k in np.flatnonzero((links != 0) & (idx < 0))[:SHOWN]:
            problems.append(f"span {hex(int(key[k]))} has {name} {hex(int(links[k]))}, not a span "
                            "on the list")  # fmt: skip
    if problems:
        return problems, 0
    # In-degree: the root has no parent, every other span exactly one.
    has_l, has_r = li >= 0, ri >= 0
    child = np.concatenate((li[has_l], ri[has_r]))
    parent_of = np.concatenate((np.flatnonzero(has_l), np.flatnonzero(has_r)))
    indegree = np.bincount(child, minlength=n)
    if indegree[r]:
        problems.append(f"root {hex(root)} is also linked as a child")
    for k in np.flatnonzero(indegree > 1)[:SHOWN]:
        problems.append(f"span {hex(int(key[k]))} is linked from {int(indegree[k])} nodes")
    missing = np.flatnonzero(indegree == 0)
    missing = missing[missing != r]
    for k in missing[:SHOWN]:
        problems.append(f"span {hex(int(key[k]))} is not in the treap (no node links to it)")
    if problems:
        return problems, 0
    parent = np.empty(n, dtype=np.int64)
    parent[child] = parent_of
    parent[r] = r
    is_right = np.zeros(n, dtype=bool)
    is_right[ri[has_r]] = True
    is_left = np.zeros(n, dtype=bool)
    is_left[li[has_l]] = True
    # Reachability and depth by pointer jumping: anc -> anc's ancestor 2^i levels up.
    anc, depth = parent.copy(), (np.arange(n) != r).astype(np.int64)
    for _ in range(n.bit_length() + 1):
        if (anc == r).all():
            break
        depth = depth + depth[anc]
        anc = anc[anc]
    for k in np.flatnonzero(anc != r)[:SHOWN]:
        problems.append(f"span {hex(int(key[k]))} is on a cycle of links, not reachable from the "
                        "root")  # fmt: skip
    if problems:
        return problems, 0
    # Search-tree order: each key strictly between the nearest ancestors it lies right and left of.
    lo = _nearest_ancestor_key(parent, is_right, key, r, 0)
    hi = _nearest_ancestor_key(parent, is_left, key, r, (1 << 64) - 1)
    for k in np.flatnonzero(key <= lo)[:SHOWN]:
        problems.append(f"span {hex(int(key[k]))} is in the right subtree of {hex(int(lo[k]))}")
    for k in np.flatnonzero(key >= hi)[:SHOWN]:
        problems.append(f"span {hex(int(key[k]))} is in the left subtree of {hex(int(hi[k]))}")
    # Heap order of the priorities, parent over child.
    priority = _u64(nodes["priority"])
    for k in np.flatnonzero(priority > priority[parent])[:SHOWN]:
        problems.append(
            f"span {hex(int(key[k]))} has priority {hex(int(priority[k]))}, above its parent "
            f"{hex(int(key[parent[k]]))}'s {hex(int(priority[parent[k]]))}"
        )
    return problems, int(depth.max()) + 1


DENSE_INDEX_PAGES_PER_NODE = 8  # a page-number table is used when no bigger than this per node


def _address_index(key: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping addresses to their index in `key` (distinct addresses), -1 for none.

    Span nodes are page aligned and usually dense in physical memory: then one table lookup per
    address (a table of page numbers, at most DENSE_INDEX_PAGES_PER_NODE entries a node); else a
    binary search in the sorted keys.
    """
    n = len(key)
    order = np.arange(n) if (key[1:] > key[:-1]).all() else np.argsort(key, kind="stable")
    sorted_keys = key[order]
    lo, pages = sorted_keys[0], (sorted_keys[-1] - sorted_keys[0]) // np.uint64(PAGE_SIZE) + 1
    if not (key % np.uint64(PAGE_SIZE)).any() and int(pages) <= DENSE_INDEX_PAGES_PER_NODE * n:
        table = np.full(int(pages), -1, dtype=np.int64)
        table[(key - lo) // np.uint64(PAGE_SIZE)] = np.arange(n)

        def dense(values: np.ndarray) -> np.ndarray:
            page = (values - lo) // np.uint64(PAGE_SIZE)  # wraps to huge below lo
            ok = (values >= lo) & (page < pages) & (values % np.uint64(PAGE_SIZE) == 0)
            return np.where(ok, table[np.where(ok, page, 0).astype(np.int64)], -1)

        return dense

    def search(values: np.ndarray) -> np.ndarray:
        pos = np.minimum(np.searchsorted(sorted_keys, values), n - 1)
        return np.where(sorted_keys[pos] == values, order[pos], -1)

    return search


def _nearest_ancestor_key(
    parent: np.ndarray, marked: np.ndarray, key: np.ndarray, root: int, none: int
) -> np.ndarray:
    """For each node: the key of its parent when the node is `marked` (a right child, say), else
    the answer for the parent; `none` for the root. Pointer jumping to the nearest marked edge."""
    value = np.where(marked, key[parent], np.uint64(none))
    known = marked.copy()
    known[root] = True
    value[root] = none
    ptr = parent.copy()
    for _ in range(len(parent).bit_length() + 1):  # the caller checked every node reaches the root
        if known.all():
            break
        u = np.flatnonzero(~known)
        up = ptr[u]
        value[u], known[u], ptr[u] = value[up], known[up], ptr[up]
    return value


def spans_no_tables(ins: Inspection) -> Check | None:
    if ins.frames is None:
        return None
    tables = [t.tables for t in (ins.tables, ins.kernel_tables) if t is not None]
    if not tables:
        return None
    pages = np.unique(np.concatenate(tables))
    return _overlap_check(
        ins,
        "spans hold no page table",
        "page-table pages",
        pages,
        pages + np.uint64(PAGE_SIZE),
        lambda j: f"page table {hex(int(pages[j]))}",
    )


def spans_no_kernel_pages(ins: Inspection) -> Check | None:
    if ins.frames is None:
        return None
    if na := _not_applicable(ins, "spans hold no mapped kernel page", "frames", "kernel_pml4"):
        return na
    if ins.kernel_tables is None:
        return None
    parts = [ins.kernel_tables.ranges_in(name) for name in KERNEL_REGIONS]
    phys = np.concatenate([p.phys for p in parts])
    size = np.concatenate([p.size for p in parts])
    vas = np.concatenate([p.start for p in parts])
    return _overlap_check(
        ins,
        "spans hold no mapped kernel page",
        "kernel mappings",
        phys,
        phys + size,
        lambda j: f"physical {hex(int(phys[j]))} (mapped at {hex(int(vas[j]))})",
    )


def spans_no_handoff(ins: Inspection) -> Check | None:
    if ins.frames is None or ins.boot is None or ins.memmap is None:
        return None
    mm = ins.memmap
    sel = mm.entries["type"] == MEMTYPE_HANDOFF
    starts = list(mm.starts[sel]) + [ins.boot.address, mm.address]
    ends = list(mm.ends[sel]) + [ins.boot.address + BootInfo.sizeof(), mm.address + mm.map_size]
    names = [f"handoff range {hex(int(s))}" for s in mm.starts[sel]] + [
        f"boot info {hex(ins.boot.address)}",
        f"memory map {hex(mm.address)}",
    ]
    return _overlap_check(
        ins,
        "spans hold no handoff data",
        "handoff ranges",
        _u64(starts),
        _u64(ends),
        lambda j: names[j],
    )


def free_frames_counter(ins: Inspection) -> Check | None:
    fl = ins.frames
    if fl is None:
        return None
    if na := _not_applicable(ins, "free frames match the kernel counter", "frames"):
        return na
    ok = fl.free_frames == fl.state.free_frames
    return Check(
        "free frames match the kernel counter",
        ok,
        f"list holds {fl.free_frames} frames, km_frames.free_frames is {fl.state.free_frames}",
    )


def spans_counter(ins: Inspection) -> Check | None:
    fl = ins.frames
    if fl is None:
        return None
    if na := _not_applicable(ins, "span count matches the kernel counter", "frames"):
        return na
    ok = len(fl.nodes) == fl.state.spans
    return Check(
        "span count matches the kernel counter",
        ok,
        f"list holds {len(fl.nodes)} spans, km_frames.spans is {fl.state.spans}",
    )


# -- heap ------------------------------------------------------------------------------------------


def heap_headers(ins: Inspection) -> Check | None:
    h = ins.heap
    if h is None:
        return _not_applicable(ins, "heap headers consistent", "heap")
    if h.problems:
        return Check("heap headers consistent", False, _list(h.problems[:SHOWN], len(h.problems)))
    return Check(
        "heap headers consistent",
        True,
        f"{len(h.blocks)} block(s) tile the heap; the free lists and the {len(h.untouched)} "
        "untouched block(s) hold exactly the free blocks",
    )


def heap_counters(ins: Inspection) -> Check | None:
    h = ins.heap
    if h is None:
        return _not_applicable(ins, "heap counters match", "heap")
    used = h.used
    pairs = [
        ("blocks_in_use", len(used)),
        ("free_blocks", len(h.blocks) - len(used)),
        ("bytes_in_use", sum(b.size for b in used)),
        ("backed_pages", h.backed_pages),
    ]
    wrong = [
        f"km_heap.{name} is {h.state[name]}, decoded {value}"
        for name, value in pairs
        if h.state[name] != value
    ]
    return Check(
        "heap counters match",
        not wrong,
        "; ".join(wrong) if wrong else ", ".join(f"{name} {value}" for name, value in pairs),
    )


# -- page tables -----------------------------------------------------------------------------------

PAGE_TABLES_CHECK = "page tables walked"


def page_tables_walked(ins: Inspection) -> Check | None:
    """The walk under CR3 (and the kernel PML4) met no table outside the dump and no limit.

    Recursive entries (kmtool.dump.pagetable) are skipped by the walk: a failure on a dump of our
    kernel, which makes none; a note on a foreign dump, where they are a common design.
    """
    walked = {t.root: t for t in (ins.tables, ins.kernel_tables) if t is not None}
    if not walked:
        return None
    errors = [e for t in walked.values() for e in t.errors]
    recursive = [r for t in walked.values() for r in t.recursive]
    if errors:
        return Check(PAGE_TABLES_CHECK, False, _list(errors[:SHOWN], len(errors)))
    if recursive and not ins.foreign:
        return Check(PAGE_TABLES_CHECK, False,
                     "recursive mapping (kmtool's kernel makes none): "
                     + _list(recursive[:SHOWN], len(recursive)))  # fmt: skip
    roots = ", ".join(hex(r) for r in walked)
    note = "; skipped recursive " + _list(recursive[:SHOWN], len(recursive)) if recursive else ""
    leaves = sum(t.leaf_total for t in walked.values())
    return Check(PAGE_TABLES_CHECK, True, f"{leaves} pages under {roots}{note}")


def shared_entries(ins: Inspection) -> Check | None:
    if ins.core is None:
        return None
    name = f"kernel PML4 entries {SHARED_PML4_FIRST} and {SHARED_PML4_LAST} present"
    if na := _not_applicable(ins, name, "kernel_pml4"):
        return na
    pml4 = ins.core.kernel_pml4_phys & ADDRESS_MASK
    memory = ins.source.memory
    if not memory.contains(pml4, PAGE_SIZE):
        return Check(name, False, f"the kernel PML4 at {hex(pml4)} is outside the dump")
    live_root = ins.root if ins.root is not None and ins.root != pml4 else None
    if live_root is not None and not memory.contains(live_root, PAGE_SIZE):
        live_root = None  # "page tables walked" names it
    problems = []
    for index in range(SHARED_PML4_FIRST, SHARED_PML4_LAST + 1):
        entry = memory.u64(pml4 + index * 8, f"kernel PML4 entry {index}")
        if not entry & Pte.PRESENT:
            problems.append(f"entry {index} is {hex(entry)} (not present)")
        if live_root is not None:
            live = memory.u64(live_root + index * 8, f"PML4 entry {index} under CR3")
            if live & ADDRESS_MASK != entry & ADDRESS_MASK:
                problems.append(f"CR3's entry {index} is {hex(live)}, the kernel's {hex(entry)}")
    return Check(name, not problems, "; ".join(problems) if problems else f"PML4 at {hex(pml4)}")


def offset_map(ins: Inspection) -> Check | None:
    if ins.memmap is None:
        return None
    if na := _not_applicable(
        ins, f"offset map is physical + {hex(OFFSET_MAP_BASE)}", "kernel_pml4"
    ):
        return na
    if ins.kernel_tables is None:
        return None
    r = ins.kernel_tables.ranges_in("offset-map")
    wrong = np.flatnonzero((r.start - np.uint64(OFFSET_MAP_BASE)) != r.phys)
    problems = [
        f"{hex(int(r.start[k]))} maps physical {hex(int(r.phys[k]))}" for k in wrong[:SHOWN]
    ]
    rs, re_ = ins.memmap.intervals(RAM_TYPES)
    os_, oe = _offset_mapped(ins)
    missing = np.flatnonzero(~contained(rs, re_, os_, oe))
    problems += [
        f"RAM {hex(int(rs[k]))}-{hex(int(re_[k]) - 1)} is not offset-mapped"
        for k in missing[:SHOWN]
    ]
    total = len(wrong) + len(missing)
    ram = int((re_ - rs).sum()) if len(rs) else 0
    return Check(
        f"offset map is physical + {hex(OFFSET_MAP_BASE)}",
        not total,
        _list(problems, total) if total else f"{ram >> 20} MiB of RAM in {len(rs)} ranges",
    )


def no_wx(ins: Inspection) -> Check | None:
    if na := _not_applicable(ins, "no writable and executable kernel mapping", "kernel_pml4"):
        return na
    if ins.kernel_tables is None:
        return None
    r = ins.kernel_tables.ranges
    kernel = r.start >= np.uint64(KERNEL_SPACE_BASE)
    wx = np.flatnonzero(kernel & ((r.perm & (PERM_W | PERM_X)) == (PERM_W | PERM_X)))
    items = [
        f"{hex(int(r.start[k]))} (+{int(r.size[k])} bytes, {perm_text(int(r.perm[k]))})"
        for k in wx[:SHOWN]
    ]
    return Check(
        "no writable and executable kernel mapping",
        not len(wx),
        _list(items, len(wx)) + " writable and executable"
        if len(wx)
        else f"{int(kernel.sum())} kernel ranges, none W+X",
    )


# -- core info -------------------------------------------------------------------------------------


def core_info_readable(ins: Inspection) -> Check | None:
    """Fails when the dump holds our core-info block (magic and self_phys agree) in a version, or
    of a length, this kmtool cannot read: named here, while the rest of the inspection goes on
    without it (kmtool.dump.inspection)."""
    err = ins.core_error
    if err is None:
        return None
    return Check(err.check, False, str(err))


def core_constants(ins: Inspection) -> Check | None:
    c = ins.core
    if c is None:
        return None
    expected = {
        "offset_map_base": OFFSET_MAP_BASE,
        "kernel_space_base": KERNEL_SPACE_BASE,
        "heap_base": HEAP_BASE,
        "heap_size": HEAP_SIZE,
    }
    wrong = [
        f"{name} is {hex(c.fields[name])}, the layout table says {hex(value)}"
        for name, value in expected.items()
        if canonical(c.fields[name]) != value
    ]
    return Check(
        "core-info constants match the layout table",
        not wrong,
        "; ".join(wrong) if wrong else "offset map, kernel space and heap agree",
    )


def kernel_ready(ins: Inspection) -> Check | None:
    c = ins.core
    if c is None:
        return None
    problems = []
    if not c.ready_tsc:
        problems.append("ready_tsc is 0: the dump was taken before KM-READY (a panic?)")
    if not c.kernel_pml4_phys:
        problems.append("kernel_pml4_phys is 0: the kernel's own page tables were not built")
    if ins.frames is not None and not ins.frames.initialized:
        problems.append("km_frames is all zero: the frame allocator was not set up")
    if ins.kernel_tables is not None and not ins.kernel_tables.errors and ins.heap is None:
        problems.append("km_heap is all zero: the heap was not set up")
    return Check("kernel reached ready", not problems,
                 "; ".join(problems) if problems else
                 f"{c.ready_tsc - c.entry_tsc} TSC cycles from entry to ready")  # fmt: skip


def core_symbols(ins: Inspection) -> Check | None:
    if ins.core is None or ins.kernel is None:
        return None
    if na := _not_applicable(ins, "core-info agrees with kernel symbols", "kernel_pml4"):
        return na
    if ins.kernel_tables is None:
        return None
    from kmtool.dump.kernel_elf import CORE_INFO_SYMBOL, STATE_SYMBOLS

    wrong, seen = [], 0
    core_va = ins.kernel.address(CORE_INFO_SYMBOL)
    if core_va is not None:
        seen += 1
        pa = ins.kernel_tables.translate(core_va)
        if pa != ins.core.address:
            wrong.append(f"`{CORE_INFO_SYMBOL}` maps to {None if pa is None else hex(pa)}, the "
                         f"block is at {hex(ins.core.address)}")  # fmt: skip
    for fieldname, symbol in STATE_SYMBOLS.items():
        va = ins.kernel.address(symbol)
        if va is None:
            continue
        seen += 1
        pa = ins.kernel_tables.translate(va)
        if pa != ins.core.fields[fieldname]:
            wrong.append(
                f"`{symbol}` maps to {None if pa is None else hex(pa)}, core-info "
                f"{fieldname} is {hex(ins.core.fields[fieldname])}"
            )
    return Check(
        "core-info agrees with kernel symbols",
        not wrong,
        "; ".join(wrong) if wrong else f"{seen} symbols agree",
    )


BUILD_ID_CHECK = "build id matches the kernel ELF"


def build_id_matches(ins: Inspection) -> Check | None:
    """The dump's km_core_info.build_id equals the start of the kernel ELF's NT_GNU_BUILD_ID note
    (the kernel copies that many bytes at boot, zero-padding a shorter id)."""
    if ins.core is None or ins.kernel is None:
        return None
    dump_id = bytes(ins.core.build_id)
    elf_id = ins.kernel.build_id
    name = f"`{ins.kernel.path.name}`"
    if elf_id is None:
        problem = f"the kernel ELF {name} has no .note.gnu.build-id (linked without --build-id?)"
    else:
        expected = elf_id[: len(dump_id)].ljust(len(dump_id), b"\0")
        if dump_id == expected:
            return Check(BUILD_ID_CHECK, True,
                         f"{dump_id.hex()} in the dump and in {name}'s .note.gnu.build-id")  # fmt: skip
        problem = (
            f"the dump's build id is {dump_id.hex()}, the kernel ELF {name} has {elf_id.hex()}"
        )
        if not any(dump_id):
            problem += " (zeros in the dump: the kernel did not record one)"
    return Check(BUILD_ID_CHECK, False, problem)


CHECKS: tuple[Callable[[Inspection], Check | None], ...] = (
    core_info_readable,
    kernel_ready,
    core_constants,
    core_symbols,
    build_id_matches,
    memory_map_sorted,
    memory_map_disjoint,
    memory_map_stepping,
    page_tables_walked,
    shared_entries,
    offset_map,
    no_wx,
    spans_aligned,
    spans_sorted,
    spans_coalesced,
    span_links,
    span_treap,
    spans_usable,
    spans_offset_mapped,
    spans_no_tables,
    spans_no_kernel_pages,
    spans_no_handoff,
    free_frames_counter,
    spans_counter,
    heap_headers,
    heap_counters,
)


def run_checks(ins: Inspection) -> list[Check]:
    """Every applicable check, in `CHECKS` order."""
    return [c for c in (check(ins) for check in CHECKS) if c is not None]
