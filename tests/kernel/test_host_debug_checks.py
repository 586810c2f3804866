"""The debug-only invariant checks (KM_DEBUG=1, as kmhost builds the mm core) catch corrupted
allocator structures at the next operation that touches them, with a panic that names the address
and the bad value. Release kernels (KM_DEBUG=0) compile them out; tests/build checks that."""

from __future__ import annotations

import re

import pytest
from kmhost import PAGE, Frames, HeapArena, HostPanic

from kmtool.schemas.frames import FrameSpan
from kmtool.schemas.heap import HeapBlock


def _field_offset(schema: object, name: str) -> int:
    offset = 0
    for sub in schema.subcons:  # type: ignore[attr-defined]
        if sub.name == name:
            return offset
        offset += sub.sizeof()
    raise KeyError(name)


def _poke(fa: Frames, phys: int, field: str, value: int) -> None:
    off = phys + _field_offset(FrameSpan, field)
    fa.arena[off : off + 8] = value.to_bytes(8, "little")


def _three_spans() -> Frames:
    fa = Frames(64)
    for start in (4, 10, 20):
        fa.add(start * PAGE, 2)
    assert fa.validate() is None
    return fa


def test_asymmetric_next_link_is_caught_on_alloc() -> None:
    fa = _three_spans()
    _poke(fa, 10 * PAGE, "prev", 0x30000)  # span 4's next still names 10, but 10's prev does not
    with pytest.raises(HostPanic, match=re.escape("span 0x4000: next 0xa000 has prev 0x30000")):
        fa.alloc(1)


def test_bad_magic_of_the_head_is_caught_on_alloc() -> None:
    fa = _three_spans()
    _poke(fa, 4 * PAGE, "magic", 0xDEAD)
    with pytest.raises(HostPanic, match=re.escape("frames_alloc: span 0x4000: bad magic 0xdead")):
        fa.alloc(1)


def test_adjacent_neighbour_is_caught_on_free() -> None:
    fa = _three_spans()
    _poke(fa, 10 * PAGE, "count", 10)  # span 10 now claims frames 10-19, touching span 20
    with pytest.raises(HostPanic, match=re.escape("span 0x14000: prev 0xa000 (10 frames) reaches")):
        fa.free(22 * PAGE, 1)  # joins span 20 from above


def test_start_not_own_address_is_caught_on_alloc() -> None:
    fa = _three_spans()
    _poke(fa, 4 * PAGE, "start", 0x123000)
    with pytest.raises(HostPanic, match=re.escape("span 0x4000: start is 0x123000")):
        fa.alloc(1)


def test_corrupted_heap_free_list_is_caught_when_a_block_leaves_it() -> None:
    heap = HeapArena(1 << 20)
    a, b = heap.alloc(100), heap.alloc(100)
    assert a is not None and b is not None
    heap.free(a)  # a's block goes on a free list; its buddy b is used, so it stays there
    header = a - HeapBlock.sizeof()
    prev_off = _field_offset(HeapBlock, "prev")
    heap.write(header + prev_off, (0x1000).to_bytes(8, "little"))  # a head with a prev
    with pytest.raises(HostPanic, match=re.escape(f"free block {hex(header)}: prev 0x1000")):
        heap.alloc(100)  # pops a's block off its list
