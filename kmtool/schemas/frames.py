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

The stack half (docs/design.md §14). A free of at most STACK_RUN_MAX frames does not touch the spans:
the run goes onto one of STACK_RUN_MAX LIFO stacks, `FrameAllocator.stack[c - 1]` for runs of c
frames, threaded through the runs themselves. Every frame of a stacked run holds a `FrameStack`
node at `stack_node_offset(frame)` inside the frame: `marker` is FRAME_STACK_MAGIC ^ the frame's own
physical address ^ `FrameAllocator.stack_key` (the free marker; cleared when the frame leaves the
stack), `run` the run's first frame, `count` its length; in the run's first frame `next` is the run
below it on the same stack (0 at the bottom). The stack is folded into the spans (every run
inserted, the stack emptied) when it holds more than `stack_limit` frames, when a request cannot be
met otherwise, before a free or add of more than STACK_RUN_MAX frames, and on request (the ready
report folds first). `free_frames` counts the frames in the spans and on the stack; `stack_frames`
the latter alone.
"""

from construct import Array, Default, Int64ul, Struct

FRAME_SPAN_MAGIC = int.from_bytes(b"KMSPAN\x00\x01", "little")

#: The stack's free marker before the frame address and the key are mixed in.
FRAME_STACK_MAGIC = int.from_bytes(b"KMSTACK\x01", "little")

#: Runs of at most this many frames go onto the stack; one stack per length.
STACK_RUN_MAX = 16

#: The default `stack_limit`: past this many stacked frames (1 GiB) the stack is folded.
STACK_LIMIT_DEFAULT = 1 << 18

#: A stacked frame's node sits at one of this many 64-byte lines of the frame, chosen by the frame
#: number (`stack_node_offset`), so that the nodes of neighbouring frames use different cache sets.
STACK_NODE_COLOURS = 64


def stack_node_offset(phys: int) -> int:
    """Byte offset of the `FrameStack` node inside the stacked frame at physical address `phys`."""
    return ((phys >> 12) % STACK_NODE_COLOURS) * 64


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

FrameStack = Struct(
    "marker" / Int64ul * "KM_FRAME_STACK_MAGIC ^ this frame's physical address ^ stack_key",
    "run" / Int64ul * "physical address of the stacked run's first frame",
    "count" / Int64ul * "frames in the run (1..KM_FRAME_STACK_RUN_MAX), the same in each frame",
    "next" / Int64ul * "first frame only: the run below on the same stack, 0 at the bottom",
)

# The stack fields come last and default to 0 when a state is built (an empty stack), so that a
# state built without them (an older kernel's, or a test's) still reads as a span-only allocator.
FrameAllocator = Struct(
    "head" / Int64ul * "physical address of the lowest span, 0 when no frame is free",
    "free_frames" / Int64ul * "number of free frames, in the spans and on the stack",
    "spans" / Int64ul * "number of spans in the list",
    "managed_frames" / Int64ul * "frames ever handed to the allocator (free or allocated)",
    "alloc_calls" / Int64ul * "successful allocation calls",
    "free_calls" / Int64ul * "free calls",
    "root" / Int64ul * "physical address of the treap's root node, 0 when no frame is free",
    "limit" / Int64ul * "every managed frame lies below this physical address",
    "stack_frames" / Default(Int64ul, 0) * "frames on the stack (counted in free_frames too)",
    "stack_runs" / Default(Int64ul, 0) * "runs on the stack: the stack depth",
    "stack_limit"
    / Default(Int64ul, 0)
    * "the stack is folded into the spans when it holds more frames",
    "folds" / Default(Int64ul, 0) * "folds of a non-empty stack into the spans",
    "stack_key"
    / Default(Int64ul, 0)
    * "mixed into every free marker; chosen when the allocator starts",
    "stack" / Default(Array(STACK_RUN_MAX, Int64ul), [0] * STACK_RUN_MAX) * "top run of the "
    "stack of runs of i + 1 frames, 0 empty",
)
