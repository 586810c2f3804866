"""Host tests of the address manager (kernel/mm/vaddr.c) against a Python model."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from kmhost import KM_EINVAL, KM_ENOMEM, PAGE, HostPanic, Vaddr

from kmtool.layout import table

BASE = table.KERNEL_VSPACE_BASE
END = table.HEAP_BASE + table.HEAP_SIZE


def test_heap_mark_and_first_fit() -> None:
    vm = Vaddr(BASE, END)
    assert vm.mark(table.HEAP_BASE, table.HEAP_SIZE) == 0
    assert vm.lookup(table.HEAP_BASE + 12345) == (table.HEAP_BASE, table.HEAP_SIZE)
    a = vm.reserve(1)
    b = vm.reserve(3 * PAGE)
    assert (a, b) == (BASE, BASE + PAGE)
    assert vm.release(a) == PAGE
    assert vm.reserve(PAGE) == BASE  # the gap is reused
    assert vm.lookup(BASE + 4 * PAGE) is None
    aligned = vm.reserve(PAGE, align=1 << 21)
    assert aligned == BASE + (1 << 21)


def test_errors() -> None:
    vm = Vaddr(BASE, BASE + 16 * PAGE)
    assert vm.reserve(0) == ("status", KM_EINVAL)
    assert vm.reserve(17 * PAGE) == ("status", KM_EINVAL)
    assert vm.mark(BASE + PAGE, 2 * PAGE) == 0
    assert vm.mark(BASE + 2 * PAGE, PAGE) == KM_EINVAL  # overlaps
    assert vm.mark(BASE - PAGE, PAGE) == KM_EINVAL  # outside
    assert vm.reserve(15 * PAGE) == ("status", KM_ENOMEM)
    with pytest.raises(HostPanic, match="does not start a handed-out range"):
        vm.release(BASE + 2 * PAGE)


class VaddrMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.end = BASE + 256 * PAGE
        self.vm = Vaddr(BASE, self.end)
        self.ranges: dict[int, int] = {}  # start -> size

    def first_fit(self, size: int) -> int | None:
        cursor = BASE
        for start in sorted(self.ranges):
            if start - cursor >= size:
                return cursor
            cursor = start + self.ranges[start]
        return cursor if self.end - cursor >= size else None

    @rule(pages=st.integers(1, 40))
    def reserve(self, pages: int) -> None:
        expected = self.first_fit(pages * PAGE)
        got = self.vm.reserve(pages * PAGE)
        if expected is None:
            assert got == ("status", KM_ENOMEM)
        else:
            assert got == expected
            self.ranges[expected] = pages * PAGE

    @precondition(lambda self: self.ranges)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        start = data.draw(st.sampled_from(sorted(self.ranges)))
        assert self.vm.release(start) == self.ranges.pop(start)

    @rule(offset=st.integers(0, 256 * PAGE - 1))
    def lookup(self, offset: int) -> None:
        addr = BASE + offset
        hit = [(s, n) for s, n in self.ranges.items() if s <= addr < s + n]
        assert self.vm.lookup(addr) == (hit[0] if hit else None)

    @invariant()
    def no_overlap(self) -> None:
        spans = sorted(self.ranges.items())
        for (a, n), (b, _) in zip(spans, spans[1:], strict=False):
            assert a + n <= b


VaddrMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_vaddr_matches_model = VaddrMachine.TestCase
