// Leaving the firmware: ExitBootServices with a fresh map, then the switch to the kernel's entry
// page tables and the jump. From the first ExitBootServices attempt on, only GetMemoryMap and
// ExitBootServices may be called (UEFI 7.4), so nothing here allocates and ConOut is off.

#include "cpu.h"
#include "loader.h"

#define EXIT_TRIES 8

static unsigned exit_attempts;

void exit_boot_services(struct memmap *map, struct km_boot_info *info)
{
    TRY(memmap_fetch(map), "GetMemoryMap before ExitBootServices");
    console_firmware_gone();
    for (exit_attempts = 1;; exit_attempts++) {
        EFI_STATUS status = BS->ExitBootServices(loader_image, map->key);
        if (status == EFI_SUCCESS)
            break;
        /* EFI_INVALID_PARAMETER: the map key is stale (the map changed); fetch it again. */
        if (status != EFI_INVALID_PARAMETER || exit_attempts == EXIT_TRIES)
            fatal(status, "ExitBootServices (attempt %u)", exit_attempts);
        TRY(memmap_fetch(map), "GetMemoryMap after a stale map key (attempt %u)", exit_attempts);
    }
    /* The firmware's order is arbitrary; the handoff contract promises address order. Sorting
     * only now, after ExitBootServices succeeded, keeps the map the key was issued for intact
     * until then (a sort between GetMemoryMap and a retry would be overwritten anyway). */
    memmap_sort(map);
    handoff_fill_memmap(info, map);
}

/* Load CR3 and jump; runs with the old tables up to `mov cr3` and the new ones after it, so its
 * page must be mapped at the same address in both (paging_build keeps it so). Uses no stack. */
__attribute__((noinline)) static _Noreturn void switch_and_jump(uint64_t pml4, uint64_t entry,
                                                                 uint64_t info)
{
    __asm__ volatile("mov %%cr0, %%rax\n\t"
                     "or %[wp], %%rax\n\t"
                     "mov %%rax, %%cr0\n\t" /* CR0.WP: read-only pages bind ring 0 too */
                     "mov %[pml4], %%cr3\n\t"
                     "cld\n\t"
                     "jmp *%[entry]" /* System V: first argument in rdi */
                     :
                     : [pml4] "r"(pml4), [entry] "r"(entry), "D"(info), [wp] "i"(CR0_WP)
                     : "rax", "memory");
    __builtin_unreachable();
}

uint64_t jump_code_address(void)
{
    return (uint64_t)(uintptr_t)&switch_and_jump;
}

_Noreturn void enter_kernel(struct km_boot_info *info, const struct kernel_image *image,
                            const struct entry_tables *tables)
{
    __asm__ volatile("cli");
    if (tables->nx)
        wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);
    log_line("ExitBootServices done (attempt %u); memory map %llu descriptors of %llu bytes",
             exit_attempts, info->memory_map_size / info->descriptor_size, info->descriptor_size);
    log_line("jumping to 0x%llx with boot info at 0x%llx, CR3 0x%llx", image->entry,
             (uint64_t)(uintptr_t)info, tables->scratch_base);
    info->loader_tsc = rdtsc();
    switch_and_jump(tables->scratch_base, image->entry, (uint64_t)(uintptr_t)info);
}
