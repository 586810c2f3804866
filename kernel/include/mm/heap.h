// The kernel heap: a buddy allocator over one fixed virtual range (kernel/mm/heap.c).
//
// The range (KM_HEAP_BASE, KM_HEAP_SIZE = 32 GiB in the kernel; an mmap'd arena in host tests) is
// split into power-of-two blocks. A struct km_heap_block header is written only when the allocator
// must: into a block it hands out, and into a block freed (or merged) onto a free list. The upper
// halves split off a bigger block get no header: each is an *untouched* free block whose address
// alone is kept, at most one per order, in km_heap.untouched; it is handed out (or split again)
// before anything is written into it, and merged with its freed buddy without being read. So pages
// nobody asked for are never touched; in the kernel they stay unbacked until the page-fault handler
// maps them on first use. Listed free blocks of each order form a doubly linked list headed in
// km_heap.free_heads; free_blocks counts listed and untouched blocks. Freeing merges a block with its
// free buddy as far as it goes, then tells the environment (heap_release_pages) that the block's
// pages after its first are unused.
//
// Failure behaviour: heap_alloc() returns NULL when the request cannot be met (too big, or no block
// is free); heap_free() panics on a pointer it never handed out, a double free, or a size mismatch.
#pragma once

#include <km/structs.h>

#include "mm/env.h"

#define HEAP_MIN_ORDER 6   // 64-byte blocks: a 32-byte header and 32 bytes of payload
#define HEAP_HEADER_SIZE sizeof(struct km_heap_block)

// Sets up an empty heap over [base, base + size): size a power of two of at most
// 2^KM_HEAP_UNTOUCHED_ORDERS bytes, base aligned to a page.
// Writes the one header of the whole-range free block (touching the first page only).
void heap_init(struct km_heap *h, uint64_t base, uint64_t size);

// Returns `size` bytes (aligned to 32), or NULL when size is 0, too big, or no block is free.
void *heap_alloc(struct km_heap *h, size_t size);

// Frees a block from heap_alloc(). `size` must be what was asked for, or 0 to skip that check.
void heap_free(struct km_heap *h, void *ptr, size_t size);

// The order of the block heap_alloc(size) would use, or -1 if none fits the heap.
int heap_order_for(const struct km_heap *h, size_t size);

// Provided by the environment: the pages [start, end) of the heap hold nothing any more (the caller
// keeps the block header in the page before `start`). The kernel unmaps them and returns the frames
// (decrementing h->backed_pages); the host test shim drops them with madvise.
void heap_release_pages(struct km_heap *h, uint64_t start, uint64_t end);

// Checks the free lists (magic, order, alignment, links, counts) and the untouched blocks (aligned
// upper halves, not listed; their memory is not read) against the counters. Returns 0 or
// writes a reason into `why` and returns -1. Walks every free block; for tests.
int heap_validate(const struct km_heap *h, char *why, size_t n);
