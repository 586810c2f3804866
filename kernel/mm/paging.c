// The page manager; the contract is in include/mm/paging.h.
//
// Ordering: page-table entries are written with plain stores followed by a compiler barrier, so the
// compiler cannot sink a table store below the first access through the new mapping (those accesses
// use unrelated pointer types, and strict aliasing would otherwise allow the reordering). No CPU
// fence is needed: x86 page walks observe this processor's own earlier stores, and the TLB and the
// paging-structure caches never hold not-present entries, so filling a not-present entry needs no
// invalidation. Changing or removing a present entry does: INVLPG drops the page's TLB entry and
// (without PCIDs, which this kernel leaves off) all paging-structure cache entries.
#include "mm/paging.h"

#include "arch/cpu.h"

struct km_frame_allocator km_frames;
struct km_heap km_heap;
struct km_page_stats km_page_stats;
struct vaddr_manager km_vaddr;
uint64_t kernel_pml4;
uint64_t paging_nx;

#define CR0_WP (1ull << 16)

void paging_cpu_init(void)
{
    if (cpuid_ext(CPUID_EXT_FEATURES).edx & CPUID_EXT_NX) {
        uint64_t efer = rdmsr(MSR_EFER);
        if (!(efer & EFER_NXE))
            wrmsr(MSR_EFER, efer | EFER_NXE);
        paging_nx = KM_PTE_NX;
    }
    uint64_t cr0 = read_cr0();
    if (!(cr0 & CR0_WP))
        write_cr0(cr0 | CR0_WP);
}

static inline void table_barrier(void)
{
    __asm__ volatile("" : : : "memory");
}

static unsigned index_at(uint64_t va, int level)
{
    return (unsigned)(va >> (KM_PAGE_SHIFT + 9 * (level - 1))) & (KM_ENTRIES_PER_TABLE - 1);
}

static uint64_t level_span(int level)
{
    return 1ull << (KM_PAGE_SHIFT + 9 * (level - 1));
}

// Canonical form of a virtual address built from table indices.
static uint64_t canonical(uint64_t va)
{
    uint64_t upper = ~((1ull << KM_VIRTUAL_ADDRESS_BITS) - 1);   // bits 63..48
    return (va & (1ull << (KM_VIRTUAL_ADDRESS_BITS - 1))) ? (va | upper) : va;
}

uint64_t paging_table_alloc(void)
{
    uint64_t phys, got;
    if (frames_alloc(&km_frames, 1, &phys, &got) != KM_OK)
        return 0;
    memset(table_at(phys), 0, KM_PAGE_SIZE);
    km_page_stats.tables_allocated++;
    return phys;
}

static void table_free(uint64_t phys)
{
    frames_free(&km_frames, phys, 1);
    km_page_stats.tables_freed++;
}

// The PT entry for `va`, creating missing tables when `create`. NULL when absent (or on failure,
// with *status set).
static uint64_t *pte_for(uint64_t pml4, uint64_t va, bool create, uint64_t user, int *status)
{
    uint64_t table = pml4;
    for (int level = 4; level > 1; level--) {
        uint64_t *e = &table_at(table)[index_at(va, level)];
        if (!(*e & KM_PTE_PRESENT)) {
            if (!create)
                return NULL;
            uint64_t t = paging_table_alloc();
            if (!t) {
                *status = KM_ENOMEM;
                return NULL;
            }
            *e = t | KM_PTE_PRESENT | KM_PTE_WRITABLE | user;
        } else if (level < 4 && (*e & KM_PTE_PS)) {
            *status = KM_EINVAL;
            return NULL;
        }
        table = *e & KM_PTE_ADDR;
    }
    return &table_at(table)[index_at(va, 1)];
}

int paging_map(uint64_t pml4, uint64_t va, uint64_t phys, uint64_t flags)
{
    int status = KM_OK;
    uint64_t *pte = pte_for(pml4, va, true, flags & KM_PTE_USER, &status);
    if (!pte)
        return status;
    uint64_t old = *pte;
    *pte = (phys & KM_PTE_ADDR) | flags | KM_PTE_PRESENT;
    table_barrier();
    if (old & KM_PTE_PRESENT)
        invlpg(va);
    return KM_OK;
}

uint64_t paging_unmap(uint64_t pml4, uint64_t va)
{
    int status = KM_OK;
    uint64_t *pte = pte_for(pml4, va, false, 0, &status);
    if (!pte || !(*pte & KM_PTE_PRESENT))
        return 0;
    uint64_t phys = *pte & KM_PTE_ADDR;
    *pte = 0;
    table_barrier();
    invlpg(va);
    return phys;
}

static bool table_empty(uint64_t table)
{
    const uint64_t *t = table_at(table);
    for (unsigned i = 0; i < 512; i++) {
        if (t[i] & KM_PTE_PRESENT)
            return false;
    }
    return true;
}

