// The address manager; the contract is in include/mm/vaddr.h.
#include "mm/vaddr.h"

void vaddr_init(struct vaddr_manager *vm, uint64_t base, uint64_t end)
{
    memset(vm, 0, sizeof(*vm));
    vm->base = align_up(base, KM_PAGE_SIZE);
    vm->end = align_down(end, KM_PAGE_SIZE);
}

// Index of the first range whose start is > addr (binary search).
static uint64_t upper_bound(const struct vaddr_manager *vm, uint64_t addr)
{
    uint64_t lo = 0, hi = vm->count;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (vm->ranges[mid].start <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void insert_at(struct vaddr_manager *vm, uint64_t i, uint64_t start, uint64_t size,
                      uint32_t tag)
{
    memmove(&vm->ranges[i + 1], &vm->ranges[i], (vm->count - i) * sizeof(vm->ranges[0]));
    vm->ranges[i] = (struct vaddr_range){.start = start, .size = size, .tag = tag};
    vm->count++;
    vm->bytes += size;
}

int vaddr_reserve(struct vaddr_manager *vm, uint64_t size, uint64_t align, uint32_t tag,
                  uint64_t *start)
{
    if (align < KM_PAGE_SIZE)
        align = KM_PAGE_SIZE;
    if (size == 0 || (align & (align - 1)) || size > vm->end - vm->base)
        return KM_EINVAL;
    size = align_up(size, KM_PAGE_SIZE);
    if (vm->count == VADDR_MAX_RANGES)
        return KM_EFULL;
    uint64_t gap_start = vm->base;
    for (uint64_t i = 0; i <= vm->count; i++) {
        uint64_t gap_end = i < vm->count ? vm->ranges[i].start : vm->end;
        uint64_t candidate = align_up(gap_start, align);
        if (candidate >= gap_start && candidate < gap_end && gap_end - candidate >= size) {
            insert_at(vm, i, candidate, size, tag);
            *start = candidate;
            return KM_OK;
        }
        if (i < vm->count)
            gap_start = vm->ranges[i].start + vm->ranges[i].size;
    }
    return KM_ENOMEM;
}

int vaddr_mark(struct vaddr_manager *vm, uint64_t start, uint64_t size, uint32_t tag)
{
    if (size == 0 || (start & KM_PAGE_MASK) || (size & KM_PAGE_MASK) || start < vm->base ||
        start > vm->end || size > vm->end - start)
        return KM_EINVAL;
    if (vm->count == VADDR_MAX_RANGES)
        return KM_EFULL;
    uint64_t i = upper_bound(vm, start);
    if (i > 0 && vm->ranges[i - 1].start + vm->ranges[i - 1].size > start)
        return KM_EINVAL;
    if (i < vm->count && vm->ranges[i].start < start + size)
        return KM_EINVAL;
    insert_at(vm, i, start, size, tag);
    return KM_OK;
}

uint64_t vaddr_release(struct vaddr_manager *vm, uint64_t start)
{
    uint64_t i = upper_bound(vm, start);
    if (i == 0 || vm->ranges[i - 1].start != start)
        panic("vaddr_release: 0x%lx does not start a handed-out range", start);
    i--;
    uint64_t size = vm->ranges[i].size;
    memmove(&vm->ranges[i], &vm->ranges[i + 1], (vm->count - i - 1) * sizeof(vm->ranges[0]));
    vm->count--;
    vm->bytes -= size;
    return size;
}

const struct vaddr_range *vaddr_lookup(const struct vaddr_manager *vm, uint64_t addr)
{
    uint64_t i = upper_bound(vm, addr);
    if (i == 0)
        return NULL;
    const struct vaddr_range *r = &vm->ranges[i - 1];
    return addr - r->start < r->size ? r : NULL;
}
