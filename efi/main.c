// kmtool's UEFI loader: the boot, step by step. The handoff contract it implements is written
// down in paging.c (entry page tables), handoff.c (the boot-info block) and jump.c (the jump);
// any failure stops in fatal() with `fatal: <what>: <status>` and the fail outcome.

#include "loader.h"

EFI_HANDLE loader_image;
EFI_SYSTEM_TABLE *ST;
EFI_BOOT_SERVICES *BS;

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *system_table)
{
    loader_image = image;
    ST = system_table;
    BS = system_table->BootServices;
    BS->SetWatchdogTimer(0, 0, 0, 0); /* no firmware reset while we work */
    log_line("start");

    /* 1. The kernel file, checked before anything is allocated for it. */
    struct kernel_file file;
    file_read_kernel(&file);
    struct kernel_image kernel;
    elf_check(&file, &kernel);
    log_line("kernel.elf %llu bytes, %u segments, entry 0x%llx", file.size, kernel.segment_count,
             kernel.entry);

    /* 2. The image in one KM_MEMTYPE_KERNEL block; the file is no longer needed. */
    elf_load(&file, &kernel);
    file_release(&file);
    log_line("kernel 0x%llx..0x%llx at physical 0x%llx (%llu KiB)", kernel.virt_base,
             kernel.virt_base + kernel.size - 1, kernel.phys_base, kernel.size / 1024);

    /* 3. Entry page tables in the scratch pages. */
    struct entry_tables tables;
    paging_build(&kernel, jump_code_address(), &tables);
    log_line("entry page tables: %llu of %u scratch pages at 0x%llx, NX %s, jump code at 0x%llx",
             tables.scratch_used, KM_SCRATCH_PAGES, tables.scratch_base, tables.nx ? "on" : "off",
             jump_code_address());

    /* 4. The boot info and what goes into it. */
    struct memmap map;
    struct km_boot_info *info = handoff_alloc(&map);
    handoff_fill_kernel(info, &kernel, &tables);
    fwcfg_read_cmdline(info);
    firmware_find_rsdp(info);
    firmware_find_framebuffer(info);
    log_line("boot info at 0x%llx; cmdline \"%s\"%s; RSDP 0x%llx", (uint64_t)(uintptr_t)info,
             (const char *)info->cmdline,
             info->flags & KM_BOOT_FLAG_CMDLINE_TRUNCATED ? " (truncated)" : "", info->rsdp);
    if (info->fb_base)
        log_line("framebuffer 0x%llx, %ux%u, %u pixels per line, format %u", info->fb_base,
                 info->fb_width, info->fb_height, info->fb_pitch, info->fb_format);
    else
        log_line("framebuffer: none");

    /* 5. Leave the firmware and enter the kernel. */
    exit_boot_services(&map, info);
    enter_kernel(info, &kernel, &tables);
}
