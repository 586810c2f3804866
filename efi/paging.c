// The entry page tables of the handoff contract, built in the scratch pages:
//
//   scratch page 0      PML4, loaded into CR3 right before the jump
//   PML4[0], PML4[511]  one shared PDPT mapping physical 0..4 GiB with 2 MiB pages (four PDs), so
//                       the low 4 GiB is identity-mapped (the loader's jump code keeps running) and
//                       also visible at the offset-map base (virtual = physical + KM_OFFSET_MAP_BASE)
//   PML4[510]           the kernel image at its link addresses, 4 KiB pages: W only where a
//                       writable segment lies, NX where no executable segment lies (when the CPU
//                       has NX; then enter_kernel sets EFER.NXE)
//
// Tables are taken from the scratch pages in order, from page 0 up; scratch_used says how many.
// Upper-level entries are present + writable and never NX, so the leaf alone decides permissions.
// One extra case: if the firmware loaded the loader (and so its jump code) above 4 GiB, the 1 GiB
// slot holding that code is added to the shared PDPT the same way, keeping virtual = physical there.

#include "cpu.h"
#include "loader.h"

#define SIZE_2M 0x200000ull
#define SIZE_1G 0x40000000ull
#define LOW_SLOTS 4 /* 1 GiB slots of the shared PDPT that map 0..4 GiB */

static uint64_t scratch_base, scratch_used;

static uint64_t *take_table(void)
{
    if (scratch_used == KM_SCRATCH_PAGES)
        fatal(EFI_OUT_OF_RESOURCES,
              "entry page tables need more than the %u scratch pages (kernel image too large?)",
              KM_SCRATCH_PAGES);
    return (uint64_t *)(uintptr_t)(scratch_base + KM_PAGE_SIZE * scratch_used++);
}

/* The table that entry `index` of `table` points to, created empty when absent. */
static uint64_t *next_table(uint64_t *table, unsigned index)
{
    if (!(table[index] & KM_PTE_PRESENT))
        table[index] = (uint64_t)(uintptr_t)take_table() | KM_PTE_PRESENT | KM_PTE_WRITABLE;
    return (uint64_t *)(uintptr_t)(table[index] & KM_PTE_ADDR);
}

static unsigned index_at(uint64_t va, unsigned shift)
{
    return (unsigned)(va >> shift) & (KM_ENTRIES_PER_TABLE - 1);
}

/* Map 1 GiB slot `slot` of the shared PDPT to physical slot * 1 GiB with 2 MiB pages. */
static void map_low_slot(uint64_t *pdpt, unsigned slot)
{
    if (pdpt[slot] & KM_PTE_PRESENT)
        return;
    uint64_t *pd = next_table(pdpt, slot);
    for (unsigned i = 0; i < KM_ENTRIES_PER_TABLE; i++)
        pd[i] = (slot * SIZE_1G + i * SIZE_2M) | KM_PTE_PRESENT | KM_PTE_WRITABLE | KM_PTE_PS;
}

static void map_kernel_page(uint64_t *pml4, uint64_t va, uint64_t pa, uint64_t flags)
{
    uint64_t *pdpt = next_table(pml4, index_at(va, 39));
    uint64_t *pd = next_table(pdpt, index_at(va, 30));
    uint64_t *pt = next_table(pd, index_at(va, 21));
    pt[index_at(va, 12)] = pa | flags;
}

static bool cpu_has_nx(void)
{
    return (cpuid_ext(CPUID_EXT_FEATURES).edx & CPUID_EXT_NX) != 0;
}

void paging_build(const struct kernel_image *image, uint64_t jump_code,
                  struct entry_tables *tables)
{
    EFI_PHYSICAL_ADDRESS base = LOADER_MAX_ADDRESS;
    TRY(BS->AllocatePages(AllocateMaxAddress, (EFI_MEMORY_TYPE)KM_MEMTYPE_SCRATCH,
                          KM_SCRATCH_PAGES, &base),
        "allocate %u scratch pages below 4 GiB", KM_SCRATCH_PAGES);
    memset((void *)(uintptr_t)base, 0, KM_SCRATCH_PAGES * KM_PAGE_SIZE);
    scratch_base = base;
    scratch_used = 0;
    bool nx = cpu_has_nx();

    uint64_t *pml4 = take_table();

    /* Low 4 GiB, identity and at the offset-map base, through one PDPT. */
    uint64_t *low = next_table(pml4, 0);
    pml4[index_at(KM_OFFSET_MAP_BASE, 39)] = pml4[0];
    for (unsigned slot = 0; slot < LOW_SLOTS; slot++)
        map_low_slot(low, slot);
    for (uint64_t code = jump_code; code < jump_code + 2 * KM_PAGE_SIZE; code += KM_PAGE_SIZE) {
        if (code >= KM_ENTRIES_PER_TABLE * SIZE_1G)
            fatal(EFI_UNSUPPORTED, "loader jump code at 0x%llx is above 512 GiB", code);
        map_low_slot(low, (unsigned)(code / SIZE_1G));
    }

    /* The kernel image, page by page; a page shared by two segments gets the union of rights. */
    for (uint64_t va = image->virt_base; va < image->virt_base + image->size; va += KM_PAGE_SIZE) {
        bool mapped = false, writable = false, executable = false;
        for (unsigned i = 0; i < image->segment_count; i++) {
            const struct kernel_segment *s = &image->segments[i];
            if (va + KM_PAGE_SIZE > s->vaddr && va < s->vaddr + s->memsz) {
                mapped = true;
                writable |= s->writable;
                executable |= s->executable;
            }
        }
        if (!mapped)
            continue; /* a gap between segments stays unmapped */
        uint64_t flags = KM_PTE_PRESENT | (writable ? KM_PTE_WRITABLE : 0) |
                         (nx && !executable ? KM_PTE_NX : 0);
        map_kernel_page(pml4, va, image->phys_base + (va - image->virt_base), flags);
    }

    tables->scratch_base = scratch_base;
    tables->scratch_used = scratch_used;
    tables->nx = nx;
}
