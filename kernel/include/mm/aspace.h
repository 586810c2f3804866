// Per-process address spaces (kernel/mm/aspace.c).
//
// An address space is a PML4 whose entries 510 and 511 are copies of the kernel's (so kernel space
// is shared: same PDPTs) and whose lower half (entries 0-255) is private. A new one gets a zeroed,
// writable user stack page just below KM_USER_STACK_TOP.
//
// Every live address space is listed in km_aspaces (struct km_aspace_list, declared in
// kmtool/schemas/aspace.py and published in the core-info block), so kmtool inspect can walk each
// one: listed by aspace_create, unlisted by aspace_destroy, in creation order.
#pragma once

#include <km/structs.h>
#include <stdint.h>

struct aspace {
    uint64_t pml4;   // physical address of its PML4, 0 when not created
    uint64_t id;     // its creation number (from 1), as listed in km_aspaces
};

extern struct km_aspace_list km_aspaces;

// Returns KM_OK, KM_ENOMEM or KM_EFULL (KM_ASPACE_MAX address spaces are live already); nothing
// is leaked on failure.
int aspace_create(struct aspace *as);

// Makes `as` the current address space (loads CR3).
void aspace_switch(const struct aspace *as);

// Returns every user frame, every user page table and the PML4 to the frame allocator. If `as` is
// current, switches to the kernel's PML4 first.
void aspace_destroy(struct aspace *as);
