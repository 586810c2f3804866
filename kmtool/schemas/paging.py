"""Page-manager statistics the kernel keeps for the ready report and for `kmtool inspect`."""

from construct import Int64ul, Struct

PageStats = Struct(
    "page_faults" / Int64ul * "page faults taken since boot (all causes)",
    "demand_maps" / Int64ul * "faults resolved by mapping a fresh frame",
    "tables_allocated" / Int64ul * "page-table pages taken from the frame allocator",
    "tables_freed" / Int64ul * "page-table pages returned to the frame allocator",
    "address_spaces" / Int64ul * "live per-process address spaces",
)
