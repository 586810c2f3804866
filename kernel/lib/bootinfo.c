// Boot-info validation and printing; see include/lib/bootinfo.h.
#include "lib/bootinfo.h"

#include "lib/printf.h"
#include "lib/string.h"
#include "mm/env.h"

const struct km_boot_info *boot_info;
uint64_t boot_info_phys;
char kernel_cmdline[KM_CMDLINE_MAX];

void bootinfo_init(uint64_t phys)
{
    if (phys == 0 || phys % 8)
        panic("boot info: physical address 0x%lx is null or misaligned", phys);
    boot_info_phys = phys;
    boot_info = phys_to_virt(phys);
    if (boot_info->magic != KM_BOOT_INFO_MAGIC)
        panic("boot info at 0x%lx: magic 0x%lx, expected 0x%llx", phys, boot_info->magic,
              KM_BOOT_INFO_MAGIC);
    if (boot_info->version != KM_BOOT_INFO_VERSION)
        panic("boot info at 0x%lx: version %u, expected %u", phys, boot_info->version,
              KM_BOOT_INFO_VERSION);
    if (boot_info->length < sizeof(struct km_boot_info))
        panic("boot info at 0x%lx: length %u, expected at least %lu", phys, boot_info->length,
              (uint64_t)sizeof(struct km_boot_info));
    uint32_t n = boot_info->cmdline_length;
    if (n >= KM_CMDLINE_MAX)
        n = KM_CMDLINE_MAX - 1;
    memcpy(kernel_cmdline, boot_info->cmdline, n);
    kernel_cmdline[n] = '\0';
}

void bootinfo_print(void)
{
    const struct km_boot_info *bi = boot_info;
    kprintf("boot info at 0x%lx: version %u, length %u, flags 0x%x\n", boot_info_phys, bi->version,
            bi->length, bi->flags);
    kprintf("  kernel       phys 0x%lx size 0x%lx virt 0x%lx entry 0x%lx\n", bi->kernel_phys_base,
            bi->kernel_phys_size, bi->kernel_virt_base, bi->kernel_entry);
    kprintf("  memory map   phys 0x%lx size %lu descriptor size %lu version %u\n", bi->memory_map,
            bi->memory_map_size, bi->descriptor_size, bi->descriptor_version);
    kprintf("  scratch      phys 0x%lx pages %lu used by loader %lu\n", bi->scratch_base,
            bi->scratch_count, bi->scratch_used);
    kprintf("  rsdp         0x%lx\n", bi->rsdp);
    if (bi->fb_base)
        kprintf("  framebuffer  0x%lx size 0x%lx %ux%u pitch %u format %u\n", bi->fb_base, bi->fb_size,
                bi->fb_width, bi->fb_height, bi->fb_pitch, bi->fb_format);
    else
        kprintf("  framebuffer  none\n");
    kprintf("  cmdline      \"%s\"%s\n", kernel_cmdline,
            (bi->flags & KM_BOOT_FLAG_CMDLINE_TRUNCATED) ? " (truncated)" : "");
}
