// QEMU's fw_cfg device, from the kernel's side (QEMU docs/specs/fw_cfg.rst): find a file by name
// and write it with the DMA interface. The loader reads the command line through the same device
// (efi/fwcfg.c); the kernel only writes, to publish where its core-info block is (docs/design.md
// §5.3, kernel/coreinfo.c).
#pragma once

#include <stdbool.h>
#include <stdint.h>

enum fwcfg_status {
    FWCFG_OK = 0,
    FWCFG_NO_DEVICE = 1,   // no fw_cfg signature ("QEMU") at the selector port
    FWCFG_NO_DMA = 2,      // fw_cfg without the DMA interface (writes need it)
    FWCFG_NO_FILE = 3,     // the directory has no file of that name (no `-device vmcoreinfo`)
    FWCFG_BAD_SIZE = 4,    // the file is not the size of the data
    FWCFG_DMA_FAILED = 5,  // QEMU left FW_CFG_DMA_ERROR in the descriptor
};

// Writes the `size` bytes at `data` (inside the kernel image: QEMU reads them at their physical
// address) over the whole fw_cfg file `name`, which must be exactly `size` bytes. Waits for QEMU
// to finish; never panics.
enum fwcfg_status fwcfg_write_file(const char *name, const void *data, uint32_t size);

// The status as a few words for the console ("no vmcoreinfo device" style).
const char *fwcfg_status_text(enum fwcfg_status status);
