// The firmware memory map. Descriptors are firmware-sized: a consumer steps through the map by
// descriptor_size (which may exceed sizeof(EFI_MEMORY_DESCRIPTOR)), never by sizeof.

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
