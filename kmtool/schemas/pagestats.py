"""The page manager's statistics (struct km_page_stats), which the kernel keeps for the ready report
and `kmtool inspect` reads through the core-info block's `page_state_phys`."""

from construct import Int64ul, Struct

PageStats = Struct(
    "page_faults" / Int64ul * "page faults taken since boot (all causes)",
    "demand_maps" / Int64ul * "faults resolved by mapping a fresh frame",
    "tables_allocated" / Int64ul * "page-table pages taken from the frame allocator",
    "tables_freed" / Int64ul * "page-table pages returned to the frame allocator",
    "address_spaces" / Int64ul * "live per-process address spaces",
)
