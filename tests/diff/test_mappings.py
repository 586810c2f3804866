"""Mapping changes as intervals (kmtool.diff.mappings): the cases a kernel change produces, and a
property test against a page-by-page oracle on random address spaces."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kmtool.diff.mappings import (
    Mapping,
    MappingChange,
    SpaceMap,
    linear_changes,
    space_changes,
)

P = 0x1000
BASE = 0xFFFFFF0000000000


def space(*rows: tuple[int, int, int, str]) -> SpaceMap:
    """(start, pages, phys, flags) rows."""
    return SpaceMap.of([Mapping(s, n * P, p, f) for s, n, p, f in rows])


def test_rights_changed_in_the_middle_of_a_range_is_one_page() -> None:
    a = space((BASE, 16, 0x100000, "RW--"))
    b = space((BASE, 5, 0x100000, "RW--"), (BASE + 5 * P, 1, 0x105000, "R---"),
              (BASE + 6 * P, 10, 0x106000, "RW--"))  # fmt: skip
    assert space_changes("kernel", a, b) == [
        MappingChange("kernel", "changed", Mapping(BASE + 5 * P, P, 0x105000, "RW--"),
                      Mapping(BASE + 5 * P, P, 0x105000, "R---")),
    ]  # fmt: skip
    assert space_changes("kernel", a, b)[0].what == "rights"


def test_a_range_that_grew_is_one_added_range() -> None:
    a = space((BASE, 4, 0x200000, "RW--"))
    b = space((BASE, 7, 0x200000, "RW--"))
    (change,) = space_changes("kernel", a, b)
    assert change.change == "added" and change.before is None
    assert change.after == Mapping(BASE + 4 * P, 3 * P, 0x204000, "RW--")


def test_ranges_cut_differently_but_mapping_the_same_are_no_change() -> None:
    a = space((BASE, 8, 0x300000, "RWX-"))
    b = space((BASE, 3, 0x300000, "RWX-"), (BASE + 3 * P, 5, 0x303000, "RWX-"))
    assert space_changes("kernel", a, b) == []


def test_a_remapped_range_is_changed_target() -> None:
    a = space((0x400000, 4, 0x1000000, "R-XU"))
    b = space((0x400000, 4, 0x2000000, "R-XU"))
    (change,) = space_changes("space 1", a, b)
    assert change.change == "changed" and change.what == "target"
    assert change.before == Mapping(0x400000, 4 * P, 0x1000000, "R-XU")
    assert change.after == Mapping(0x400000, 4 * P, 0x2000000, "R-XU")


def test_a_space_on_one_side_is_all_added_merged() -> None:
    b = space((0x400000, 2, 0x5000, "R-XU"), (0x402000, 2, 0x7000, "R-XU"))
    assert space_changes("space 2", SpaceMap.of([]), b) == [
        MappingChange("space 2", "added", None, Mapping(0x400000, 4 * P, 0x5000, "R-XU"))
    ]


def test_a_page_at_the_top_of_the_address_space_does_not_wrap() -> None:
    top = (1 << 64) - P
    a = space((top - P, 2, 0x9000, "RW--"))
    (change,) = space_changes("kernel", a, SpaceMap.of([]))
    assert change.change == "removed" and change.before == Mapping(top - P, 2 * P, 0x9000, "RW--")


ROWS = st.lists(
    st.tuples(st.integers(0, 40), st.integers(1, 6), st.integers(0, 8), st.sampled_from("ab")),
    max_size=8,
)


def _space(rows: list[tuple[int, int, int, str]]) -> SpaceMap:
    """Random rows made disjoint: each starts past the previous one's end."""
    out, at = [], 0
    for gap, pages, phys, flags in rows:
        start = at + gap
        out.append(Mapping(start * P, pages * P, phys * 8 * P, flags))
        at = start + pages
    return SpaceMap.of(out)


def _pages(m: SpaceMap) -> dict[int, tuple[int, str]]:
    return {
        int(s) // P + k: (int(p) // P + k, str(f))
        for s, n, p, f in zip(m.start, m.size, m.phys, m.flags, strict=True)
        for k in range(int(n) // P)
    }


@settings(max_examples=300, deadline=None)
@given(ROWS, ROWS)
def test_changes_are_exactly_the_pages_that_differ_merged_as_far_as_they_go(
    rows_a: list[tuple[int, int, int, str]], rows_b: list[tuple[int, int, int, str]]
) -> None:
    a, b = _space(rows_a), _space(rows_b)
    pa, pb = _pages(a), _pages(b)
    want = {}
    for page in set(pa) | set(pb):
        x, y = pa.get(page), pb.get(page)
        if x != y:
            want[page] = ("added" if x is None else "removed" if y is None else "changed", x, y)
    got = {}
    changes = linear_changes("s", a, b)
    for c in changes:
        m = c.after if c.after is not None else c.before
        assert m is not None
        for k in range(m.size // P):
            x = None if c.before is None else (c.before.phys // P + k, c.before.flags)
            y = None if c.after is None else (c.after.phys // P + k, c.after.flags)
            got[m.start // P + k] = (c.change, x, y)
    assert got == want
    # merged as far as they go: no change continues the one before it
    for c, d in zip(changes, changes[1:], strict=False):
        m = c.after if c.after is not None else c.before
        n = d.after if d.after is not None else d.before
        assert m is not None and n is not None and m.start < n.start
        pages = m.size // P
        continues = (
            m.start + m.size == n.start
            and c.change == d.change
            and all(
                (x is None) == (y is None)
                and (
                    x is None
                    or (y is not None and y.phys == x.phys + pages * P and y.flags == x.flags)
                )
                for x, y in ((c.before, d.before), (c.after, d.after))
            )
        )
        assert not continues, (c, d)
    # what a user reads: the same pages and kinds, VA-contiguous linear changes of one kind and
    # rights merged, `runs` counting them
    shown = space_changes("s", a, b)
    assert sum(c.runs for c in shown) == len(changes)
    kinds = {page: kind for page, (kind, _, _) in want.items()}
    assert {m.start // P + k: c.change for c in shown
            for m in [c.mapping] for k in range(m.size // P)} == kinds  # fmt: skip
    for c, d in zip(shown, shown[1:], strict=False):
        m = c.mapping
        assert not (m.start + m.size == d.mapping.start and c.change == d.change
                    and c.what == d.what
                    and all((x is None) == (y is None) and (x is None or y is None
                                                            or x.flags == y.flags)
                            for x, y in ((c.before, d.before), (c.after, d.after)))), (c, d)  # fmt: skip


def test_scattered_new_pages_read_as_one_range_of_many_targets() -> None:
    b = space((BASE, 1, 0x1D000, "RW--"), (BASE + P, 1, 0x29000, "RW--"),
              (BASE + 2 * P, 1, 0x37000, "RW--"))  # fmt: skip
    assert len(linear_changes("kernel", SpaceMap.of([]), b)) == 3
    assert space_changes("kernel", SpaceMap.of([]), b) == [
        MappingChange("kernel", "added", None, Mapping(BASE, 3 * P, 0x1D000, "RW--"), runs=3)
    ]
