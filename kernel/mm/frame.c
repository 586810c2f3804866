// The frame allocator; the contract is in include/mm/frame.h.
//
// Span nodes (struct km_frame_span, generated from kmtool/schemas/frames.py) are addressed by
// physical address; node(p) reaches one through the offset map (or the host test arena). The list
// gives order and neighbours; the treap gives the predecessor of an address in O(log spans). All
// checks run before the first write, so a panic leaves the lists intact.
#include "mm/frame.h"

#define FRAME KM_PAGE_SIZE

static struct km_frame_span *node(uint64_t phys)
{
    return (struct km_frame_span *)phys_to_virt(phys);
}

static uint64_t span_end(const struct km_frame_span *n)
{
    return n->start + n->count * FRAME;
}

// splitmix64 finaliser: a well-mixed priority from the node's address, deterministic across runs.
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* ---- treap over span start addresses (keys are the nodes' own addresses) ---- */

static uint64_t rotate_right(uint64_t t)
{
    uint64_t l = node(t)->left;
    node(t)->left = node(l)->right;
    node(l)->right = t;
    return l;
}

static uint64_t rotate_left(uint64_t t)
{
    uint64_t r = node(t)->right;
    node(t)->right = node(r)->left;
    node(r)->left = t;
    return r;
}

static uint64_t treap_insert(uint64_t t, uint64_t p)
{
    if (!t)
        return p;
    if (p < t) {
        node(t)->left = treap_insert(node(t)->left, p);
        if (node(node(t)->left)->priority > node(t)->priority)
            t = rotate_right(t);
    } else {
        node(t)->right = treap_insert(node(t)->right, p);
        if (node(node(t)->right)->priority > node(t)->priority)
            t = rotate_left(t);
    }
    return t;
}

// Joins two treaps where every key of `a` is below every key of `b`.
static uint64_t treap_join(uint64_t a, uint64_t b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    if (node(a)->priority > node(b)->priority) {
        node(a)->right = treap_join(node(a)->right, b);
        return a;
    }
    node(b)->left = treap_join(a, node(b)->left);
    return b;
}

static uint64_t treap_remove(uint64_t t, uint64_t key)
{
    if (!t)
        panic("frames: span 0x%lx missing from the index", key);
    if (key < t)
        node(t)->left = treap_remove(node(t)->left, key);
    else if (key > t)
        node(t)->right = treap_remove(node(t)->right, key);
    else
        t = treap_join(node(t)->left, node(t)->right);
    return t;
}

// Puts the node at `to` in the place of the node keyed `from`. The caller guarantees that `to` sorts
// between the neighbours of `from`, so the tree order stays valid.
static uint64_t treap_move(uint64_t t, uint64_t from, uint64_t to)
{
    if (!t)
        panic("frames: span 0x%lx missing from the index", from);
    if (from < t) {
        node(t)->left = treap_move(node(t)->left, from, to);
        return t;
    }
    if (from > t) {
        node(t)->right = treap_move(node(t)->right, from, to);
        return t;
    }
    node(to)->left = node(t)->left;
    node(to)->right = node(t)->right;
    node(to)->priority = node(t)->priority;
    return to;
}

// The node with the greatest start <= addr, or 0.
static uint64_t treap_floor(uint64_t t, uint64_t addr)
{
    uint64_t best = 0;
    while (t) {
        if (t <= addr) {
            best = t;
            t = node(t)->right;
        } else {
            t = node(t)->left;
        }
    }
    return best;
}

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
}

// The checks shared by free and add; panics before anything changes.
static void check_free(const struct km_frame_allocator *fa, const char *who, uint64_t phys,
                       uint64_t count, uint64_t *pred_out, uint64_t *succ_out)
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
    uint64_t end = phys + count * FRAME;
    uint64_t pred = treap_floor(fa->root, phys);
    uint64_t succ = pred ? node(pred)->next : fa->head;
    if (pred && span_end(node(pred)) > phys) {
        const char *kind = span_end(node(pred)) >= end ? "double free" : "overlapping free";
        panic("%s: %s of frame 0x%lx (already free in span 0x%lx, %lu frames)", who, kind, phys,
              pred, node(pred)->count);
    }
    if (succ && succ < end) {
        const char *kind =
            succ == phys && span_end(node(succ)) >= end ? "double free" : "overlapping free";
        panic("%s: %s of frame 0x%lx (already free in span 0x%lx, %lu frames)", who, kind, succ,
              succ, node(succ)->count);
    }
    *pred_out = pred;
    *succ_out = succ;
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
    fa->free_frames += count;
    return join_prev ? pred : phys;
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
    uint64_t pred, succ;
    check_free(fa, "frames_add", phys, count, &pred, &succ);
    uint64_t span = insert_range(fa, phys, count, pred, succ);
    fa->managed_frames += count;
    debug_check_around(fa, "frames_add", span);
    (void)span;
}

void frames_free(struct km_frame_allocator *fa, uint64_t phys, uint64_t count)
{
    uint64_t pred, succ;
    check_free(fa, "frames_free", phys, count, &pred, &succ);
    uint64_t span = insert_range(fa, phys, count, pred, succ);
    fa->free_calls++;
    debug_check_around(fa, "frames_free", span);
    (void)span;
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

int frames_alloc(struct km_frame_allocator *fa, uint64_t want, uint64_t *phys, uint64_t *got)
{
    if (want == 0)
        return KM_EINVAL;
    uint64_t p = fa->head;
    if (!p)
        return KM_ENOMEM;
    uint64_t take = node(p)->count < want ? node(p)->count : want;
    *phys = take_top(fa, p, take);
    *got = take;
    return KM_OK;
}

int frames_alloc_contig(struct km_frame_allocator *fa, uint64_t count, uint64_t *phys)
{
    if (count == 0)
        return KM_EINVAL;
    for (uint64_t p = fa->head; p; p = node(p)->next) {
        if (node(p)->count >= count) {
            *phys = take_top(fa, p, count);
            return KM_OK;
        }
    }
    return KM_ENOMEM;
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

/* ---- validation (tests) ---- */

struct walk {
    uint64_t count;     // nodes visited
    int bad;            // 1: out of order or too many nodes, 2: heap property broken
};

// In-order walk checking key order and the heap property; bounded by `limit` nodes.
static void treap_check(uint64_t t, uint64_t lo, uint64_t hi, struct walk *w, uint64_t limit)
{
    if (!t || w->bad)
        return;
    if (t < lo || t > hi || ++w->count > limit) {
        w->bad = 1;
        return;
    }
    const struct km_frame_span *n = node(t);
    if ((n->left && node(n->left)->priority > n->priority) ||
        (n->right && node(n->right)->priority > n->priority)) {
        w->bad = 2;
        return;
    }
    treap_check(n->left, lo, t - 1, w, limit);
    treap_check(n->right, t + 1, hi, w, limit);
}

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
    if (frames != fa->free_frames)
        return VALIDATE_FAIL("list has %lu frames, counter says %lu", (unsigned long)frames,
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
    return 0;
}
