// The frame allocator's span half and its public interface; the contract is in include/mm/frame.h,
// the stack half is kernel/mm/frame_stack.c (docs/design.md §14).
//
// Span nodes (struct km_frame_span, generated from kmtool/schemas/frames.py) are addressed by
// physical address; node(p) reaches one through the offset map (or the host test arena). The list
// gives order and neighbours; the treap gives the predecessor of an address in O(log spans). All
// checks run before the first write, so a panic leaves the lists intact.
#include "mm/frame.h"
#include "mm/frame_stack.h"
#include "mm/frame_treap.h"

#define FRAME KM_PAGE_SIZE

/* ---- list helpers ---- */

// Links the fresh node `p` between `prev` and `next` (either may be 0).
static void list_link(struct km_frame_allocator *fa, uint64_t p, uint64_t prev, uint64_t next)
{
    node(p)->prev = prev;
    node(p)->next = next;
    if (prev)
        node(prev)->next = p;
    else
        fa->head = p;
    if (next)
        node(next)->prev = p;
}

static void list_unlink(struct km_frame_allocator *fa, uint64_t p)
{
    uint64_t prev = node(p)->prev, next = node(p)->next;
    if (prev)
        node(prev)->next = next;
    else
        fa->head = next;
    if (next)
        node(next)->prev = prev;
}

// Removes a whole span from the list and the index and wipes its node.
static void span_remove(struct km_frame_allocator *fa, uint64_t p)
{
    list_unlink(fa, p);
    fa->root = treap_remove(fa->root, p);
    node(p)->magic = 0;
    fa->spans--;
}

/* ---- debug-only checks (KM_DEBUG) ---- */

#if KM_DEBUG
// A link from span `p` (its `what` field) that must name another span: frame aligned, not 0, below
// the limit, on the right side of `p`. Checked before the node it names is read.
static void debug_check_link(const struct km_frame_allocator *fa, const char *who, uint64_t p,
                             const char *what, uint64_t link, int above)
{
    if ((link & KM_PAGE_MASK) || link >= fa->limit || (above ? link <= p : link >= p))
        panic("%s: span 0x%lx: %s 0x%lx is not a span address %s it", who, p, what, link,
              above ? "above" : "below");
}

// Span `p` and its links to both neighbours: magic, start == own address, count in range, prev/next
// symmetric, neighbours strictly ordered and not adjacent (they would have been coalesced).
static void debug_check_span(const struct km_frame_allocator *fa, const char *who, uint64_t p)
{
    const struct km_frame_span *n = node(p);
    if (n->magic != KM_FRAME_SPAN_MAGIC)
        panic("%s: span 0x%lx: bad magic 0x%lx", who, p, n->magic);
    if (n->start != p)
        panic("%s: span 0x%lx: start is 0x%lx, not its own address", who, p, n->start);
    if (n->count == 0 || n->count > (fa->limit - p) / FRAME)
        panic("%s: span 0x%lx: count %lu out of range (limit 0x%lx)", who, p, n->count,
              fa->limit);
    if (n->prev) {
        debug_check_link(fa, who, p, "prev", n->prev, 0);
        const struct km_frame_span *pn = node(n->prev);
        if (pn->magic != KM_FRAME_SPAN_MAGIC)
            panic("%s: span 0x%lx: prev 0x%lx has bad magic 0x%lx", who, p, n->prev, pn->magic);
        if (pn->next != p)
            panic("%s: span 0x%lx: prev 0x%lx has next 0x%lx", who, p, n->prev, pn->next);
        if (pn->count > (p - n->prev) / FRAME - 1)
            panic("%s: span 0x%lx: prev 0x%lx (%lu frames) reaches or overlaps it", who, p,
                  n->prev, pn->count);
    } else if (fa->head != p) {
        panic("%s: span 0x%lx: prev is 0 but the head is 0x%lx", who, p, fa->head);
    }
    if (n->next) {
        debug_check_link(fa, who, p, "next", n->next, 1);
        const struct km_frame_span *nn = node(n->next);
        if (nn->magic != KM_FRAME_SPAN_MAGIC)
            panic("%s: span 0x%lx: next 0x%lx has bad magic 0x%lx", who, p, n->next, nn->magic);
        if (nn->prev != p)
            panic("%s: span 0x%lx: next 0x%lx has prev 0x%lx", who, p, n->next, nn->prev);
        if (n->count > (n->next - p) / FRAME - 1)
            panic("%s: span 0x%lx (%lu frames) reaches or overlaps next 0x%lx", who, p, n->count,
                  n->next);
    }
}

