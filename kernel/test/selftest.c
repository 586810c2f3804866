// In-kernel self tests; see include/test/selftest.h. Each test leaves the memory manager as it
// found it and checks that it did (free frames, spans, span hash, heap counters).
#include "test/selftest.h"

#include "test/check.h"

#include "arch/cpu.h"
#include "lib/allocator.h"
#include "lib/printf.h"
#include "mm/aspace.h"
#include "mm/bootstrap.h"
#include "mm/paging.h"

static uint64_t first_span_start(void)
{
    return frames_first(&km_frames)->start;
}

static uint64_t first_span_count(void)
{
    return frames_first(&km_frames)->count;
}

/* ---- frame allocator ---- */

static void test_frames_alloc_free(struct test *t)
{
    struct frame_snapshot before = snapshot();
    uint64_t top = first_span_start() + (first_span_count() - 1) * KM_PAGE_SIZE, phys, got;
    CHECK(t, frames_alloc(&km_frames, 1, &phys, &got) == KM_OK, "allocation failed");
    CHECK(t, got == 1 && phys == top, "got %lu frame(s) at 0x%lx, expected 1 at 0x%lx", got, phys,
          top);
    CHECK(t, km_frames.free_frames == before.free_frames - 1, "free count did not drop");
    frames_free(&km_frames, phys, 1);
    CHECK_FRAMES_UNCHANGED(t, before);
}

static void test_frames_coalesce(struct test *t)
{
    // Make sure the first span has room for three frames plus one left over.
    CHECK(t, first_span_count() >= 4, "first span too small (%lu frames)", first_span_count());
    struct frame_snapshot before = snapshot();
    uint64_t a, b, c, got;
    frames_alloc(&km_frames, 1, &a, &got);
    frames_alloc(&km_frames, 1, &b, &got);
    frames_alloc(&km_frames, 1, &c, &got);
    CHECK(t, b == a - KM_PAGE_SIZE && c == b - KM_PAGE_SIZE, "pops not stack-like: %lx %lx %lx", a,
          b, c);
    frames_free(&km_frames, b, 1);   // isolated: a new span (once the stack is folded)
    frames_fold(&km_frames);
    CHECK(t, km_frames.spans == before.spans + 1, "middle free made %lu spans, expected %lu",
          km_frames.spans, before.spans + 1);
    frames_free(&km_frames, a, 1);   // joins b's span from above
    frames_fold(&km_frames);
    CHECK(t, km_frames.spans == before.spans + 1, "free above did not coalesce");
    frames_free(&km_frames, c, 1);   // bridges the first span and b..a
    frames_fold(&km_frames);
    CHECK(t, km_frames.spans == before.spans, "bridging free did not coalesce both sides");
    CHECK_FRAMES_UNCHANGED(t, before);
}

// A request no run can meet gets the largest span, whole (the first of them when several tie).
static void test_frames_partial(struct test *t)
{
    struct frame_snapshot before = snapshot();
    const struct km_frame_span *big = frames_first(&km_frames);
    for (const struct km_frame_span *s = big; s; s = frames_next(s))
        big = s->count > big->count ? s : big;
    uint64_t start = big->start, count = big->count, phys, got;
    CHECK(t, frames_alloc(&km_frames, count + 5, &phys, &got) == KM_OK, "allocation failed");
    CHECK(t, got == count && phys == start, "asked %lu: got %lu at 0x%lx, expected %lu at 0x%lx",
          count + 5, got, phys, count, start);
    CHECK(t, km_frames.spans == before.spans - 1, "whole largest span not removed");
    frames_free(&km_frames, phys, got);
    CHECK_FRAMES_UNCHANGED(t, before);
}

static void test_frames_contig(struct test *t)
{
    struct frame_snapshot before = snapshot();
    uint64_t phys;
    CHECK(t, frames_alloc_contig(&km_frames, 300, &phys) == KM_OK, "no 300-frame span");
    CHECK(t, km_frames.free_frames == before.free_frames - 300, "count off");
    CHECK(t, frames_alloc_contig(&km_frames, km_frames.managed_frames + 1, &phys) == KM_ENOMEM,
          "impossible request did not report KM_ENOMEM");
    CHECK(t, frames_alloc(&km_frames, 0, &phys, &phys) == KM_EINVAL, "zero-frame request accepted");
    frames_free(&km_frames, phys, 300);
    CHECK_FRAMES_UNCHANGED(t, before);
}

