"""One inspection of a dump: find the roots, decode every part, run the checks, describe it as JSON.

Roots, in order of preference: `--cr3`; CR3 of CPU 0 from the dump (QEMU note or raw layout file);
the kernel PML4 recorded in the core-info block. The paging mode of a CR3 (4-level, or 5-level with
CR4.LA57: the levels walked and the canonical width) is CPU 0's when the dump records its CR4, else
the one `--paging` states, else 4-level; a statement that contradicts the dump's CR4 is an error.
The kernel PML4 of the core-info block is always 4-level (docs/design.md §2). The core-info block is
found through the dump's note, `--kernel`, the raw sidecar, or a physical scan, in that order
(kmtool.dump.coreinfo); with `--cr3` the scan covers only the kernel-image pages, so a foreign dump
is never searched whole.
A dump without one is *foreign* (not our kernel, or not ready yet): with a CR3 the page tables are
still decoded and the kernel parts are null, and the ranges carry no region names (the names come
from kmtool's layout table, which says nothing about another kernel's address space).

A core-info block that is ours (magic and self_phys agree) but of a version this kmtool cannot read
does not stop the inspection either: the "core-info version" check fails naming it, and what needs
no core-info is still shown (CPUs, the page tables under the dump's CR3, and the boot info and memory
map when a scan finds the boot info); the other kernel parts are null.

A fault in the page tables (a table outside the dump, a walk limit) does not stop the inspection:
the walk records it, `page_tables.error` carries it and the "page tables walked" check fails; the
boot info, memory map and free list still decode. The heap, which is found through the kernel's
tables, is left out when they are broken.

Only what the decoded parts need is imported (docs/design.md §13): the decoders of the kernel's
parts (kmtool.dump.kernel_state) when a core-info block is found, the descriptor tables when the
dump records CPUs, the kernel ELF's reader with `--kernel`, a format's reader for its format
(kmtool.dump.source) and each check's module when its row runs (kmtool.dump.checks.registry).
`inspect --cr3` of another kernel's raw dump imports the walker and its one check, and no construct.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmtool.dump.checks import Check, run_checks
from kmtool.dump.coreinfo import CoreInfoBlock, UnreadableCoreInfo, find_core_info
from kmtool.dump.document import (
    InspectionDoc,
    PageStatsDoc,
    PageTablesDoc,
    SourceDoc,
    WalkDoc,
)
from kmtool.dump.document_descriptors import DescriptorTablesDoc
from kmtool.dump.levels import ADDRESS_MASK, FOUR_LEVEL, MODES, PagingMode
from kmtool.dump.pagetable import PageTables, walk
from kmtool.dump.source import DumpSource, open_dump
from kmtool.dump.translate import walk_address
from kmtool.dump.trim import trim
from kmtool.errors import DumpError

if TYPE_CHECKING:
    from kmtool.dump.accounting import FrameAccounting
    from kmtool.dump.aspaces import AddressSpaces
    from kmtool.dump.bootinfo import BootInfoView
    from kmtool.dump.fault_explain import FaultExplanation
    from kmtool.dump.frames import FreeList
    from kmtool.dump.heap import HeapView
    from kmtool.dump.kernel_elf import KernelSymbols
    from kmtool.dump.memmap import MemoryMap


@dataclass
class Options:
    """What the user asked for."""

    kernel: Path | None = None
    cr3: int | None = None
    base: int | None = None
    walk: list[int] = field(default_factory=list)
    pa: list[int] = field(default_factory=list)
    keep_leaves: bool = False
    paging: str | None = None  # "4-level" or "5-level" for a dump that records no CR4


@dataclass
class Inspection:
    """Everything decoded from one dump (parts are None when they do not apply)."""

    source: DumpSource
    options: Options
    kernel: KernelSymbols | None = None
    root: int | None = None
    root_source: str | None = None
    mode: PagingMode = FOUR_LEVEL  # the paging mode of `root`
    tables: PageTables | None = None
    core: CoreInfoBlock | None = None
    core_error: UnreadableCoreInfo | None = None  # ours, but a version this kmtool cannot read
    kernel_tables: PageTables | None = None
    boot: BootInfoView | None = None
    memmap: MemoryMap | None = None
    frames: FreeList | None = None
    heap: HeapView | None = None
    page_stats: Any = None
    walks: list[WalkDoc] = field(default_factory=list)
    aspaces: AddressSpaces | None = None
    accounting: FrameAccounting | None = None
    fault: FaultExplanation | None = None
    descriptors: list[DescriptorTablesDoc] | None = None  # the IDT, GDT and TSS of each CPU
    # part -> why it is not decoded, or (the part is not None) why it is partial
    part_errors: dict[str, str] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def foreign(self) -> bool:
        """True when the dump has no core-info block (not our kernel, or not ready)."""
        return self.core is None

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_json(self, span_list: bool = True) -> InspectionDoc:
        """The `kmtool inspect --json` document (kmtool.dump.document.InspectionDoc); with
        `span_list` False, for drawing parts other than `frames`, its free-span list is empty."""
        tables, root_source = self.tables, self.root_source
        return {
            "source": self._source_doc(),
            "cpu": [c.to_json() for c in self.source.cpus],
            "boot_info": None if self.boot is None else self.boot.to_json(),
            "memory_map": None if self.memmap is None else self.memmap.to_json(),
            "page_tables": (
                None
                if tables is None or root_source is None
                else self._page_tables_doc(tables, root_source)
            ),
            "frames": None if self.frames is None else self.frames.to_json(span_list),
            "heap": None if self.heap is None else self.heap.to_json(),
            "address_spaces": None if self.aspaces is None else self.aspaces.to_json(),
            "accounting": None if self.accounting is None else self.accounting.to_json(),
            "fault": None if self.fault is None else self.fault.to_json(),
            "descriptors": self.descriptors or [],
            "part_errors": self.part_errors,
            "checks": [c.to_json() for c in self.checks],
        }

    def _source_doc(self) -> SourceDoc:
        err = self.core_error
        kernel_id = None if self.kernel is None else self.kernel.build_id
        return {
            **self.source.to_json(),
            "core_info": None if self.core is None else self.core.to_json(),
            "core_info_unreadable": (
                None if err is None else {"address": hex(err.address), "detail": str(err)}
            ),
            "kernel": None if self.kernel is None else str(self.kernel.path),
            "kernel_build_id": None if kernel_id is None else kernel_id.hex(),
        }

    def _page_tables_doc(self, tables: PageTables, root_source: str) -> PageTablesDoc:
        doc: PageTablesDoc = {**tables.to_json(), "root_source": root_source}
        if self.kernel_tables is not None:
            doc["kernel_pml4"] = hex(self.kernel_tables.root)
        if self.walks:
            doc["walks"] = self.walks
        if self.options.pa:
            doc["aliases"] = {hex(pa): tables.aliases(pa) for pa in self.options.pa}
        if self.page_stats is not None:
            doc["stats"] = _page_stats_doc(self.page_stats)
        return doc


def _page_stats_doc(stats: Any) -> PageStatsDoc:
    """struct km_page_stats (a construct Container of PageStats) field by field."""
    return {
        "page_faults": stats.page_faults,
        "demand_maps": stats.demand_maps,
        "tables_allocated": stats.tables_allocated,
        "tables_freed": stats.tables_freed,
        "address_spaces": stats.address_spaces,
    }


def inspect_dump(path: Path, options: Options) -> Inspection:
    """Open and decode the dump at `path` (DumpError on structural faults)."""
    return inspect_source(open_dump(path, options.base), options)


def inspect_source(source: DumpSource, options: Options) -> Inspection:
    """Decode an opened dump, or a live guest's memory (kmtool.live.snapshot), the same way."""
    path = source.path
    ins = Inspection(source, options)
    memory = source.memory
    if options.kernel is not None:
        from kmtool.dump.kernel_elf import load_kernel_symbols

        ins.kernel = load_kernel_symbols(options.kernel)
    ins.root, ins.root_source, ins.mode = _dump_root(source, options)
    if ins.root is not None:
        ins.tables = walk(memory, ins.root, keep_leaves=options.keep_leaves, mode=ins.mode)
    try:
        hints = (source.core_info_note, source.core_info_sidecar)
        ins.core = find_core_info(memory, ins.kernel, ins.tables, hints, options.cr3 is None)
    except UnreadableCoreInfo as err:
        if ins.root is None:
            raise  # nothing else to show without a CR3
        ins.core_error = err
        from kmtool.dump.kernel_state import decode_without_core_info

        decode_without_core_info(ins)
    if ins.core is None and ins.tables is not None:
        ins.tables.ranges = ins.tables.ranges.without_regions()
    if ins.core is None and ins.root is None:
        raise DumpError(
            f"Dump `{path}` records no CR3 and holds no kmtool core-info block; pass `--cr3 ADDR` "
            "to walk its page tables."
        )
    if ins.core is not None:
        # 0 until the kernel has built its own PML4 (a dump of an early panic).
        pml4 = ins.core.kernel_pml4_phys & ADDRESS_MASK
        if pml4 and ins.root is None:
            ins.root, ins.root_source, ins.mode = pml4, "core-info", FOUR_LEVEL
            ins.tables = walk(memory, pml4, keep_leaves=options.keep_leaves)
        if ins.root is None:
            raise DumpError(
                f"The core-info block at {hex(ins.core.address)} records no kernel PML4 yet (raw "
                f"kernel_pml4_phys {hex(ins.core.kernel_pml4_phys)}) and the dump no CR3; pass "
                "`--cr3 ADDR` to walk its page tables."
            )
        if pml4:
            ins.kernel_tables = ins.tables if pml4 == ins.root else walk(memory, pml4)
        from kmtool.dump.kernel_state import decode_kernel_state

        decode_kernel_state(ins, ins.core)
    root = ins.root
    assert root is not None
    for va in options.walk:
        ins.walks.append(walk_address(memory, root, va, ins.mode))
    ins.descriptors = _descriptor_tables(ins)
    trim()
    ins.checks = run_checks(ins)
    trim()
    return ins


