// Workloads; see include/test/workload.h. The state they build is never torn down: it is what the
// dump is for. (The processes share frames, and aspace_destroy frees every user frame it finds, so
// destroying them would free the shared ones twice; nothing here keeps reference counts.)
#include "test/workload.h"

#include <km/layout.h>

#include "lib/allocator.h"
#include "lib/cmdline.h"
#include "lib/panic.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "mm/aspace.h"
#include "mm/paging.h"

/* ---- processes ---- */

#define PROCESSES 4
#define FORKED 2                      // processes 1..FORKED are forked from process 0
#define USER_CODE UINT64_C(0x400000)        // the shared code page
#define USER_DATA UINT64_C(0x600000)        // DATA_PAGES private data pages
#define USER_HEAP UINT64_C(0x10000000)      // 2 + index heap pages
#define DATA_PAGES 2
#define STACK_PAGES 2                 // aspace_create maps the top one

static struct aspace processes[PROCESSES];

static uint64_t user_frame(uint8_t fill)
{
    uint64_t phys, got;
    if (frames_alloc(&km_frames, 1, &phys, &got) != KM_OK)
        panic("workload processes: out of frames");
    memset(phys_to_virt(phys), fill, KM_PAGE_SIZE);
    return phys;
}

static void map_user(const struct aspace *as, uint64_t va, uint64_t phys, uint64_t flags)
{
    int status = paging_map(as->pml4, va, phys, flags | KM_PTE_USER);
    if (status != KM_OK)
        panic("workload processes: cannot map 0x%lx in address space %lu (status %d)", va, as->id,
              status);
}

// Data, heap and the second stack page of process `k`, each page a frame of its own.
static uint64_t map_private(const struct aspace *as, int k)
{
    uint64_t pages = 0, rw = KM_PTE_WRITABLE | paging_nx;
    for (uint64_t i = 0; i < DATA_PAGES; i++, pages++)
        map_user(as, USER_DATA + i * KM_PAGE_SIZE, user_frame((uint8_t)(0x10 + k)), rw);
    for (uint64_t i = 0; i < 2 + (uint64_t)k; i++, pages++)
        map_user(as, USER_HEAP + i * KM_PAGE_SIZE, user_frame((uint8_t)(0x20 + k)), rw);
    for (uint64_t i = 1; i < STACK_PAGES; i++, pages++)
        map_user(as, KM_USER_STACK_TOP - (i + 1) * KM_PAGE_SIZE, user_frame(0), rw);
    return pages + 1;   // and the stack page aspace_create mapped
}

static void workload_processes(void)
{
    uint64_t code = user_frame(0xc3);   // `ret` all the way down
    uint64_t pages = 0;
    for (int k = 0; k < PROCESSES; k++) {
        if (aspace_create(&processes[k]) != KM_OK)
            panic("workload processes: cannot create address space %d", k);
        map_user(&processes[k], USER_CODE, code, 0);   // read-only, executable
        pages += 1 + map_private(&processes[k], k);
    }
    // fork(): processes 1..FORKED start with process 0's first data page, read-only in all of
    // them until someone writes (which would copy it; nothing does here).
    uint64_t shared, flags;
    if (!paging_translate(processes[0].pml4, USER_DATA, &shared, &flags))
        panic("workload processes: the first data page of address space 1 is not mapped");
    map_user(&processes[0], USER_DATA, shared, paging_nx);
    for (int k = 1; k <= FORKED; k++) {
        uint64_t own, f;
        if (!paging_translate(processes[k].pml4, USER_DATA, &own, &f))
            panic("workload processes: a data page of address space %d is not mapped", k + 1);
        map_user(&processes[k], USER_DATA, shared, paging_nx);
        frames_free(&km_frames, own, 1);
        pages--;
    }
    kprintf("workload processes: %d address spaces (ids %lu-%lu), %lu user pages; code frame 0x%lx "
            "shared by all at 0x%lx, data frame 0x%lx shared copy-on-write by ids %lu-%lu at "
            "0x%lx\n", PROCESSES, processes[0].id, processes[PROCESSES - 1].id, pages, code,
            USER_CODE, shared, processes[0].id, processes[FORKED].id, USER_DATA);
}

/* ---- heap ---- */

