// The buddy heap; the contract is in include/mm/heap.h.
//
// Block addresses are virtual. A block of order k starting at offset o from the base has its buddy
// at offset o ^ (1 << k). The upper half split off a bigger block is an *untouched* free block: no
// header is written into it, only its address goes into h->untouched[k] (one per order is enough: a
// split happens only when every order between the wanted one and the split block's is empty, so the
// slots it fills are empty too). Such a block's memory is never read or written until it is handed
// out or split (it then gets its first header) or merged with its freed buddy (then it simply stops
// being a block). An untouched block's address has exactly k trailing zero bits in its offset (it is
// an upper half), so it is never the lower buddy, and an untouched block never contains a used one.
//
// Every other block starts with a header written when it came into being: a used block's, or a free
// listed block's, or -- when a region is split -- the header of the lowest sub-block, which is the
// one the split kept (the block handed out). So reading the header of a buddy that is not the
// untouched block of its order is always safe: it never faults in an untouched page and never sees
// stale data.
#include "mm/heap.h"

static struct km_heap_block *block(uint64_t va)
{
    return (struct km_heap_block *)(uintptr_t)va;
}

#if KM_DEBUG
// A free block about to leave its list: free magic, the order of the list it is on, and links that
// agree with its neighbours (which are free blocks, so their headers exist and reading them faults
// nothing in).
static int debug_not_block(const struct km_heap *h, uint64_t va, unsigned order)
{
    return va < h->base || va - h->base >= h->size || (va - h->base) % (1ull << order);
}

static void debug_check_free_block(const struct km_heap *h, const char *who, uint64_t va)
{
    const struct km_heap_block *b = block(va);
    if (b->magic != KM_HEAP_FREE_MAGIC)
        panic("%s: free block 0x%lx: bad magic 0x%x", who, va, b->magic);
    if (b->order < h->min_order || b->order > h->max_order || debug_not_block(h, va, b->order))
        panic("%s: free block 0x%lx: order %u out of range or misaligned", who, va, b->order);
    if ((b->prev && debug_not_block(h, b->prev, b->order)) ||
        (b->next && debug_not_block(h, b->next, b->order)))
        panic("%s: free block 0x%lx: prev 0x%lx or next 0x%lx is not a block of order %u", who,
              va, b->prev, b->next, b->order);
    if (b->prev ? block(b->prev)->next != va : h->free_heads[b->order] != va)
        panic("%s: free block 0x%lx: prev 0x%lx does not link back (head 0x%lx)", who, va,
              b->prev, h->free_heads[b->order]);
    if (b->next && block(b->next)->prev != va)
        panic("%s: free block 0x%lx: next 0x%lx has prev 0x%lx", who, va, b->next,
              block(b->next)->prev);
}

// An untouched block about to be handed out, split or merged: in range, aligned and an upper half
// of its order, and counted. Only its address is checked: its memory must not be read.
static void debug_check_untouched(const struct km_heap *h, const char *who, uint64_t va,
                                  unsigned order)
{
    if (debug_not_block(h, va, order) || !((va - h->base) & (1ull << order)))
        panic("%s: untouched block 0x%lx is not an upper half of order %u", who, va, order);
    if (h->free_blocks == 0)
        panic("%s: untouched block 0x%lx, but free_blocks is 0", who, va);
}
#else
#define debug_check_free_block(h, who, va) ((void)0)
#define debug_check_untouched(h, who, va, order) ((void)0)
#endif

static void list_push(struct km_heap *h, uint64_t va, unsigned order)
{
    struct km_heap_block *b = block(va);
    b->magic = KM_HEAP_FREE_MAGIC;
    b->order = (uint8_t)order;
    b->reserved0 = 0;
    b->reserved1 = 0;
    b->size = 0;
    b->prev = 0;
    b->next = h->free_heads[order];
    if (b->next)
        block(b->next)->prev = va;
    h->free_heads[order] = va;
    h->free_blocks++;
}

static void list_remove(struct km_heap *h, uint64_t va)
{
    debug_check_free_block(h, "heap", va);
    struct km_heap_block *b = block(va);
    if (b->prev)
        block(b->prev)->next = b->next;
    else
        h->free_heads[b->order] = b->next;
    if (b->next)
        block(b->next)->prev = b->prev;
    b->magic = 0;
    h->free_blocks--;
}

