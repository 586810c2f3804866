"""kmtool inspect's decoder of the frame stack (kmtool.dump.frames.read_stack) and the stack checks
(kmtool/dump/checks/stack.py) against memory the real allocator wrote: the host build of
kernel/mm/frame*.c runs over an arena, which is then saved as a raw dump with the state inside it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from kmhost import PAGE, Frames

from kmtool.dump.checks.stack import (
    stack_counters,
    stack_decoded,
    stack_no_tables,
    stack_not_in_spans,
)
from kmtool.dump.frames import FreeList, read_free_list
from kmtool.dump.source import open_dump
from kmtool.schemas.frames import FrameAllocator, stack_node_offset

FRAMES = 512


def _hybrid() -> tuple[Frames, int]:
    """An allocator with spans and stacked runs of several lengths; returns it and the frame that
    will hold its state in the dump (an allocated one)."""
    fa = Frames(FRAMES)
    fa.add(PAGE, FRAMES - 1)
    state_frame = fa.alloc_contig(1)
    chunks = [fa.alloc(n) for n in (1, 1, 2, 3, 16, 5, 1)]
    for i, chunk in enumerate(chunks):
        assert isinstance(chunk, tuple)
        if i != 3:  # keep the 3-frame chunk allocated
            fa.free(*chunk)
    assert state_frame is not None
    return fa, state_frame


def _dump(fa: Frames, state_pa: int, path: Path) -> FreeList:
    image = bytearray(fa.arena)
    image[state_pa : state_pa + FrameAllocator.sizeof()] = fa.state.raw[: FrameAllocator.sizeof()]
    path.write_bytes(bytes(image))
    return read_free_list(open_dump(path).memory, state_pa)


def test_the_stack_decodes_as_the_allocator_left_it(tmp_path: Path) -> None:
    fa, state_pa = _hybrid()
    fl = _dump(fa, state_pa, tmp_path / "d.raw")
    assert fl.stack is not None and fl.stack.errors == ()
    expected = [(run, c + 1) for c, runs in enumerate(fa.stack()) for run in runs]
    assert list(zip(fl.stack.runs.tolist(), fl.stack.counts.tolist(), strict=True)) == expected
    c = fa.counters()
    assert fl.stack.frames == c.stack_frames and len(fl.stack.runs) == c.stack_runs > 0
    assert fl.free_frames == c.free_frames  # frame accounting counts the stack as free
    doc = fl.to_json()["stack"]
    assert (doc["runs"], doc["frames"], doc["errors"]) == (c.stack_runs, c.stack_frames, [])
    rows = [check(fl) for check in (stack_decoded, stack_counters, stack_not_in_spans)]
    assert [r.ok for r in rows] == [True] * 3, rows


def test_a_broken_marker_and_a_loop_are_named(tmp_path: Path) -> None:
    fa, state_pa = _hybrid()
    top = fa.stack()[0][0]
    at = top + stack_node_offset(top)
    fa.arena[at : at + 8] = bytes(8)  # the top single frame loses its marker
    fl = _dump(fa, state_pa, tmp_path / "m.raw")
    assert fl.stack is not None
    assert any(f"frame {hex(top)} has marker 0x0" in e for e in fl.stack.errors)
    assert not stack_decoded(fl).ok  # "frame stack decodes" names it

    fa, state_pa = _hybrid()
    runs = fa.stack()[0]
    bottom = runs[-1]
    at = bottom + stack_node_offset(bottom) + 24  # FrameStack.next of the bottom run
    fa.arena[at : at + 8] = runs[0].to_bytes(8, "little")
    fl = _dump(fa, state_pa, tmp_path / "l.raw")
    assert fl.stack is not None and any("closes a loop" in e for e in fl.stack.errors)


def test_a_page_table_on_the_stack_fails_its_check(tmp_path: Path) -> None:
    fa, state_pa = _hybrid()
    fl = _dump(fa, state_pa, tmp_path / "t.raw")
    assert fl.stack is not None
    stacked = int(fl.stack.runs[0])
    tables = SimpleNamespace(tables=np.array([stacked], dtype=np.uint64))
    row = stack_no_tables(fl, tables, None)  # type: ignore[arg-type]  # only .tables is read
    assert not row.ok and hex(stacked) in row.detail
