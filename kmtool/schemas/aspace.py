"""The kernel's list of live address spaces (C `struct km_aspace_list km_aspaces`;
docs/design.md §12), published in the core-info block as `aspaces_phys`.

`kmtool inspect` walks each listed PML4 besides the kernel's own. An address space is listed from
`aspace_create` until `aspace_destroy`; the list keeps creation order, and each entry carries the
address space's id (its creation number, from 1), which stays the same from run to run of the same
workload while the PML4's physical address need not, so two dumps can be compared by id.
"""

from construct import Array, Int64ul, Struct

#: Live address spaces the list can hold; aspace_create fails with KM_EFULL past it.
ASPACE_MAX = 128

AspaceList = Struct(
    "count" / Int64ul * "live address spaces listed in pml4[] and id[]",
    "created" / Int64ul * "address spaces created since boot (the last id handed out)",
    "pml4" / Array(ASPACE_MAX, Int64ul) * "physical address of each live PML4, in creation order",
    "id" / Array(ASPACE_MAX, Int64ul) * "id of each live address space (its creation number)",
)
