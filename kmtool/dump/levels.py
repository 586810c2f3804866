"""The x86-64 paging levels as data, and the effective permissions of a mapping.

One table of levels, PML5 down to PT, each with its `LeafRule`. A `PagingMode` is the lowest rows
of it: 4-level paging (`FOUR_LEVEL`, PML4 to PT, 48-bit canonical addresses) or, with CR4.LA57,
5-level paging (`FIVE_LEVEL`, PML5 to PT, 57-bit canonical addresses; Intel SDM vol. 3, 4.5).
The bulk walk (kmtool.dump.pagetable), the count before it (kmtool.dump.pagecount) and the
single-address walks (kmtool.dump.translate) all walk a mode's `levels` rather than one
hand-written step per level. Each level's shift follows from its depth: an index takes 9 bits,
so the root's index ends at bit 47 (4-level) or 56 (5-level), the mode's canonical width.
Our own kernel uses 4-level paging (`LEVELS`, the layout table's PAGING_LEVELS); 5-level tables
are those of foreign dumps (docs/design.md §7.3).

An entry's permission bits are W (bit 1), U (bit 2) and X (not bit 63, NX); the effective
permissions of a page are the AND of W and U over its path and the OR of NX (Intel SDM vol. 3, 4.6).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from kmtool.layout.table import (
    ENTRIES_PER_TABLE,
    PAGE_SHIFT,
    PAGING_LEVELS,
    VIRTUAL_ADDRESS_BITS,
)
from kmtool.schemas.paging import PTE_ADDR, Pte

ADDRESS_MASK = PTE_ADDR  # bits 51:12 of an entry (and of CR3)
INDEX_BITS = ENTRIES_PER_TABLE.bit_length() - 1

# Effective permission bits of a mapping (R is implied by present).
PERM_W = 1
PERM_X = 2
PERM_U = 4
PERM_ALL = PERM_W | PERM_X | PERM_U


class LeafRule(Enum):
    """When an entry at a level maps a page rather than pointing to the next table."""

    NEVER = "never"
    PS_BIT = "when bit 7 (PS) is set"
    ALWAYS = "always"


@dataclass(frozen=True)
class Level:
    """One paging level: its name, the lowest virtual-address bit its index uses, its leaf rule."""

    name: str
    shift: int
    leaf: LeafRule

    @property
    def page_size(self) -> int:
        """Bytes one entry at this level spans."""
        return 1 << self.shift


@dataclass(frozen=True)
class PagingMode:
    """A paging mode: its name ("4-level", "5-level", as CpuState.paging_mode says it) and its
    levels from the root down."""

    name: str
    levels: tuple[Level, ...]

    @property
    def address_bits(self) -> int:
        """Width of a canonical address: bits above it repeat bit `address_bits` - 1."""
        return self.levels[0].shift + INDEX_BITS

    @property
    def sign_bits(self) -> str:
        """The bits a canonical address repeats, as a sentence says them ("63..47")."""
        return f"63..{self.address_bits - 1}"


# Every level from the root of 5-level paging down; a mode of n levels is the last n rows.
_RULES = (
    ("PML5", LeafRule.NEVER),
    ("PML4", LeafRule.NEVER),
    ("PDPT", LeafRule.PS_BIT),
    ("PD", LeafRule.PS_BIT),
    ("PT", LeafRule.ALWAYS),
)


def _mode(name: str, count: int) -> PagingMode:
    rules = _RULES[len(_RULES) - count :]
    return PagingMode(name, tuple(
        Level(rule_name, PAGE_SHIFT + INDEX_BITS * (count - 1 - depth), rule)
        for depth, (rule_name, rule) in enumerate(rules)
    ))  # fmt: skip


FOUR_LEVEL = _mode("4-level", PAGING_LEVELS)
FIVE_LEVEL = _mode("5-level", PAGING_LEVELS + 1)
MODES = {mode.name: mode for mode in (FOUR_LEVEL, FIVE_LEVEL)}
LEVELS = FOUR_LEVEL.levels  # our kernel's (docs/design.md §2)
assert FOUR_LEVEL.address_bits == VIRTUAL_ADDRESS_BITS and FIVE_LEVEL.address_bits == 57


def perm_text(perm: int) -> str:
    """ "RWXU"-style text for effective permissions: R always, then W, X, U or '-'."""
    return (
        "R"
        + ("W" if perm & PERM_W else "-")
        + ("X" if perm & PERM_X else "-")
        + ("U" if perm & PERM_U else "-")
    )


def entry_perm(entries: np.ndarray) -> np.ndarray:
    """Per-entry permission bits (W, X = not NX, U) as uint8."""
    w = ((entries >> np.uint64(1)) & np.uint64(1)).astype(np.uint8) * PERM_W
    u = ((entries >> np.uint64(2)) & np.uint64(1)).astype(np.uint8) * PERM_U
    x = (1 - (entries >> np.uint64(63)).astype(np.uint8)) * PERM_X
    return w | u | x


def leaf_mask(level: Level, entries: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Which of the `present` `entries` at `level` map a page (the level's LeafRule, in bulk)."""
    if level.leaf is LeafRule.ALWAYS:
        return present
    if level.leaf is LeafRule.PS_BIT:
        return present & ((entries & np.uint64(Pte.PS)) != 0)
    return np.zeros_like(present)
