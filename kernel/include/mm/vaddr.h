// The address manager: which kernel virtual ranges have been handed out (kernel/mm/vaddr.c).
//
// It manages one window of kernel virtual space, [base, end): in the kernel that is the
// kernel-vspace region plus the heap after it. Ranges are page aligned and kept in a fixed, sorted
// table (no allocation, so it works before anything else does). reserve() hands out the lowest gap
// that fits (first fit); mark() records a fixed range (the heap); lookup() answers the page-fault
// handler's question "was this address handed out?" in O(log ranges).
//
// Failure behaviour: reserve() returns KM_ENOMEM when no gap fits and KM_EFULL when the table is full;
// mark() returns KM_EINVAL for a range outside the window or overlapping another; release() of an
// address that does not start a handed-out range panics.
#pragma once

#include "mm/env.h"

#define VADDR_MAX_RANGES 256

struct vaddr_range {
    uint64_t start;
    uint64_t size;    // bytes, a multiple of the page size
    uint32_t tag;     // caller's label (VADDR_TAG_*), reported by lookups
    uint32_t reserved;
};

enum { VADDR_TAG_NONE = 0, VADDR_TAG_HEAP = 1, VADDR_TAG_KVM = 2, VADDR_TAG_TEST = 3 };

struct vaddr_manager {
    uint64_t base, end;          // the managed window
    uint64_t count;              // ranges in use
    uint64_t bytes;              // bytes handed out (sum of sizes)
    struct vaddr_range ranges[VADDR_MAX_RANGES];   // sorted by start, non-overlapping
};

void vaddr_init(struct vaddr_manager *vm, uint64_t base, uint64_t end);

// Hands out `size` bytes (rounded up to pages) aligned to `align` (a power of two, at least a page).
int vaddr_reserve(struct vaddr_manager *vm, uint64_t size, uint64_t align, uint32_t tag,
                  uint64_t *start);

// Records [start, start + size) as handed out.
int vaddr_mark(struct vaddr_manager *vm, uint64_t start, uint64_t size, uint32_t tag);

// Forgets the range starting at `start`; returns its size. Panics if no range starts there.
uint64_t vaddr_release(struct vaddr_manager *vm, uint64_t start);

// The range containing `addr`, or NULL.
const struct vaddr_range *vaddr_lookup(const struct vaddr_manager *vm, uint64_t addr);
