"""The region table and paging constants: the single source of truth for the address-space plan.

Picture of the x86-64 address space this kernel uses (4-level paging, 48-bit virtual addresses):

    0x0000000000000000 +------------------------------+ PML4 0
                       | user space (per process)     |
    0x00007ffffffff000 |   initial user stack (1 pg)  |
    0x0000800000000000 +------------------------------+ PML4 255 ends; non-canonical hole follows
                       :                              :
    0xffffff0000000000 +------------------------------+ PML4 510: kernel space, shared
                       | kernel image (link address)  |
    0xffffff0040000000 | kernel virtual space         |  handed out by the address manager
    0xffffff7800000000 | kernel heap, 32 GiB          |  backed lazily by the page-fault handler
    0xffffff8000000000 +------------------------------+ PML4 511
                       | offset map: phys + base      |  one PDPT of 512 x 1 GiB pages
    0xffffffffffffffff +------------------------------+

Everything else (C headers, the linker script, the loader, the inspector, the report) reads these
numbers from here. Change a number here and run `kmtool layout gen` (or `kmtool build`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

# Paging constants (x86-64 4-level paging: our kernel's plan; kmtool.dump.levels also decodes the
# 5-level tables of foreign dumps, with their own width passed to canonical()).
PAGE_SIZE = 4 * KiB
PAGE_SHIFT = 12
PAGING_LEVELS = 4
ENTRIES_PER_TABLE = 512
VIRTUAL_ADDRESS_BITS = 48
PML4_SPAN = 512 * GiB  # bytes of virtual space one PML4 entry covers

# Bases and sizes of record (docs/design.md §2).
KERNEL_SPACE_BASE = 0xFFFFFF0000000000
KERNEL_LINK_BASE = 0xFFFFFF0000100000  # where the kernel ELF is linked (inside the image region)
KERNEL_IMAGE_SIZE = 1 * GiB
KERNEL_VSPACE_BASE = KERNEL_SPACE_BASE + KERNEL_IMAGE_SIZE
HEAP_BASE = 0xFFFFFF7800000000
HEAP_SIZE = 32 * GiB
OFFSET_MAP_BASE = 0xFFFFFF8000000000
OFFSET_MAP_SIZE = 512 * GiB  # physical memory the offset map can reach
MAX_PHYSICAL_MEMORY = 512 * GiB  # the most physical memory the kernel is declared to manage
USER_SPACE_TOP = 0x0000800000000000
USER_STACK_TOP = USER_SPACE_TOP
USER_STACK_SIZE = PAGE_SIZE

# PML4 entries shared by every address space (copied into each new one).
SHARED_PML4_FIRST = 510
SHARED_PML4_LAST = 511

# Loader-defined UEFI memory types (docs/design.md §3.2), so the kernel and kmtool can tell them apart.
MEMTYPE_KERNEL = 0x80000000
MEMTYPE_HANDOFF = 0x80000001
MEMTYPE_SCRATCH = 0x80000002
SCRATCH_PAGES = 64

# Values the guest writes to the isa-debug-exit port; QEMU exits with (value << 1) | 1.
DEBUG_EXIT_PORT = 0xF4
EXIT_PASS = 0x10
EXIT_FAIL = 0x11
EXIT_PANIC = 0x12
DEBUGCON_PORT = 0xE9

# fw_cfg file the loader reads the per-run kernel command line from.
FW_CFG_CMDLINE = "opt/kmtool/cmdline"


class Backing(Enum):
    """How a region's virtual pages come to be backed by physical frames."""

    STATIC = "static"
    OFFSET_MAPPED = "offset-mapped"
    DEMAND_PAGED = "demand-paged"
    PER_PROCESS = "per-process"
    CONTAINER = "container"


