"""The frame allocator's state and the node it keeps inside each free span (docs/design.md §4.2).

Each span (a run of contiguous free 4 KiB frames) stores one `FrameSpan` at the start of its own first
frame, reached through the offset map. The nodes are linked twice, and both structures live entirely
in the free frames:

- a doubly linked list in ascending address order: `next`/`prev` are physical addresses of the
  neighbouring nodes (equal to those spans' starts), 0 at the ends; `FrameAllocator.head` is the
  lowest span. Allocation and the ready report follow the list.
- a treap keyed by span start address, so that a free finds its neighbours in O(log spans):
  `left`/`right` are the physical addresses of the child nodes (0 for none), `FrameAllocator.root`
  the root. Keys are in binary-search-tree order (left subtree < node < right subtree) and
  `priority` is in heap order (a parent's priority >= its children's). A node's priority is a hash
  of the address it was created at and stays with it when the node moves down with its span.
  Every span on the list is in the treap exactly once and nothing else is.

Frame 0 is never managed, so 0 can mean "none".

The span hash (the ready report's "span_hash"; kmtool inspect recomputes it from a dump): take the
u64 words w_1 .. w_M = start, count of the first span, start, count of the second, ... in list order
(M = 2 x spans) and compute

    h = sum(w_i * P^(M - i) for i = 1 .. M) mod 2^64,    P = SPAN_HASH_MULTIPLIER (odd)

that is, Horner's rule h = h * P + w over the words from h = 0 (so no spans hash to 0). It is a
polynomial hash over the integers mod 2^64: one vectorised pass in numpy (uint64 arithmetic wraps;
the powers of P by a cumulative product) over any number of spans, and two multiply-adds a span in
the kernel. Printed as "0x" and 16 hex digits.
"""

from construct import Int64ul, Struct

FRAME_SPAN_MAGIC = int.from_bytes(b"KMSPAN\x00\x01", "little")

#: P of the span hash: an odd 64-bit multiplier (2^64 / golden ratio, truncated; it is odd).
SPAN_HASH_MULTIPLIER = 0x9E3779B97F4A7C15

FrameSpan = Struct(
    "magic" / Int64ul * "KM_FRAME_SPAN_MAGIC",
    "start" / Int64ul * "physical address of the span's first frame (= this node's address)",
    "count" / Int64ul * "number of free 4 KiB frames in the span",
    "next" / Int64ul * "physical address of the next span (higher address), 0 at the end",
    "prev" / Int64ul * "physical address of the previous span (lower address), 0 at the head",
    "left" / Int64ul * "treap: physical address of the left child (lower addresses), 0 for none",
    "right" / Int64ul * "treap: physical address of the right child (higher addresses), 0 for none",
    "priority" / Int64ul * "treap: heap key, >= the children's; hash of the address it was made at",
)

FrameAllocator = Struct(
    "head" / Int64ul * "physical address of the lowest span, 0 when no frame is free",
    "free_frames" / Int64ul * "number of free frames in all spans",
    "spans" / Int64ul * "number of spans in the list",
    "managed_frames" / Int64ul * "frames ever handed to the allocator (free or allocated)",
    "alloc_calls" / Int64ul * "successful allocation calls",
    "free_calls" / Int64ul * "free calls",
    "root" / Int64ul * "physical address of the treap's root node, 0 when no frame is free",
    "limit" / Int64ul * "every managed frame lies below this physical address",
)
