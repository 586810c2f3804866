// The treap over the span nodes; see include/mm/frame_treap.h.
#include "mm/frame_treap.h"

// splitmix64 finaliser: a well-mixed priority from the node's address, deterministic across runs.
uint64_t mix(uint64_t x)
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

uint64_t treap_insert(uint64_t t, uint64_t p)
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

uint64_t treap_remove(uint64_t t, uint64_t key)
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
uint64_t treap_move(uint64_t t, uint64_t from, uint64_t to)
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

// In-order walk checking key order and the heap property; bounded by `limit` nodes.
void treap_check(uint64_t t, uint64_t lo, uint64_t hi, struct walk *w, uint64_t limit)
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

