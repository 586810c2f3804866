"""x86-64 page tables in a dump, 4-level or 5-level: the full walk into merged ranges.

The paging levels are *data* (a `PagingMode`'s levels, kmtool.dump.levels): one function walks
them all, four of them (PML4 to PT) or, with CR4.LA57, five (PML5 to PT). Single
addresses (one walk shown level by level, batch translations) are kmtool.dump.translate's.

The walk goes level by level (breadth first), and each level is decoded in bulk: the entries of
every table at that level are gathered from the dump into one (tables x 512) numpy array, and
present/leaf masks, addresses and effective permissions are computed for all of them at once. So the
Python-level work is a handful of array operations per level, not one loop iteration per entry.

Rules (Intel SDM vol. 3, 4.5):
- an entry is used only when bit 0 (present) is set; absent entries skip the whole range beneath them;
- bit 7 means "this entry maps a page" only at PDPT (1 GiB) and PD (2 MiB) level; at PML4 level it is
  reserved and at PT level it is the PAT bit, so a PT entry is always a leaf;
- a large page's physical address is the entry's bits 51..(page shift): bit 12 there is the PAT bit,
  never an address bit;
- effective permissions: writable and user only when every level says so (AND), no-execute when any
  level says so (OR).

Tables are memoized by physical address (each distinct table is read once per level however many
entries point to it, as when PML4 entries 0 and 511 share one PDPT).

Faults do not abort the walk; they are recorded on the result, so one bad pointer costs only the
mappings beneath it and the other parts of an inspection still decode:
- an entry that points to a table outside the dump is an *error* (`PageTables.errors`) naming the
  level, the table holding the entry, the entry index and its raw value; the entry is not followed;
- an entry that points back at a table on its own path is a *recursive mapping*, a common trick of
  other kernels (Windows, some hobby kernels map their PML4 into itself): it is not followed (it would
  only map the tables again) and is listed in `PageTables.recursive`. kmtool's kernel makes none, so
  the "page tables walked" check fails on one when the dump is of our kernel and passes with a note
  on a foreign dump (kmtool.dump.checks);
- more than `MAX_LEAVES` pages or `MAX_RANGES` distinct ranges ends the walk with an error, and the
  result holds no ranges. Pages and table visits are counted over the distinct tables first
  (kmtool.dump.pagecount), so shared tables that would make millions of paths are refused before
  any per-path array is built.

Ranges are merged when virtually and physically contiguous with the same page size, the same
effective permissions and the same region of the layout table. Addresses are canonical (sign-
extended from bit 47, or from bit 56 in 5-level paging). A range's `end` is its last byte
(inclusive), like `Region.end` in the layout table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kmtool.dump.distinct import distinct
from kmtool.dump.document import AliasDoc, RangeDoc, WalkedTablesDoc
from kmtool.dump.levels import (
    ADDRESS_MASK,
    FOUR_LEVEL,
    PERM_ALL,
    Level,
    PagingMode,
    entry_perm,
    leaf_mask,
    perm_text,
)
from kmtool.dump.memory import PhysicalMemory
from kmtool.dump.pagecount import refusal
from kmtool.dump.regions import NO_REGION, ids_named, region_ids, region_name
from kmtool.layout.table import ENTRIES_PER_TABLE, canonical
from kmtool.schemas.paging import Pte
from kmtool.units import suffix_size_text

TABLE_BYTES = ENTRIES_PER_TABLE * 8
MAX_LEAVES = 1 << 25  # 32 Mi pages (128 GiB of 4 KiB pages): the bound on one walk's work
MAX_RANGES = 1 << 22  # distinct merged ranges kept (memory bound when nothing merges)
MAX_TABLE_VISITS = 1 << 20  # tables visited at one level (a 4 GiB dump holds 1 Mi distinct pages)
RECURSIVE_LISTED = 16  # recursive entries listed in JSON
RANGES_LISTED = 1 << 16  # ranges listed in JSON and by `--part pagetables`
CHUNK_TABLES = 128  # tables decoded per bulk step (512 KiB of entries, 64 Ki leaves): 6 MiB of
# transients at most; at 512, 24 MiB, and no faster (BENCHMARKS.md, issue 11)


def _canonical(va: np.ndarray, bits: int) -> np.ndarray:
    """`va` (uint64) sign-extended from bit `bits` - 1."""
    high = (va & np.uint64(1 << (bits - 1))) != 0
    return np.where(high, va | np.uint64(((1 << 64) - 1) ^ ((1 << bits) - 1)), va)


@dataclass
class Ranges:
    """Merged mappings as parallel arrays (uint64 start/phys/size/page_size, uint8 perm, int16 region)."""

    start: np.ndarray
    phys: np.ndarray
    size: np.ndarray
    page_size: np.ndarray
    perm: np.ndarray
    region: np.ndarray

    def without_regions(self) -> Ranges:
        """The same mappings with no region names (a foreign dump), merged again."""
        region = np.full(len(self), NO_REGION, dtype=np.int16)
        return Ranges(self.start, self.phys, self.size, self.page_size, self.perm, region).merged()

    @classmethod
    def empty(cls) -> Ranges:
        u = np.zeros(0, dtype=np.uint64)
        return cls(u, u, u, u, np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int16))

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def concat(cls, parts: list[Ranges]) -> Ranges:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in RANGE_FIELDS))

    def take(self, index: np.ndarray) -> Ranges:
        return Ranges(*(getattr(self, f)[index] for f in RANGE_FIELDS))

    def merged(self) -> Ranges:
        """Adjacent entries (in this order) joined where contiguous with equal attributes."""
        n = len(self)
        if n <= 1:
            return self
        end = self.start + self.size
        cont = (
            (self.start[1:] == end[:-1])
            & (self.phys[1:] == self.phys[:-1] + self.size[:-1])
            & (self.perm[1:] == self.perm[:-1])
            & (self.region[1:] == self.region[:-1])
            & (self.page_size[1:] == self.page_size[:-1])
            & (end[:-1] != 0)  # a range that ends at 2^64 continues into nothing
        )
        if not cont.any():
            return self  # nothing to join: the same arrays, not a copy of them
        first = np.flatnonzero(np.concatenate(([True], ~cont)))
        last = np.concatenate((first[1:], [n])) - 1
        out = self.take(first)
        out.size = end[last] - self.start[first]
        return out

    def to_json(self, limit: int | None = None) -> list[RangeDoc]:
        rows: list[RangeDoc] = []
        for i in range(len(self) if limit is None else min(limit, len(self))):
            start, size = int(self.start[i]), int(self.size[i])
            rows.append(
                {
                    "start": hex(start),
                    "end": hex((start + size - 1) & ((1 << 64) - 1)),
                    "size": size,
                    "phys": hex(int(self.phys[i])),
                    "page_size": int(self.page_size[i]),
                    "flags": perm_text(int(self.perm[i])),
                    "region": region_name(int(self.region[i])),
                }
            )
        return rows


RANGE_FIELDS = ("start", "phys", "size", "page_size", "perm", "region")


@dataclass
class Leaves:
    """Every leaf entry of a walk (kept only when asked): canonical VA, PA, page size, raw entry."""

    va: np.ndarray
    pa: np.ndarray
    size: np.ndarray
    entry: np.ndarray
    perm: np.ndarray


@dataclass
class PageTables:
    """The result of walking the tables under one root."""

    root: int
    ranges: Ranges
    leaf_counts: dict[int, int]  # page size -> leaves
    tables: np.ndarray  # physical addresses of every distinct table page (uint64, sorted)
    leaves: Leaves | None = None
    errors: list[str] = field(default_factory=list)  # tables outside the dump, limits hit
    recursive: list[str] = field(default_factory=list)  # recursive entries, not followed
    mode: PagingMode = FOUR_LEVEL  # the levels walked, and so the canonical width

    @property
    def error(self) -> str | None:
        """The first error of the walk (and how many more), or None."""
        if not self.errors:
            return None
        more = len(self.errors) - 1
        return self.errors[0] + (f" (and {more} more)" if more else "")

    @property
    def leaf_total(self) -> int:
        return sum(self.leaf_counts.values())

    def ranges_in(self, region: str) -> Ranges:
        """The merged ranges whose region name is `region`."""
        wanted = np.isin(self.ranges.region, ids_named(region))
        return self.ranges.take(np.flatnonzero(wanted))

    def translate(self, va: int) -> int | None:
        """Physical address `va` maps to, from the merged ranges; None when unmapped."""
        va = canonical(va, self.mode.address_bits)
        i = int(np.searchsorted(self.ranges.start, np.uint64(va), side="right")) - 1
        if i < 0:
            return None
        off = va - int(self.ranges.start[i])
        return int(self.ranges.phys[i]) + off if off < int(self.ranges.size[i]) else None

    def aliases(self, pa: int) -> list[AliasDoc]:
        """Every virtual address that maps physical `pa`, with its range's attributes."""
        phys = self.ranges.phys
        hit = np.flatnonzero((phys <= np.uint64(pa)) & (np.uint64(pa) - phys < self.ranges.size))
        out: list[AliasDoc] = []
        for i in hit:
            va = int(self.ranges.start[i]) + pa - int(phys[i])
            out.append(
                {
                    "va": hex(va),
                    "page_size": int(self.ranges.page_size[i]),
                    "flags": perm_text(int(self.ranges.perm[i])),
                    "region": region_name(int(self.ranges.region[i])),
                }
            )
        return out

    def to_json(self) -> WalkedTablesDoc:
        return {
            "cr3": hex(self.root),
            "paging": self.mode.name,
            "regions": self.ranges.to_json(RANGES_LISTED),
            "regions_total": len(self.ranges),
            "leaves": self.leaf_total,
            "leaf_counts": {suffix_size_text(s): n for s, n in sorted(self.leaf_counts.items())},
            "tables": len(self.tables),
            "error": self.error,
            "recursive_entries": self.recursive[:RECURSIVE_LISTED],
        }