// Takes every free frame (whole spans), checks exhaustion is reported, then gives them all back.
static void test_frames_exhaustion(struct test *t)
{
    struct frame_snapshot before = snapshot();
    uint64_t chain = 0, chunks = 0, taken = 0, phys, got;
    while (frames_alloc(&km_frames, ~0ull, &phys, &got) == KM_OK) {
        uint64_t *link = phys_to_virt(phys);   // remember the chunk inside itself
        link[0] = chain;
        link[1] = got;
        chain = phys;
        chunks++;
        taken += got;
    }
    int status = frames_alloc(&km_frames, 1, &phys, &got);
    void *page = allocate(&page_allocator, KM_PAGE_SIZE);
    uint64_t free_when_empty = km_frames.free_frames, spans_when_empty = km_frames.spans;
    while (chain) {
        uint64_t *link = phys_to_virt(chain);
        uint64_t next = link[0], count = link[1];
        frames_free(&km_frames, chain, count);
        chain = next;
    }
    CHECK(t, status == KM_ENOMEM, "empty allocator returned status %d", status);
    CHECK(t, page == NULL, "page allocator returned %p with no free frame", page);
    CHECK(t, free_when_empty == 0 && spans_when_empty == 0, "not empty: %lu frames, %lu spans",
          free_when_empty, spans_when_empty);
    CHECK(t, taken == before.free_frames && chunks == before.spans,
          "took %lu frames in %lu chunks, expected %lu in %lu", taken, chunks, before.free_frames,
          before.spans);
    CHECK_FRAMES_UNCHANGED(t, before);
}

/* ---- allocator interface ---- */

static void test_allocator_interface(struct test *t)
{
    struct frame_snapshot before = snapshot();
    uint8_t *p = allocate(&page_allocator, 3 * KM_PAGE_SIZE);
    CHECK(t, p != NULL, "page allocator failed");
    uint64_t phys0, phys2, flags;
    paging_translate(kernel_pml4, (uint64_t)(uintptr_t)p, &phys0, &flags);
    paging_translate(kernel_pml4, (uint64_t)(uintptr_t)p + 2 * KM_PAGE_SIZE, &phys2, &flags);
    CHECK(t, phys2 == phys0 + 2 * KM_PAGE_SIZE, "pages not contiguous");
    for (uint64_t i = 0; i < 3 * KM_PAGE_SIZE; i++)
        CHECK(t, p[i] == 0, "page memory not zeroed at +%lu", i);
    deallocate(&page_allocator, p, 3 * KM_PAGE_SIZE);
    CHECK_FRAMES_UNCHANGED(t, before);

    uint64_t in_use = km_heap.bytes_in_use;
    char *s = allocate(&heap_allocator, 100);
    CHECK(t, s != NULL, "heap allocator failed");
    CHECK(t, km_heap.bytes_in_use == in_use + 100, "heap bytes_in_use not counted");
    for (int i = 0; i < 100; i++)
        s[i] = (char)i;
    deallocate(&heap_allocator, s, 100);
    CHECK(t, km_heap.bytes_in_use == in_use, "heap bytes_in_use not restored");
}

/* ---- heap ---- */

static const uint64_t heap_sizes[] = {
    1,    2,    3,    7,    8,     15,    16,     31,           32,          33,
    63,   64,   100,  255,  256,   1000,  4095,   4096,         4097,        8192,
    12345, 65536, 100000, (1 << 20) - 1, 1 << 20, 3 << 20, (4 << 20) - 1, 4 << 20,
};
#define HEAP_SIZES (sizeof(heap_sizes) / sizeof(heap_sizes[0]))

