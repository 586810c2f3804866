"""The parts of a dump of our kernel that its core-info block leads to: the boot info, the memory
map, the free list, the heap and the page stats, then the second-wave parts (kmtool.dump.kernel_parts).

kmtool.dump.inspection imports this module only when the dump holds a core-info block (or one it
cannot read), so an inspection of another kernel's dump imports none of these decoders, nor their
schemas (docs/design.md §13). The Inspection they fill is kmtool.dump.inspection's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from kmtool.dump.bootinfo import BootInfoView, find_boot_info, read_boot_info
from kmtool.dump.frames import read_free_list
from kmtool.dump.heap import heap_initialized, read_heap
from kmtool.dump.kernel_parts import decode_kernel_parts
from kmtool.dump.memmap import read_memory_map
from kmtool.dump.records import parse
from kmtool.dump.trim import trim
from kmtool.errors import DumpError
from kmtool.schemas.pagestats import PageStats

if TYPE_CHECKING:
    from kmtool.dump.coreinfo import CoreInfoBlock
    from kmtool.dump.inspection import Inspection

T = TypeVar("T")


def decode_kernel_state(ins: Inspection, core: CoreInfoBlock) -> None:
    """The parts a core-info block leads to: boot info, memory map, frames, heap, page stats,
    then the second-wave parts (kmtool.dump.kernel_parts). The C heap's freed pages are handed
    back between parts, so each part's transients do not stay under the next's (kmtool.dump.trim)."""
    memory = ins.source.memory
    ins.boot = read_boot_info(memory, core.boot_info_phys)
    trim()
    _memory_map_and_frames(ins, ins.boot, core)
    trim()
    kt = ins.kernel_tables
    if kt is not None and not kt.errors and heap_initialized(memory, core.heap_state_phys):
        ins.heap = _part(ins, "heap", lambda: read_heap(memory, core.heap_state_phys, kt))
        if ins.heap is not None and ins.heap.error is not None:
            ins.part_errors["heap"] = ins.heap.error
    stats = memory.read(core.page_state_phys, PageStats.sizeof(), "page stats")
    ins.page_stats = parse(PageStats, stats, "page stats", core.page_state_phys)
    decode_kernel_parts(ins)


def _memory_map_and_frames(ins: Inspection, boot: BootInfoView, core: CoreInfoBlock) -> None:
    """The memory map and the free list, each on its own (`_part`); a partial one (read up to a
    fault, its `error`) also names the fault in `ins.part_errors`."""
    memory = ins.source.memory
    ins.memmap = _part(ins, "memory map", lambda: read_memory_map(memory, boot))
    if ins.memmap is not None and ins.memmap.error is not None:
        ins.part_errors["memory map"] = ins.memmap.error
    ins.frames = _part(ins, "frames", lambda: read_free_list(memory, core.frame_state_phys))
    if ins.frames is not None and ins.frames.error is not None:
        ins.part_errors["frames"] = ins.frames.error


def _part(ins: Inspection, name: str, decode: Callable[[], T]) -> T | None:
    """`decode()`, or None with the sentence in `ins.part_errors[name]` when the structure it reads
    is corrupt: one part that cannot be decoded leaves the others decoded and checked (its checks
    become "not applicable" rows, and "kernel parts readable" fails naming the fault)."""
    try:
        return decode()
    except DumpError as err:
        ins.part_errors[name] = str(err)
        return None


def decode_without_core_info(ins: Inspection) -> None:
    """What a dump with an unreadable core-info block still shows: the CPUs, the page tables under
    CR3 (already walked), and the boot info and memory map when a magic scan finds exactly one boot
    info (`find_boot_info`); the parts that need core-info stay None. A fault in the boot info or
    memory map leaves both None rather than hiding the "core-info version" check behind it."""
    memory = ins.source.memory
    try:
        boot = find_boot_info(memory)
        if boot is not None:
            ins.memmap = read_memory_map(memory, boot)
            ins.boot = boot
    except DumpError:
        ins.boot = ins.memmap = None
