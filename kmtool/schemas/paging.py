"""x86-64 paging as the kernel, the loader and kmtool share it: the page-table entry bits.

A page-table entry is one little-endian 64-bit integer (Intel SDM vol. 3, 4.5); kmtool parses it as
an integer and decodes it with `Pte`, never with a struct per entry. `Pte` and `PTE_ADDR` are
generated into include/km/structs.h (kmtool/layout/cgen.py) as `KM_PTE_<NAME>` and `KM_PTE_ADDR`,
so kernel/, efi/ and kmtool/dump/pagetable.py read the same bits. No construct here: the walker
of any dump needs these bits and nothing else of the schemas (the kernel's page stats are
pagestats.py).
"""

from enum import IntFlag


class Pte(IntFlag):
    """Bits of a page-table entry. Every level shares the low bits and NX."""

    PRESENT = 1 << 0
    WRITABLE = 1 << 1
    USER = 1 << 2
    PWT = 1 << 3
    PCD = 1 << 4
    ACCESSED = 1 << 5
    DIRTY = 1 << 6
    PS = 1 << 7
    GLOBAL = 1 << 8
    NX = 1 << 63


# What each bit means; the generated C carries these as comments.
PTE_DOCS: dict[Pte, str] = {
    Pte.PRESENT: "present; without it every other bit is ignored",
    Pte.WRITABLE: "writable, if every level of the walk says so",
    Pte.USER: "user accessible, if every level of the walk says so",
    Pte.PWT: "page-level write-through (a caching bit only)",
    Pte.PCD: "page-level cache disable",
    Pte.ACCESSED: "accessed: set by the CPU on first use",
    Pte.DIRTY: "dirty: set by the CPU on first write to a page",
    Pte.PS: "leaf at PDPT (1 GiB) or PD (2 MiB) level; PAT at PT",
    Pte.GLOBAL: "global: kept in the TLB across CR3 loads (CR4.PGE)",
    Pte.NX: "no execute, if any level says so (needs EFER.NXE)",
}

PTE_ADDR = 0x000F_FFFF_FFFF_F000  # bits 51:12: the physical address of the next table or the page