// The counters, after an operation: none wrapped below zero, empty exactly when there is no span.
static void debug_check_counters(const struct km_frame_allocator *fa, const char *who)
{
    // (frames_free may return frames never added, so free_frames may exceed managed_frames.)
    if ((int64_t)fa->free_frames < 0 || (int64_t)fa->managed_frames < 0 ||
        fa->spans > fa->free_frames)
        panic("%s: counters out of range: free_frames %lu, managed_frames %lu, spans %lu", who,
              fa->free_frames, fa->managed_frames, fa->spans);
    if ((fa->head == 0) != (fa->spans == 0) || (fa->root == 0) != (fa->spans == 0))
        panic("%s: head 0x%lx and root 0x%lx disagree with spans %lu", who, fa->head, fa->root,
              fa->spans);
    if (fa->head && node(fa->head)->prev != 0)
        panic("%s: head span 0x%lx has prev 0x%lx", who, fa->head, node(fa->head)->prev);
}

// The neighbourhood an operation touched: span `p` (0: none left there) and the counters.
static void debug_check_around(const struct km_frame_allocator *fa, const char *who, uint64_t p)
{
    debug_check_counters(fa, who);
    if (p) {
        debug_check_span(fa, who, p);
        if (node(p)->count > fa->free_frames)
            panic("%s: span 0x%lx has %lu frames, free_frames is %lu", who, p, node(p)->count,
                  fa->free_frames);
    }
}
#else
#define debug_check_around(fa, who, p) ((void)0)
#endif

/* ---- public interface ---- */

void frames_init(struct km_frame_allocator *fa, uint64_t limit)
{
    memset(fa, 0, sizeof(*fa));
    fa->limit = align_down(limit, FRAME);
    stack_init(fa);
}

// Is frame `f` inside a span? O(log spans); for the reports of bad frees.
static int in_a_span(const struct km_frame_allocator *fa, uint64_t f)
{
    uint64_t p = treap_floor(fa->root, f);
    return p && span_end(node(p)) > f;
}

// A free of [phys, phys + count) that meets free frames: `in_span` is the first of them in a span,
// `stacked` the first on the stack (0: none). Names the first free frame of the range; "double free"
// when every frame of it is free already.
_Noreturn static void bad_free(const struct km_frame_allocator *fa, const char *who, uint64_t phys,
                               uint64_t count, uint64_t in_span, uint64_t stacked)
{
    int all_free = 1;
    for (uint64_t i = 0; i < count && all_free; i++) {
        uint64_t f = phys + i * FRAME;
        all_free = stack_holds(fa, f) || in_a_span(fa, f);
    }
    const char *kind = all_free ? "double free" : "overlapping free";
    if (in_span && (!stacked || in_span < stacked)) {
        uint64_t p = treap_floor(fa->root, in_span);
        panic("%s: %s of frame 0x%lx (already free in span 0x%lx, %lu frames)", who, kind, in_span,
              p, node(p)->count);
    }
    const struct km_frame_stack *n = snode(stacked);
    panic("%s: %s of frame 0x%lx (already free on the stack, in the run at 0x%lx, %lu frames)", who,
          kind, stacked, n->run, n->count);
}

// The address checks shared by free and add.
static void check_range(const struct km_frame_allocator *fa, const char *who, uint64_t phys,
                        uint64_t count)
{
    if (phys & KM_PAGE_MASK)
        panic("%s: address 0x%lx is not frame aligned", who, phys);
    if (count == 0)
        panic("%s: zero frames at 0x%lx", who, phys);
    if (phys == 0)
        panic("%s: frame 0x0 is never managed", who);
    if (phys >= fa->limit || count > (fa->limit - phys) / FRAME)
        panic("%s: frames 0x%lx + %lu reach past the allocator limit 0x%lx", who, phys, count,
              fa->limit);
}

// The first frame of the range that lies in a span (0: none) and the range's span neighbours for
// insert_range(). O(log spans).
static uint64_t span_overlap(const struct km_frame_allocator *fa, uint64_t phys, uint64_t count,
                             uint64_t *pred_out, uint64_t *succ_out)
{
    uint64_t end = phys + count * FRAME;
    uint64_t pred = treap_floor(fa->root, phys);
    uint64_t succ = pred ? node(pred)->next : fa->head;
    *pred_out = pred;
    *succ_out = succ;
    if (pred && span_end(node(pred)) > phys)
        return phys;
    return succ && succ < end ? succ : 0;
}

// Panics when any frame of the range is free already, in a span (found through the treap) or on
// the stack (its marker, one read per frame). Nothing has changed when it does.
static void check_free(const struct km_frame_allocator *fa, const char *who, uint64_t phys,
                       uint64_t count, uint64_t *pred_out, uint64_t *succ_out)
{
    uint64_t in_span = span_overlap(fa, phys, count, pred_out, succ_out);
    uint64_t stacked = stack_first_held(fa, phys, count);
    if (in_span || stacked)
        bad_free(fa, who, phys, count, in_span, stacked);
}