def walk(
    memory: PhysicalMemory,
    root: int,
    keep_leaves: bool = False,
    max_leaves: int = MAX_LEAVES,
    mode: PagingMode = FOUR_LEVEL,
    omit: tuple[int, ...] = (),
) -> PageTables:
    """Walk every mapping under the root table at physical `root` (CR3 with its low bits
    cleared): a PML4, or a PML5 when `mode` is 5-level paging. The root entries at the indexes in
    `omit` are walked as if absent (kmtool.dump.shared_walk); the refusal bound still counts them.

    Never raises on what the tables hold: faults are in the result's `errors` and `recursive`.
    """
    root &= ADDRESS_MASK
    errors: list[str] = []
    recursive: list[str] = []
    try:
        refused = refusal(memory, root, max_leaves, MAX_TABLE_VISITS, mode)
        if refused is not None:
            raise _LimitReached(refused)
        found = _Found(root, max_leaves, keep_leaves, mode, list(omit))
        tables = _walk(memory, found, errors, recursive)
    except _LimitReached as limit:
        u = np.zeros(0, dtype=np.uint64)
        tables = PageTables(root, Ranges.empty(), {}, u)
        errors.append(str(limit))
    tables.errors, tables.recursive, tables.mode = errors, recursive, mode
    memory.release()  # the tables' pages would stay resident through the parts decoded next
    return tables


