"""The kernel heap: a buddy allocator over the fixed 32 GiB heap range (docs/design.md §4.4).

A header is written only when the allocator must: a block handed out gets a used `HeapBlock` header, a
block freed (or merged) gets a free header and goes on its order's doubly linked list (virtual
addresses, 0 at the ends) headed in `Heap.free_heads`. The upper half split off a bigger block gets no
header at all: it is an *untouched* free block, recorded (at most one per order: a split happens only
when every smaller order is empty) by its address in `Heap.untouched` (all zero, the default, when
there is none), and its memory is never read or
written until it is handed out or split (then it gets its first header) or merged with its freed buddy.
So the free blocks are those listed plus those untouched; every block that is not untouched starts
with a valid header. A used block's payload starts `sizeof(struct km_heap_block)` bytes after its
header.
"""

from construct import Array, Default, Int8ul, Int16ul, Int32ul, Int64ul, Struct

HEAP_FREE_MAGIC = 0x45455246  # "FREE"
HEAP_USED_MAGIC = 0x44455355  # "USED"
HEAP_MAX_ORDERS = 64
# Slots of `Heap.untouched`: an untouched block is an upper half, so its order is below max_order,
# and a heap fits in the 47-bit kernel half of the address space (heap_init refuses a bigger one).
HEAP_UNTOUCHED_ORDERS = 48

HeapBlock = Struct(
    "magic" / Int32ul * "KM_HEAP_FREE_MAGIC or KM_HEAP_USED_MAGIC",
    "order" / Int8ul * "block size is 1 << order bytes",
    "reserved0" / Int8ul * "zero",
    "reserved1" / Int16ul * "zero",
    "size" / Int64ul * "bytes the caller asked for (used blocks), 0 for free blocks",
    "next" / Int64ul * "virtual address of the next free block of this order, 0 at the end",
    "prev" / Int64ul * "virtual address of the previous free block of this order, 0 at the head",
)

Heap = Struct(
    "base" / Int64ul * "first virtual address of the heap range (KM_HEAP_BASE)",
    "size" / Int64ul * "bytes in the heap range (KM_HEAP_SIZE), a power of two",
    "min_order" / Int32ul * "smallest block order handed out",
    "max_order" / Int32ul * "order of the whole range",
    "bytes_in_use" / Int64ul * "sum of the sizes callers asked for, over used blocks",
    "blocks_in_use" / Int64ul * "number of used blocks",
    "free_blocks" / Int64ul * "number of free blocks: on the lists plus untouched",
    "backed_pages" / Int64ul * "heap pages the page-fault handler has backed with frames",
    "free_heads"
    / Array(HEAP_MAX_ORDERS, Int64ul)
    * "per order: virtual address of the first free block",
    "untouched"
    / Default(Array(HEAP_UNTOUCHED_ORDERS, Int64ul), [0] * HEAP_UNTOUCHED_ORDERS)
    * "per order: virtual address of the one free block never written (no header), 0 if none",
)
