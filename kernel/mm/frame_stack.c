// The stack half of the frame allocator; see include/mm/frame_stack.h and docs/design.md §14.
//
// Why a marker cannot be forged by chance: a frame counts as stacked only when its first word is
// KM_FRAME_STACK_MAGIC ^ its own physical address ^ fa->stack_key. The allocator clears the word
// whenever a frame leaves the stack (pop and fold), so a frame its owner holds carries the marker
// only if the owner stored exactly that 64-bit value at exactly that frame's first word. Ordinary
// data (zeros, small integers, pointers, text) is nowhere near the magic; a page copied from another
// stacked frame carries that frame's address, not its own; a stale marker left in memory by an
// earlier boot (or an earlier allocator over the same memory) was made with another key (see
// stack_init()).
// For random data the chance is 2^-64 per free.
#include "mm/frame_stack.h"

#define FRAME KM_PAGE_SIZE

void stack_init(struct km_frame_allocator *fa)
{
    // The time stamp counter and a count of starts: a new key for every allocator, even one that
    // starts again over the same memory (the host tests and benchmarks reuse their arenas).
    static uint64_t starts;
    uint64_t seed = __builtin_ia32_rdtsc() ^ (++starts << 40) ^ fa->limit;
    // splitmix64 finaliser, so that nearby seeds give unrelated keys.
    seed += 0x9e3779b97f4a7c15ull;
    seed = (seed ^ (seed >> 30)) * 0xbf58476d1ce4e5b9ull;
    seed = (seed ^ (seed >> 27)) * 0x94d049bb133111ebull;
    fa->stack_key = seed ^ (seed >> 31);
    fa->stack_limit = KM_FRAME_STACK_LIMIT_DEFAULT;
}

uint64_t stack_first_held(const struct km_frame_allocator *fa, uint64_t phys, uint64_t count)
{
    if (!fa->stack_runs)
        return 0;
    for (uint64_t i = 0; i < count; i++) {
        if (stack_holds(fa, phys + i * FRAME))
            return phys + i * FRAME;
    }
    return 0;
}

#if KM_DEBUG
// The top run of stack `c` (runs of c + 1 frames) and the link below it: markers in its first and
// last frame, run and count fields, the next run's marker; and the counters.
void stack_debug_check_top(const struct km_frame_allocator *fa, const char *who, uint64_t c)
{
    if (fa->stack_frames > fa->free_frames || fa->stack_runs > fa->stack_frames ||
        (fa->stack_runs == 0) != (fa->stack_frames == 0))
        panic("%s: stack counters out of range: %lu runs, %lu frames, free_frames %lu", who,
              fa->stack_runs, fa->stack_frames, fa->free_frames);
    uint64_t top = fa->stack[c];
    if (!top)
        return;
    if ((top & KM_PAGE_MASK) || top >= fa->limit || c + 1 > (fa->limit - top) / FRAME)
        panic("%s: stack of %lu-frame runs: top 0x%lx is not a frame below the limit", who, c + 1,
              top);
    uint64_t last = top + c * FRAME;
    const struct km_frame_stack *n = snode(top);
    if (!stack_holds(fa, top) || !stack_holds(fa, last) || n->run != top || n->count != c + 1 ||
        snode(last)->run != top)
        panic("%s: stacked run 0x%lx (%lu frames): marker, run 0x%lx or count %lu is wrong", who,
              top, c + 1, n->run, n->count);
    if (n->next && ((n->next & KM_PAGE_MASK) || n->next >= fa->limit || !stack_holds(fa, n->next)))
        panic("%s: stacked run 0x%lx: next 0x%lx is not a stacked run", who, top, n->next);
}
#endif

uint64_t frames_fold(struct km_frame_allocator *fa)
{
    uint64_t runs = fa->stack_runs;
    if (!runs)
        return 0;
    for (uint64_t c = 0; c < KM_FRAME_STACK_RUN_MAX; c++) {
        while (fa->stack[c]) {
            stack_debug_check_top(fa, "frames_fold", c);
            uint64_t run = stack_take_run(fa, c);
            span_insert(fa, run, c + 1);
        }
    }
    fa->folds++;
    return runs;
}

#ifdef KM_HOST
#include <stdio.h>
#define STACK_FAIL(...) (snprintf(why, n, __VA_ARGS__), -1)
#else
#include "lib/printf.h"
#define STACK_FAIL(...) (ksnprintf(why, n, __VA_ARGS__), -1)
#endif

int stack_validate(const struct km_frame_allocator *fa, char *why, size_t n)
{
    uint64_t runs = 0, frames = 0;
    for (uint64_t c = 0; c < KM_FRAME_STACK_RUN_MAX; c++) {
        for (uint64_t run = fa->stack[c]; run; run = snode(run)->next) {
            if (++runs > fa->stack_runs)
                return STACK_FAIL("stack is deeper than stack_runs=%lu (or loops)",
                                  (unsigned long)fa->stack_runs);
            if ((run & KM_PAGE_MASK) || run == 0 || run >= fa->limit ||
                c + 1 > (fa->limit - run) / FRAME)
                return STACK_FAIL("stacked run 0x%lx: not a frame below the limit",
                                  (unsigned long)run);
            for (uint64_t i = 0; i <= c; i++) {
                const struct km_frame_stack *f = snode(run + i * FRAME);
                if (!stack_holds(fa, run + i * FRAME) || f->run != run || f->count != c + 1)
                    return STACK_FAIL("stacked run 0x%lx (%lu frames): frame 0x%lx is not marked"
                                      " as part of it", (unsigned long)run, (unsigned long)c + 1,
                                      (unsigned long)(run + i * FRAME));
            }
            frames += c + 1;
        }
    }
    if (runs != fa->stack_runs || frames != fa->stack_frames)
        return STACK_FAIL("stack holds %lu runs of %lu frames, counters say %lu of %lu",
                          (unsigned long)runs, (unsigned long)frames,
                          (unsigned long)fa->stack_runs, (unsigned long)fa->stack_frames);
    return 0;
}