static void test_heap_sizes(struct test *t)
{
    uint64_t bytes0 = km_heap.bytes_in_use, blocks0 = km_heap.blocks_in_use;
    uint64_t free0 = km_heap.free_blocks;
    uint8_t *ptrs[HEAP_SIZES];
    uint64_t total = 0;
    for (unsigned i = 0; i < HEAP_SIZES; i++) {
        ptrs[i] = heap_alloc(&km_heap, heap_sizes[i]);
        CHECK(t, ptrs[i] != NULL, "allocation of %lu bytes failed", heap_sizes[i]);
        CHECK(t, ((uintptr_t)ptrs[i] & 15) == 0, "%lu-byte block %p not 16-byte aligned",
              heap_sizes[i], (void *)ptrs[i]);
        memset(ptrs[i], (int)(0x11 * (i + 1)), heap_sizes[i]);
        total += heap_sizes[i];
    }
    CHECK(t, km_heap.bytes_in_use == bytes0 + total, "bytes_in_use %lu, expected %lu",
          km_heap.bytes_in_use, bytes0 + total);
    for (unsigned i = 0; i < HEAP_SIZES; i++) {
        uint8_t want = (uint8_t)(0x11 * (i + 1));
        for (uint64_t k = 0; k < heap_sizes[i]; k++)
            CHECK(t, ptrs[i][k] == want, "%lu-byte block %p overwritten at +%lu", heap_sizes[i],
                  (void *)ptrs[i], k);
    }
    // Free in an interleaved order so merges happen in both directions.
    for (unsigned i = 0; i < HEAP_SIZES; i += 2)
        heap_free(&km_heap, ptrs[i], heap_sizes[i]);
    for (unsigned i = 1; i < HEAP_SIZES; i += 2)
        heap_free(&km_heap, ptrs[i], heap_sizes[i]);
    CHECK(t, km_heap.bytes_in_use == bytes0 && km_heap.blocks_in_use == blocks0,
          "counters not restored: %lu bytes in %lu blocks", km_heap.bytes_in_use,
          km_heap.blocks_in_use);
    CHECK(t, km_heap.free_blocks == free0, "free blocks %lu, expected %lu (not coalesced)",
          km_heap.free_blocks, free0);
    char why[128];
    CHECK(t, heap_validate(&km_heap, why, sizeof(why)) == 0, "invalid heap: %s", why);
}

static void test_heap_coalesce(struct test *t)
{
    enum { N = 64 };
    uint64_t free0 = km_heap.free_blocks;
    void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = heap_alloc(&km_heap, 40);
        CHECK(t, p[i] != NULL, "small allocation %d failed", i);
    }
    for (int i = 0; i < N; i++)   // a scattered order: 0, 37, 10, 47, ...
        heap_free(&km_heap, p[(i * 37) % N], 40);
    CHECK(t, km_heap.free_blocks == free0, "free blocks %lu, expected %lu", km_heap.free_blocks,
          free0);
    // With nothing else allocated, the whole range must have merged back into one block.
    if (km_heap.blocks_in_use == 0) {
        void *all = heap_alloc(&km_heap, km_heap.size - HEAP_HEADER_SIZE);
        CHECK(t, all != NULL, "whole-heap allocation failed: blocks did not merge");
        CHECK(t, heap_alloc(&km_heap, 1) == NULL, "allocation from a full heap succeeded");
        heap_free(&km_heap, all, km_heap.size - HEAP_HEADER_SIZE);
    }
    CHECK(t, heap_alloc(&km_heap, km_heap.size) == NULL, "oversized allocation succeeded");
    char why[128];
    CHECK(t, heap_validate(&km_heap, why, sizeof(why)) == 0, "invalid heap: %s", why);
}

