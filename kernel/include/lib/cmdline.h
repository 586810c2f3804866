// Kernel command line words (from boot_info.cmdline, set per run through QEMU fw_cfg).
#pragma once

#include <stdbool.h>

// True when `word` appears in `cmdline` as a whole space-separated word.
bool cmdline_has(const char *cmdline, const char *word);