static unsigned log2_floor(uint64_t v)
{
    return 63u - (unsigned)__builtin_clzll(v);
}

void heap_init(struct km_heap *h, uint64_t base, uint64_t size)
{
    if (size == 0 || (size & (size - 1)) || (base & KM_PAGE_MASK))
        panic("heap_init: range 0x%lx + 0x%lx is not a page-aligned power of two", base, size);
    if (log2_floor(size) > KM_HEAP_UNTOUCHED_ORDERS)
        panic("heap_init: a heap of 0x%lx bytes does not fit the untouched slots", size);
    memset(h, 0, sizeof(*h));
    h->base = base;
    h->size = size;
    h->min_order = HEAP_MIN_ORDER;
    h->max_order = log2_floor(size);
    list_push(h, base, h->max_order);
}

int heap_order_for(const struct km_heap *h, size_t size)
{
    if (size == 0 || size > h->size - HEAP_HEADER_SIZE)
        return -1;
    uint64_t need = (uint64_t)size + HEAP_HEADER_SIZE;
    unsigned order = log2_floor(need);
    if ((1ull << order) < need)
        order++;
    if (order < h->min_order)
        order = h->min_order;
    return order <= h->max_order ? (int)order : -1;
}

void *heap_alloc(struct km_heap *h, size_t size)
{
    int want = heap_order_for(h, size);
    if (want < 0)
        return NULL;
    unsigned order = (unsigned)want;
    while (order <= h->max_order && !h->free_heads[order] &&
           !(order < h->max_order && h->untouched[order]))
        order++;
    if (order > h->max_order)
        return NULL;
    uint64_t va = h->free_heads[order];
    if (va) {
        // A listed block first: its header page is backed already.
        list_remove(h, va);
    } else {
        va = h->untouched[order];
        debug_check_untouched(h, "heap_alloc", va, order);
        h->untouched[order] = 0;
        h->free_blocks--;
    }
    // Split down to the wanted order; each upper half becomes an untouched free block: its address
    // is recorded, nothing is written into it (the slots are empty: no order below had a block).
    while (order > (unsigned)want) {
        order--;
#if KM_DEBUG
        if (h->free_heads[order] || h->untouched[order])
            panic("heap_alloc: splitting to order %u, which still has a free block", order);
#endif
        h->untouched[order] = va + (1ull << order);
        h->free_blocks++;
    }
    struct km_heap_block *b = block(va);
    b->magic = KM_HEAP_USED_MAGIC;
    b->order = (uint8_t)order;
    b->reserved0 = 0;
    b->reserved1 = 0;
    b->size = size;
    b->next = 0;
    b->prev = 0;
    h->bytes_in_use += size;
    h->blocks_in_use++;
    return (void *)(uintptr_t)(va + HEAP_HEADER_SIZE);
}

void heap_free(struct km_heap *h, void *ptr, size_t size)
{
    uint64_t va = (uint64_t)(uintptr_t)ptr - HEAP_HEADER_SIZE;
    uint64_t min_block = 1ull << h->min_order;
    if ((uint64_t)(uintptr_t)ptr < h->base + HEAP_HEADER_SIZE || va - h->base >= h->size ||
        (va - h->base) % min_block)
        panic("heap_free: %p is not a heap block", ptr);
    for (unsigned k = h->min_order; k < h->max_order; k++)
        if (h->untouched[k] && va - h->untouched[k] < (1ull << k))
            panic("heap_free: %p is inside the untouched free block 0x%lx (order %u)", ptr,
                  h->untouched[k], k);
    struct km_heap_block *b = block(va);
    if (b->magic == KM_HEAP_FREE_MAGIC)
        panic("heap_free: double free of %p (block 0x%lx, order %u)", ptr, va, b->order);
    if (b->magic != KM_HEAP_USED_MAGIC || b->order < h->min_order || b->order > h->max_order ||
        (va - h->base) % (1ull << b->order))
        panic("heap_free: %p is not an allocated block (magic 0x%x, order %u)", ptr, b->magic,
              b->order);
    if (size && b->size != size)
        panic("heap_free: %p was allocated with %lu bytes, freed with %lu", ptr, b->size,
              (uint64_t)size);
#if KM_DEBUG
    if (h->blocks_in_use == 0 || h->bytes_in_use < b->size)
        panic("heap_free: block 0x%lx of %lu bytes, but the counters say %lu blocks, %lu bytes "
              "in use", va, b->size, h->blocks_in_use, h->bytes_in_use);
#endif
    h->bytes_in_use -= b->size;
    h->blocks_in_use--;
    unsigned order = b->order;
    b->magic = 0;
    while (order < h->max_order) {
        uint64_t buddy = h->base + ((va - h->base) ^ (1ull << order));
        if (h->untouched[order] == buddy) {
            // Free and never written: merge without reading it. It is the upper half, so the
            // merged block starts at va, whose header page the caller's block already backs.
            debug_check_untouched(h, "heap_free", buddy, order);
            h->untouched[order] = 0;
            h->free_blocks--;
            order++;
            continue;
        }
        struct km_heap_block *bb = block(buddy);
        if (bb->magic != KM_HEAP_FREE_MAGIC || bb->order != order)
            break;
        list_remove(h, buddy);
        if (buddy < va)
            va = buddy;
        order++;
    }
    list_push(h, va, order);
    if ((1ull << order) > KM_PAGE_SIZE)
        heap_release_pages(h, va + KM_PAGE_SIZE, va + (1ull << order));
}

