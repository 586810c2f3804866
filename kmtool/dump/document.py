"""The shape of the `kmtool inspect --json` document, declared once: one TypedDict per part.

Each `to_json` in kmtool/dump returns one of these types, and kmtool.dump.render reads the document
only through them, so a key renamed on one side is a mypy error on the other rather than a blank
cell. tests/dump/test_document.py holds real documents to these declarations at every level: no
declared key missing, none undeclared.

Conventions of the whole document:
- addresses, raw register values and raw entries are "0x..." strings (virtual addresses canonical);
  sizes and counts are integers, in bytes unless the key names another unit;
- every "end" is the last byte of its range (inclusive), as in the layout table;
- null means "does not apply": a part a foreign dump lacks, a register a source does not record.

The parts that mirror a kernel structure (`BootInfoDoc`, `CoreInfoDoc`, `FrameCountersDoc`,
`HeapCountersDoc`, `PageStatsDoc`) keep the C field names of their schema in kmtool.schemas, in
schema order; the tests check that each lists every field its schema has.

This module is a leaf: it declares, and imports nothing of kmtool but its sibling
kmtool.dump.document_descriptors, another such leaf (the descriptor tables' part). (No `from
__future__ import annotations`: the tests read `__required_keys__`, which needs NotRequired
evaluated.)
"""

from typing import NotRequired, TypedDict

from kmtool.dump.document_descriptors import DescriptorTablesDoc

# -- source ----------------------------------------------------------------------------------------


class DumpRangeDoc(TypedDict):
    """One range of physical memory the dump holds, and where its bytes are in the file."""

    start: str
    end: str
    size: int
    file_offset: str
    file_size: int  # less than size when the rest reads as zeros (an ELF p_filesz < p_memsz)


class DumpFileDoc(TypedDict):
    """What the dump file is (kmtool.dump.source.DumpSource.to_json)."""

    path: str
    format: str  # "elf", "kdump", "lime" or "raw"
    file_size: int
    base: str | None  # a raw image read with --base or without a layout file
    layout_file: str | None
    ram_bytes: int
    ranges: list[DumpRangeDoc]


class CoreInfoDoc(TypedDict):
    """struct km_core_info (kmtool.schemas.coreinfo.CoreInfo), where it was found and how."""

    address: str
    found_by: str  # "note", "symbol", "sidecar" or "scan"
    magic: str
    magic2: str
    version: int
    length: int
    self_phys: str
    boot_info_phys: str
    kernel_pml4_phys: str
    frame_state_phys: str
    heap_state_phys: str
    page_state_phys: str
    kernel_phys_base: str
    kernel_virt_base: str
    kernel_size: int
    offset_map_base: str
    offset_map_page_size: int
    offset_map_size: int
    kernel_space_base: str
    heap_base: str
    heap_size: int
    entry_tsc: int
    ready_tsc: int
    build_id: str  # 32 hex digits, no "0x"
    # Added with core-info versions 2 and 3, and printed as decimal integers, unlike the older
    # physical addresses above (the document has said so since they were added).
    fault_phys: int
    aspaces_phys: int


class UnreadableCoreInfoDoc(TypedDict):
    """A core-info block that is ours but of a version this kmtool cannot read."""

    address: str
    detail: str


class SourceDoc(DumpFileDoc):
    """The "source" part: the file, the core-info block, and the kernel ELF given with --kernel."""

    core_info: CoreInfoDoc | None
    core_info_unreadable: UnreadableCoreInfoDoc | None
    kernel: str | None  # the --kernel path
    kernel_build_id: str | None  # the kernel ELF's whole GNU build id, hex without "0x"


# -- cpu -------------------------------------------------------------------------------------------


class DescriptorTableDoc(TypedDict):
    """A GDTR or IDTR."""

    base: str
    limit: str


class CpuDoc(TypedDict):
    """One CPU's registers (kmtool.dump.cpu.CpuState.to_json); unrecorded ones are null."""

    index: int
    source: str  # "QEMU note", "NT_PRSTATUS", or the raw dump's layout file
    rip: str | None
    rsp: str | None
    rflags: str | None
    cr0: str | None
    cr2: str | None
    cr3: str | None
    cr4: str | None
    efer: str | None
    cs: str | None
    ss: str | None
    gdt: DescriptorTableDoc | None
    idt: DescriptorTableDoc | None
    kernel_gs_base: str | None
    paging: str  # "4-level", "5-level", "legacy", "off" or "unknown"
    registers: dict[str, str]  # general registers by name, when recorded


# -- boot info and memory map ----------------------------------------------------------------------