#define HEAP_BLOCKS 48

static void *heap_blocks[HEAP_BLOCKS];

static size_t heap_block_size(int i)
{
    return ((size_t)32 << (i % 16)) + (size_t)(i * 7 % 32);   // 32 bytes .. 1 MiB and a bit
}

static void workload_heap(void)
{
    int freed = 0;
    size_t bytes = 0;
    for (int i = 0; i < HEAP_BLOCKS; i++) {
        size_t size = heap_block_size(i);
        uint8_t *p = allocate(&heap_allocator, size);
        if (!p)
            panic("workload heap: cannot allocate block %d (%zu bytes)", i, size);
        p[0] = p[size - 1] = (uint8_t)i;   // touch both ends: the pages between stay unbacked
        heap_blocks[i] = p;
        bytes += size;
    }
    for (int i = 0; i < HEAP_BLOCKS; i += 3, freed++) {
        deallocate(&heap_allocator, heap_blocks[i], heap_block_size(i));
        bytes -= heap_block_size(i);
        heap_blocks[i] = 0;
    }
    kprintf("workload heap: %d blocks of 32 B to 1 MiB allocated, %d of them freed again; %zu "
            "bytes in use, %lu heap pages backed\n", HEAP_BLOCKS, freed, bytes,
            km_heap.backed_pages);
}

/* ---- fragment ---- */

#define FRAGMENT_PAIRS 256

static void workload_fragment(void)
{
    uint64_t pool = (uint64_t)(uintptr_t)kvm_reserve(FRAGMENT_PAIRS * KM_PAGE_SIZE);
    if (!pool)
        panic("workload fragment: no kernel virtual space for the pool");
    uint64_t frames[2 * FRAGMENT_PAIRS], got;
    for (int i = 0; i < 2 * FRAGMENT_PAIRS; i++) {
        if (frames_alloc(&km_frames, 1, &frames[i], &got) != KM_OK)
            panic("workload fragment: out of frames after %d", i);
    }
    // Consecutive single allocations come off the top of one span, so frames[i] are neighbours:
    // keeping every other one leaves each freed frame between two that are in use.
    for (int i = 0; i < FRAGMENT_PAIRS; i++) {
        int status = paging_map(kernel_pml4, pool + (uint64_t)i * KM_PAGE_SIZE, frames[2 * i],
                                KM_PTE_WRITABLE | paging_nx);
        if (status != KM_OK)
            panic("workload fragment: cannot map the pool (status %d)", status);
        frames_free(&km_frames, frames[2 * i + 1], 1);
    }
    frames_fold(&km_frames);   // the freed frames sit on the stack half until folded into spans
    kprintf("workload fragment: %d frames kept at 0x%lx-0x%lx (kernel-vspace), %d freed between "
            "them; %lu spans\n", FRAGMENT_PAIRS, pool, pool + FRAGMENT_PAIRS * KM_PAGE_SIZE - 1,
            FRAGMENT_PAIRS, km_frames.spans);
}

/* ---- the command line ---- */

static const struct {
    const char *name;
    void (*run)(void);
} workloads[] = {
    {"processes", workload_processes},
    {"heap", workload_heap},
    {"fragment", workload_fragment},
};

#define WORKLOAD_COUNT (sizeof(workloads) / sizeof(workloads[0]))

// Runs the workload `name` (length `n`, not NUL-terminated) or, for "all", every one.
static void run_one(const char *name, size_t n)
{
    bool all = n == 3 && strncmp(name, "all", 3) == 0;
    for (unsigned i = 0; i < WORKLOAD_COUNT; i++) {
        if (all || (strlen(workloads[i].name) == n && strncmp(name, workloads[i].name, n) == 0)) {
            workloads[i].run();
            if (!all)
                return;
        }
    }
    if (!all)
        panic("unknown workload `%.*s` on the command line; the workloads are processes, heap, "
              "fragment and all", (int)n, name);
}

void workloads_run(const char *cmdline)
{
    char list[64];
    if (!cmdline_value(cmdline, "workload", list, sizeof(list)))
        return;
    const char *p = list;
    while (*p) {
        const char *end = p;
        while (*end && *end != ',')
            end++;
        run_one(p, (size_t)(end - p));
        p = *end ? end + 1 : end;
    }
}