static void test_heap_lazy(struct test *t)
{
    uint64_t backed0 = km_heap.backed_pages, faults0 = km_page_stats.page_faults;
    const uint64_t gib = 1ull << 30;
    volatile uint8_t *p = heap_alloc(&km_heap, gib);
    CHECK(t, p != NULL, "1 GiB heap allocation failed");
    uint64_t backed1 = km_heap.backed_pages;
    p[KM_PAGE_SIZE] = 1;          // three pages, none of them the header page
    p[gib / 2] = 2;
    p[gib - 1] = 3;
    fault_barrier();
    uint64_t backed2 = km_heap.backed_pages;
    CHECK(t, p[KM_PAGE_SIZE] == 1 && p[gib / 2] == 2 && p[gib - 1] == 3, "data lost");
    CHECK(t, backed2 - backed1 == 3, "touching 3 pages backed %lu pages", backed2 - backed1);
    // The split-off halves get no header, so reserving backs at most the block's header page.
    CHECK(t, backed1 - backed0 <= 1, "reserving 1 GiB backed %lu pages", backed1 - backed0);
    CHECK(t, backed2 - backed0 <= 3 + 1, "reserving 1 GiB and touching 3 pages backed %lu pages",
          backed2 - backed0);
    CHECK(t, km_page_stats.page_faults - faults0 >= 3, "page faults did not count");
    heap_free(&km_heap, (void *)p, gib);
    CHECK(t, km_heap.backed_pages <= backed1, "freeing did not release pages (%lu backed)",
          km_heap.backed_pages);
    kprintf("  heap_lazy: 1 GiB reserved, 3 pages touched: backed pages %lu -> %lu -> %lu, "
            "%lu after free\n", backed0, backed1, backed2, km_heap.backed_pages);
}

/* ---- page manager and address manager ---- */

static void test_kvm_demand(struct test *t)
{
    struct frame_snapshot before = snapshot();
    uint64_t maps0 = km_page_stats.demand_maps;
    volatile uint64_t *p = kvm_reserve(64 * KM_PAGE_SIZE);
    CHECK(t, p != NULL, "kvm_reserve failed");
    uint64_t phys, flags;
    CHECK(t, !paging_translate(kernel_pml4, (uint64_t)(uintptr_t)p, &phys, &flags),
          "reserved page mapped before first touch");
    p[0] = 0x1234;
    p[63 * KM_PAGE_SIZE / 8] = 0x5678;
    fault_barrier();
    CHECK(t, km_page_stats.demand_maps - maps0 == 2, "%lu demand maps, expected 2",
          km_page_stats.demand_maps - maps0);
    CHECK(t, paging_translate(kernel_pml4, (uint64_t)(uintptr_t)p, &phys, &flags) &&
                 (flags & KM_PTE_WRITABLE) && !(flags & KM_PTE_USER),
          "touched page not mapped writable supervisor-only");
    CHECK(t, *(volatile uint64_t *)phys_to_virt(phys) == 0x1234, "offset map alias disagrees");
    kvm_release((void *)p);
    CHECK(t, !paging_translate(kernel_pml4, (uint64_t)(uintptr_t)p, &phys, &flags),
          "released page still mapped");
    CHECK(t, vaddr_lookup(&km_vaddr, (uint64_t)(uintptr_t)p) == NULL, "range still handed out");
    CHECK_FRAMES_UNCHANGED(t, before);
}

static void test_tlb_remap(struct test *t)
{
    struct frame_snapshot before = snapshot();
    uint64_t a, b, got;
    CHECK(t, frames_alloc(&km_frames, 1, &a, &got) == KM_OK, "no frame");
    CHECK(t, frames_alloc(&km_frames, 1, &b, &got) == KM_OK, "no frame");
    *(volatile uint64_t *)phys_to_virt(a) = 0xaaaa;
    *(volatile uint64_t *)phys_to_virt(b) = 0xbbbb;
    volatile uint64_t *va = kvm_reserve(KM_PAGE_SIZE);
    CHECK(t, va != NULL, "kvm_reserve failed");
    paging_map(kernel_pml4, (uint64_t)(uintptr_t)va, a, KM_PTE_WRITABLE | paging_nx);
    uint64_t first = *va;
    fault_barrier();
    paging_map(kernel_pml4, (uint64_t)(uintptr_t)va, b, KM_PTE_WRITABLE | paging_nx); // live change
    uint64_t second = *va;
    uint64_t old = paging_unmap(kernel_pml4, (uint64_t)(uintptr_t)va);
    kvm_release((void *)va);
    frames_free(&km_frames, a, 1);
    frames_free(&km_frames, b, 1);
    CHECK(t, first == 0xaaaa, "first mapping read 0x%lx", first);
    CHECK(t, second == 0xbbbb, "remapped page read 0x%lx (stale TLB entry?)", second);
    CHECK(t, old == b, "unmap returned 0x%lx, expected 0x%lx", old, b);
    CHECK_FRAMES_UNCHANGED(t, before);
}