class BootInfoDoc(TypedDict):
    """struct km_boot_info (kmtool.schemas.bootinfo.BootInfo) without its reserved fields."""

    address: str
    magic: str
    version: int
    length: int
    memory_map: str
    memory_map_size: int
    descriptor_size: int
    descriptor_version: int
    flags: str
    kernel_phys_base: str
    kernel_phys_size: int
    kernel_virt_base: str
    kernel_entry: str
    scratch_base: str
    scratch_count: int
    scratch_used: int
    rsdp: str
    fb_base: str
    fb_size: int
    fb_width: int
    fb_height: int
    fb_pitch: int
    fb_format: int
    loader_tsc: int
    cmdline_length: int
    cmdline: str  # up to the first NUL, undecodable bytes replaced
    cmdline_truncated: bool  # KM_BOOT_FLAG_CMDLINE_TRUNCATED


class MemoryDescriptorDoc(TypedDict):
    """One EFI memory descriptor, in map order."""

    type: int
    type_name: str  # "conventional", "km-kernel", "oem-0x80000007" ...
    start: str
    end: str
    pages: int
    attribute: str


class MemoryMapDoc(TypedDict):
    """The memory map the loader handed over."""

    error: str | None  # why the map is partial: the entries below are those read before
    address: str
    map_size: int
    descriptor_size: int
    descriptor_version: int
    count: int
    totals: dict[str, int]  # bytes per type name, largest first
    entries: list[MemoryDescriptorDoc]


# -- page tables -----------------------------------------------------------------------------------


class RangeDoc(TypedDict):
    """A merged mapping: contiguous, same page size, permissions and region."""

    start: str
    end: str
    size: int
    phys: str
    page_size: int
    flags: str  # effective permissions, "RWXU" style
    region: str | None  # the layout table's region; null on a foreign dump


class WalkStepDoc(TypedDict):
    """One level of a single-address walk."""

    level: str  # "PML4", "PDPT", "PD" or "PT"
    table: str
    index: int
    entry_address: str
    entry: str
    flags: str  # names of the set bits, "PRESENT|WRITABLE" style


class WalkDoc(TypedDict):
    """The walk to one virtual address (`--walk VA`); phys, page_size and flags are null when it
    ends early, and stopped then says why."""

    va: str
    steps: list[WalkStepDoc]
    phys: str | None
    page_size: int | None
    flags: str | None
    stopped: str | None


class AliasDoc(TypedDict):
    """A virtual address that maps a physical one (`--pa PA`)."""

    va: str
    page_size: int
    flags: str
    region: str | None


class PageStatsDoc(TypedDict):
    """struct km_page_stats (kmtool.schemas.pagestats.PageStats)."""

    page_faults: int
    demand_maps: int
    tables_allocated: int
    tables_freed: int
    address_spaces: int


class WalkedTablesDoc(TypedDict):
    """What a walk of all the tables under one root found (kmtool.dump.pagetable.PageTables)."""

    cr3: str
    paging: str  # "4-level" or "5-level" (CR4.LA57): the levels walked, the canonical width
    regions: list[RangeDoc]  # the first RANGES_LISTED, by virtual address
    regions_total: int
    leaves: int
    leaf_counts: dict[str, int]  # leaves per page size ("4K", "2M", "1G"), smallest first
    tables: int
    error: str | None  # the walk's first fault, and how many more
    recursive_entries: list[str]  # entries pointing back up their own path, not followed


class PageTablesDoc(WalkedTablesDoc):
    """The "page_tables" part: the walk, where its root came from, and what was asked for."""

    root_source: str  # "--cr3", "CPU 0, QEMU note", "core-info" ...
    kernel_pml4: NotRequired[str]  # once the kernel has built its own PML4
    walks: NotRequired[list[WalkDoc]]  # with --walk
    aliases: NotRequired[dict[str, list[AliasDoc]]]  # with --pa: by physical address
    stats: NotRequired[PageStatsDoc]  # with a core-info block


# -- frames ----------------------------------------------------------------------------------------


class SpanDoc(TypedDict):
    """A run of free frames."""

    start: str
    count: int  # frames


class FrameCountersDoc(TypedDict):
    """struct km_frame_allocator (kmtool.schemas.frames.FrameAllocator)."""

    head: str
    free_frames: int
    spans: int
    managed_frames: int
    alloc_calls: int
    free_calls: int
    root: str
    limit: str
    stack_frames: int
    stack_runs: int
    stack_limit: int
    folds: int
    stack_key: int
    stack: list[int]  # top run of each stack (runs of 1 .. 16 frames), 0 when empty


class FrameStackDoc(TypedDict):
    """The stack half of the free list (kmtool.dump.frames.FrameStackView)."""

    runs: int
    frames: int
    run_list: list[list[str | int]]  # [first frame "0x...", frame count], stack by stack, top down
    errors: list[str]  # what stopped a stack's walk


class FramesDoc(TypedDict):
    """The "frames" part: the allocator state and its free list (kmtool.dump.frames.FreeList)."""

    error: str | None  # why the list stops before its end: the spans below are those read before
    state_address: str
    initialized: bool  # false while km_frames is all zero
    free_frames: int
    free_bytes: int
    spans: int
    span_list: list[list[str | int]]  # [start "0x...", frame count] pairs in list order
    span_list_truncated: bool
    span_hash: str
    largest_span: SpanDoc | None
    fragmentation: float  # 1 - largest span / free frames
    counters: FrameCountersDoc
    stack: FrameStackDoc | None  # None when the stack was not decoded


