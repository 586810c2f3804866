// Memory bootstrap (kernel/mm/bootstrap.c): from the loader's handoff to a running memory manager.
//
// In order (docs/design.md §4.1):
//   1. take the scratch pages the loader left unused as the first page-table pages;
//   2. build the offset map (1 GiB pages, or 2 MiB pages without CPUID pdpe1gb) and install it as
//      PML4 entry 511 of the loader's live table;
//   3. give every EfiConventionalMemory range to the frame allocator (with 2 MiB pages, memory above
//      4 GiB after the rest of the offset map is built from frames below it);
//   4. set up the address manager over kernel virtual space and mark the heap as handed out;
//   5. build the kernel's own PML4 (entries 510: the image, 511: the offset map) and switch CR3;
//   6. only then return firmware page-table memory (boot-services and loader ranges) and the
//      scratch pages to the frame allocator -- nothing of them is live any more;
//   7. start the heap (its first header faults its first page in through the page-fault handler).
// The kernel image and the handoff data (boot info + memory map) are never freed.
// Every step is O(memory-map entries) or O(spans); nothing walks frames one by one.
#pragma once

#include <stdint.h>

#include "mm/memmap.h"

struct offset_map_info {
    uint64_t page_size;    // KM 1 GiB or 2 MiB
    uint64_t size;         // bytes of physical address space mapped (from 0)
    uint64_t pdpt;         // physical address of the offset map's PDPT (PML4 entry 511)
    uint64_t phys_bits;    // CPUID MAXPHYADDR
};
extern struct offset_map_info offset_map;

struct bootstrap_stats {
    uint64_t scratch_used;        // scratch pages the kernel kept for its own tables
    uint64_t scratch_returned;    // scratch pages given to the frame allocator
    uint64_t firmware_frames;     // frames of boot-services/loader ranges given back after the switch
    uint64_t conventional_frames; // frames of EfiConventionalMemory
    uint64_t ignored_frames;      // free frames above the offset map that cannot be managed
    // TSC cycles per step: offset map, free RAM to the frame allocator, kernel PML4 + CR3 switch,
    // firmware memory and scratch pages returned, heap start.
    uint64_t step_cycles[5];
};
extern struct bootstrap_stats bootstrap_stats;

void mm_bootstrap(const struct memmap *map);

// Physical address of a kernel-image virtual address (through the loader's placement).
uint64_t kernel_virt_to_phys(const void *p);
