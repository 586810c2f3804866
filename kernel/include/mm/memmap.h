// The firmware memory map the loader handed over (a copy in KM_MEMTYPE_HANDOFF memory).
//
// Descriptors are `desc_size` bytes apart -- the firmware's size, never sizeof(struct
// km_efi_memory_descriptor), which only covers the first 40 bytes. The loader hands the map over
// sorted by physical_start (kmtool/schemas/bootinfo.py), so it prints in address order, but nothing
// in the kernel relies on the order: every consumer scans all descriptors, and the frame allocator
// finds each range's place through its index (frames_add accepts ranges in any order).
#pragma once

#include <km/structs.h>
#include <stdbool.h>
#include <stdint.h>

// EFI_MEMORY_TYPE values (UEFI spec) the kernel treats specially.
enum {
    EFI_RESERVED = 0,
    EFI_LOADER_CODE = 1,
    EFI_LOADER_DATA = 2,
    EFI_BOOT_SERVICES_CODE = 3,
    EFI_BOOT_SERVICES_DATA = 4,
    EFI_RUNTIME_SERVICES_CODE = 5,
    EFI_RUNTIME_SERVICES_DATA = 6,
    EFI_CONVENTIONAL = 7,
    EFI_UNUSABLE = 8,
    EFI_ACPI_RECLAIM = 9,
    EFI_ACPI_NVS = 10,
    EFI_MMIO = 11,
    EFI_MMIO_PORT_SPACE = 12,
    EFI_PAL_CODE = 13,
    EFI_PERSISTENT = 14,
    EFI_UNACCEPTED = 15,
};

struct memmap {
    const uint8_t *base;     // first descriptor (virtual, through the offset map)
    uint64_t desc_size;      // firmware's descriptor stride
    uint64_t count;          // number of descriptors
};

// Reads the map's location from the boot info; panics if the sizes make no sense.
void memmap_init(struct memmap *m, const struct km_boot_info *bi);

static inline const struct km_efi_memory_descriptor *memmap_at(const struct memmap *m, uint64_t i)
{
    return (const struct km_efi_memory_descriptor *)(m->base + i * m->desc_size);
}

const char *memmap_type_name(uint32_t type);

// Prints the map as a table, one descriptor per line.
void memmap_print(const struct memmap *m);

// Bytes in descriptors of type EfiConventionalMemory.
uint64_t memmap_conventional_bytes(const struct memmap *m);