class _LimitReached(Exception):
    """The walk found more pages or ranges than it will keep."""


@dataclass
class _Tables:
    """The tables one level of the walk reads, as parallel arrays: each table's physical address,
    the virtual address its entry 0 maps, the permissions of the entries above it (uint8), and
    the tables on its path from the root ((tables x depth) uint64, to tell a recursive entry)."""

    pa: np.ndarray
    va: np.ndarray
    perm: np.ndarray
    path: np.ndarray

    @classmethod
    def root(cls, pa: int) -> _Tables:
        u = np.zeros(1, dtype=np.uint64)
        full = np.full(1, PERM_ALL, dtype=np.uint8)
        return cls(np.array([pa], dtype=np.uint64), u, full, np.zeros((1, 0), dtype=np.uint64))

    def chunk(self, lo: int) -> _Tables:
        """CHUNK_TABLES tables from `lo` (views, no copies)."""
        hi = lo + CHUNK_TABLES
        return _Tables(self.pa[lo:hi], self.va[lo:hi], self.perm[lo:hi], self.path[lo:hi])

    @classmethod
    def concat(cls, parts: list[_Tables]) -> _Tables:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _TABLE_FIELDS))


_TABLE_FIELDS = ("pa", "va", "perm", "path")


@dataclass
class _Found:
    """What the walk has found so far, and its bounds."""

    root: int
    max_leaves: int
    keep_leaves: bool
    mode: PagingMode
    omit: list[int]  # root entries walked as if absent
    parts: list[Ranges] = field(default_factory=list)  # each chunk's merged ranges, in walk order
    leaf_parts: list[Leaves] = field(default_factory=list)
    leaf_counts: dict[int, int] = field(default_factory=dict)
    tables: list[np.ndarray] = field(default_factory=list)  # table addresses, one part per level
    leaves: int = 0
    kept: int = 0  # merged ranges kept

    def result(self) -> PageTables:
        # One join of every chunk's ranges, merged once: a merge never crosses from one level to
        # the next (their page sizes differ), so this is each level merged on its own.
        ranges = Ranges.concat(self.parts)
        self.parts.clear()
        ranges = ranges.merged()
        start = ranges.start
        if len(start) > 1 and not bool((start[1:] >= start[:-1]).all()):
            order = np.argsort(start, kind="stable")
            del start
            for name in RANGE_FIELDS:  # one array at a time: the old one goes before the next
                setattr(ranges, name, getattr(ranges, name)[order])
        leaves = _sorted_leaves(self.leaf_parts) if self.keep_leaves else None
        tables = distinct(np.concatenate(self.tables))
        return PageTables(self.root, ranges, self.leaf_counts, tables, leaves)


