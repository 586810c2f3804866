"""The kernel's address spaces, read from a dump (kmtool/schemas/aspace.py; docs/design.md §12).

The core-info block's `aspaces_phys` names the kernel's list of live address spaces. Each listed
PML4 is walked like the kernel's own tables; an address space shows its user half (the lower
canonical half: PML4 entries below SHARED_PML4_FIRST's half) as merged ranges with effective
permissions, and whether its kernel half is the kernel's (PML4 entries 510 and 511 equal to the
kernel PML4's, so kernel space is one set of PDPTs shared by all).

Work is bounded: the list holds at most ASPACE_MAX entries (a count above that is an error naming
the raw value), and all the walks together share one leaf budget (`MAX_LEAVES`), so a dump whose
address spaces all point at one huge table tree costs what one walk may cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kmtool.dump.document import AddressSpaceDoc, AddressSpacesDoc
from kmtool.dump.levels import ADDRESS_MASK
from kmtool.dump.memory import PhysicalMemory
from kmtool.dump.pagetable import MAX_LEAVES, RANGE_FIELDS, PageTables, Ranges
from kmtool.dump.shared_walk import walk_sharing
from kmtool.errors import DumpError
from kmtool.layout.table import (
    ENTRIES_PER_TABLE,
    PAGE_SIZE,
    SHARED_PML4_FIRST,
    SHARED_PML4_LAST,
    USER_SPACE_TOP,
)
from kmtool.schemas.aspace import ASPACE_MAX, AspaceList

#: User ranges listed per address space in JSON and by `--part aspaces`.
RANGES_LISTED = 256


@dataclass
class AddressSpace:
    """One listed address space: its id, its PML4, its walk, and its PML4 entries 510-511."""

    id: int
    pml4: int
    tables: PageTables
    kernel_half: tuple[int, ...]

    @property
    def user(self) -> Ranges:
        """The merged ranges of the user half: the ranges are in address order, so these are the
        first ones, and slices of the walk's arrays rather than copies (9 MiB for each use on
        the benchmark dump's 262,144 user ranges)."""
        r = self.tables.ranges
        user = r.start < np.uint64(USER_SPACE_TOP)
        k = int(np.count_nonzero(user))
        if user[:k].all():
            return Ranges(*(getattr(r, name)[:k] for name in RANGE_FIELDS))
        return r.take(np.flatnonzero(user))

    @property
    def user_pages(self) -> int:
        """User-half bytes mapped, in 4 KiB pages."""
        return int(np.sum(self.user.size, dtype=np.uint64)) // PAGE_SIZE

    def to_json(self, kernel_half: tuple[int, ...] | None) -> AddressSpaceDoc:
        return {
            "id": self.id,
            "pml4": hex(self.pml4),
            "kernel_half_shared": None if kernel_half is None else self.kernel_half == kernel_half,
            "user_pages": self.user_pages,
            "user_ranges": self.user.to_json(RANGES_LISTED),
            "user_ranges_total": len(self.user),
            "tables": len(self.tables.tables),
            "error": self.tables.error,
        }


@dataclass
class AddressSpaces:
    """The kernel's list (`created`: ids handed out so far) and each listed address space."""

    address: int
    created: int
    spaces: list[AddressSpace]
    kernel_half: tuple[int, ...] | None  # the kernel PML4's entries 510-511; None without one

    def to_json(self) -> AddressSpacesDoc:
        return {
            "list_address": hex(self.address),
            "count": len(self.spaces),
            "created": self.created,
            "spaces": [s.to_json(self.kernel_half) for s in self.spaces],
        }


def pml4_kernel_half(memory: PhysicalMemory, pml4: int) -> tuple[int, ...]:
    """The raw PML4 entries SHARED_PML4_FIRST..SHARED_PML4_LAST of the table at `pml4`."""
    first, n = SHARED_PML4_FIRST * 8, (SHARED_PML4_LAST - SHARED_PML4_FIRST + 1) * 8
    data = memory.read(pml4 + first, n, "PML4 kernel half")
    return tuple(int.from_bytes(data[i : i + 8], "little") for i in range(0, n, 8))


def read_address_spaces(
    memory: PhysicalMemory, pa: int, kernel_pml4: int | None, kernel: PageTables | None = None
) -> AddressSpaces:
    """The list at physical `pa` and a walk of each listed PML4 (DumpError when the list cannot
    be read, counts more than ASPACE_MAX, or lists a PML4 that is not a page-aligned table in the
    dump; a fault inside one walk stays in that walk's `error`). `kernel`, the walk of the kernel
    PML4, stands in for the entries a listed PML4 shares with it (kmtool.dump.shared_walk)."""
    raw = AspaceList.parse(memory.read(pa, AspaceList.sizeof(), "address-space list"))
    if raw.count > ASPACE_MAX or raw.count > raw.created:
        raise DumpError(
            f"The address-space list at {hex(pa)} claims {raw.count} live address spaces (created "
            f"{raw.created}); it holds at most {ASPACE_MAX}, never more than were created."
        )
    kernel_half = None if not kernel_pml4 else pml4_kernel_half(memory, kernel_pml4)
    budget = MAX_LEAVES
    spaces = []
    for ident, pml4 in zip(raw.id[: raw.count], raw.pml4[: raw.count], strict=True):
        if pml4 & ~ADDRESS_MASK or not memory.contains(pml4, ENTRIES_PER_TABLE * 8):
            raise DumpError(
                f"The address-space list at {hex(pa)} gives address space {ident} the PML4 "
                f"{hex(pml4)}, which is not a page-aligned table inside the dump."
            )
        tables = walk_sharing(memory, pml4, kernel, max(budget, 1))
        budget -= tables.leaf_total
        spaces.append(AddressSpace(ident, pml4, tables, pml4_kernel_half(memory, pml4)))
    return AddressSpaces(pa, raw.created, spaces, kernel_half)
