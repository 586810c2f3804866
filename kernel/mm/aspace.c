// Per-process address spaces; the contract is in include/mm/aspace.h.
#include "mm/aspace.h"

#include "arch/cpu.h"
#include "mm/paging.h"

#define USER_HALF_ENTRIES 256   // PML4 entries 0-255 map the lower canonical half

struct km_aspace_list km_aspaces;

static void list_add(struct aspace *as)
{
    struct km_aspace_list *l = &km_aspaces;
    as->id = ++l->created;
    l->pml4[l->count] = as->pml4;
    l->id[l->count] = as->id;
    l->count++;
}

static void list_remove(const struct aspace *as)
{
    struct km_aspace_list *l = &km_aspaces;
    for (uint64_t i = 0; i < l->count; i++) {
        if (l->pml4[i] != as->pml4)
            continue;
        for (uint64_t j = i + 1; j < l->count; j++) {
            l->pml4[j - 1] = l->pml4[j];
            l->id[j - 1] = l->id[j];
        }
        l->count--;
        l->pml4[l->count] = l->id[l->count] = 0;
        return;
    }
}

int aspace_create(struct aspace *as)
{
    as->pml4 = 0;
    if (km_aspaces.count >= KM_ASPACE_MAX)
        return KM_EFULL;
    as->pml4 = paging_table_alloc();
    if (!as->pml4)
        return KM_ENOMEM;
    km_page_stats.address_spaces++;
    uint64_t *mine = table_at(as->pml4);
    const uint64_t *kernel = table_at(kernel_pml4);
    for (unsigned i = KM_SHARED_PML4_FIRST; i <= KM_SHARED_PML4_LAST; i++)
        mine[i] = kernel[i];
    list_add(as);

    uint64_t stack, got;
    if (frames_alloc(&km_frames, 1, &stack, &got) != KM_OK) {
        aspace_destroy(as);
        return KM_ENOMEM;
    }
    memset(table_at(stack), 0, KM_PAGE_SIZE);
    uint64_t va = KM_USER_STACK_TOP - KM_USER_STACK_SIZE;
    if (paging_map(as->pml4, va, stack, KM_PTE_WRITABLE | KM_PTE_USER | paging_nx) != KM_OK) {
        frames_free(&km_frames, stack, 1);
        aspace_destroy(as);
        return KM_ENOMEM;
    }
    return KM_OK;
}

void aspace_switch(const struct aspace *as)
{
    write_cr3(as->pml4);
}

// Frees everything below `table` (a user-half table at `level`) and clears its entries.
static void free_user_tables(uint64_t table, int level)
{
    uint64_t *t = table_at(table);
    unsigned n = level == 4 ? USER_HALF_ENTRIES : 512;
    for (unsigned i = 0; i < n; i++) {
        uint64_t e = t[i];
        if (!(e & KM_PTE_PRESENT))
            continue;
        t[i] = 0;
        if (level == 1) {
            frames_free(&km_frames, e & KM_PTE_ADDR, 1);
        } else if (level < 4 && (e & KM_PTE_PS)) {
            uint64_t span = 1ull << (KM_PAGE_SHIFT + 9 * (level - 1));
            frames_free(&km_frames, e & KM_PTE_ADDR & ~(span - 1), span / KM_PAGE_SIZE);
        } else {
            free_user_tables(e & KM_PTE_ADDR, level - 1);
            frames_free(&km_frames, e & KM_PTE_ADDR, 1);
            km_page_stats.tables_freed++;
        }
    }
}

void aspace_destroy(struct aspace *as)
{
    if (!as->pml4)
        return;
    if ((read_cr3() & KM_PTE_ADDR) == as->pml4)
        write_cr3(kernel_pml4);
    list_remove(as);
    free_user_tables(as->pml4, 4);
    frames_free(&km_frames, as->pml4, 1);
    km_page_stats.tables_freed++;
    km_page_stats.address_spaces--;
    as->pml4 = 0;
}
