// The frame allocator: physical 4 KiB frames, tracked only while they are free (kernel/mm/frame.c).
//
// Every run of contiguous free frames (a span) keeps its node, struct km_frame_span, in its own
// first frame, reached through the offset map. The nodes form a doubly linked list sorted by
// address and, over the same nodes, a treap keyed by address (left, right, priority) so that a free
// finds its neighbours in O(log spans). Node and state (struct km_frame_allocator: list head, treap
// root, counters, limit) are declared once, in kmtool/schemas/frames.py, and generated into
// <km/structs.h>; kmtool inspect decodes them from a dump with the same schemas. Spans are always
// coalesced: no two spans touch. Allocation pops frames off the top of the first (lowest) span,
// like a stack, so that span's node never moves. Nothing else records which frames exist or who
// owns them.
//
// Guarantees and failure behaviour:
//   - frames_alloc() returns between 1 and `want` contiguous frames, or KM_ENOMEM when none is free.
//   - frames_free() of a range that is already free, in whole ("double free") or in part
//     ("overlapping free"), panics naming the first frame of the range that is free; so does
//     freeing frame 0, a misaligned address or a frame beyond the allocator's limit. The check
//     happens before anything changes.
//   - Frame 0 is never managed: physical address 0 means "none" in the list and the treap.
#pragma once

#include <km/structs.h>

#include "mm/env.h"

// Starts an empty allocator that accepts frames in [KM_PAGE_SIZE, limit).
void frames_init(struct km_frame_allocator *fa, uint64_t limit);

// Hands `count` frames at `phys` to the allocator for the first time (counted in managed_frames).
// Frame 0 is dropped from the range, as is anything at or above the limit. Panics like frames_free()
// when the range overlaps frames it already holds.
void frames_add(struct km_frame_allocator *fa, uint64_t phys, uint64_t count);

// Takes up to `want` frames off the top of the first span: *phys = first frame, *got = number taken
// (1..want, fewer when the first span is smaller). Returns KM_OK, KM_EINVAL (want == 0) or KM_ENOMEM.
int frames_alloc(struct km_frame_allocator *fa, uint64_t want, uint64_t *phys, uint64_t *got);

// Takes exactly `count` contiguous frames from the top of the lowest span that has that many.
// Returns KM_OK, KM_EINVAL (count == 0) or KM_ENOMEM (no span is big enough).
int frames_alloc_contig(struct km_frame_allocator *fa, uint64_t count, uint64_t *phys);

// Returns `count` frames at `phys`, coalescing with both neighbours. Panics as described above.
void frames_free(struct km_frame_allocator *fa, uint64_t phys, uint64_t count);

// The first span (lowest address) and the one after `s`, or NULL.
const struct km_frame_span *frames_first(const struct km_frame_allocator *fa);
const struct km_frame_span *frames_next(const struct km_frame_span *s);

// The ready report's "span_hash": Horner's rule h = h * KM_SPAN_HASH_MULTIPLIER + w (mod 2^64) from
// h = 0 over the words start, count of every span in list order (defined in
// kmtool/schemas/frames.py, which kmtool inspect recomputes).
uint64_t frames_span_hash(const struct km_frame_allocator *fa);

// Checks every invariant (magic, sorted, coalesced, counters, treap order and links). Returns 0 when
// all hold, else writes a reason to `why` (size `n`) and returns -1. O(spans); for tests.
int frames_validate(const struct km_frame_allocator *fa, char *why, size_t n);
