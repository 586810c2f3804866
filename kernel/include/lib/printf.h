// A small printf for the console and for formatting into buffers (kernel/lib/printf.c).
//
// Conversions: %d %i %u %x %X %p %s %c %%, with the length modifiers l, ll and z, the flags '-' (left
// justify) and '0' (zero pad), a field width (digits or *) and a precision for %s (digits or *).
// %p prints 0x followed by 16 hex digits. Unknown conversions are printed as-is.
#pragma once

#include <stdarg.h>
#include <stddef.h>

__attribute__((format(printf, 1, 2))) int kprintf(const char *fmt, ...);
int kvprintf(const char *fmt, va_list ap);

// Like snprintf: writes at most `size` bytes including the NUL, returns the length it wanted.
__attribute__((format(printf, 3, 4))) int ksnprintf(char *buf, size_t size, const char *fmt, ...);
int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
