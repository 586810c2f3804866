// The loader's struct km_boot_info, validated and kept for the rest of the boot (kernel/lib/bootinfo.c).
#pragma once

#include <km/structs.h>
#include <stdint.h>

extern const struct km_boot_info *boot_info;   // through the offset map
extern uint64_t boot_info_phys;
extern char kernel_cmdline[KM_CMDLINE_MAX];     // NUL-terminated copy of boot_info->cmdline

// Checks magic, version and length (panics with the raw value when wrong) and copies the command line.
void bootinfo_init(uint64_t phys);

// Prints the boot info fields, one group per line.
void bootinfo_print(void);
