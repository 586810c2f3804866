// Kernel command line words (from boot_info.cmdline, set per run through QEMU fw_cfg).
#pragma once

#include <stdbool.h>
#include <stddef.h>

// True when `word` appears in `cmdline` as a whole space-separated word.
bool cmdline_has(const char *cmdline, const char *word);

// When `cmdline` holds a word `key=VALUE`, copies VALUE (cut to `size` - 1 bytes) and a NUL into
// `out` and returns true; the first such word wins. False when there is none.
bool cmdline_value(const char *cmdline, const char *key, char *out, size_t size);
