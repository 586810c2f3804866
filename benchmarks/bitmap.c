// A plain bitmap frame allocator, written only as the yardstick for benchmarks/bench_frames.py.
//
// One bit per frame (1 = in use), kept outside the frames. Allocation is next-fit: scan from where
// the last allocation ended for `count` clear bits in a row (skipping full 64-bit words at a time),
// wrapping around once; free clears the bits, and reports a bit that was already clear.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"

int bitmap_init(struct bitmap *b, uint64_t frames)
{
    b->frames = frames;
    b->words = (frames + 63) / 64;
    b->bits = calloc(b->words, sizeof(uint64_t));
    b->hint = 0;
    b->free_frames = frames;
    if (!b->bits)
        return -1;
    // Bits past the end count as used so the scan never hands them out.
    for (uint64_t f = frames; f < b->words * 64; f++)
        b->bits[f / 64] |= 1ull << (f % 64);
    return 0;
}

void bitmap_destroy(struct bitmap *b)
{
    free(b->bits);
    b->bits = NULL;
}

static int test_bit(const struct bitmap *b, uint64_t f)
{
    return (b->bits[f / 64] >> (f % 64)) & 1;
}

// First frame >= from of a run of `count` clear bits below `limit`, or UINT64_MAX.
static uint64_t scan(const struct bitmap *b, uint64_t from, uint64_t limit, uint64_t count)
{
    uint64_t f = from;
    while (f + count <= limit) {
        uint64_t w = b->bits[f / 64];
        if (w == ~0ull) {            // a full word: skip it
            f = (f / 64 + 1) * 64;
            continue;
        }
        if (test_bit(b, f)) {
            f++;
            continue;
        }
        uint64_t run = 1;
        while (run < count && !test_bit(b, f + run))
            run++;
        if (run == count)
            return f;
        f += run + 1;
    }
    return UINT64_MAX;
}

int bitmap_alloc(struct bitmap *b, uint64_t count, uint64_t *frame)
{
    uint64_t f = scan(b, b->hint, b->frames, count);
    if (f == UINT64_MAX)
        f = scan(b, 0, b->frames, count);
    if (f == UINT64_MAX)
        return -1;
    for (uint64_t i = f; i < f + count; i++)
        b->bits[i / 64] |= 1ull << (i % 64);
    b->hint = f + count;
    b->free_frames -= count;
    *frame = f;
    return 0;
}

int bitmap_free(struct bitmap *b, uint64_t frame, uint64_t count)
{
    for (uint64_t i = frame; i < frame + count; i++) {
        if (!test_bit(b, i))
            return -1;   // double free
        b->bits[i / 64] &= ~(1ull << (i % 64));
    }
    b->free_frames += count;
    return 0;
}

uint64_t bitmap_free_runs(const struct bitmap *b)
{
    uint64_t runs = 0;
    int in_run = 0;
    for (uint64_t f = 0; f < b->frames; f++) {
        int free_bit = !test_bit(b, f);
        if (free_bit && !in_run)
            runs++;
        in_run = free_bit;
    }
    return runs;
}
