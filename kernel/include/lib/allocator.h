// The allocator interface: the one way code outside the memory-manager core gets memory.
//
// An allocator is a pair of functions with a context. allocate() returns NULL when it cannot meet
// the request (callers handle that; nothing panics on exhaustion). free() takes the size that was
// passed to allocate(), like C++ sized delete or Rust's GlobalAlloc::dealloc; an implementation may
// check it. Two implementations (kernel/mm/allocators.c):
//   page_allocator  whole, zeroed, contiguous pages straight from the frame allocator, addressed
//                   through the offset map;
//   heap_allocator  the demand-paged kernel heap (km_heap), any size from 1 byte.
#pragma once

#include <stddef.h>

struct allocator {
    const char *name;
    void *(*allocate)(void *ctx, size_t size);
    void (*free)(void *ctx, void *ptr, size_t size);
    void *ctx;
};

extern const struct allocator page_allocator;
extern const struct allocator heap_allocator;

static inline void *allocate(const struct allocator *a, size_t size)
{
    return a->allocate(a->ctx, size);
}

static inline void deallocate(const struct allocator *a, void *ptr, size_t size)
{
    a->free(a->ctx, ptr, size);
}
