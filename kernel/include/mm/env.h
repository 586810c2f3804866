// What the memory-manager core (frame.c, heap.c, vaddr.c) needs from its surroundings.
//
// The same C compiles into the kernel and, with -DKM_HOST, into a shared library for the host tests
// (tests/kernel/). In the kernel, physical memory is reached through the offset map and a fatal error
// is panic(). On the host, "physical memory" is an arena the test allocates (physical address p lives
// at km_host_arena + p) and panic() is provided by the test shim, which records the message and
// longjmps back to the entry point the test called.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <km/layout.h>

#ifdef KM_HOST
#include <string.h>
extern uintptr_t km_host_arena;
static inline void *phys_to_virt(uint64_t phys)
{
    return (void *)(km_host_arena + (uintptr_t)phys);
}
#else
#include "lib/string.h"
static inline void *phys_to_virt(uint64_t phys)
{
    return (void *)(uintptr_t)(phys + KM_OFFSET_MAP_BASE);
}
#endif

// KM_DEBUG: 1 in debug builds (the `kmtool build` default), 0 with `--release` (see
// kmtool/build/flags.py) and when nobody defines it. Debug-only invariant checks are `#if KM_DEBUG`
// blocks: O(1) checks of what an operation just touched, each a panic naming address and value.
#ifndef KM_DEBUG
#define KM_DEBUG 0
#endif

// Stops the kernel with "panic: <message>" (kernel/lib/panic.c), or unwinds the host test call.
_Noreturn __attribute__((format(printf, 1, 2))) void panic(const char *fmt, ...);

#define KM_PAGE_MASK ((uint64_t)KM_PAGE_SIZE - 1)

static inline uint64_t align_down(uint64_t value, uint64_t align)
{
    return value & ~(align - 1);
}

static inline uint64_t align_up(uint64_t value, uint64_t align)
{
    return (value + align - 1) & ~(align - 1);
}

// Status codes of recoverable failures (returned, never panicked on).
enum km_status {
    KM_OK = 0,
    KM_ENOMEM = 1,   // no free frames / no free virtual space / no free heap block
    KM_EINVAL = 2,   // a request that can never succeed (zero size, too large, misaligned)
    KM_EFULL = 3,    // a fixed-size table is full
};
