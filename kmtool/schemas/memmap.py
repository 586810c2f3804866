"""The UEFI memory map as the firmware writes it (UEFI spec, EFI_MEMORY_DESCRIPTOR).

Descriptors are `descriptor_size` bytes apart; the schema covers only the first 40 bytes.
"""

from enum import IntEnum

from construct import Int32ul, Int64ul, Struct

EfiMemoryDescriptor = Struct(
    "type" / Int32ul * "EFI_MEMORY_TYPE (or a loader type, 0x80000000 and up)",
    "pad" / Int32ul * "padding the firmware leaves undefined",
    "physical_start" / Int64ul * "first byte of the range, 4 KiB aligned",
    "virtual_start" / Int64ul * "unused before SetVirtualAddressMap",
    "number_of_pages" / Int64ul * "length of the range in 4 KiB pages",
    "attribute" / Int64ul * "EFI_MEMORY_* capability bits",
)


class EfiMemoryType(IntEnum):
    """EFI_MEMORY_TYPE values from the UEFI specification."""

    RESERVED = 0
    LOADER_CODE = 1
    LOADER_DATA = 2
    BOOT_SERVICES_CODE = 3
    BOOT_SERVICES_DATA = 4
    RUNTIME_SERVICES_CODE = 5
    RUNTIME_SERVICES_DATA = 6
    CONVENTIONAL = 7
    UNUSABLE = 8
    ACPI_RECLAIM = 9
    ACPI_NVS = 10
    MMIO = 11
    MMIO_PORT_SPACE = 12
    PAL_CODE = 13
    PERSISTENT = 14
    UNACCEPTED = 15
