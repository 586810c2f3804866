"""Frame accounting (kmtool.dump.accounting): the interval arithmetic against a frame-by-frame
model, and the owner order. The real kernel's accounting is checked in tests/integration."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmtool.dump import accounting
from kmtool.dump.accounting import OWNERS, Intervals, _union, account
from kmtool.dump.memmap import merge_intervals
from kmtool.layout.table import PAGE_SIZE

FRAMES = 64
runs = st.lists(st.tuples(st.integers(0, FRAMES), st.integers(0, 8)), max_size=8)


def intervals(pairs: list[tuple[int, int]]) -> Intervals:
    """Frame runs (first frame, count) as byte intervals; overlaps and empty runs allowed."""
    start = np.array([f * PAGE_SIZE for f, _ in pairs], dtype=np.uint64)
    end = np.array([(f + n) * PAGE_SIZE for f, n in pairs], dtype=np.uint64)
    return Intervals.of(start, end)


def frames(iv: Intervals) -> set[int]:
    return {
        f
        for s, e in zip(iv.start, iv.end, strict=True)
        for f in range(int(s) // PAGE_SIZE, int(e) // PAGE_SIZE)
    }


@given(runs)
def test_of_is_a_sorted_disjoint_non_adjacent_union(pairs: list[tuple[int, int]]) -> None:
    iv = intervals(pairs)
    assert frames(iv) == {f + i for f, n in pairs for i in range(n)}
    assert all(iv.start[1:] > iv.end[:-1]) and all(iv.end > iv.start)
    assert iv.total == len(frames(iv)) * PAGE_SIZE


@given(runs, runs)
def test_minus_is_set_difference(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> None:
    left = intervals(a).minus(intervals(b))
    assert frames(left) == frames(intervals(a)) - frames(intervals(b))
    assert all(left.start[1:] > left.end[:-1])
    assert all(left.end > left.start)


# Each way intersect computes: vectorised in one block, vectorised a block of 2 at a time, and
# run by run (the few-intervals path); the benchmark's lists take the first two.
WAYS = {"vectorised": (1 << 16, 0), "blocks of 2": (2, 0), "run by run": (1 << 16, 64)}


@pytest.mark.parametrize("way", WAYS)
@given(a=runs, b=runs)
def test_intersect_is_set_intersection(
    way: str, a: list[tuple[int, int]], b: list[tuple[int, int]]
) -> None:
    saved = accounting.INTERSECT_BLOCK, accounting.FEW
    accounting.INTERSECT_BLOCK, accounting.FEW = WAYS[way]
    try:
        both = intervals(a).intersect(intervals(b))
        left = intervals(a).minus(intervals(b))
    finally:
        accounting.INTERSECT_BLOCK, accounting.FEW = saved
    assert frames(both) == frames(intervals(a)) & frames(intervals(b))
    assert all(both.start[1:] > both.end[:-1]) and all(both.end > both.start)
    assert both.start.dtype == both.end.dtype == np.uint64
    assert frames(left) == frames(intervals(a)) - frames(intervals(b))


@given(runs, st.lists(runs, min_size=len(OWNERS), max_size=len(OWNERS)))
def test_each_frame_goes_to_the_first_owner_that_covers_it(
    ownable: list[tuple[int, int]], owned: list[list[tuple[int, int]]]
) -> None:
    owners = {name: intervals(o) for name, o in zip(OWNERS, owned, strict=True)}
    result = account(intervals(ownable), owners)
    left = frames(intervals(ownable))
    assert result.ownable == len(left)
    for name in OWNERS:
        mine = left & frames(owners[name])
        assert result.by_owner[name] == len(mine)
        left -= mine
    assert frames(result.unaccounted) == left
    assert result.unaccounted_frames == len(left)


def test_json_lists_unaccounted_ranges_as_inclusive_ends() -> None:
    result = account(intervals([(1, 10)]), {"free": intervals([(1, 3), (6, 5)])})
    doc = result.to_json()
    assert doc["by_owner"] == {name: 0 for name in OWNERS} | {"free": 8, "unaccounted": 2}
    assert doc["unaccounted_ranges"] == [{"start": "0x4000", "end": "0x5fff", "frames": 2}]


@given(st.lists(runs, max_size=4))
def test_union_of_parts_is_the_union_of_all(parts: list[list[tuple[int, int]]]) -> None:
    got = _union([intervals(p) for p in parts])
    want = intervals([r for p in parts for r in p])
    assert got.start.tolist() == want.start.tolist() and got.end.tolist() == want.end.tolist()


@given(runs)
def test_merge_intervals_returns_a_union_as_it_is(pairs: list[tuple[int, int]]) -> None:
    iv = intervals(pairs)  # sorted, disjoint, non-adjacent: comes back as the same arrays
    start, end = merge_intervals(iv.start, iv.end)
    assert not len(iv.start) or (start is iv.start and end is iv.end)
    shuffled = np.arange(len(iv.start))[::-1]
    start, end = merge_intervals(iv.start[shuffled], iv.end[shuffled])
    assert start.tolist() == iv.start.tolist() and end.tolist() == iv.end.tolist()