static void test_offset_map(struct test *t)
{
    uint64_t probes[] = {0, KM_PAGE_SIZE * 5 + 123, first_span_start(), offset_map.size - 8};
    for (unsigned i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        uint64_t phys, flags;
        CHECK(t, paging_translate(kernel_pml4, KM_OFFSET_MAP_BASE + probes[i], &phys, &flags),
              "offset map hole at phys 0x%lx", probes[i]);
        CHECK(t, phys == probes[i], "offset map sends 0x%lx to 0x%lx", probes[i], phys);
        CHECK(t,
              (flags & KM_PTE_PS) && (flags & KM_PTE_WRITABLE) &&
                  (flags & paging_nx) == paging_nx,
              "offset map entry flags 0x%lx", flags);
    }
    CHECK(t, offset_map.page_size == (1ull << 30) || offset_map.page_size == (1ull << 21),
          "page size %lu", offset_map.page_size);
}

extern char __text_start[], __rodata_start[], __data_start[], __stack_guard[];

static void test_kernel_wx(struct test *t)
{
    uint64_t phys, flags;
    CHECK(t, paging_translate(kernel_pml4, (uint64_t)(uintptr_t)__text_start, &phys, &flags) &&
                 !(flags & KM_PTE_WRITABLE) && !(flags & KM_PTE_NX),
          "text not read-only executable (0x%lx)", flags);
    CHECK(t, paging_translate(kernel_pml4, (uint64_t)(uintptr_t)__rodata_start, &phys, &flags) &&
                 !(flags & KM_PTE_WRITABLE) && (flags & KM_PTE_NX) == paging_nx,
          "rodata not read-only no-execute (0x%lx)", flags);
    CHECK(t, paging_translate(kernel_pml4, (uint64_t)(uintptr_t)__data_start, &phys, &flags) &&
                 (flags & KM_PTE_WRITABLE) && (flags & KM_PTE_NX) == paging_nx,
          "data not writable no-execute (0x%lx)", flags);
    CHECK(t, !paging_translate(kernel_pml4, (uint64_t)(uintptr_t)__stack_guard, &phys, &flags),
          "stack guard page is mapped");
    CHECK(t, (read_cr0() >> 16) & 1, "CR0.WP is off");
}

/* ---- address spaces ---- */

#define CR4_SMAP (1ull << 21)
#define ASPACES 100

static struct aspace spaces[ASPACES];
static volatile uint64_t kernel_marker = 0x4b4d4b4d;

