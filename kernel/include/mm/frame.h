// The frame allocator: physical 4 KiB frames, tracked only while they are free (kernel/mm/frame.c
// and kernel/mm/frame_stack.c; docs/design.md §4 and §14). A hybrid of two halves, both living in
// the free frames themselves, with no side memory:
//
//   - Spans. Every run of contiguous free frames in the span half keeps its node, struct
//     km_frame_span, in its own first frame, reached through the offset map. The nodes form a doubly
//     linked list sorted by address and, over the same nodes, a treap keyed by address (left,
//     right, priority) so that inserting a run finds its neighbours in O(log spans). Spans are
//     always coalesced: no two spans touch.
//   - The stack. A free of 1..KM_FRAME_STACK_RUN_MAX (16) frames pushes the run onto the LIFO stack
//     of runs of that length, touching only the run's own frames: O(1) in the number of spans. Each
//     of its frames carries a free marker that includes the frame's own address (struct
//     km_frame_stack), so a double free of a stacked frame is found in O(1). The stack is folded
//     into the spans lazily: when it holds more than stack_limit frames, when a request cannot be
//     met otherwise, before a longer free or an add, and by frames_fold().
//
// Node and state layouts are declared once, in kmtool/schemas/frames.py, and generated into
// <km/structs.h>; kmtool inspect decodes them from a dump with the same schemas. free_frames counts
// the frames of both halves.
//
// Guarantees and failure behaviour:
//   - frames_alloc() returns `want` contiguous frames whenever a stacked run or a span (after a fold)
//     holds that many: the top run of the stack for exactly `want` frames, else the top of the
//     lowest span that fits (first fit). Only when no run holds `want` does it return fewer: the
//     whole largest span. KM_ENOMEM when no frame is free.
//   - frames_free() of a range that is already free, in whole ("double free") or in part
//     ("overlapping free"), panics naming the first frame of the range that is free; so does
//     freeing frame 0, a misaligned address or a frame beyond the allocator's limit. The check
//     happens before the free changes anything (a free of more than 16 frames folds the stack first,
//     which moves frames between the halves but frees or takes none).
//   - Frame 0 is never managed: physical address 0 means "none" in the list, the treap and the stack.
#pragma once

#include <km/structs.h>

#include "mm/env.h"

// Starts an empty allocator that accepts frames in [KM_PAGE_SIZE, limit).
void frames_init(struct km_frame_allocator *fa, uint64_t limit);

// Hands `count` frames at `phys` to the allocator for the first time (counted in managed_frames).
// Frame 0 is dropped from the range, as is anything at or above the limit. Panics like frames_free()
// when the range overlaps frames it already holds.
void frames_add(struct km_frame_allocator *fa, uint64_t phys, uint64_t count);

// Takes `want` contiguous frames (fewer only when no run holds `want`, see above): *phys = first
// frame, *got = number taken (1..want). Returns KM_OK, KM_EINVAL (want == 0) or KM_ENOMEM.
int frames_alloc(struct km_frame_allocator *fa, uint64_t want, uint64_t *phys, uint64_t *got);

// Takes exactly `count` contiguous frames, as frames_alloc() does when some run holds them.
// Returns KM_OK, KM_EINVAL (count == 0) or KM_ENOMEM (no run is big enough, even after a fold).
int frames_alloc_contig(struct km_frame_allocator *fa, uint64_t count, uint64_t *phys);

// Returns `count` frames at `phys`: onto the stack when count <= KM_FRAME_STACK_RUN_MAX, else into
// the spans, coalescing with both neighbours. Panics as described above.
void frames_free(struct km_frame_allocator *fa, uint64_t phys, uint64_t count);

// Moves every stacked run into the spans and empties the stack (counted in `folds` when it was not
// empty). Returns the number of runs moved. O(runs x log spans).
uint64_t frames_fold(struct km_frame_allocator *fa);

// The first span (lowest address) and the one after `s`, or NULL.
const struct km_frame_span *frames_first(const struct km_frame_allocator *fa);
const struct km_frame_span *frames_next(const struct km_frame_span *s);

// The ready report's "span_hash": Horner's rule h = h * KM_SPAN_HASH_MULTIPLIER + w (mod 2^64) from
// h = 0 over the words start, count of every span in list order (defined in
// kmtool/schemas/frames.py, which kmtool inspect recomputes).
uint64_t frames_span_hash(const struct km_frame_allocator *fa);

// Checks every invariant (magic, sorted, coalesced, counters, treap order and links, every stacked
// frame marked and outside the spans). Returns 0 when
// all hold, else writes a reason to `why` (size `n`) and returns -1. O(spans); for tests.
int frames_validate(const struct km_frame_allocator *fa, char *why, size_t n);
