// The kernel console: every byte goes to COM1 (0x3f8) and to QEMU's debugcon port (KM_DEBUGCON_PORT).
#pragma once

#include <stddef.h>

// Programs COM1 for 115200 baud, 8N1, FIFOs on. Safe to call more than once.
void console_init(void);

// Writes `n` bytes to both outputs; "\n" goes out as "\r\n" on the serial port only.
void console_write(const char *s, size_t n);
void console_putc(char c);
