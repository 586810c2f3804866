// The memory bootstrap; the steps and their order are in include/mm/bootstrap.h.
#include "mm/bootstrap.h"

#include "arch/cpu.h"
#include "lib/bootinfo.h"
#include "lib/printf.h"
#include "mm/paging.h"

struct offset_map_info offset_map;
struct bootstrap_stats bootstrap_stats;

extern char __kernel_start[], __kernel_end[], __text_start[], __text_end[];
extern char __rodata_start[], __rodata_end[], __data_start[], __bss_end[], __stack_guard[];

#define GiB (1ull << 30)
#define MiB2 (1ull << 21)
#define LOW_LIMIT (4 * GiB)   // what the loader's offset map covered (2 MiB pages, PML4 511)
#define CPUID_EXT_PDPE1GB (1u << 26)
// The PML4 entry that maps the offset map (511).
#define OFFSET_MAP_PML4 ((KM_OFFSET_MAP_BASE / KM_PML4_SPAN) % KM_ENTRIES_PER_TABLE)

uint64_t kernel_virt_to_phys(const void *p)
{
    return boot_info->kernel_phys_base + ((uint64_t)(uintptr_t)p - boot_info->kernel_virt_base);
}

/* ---- step 1: scratch pages as early page tables ---- */

static uint64_t scratch_next;   // index of the next unused scratch page

// A zeroed page for a page table: a scratch page while any is left, else a frame (which must then
// already be reachable through the offset map).
static uint64_t early_table(void)
{
    if (scratch_next < boot_info->scratch_count) {
        uint64_t page = boot_info->scratch_base + scratch_next++ * KM_PAGE_SIZE;
        memset(table_at(page), 0, KM_PAGE_SIZE);
        bootstrap_stats.scratch_used++;
        return page;
    }
    uint64_t page = paging_table_alloc();
    if (!page)
        panic("bootstrap: no page left for the offset map's tables");
    return page;
}

/* ---- step 2: the offset map ---- */

// Highest end address of any range the kernel may manage or read, at least the low 4 GiB.
static uint64_t top_of_memory(const struct memmap *map)
{
    uint64_t top = LOW_LIMIT;
    for (uint64_t i = 0; i < map->count; i++) {
        const struct km_efi_memory_descriptor *d = memmap_at(map, i);
        if (d->type == EFI_MMIO || d->type == EFI_MMIO_PORT_SPACE || d->type == EFI_RESERVED ||
            d->type == EFI_UNUSABLE)
            continue;
        uint64_t end = d->physical_start + d->number_of_pages * KM_PAGE_SIZE;
        if (end > top)
            top = end;
    }
    return top;
}

// Maps physical [from, to) (1 GiB aligned) into the offset map with 2 MiB pages.
static void offset_map_2m(uint64_t from, uint64_t to)
{
    uint64_t *pdpt = table_at(offset_map.pdpt);
    for (uint64_t gib = from; gib < to; gib += GiB) {
        uint64_t pd = early_table();
        uint64_t *e = table_at(pd);
        for (unsigned i = 0; i < 512; i++)
            e[i] = (gib + i * MiB2) | KM_PTE_PRESENT | KM_PTE_WRITABLE | KM_PTE_PS | paging_nx;
        pdpt[gib / GiB] = pd | KM_PTE_PRESENT | KM_PTE_WRITABLE;
    }
    offset_map.size = to;
}

