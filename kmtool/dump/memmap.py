"""The firmware memory map copy the loader handed over, decoded by descriptor size (never sizeof)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kmtool.dump.bootinfo import BootInfoView
from kmtool.dump.document import MemoryDescriptorDoc, MemoryMapDoc
from kmtool.dump.memory import PhysicalMemory
from kmtool.dump.records import numpy_dtype
from kmtool.errors import DumpError
from kmtool.layout.table import MEMTYPE_HANDOFF, MEMTYPE_KERNEL, MEMTYPE_SCRATCH, PAGE_SIZE
from kmtool.schemas.memmap import EfiMemoryDescriptor, EfiMemoryType

MAX_DESCRIPTORS = 1 << 16
MAX_DESCRIPTOR_SIZE = 4096
OEM_TYPES = 0x80000000

LOADER_TYPE_NAMES = {
    MEMTYPE_KERNEL: "km-kernel",
    MEMTYPE_HANDOFF: "km-handoff",
    MEMTYPE_SCRATCH: "km-scratch",
}

#: Types whose frames the kernel may hand to its frame allocator (docs/design.md §4.1).
USABLE_TYPES = frozenset(
    {
        EfiMemoryType.CONVENTIONAL,
        EfiMemoryType.BOOT_SERVICES_CODE,
        EfiMemoryType.BOOT_SERVICES_DATA,
        EfiMemoryType.LOADER_CODE,
        EfiMemoryType.LOADER_DATA,
        MEMTYPE_SCRATCH,
    }
)

#: Types that are RAM (everything the offset map must cover), as opposed to MMIO and holes.
RAM_TYPES = USABLE_TYPES | {
    EfiMemoryType.RUNTIME_SERVICES_CODE,
    EfiMemoryType.RUNTIME_SERVICES_DATA,
    EfiMemoryType.ACPI_RECLAIM,
    EfiMemoryType.ACPI_NVS,
    EfiMemoryType.PERSISTENT,
    MEMTYPE_KERNEL,
    MEMTYPE_HANDOFF,
}


def type_name(memory_type: int) -> str:
    """ "conventional", "boot-services-data", "km-kernel", "oem-0x80000007" ..."""
    if memory_type in LOADER_TYPE_NAMES:
        return LOADER_TYPE_NAMES[memory_type]
    try:
        return EfiMemoryType(memory_type).name.lower().replace("_", "-")
    except ValueError:
        prefix = "oem" if memory_type >= OEM_TYPES else "type"
        return f"{prefix}-{hex(memory_type)}"


@dataclass
class MemoryMap:
    """Descriptors (a numpy structured array in map order) plus how they were laid out."""

    address: int
    map_size: int
    descriptor_size: int
    descriptor_version: int
    entries: np.ndarray  # dtype numpy_dtype(EfiMemoryDescriptor)

    @property
    def starts(self) -> np.ndarray:
        return self.entries["physical_start"].astype(np.uint64)

    @property
    def ends(self) -> np.ndarray:
        """One past the last byte of each descriptor."""
        return self.starts + self.entries["number_of_pages"].astype(np.uint64) * np.uint64(
            PAGE_SIZE
        )

    def intervals(self, types: frozenset[int] | set[int]) -> tuple[np.ndarray, np.ndarray]:
        """Sorted, merged [start, end) intervals of the descriptors whose type is in `types`."""
        sel = np.isin(self.entries["type"], list(types))
        return merge_intervals(self.starts[sel], self.ends[sel])

    def totals(self) -> dict[str, int]:
        """Bytes per type name, largest first."""
        sizes: dict[str, int] = {}
        for t, pages in zip(
            self.entries["type"].tolist(), self.entries["number_of_pages"].tolist(), strict=True
        ):
            sizes[type_name(t)] = sizes.get(type_name(t), 0) + pages * PAGE_SIZE
        return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))

    def to_json(self) -> MemoryMapDoc:
        rows: list[MemoryDescriptorDoc] = []
        for e in self.entries.tolist():
            t, _pad, start, virt, pages, attr = e
            rows.append(
                {
                    "type": t,
                    "type_name": type_name(t),
                    "start": hex(start),
                    "end": hex(start + pages * PAGE_SIZE - 1) if pages else hex(start),
                    "pages": pages,
                    "attribute": hex(attr),
                }
            )
        return {
            "address": hex(self.address),
            "map_size": self.map_size,
            "descriptor_size": self.descriptor_size,
            "descriptor_version": self.descriptor_version,
            "count": len(rows),
            "totals": self.totals(),
            "entries": rows,
        }


def merge_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of [start, end) intervals as sorted, disjoint, non-adjacent intervals."""
    if len(starts) == 0:
        return starts.astype(np.uint64), ends.astype(np.uint64)
    order = np.argsort(starts, kind="stable")
    s, e = starts[order].astype(np.uint64), ends[order].astype(np.uint64)
    run_end = np.maximum.accumulate(e)
    new = np.concatenate(([True], s[1:] > run_end[:-1]))
    first = np.flatnonzero(new)
    last = np.concatenate((first[1:], [len(s)])) - 1
    return s[first], run_end[last]


def read_memory_map(memory: PhysicalMemory, boot: BootInfoView) -> MemoryMap:
    """Decode the memory map the boot info points to, stepping by its descriptor size."""
    size, step = boot.memory_map_size, boot.descriptor_size
    minimum = EfiMemoryDescriptor.sizeof()
    if step < minimum or step > MAX_DESCRIPTOR_SIZE or step % 8:
        raise DumpError(
            f"The boot info at {hex(boot.address)} gives descriptor_size {step} (raw "
            f"{hex(step)}); a UEFI descriptor is at least {minimum} bytes, 8-aligned."
        )
    count = size // step
    if count > MAX_DESCRIPTORS:
        raise DumpError(
            f"The boot info at {hex(boot.address)} gives memory_map_size {hex(size)}: {count} "
            f"descriptors is more than kmtool accepts ({MAX_DESCRIPTORS})."
        )
    data = memory.read(boot.memory_map, count * step, "memory map")
    dtype = numpy_dtype(EfiMemoryDescriptor)
    entries = np.ndarray((count,), dtype=dtype, buffer=data, strides=(step,)).copy()
    return MemoryMap(boot.memory_map, size, step, boot.descriptor_version, entries)
