// The kernel side of the heap's release hook (declared in include/mm/heap.h): pages of a free heap
// block after its header page are unmapped and their frames go back to the frame allocator, so the
// heap's footprint shrinks when memory is freed.
#include "mm/heap.h"
#include "mm/paging.h"

void heap_release_pages(struct km_heap *h, uint64_t start, uint64_t end)
{
    h->backed_pages -= paging_unmap_range(kernel_pml4, start, end, true);
}
