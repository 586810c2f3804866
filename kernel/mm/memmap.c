// Firmware memory map access and printing; see include/mm/memmap.h.
#include "mm/memmap.h"

#include <km/layout.h>

#include "lib/printf.h"
#include "mm/env.h"

void memmap_init(struct memmap *m, const struct km_boot_info *bi)
{
    if (bi->descriptor_size < sizeof(struct km_efi_memory_descriptor) || bi->descriptor_size % 8)
        panic("boot info: memory map descriptor_size %lu is not a multiple of 8 of at least %lu",
              bi->descriptor_size, (uint64_t)sizeof(struct km_efi_memory_descriptor));
    if (bi->memory_map == 0 || bi->memory_map_size % bi->descriptor_size)
        panic("boot info: memory map at 0x%lx of %lu bytes is not a whole number of %lu-byte "
              "descriptors", bi->memory_map, bi->memory_map_size, bi->descriptor_size);
    m->base = phys_to_virt(bi->memory_map);
    m->desc_size = bi->descriptor_size;
    m->count = bi->memory_map_size / bi->descriptor_size;
}

const char *memmap_type_name(uint32_t type)
{
    static const char *const names[] = {
        "Reserved",       "LoaderCode",     "LoaderData",  "BootServicesCode", "BootServicesData",
        "RuntimeCode",    "RuntimeData",    "Conventional", "Unusable",        "ACPIReclaim",
        "ACPINVS",        "MMIO",           "MMIOPortSpace", "PalCode",        "Persistent",
        "Unaccepted",
    };
    if (type < sizeof(names) / sizeof(names[0]))
        return names[type];
    if (type == KM_MEMTYPE_KERNEL)
        return "KmKernel";
    if (type == KM_MEMTYPE_HANDOFF)
        return "KmHandoff";
    if (type == KM_MEMTYPE_SCRATCH)
        return "KmScratch";
    return type >= 0x80000000u ? "OSVendor" : "Unknown";
}

void memmap_print(const struct memmap *m)
{
    kprintf("memory map: %lu descriptors of %lu bytes\n", m->count, m->desc_size);
    kprintf("  %3s  %-16s  %-18s  %-18s  %10s  %s\n", "#", "type", "physical start", "physical end",
            "pages", "attributes");
    for (uint64_t i = 0; i < m->count; i++) {
        const struct km_efi_memory_descriptor *d = memmap_at(m, i);
        uint64_t end = d->physical_start + d->number_of_pages * KM_PAGE_SIZE - 1;
        kprintf("  %3lu  %-16s  0x%016lx  0x%016lx  %10lu  0x%016lx\n", i, memmap_type_name(d->type),
                d->physical_start, end, d->number_of_pages, d->attribute);
    }
}

uint64_t memmap_conventional_bytes(const struct memmap *m)
{
    uint64_t total = 0;
    for (uint64_t i = 0; i < m->count; i++) {
        const struct km_efi_memory_descriptor *d = memmap_at(m, i);
        if (d->type == EFI_CONVENTIONAL)
            total += d->number_of_pages * KM_PAGE_SIZE;
    }
    return total;
}
