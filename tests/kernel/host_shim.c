// Host harness for the kernel's memory-manager core (kernel/mm/frame.c, heap.c, vaddr.c).
//
// The same C files are compiled with -DKM_HOST into a shared library that pytest loads with ctypes.
// "Physical memory" is an arena the test maps: physical address p lives at km_host_arena + p.
// panic() records its message and longjmps back into the host_* wrapper the test called, which then
// returns -1; the test reads the message with host_panic_message(). Every entry point the tests use
// goes through a wrapper, so a panic never unwinds through a Python frame.
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "mm/frame.h"
#include "mm/heap.h"
#include "mm/vaddr.h"

uintptr_t km_host_arena;

static jmp_buf *panic_target;
static char panic_message[512];
static unsigned long panic_count;

void panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(panic_message, sizeof(panic_message), fmt, ap);
    va_end(ap);
    panic_count++;
    if (panic_target)
        longjmp(*panic_target, 1);
    fprintf(stderr, "panic outside a host_* call: %s\n", panic_message);
    abort();
}

const char *host_panic_message(void)
{
    return panic_message;
}

unsigned long host_panic_count(void)
{
    return panic_count;
}

void host_set_arena(uintptr_t base)
{
    km_host_arena = base;
}

// Runs STMT with panics redirected here; evaluates to 0, or -1 after a panic.
#define GUARDED(STMT)                                                                            \
    do {                                                                                         \
        jmp_buf jb;                                                                              \
        jmp_buf *saved = panic_target;                                                           \
        if (setjmp(jb)) {                                                                        \
            panic_target = saved;                                                                \
            return -1;                                                                           \
        }                                                                                        \
        panic_target = &jb;                                                                      \
        STMT;                                                                                    \
        panic_target = saved;                                                                    \
    } while (0)

/* ---- frame allocator ---- */

unsigned long host_frames_state_size(void)
{
    return sizeof(struct km_frame_allocator);
}

int host_frames_init(struct km_frame_allocator *fa, uint64_t limit)
{
    GUARDED(frames_init(fa, limit));
    return 0;
}

int host_frames_add(struct km_frame_allocator *fa, uint64_t phys, uint64_t count)
{
    GUARDED(frames_add(fa, phys, count));
    return 0;
}

int host_frames_free(struct km_frame_allocator *fa, uint64_t phys, uint64_t count)
{
    GUARDED(frames_free(fa, phys, count));
    return 0;
}

// Returns the status (KM_OK, KM_ENOMEM, KM_EINVAL), or -1 after a panic.
int host_frames_alloc(struct km_frame_allocator *fa, uint64_t want, uint64_t *phys, uint64_t *got)
{
    int status = 0;
    GUARDED(status = frames_alloc(fa, want, phys, got));
    return status;
}

int host_frames_alloc_contig(struct km_frame_allocator *fa, uint64_t count, uint64_t *phys)
{
    int status = 0;
    GUARDED(status = frames_alloc_contig(fa, count, phys));
    return status;
}

// Returns the number of runs folded, or -1 after a panic.
long host_frames_fold(struct km_frame_allocator *fa)
{
    long runs = 0;
    GUARDED(runs = (long)frames_fold(fa));
    return runs;
}

// Copies up to `max` (start, count) pairs into `out`; returns the number of spans in the list.
uint64_t host_frames_spans(const struct km_frame_allocator *fa, uint64_t *out, uint64_t max)
{
    uint64_t n = 0;
    for (const struct km_frame_span *s = frames_first(fa); s; s = frames_next(s)) {
        if (n < max) {
            out[2 * n] = s->start;
            out[2 * n + 1] = s->count;
        }
        n++;
    }
    return n;
}

uint64_t host_frames_span_hash(const struct km_frame_allocator *fa)
{
    return frames_span_hash(fa);
}

int host_frames_validate(const struct km_frame_allocator *fa, char *why, unsigned long n)
{
    int status = 0;
    GUARDED(status = frames_validate(fa, why, n));
    return status;
}

/* ---- heap ---- */

unsigned long host_heap_state_size(void)
{
    return sizeof(struct km_heap);
}

static unsigned long released_pages;

// The kernel unmaps these pages; here they are handed back to the host kernel.
void heap_release_pages(struct km_heap *h, uint64_t start, uint64_t end)
{
    (void)h;
    if (end > start) {
        madvise((void *)(uintptr_t)start, end - start, MADV_DONTNEED);
        released_pages += (end - start) / KM_PAGE_SIZE;
    }
}

unsigned long host_heap_released_pages(void)
{
    return released_pages;
}

int host_heap_init(struct km_heap *h, uint64_t base, uint64_t size)
{
    GUARDED(heap_init(h, base, size));
    return 0;
}

// *out = the pointer (0 when the heap said no); returns 0, or -1 after a panic.
int host_heap_alloc(struct km_heap *h, uint64_t size, uint64_t *out)
{
    void *p = NULL;
    GUARDED(p = heap_alloc(h, size));
    *out = (uint64_t)(uintptr_t)p;
    return 0;
}

int host_heap_free(struct km_heap *h, uint64_t ptr, uint64_t size)
{
    GUARDED(heap_free(h, (void *)(uintptr_t)ptr, size));
    return 0;
}

int host_heap_order_for(const struct km_heap *h, uint64_t size)
{
    return heap_order_for(h, size);
}

int host_heap_validate(const struct km_heap *h, char *why, unsigned long n)
{
    int status = 0;
    GUARDED(status = heap_validate(h, why, n));
    return status;
}

/* ---- address manager ---- */

unsigned long host_vaddr_state_size(void)
{
    return sizeof(struct vaddr_manager);
}

void host_vaddr_init(struct vaddr_manager *vm, uint64_t base, uint64_t end)
{
    vaddr_init(vm, base, end);
}

int host_vaddr_reserve(struct vaddr_manager *vm, uint64_t size, uint64_t align, uint64_t *start)
{
    int status = 0;
    GUARDED(status = vaddr_reserve(vm, size, align, VADDR_TAG_TEST, start));
    return status;
}

int host_vaddr_mark(struct vaddr_manager *vm, uint64_t start, uint64_t size)
{
    int status = 0;
    GUARDED(status = vaddr_mark(vm, start, size, VADDR_TAG_TEST));
    return status;
}

// *size = the released range's size; returns 0, or -1 after a panic.
int host_vaddr_release(struct vaddr_manager *vm, uint64_t start, uint64_t *size)
{
    GUARDED(*size = vaddr_release(vm, start));
    return 0;
}

// Returns 1 and the containing range, or 0 when `addr` was not handed out.
int host_vaddr_lookup(const struct vaddr_manager *vm, uint64_t addr, uint64_t *start, uint64_t *size)
{
    const struct vaddr_range *r = vaddr_lookup(vm, addr);
    if (!r)
        return 0;
    *start = r->start;
    *size = r->size;
    return 1;
}
