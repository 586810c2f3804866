"""The treap check: the search tree over the free-span nodes (kmtool.schemas.frames) agrees with the
address-ordered list (docs/design.md §4).

Every span on the list is reached from `root` exactly once and nothing else is; addresses are in
search-tree order; priorities in heap order. Vectorised: the links are resolved with one table
lookup or sort, reachability and the subtree bounds by pointer jumping (O(spans log depth)). Each
stage runs only when the one before found nothing, since it relies on a well-formed tree.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kmtool.dump.checks.common import SHOWN, Verdict, problems, u64
from kmtool.dump.frames import FreeList
from kmtool.layout.table import PAGE_SIZE

DENSE_INDEX_PAGES_PER_NODE = 8  # a page-number table is used when no bigger than this per node
INDEX, INDEX_MAX = np.int32, (1 << 31) - 1  # node indexes: 4 bytes each up to 2^31 - 1 nodes


def span_treap(frames: FreeList) -> Verdict:
    n, root = len(frames.nodes), int(frames.state.root)
    if n == 0:
        ok = root == 0
        return Verdict(ok, "no spans and no root" if ok else
                       f"no spans on the list, but the treap root is {hex(root)}")  # fmt: skip
    found, depth = treap_problems(frames.addresses, frames.nodes, root)
    return problems(
        found,
        f"{n} spans, each reached once from root {hex(root)}; address and priority order "
        f"hold (depth {depth})",
    )


def treap_problems(addr: np.ndarray, nodes: np.ndarray, root: int) -> tuple[list[str], int]:
    """(problems, depth in nodes) of the treap whose nodes are the list's `nodes` at `addr`."""
    key = u64(addr)
    index_of = address_index(key)
    left, right = u64(nodes["left"]), u64(nodes["right"])
    li, ri = index_of(left), index_of(right)
    r = int(index_of(u64([root]))[0])
    del index_of  # and its page table (2 MiB on the benchmark's list)
    found = [] if r >= 0 else [f"root {hex(root)} is not a span on the list"]
    for name, links, idx in (("left", left, li), ("right", right, ri)):
        for k in np.flatnonzero((links != 0) & (idx < 0))[:SHOWN]:
            found.append(f"span {hex(int(key[k]))} has {name} {hex(int(links[k]))}, not a span "
                         "on the list")  # fmt: skip
    del left, right  # the stages below need only the indexes (their arrays peak the check)
    if found:
        return found, 0
    parent, found = _parents(key, root, r, li, ri)
    if found:
        return found, 0
    depth, found = _depths(key, parent, r)
    if found:
        return found, 0
    levels = int(depth.max()) + 1
    del depth
    priority = u64(nodes["priority"])
    return _order_problems(key, parent, r, li, ri, priority), levels


def _parents(
    key: np.ndarray, root: int, r: int, li: np.ndarray, ri: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """The parent index of each node (the root its own), and the in-degree problems: the root has
    no parent, every other span exactly one."""
    n = len(key)
    has_l, has_r = li >= 0, ri >= 0
    child = np.concatenate((li[has_l], ri[has_r]))
    parent_of = np.concatenate((np.flatnonzero(has_l), np.flatnonzero(has_r)))
    indegree = np.bincount(child, minlength=n)
    found = []
    if indegree[r]:
        found.append(f"root {hex(root)} is also linked as a child")
    for k in np.flatnonzero(indegree > 1)[:SHOWN]:
        found.append(f"span {hex(int(key[k]))} is linked from {int(indegree[k])} nodes")
    missing = np.flatnonzero(indegree == 0)
    missing = missing[missing != r]
    for k in missing[:SHOWN]:
        found.append(f"span {hex(int(key[k]))} is not in the treap (no node links to it)")
    parent = np.empty(n, dtype=li.dtype)
    if not found:
        parent[child] = parent_of
        parent[r] = r
    return parent, found


def _depths(key: np.ndarray, parent: np.ndarray, r: int) -> tuple[np.ndarray, list[str]]:
    """Each node's depth below the root, by pointer jumping (anc -> anc's ancestor 2^i levels up),
    and the nodes on a cycle of links, which never reach the root."""
    n = len(key)
    anc, depth = parent.copy(), (np.arange(n) != r).astype(parent.dtype)
    for _ in range(n.bit_length() + 1):
        if (anc == r).all():
            break
        depth = depth + depth[anc]
        anc = anc[anc]
    found = [
        f"span {hex(int(key[k]))} is on a cycle of links, not reachable from the root"
        for k in np.flatnonzero(anc != r)[:SHOWN]
    ]
    return depth, found


def _order_problems(
    key: np.ndarray,
    parent: np.ndarray,
    r: int,
    li: np.ndarray,
    ri: np.ndarray,
    priority: np.ndarray,
) -> list[str]:
    """Search-tree order (each key strictly between the nearest ancestors it lies right and left
    of) and heap order of the priorities (parent over child), of a tree every node is in once."""
    n = len(key)
    is_right = np.zeros(n, dtype=bool)
    is_right[ri[ri >= 0]] = True
    is_left = np.zeros(n, dtype=bool)
    is_left[li[li >= 0]] = True
    lo = _nearest_ancestor_key(parent, is_right, key, r, 0)
    hi = _nearest_ancestor_key(parent, is_left, key, r, (1 << 64) - 1)
    found = []
    for k in np.flatnonzero(key <= lo)[:SHOWN]:
        found.append(f"span {hex(int(key[k]))} is in the right subtree of {hex(int(lo[k]))}")
    for k in np.flatnonzero(key >= hi)[:SHOWN]:
        found.append(f"span {hex(int(key[k]))} is in the left subtree of {hex(int(hi[k]))}")
    for k in np.flatnonzero(priority > priority[parent])[:SHOWN]:
        found.append(
            f"span {hex(int(key[k]))} has priority {hex(int(priority[k]))}, above its parent "
            f"{hex(int(key[parent[k]]))}'s {hex(int(priority[parent[k]]))}"
        )
    return found


def address_index(key: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
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
        table = np.full(int(pages), -1, dtype=INDEX if n <= INDEX_MAX else np.int64)
        table[(key - lo) // np.uint64(PAGE_SIZE)] = np.arange(n)

        def dense(values: np.ndarray) -> np.ndarray:
            page = (values - lo) // np.uint64(PAGE_SIZE)  # wraps to huge below lo
            ok = (values >= lo) & (page < pages) & (values % np.uint64(PAGE_SIZE) == 0)
            page[~ok] = 0  # in place, and below 2^63 now: its bits read as int64 unchanged
            index = table[page.view(np.int64)]
            index[~ok] = -1
            return index

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
    value = key[parent]
    value[~marked] = np.uint64(none)  # in place: one array of keys, not two
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
