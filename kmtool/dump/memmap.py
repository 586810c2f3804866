"""The firmware memory map copy the loader handed over, decoded by descriptor size (never sizeof)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kmtool.dump.bootinfo import BootInfoView
from kmtool.dump.document import MemoryDescriptorDoc, MemoryMapDoc
from kmtool.dump.memory import PhysicalMemory
from kmtool.dump.records import words_to_records
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
    error: str | None = None  # why the map is partial (the entries are those read before)

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
            "error": self.error,
            "address": hex(self.address),
            "map_size": self.map_size,
            "descriptor_size": self.descriptor_size,
            "descriptor_version": self.descriptor_version,
            "count": len(rows),
            "totals": self.totals(),
            "entries": rows,
        }


def merge_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of [start, end) intervals as sorted, disjoint, non-adjacent intervals. Intervals that
    are so already (a free list's spans) come back as they are, not copied: treat the result as
    read-only."""
    if len(starts) == 0:
        return starts.astype(np.uint64), ends.astype(np.uint64)
    starts, ends = starts.astype(np.uint64, copy=False), ends.astype(np.uint64, copy=False)
    if not (ends >= starts).all() or not (starts[1:] >= ends[:-1]).all():
        order = np.argsort(starts, kind="stable")
        s, e = starts[order], ends[order]
        del order
        run_end = np.maximum.accumulate(e, out=e)  # in place: `e` is a copy
    else:  # sorted and disjoint already (perhaps touching): no sort, and the ends ascend
        s, run_end = starts, ends
    new = s[1:] > run_end[:-1]
    if new.all():  # sorted, nothing to join
        return s, run_end
    joins = np.flatnonzero(~new)  # interval k + 1 joins the run of interval k
    return np.delete(s, joins + 1), np.delete(run_end, joins)


def read_memory_map(memory: PhysicalMemory, boot: BootInfoView) -> MemoryMap:
    """Decode the memory map the boot info points to, stepping by its descriptor size.

    A descriptor size no UEFI firmware gives is a DumpError (nothing to step by). A map that
    claims more than MAX_DESCRIPTORS descriptors, or runs out of the dump, is partial (docs/design.md
    §10): the descriptors before the fault are kept and `error` names it. Only the descriptors'
    own bytes are read, never the padding between them.
    """
    size, step, at = boot.memory_map_size, boot.descriptor_size, boot.memory_map
    minimum = EfiMemoryDescriptor.sizeof()
    if step < minimum or step > MAX_DESCRIPTOR_SIZE or step % 8:
        raise DumpError(
            f"The boot info at {hex(boot.address)} gives descriptor_size {step} (raw "
            f"{hex(step)}); a UEFI descriptor is at least {minimum} bytes, 8-aligned."
        )
    count, error = size // step, None
    if count > MAX_DESCRIPTORS:
        error = (
            f"The boot info at {hex(boot.address)} gives memory_map_size {hex(size)}: {count} "
            f"descriptors is more than kmtool accepts ({MAX_DESCRIPTORS}); the first "
            f"{MAX_DESCRIPTORS} are shown."
        )
        count = MAX_DESCRIPTORS
    words, ok = _descriptor_words(memory, at, step, count)
    bad = np.flatnonzero(~ok)
    if len(bad):
        k = int(bad[0])
        error = error or (
            f"Memory map at {hex(at)} (boot info at {hex(boot.address)}, memory_map_size "
            f"{hex(size)}): descriptor {k} at {hex(at + k * step)} is outside the dump; the {k} "
            "before it are shown."
        )
        words = words[:k]
    entries = words_to_records(words, EfiMemoryDescriptor)
    return MemoryMap(at, size, step, boot.descriptor_version, entries, error)


def _descriptor_words(
    memory: PhysicalMemory, at: int, step: int, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """The words of `count` descriptors from physical `at`, `step` bytes apart, and which were
    wholly in the dump (a descriptor past 2^64 is not)."""
    width = -(-EfiMemoryDescriptor.sizeof() // 8)
    fits = min(count, max(0, ((1 << 64) - width * 8 - at) // step + 1))
    if at % 8 == 0:
        pas = np.uint64(at) + np.arange(fits, dtype=np.uint64) * np.uint64(step)
        words, ok = memory.gather(pas, width)
    else:  # a misaligned map (no firmware makes one): read descriptor by descriptor
        rows = []
        for k in range(fits):
            if not memory.contains(at + k * step, width * 8):
                break
            rows.append(np.frombuffer(memory.read(at + k * step, width * 8, "memory map"), "<u8"))
        words = np.array(rows, dtype=np.uint64).reshape(len(rows), width)
        ok = np.ones(len(rows), dtype=bool)
    if len(words) < count:  # one row that is not in the dump marks where the map stops
        words = np.concatenate((words, np.zeros((1, width), dtype=np.uint64)))
        ok = np.concatenate((ok, [False]))
    return words, ok
