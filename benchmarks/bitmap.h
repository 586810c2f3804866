// The yardstick bitmap allocator (benchmarks/bitmap.c).
#pragma once

#include <stdint.h>

struct bitmap {
    uint64_t *bits;
    uint64_t frames, words, hint, free_frames;
};

int bitmap_init(struct bitmap *b, uint64_t frames);
void bitmap_destroy(struct bitmap *b);
int bitmap_alloc(struct bitmap *b, uint64_t count, uint64_t *frame);   // exactly `count` frames
int bitmap_free(struct bitmap *b, uint64_t frame, uint64_t count);     // -1 on a double free
uint64_t bitmap_free_runs(const struct bitmap *b);