// Unmaps [start, end) within `table` at `level`, whose first entry maps `base`. Page tables and
// page directories left empty are freed; PDPTs never are (PML4 entries 510/511 are shared by
// every address space and must keep pointing at the same PDPT).
static uint64_t unmap_level(uint64_t table, int level, uint64_t base, uint64_t start, uint64_t end,
                            bool free_frames)
{
    uint64_t span = level_span(level), count = 0;
    uint64_t *t = table_at(table);
    for (unsigned i = index_at(start, level); i < 512; i++) {
        uint64_t lo = base + i * span, hi = lo + span;
        if (lo >= end)
            break;
        uint64_t e = t[i];
        if (!(e & KM_PTE_PRESENT))
            continue;
        if (level == 1) {
            t[i] = 0;
            table_barrier();
            invlpg(canonical(lo));
            if (free_frames)
                frames_free(&km_frames, e & KM_PTE_ADDR, 1);
            count++;
            continue;
        }
        if (level < 4 && (e & KM_PTE_PS))
            panic("paging_unmap_range: large page at 0x%lx in range 0x%lx-0x%lx", canonical(lo),
                  start, end);
        uint64_t child = e & KM_PTE_ADDR;
        count += unmap_level(child, level - 1, lo, start > lo ? start : lo, end < hi ? end : hi,
                             free_frames);
        if (level <= 3 && table_empty(child)) {
            t[i] = 0;
            table_barrier();
            invlpg(canonical(lo));   // also drops the paging-structure cache entries for it
            table_free(child);
        }
    }
    return count;
}

uint64_t paging_unmap_range(uint64_t pml4, uint64_t start, uint64_t end, bool free_frames)
{
    if (end <= start)
        return 0;
    // Work in 48-bit form; entry addresses are made canonical again for INVLPG.
    uint64_t mask = (1ull << 48) - 1;
    uint64_t s = start & mask, e = ((end - 1) & mask) + 1;
    return unmap_level(pml4, 4, 0, s, e, free_frames);
}

bool paging_translate(uint64_t pml4, uint64_t va, uint64_t *phys, uint64_t *flags)
{
    uint64_t table = pml4;
    for (int level = 4; level >= 1; level--) {
        uint64_t e = table_at(table)[index_at(va, level)];
        if (!(e & KM_PTE_PRESENT))
            return false;
        if (level == 1 || (level < 4 && (e & KM_PTE_PS))) {
            uint64_t span = level_span(level);
            // Bit 12 of a large-page entry is PAT, not an address bit.
            uint64_t base = (level == 1) ? (e & KM_PTE_ADDR) : (e & KM_PTE_ADDR & ~(span - 1));
            *phys = base + (va & (span - 1));
            *flags = e & ~KM_PTE_ADDR;
            return true;
        }
        table = e & KM_PTE_ADDR;
    }
    return false;
}

bool paging_handle_fault(struct trap_frame *f)
{
    uint64_t addr = read_cr2();
    km_page_stats.page_faults++;
    // Only a not-present supervisor data access can be demand paging.
    if (!kernel_pml4 || (f->error & (PF_PRESENT | PF_USER | PF_RESERVED | PF_FETCH)))
        return false;
    const struct vaddr_range *r = vaddr_lookup(&km_vaddr, addr);
    if (!r)
        return false;
    uint64_t page = align_down(addr, KM_PAGE_SIZE), frame, got;
    if (frames_alloc(&km_frames, 1, &frame, &got) != KM_OK)
        panic("page fault at 0x%lx (%s): no free frame to back it", addr, region_name(addr));
    memset(table_at(frame), 0, KM_PAGE_SIZE);
    int status = paging_map(kernel_pml4, page, frame, KM_PTE_WRITABLE | paging_nx);
    if (status != KM_OK)
        panic("page fault at 0x%lx: cannot map a frame there (status %d)", addr, status);
    km_page_stats.demand_maps++;
    if (r->tag == VADDR_TAG_HEAP)
        km_heap.backed_pages++;
    return true;
}

void *kvm_reserve(uint64_t bytes)
{
    uint64_t start;
    if (vaddr_reserve(&km_vaddr, bytes, KM_PAGE_SIZE, VADDR_TAG_KVM, &start) != KM_OK)
        return NULL;
    return (void *)(uintptr_t)start;
}

void kvm_release(void *p)
{
    uint64_t start = (uint64_t)(uintptr_t)p;
    const struct vaddr_range *r = vaddr_lookup(&km_vaddr, start);
    if (!r || r->start != start || r->tag != VADDR_TAG_KVM)
        panic("kvm_release: %p was not handed out by kvm_reserve", p);
    paging_unmap_range(kernel_pml4, start, start + r->size, true);
    vaddr_release(&km_vaddr, start);
}