def _walk(
    memory: PhysicalMemory, found: _Found, errors: list[str], recursive: list[str]
) -> PageTables:
    """Breadth first: each level's tables are read CHUNK_TABLES at a time, their leaves kept as
    merged ranges (joined across chunks by `_Found.result`), their table entries the next level's
    tables."""
    tables = _Tables.root(found.root)
    levels = found.mode.levels
    for depth, level in enumerate(levels):
        parent = levels[depth - 1] if depth else None
        found.tables.append(distinct(tables.pa))
        children: list[_Tables] = []
        for lo in range(0, len(tables.pa), CHUNK_TABLES):
            # A chunk's arrays stay referenced here until the next chunk's replace them, as in
            # one loop body: freed all at once on a return, glibc hands the top of the heap back
            # to the kernel and the next chunk pays page faults for it again (1.5x the walk).
            chunk = tables.chunk(lo)
            entries = _read_tables(memory, chunk.pa, level, parent, chunk.path, errors)
            if not depth:
                entries[:, found.omit] = 0
            present = (entries & np.uint64(Pte.PRESENT)) != 0
            leaf = leaf_mask(level, entries, present)
            rows, cols = np.nonzero(leaf)
            if len(rows):
                leaves = _chunk_leaves(found, level, chunk, entries, rows, cols)
                found.parts.append(_merged(found, level, leaves))
                if found.keep_leaves:
                    found.leaf_parts.append(leaves)
            below = _child_tables(level, chunk, entries, present & ~leaf, recursive)
            if below is not None:
                children.append(below)
        if not children:
            break
        tables = _Tables.concat(children)
    return found.result()


def _chunk_leaves(
    found: _Found,
    level: Level,
    chunk: _Tables,
    entries: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
) -> Leaves:
    """The pages that the leaf entries (`rows`, `cols`) of a chunk map; counted into `found`, and
    _LimitReached past its bound."""
    found.leaves += len(rows)
    if found.leaves > found.max_leaves:
        raise _LimitReached(
            f"The page tables under CR3 {hex(found.root)} map more than {found.max_leaves} pages "
            f"(at {level.name} level); refusing to walk further."
        )
    e = entries[rows, cols]
    va = chunk.va[rows] + (cols.astype(np.uint64) << np.uint64(level.shift))
    va = _canonical(va, found.mode.address_bits)
    pa = e & np.uint64(ADDRESS_MASK & ~(level.page_size - 1))
    perm = chunk.perm[rows] & entry_perm(e)
    sizes = np.full(len(va), level.page_size, dtype=np.uint64)
    found.leaf_counts[level.page_size] = found.leaf_counts.get(level.page_size, 0) + len(va)
    return Leaves(va, pa, sizes, e, perm)


def _merged(found: _Found, level: Level, leaves: Leaves) -> Ranges:
    """A chunk's pages as merged ranges; counted into `found`, and _LimitReached past its bound."""
    ranges = Ranges(leaves.va, leaves.pa, leaves.size, leaves.size, leaves.perm,
                    region_ids(leaves.va)).merged()  # fmt: skip
    found.kept += len(ranges)
    if found.kept > MAX_RANGES:
        raise _LimitReached(
            f"The page tables under CR3 {hex(found.root)} hold more than {MAX_RANGES} "
            f"distinct mappings (at {level.name} level); refusing to keep more."
        )
    return ranges


