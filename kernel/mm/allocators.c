// The page and heap implementations of the allocator interface (include/lib/allocator.h).
#include "lib/allocator.h"

#include "mm/paging.h"

static void *page_allocate(void *ctx, size_t size)
{
    struct km_frame_allocator *fa = ctx;
    uint64_t pages = align_up(size, KM_PAGE_SIZE) / KM_PAGE_SIZE, phys;
    if (size == 0 || frames_alloc_contig(fa, pages, &phys) != KM_OK)
        return NULL;
    void *p = phys_to_virt(phys);
    memset(p, 0, pages * KM_PAGE_SIZE);
    return p;
}

static void page_free(void *ctx, void *ptr, size_t size)
{
    struct km_frame_allocator *fa = ctx;
    uint64_t va = (uint64_t)(uintptr_t)ptr;
    if (va < KM_OFFSET_MAP_BASE || (va & KM_PAGE_MASK))
        panic("page_allocator: %p is not a page of the offset map", ptr);
    frames_free(fa, va - KM_OFFSET_MAP_BASE, align_up(size, KM_PAGE_SIZE) / KM_PAGE_SIZE);
}

static void *heap_allocate(void *ctx, size_t size)
{
    return heap_alloc(ctx, size);
}

static void heap_deallocate(void *ctx, void *ptr, size_t size)
{
    heap_free(ctx, ptr, size);
}

const struct allocator page_allocator = {"pages", page_allocate, page_free, &km_frames};
const struct allocator heap_allocator = {"heap", heap_allocate, heap_deallocate, &km_heap};
