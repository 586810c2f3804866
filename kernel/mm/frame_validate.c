// frames_validate(): every invariant of both halves of the frame allocator, for the tests (contract
// in include/mm/frame.h, docs/design.md §4.2 and §14). O(spans + stacked frames).
#include "mm/frame.h"
#include "mm/frame_stack.h"
#include "mm/frame_treap.h"

#define FRAME KM_PAGE_SIZE

#ifdef KM_HOST
#include <stdio.h>
#define VALIDATE_FAIL(...) (snprintf(why, n, __VA_ARGS__), -1)
#else
#include "lib/printf.h"
#define VALIDATE_FAIL(...) (ksnprintf(why, n, __VA_ARGS__), -1)
#endif

int frames_validate(const struct km_frame_allocator *fa, char *why, size_t n)
{
    uint64_t spans = 0, frames = 0, prev = 0, prev_end = 0;
    for (uint64_t p = fa->head; p; p = node(p)->next) {
        const struct km_frame_span *s = node(p);
        if (++spans > fa->spans)
            return VALIDATE_FAIL("list is longer than spans=%lu", (unsigned long)fa->spans);
        if (s->magic != KM_FRAME_SPAN_MAGIC)
            return VALIDATE_FAIL("span 0x%lx: bad magic 0x%lx", (unsigned long)p,
                                 (unsigned long)s->magic);
        if (s->start != p)
            return VALIDATE_FAIL("span 0x%lx: start is 0x%lx", (unsigned long)p,
                                 (unsigned long)s->start);
        if (s->count == 0 || p == 0 || span_end(s) > fa->limit)
            return VALIDATE_FAIL("span 0x%lx: count %lu out of range", (unsigned long)p,
                                 (unsigned long)s->count);
        if (s->prev != prev)
            return VALIDATE_FAIL("span 0x%lx: prev 0x%lx, expected 0x%lx", (unsigned long)p,
                                 (unsigned long)s->prev, (unsigned long)prev);
        if (prev && p <= prev_end)
            return VALIDATE_FAIL("span 0x%lx: not sorted or not coalesced (previous ends 0x%lx)",
                                 (unsigned long)p, (unsigned long)prev_end);
        frames += s->count;
        prev = p;
        prev_end = span_end(s);
    }
    if (spans != fa->spans)
        return VALIDATE_FAIL("list has %lu spans, counter says %lu", (unsigned long)spans,
                             (unsigned long)fa->spans);
    if (frames + fa->stack_frames != fa->free_frames)
        return VALIDATE_FAIL("spans hold %lu frames and the stack %lu, free_frames says %lu",
                             (unsigned long)frames, (unsigned long)fa->stack_frames,
                             (unsigned long)fa->free_frames);
    struct walk w = {0, 0};
    treap_check(fa->root, 1, ~0ull, &w, spans);
    if (w.bad || w.count != spans)
        return VALIDATE_FAIL("index is broken (%d) or holds %lu of %lu spans", w.bad,
                             (unsigned long)w.count, (unsigned long)spans);
    // Every span must be found by its own address through the index.
    for (uint64_t p = fa->head; p; p = node(p)->next) {
        if (treap_floor(fa->root, p) != p)
            return VALIDATE_FAIL("span 0x%lx cannot be found through the index", (unsigned long)p);
    }
    if (stack_validate(fa, why, n) != 0)
        return -1;
    // No stacked run overlaps a span.
    for (uint64_t c = 0; c < KM_FRAME_STACK_RUN_MAX; c++) {
        for (uint64_t run = fa->stack[c]; run; run = snode(run)->next) {
            uint64_t p = treap_floor(fa->root, run + c * FRAME);
            if (p && span_end(node(p)) > run)
                return VALIDATE_FAIL("stacked run 0x%lx (%lu frames) overlaps span 0x%lx",
                                     (unsigned long)run, (unsigned long)c + 1, (unsigned long)p);
        }
    }
    return 0;
}