# -- heap ------------------------------------------------------------------------------------------


class HeapOrderDoc(TypedDict):
    """The blocks of one order."""

    order: int
    block_size: int
    used: int
    free: int
    untouched: int
    requested_bytes: int


class HeapBlockDoc(TypedDict):
    """One block of the buddy tree."""

    va: str
    order: int
    state: str  # "used" or "free"
    untouched: bool
    size: int  # bytes requested


class HeapCountersDoc(TypedDict):
    """struct km_heap (kmtool.schemas.heap.Heap) without its per-order arrays."""

    base: str
    size: int
    min_order: int
    max_order: int
    bytes_in_use: int
    blocks_in_use: int
    free_blocks: int
    backed_pages: int


class HeapDoc(TypedDict):
    """The "heap" part (kmtool.dump.heap.HeapView)."""

    state_address: str
    base: str
    size: int
    min_order: int
    max_order: int
    blocks: int
    used_blocks: int
    free_blocks: int
    untouched_blocks: int
    bytes_in_use: int
    backed_pages: int
    by_order: list[HeapOrderDoc]
    block_list: list[HeapBlockDoc]  # the first BLOCKS_LISTED, in tree order
    counters: HeapCountersDoc
    problems: list[str]
    error: str | None  # why the blocks stop before the tree's end (a partial heap), or None


# -- second-wave parts: address spaces, frame accounting, the fault -------------------------------


class AddressSpaceDoc(TypedDict):
    """One address space the kernel lists (kmtool.dump.aspaces.AddressSpace)."""

    id: int
    pml4: str
    kernel_half_shared: bool | None  # PML4 510-511 equal the kernel's; null without a kernel PML4
    user_pages: int
    user_ranges: list[RangeDoc]  # the first RANGES_LISTED of the user half
    user_ranges_total: int
    tables: int
    error: str | None  # the walk's first fault


class AddressSpacesDoc(TypedDict):
    """The "address_spaces" part: the kernel's list and each listed address space."""

    list_address: str
    count: int
    created: int
    spaces: list[AddressSpaceDoc]


class UnaccountedRangeDoc(TypedDict):
    start: str
    end: str
    frames: int


class AccountingDoc(TypedDict):
    """The "accounting" part: every ownable frame by owner (kmtool.dump.accounting)."""

    ownable_frames: int
    by_owner: dict[str, int]  # free, page-table, mapped, kernel-image, handoff, unaccounted
    unaccounted_ranges: list[UnaccountedRangeDoc]  # the first UNACCOUNTED_LISTED
    unaccounted_ranges_total: int
    owner_ranges: dict[str, list[list[str]]]  # owner -> [first byte, last byte] ranges, sorted
    owner_ranges_truncated: bool  # some owner has more than OWNER_RANGES_LISTED


class FaultDoc(TypedDict):
    """The "fault" part: the kernel's fault record explained (kmtool.dump.fault_explain)."""

    kind: str  # "exception" or "panic"
    seq: int
    vector: int | None  # null for a panic
    exception: str
    error_code: str
    error: list[str]  # the error code in words
    message: str
    cr2: str
    cr3: str
    rip: str
    rip_where: str  # function+offset (file:line) with --kernel, else the address
    rsp: str
    rflags: str
    cs: str
    ss: str
    regions: dict[str, str]  # cr2, rip, rsp -> region
    cr2_walk: WalkDoc | None  # a #PF's CR2 walked under the fault's CR3
    stopped_by: str | None  # the level that refused the access, and why
    page_now: str | None  # what the page at CR2 is in the dump
    backtrace: list[str]
    rip_bytes: str | None
    notes: list[str]


# -- checks and the whole ----------------------------------------------------------------------------


class CheckDoc(TypedDict):
    """One row of the checks: kmtool.check.CheckJson without `culprits`, which no inspect check
    names (Check.to_json() leaves them out unless asked)."""

    name: str
    ok: bool
    detail: str


class InspectionDoc(TypedDict):
    """The whole document (kmtool.dump.inspection.Inspection.to_json)."""

    source: SourceDoc
    cpu: list[CpuDoc]
    boot_info: BootInfoDoc | None
    memory_map: MemoryMapDoc | None
    page_tables: PageTablesDoc | None
    frames: FramesDoc | None
    heap: HeapDoc | None
    address_spaces: AddressSpacesDoc | None
    accounting: AccountingDoc | None
    fault: FaultDoc | None
    descriptors: list[DescriptorTablesDoc]  # one per CPU whose IDTR the dump records
    part_errors: dict[str, str]  # a kernel part that could not be decoded -> why
    checks: list[CheckDoc]
