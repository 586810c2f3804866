// The handful of C library memory and string functions the kernel uses (kernel/lib/string.c).
//
// clang may emit calls to memset/memcpy/memmove/memcmp for struct copies and zeroing even under
// -ffreestanding, so these carry their standard names.
#pragma once

#include <stddef.h>

void *memset(void *dst, int c, size_t n);
void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
