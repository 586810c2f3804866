"""What the plan costs in physical memory on a machine with a given amount of RAM (`--memory SIZE`).

Page tables are counted as sets of distinct tables per level, so two ranges that share a table (the
kernel image and the heap both hang off the PML4-510 PDPT) count it once:

    kernel PML4                 one page
    offset map, 1 GiB pages     one PDPT (for up to 512 GiB of RAM)
    offset map, 2 MiB pages     the fallback without CPUID pdpe1gb: the PDPT plus one PD per GiB
    kernel image, 4 KiB pages   PDPT + PD(s) + PTs for the image at its link address
    kernel heap, fully backed   the PDs and PTs the page-fault handler would add if every heap page
                                were touched (the heap's frames themselves are not counted)

RAM beyond what the offset map reaches is costed at the offset map's size and reported as
unmanaged. Sizes are shown exactly (`exact_size_text`), so the arithmetic in the report holds.

Fixed costs are what the kernel holds before it hands out a single frame: the image, the PML4, the
image's tables and the offset map. The frame allocator adds nothing: its free list lives inside the
free frames. Physical memory is assumed to be contiguous from address 0, which firmware holes make
slightly optimistic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from kmtool.check import Check
from kmtool.errors import ValidationError
from kmtool.layout import table
from kmtool.units import exact_size_text, plural

# Bytes of address space one table of each level covers (index = level: 1 PT ... 4 PML4).
LEVEL_SPAN = {
    1: 2 * table.MiB,
    2: table.GiB,
    3: table.PML4_SPAN,
    4: 1 << table.VIRTUAL_ADDRESS_BITS,
}
LEVEL_NAME = {1: "PT", 2: "PD", 3: "PDPT", 4: "PML4"}
# The lowest table level a leaf of each page size needs (a 1 GiB leaf lives in a PDPT).
LEAF_LEVEL = {4 * table.KiB: 1, 2 * table.MiB: 2, table.GiB: 3}

MAX_PHYSICAL_ADDRESS_BITS = 52
_UNITS = {"": 1, "k": table.KiB, "m": table.MiB, "g": table.GiB, "t": table.TiB, "p": 1 << 50}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes in `text` like `512M`, `64G`, `1T`, `1.5G`, `2GiB` or `4096` (binary units).

    Raises ValidationError for anything else, for zero, for a fraction of a byte, and for more than
    x86-64 can address physically (4 PiB).
    """
    match = _SIZE_RE.match(text)
    hint = "write a number with an optional binary unit K, M, G or T, like `512M`, `64G` or `1T`"
    if match is None:
        raise ValidationError(f"The memory size `{text}` is not a size: {hint}.")
    try:
        value = Decimal(match.group(1)) * _UNITS[match.group(2).lower()]
    except InvalidOperation as err:  # pragma: no cover - the regex admits only decimal numbers
        raise ValidationError(f"The memory size `{text}` is not a size: {hint}.") from err
    if value != value.to_integral_value():
        raise ValidationError(f"The memory size `{text}` is not a whole number of bytes.")
    size = int(value)
    if size <= 0:
        raise ValidationError(f"The memory size `{text}` must be larger than zero.")
    if size > 1 << MAX_PHYSICAL_ADDRESS_BITS:
        raise ValidationError(
            f"The memory size `{text}` is more than the 4 PiB an x86-64 machine can address."
        )
    return size


