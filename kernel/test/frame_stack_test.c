// The in-kernel self test of the frame allocator's stack half (docs/design.md §14).
#include "test/check.h"

// The stack half: single frames come back last in, first out without touching the spans, and the
// stack folds past its limit and on request.
void test_frames_fold(struct test *t)
{
    struct frame_snapshot before = snapshot();
    uint64_t folds = km_frames.folds, limit = km_frames.stack_limit, phys[40], got;
    for (int i = 0; i < 40; i++)
        CHECK(t, frames_alloc(&km_frames, 1 + i % 3, &phys[i], &got) == KM_OK, "allocation failed");
    for (int i = 0; i < 40; i++)
        frames_free(&km_frames, phys[i], 1 + i % 3);
    CHECK(t, km_frames.stack_runs == 40 && km_frames.spans <= before.spans,
          "40 frees left %lu stacked runs and %lu spans (%lu before)", km_frames.stack_runs,
          km_frames.spans, before.spans);
    CHECK(t, km_frames.free_frames == before.free_frames, "stacked frames are not counted free");
    uint64_t again;
    CHECK(t, frames_alloc(&km_frames, 3, &again, &got) == KM_OK && again == phys[38],
          "a 3-frame request got 0x%lx, not the last 3-frame run freed 0x%lx", again, phys[38]);
    frames_free(&km_frames, again, 3);
    CHECK(t, frames_fold(&km_frames) == 40 && km_frames.folds == folds + 1, "explicit fold");
    km_frames.stack_limit = 8;  // the ninth stacked frame folds the lot
    for (int i = 0; i < 9; i++)
        CHECK(t, frames_alloc(&km_frames, 1, &phys[i], &got) == KM_OK, "allocation failed");
    for (int i = 0; i < 9; i++)
        frames_free(&km_frames, phys[i], 1);
    km_frames.stack_limit = limit;
    CHECK(t, km_frames.folds == folds + 2 && km_frames.stack_runs == 0,
          "no fold past the limit: %lu folds, %lu runs stacked", km_frames.folds - folds,
          km_frames.stack_runs);
    CHECK_FRAMES_UNCHANGED(t, before);
}

