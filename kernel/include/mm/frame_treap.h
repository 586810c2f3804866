// The treap over the span nodes (kernel/mm/frame_treap.c), private to the frame allocator: keys are
// the nodes' own physical addresses, `priority` is in heap order (kmtool/schemas/frames.py). Each
// function takes a root and returns the new root.
#pragma once

#include "mm/frame.h"

static inline struct km_frame_span *node(uint64_t phys)
{
    return (struct km_frame_span *)phys_to_virt(phys);
}

// The address just past span `n`'s last frame.
static inline uint64_t span_end(const struct km_frame_span *n)
{
    return n->start + n->count * KM_PAGE_SIZE;
}

// A well-mixed priority from a node's address, deterministic across runs.
uint64_t mix(uint64_t x);

// Inserts node `p` (left, right and priority set by the caller).
uint64_t treap_insert(uint64_t t, uint64_t p);

// Removes the node keyed `key`; panics when it is missing.
uint64_t treap_remove(uint64_t t, uint64_t key);

// Puts the node at `to` in the place of the node keyed `from`. The caller guarantees that `to` sorts
// between the neighbours of `from`, so the tree order stays valid.
uint64_t treap_move(uint64_t t, uint64_t from, uint64_t to);

// The node with the greatest start <= addr, or 0. Inline: every free of a short run asks it once.
static inline uint64_t treap_floor(uint64_t t, uint64_t addr)
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

struct walk {
    uint64_t count;     // nodes visited
    int bad;            // 1: out of order or too many nodes, 2: heap property broken
};

// In-order walk checking key order and the heap property; bounded by `limit` nodes.
void treap_check(uint64_t t, uint64_t lo, uint64_t hi, struct walk *w, uint64_t limit);