// Returns the span that now holds the range.
static uint64_t insert_range(struct km_frame_allocator *fa, uint64_t phys, uint64_t count,
                             uint64_t pred, uint64_t succ)
{
    uint64_t end = phys + count * FRAME;
    int join_prev = pred && span_end(node(pred)) == phys;
    int join_next = succ && succ == end;

    if (join_prev && join_next) {
        node(pred)->count += count + node(succ)->count;
        span_remove(fa, succ);
    } else if (join_prev) {
        node(pred)->count += count;
    } else if (join_next) {
        // The span grows downwards: its node moves to the new first frame.
        struct km_frame_span *n = node(phys), *old = node(succ);
        n->magic = KM_FRAME_SPAN_MAGIC;
        n->start = phys;
        n->count = count + old->count;
        uint64_t prev = old->prev, next = old->next;
        fa->root = treap_move(fa->root, succ, phys);
        old->magic = 0;
        list_link(fa, phys, prev, next);
    } else {
        struct km_frame_span *n = node(phys);
        n->magic = KM_FRAME_SPAN_MAGIC;
        n->start = phys;
        n->count = count;
        n->left = n->right = 0;
        n->priority = mix(phys);
        list_link(fa, phys, pred, succ);
        fa->root = treap_insert(fa->root, phys);
        fa->spans++;
    }
    return join_prev ? pred : phys;
}

void span_insert(struct km_frame_allocator *fa, uint64_t phys, uint64_t count)
{
    uint64_t pred = treap_floor(fa->root, phys);
    uint64_t succ = pred ? node(pred)->next : fa->head;
#if KM_DEBUG
    check_free(fa, "frames_fold", phys, count, &pred, &succ);
#endif
    uint64_t span = insert_range(fa, phys, count, pred, succ);
    debug_check_around(fa, "frames_fold", span);
    (void)span;
}

void frames_add(struct km_frame_allocator *fa, uint64_t phys, uint64_t count)
{
    if (phys == 0 && count) {
        phys = FRAME;
        count--;
    }
    if (phys >= fa->limit)
        return;
    if (count > (fa->limit - phys) / FRAME)
        count = (fa->limit - phys) / FRAME;
    if (count == 0)
        return;
    check_range(fa, "frames_add", phys, count);
    frames_fold(fa);  // a no-op while setting up: nothing is stacked before the first free
    uint64_t pred, succ;
    check_free(fa, "frames_add", phys, count, &pred, &succ);
    uint64_t span = insert_range(fa, phys, count, pred, succ);
    fa->free_frames += count;
    fa->managed_frames += count;
    debug_check_around(fa, "frames_add", span);
    (void)span;
}

// Every free the fast path of frames_free() does not finish: bad addresses and bad frees (which
// panic here, after the checks are made again in full), and runs longer than the stack takes.
__attribute__((noinline, cold)) static void free_slow(struct km_frame_allocator *fa, uint64_t phys,
                                                      uint64_t count)
{
    uint64_t pred, succ;
    check_range(fa, "frames_free", phys, count);
    if (count <= KM_FRAME_STACK_RUN_MAX) {
        // The fast path's tests are these, so one of them fails here.
        uint64_t in_span = span_overlap(fa, phys, count, &pred, &succ);
        uint64_t stacked = stack_first_held(fa, phys, count);
        if (in_span || stacked)
            bad_free(fa, "frames_free", phys, count, in_span, stacked);
        panic("frames_free: frames 0x%lx + %lu: the fast path refused a free the full checks allow",
              phys, count);
    }
    frames_fold(fa);  // a long run: checked against the spans alone
    check_free(fa, "frames_free", phys, count, &pred, &succ);
    uint64_t span = insert_range(fa, phys, count, pred, succ);
    fa->free_frames += count;
    fa->free_calls++;
    debug_check_around(fa, "frames_free", span);
    (void)span;
}

// The fast path: a run of 1..16 frames inside the limit, which no span holds (the span at or below
// its last frame ends at or below its first) and no frame of which is stacked (stack_push checks
// every marker before it writes one), goes onto the stack. Anything else is free_slow()'s.
void frames_free(struct km_frame_allocator *fa, uint64_t phys, uint64_t count)
{
    uint64_t end = phys + count * FRAME;
    // phys - 1 < limit - 1: frame 0 and frames at or above the limit fail, and then end cannot wrap.
    if (__builtin_expect(count - 1 < KM_FRAME_STACK_RUN_MAX && !(phys & KM_PAGE_MASK) &&
                             phys - 1 < fa->limit - 1 && end <= fa->limit, 1)) {
        uint64_t pred = treap_floor(fa->root, end - FRAME);
        if (!pred || span_end(node(pred)) <= phys) {
#if KM_DEBUG
            // The spans around the run: checked although the run does not join them.
            uint64_t succ = pred ? node(pred)->next : fa->head;
            if (pred)
                debug_check_span(fa, "frames_free", pred);
            if (succ)
                debug_check_span(fa, "frames_free", succ);
#endif
            // (count == 1 spelled out, so that the single frame gets its own straight-line push.)
            if (!(count == 1 ? stack_push(fa, phys, 1) : stack_push(fa, phys, count))) {
                fa->free_calls++;
                if (__builtin_expect(fa->stack_frames > fa->stack_limit, 0))
                    frames_fold(fa);
                return;
            }
        }
    }
    free_slow(fa, phys, count);
}

