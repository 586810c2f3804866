// What the in-kernel self tests share (kernel/test/): the test record, CHECK, and the frame
// allocator snapshot that every test compares before and after.
#pragma once

#include "lib/printf.h"
#include "mm/bootstrap.h"
#include "mm/frame.h"
#include "mm/paging.h"

struct test {
    char why[192];
    int failed;
};

#define CHECK(t, cond, ...)                                                                      \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            ksnprintf((t)->why, sizeof((t)->why), __VA_ARGS__);                                  \
            (t)->failed = 1;                                                                     \
            return;                                                                              \
        }                                                                                        \
    } while (0)

// The page-fault handler changes counters behind the compiler's back while a test touches memory:
// a volatile store is not a compiler barrier for ordinary globals, so re-read them after this.
static inline void fault_barrier(void)
{
    __asm__ volatile("" : : : "memory");
}

struct frame_snapshot {
    uint64_t free_frames, spans, hash;
};

// Folds the stack first, so that every free frame is in a span and the counts are comparable.
static inline struct frame_snapshot snapshot(void)
{
    frames_fold(&km_frames);
    return (struct frame_snapshot){km_frames.free_frames, km_frames.spans,
                                   frames_span_hash(&km_frames)};
}

#define CHECK_FRAMES_UNCHANGED(t, before)                                                        \
    do {                                                                                         \
        struct frame_snapshot now_ = snapshot();                                                 \
        CHECK(t, now_.free_frames == (before).free_frames && now_.spans == (before).spans &&     \
                     now_.hash == (before).hash,                                                 \
              "frames changed: free %lu -> %lu, spans %lu -> %lu", (before).free_frames,          \
              now_.free_frames, (before).spans, now_.spans);                                     \
        char why_[128];                                                                          \
        CHECK(t, frames_validate(&km_frames, why_, sizeof(why_)) == 0, "invalid: %s", why_);     \
    } while (0)

// The frame stack's self test (kernel/test/frame_stack_test.c).
void test_frames_fold(struct test *t);
