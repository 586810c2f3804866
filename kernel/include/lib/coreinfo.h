// The core-info block (DESIGN §5): struct km_core_info km_core_info, in .bss, filled at boot
// (kernel/coreinfo.c). kmtool inspect finds it through the ELF symbol or by scanning a dump for its
// two magic words; the magic is written at run time so stale copies of kernel.elf never match.
#pragma once

#include <km/structs.h>

extern struct km_core_info km_core_info;
extern uint64_t kernel_entry_tsc;

// Fills magic, version, length, self and state addresses and layout constants (needs boot_info).
void coreinfo_init(void);

// Records what the memory bootstrap decided (kernel PML4, offset-map page size and coverage).
void coreinfo_after_bootstrap(void);

// Stamps ready_tsc; returns ready_tsc - entry_tsc.
uint64_t coreinfo_ready(void);
