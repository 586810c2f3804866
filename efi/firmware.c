// Facts the firmware knows that the kernel wants: where the ACPI RSDP is (configuration table) and
// the linear framebuffer of the Graphics Output Protocol, if any.

#include "loader.h"

static const EFI_GUID acpi20_guid = EFI_ACPI_20_TABLE_GUID;
static const EFI_GUID acpi10_guid = ACPI_TABLE_GUID;
static const EFI_GUID gop_guid = EFI_GRAPHICS_OUTPUT_PROTOCOL_GUID;

static void *config_table(const EFI_GUID *guid)
{
    for (UINTN i = 0; i < ST->NumberOfTableEntries; i++)
        if (memcmp(&ST->ConfigurationTable[i].VendorGuid, guid, sizeof *guid) == 0)
            return ST->ConfigurationTable[i].VendorTable;
    return 0;
}

void firmware_find_rsdp(struct km_boot_info *info)
{
    void *rsdp = config_table(&acpi20_guid);
    if (!rsdp)
        rsdp = config_table(&acpi10_guid);
    info->rsdp = (uint64_t)(uintptr_t)rsdp;
}

void firmware_find_framebuffer(struct km_boot_info *info)
{
    EFI_GRAPHICS_OUTPUT_PROTOCOL *gop;
    if (EFI_ERROR(BS->LocateProtocol(&gop_guid, 0, (void **)&gop)) || !gop || !gop->Mode ||
        !gop->Mode->Info)
        return; /* no GOP: no framebuffer, which is fine */
    const EFI_GRAPHICS_OUTPUT_MODE_INFORMATION *mode = gop->Mode->Info;
    if (mode->PixelFormat == PixelBltOnly)
        return; /* no linear framebuffer to hand over */
    info->fb_base = gop->Mode->FrameBufferBase;
    info->fb_size = gop->Mode->FrameBufferSize;
    info->fb_width = mode->HorizontalResolution;
    info->fb_height = mode->VerticalResolution;
    info->fb_pitch = mode->PixelsPerScanLine;
    info->fb_format = mode->PixelFormat;
}