def _descriptor_tables(ins: Inspection) -> list[DescriptorTablesDoc] | None:
    """The IDT, GDT and TSS of each CPU the dump records, read through its registers (None: the
    dump records no CPU)."""
    source = ins.source
    if not source.cpus:
        return None
    from kmtool.dump.descriptors import read_descriptor_tables

    elf = None if ins.kernel is None else ins.kernel.elf
    locate = hex if elf is None else elf.describe
    return read_descriptor_tables(source.memory, source.cpus, locate, not ins.foreign) or None


def _dump_root(source: DumpSource, options: Options) -> tuple[int | None, str | None, PagingMode]:
    """The root to walk, where it came from, and its paging mode (see the module docstring)."""
    mode = _paging_mode(source, options.paging)
    if options.cr3 is not None:
        return options.cr3 & ADDRESS_MASK, "--cr3", mode
    for cpu in source.cpus[:1]:
        if cpu.paging_mode in ("4-level", "5-level", "unknown") and cpu.page_table_root is not None:
            return cpu.page_table_root, f"CPU {cpu.index}, {cpu.source}", mode
    return None, None, mode


def _paging_mode(source: DumpSource, stated: str | None) -> PagingMode:
    """CPU 0's paging mode when the dump records its CR4 and it pages with 4 or 5 levels, else
    the `stated` one, else 4-level; DumpError when `stated` contradicts the dump."""
    if stated is not None and stated not in MODES:
        raise DumpError(f"`{stated}` is not a paging mode; say 4-level or 5-level.")
    for cpu in source.cpus[:1]:
        recorded = MODES.get(cpu.paging_mode)
        if recorded is not None and stated not in (None, recorded.name):
            raise DumpError(
                f"CPU {cpu.index} of `{source.path}` uses {recorded.name} paging (CR4 "
                f"{hex(cpu.cr4 or 0)}), not the {stated} paging stated."
            )
        if recorded is not None:
            return recorded
    return MODES[stated] if stated is not None else FOUR_LEVEL