@dataclass(frozen=True)
class Region:
    """One named range of virtual addresses. `parent` names the region it nests inside, if any."""

    name: str
    start: int
    size: int
    backing: Backing
    page_size: int
    description: str
    parent: str | None = None

    @property
    def end(self) -> int:
        """The last byte of the region (inclusive)."""
        return self.start + self.size - 1

    @property
    def c_name(self) -> str:
        return self.name.upper().replace("-", "_")

    @property
    def pml4(self) -> tuple[int, int]:
        """The first and last PML4 entry (0-511) the region's addresses go through."""
        return pml4_index(self.start), pml4_index(self.end)

    @property
    def upper_half(self) -> bool:
        """True for regions in the upper canonical half (the kernel's half)."""
        return self.start >= canonical(1 << (VIRTUAL_ADDRESS_BITS - 1))


REGIONS: tuple[Region, ...] = (
    Region(
        "user-space",
        0,
        USER_SPACE_TOP,
        Backing.PER_PROCESS,
        PAGE_SIZE,
        "Lower canonical half, private to each process.",
    ),
    Region(
        "user-stack",
        USER_STACK_TOP - USER_STACK_SIZE,
        USER_STACK_SIZE,
        Backing.PER_PROCESS,
        PAGE_SIZE,
        "Initial user stack; its top is the top of user space.",
        parent="user-space",
    ),
    Region(
        "kernel-space",
        KERNEL_SPACE_BASE,
        2 * PML4_SPAN,
        Backing.CONTAINER,
        PAGE_SIZE,
        "The top 1 TiB, PML4 entries 510-511, shared by every address space.",
    ),
    Region(
        "kernel-image",
        KERNEL_SPACE_BASE,
        KERNEL_IMAGE_SIZE,
        Backing.STATIC,
        PAGE_SIZE,
        "The kernel ELF, mapped by the loader at its link address.",
        parent="kernel-space",
    ),
    Region(
        "kernel-vspace",
        KERNEL_VSPACE_BASE,
        HEAP_BASE - KERNEL_VSPACE_BASE,
        Backing.DEMAND_PAGED,
        PAGE_SIZE,
        "Kernel virtual space handed out by the address manager.",
        parent="kernel-space",
    ),
    Region(
        "kernel-heap",
        HEAP_BASE,
        HEAP_SIZE,
        Backing.DEMAND_PAGED,
        PAGE_SIZE,
        "The 32 GiB kernel heap, backed lazily by the page-fault handler.",
        parent="kernel-space",
    ),
    Region(
        "offset-map",
        OFFSET_MAP_BASE,
        OFFSET_MAP_SIZE,
        Backing.OFFSET_MAPPED,
        GiB,
        "All physical memory at physical + base, one PDPT of 1 GiB pages.",
        parent="kernel-space",
    ),
)


def region(name: str) -> Region:
    """The region called `name`; raises KeyError for an unknown name."""
    for r in REGIONS:
        if r.name == name:
            return r
    raise KeyError(name)


def canonical(address: int, bits: int = VIRTUAL_ADDRESS_BITS) -> int:
    """`address` sign-extended from bit `bits` - 1 (47: our plan's 4-level paging; 56 for the
    5-level tables of a foreign dump) to 64 bits, as an unsigned 64-bit integer."""
    address &= (1 << 64) - 1
    if address & (1 << (bits - 1)):
        return address | ~((1 << bits) - 1) & ((1 << 64) - 1)
    return address & ((1 << bits) - 1)


def is_canonical(address: int, bits: int = VIRTUAL_ADDRESS_BITS) -> bool:
    """True when bits 63..`bits` - 1 of `address` are all equal."""
    return canonical(address, bits) == address


def pml4_index(address: int) -> int:
    """The PML4 entry (0-511) that translates `address`."""
    return (address >> 39) & 0x1FF


def region_for(address: int) -> Region | None:
    """The innermost region containing `address`, or None."""
    best: Region | None = None
    for r in REGIONS:
        if r.start <= address <= r.end and (best is None or r.size < best.size):
            best = r
    return best
