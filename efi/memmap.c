// The firmware memory map. Descriptors are firmware-sized: a consumer steps through the map by
// descriptor_size (which may exceed sizeof(EFI_MEMORY_DESCRIPTOR)), never by sizeof.
// UEFI does not promise any order (OVMF lists RAM above 4 GiB before the reserved and MMIO
// ranges below it); memmap_sort() puts the handed-off copy in address order.

#include "loader.h"

uint64_t memmap_needed(void)
{
    UINTN size = 0, key, descriptor_size;
    uint32_t version;
    EFI_STATUS status = BS->GetMemoryMap(&size, 0, &key, &descriptor_size, &version);
    if (status != EFI_BUFFER_TOO_SMALL)
        fatal(EFI_ERROR(status) ? status : EFI_PROTOCOL_ERROR,
              "GetMemoryMap with an empty buffer did not report the size it needs");
    return size;
}

EFI_STATUS memmap_fetch(struct memmap *map)
{
    UINTN size = map->capacity;
    EFI_STATUS status =
        BS->GetMemoryMap(&size, map->buffer, &map->key, &map->descriptor_size,
                         &map->descriptor_version);
    if (!EFI_ERROR(status)) {
        if (map->descriptor_size < sizeof(EFI_MEMORY_DESCRIPTOR))
            fatal(EFI_INCOMPATIBLE_VERSION, "memory map descriptor_size %llu is below %u bytes",
                  (uint64_t)map->descriptor_size, (unsigned)sizeof(EFI_MEMORY_DESCRIPTOR));
        map->size = size;
    }
    return status;
}

/* Swaps two descriptors byte by byte: descriptor_size is the firmware's and has no fixed upper
 * bound, and after ExitBootServices there is no allocator for a temporary of that size. */
static void swap_descriptors(uint8_t *a, uint8_t *b, uint64_t size)
{
    for (uint64_t i = 0; i < size; i++) {
        uint8_t t = a[i];
        a[i] = b[i];
        b[i] = t;
    }
}

void memmap_sort(struct memmap *map)
{
    uint8_t *base = (uint8_t *)map->buffer;
    uint64_t stride = map->descriptor_size, count = map->size / stride;
    /* Insertion sort by adjacent swaps: stable, in place, no boot services; the map has ~130
     * entries, so the quadratic worst case is a few hundred thousand byte moves. */
    for (uint64_t i = 1; i < count; i++) {
        for (uint64_t j = i; j > 0; j--) {
            EFI_MEMORY_DESCRIPTOR *prev = (EFI_MEMORY_DESCRIPTOR *)(base + (j - 1) * stride);
            EFI_MEMORY_DESCRIPTOR *cur = (EFI_MEMORY_DESCRIPTOR *)(base + j * stride);
            if (prev->physical_start <= cur->physical_start)
                break;
            swap_descriptors((uint8_t *)prev, (uint8_t *)cur, stride);
        }
    }
}