static void offset_map_init(const struct memmap *map)
{
    int has_1g = (cpuid_ext(CPUID_EXT_FEATURES).edx & CPUID_EXT_PDPE1GB) != 0;
    offset_map.phys_bits = cpuid_ext(CPUID_EXT_ADDRESS).eax & 0xff;
    if (offset_map.phys_bits == 0)   // no leaf 0x80000008: the architectural minimum
        offset_map.phys_bits = 36;
    // Entries must not point past MAXPHYADDR (those address bits are reserved).
    uint64_t cover = KM_OFFSET_MAP_SIZE;
    if (offset_map.phys_bits < 39)
        cover = 1ull << offset_map.phys_bits;

    offset_map.pdpt = early_table();
    uint64_t *pdpt = table_at(offset_map.pdpt);
    if (has_1g) {
        offset_map.page_size = GiB;
        for (uint64_t gib = 0; gib < cover; gib += GiB)
            pdpt[gib / GiB] = gib | KM_PTE_PRESENT | KM_PTE_WRITABLE | KM_PTE_PS | paging_nx;
        offset_map.size = cover;
    } else {
        // 2 MiB pages: first the low 4 GiB from scratch pages; the rest in offset_map_finish().
        offset_map.page_size = MiB2;
        uint64_t top = align_up(top_of_memory(map), GiB);
        offset_map_2m(0, top < LOW_LIMIT ? top : LOW_LIMIT);
    }
    // Replace the loader's PML4 entry 511 (the low 4 GiB with 2 MiB pages) with ours, which maps
    // the same addresses the same way and more. Reloading CR3 flushes the old translations.
    uint64_t live = read_cr3() & KM_PTE_ADDR;
    table_at(live)[OFFSET_MAP_PML4] = offset_map.pdpt | KM_PTE_PRESENT | KM_PTE_WRITABLE;
    write_cr3(live);
}

// With 2 MiB pages: maps physical memory from 4 GiB up, taking the page directories from frames the
// allocator already has below 4 GiB.
static void offset_map_finish(const struct memmap *map)
{
    if (offset_map.page_size != MiB2)
        return;
    uint64_t top = align_up(top_of_memory(map), GiB);
    uint64_t cover = KM_OFFSET_MAP_SIZE;
    if (offset_map.phys_bits < 39)
        cover = 1ull << offset_map.phys_bits;
    if (top > cover)
        top = cover;
    if (top > offset_map.size) {
        offset_map_2m(offset_map.size, top);
        write_cr3(read_cr3());
    }
}

/* ---- step 3 and 6: free ranges to the frame allocator ---- */

// Adds the part of [phys, phys + pages) that lies in [lo, hi) and inside the offset map.
static uint64_t add_range(uint64_t phys, uint64_t pages, uint64_t lo, uint64_t hi)
{
    uint64_t start = phys, end = phys + pages * KM_PAGE_SIZE;
    if (start < lo)
        start = lo;
    if (end > hi)
        end = hi;
    if (end > offset_map.size) {
        if (start < offset_map.size)
            bootstrap_stats.ignored_frames += (end - offset_map.size) / KM_PAGE_SIZE;
        else if (end > start)
            bootstrap_stats.ignored_frames += (end - start) / KM_PAGE_SIZE;
        end = offset_map.size;
    }
    if (end <= start)
        return 0;
    uint64_t before = km_frames.managed_frames;
    frames_add(&km_frames, start, (end - start) / KM_PAGE_SIZE);
    return km_frames.managed_frames - before;
}

static uint64_t add_type(const struct memmap *map, int (*want)(uint32_t), uint64_t lo, uint64_t hi)
{
    uint64_t frames = 0;
    for (uint64_t i = 0; i < map->count; i++) {
        const struct km_efi_memory_descriptor *d = memmap_at(map, i);
        if (want(d->type))
            frames += add_range(d->physical_start, d->number_of_pages, lo, hi);
    }
    return frames;
}

static int is_conventional(uint32_t type)
{
    return type == EFI_CONVENTIONAL;
}

// Ranges that are free once the kernel runs on its own page tables: the firmware's boot-services
// code and data (its page tables, GDT, IDT and stacks live there) and the loader's own image and
// buffers. The loader's kernel image, handoff data and scratch pages have their own types.
static int is_reclaimable(uint32_t type)
{
    return type == EFI_BOOT_SERVICES_CODE || type == EFI_BOOT_SERVICES_DATA ||
           type == EFI_LOADER_CODE || type == EFI_LOADER_DATA;
}

/* ---- step 5: the kernel's own PML4 ---- */

