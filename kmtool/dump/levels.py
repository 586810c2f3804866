"""The x86-64 4-level paging levels as data, and the effective permissions of a mapping.

`LEVELS` lists the levels from the root down, each with the virtual-address bits its index uses and
its `LeafRule`; the bulk walk (kmtool.dump.pagetable) and the single-address walks
(kmtool.dump.translate) both walk this table rather than one hand-written step per level.

An entry's permission bits are W (bit 1), U (bit 2) and X (not bit 63, NX); the effective
permissions of a page are the AND of W and U over its path and the OR of NX (Intel SDM vol. 3, 4.6).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from kmtool.layout.table import ENTRIES_PER_TABLE, PAGE_SHIFT, PAGING_LEVELS
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


def _levels() -> tuple[Level, ...]:
    rules = (
        ("PML4", LeafRule.NEVER),
        ("PDPT", LeafRule.PS_BIT),
        ("PD", LeafRule.PS_BIT),
        ("PT", LeafRule.ALWAYS),
    )
    assert len(rules) == PAGING_LEVELS
    return tuple(
        Level(name, PAGE_SHIFT + INDEX_BITS * (PAGING_LEVELS - 1 - depth), rule)
        for depth, (name, rule) in enumerate(rules)
    )


LEVELS = _levels()


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
