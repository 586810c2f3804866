// The handoff block: one KM_MEMTYPE_HANDOFF allocation below 4 GiB holding struct km_boot_info,
// then the firmware memory map (written there directly by the final GetMemoryMap). The block is
// sized from the map's current size plus slack, because allocating the block itself, and anything
// the firmware does until ExitBootServices, can add descriptors; if the map still does not fit,
// the block is freed and allocated again, larger.

#include "loader.h"

#define MAP_OFFSET 512 /* the map starts here, after struct km_boot_info */
#define SLACK_DESCRIPTORS 32
#define ALLOC_TRIES 4

_Static_assert(sizeof(struct km_boot_info) <= MAP_OFFSET, "boot info fits before the map");

struct km_boot_info *handoff_alloc(struct memmap *map)
{
    uint64_t want = memmap_needed();
    for (unsigned attempt = 1;; attempt++) {
        /* Slack: SLACK_DESCRIPTORS more of the largest descriptor size seen in practice (64). */
        uint64_t bytes = MAP_OFFSET + want + SLACK_DESCRIPTORS * 64;
        uint64_t pages = (bytes + KM_PAGE_SIZE - 1) / KM_PAGE_SIZE;
        EFI_PHYSICAL_ADDRESS base = LOADER_MAX_ADDRESS;
        TRY(BS->AllocatePages(AllocateMaxAddress, (EFI_MEMORY_TYPE)KM_MEMTYPE_HANDOFF, pages,
                              &base),
            "allocate %llu handoff pages below 4 GiB", pages);
        memset((void *)(uintptr_t)base, 0, pages * KM_PAGE_SIZE);

        map->buffer = (EFI_MEMORY_DESCRIPTOR *)(uintptr_t)(base + MAP_OFFSET);
        map->capacity = pages * KM_PAGE_SIZE - MAP_OFFSET;
        EFI_STATUS status = memmap_fetch(map); /* prove it fits now, with the block allocated */
        if (!EFI_ERROR(status))
            return (struct km_boot_info *)(uintptr_t)base;
        if (status != EFI_BUFFER_TOO_SMALL || attempt == ALLOC_TRIES)
            fatal(status, "GetMemoryMap into a %llu-byte handoff area (attempt %u)",
                  map->capacity, attempt);
        BS->FreePages(base, pages);
        want = memmap_needed() * 2;
    }
}

void handoff_fill_kernel(struct km_boot_info *info, const struct kernel_image *image,
                         const struct entry_tables *tables)
{
    info->magic = KM_BOOT_INFO_MAGIC;
    info->version = KM_BOOT_INFO_VERSION;
    info->length = sizeof *info;
    info->kernel_phys_base = image->phys_base;
    info->kernel_phys_size = image->size;
    info->kernel_virt_base = image->virt_base;
    info->kernel_entry = image->entry;
    info->scratch_base = tables->scratch_base;
    info->scratch_count = KM_SCRATCH_PAGES;
    info->scratch_used = tables->scratch_used;
}

void handoff_fill_memmap(struct km_boot_info *info, const struct memmap *map)
{
    info->memory_map = (uint64_t)(uintptr_t)map->buffer;
    info->memory_map_size = map->size;
    info->descriptor_size = map->descriptor_size;
    info->descriptor_version = map->descriptor_version;
}