static void map_kernel_range(uint64_t pml4, const char *start, const char *end, uint64_t flags)
{
    for (const char *va = start; va < end; va += KM_PAGE_SIZE) {
        if (va == __stack_guard)
            continue;   // left unmapped: a boot-stack overflow faults here
        int status = paging_map(pml4, (uint64_t)(uintptr_t)va, kernel_virt_to_phys(va), flags);
        if (status != KM_OK)
            panic("bootstrap: cannot map the kernel image at %p (status %d)", (const void *)va,
                  status);
    }
}

static uint64_t build_kernel_pml4(void)
{
    uint64_t image = (uint64_t)(__kernel_end - __kernel_start);
    if ((uint64_t)(uintptr_t)__kernel_start != boot_info->kernel_virt_base ||
        image > boot_info->kernel_phys_size)
        panic("bootstrap: loader placed 0x%lx bytes at virt 0x%lx, kernel spans %p..%p",
              boot_info->kernel_phys_size, boot_info->kernel_virt_base, (void *)__kernel_start,
              (void *)__kernel_end);
    uint64_t pml4 = paging_table_alloc();
    if (!pml4)
        panic("bootstrap: no frame for the kernel PML4");
    // PML4 511: the offset map. NX here covers the whole 512 GiB: nothing there is ever executed.
    table_at(pml4)[OFFSET_MAP_PML4] =
        offset_map.pdpt | KM_PTE_PRESENT | KM_PTE_WRITABLE | paging_nx;
    // PML4 510: the image, segment by segment with its own permissions (W^X).
    map_kernel_range(pml4, __text_start, __text_end, 0);
    map_kernel_range(pml4, __rodata_start, __rodata_end, paging_nx);
    map_kernel_range(pml4, __data_start, __bss_end, KM_PTE_WRITABLE | paging_nx);
    return pml4;
}

/* ---- the whole sequence ---- */

void mm_bootstrap(const struct memmap *map)
{
    uint64_t t = rdtsc();
#define STEP(i)                                                                                  \
    do {                                                                                         \
        uint64_t now_ = rdtsc();                                                                 \
        bootstrap_stats.step_cycles[i] = now_ - t;                                               \
        t = now_;                                                                                \
    } while (0)
    paging_cpu_init();
    scratch_next = boot_info->scratch_used;
    if (boot_info->scratch_count == 0 || scratch_next >= boot_info->scratch_count)
        panic("boot info: %lu scratch pages, %lu used by the loader: none left for the kernel",
              boot_info->scratch_count, boot_info->scratch_used);

    offset_map_init(map);
    STEP(0);
    frames_init(&km_frames, offset_map.size);
    bootstrap_stats.conventional_frames += add_type(map, is_conventional, 0, LOW_LIMIT);
    offset_map_finish(map);
    km_frames.limit = offset_map.size;
    bootstrap_stats.conventional_frames += add_type(map, is_conventional, LOW_LIMIT, ~0ull);
    STEP(1);

    vaddr_init(&km_vaddr, KM_KERNEL_VSPACE_BASE, KM_HEAP_BASE + KM_HEAP_SIZE);
    if (vaddr_mark(&km_vaddr, KM_HEAP_BASE, KM_HEAP_SIZE, VADDR_TAG_HEAP) != KM_OK)
        panic("bootstrap: cannot mark the heap range in the address manager");

    kernel_pml4 = build_kernel_pml4();
    write_cr3(kernel_pml4);
    STEP(2);

    // Nothing of the firmware's or the loader's page tables is live now.
    bootstrap_stats.firmware_frames = add_type(map, is_reclaimable, 0, ~0ull);
    uint64_t base = boot_info->scratch_base;
    uint64_t kept_from = boot_info->scratch_used, kept_to = scratch_next;
    bootstrap_stats.scratch_returned = add_range(base, kept_from, 0, ~0ull) +
                                       add_range(base + kept_to * KM_PAGE_SIZE,
                                                 boot_info->scratch_count - kept_to, 0, ~0ull);
    STEP(3);

    heap_init(&km_heap, KM_HEAP_BASE, KM_HEAP_SIZE);
    STEP(4);
#undef STEP
}