def _child_tables(
    level: Level, chunk: _Tables, entries: np.ndarray, pointing: np.ndarray, recursive: list[str]
) -> _Tables | None:
    """The tables the `pointing` entries of a chunk name (None when there are none), less the
    recursive ones, which are listed in `recursive` (at most RECURSIVE_LISTED) and not followed."""
    rows, cols = np.nonzero(pointing)
    if not len(rows):
        return None
    e = entries[rows, cols]
    child = e & np.uint64(ADDRESS_MASK)
    path = np.concatenate((chunk.path[rows], chunk.pa[rows][:, None]), axis=1)
    loops = (path == child[:, None]).any(axis=1)
    if loops.any():
        for k in np.flatnonzero(loops)[: RECURSIVE_LISTED - len(recursive)]:
            recursive.append(
                f"{level.name} entry {int(cols[k])} of the table at "
                f"{hex(int(chunk.pa[rows[k]]))} points back to table {hex(int(child[k]))} "
                f"on its own path (raw entry {hex(int(e[k]))}); not followed"
            )
        keep = ~loops
        rows, cols, e, child, path = rows[keep], cols[keep], e[keep], child[keep], path[keep]
    va = chunk.va[rows] + (cols.astype(np.uint64) << np.uint64(level.shift))
    return _Tables(child, va, chunk.perm[rows] & entry_perm(e), path)


def _sorted_leaves(parts: list[Leaves]) -> Leaves:
    """All leaf batches in one set of arrays, in virtual-address order."""
    if not parts:
        u = np.zeros(0, dtype=np.uint64)
        return Leaves(u, u, u, u, np.zeros(0, dtype=np.uint8))
    joined = [np.concatenate([getattr(p, f) for p in parts]) for f in _LEAF_FIELDS]
    order = np.argsort(joined[0], kind="stable")
    return Leaves(*(a[order] for a in joined))


_LEAF_FIELDS = ("va", "pa", "size", "entry", "perm")


def _read_tables(
    memory: PhysicalMemory,
    pas: np.ndarray,
    level: Level,
    parent: Level | None,
    ancestors: np.ndarray,
    errors: list[str],
) -> np.ndarray:
    """The entries of the `level` tables at `pas` as a (len(pas), 512) uint64 array, each table
    read once; `parent` is the level above (None at the root, which CR3 names).

    A table outside the dump reads as all zero (nothing beneath it is walked) and adds one error
    per table to `errors`, naming the entry that points to it.
    """
    unique, inverse = np.unique(pas, return_inverse=True)
    entries, ok = memory.gather(unique, ENTRIES_PER_TABLE)
    if not ok.all():
        for bad in unique[np.flatnonzero(~ok)].tolist():
            if parent is None:
                errors.append(
                    f"Page table: the {level.name} at {hex(bad)} (CR3) is outside the dump."
                )
                continue
            k = int(np.flatnonzero(pas == np.uint64(bad))[0])
            holder = int(ancestors[k, -1])
            errors.append(
                f"Page table: {_pointing_entry(memory, holder, bad, parent)} points to "
                f"a {level.name} table at {hex(bad)}, outside the dump; not followed."
            )
        entries[~ok] = 0  # gather zeroes them already; say so here
    if len(unique) == len(pas) and (len(pas) < 2 or bool((pas[1:] > pas[:-1]).all())):
        return entries
    return entries[inverse.reshape(-1)]


def _pointing_entry(memory: PhysicalMemory, table: int, child: int, level: Level) -> str:
    """ "PD entry 5 of the table at 0x... (raw entry 0x...)": the first entry of `table` that
    points to `child` (for error messages; the table was read before, so it is in the dump)."""
    raw = np.frombuffer(memory.read(table, TABLE_BYTES, f"{level.name} table"), dtype="<u8")
    hits = np.flatnonzero(
        ((raw & np.uint64(Pte.PRESENT)) != 0) & ((raw & np.uint64(ADDRESS_MASK)) == child)
    )
    index = int(hits[0]) if len(hits) else -1
    entry = hex(int(raw[index])) if len(hits) else "?"
    return f"{level.name} entry {index} of the table at {hex(table)} (raw entry {entry})"
