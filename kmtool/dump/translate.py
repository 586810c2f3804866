"""Single virtual addresses through the page tables of a dump: one walk shown level by level
(`walk_address`, for `inspect --walk` and the fault's CR2), and many translated at once
(`translate_many`, one gather per level).

Both follow the same rules as the full walk (kmtool.dump.pagetable) over the same levels (a
`PagingMode`: 4-level, or 5-level with CR4.LA57), but read only the entries on each address's
path.
"""

from __future__ import annotations

import numpy as np

from kmtool.dump.document import WalkDoc, WalkStepDoc
from kmtool.dump.levels import (
    ADDRESS_MASK,
    FOUR_LEVEL,
    PERM_ALL,
    LeafRule,
    Level,
    PagingMode,
    entry_perm,
    leaf_mask,
    perm_text,
)
from kmtool.dump.memory import PhysicalMemory
from kmtool.errors import DumpError
from kmtool.layout.table import ENTRIES_PER_TABLE, is_canonical
from kmtool.schemas.paging import Pte


def walk_address(
    memory: PhysicalMemory, root: int, va: int, mode: PagingMode = FOUR_LEVEL
) -> WalkDoc:
    """Each level of `mode`'s table, index and raw entry on the way to `va`, and where it ends:
    the physical address, page size and effective flags of the page, or (all three None) why the
    walk stopped. DumpError when `va` is not canonical in `mode` (48 or 57 bits); a table outside
    the dump only stops the walk.
    """
    if not is_canonical(va, mode.address_bits):
        raise DumpError(
            f"The virtual address {hex(va)} is not canonical in {mode.name} paging (bits "
            f"{mode.sign_bits} differ)."
        )
    table = root & ADDRESS_MASK
    perm = PERM_ALL
    steps: list[WalkStepDoc] = []
    for level in mode.levels:
        index = (va >> level.shift) & (ENTRIES_PER_TABLE - 1)
        address = table + index * 8
        if not memory.contains(address, 8):
            where = f"the {level.name} table at {hex(table)} (named by {_named_by(steps)})"
            return _unmapped(va, steps, f"{where} is outside the dump")
        entry = memory.u64(address, f"{level.name} entry {index} of the table at {hex(table)}")
        steps.append(
            {
                "level": level.name,
                "table": hex(table),
                "index": index,
                "entry_address": hex(address),
                "entry": hex(entry),
                "flags": entry_flags_text(entry, level),
            }
        )
        if not entry & Pte.PRESENT:
            return _unmapped(va, steps, f"{level.name} entry {index} is not present")
        perm &= int(entry_perm(np.array([entry], dtype=np.uint64))[0])
        if level.leaf is LeafRule.ALWAYS or (level.leaf is LeafRule.PS_BIT and entry & Pte.PS):
            offset = va & (level.page_size - 1)
            phys = (entry & ADDRESS_MASK & ~(level.page_size - 1)) + offset
            return {"va": hex(va), "steps": steps, "phys": hex(phys),
                    "page_size": level.page_size, "flags": perm_text(perm), "stopped": None}  # fmt: skip
        table = entry & ADDRESS_MASK
    raise AssertionError("the last level always maps a page")


def _unmapped(va: int, steps: list[WalkStepDoc], stopped: str) -> WalkDoc:
    """A walk that ended before a page: the steps taken and why it stopped."""
    return {"va": hex(va), "steps": steps, "phys": None, "page_size": None, "flags": None,
            "stopped": stopped}  # fmt: skip


def _named_by(steps: list[WalkStepDoc]) -> str:
    """What named the table a walk reached: CR3, or the last entry followed."""
    if not steps:
        return "CR3"
    last = steps[-1]
    return f"{last['level']} entry {last['index']} ({last['entry']})"


def entry_flags_text(entry: int, level: Level) -> str:
    """Names of the set bits of `entry` at `level` (bit 7 reads PS or PAT by level)."""
    names = []
    for flag in Pte:
        if entry & flag:
            if flag is Pte.PS:
                names.append(
                    {LeafRule.ALWAYS: "PAT", LeafRule.NEVER: "RSVD7"}.get(level.leaf, "PS")
                )
            else:
                names.append(str(flag.name))
    return "|".join(names) or "0"


def translate_many(
    memory: PhysicalMemory, root: int, vas: np.ndarray, mode: PagingMode = FOUR_LEVEL
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised translation of many virtual addresses: (physical uint64, mapped bool) arrays.

    Walks all addresses level by level of `mode` with one gather per level; unmapped addresses
    (ones whose tables are outside the dump, and ones not canonical in `mode`, which the CPU
    would fault on) come back with mapped False and physical 0.
    """
    vas = np.asarray(vas, dtype=np.uint64)
    n = len(vas)
    table = np.full(n, root & ADDRESS_MASK, dtype=np.uint64)
    phys = np.zeros(n, dtype=np.uint64)
    mapped = np.zeros(n, dtype=bool)
    active = np.flatnonzero(_canonical(vas, mode.address_bits))
    mask9 = np.uint64(ENTRIES_PER_TABLE - 1)
    for level in mode.levels:
        if len(active) == 0:
            break
        va = vas[active]
        index = (va >> np.uint64(level.shift)) & mask9
        words, ok = memory.gather(table[active] + index * np.uint64(8), 1)
        e = words[:, 0]
        present = ok & ((e & np.uint64(Pte.PRESENT)) != 0)
        leaf = leaf_mask(level, e, present)
        low = np.uint64(level.page_size - 1)
        done = active[leaf]
        phys[done] = (e[leaf] & np.uint64(ADDRESS_MASK) & ~low) | (va[leaf] & low)
        mapped[done] = True
        go = present & ~leaf
        table[active[go]] = e[go] & np.uint64(ADDRESS_MASK)
        active = active[go]
    return phys, mapped


def _canonical(vas: np.ndarray, bits: int) -> np.ndarray:
    """Which of `vas` (uint64) are canonical at width `bits`: bits 63..bits-1 all 0 or all 1."""
    top = vas >> np.uint64(bits - 1)
    return (top == 0) | (top == np.uint64((1 << (65 - bits)) - 1))
