// The core-info block (docs/design.md §5.2): struct km_core_info km_core_info, in .bss, filled at boot
// (kernel/coreinfo.c). kmtool inspect finds it through the ELF symbol or by scanning a dump for its
// two magic words; the magic is written at run time so stale copies of kernel.elf never match.
#pragma once

#include <km/structs.h>

#define KM_BUILD_ID_BYTES ((int)sizeof(((struct km_core_info *)0)->build_id))   // 16

extern struct km_core_info km_core_info;
extern uint64_t kernel_entry_tsc;

// The kernel's build id: the first KM_BUILD_ID_BYTES bytes of kernel.elf's GNU build-id note (the
// linker's SHA-1 of the image; kmtool inspect --kernel compares it with the ELF). All zeros when
// the kernel was linked without one. build_id_hex() writes it as lowercase hex digits and a NUL.
void build_id_read(uint8_t out[KM_BUILD_ID_BYTES]);
void build_id_hex(char out[2 * KM_BUILD_ID_BYTES + 1]);

// Fills magic, version, length, self and state addresses, layout constants and the build id
// (needs boot_info).
void coreinfo_init(void);

// Tells QEMU's vmcoreinfo device (fw_cfg file KM_FW_CFG_VMCOREINFO_FILE) where an ELF note naming
// the block's address is, so every dump carries the note (docs/design.md §5.3). Prints one line
// saying whether it worked; without the device (or fw_cfg DMA) a dump is found by a scan instead.
// Needs coreinfo_init().
void coreinfo_publish(void);

// Records what the memory bootstrap decided (kernel PML4, offset-map page size and coverage).
void coreinfo_after_bootstrap(void);

// Stamps ready_tsc; returns ready_tsc - entry_tsc.
uint64_t coreinfo_ready(void);