def tables_for(start: int, size: int, page_size: int) -> set[tuple[int, int]]:
    """The page tables below the PML4 that map [start, start + size) with leaves of `page_size`.

    Each table is named (level, index of the address span it covers), so sets from several ranges
    can be united without counting a shared table twice.
    """
    if size <= 0:
        return set()
    address = start & ((1 << table.VIRTUAL_ADDRESS_BITS) - 1)
    last = address + size - 1
    out: set[tuple[int, int]] = set()
    for level in range(LEAF_LEVEL[page_size], 4):
        span = LEVEL_SPAN[level]
        out.update((level, i) for i in range(address // span, last // span + 1))
    return out


def describe(tables: set[tuple[int, int]]) -> str:
    """`1 PDPT + 2 PDs + 40 PTs` (highest level first); `none` for an empty set."""
    counts = {level: sum(1 for lv, _ in tables if lv == level) for level in (4, 3, 2, 1)}
    parts = [plural(n, LEVEL_NAME[level]) for level, n in counts.items() if n]
    return " + ".join(parts) if parts else "none"


@dataclass(frozen=True)
class CostItem:
    """One row of the cost table: `tables` 4 KiB page-table pages, explained by `detail`."""

    key: str
    name: str
    tables: int
    detail: str

    @property
    def bytes(self) -> int:
        return self.tables * table.PAGE_SIZE


@dataclass(frozen=True)
class MemoryCost:
    """The plan's physical-memory cost for `ram` bytes of RAM."""

    ram: int
    managed: int  # RAM the offset map reaches (the rest cannot be managed)
    image_bytes: int  # kernel image rounded up to pages; 0 when no kernel was given
    image_known: bool
    items: tuple[CostItem, ...]

    @property
    def unmanaged(self) -> int:
        """RAM beyond what the offset map reaches: the kernel cannot use it (0 when it all fits)."""
        return self.ram - self.managed

    def item(self, key: str) -> CostItem:
        return next(i for i in self.items if i.key == key)

    def fixed(self, offset_map_key: str) -> int:
        """Image + PML4 + image tables + the offset map built the `offset_map_key` way."""
        keys = ("pml4", "image", offset_map_key)
        return self.image_bytes + sum(self.item(k).bytes for k in keys)

    @property
    def fixed_1g(self) -> int:
        return self.fixed("offset-map-1g")

    @property
    def fixed_2m(self) -> int:
        return self.fixed("offset-map-2m")

    @property
    def left_1g(self) -> int:
        return self.managed - self.fixed_1g

    @property
    def left_2m(self) -> int:
        return self.managed - self.fixed_2m


def plan_cost(ram: int, image_size: int | None = None) -> MemoryCost:
    """Cost of the plan for `ram` bytes; `image_size` is the kernel's PT_LOAD span when known."""
    page = table.PAGE_SIZE
    managed = min(ram, table.region("offset-map").size)
    image_bytes = -(-(image_size or 0) // page) * page
    om = table.region("offset-map")
    om_1g = tables_for(om.start, managed, table.GiB)
    om_2m = tables_for(om.start, managed, 2 * table.MiB)
    image = tables_for(table.KERNEL_LINK_BASE, max(image_bytes, page), page)
    heap_region = table.region("kernel-heap")
    heap = tables_for(heap_region.start, heap_region.size, page) - image
    image_note = (
        f"{describe(image)} for a {exact_size_text(image_bytes)} image"
        if image_size is not None
        else f"{describe(image)} at least (no ELF)"
    )
    items = (
        CostItem("pml4", "kernel PML4", 1, "the kernel's own top-level table"),
        CostItem(
            "offset-map-1g",
            "offset map, 1 GiB pages",
            len(om_1g),
            f"{describe(om_1g)} mapping {exact_size_text(managed)}",
        ),
        CostItem(
            "offset-map-2m",
            "offset map, 2 MiB fallback",
            len(om_2m),
            f"{describe(om_2m)} mapping {exact_size_text(managed)} without pdpe1gb",
        ),
        CostItem("image", "kernel image, 4 KiB pages", len(image), image_note),
        CostItem(
            "heap",
            "kernel heap, fully backed",
            len(heap),
            f"{describe(heap)} for all {exact_size_text(heap_region.size)}, on demand",
        ),
    )
    return MemoryCost(ram, managed, image_bytes, image_size is not None, items)


def check_memory(cost: MemoryCost) -> list[Check]:
    """The offset map reaches all RAM, and the fixed costs fit in it (even with 2 MiB pages)."""
    om_size = table.region("offset-map").size
    out = []
    if cost.ram > om_size:
        out.append(
            Check(
                "memory-in-offset-map",
                False,
                f"`offset-map` reaches {exact_size_text(om_size)} but the machine has "
                f"{exact_size_text(cost.ram)}; {exact_size_text(cost.ram - om_size)} would be unmanaged.",
                ("offset-map",),
            )
        )
    else:
        out.append(
            Check(
                "memory-in-offset-map",
                True,
                f"All {exact_size_text(cost.ram)} of RAM lies inside `offset-map` "
                f"({exact_size_text(om_size)}).",
            )
        )
    if cost.left_2m <= 0:
        out.append(
            Check(
                "memory-fixed-costs",
                False,
                f"The fixed costs ({exact_size_text(cost.fixed_2m)} with the 2 MiB fallback) do not fit "
                f"in {exact_size_text(cost.managed)} of RAM.",
                ("memory",),
            )
        )
    else:
        out.append(
            Check(
                "memory-fixed-costs",
                True,
                f"Fixed costs of {exact_size_text(cost.fixed_1g)} (1 GiB pages) or "
                f"{exact_size_text(cost.fixed_2m)} (2 MiB fallback) fit in {exact_size_text(cost.managed)}.",
            )
        )
    return out
