"""The frame allocator's state and the free-list node it keeps inside each free span (DESIGN §4).

Each span (a run of contiguous free 4 KiB frames) stores one `FrameSpan` at the start of its own first
frame, reached through the offset map. Spans are linked in ascending address order; `next`/`prev` are
physical addresses of the neighbouring nodes (equal to those spans' starts), 0 at the ends. Frame 0 is
never managed, so 0 can mean "none".
"""

from construct import Int64ul, Struct

FRAME_SPAN_MAGIC = int.from_bytes(b"KMSPAN\x00\x01", "little")

FrameSpan = Struct(
    "magic" / Int64ul * "KM_FRAME_SPAN_MAGIC",
    "start" / Int64ul * "physical address of the span's first frame (= this node's address)",
    "count" / Int64ul * "number of free 4 KiB frames in the span",
    "next" / Int64ul * "physical address of the next span (higher address), 0 at the end",
    "prev" / Int64ul * "physical address of the previous span (lower address), 0 at the head",
)

FrameAllocator = Struct(
    "head" / Int64ul * "physical address of the lowest span, 0 when no frame is free",
    "free_frames" / Int64ul * "number of free frames in all spans",
    "spans" / Int64ul * "number of spans in the list",
    "managed_frames" / Int64ul * "frames ever handed to the allocator (free or allocated)",
    "alloc_calls" / Int64ul * "successful allocation calls",
    "free_calls" / Int64ul * "free calls",
)
