"""QEMU's `info tlb` as an oracle for kmtool's page-table walk (docs/design.md §8).

`info tlb` prints one line per leaf of the current CPU's tables, 4- or 5-level alike: the canonical
virtual address, the page's physical base (the entry masked to its page size) and nine flag
letters (X = no-execute, G, P = a large page, D, A, C = PCD, T = PWT, U, W). `parse_tlb` reads
them; `leaf_tlb` writes kmtool's leaves the same way, so the two sets compare entry for entry.
"""

from __future__ import annotations

import re

from kmtool.dump.pagetable import Leaves
from kmtool.schemas.paging import Pte

TLB_LINE = re.compile(r"^([0-9a-f]{16}): ([0-9a-f]{16}) ([-XGPDACTUW]{9})$")
QEMU_ADDRESS_MASK = {4096: 0x3FFFFFFFFF000, 2 << 20: 0x3FFFFFFE00000, 1 << 30: 0x3FFFFC0000000}
FLAG_LETTERS = (("X", Pte.NX), ("G", Pte.GLOBAL), ("P", Pte.PS), ("D", Pte.DIRTY),
                ("A", Pte.ACCESSED), ("C", Pte.PCD), ("T", Pte.PWT), ("U", Pte.USER),
                ("W", Pte.WRITABLE))  # fmt: skip

Tlb = set[tuple[int, int, int, str]]


def parse_tlb(text: str) -> Tlb:
    """`info tlb` lines as (va, pa, 0, flag letters); every non-blank line must be one."""
    entries = set()
    for line in text.splitlines():
        match = TLB_LINE.match(line.strip())
        assert match or not line.strip(), f"unexpected info tlb line: {line!r}"
        if match:
            va, pa, flags = int(match.group(1), 16), int(match.group(2), 16), match.group(3)
            entries.add((va, pa, 0, flags))
    return entries


def leaf_tlb(leaves: Leaves) -> Tlb:
    """kmtool's leaves formatted the way QEMU's `info tlb` prints them."""
    out = set()
    for va, size, raw in zip(leaves.va.tolist(), leaves.size.tolist(), leaves.entry.tolist(),
                             strict=True):  # fmt: skip
        entry = raw & ~Pte.PS if size == 4096 else raw  # QEMU hides the PAT bit of 4 KiB pages
        flags = "".join(ch if entry & bit else "-" for ch, bit in FLAG_LETTERS)
        out.add((va, raw & QEMU_ADDRESS_MASK[size], 0, flags))
    return out
