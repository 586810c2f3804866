// Timing loops for benchmarks/bench_frames.py: the kernel's frame allocator (kernel/mm/frame.c,
// built with -DKM_HOST over an mmap'd arena standing in for physical memory) and the bitmap
// yardstick (benchmarks/bitmap.c) run the same workloads with the same random numbers; floor_churn
// replays the hybrid's last churn touching only what the marker rule demands (docs/design.md §14).
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "bitmap.h"
#include "mm/frame.h"

// The entry points bench_frames.py calls through ctypes. The library is built with
// -fvisibility=hidden, so that everything else is called and read directly, as in the kernel.
#define EXPORT __attribute__((visibility("default")))

uintptr_t km_host_arena;

void panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

struct result {
    double ns_per_op;     // timed loop only
    uint64_t ops;         // allocations + frees in the timed loop
    uint64_t spans;       // free spans (runs of free frames) after the loop
    uint64_t free_frames; // after the loop
    uint64_t short_allocs;// allocations that returned fewer frames than asked (span allocator)
    uint64_t failed;      // allocations refused
    uint64_t folds;       // stack folds during the loop (hybrid allocator)
    uint64_t stack_runs;  // runs on the stack after the loop (hybrid allocator)
    uint64_t requests;    // allocation requests in the timed loop
};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s)
{
    // xorshift64*
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

struct chunk {
    uint64_t frame, count;
};

// The owner of `count` frames at arena offset `byte` writes one word into each (when `touch`):
// what a real owner does with frames it was given, for both allocators alike.
static void *arena;
static void owner_touch(unsigned touch, uint64_t byte, uint64_t count)
{
    for (uint64_t i = 0; touch && i < count; i++)
        ((volatile uint64_t *)((char *)arena + byte + i * 4096))[0] = byte + i;
}

/* ---- the kernel's hybrid stack/span allocator ---- */

// What every allocation of the last span_churn returned, in order (fill and timed loop), and
// whether it came off the stack (its frames carried markers that the pop cleared): floor_churn
// replays it. Recording is one sequential store per allocation, timed with the hybrid.
struct traced {
    uint64_t phys, got, stacked;
};
static struct traced *trace;
static uint64_t trace_len, trace_cap, trace_folds;

static void trace_put(uint64_t phys, uint64_t got, uint64_t stacked)
{
    if (trace_len == trace_cap) {
        trace_cap = trace_cap ? 2 * trace_cap : 1 << 20;
        trace = realloc(trace, trace_cap * sizeof(*trace));
        if (!trace) {
            perror("realloc");
            exit(1);
        }
    }
    trace[trace_len++] = (struct traced){phys, got, stacked};
}

static uint64_t arena_frames;  // `arena`: one arena for every run, prepared once

static void *arena_map(uint64_t frames)
{
    if (arena && arena_frames >= frames)
        return arena;
    if (arena)
        munmap(arena, arena_frames * 4096);
    // The arena stands in for physical memory as the kernel sees it through the offset map: there
    // already (so it is faulted in up front, untimed, instead of on first touch inside the timed
    // loop) and mapped with large pages (the kernel's offset map uses 1 GiB pages; here we ask for
    // 2 MiB transparent huge pages), so pointer chasing between span nodes is not dominated by
    // 4 KiB TLB misses that the kernel would not have.
    size_t bytes = frames * 4096;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    madvise(p, bytes, MADV_HUGEPAGE);
    for (size_t off = 0; off < bytes; off += 4096)
        ((volatile char *)p)[off] = 0;
    arena = p;
    arena_frames = frames;
    return p;
}

static void span_setup(struct km_frame_allocator *fa, uint64_t frames)
{
    km_host_arena = (uintptr_t)arena_map(frames);
    frames_init(fa, frames * 4096);
    frames_add(fa, 4096, frames - 1);
}

// `pairs` single-frame allocate+free pairs.
EXPORT struct result span_pairs(uint64_t frames, uint64_t pairs)
{
    struct km_frame_allocator fa;
    span_setup(&fa, frames);
    double t0 = now_ns();
    for (uint64_t i = 0; i < pairs; i++) {
        uint64_t phys, got;
        frames_alloc(&fa, 1, &phys, &got);
        frames_free(&fa, phys, 1);
    }
    double t1 = now_ns();
    struct result r = {(t1 - t0) / (2.0 * pairs), 2 * pairs, fa.spans, fa.free_frames, 0, 0};
    return r;
}

// Fill to `fill_percent` with random 1-16 frame allocations (untimed), then `ops` random
// operations: allocate 1-16 frames or free a random live chunk, each with probability 1/2. With
// `touch`, the owner writes a word into every frame it gets (owner_touch), in the fill and the loop.
EXPORT struct result span_churn(uint64_t frames, uint64_t ops, uint64_t seed,
                                unsigned fill_percent, unsigned touch)
{
    struct km_frame_allocator fa;
    span_setup(&fa, frames);
    struct chunk *live = malloc(sizeof(*live) * frames);
    uint64_t n = 0, s = seed, target = frames * fill_percent / 100, used = 0;
    struct result r = {0};
    trace_len = 0;
    while (used < target) {
        uint64_t want = rng_next(&s) % 16 + 1, phys, got, runs = fa.stack_runs;
        if (frames_alloc(&fa, want, &phys, &got) != KM_OK)
            break;
        trace_put(phys, got, fa.stack_runs < runs);
        owner_touch(touch, phys, got);
        live[n++] = (struct chunk){phys, got};
        used += got;
    }
    double t0 = now_ns();
    for (uint64_t i = 0; i < ops; i++) {
        uint64_t x = rng_next(&s);
        if ((x & 1) || n == 0) {
            r.requests++;
            uint64_t want = (x >> 1) % 16 + 1, phys, got, runs = fa.stack_runs;
            if (frames_alloc(&fa, want, &phys, &got) != KM_OK) {
                r.failed++;
                continue;
            }
            trace_put(phys, got, fa.stack_runs < runs);
            if (got < want)
                r.short_allocs++;
            owner_touch(touch, phys, got);
            live[n++] = (struct chunk){phys, got};
        } else {
            uint64_t k = (x >> 1) % n;
            frames_free(&fa, live[k].frame, live[k].count);
            live[k] = live[--n];
        }
    }
    double t1 = now_ns();
    r.ns_per_op = (t1 - t0) / ops;
    r.ops = ops;
    r.spans = fa.spans;
    r.free_frames = fa.free_frames;
    r.folds = fa.folds;
    r.stack_runs = fa.stack_runs;
    trace_folds = fa.folds;
    char why[128];
    if (frames_validate(&fa, why, sizeof(why)) != 0)
        panic("span allocator invalid after churn: %s", why);
    free(live);
    return r;
}

/* ---- the bitmap yardstick ---- */

EXPORT struct result bitmap_pairs(uint64_t frames, uint64_t pairs)
{
    struct bitmap b;
    bitmap_init(&b, frames);
    uint64_t f;
    bitmap_alloc(&b, 1, &f);   // frame 0 is never used, as in the kernel
    double t0 = now_ns();
    for (uint64_t i = 0; i < pairs; i++) {
        bitmap_alloc(&b, 1, &f);
        bitmap_free(&b, f, 1);
    }
    double t1 = now_ns();
    struct result r = {(t1 - t0) / (2.0 * pairs), 2 * pairs, bitmap_free_runs(&b), b.free_frames,
                       0, 0};
    bitmap_destroy(&b);
    return r;
}

EXPORT struct result bitmap_churn(uint64_t frames, uint64_t ops, uint64_t seed,
                                  unsigned fill_percent, unsigned touch)
{
    struct bitmap b;
    if (touch)
        arena_map(frames);  // the frames the owners write: the same arena as the hybrid's
    bitmap_init(&b, frames);
    uint64_t f;
    bitmap_alloc(&b, 1, &f);   // frame 0
    struct chunk *live = malloc(sizeof(*live) * frames);
    uint64_t n = 0, s = seed, target = frames * fill_percent / 100, used = 0;
    struct result r = {0};
    while (used < target) {
        uint64_t want = rng_next(&s) % 16 + 1;
        if (bitmap_alloc(&b, want, &f) != 0)
            break;
        owner_touch(touch, f * 4096, want);
        live[n++] = (struct chunk){f, want};
        used += want;
    }
    double t0 = now_ns();
    for (uint64_t i = 0; i < ops; i++) {
        uint64_t x = rng_next(&s);
        if ((x & 1) || n == 0) {
            r.requests++;
            uint64_t want = (x >> 1) % 16 + 1;
            if (bitmap_alloc(&b, want, &f) != 0) {
                r.failed++;
                continue;
            }
            owner_touch(touch, f * 4096, want);
            live[n++] = (struct chunk){f, want};
        } else {
            uint64_t k = (x >> 1) % n;
            if (bitmap_free(&b, live[k].frame, live[k].count) != 0)
                panic("bitmap double free");
            live[k] = live[--n];
        }
    }
    double t1 = now_ns();
    r.ns_per_op = (t1 - t0) / ops;
    r.ops = ops;
    r.spans = bitmap_free_runs(&b);
    r.free_frames = b.free_frames;
    free(live);
    bitmap_destroy(&b);
    return r;
}

/* ---- the floor of the marker rule ---- */

// Where the hybrid keeps a frame's marker word: its stack node (kernel/include/mm/frame_stack.h).
static volatile uint64_t *floor_marker(uint64_t phys)
{
    return (volatile uint64_t *)((char *)arena + phys + ((phys >> 12) % 64) * 64);
}

// The same churn as the last span_churn (same seed, fill and touch), but with no allocator: each
// allocation is the hybrid's recorded result, and the only work besides the loop's own (random
// numbers, the live array, the owners' writes) is what the marker rule demands of ANY allocator
// that keeps a free marker in every free frame (docs/design.md §14): a check and write of one word
// in each freed frame, and a clear of it in each frame handed out that carried one. No links, no
// counters, no search. What this costs above the bitmap is out of reach under the rule.
EXPORT struct result floor_churn(uint64_t frames, uint64_t ops, uint64_t seed,
                                 unsigned fill_percent, unsigned touch)
{
    struct chunk *live = malloc(sizeof(*live) * frames);
    uint64_t n = 0, s = seed, target = frames * fill_percent / 100, used = 0, next = 0;
    uint64_t key = 0x4b4d464c4f4f5231ull ^ (uint64_t)now_ns();  // no stale marker matches it
    struct result r = {0};
    // A frame folded into the spans and handed out from there later leaves no trace of where it
    // came from, so the replay only knows when to clear a marker if the hybrid never folded.
    if (trace_folds)
        panic("floor_churn: the span_churn it replays folded its stack %lu times",
              (unsigned long)trace_folds);
    arena_map(frames);
    for (uint64_t f = 1; f < frames; f++)  // every frame free, unmarked: as after span_setup
        *floor_marker(f * 4096) = 0;
    while (used < target && next < trace_len) {
        rng_next(&s);
        struct traced t = trace[next++];
        owner_touch(touch, t.phys, t.got);
        live[n++] = (struct chunk){t.phys, t.got};
        used += t.got;
    }
    double t0 = now_ns();
    for (uint64_t i = 0; i < ops; i++) {
        uint64_t x = rng_next(&s);
        if ((x & 1) || n == 0) {
            r.requests++;
            if (next == trace_len)
                panic("floor_churn: the trace of span_churn ends at allocation %lu",
                      (unsigned long)next);
            struct traced t = trace[next++];
            for (uint64_t j = 0; t.stacked && j < t.got; j++)
                *floor_marker(t.phys + j * 4096) = 0;
            owner_touch(touch, t.phys, t.got);
            live[n++] = (struct chunk){t.phys, t.got};
        } else {
            uint64_t k = (x >> 1) % n;
            for (uint64_t j = 0; j < live[k].count; j++) {
                uint64_t f = live[k].frame + j * 4096;
                if (*floor_marker(f) == (key ^ f))
                    panic("floor_churn: double free of frame 0x%lx", (unsigned long)f);
                *floor_marker(f) = key ^ f;
            }
            live[k] = live[--n];
        }
    }
    double t1 = now_ns();
    r.ns_per_op = (t1 - t0) / ops;
    r.ops = ops;
    free(live);
    return r;
}