static void test_aspaces(struct test *t)
{
    struct frame_snapshot before = snapshot();
    uint64_t tables_live0 = km_page_stats.tables_allocated - km_page_stats.tables_freed;
    int smap = (read_cr4() & CR4_SMAP) != 0;
    for (int i = 0; i < ASPACES; i++)
        CHECK(t, aspace_create(&spaces[i]) == KM_OK, "create %d failed", i);
    CHECK(t, km_page_stats.address_spaces == ASPACES, "%lu live address spaces",
          km_page_stats.address_spaces);
    volatile uint64_t *stack = (volatile uint64_t *)(KM_USER_STACK_TOP - 8);
    for (int i = 0; i < ASPACES; i++) {
        const uint64_t *pml4 = table_at(spaces[i].pml4), *kernel = table_at(kernel_pml4);
        CHECK(t, pml4[510] == kernel[510] && pml4[511] == kernel[511], "kernel entries differ");
        aspace_switch(&spaces[i]);
        uint64_t marker = kernel_marker;   // kernel data through the shared PML4 510
        if (smap)
            __asm__ volatile("stac");
        *stack = 0x5000 + (uint64_t)i;     // each space has its own stack page
        if (smap)
            __asm__ volatile("clac");
        write_cr3(kernel_pml4);
        CHECK(t, marker == 0x4b4d4b4d, "kernel data unreadable in address space %d", i);
    }
    for (int i = 0; i < ASPACES; i++) {
        uint64_t phys, flags;
        CHECK(t, paging_translate(spaces[i].pml4, KM_USER_STACK_TOP - 8, &phys, &flags) &&
                     (flags & KM_PTE_USER) && (flags & KM_PTE_WRITABLE),
              "user stack of space %d not mapped user-writable", i);
        CHECK(t, *(volatile uint64_t *)phys_to_virt(phys) == 0x5000 + (uint64_t)i,
              "user stack of space %d holds the wrong value", i);
    }
    for (int i = 0; i < ASPACES; i++)
        aspace_destroy(&spaces[i]);
    CHECK(t, km_page_stats.address_spaces == 0, "%lu address spaces left",
          km_page_stats.address_spaces);
    CHECK(t, km_page_stats.tables_allocated - km_page_stats.tables_freed == tables_live0,
          "page tables leaked");
    CHECK_FRAMES_UNCHANGED(t, before);
}

/* ---- misc ---- */

static void test_regions(struct test *t)
{
    static const struct {
        uint64_t addr;
        const char *name;
    } cases[] = {
        {0x1000, "user-space"},
        {KM_USER_STACK_TOP - 1, "user-stack"},
        {KM_KERNEL_LINK_BASE, "kernel-image"},
        {KM_KERNEL_VSPACE_BASE, "kernel-vspace"},
        {KM_HEAP_BASE + 5, "kernel-heap"},
        {KM_OFFSET_MAP_BASE, "offset-map"},
        {0x0000900000000000ull, "none"},
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = region_name(cases[i].addr);
        int same = 1;
        for (const char *a = got, *b = cases[i].name; *a || *b; a++, b++) {
            if (*a != *b) {
                same = 0;
                break;
            }
        }
        CHECK(t, same, "0x%lx is in %s, expected %s", cases[i].addr, got, cases[i].name);
    }
}

static void run(struct test_totals *totals, const char *name, void (*fn)(struct test *))
{
    struct test t = {.why = {0}, .failed = 0};
    fn(&t);
    totals->ran++;
    if (t.failed) {
        totals->failed++;
        kprintf("fail %s: %s\n", name, t.why);
    } else {
        totals->passed++;
        kprintf("ok %s\n", name);
    }
}

void selftest_run(struct test_totals *totals)
{
    run(totals, "frames_alloc_free", test_frames_alloc_free);
    run(totals, "frames_coalesce", test_frames_coalesce);
    run(totals, "frames_partial", test_frames_partial);
    run(totals, "frames_contig", test_frames_contig);
    run(totals, "frames_exhaustion", test_frames_exhaustion);
    run(totals, "frames_fold", test_frames_fold);
    run(totals, "allocator_interface", test_allocator_interface);
    run(totals, "heap_sizes", test_heap_sizes);
    run(totals, "heap_coalesce", test_heap_coalesce);
    run(totals, "heap_lazy", test_heap_lazy);
    run(totals, "kvm_demand", test_kvm_demand);
    run(totals, "tlb_remap", test_tlb_remap);
    run(totals, "offset_map", test_offset_map);
    run(totals, "kernel_wx", test_kernel_wx);
    run(totals, "aspaces", test_aspaces);
    run(totals, "regions", test_regions);
}

void selftest_fault(void)
{
    // Far inside kernel-vspace, where the address manager has handed nothing out.
    volatile uint64_t *bad = (volatile uint64_t *)(KM_KERNEL_VSPACE_BASE + (64ull << 30));
    kprintf("test fault: reading %p (%s, never handed out); expecting a panic\n", (void *)bad,
            region_name((uint64_t)(uintptr_t)bad));
    uint64_t value = *bad;
    kprintf("fail fault: the read returned 0x%lx instead of faulting\n", value);
}
