"""The walk of an address space that shares the kernel's half: the full walk's result, always."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dump_fixtures as F
import numpy as np
import pytest

from kmtool.dump import shared_walk
from kmtool.dump.memory import PhysicalMemory
from kmtool.dump.pagetable import MAX_LEAVES, RANGE_FIELDS, PageTables, Ranges, walk
from kmtool.dump.shared_walk import walk_sharing
from kmtool.dump.source import open_dump
from kmtool.layout.table import PAGE_SIZE, SHARED_PML4_FIRST, SHARED_PML4_LAST

SHARED = tuple(range(SHARED_PML4_FIRST, SHARED_PML4_LAST + 1))  # the kernel half


def assert_same(got: PageTables, want: PageTables) -> None:
    for name in RANGE_FIELDS:
        a, b = getattr(got.ranges, name), getattr(want.ranges, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert list(got.leaf_counts.items()) == list(want.leaf_counts.items())
    assert got.tables.dtype == want.tables.dtype and np.array_equal(got.tables, want.tables)
    assert (got.errors, got.recursive, got.mode) == (want.errors, want.recursive, want.mode)
    assert got.to_json() == want.to_json()


Process = tuple[PhysicalMemory, F.Fixture]


@pytest.fixture
def process(tmp_path: Path) -> Process:
    fx = F.build(cr3="process")
    return open_dump(fx.write_raw(tmp_path / "p.raw")).memory, fx


def spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The `omit` of every walk walk_sharing makes."""
    calls: list[tuple[int, ...]] = []

    def walked(*args: Any, **kwargs: Any) -> PageTables:
        calls.append(kwargs.get("omit", ()))
        return walk(*args, **kwargs)

    monkeypatch.setattr(shared_walk, "walk", walked)
    return calls


def test_a_shared_kernel_half_is_not_walked_again(
    process: Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    mem, fx = process
    kernel = walk(mem, fx.addresses["kernel_pml4"])
    calls = spy(monkeypatch)
    got = walk_sharing(mem, fx.cr3, kernel, MAX_LEAVES)
    assert calls == [SHARED]  # only the process's own slots were walked
    assert_same(got, walk(mem, fx.cr3))
    assert got.leaf_total > kernel.leaf_total  # the kernel's leaves are in it


def test_a_slot_that_differs_is_walked_in_full(
    process: Process, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mem, fx = process
    kernel = walk(mem, fx.addresses["kernel_pml4"])
    slot = fx.cr3 + SHARED_PML4_LAST * 8
    fx.poke(slot, fx.u64(slot) & ~F.W)  # a read-only kernel half here
    mem = open_dump(fx.write_raw(tmp_path / "q.raw")).memory
    calls = spy(monkeypatch)
    got = walk_sharing(mem, fx.cr3, kernel, MAX_LEAVES)
    assert calls == [()]
    assert_same(got, walk(mem, fx.cr3))


def test_a_kernel_walk_with_errors_is_not_reused(
    process: Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    mem, fx = process
    kernel = walk(mem, fx.addresses["kernel_pml4"])
    kernel.errors = ["Page table: a table outside the dump."]
    calls = spy(monkeypatch)
    assert_same(walk_sharing(mem, fx.cr3, kernel, MAX_LEAVES), walk(mem, fx.cr3))
    assert calls == [()]


def test_a_budget_the_two_halves_pass_walks_in_full(
    process: Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    mem, fx = process
    kernel = walk(mem, fx.addresses["kernel_pml4"])
    calls = spy(monkeypatch)
    budget = kernel.leaf_total  # the process's own page is one too many
    got = walk_sharing(mem, fx.cr3, kernel, budget)
    assert_same(got, walk(mem, fx.cr3, max_leaves=budget))
    assert calls[-1] == ()


def _ranges(*rows: tuple[int, int, int]) -> Ranges:
    def u(i: int) -> np.ndarray:
        return np.array([r[i] for r in rows], dtype=np.uint64)

    n = len(rows)
    return Ranges(u(0), u(1), u(2), u(2), np.zeros(n, np.uint8), np.zeros(n, np.int16))


def test_ranges_the_full_walk_would_merge_at_a_seam_are_refused() -> None:
    own = _ranges((0x1000, 0x5000, PAGE_SIZE))
    kernel = _ranges((0x2000, 0x6000, PAGE_SIZE), (0x9000, 0x9000, PAGE_SIZE))
    assert shared_walk._joined(own, kernel) is None  # contiguous and alike: one range in full
    apart = _ranges((0x2000, 0x7000, PAGE_SIZE))  # contiguous virtually, not physically
    joined = shared_walk._joined(own, apart)
    assert joined is not None and joined.start.tolist() == [0x1000, 0x2000]


def test_kernel_ranges_below_the_others_are_sorted_in() -> None:
    own = _ranges((0x9000, 0x1000, PAGE_SIZE))
    kernel = _ranges((0x2000, 0x6000, PAGE_SIZE), (0xA000, 0x3000, PAGE_SIZE))
    joined = shared_walk._joined(own, kernel)
    assert joined is not None and joined.start.tolist() == [0x2000, 0x9000, 0xA000]
    assert joined.phys.tolist() == [0x6000, 0x1000, 0x3000]
    # 0x9000 -> 0x1000 then 0xA000 -> 0x2000: contiguous both ways and alike, merged in full
    assert shared_walk._joined(own, _ranges((0xA000, 0x2000, PAGE_SIZE))) is None
