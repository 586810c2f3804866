// The stack half of the frame allocator (kernel/mm/frame_stack.c), private to frame.c and
// frame_stack.c; the public contract is in mm/frame.h, the layout in kmtool/schemas/frames.py.
//
// A run of 1..KM_FRAME_STACK_RUN_MAX frames goes onto the stack of runs of its length, threaded
// through the runs: every frame of a stacked run holds a struct km_frame_stack (at a per-frame
// offset, below) whose marker is KM_FRAME_STACK_MAGIC ^ the frame's own address ^ fa->stack_key. The marker is what makes a double
// free of a stacked frame an O(1) check; it is cleared when the frame leaves the stack.
#pragma once

#include "mm/frame.h"

// Chooses the marker key and the default bound; the stack starts empty.
void stack_init(struct km_frame_allocator *fa);

// The first frame of [phys, phys + count) that is on the stack, or 0. O(count) reads.
uint64_t stack_first_held(const struct km_frame_allocator *fa, uint64_t phys, uint64_t count);

// Inserts a range that the caller knows is not free into the spans (frame.c); counts nothing.
void span_insert(struct km_frame_allocator *fa, uint64_t phys, uint64_t count);

// Walks every stack (bounded by stack_runs), checking markers, lengths and counters; as
// frames_validate().
int stack_validate(const struct km_frame_allocator *fa, char *why, size_t n);

#if KM_DEBUG
// KM_DEBUG: the top run of stack `c` (runs of c + 1 frames), its link and the stack counters.
void stack_debug_check_top(const struct km_frame_allocator *fa, const char *who, uint64_t c);
#else
#define stack_debug_check_top(fa, who, c) ((void)0)
#endif

// Where a frame's stack node sits inside it: one of KM_FRAME_STACK_COLOURS cache lines chosen by
// the frame number, so that the nodes of neighbouring frames fall into different cache sets rather
// than all into the few sets of a frame's first line (kmtool/schemas/frames.py stack_node_offset).
#define KM_FRAME_STACK_NODE_OFFSET(phys) \
    ((((phys) >> KM_PAGE_SHIFT) % KM_FRAME_STACK_COLOURS) * 64)

// The stack's two counters sit side by side (stack_frames, stack_runs). A compiler may merge their
// updates into one 16-byte load and store (GCC's SLP vectoriser does); that load then reads two
// words that the previous push or pop wrote with separate 8-byte stores, which the store buffer
// cannot forward, and every single-frame allocate+free pair stalls on it. An empty asm that takes
// the new stack_runs through a register keeps the two updates apart, at no cost.
static inline void stack_count(struct km_frame_allocator *fa, uint64_t frames, uint64_t runs)
{
    uint64_t r = fa->stack_runs + runs;
    __asm__("" : "+r"(r));
    fa->stack_frames += frames;
    fa->stack_runs = r;
}

/* ---- the O(1) paths, inline: they run on every single-frame allocation and free ---- */

static inline struct km_frame_stack *snode(uint64_t phys)
{
    return (struct km_frame_stack *)((char *)phys_to_virt(phys) + KM_FRAME_STACK_NODE_OFFSET(phys));
}

static inline uint64_t stack_marker(const struct km_frame_allocator *fa, uint64_t phys)
{
    return KM_FRAME_STACK_MAGIC ^ phys ^ fa->stack_key;
}

// Is frame `phys` on the stack (does it carry its marker)? One read of that frame.
static inline bool stack_holds(const struct km_frame_allocator *fa, uint64_t phys)
{
    return snode(phys)->marker == stack_marker(fa, phys);
}

// Pushes the run of `count` (1..KM_FRAME_STACK_RUN_MAX) frames, checking each frame's marker as it
// writes it: one pass over the run, one loop. Returns 0, or the first frame of the run that is on
// the stack already; then the markers written so far are cleared again and nothing has changed.
//
// One loop on purpose (docs/design.md §14): the marker test is a branch that is never taken, so the
// processor runs ahead through the loop and the reads of the run's cold frames are in flight
// together anyway; what costs is the loop's exit, mispredicted once per free because run lengths
// vary. A read pass then a write pass (or a prefetch pass first) pays that two or three times.
static inline uint64_t stack_push(struct km_frame_allocator *fa, uint64_t phys, uint64_t count)
{
    uint64_t key = KM_FRAME_STACK_MAGIC ^ fa->stack_key;
    uint64_t below = fa->stack[count - 1];
    for (uint64_t i = 0; i < count; i++) {
        uint64_t f = phys + i * KM_PAGE_SIZE;
        struct km_frame_stack *n = snode(f);
        if (__builtin_expect(n->marker == (key ^ f), 0)) {
            while (i--)
                snode(phys + i * KM_PAGE_SIZE)->marker = 0;
            return f;
        }
        n->marker = key ^ f;
        n->run = phys;
        n->count = count;
        n->next = i ? 0 : below;
    }
    fa->stack[count - 1] = phys;
    stack_count(fa, count, 1);
    fa->free_frames += count;
    stack_debug_check_top(fa, "frames_free", count - 1);
    return 0;
}

// Unlinks the top run of stack `c` (which must not be empty) and clears its markers; counts nothing
// as free or allocated.
static inline uint64_t stack_take_run(struct km_frame_allocator *fa, uint64_t c)
{
    uint64_t run = fa->stack[c];
    fa->stack[c] = snode(run)->next;
    for (uint64_t i = 0; i <= c; i++)
        snode(run + i * KM_PAGE_SIZE)->marker = 0;
    stack_count(fa, -(c + 1), -1);
    return run;
}

// Pops the top run of `count` frames into *phys and stops counting it as free; 0 when that stack
// is empty (or count is out of the stack's range), else 1.
static inline int stack_pop(struct km_frame_allocator *fa, uint64_t count, uint64_t *phys)
{
    if (count - 1 >= KM_FRAME_STACK_RUN_MAX || !fa->stack[count - 1])
        return 0;
    stack_debug_check_top(fa, "frames_alloc", count - 1);  // the run and the link it leaves
    *phys = stack_take_run(fa, count - 1);
    fa->free_frames -= count;
    return 1;
}