#ifdef KM_HOST
#include <stdio.h>
#define VALIDATE_FAIL(...) (snprintf(why, n, __VA_ARGS__), -1)
#else
#include "lib/printf.h"
#define VALIDATE_FAIL(...) (ksnprintf(why, n, __VA_ARGS__), -1)
#endif

int heap_validate(const struct km_heap *h, char *why, size_t n)
{
    uint64_t total = 0;
    for (unsigned order = 0; order < KM_HEAP_MAX_ORDERS; order++) {
        uint64_t prev = 0;
        for (uint64_t va = h->free_heads[order]; va; va = block(va)->next) {
            const struct km_heap_block *b = block(va);
            if (++total > h->free_blocks)
                return VALIDATE_FAIL("free lists hold more than free_blocks=%lu",
                                     (unsigned long)h->free_blocks);
            if (order < h->min_order || order > h->max_order)
                return VALIDATE_FAIL("free block on list of order %u", order);
            if (va < h->base || va - h->base >= h->size || (va - h->base) % (1ull << order))
                return VALIDATE_FAIL("free block 0x%lx misaligned for order %u",
                                     (unsigned long)va, order);
            if (b->magic != KM_HEAP_FREE_MAGIC || b->order != order)
                return VALIDATE_FAIL("free block 0x%lx: magic 0x%x order %u on list %u",
                                     (unsigned long)va, b->magic, b->order, order);
            if (b->prev != prev)
                return VALIDATE_FAIL("free block 0x%lx: prev 0x%lx, expected 0x%lx",
                                     (unsigned long)va, (unsigned long)b->prev,
                                     (unsigned long)prev);
            prev = va;
        }
    }
    uint64_t untouched = 0;
    for (unsigned order = 0; order < KM_HEAP_UNTOUCHED_ORDERS; order++) {
        uint64_t va = h->untouched[order];
        if (!va)
            continue;
        untouched++;
        if (order < h->min_order || order >= h->max_order)
            return VALIDATE_FAIL("untouched block 0x%lx of order %u", (unsigned long)va, order);
        if (va < h->base || va - h->base >= h->size || (va - h->base) % (1ull << order) ||
            !((va - h->base) & (1ull << order)))
            return VALIDATE_FAIL("untouched block 0x%lx is not an upper half of order %u",
                                 (unsigned long)va, order);
        for (uint64_t l = h->free_heads[order]; l; l = block(l)->next)
            if (l == va || l == h->base + ((va - h->base) ^ (1ull << order)))
                return VALIDATE_FAIL("untouched block 0x%lx: it or its buddy is listed too",
                                     (unsigned long)va);
    }
    if (total + untouched != h->free_blocks)
        return VALIDATE_FAIL("free lists hold %lu blocks and %lu are untouched, counter says %lu",
                             (unsigned long)total, (unsigned long)untouched,
                             (unsigned long)h->free_blocks);
    return 0;
}
