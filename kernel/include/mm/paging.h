// The page manager: page tables, mappings, TLB invalidation and the page-fault handler
// (kernel/mm/paging.c).
//
// Page tables are never tracked by virtual address: an entry's physical address plus
// KM_OFFSET_MAP_BASE is the next table. Tables come from the frame allocator and are counted in
// km_page_stats. Kernel space (PML4 510 and 511) is shared: every address space copies those two
// PML4 entries, so a mapping made below them through any PML4 is seen by all.
#pragma once

#include <km/structs.h>
#include <stdbool.h>

#include "arch/trap.h"
#include "mm/env.h"
#include "mm/frame.h"
#include "mm/heap.h"
#include "mm/vaddr.h"

// Page-table entry bits: KM_PTE_* and KM_PTE_ADDR in <km/structs.h>, generated from
// kmtool/schemas/paging.py.

// KM_PTE_NX when the CPU supports no-execute (EFER.NXE is then on), else 0: on a CPU without NX,
// bit 63 is reserved and setting it would fault. Set by paging_cpu_init().
extern uint64_t paging_nx;

// Checks CPU paging features: turns on EFER.NXE when NX exists and CR0.WP so that read-only kernel
// pages are read-only for the kernel too. Call before building any tables.
void paging_cpu_init(void);

// The kernel's memory-manager state (symbols read by kmtool inspect through km_core_info).
extern struct km_frame_allocator km_frames;
extern struct km_heap km_heap;
extern struct km_page_stats km_page_stats;
extern struct vaddr_manager km_vaddr;
extern uint64_t kernel_pml4;   // physical address of the kernel's PML4, 0 until built

static inline uint64_t *table_at(uint64_t phys)
{
    return (uint64_t *)phys_to_virt(phys);
}

// A zeroed frame for a page table, from the frame allocator; 0 when no frame is free.
uint64_t paging_table_alloc(void);

// Maps the 4 KiB page at `va` to `phys` with `flags` (KM_PTE_PRESENT is implied) in the tables
// under `pml4`, creating tables as needed (intermediate entries get P|W, plus U when `flags` has
// U). Replacing a present mapping invalidates its TLB entry. Returns KM_OK, KM_ENOMEM (no frame
// for a table) or KM_EINVAL (a large page is in the way).
int paging_map(uint64_t pml4, uint64_t va, uint64_t phys, uint64_t flags);

// Removes the mapping of the page at `va` and invalidates it; returns the physical address it had,
// or 0 when nothing was mapped there.
uint64_t paging_unmap(uint64_t pml4, uint64_t va);

// Unmaps every 4 KiB page in [start, end) (page aligned), skipping absent tables a whole level at a
// time; returns the frames to the frame allocator when `free_frames`. Returns the number of pages
// unmapped.
uint64_t paging_unmap_range(uint64_t pml4, uint64_t start, uint64_t end, bool free_frames);

// The physical address `va` translates to under `pml4` (large pages included); false if unmapped.
bool paging_translate(uint64_t pml4, uint64_t va, uint64_t *phys, uint64_t *flags);

// The page-fault handler: backs a not-present fault inside a range the address manager handed out
// with a fresh zeroed frame and returns true; returns false for every other fault (the caller
// panics with the fault report).
bool paging_handle_fault(struct trap_frame *f);

// Kernel virtual memory from the address manager, backed on first touch. NULL when out of space.
void *kvm_reserve(uint64_t bytes);
// Unmaps, frees the backing frames, and forgets the range; `p` must come from kvm_reserve().
void kvm_release(void *p);