// Takes `take` frames off the top of span `p` (all of it when take == count).
static uint64_t take_top(struct km_frame_allocator *fa, uint64_t p, uint64_t take)
{
    struct km_frame_span *n = node(p);
    uint64_t first, left = p;
#if KM_DEBUG
    debug_check_span(fa, "frames_alloc", p);  // its links are followed below
#endif
    if (take == n->count) {
        first = p;
        left = n->next ? n->next : n->prev;  // the neighbour whose links changed (its own and
        span_remove(fa, p);                  // the other neighbour's are checked through it)
    } else {
        n->count -= take;
        first = span_end(n);
    }
    fa->free_frames -= take;
    fa->alloc_calls++;
    debug_check_around(fa, "frames_alloc", left);
    (void)left;
    return first;
}

// The lowest span holding at least `want` frames, or 0.
static uint64_t first_fit(const struct km_frame_allocator *fa, uint64_t want)
{
    for (uint64_t p = fa->head; p; p = node(p)->next) {
        if (node(p)->count >= want)
            return p;
    }
    return 0;
}

// A whole request: the stack of runs of exactly `want` frames, else the first span that fits, else
// the same after folding the stack. Returns the frames' first address, or 0 when no run holds them.
static uint64_t take_whole(struct km_frame_allocator *fa, uint64_t want)
{
    uint64_t phys;
    if (stack_pop(fa, want, &phys)) {
        fa->alloc_calls++;
        return phys;
    }
    uint64_t p = first_fit(fa, want);
    if (!p && frames_fold(fa))
        p = first_fit(fa, want);
    return p ? take_top(fa, p, want) : 0;
}

// Every allocation the fast path of frames_alloc() does not finish: the spans, a fold, a short one.
__attribute__((noinline)) static int alloc_slow(struct km_frame_allocator *fa, uint64_t want,
                                                uint64_t *phys, uint64_t *got)
{
    if (want == 0)
        return KM_EINVAL;
    uint64_t first = take_whole(fa, want);
    if (first) {
        *phys = first;
        *got = want;
        return KM_OK;
    }
    if (!fa->head)
        return KM_ENOMEM;
    // No run holds `want` frames (and the stack is folded): the largest span, whole.
    uint64_t best = fa->head;
    for (uint64_t p = node(best)->next; p; p = node(p)->next) {
        if (node(p)->count > node(best)->count)
            best = p;
    }
    *got = node(best)->count;
    *phys = take_top(fa, best, *got);
    return KM_OK;
}

// The fast path: the top run of the stack of runs of exactly `want` frames. (want == 1 spelled
// out, as in frames_free, so that the single frame gets its own straight-line pop: one marker
// cleared, no loop.)
int frames_alloc(struct km_frame_allocator *fa, uint64_t want, uint64_t *phys, uint64_t *got)
{
    if (__builtin_expect(want - 1 < KM_FRAME_STACK_RUN_MAX && fa->stack[want - 1], 1)) {
        stack_debug_check_top(fa, "frames_alloc", want - 1);
        *phys = want == 1 ? stack_take_run(fa, 0) : stack_take_run(fa, want - 1);
        *got = want;
        fa->free_frames -= want;
        fa->alloc_calls++;
        return KM_OK;
    }
    return alloc_slow(fa, want, phys, got);
}

int frames_alloc_contig(struct km_frame_allocator *fa, uint64_t count, uint64_t *phys)
{
    if (count == 0)
        return KM_EINVAL;
    uint64_t first = take_whole(fa, count);
    if (!first)
        return KM_ENOMEM;
    *phys = first;
    return KM_OK;
}

const struct km_frame_span *frames_first(const struct km_frame_allocator *fa)
{
    return fa->head ? node(fa->head) : NULL;
}

const struct km_frame_span *frames_next(const struct km_frame_span *s)
{
    return s->next ? node(s->next) : NULL;
}

uint64_t frames_span_hash(const struct km_frame_allocator *fa)
{
    uint64_t hash = 0;
    for (const struct km_frame_span *s = frames_first(fa); s; s = frames_next(s)) {
        hash = hash * KM_SPAN_HASH_MULTIPLIER + s->start;
        hash = hash * KM_SPAN_HASH_MULTIPLIER + s->count;
    }
    return hash;
}
