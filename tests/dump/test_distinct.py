"""`distinct` returns what np.unique does, for the arrays the walker gives it."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kmtool.dump.distinct import distinct

U64 = st.integers(min_value=0, max_value=(1 << 64) - 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(U64, st.integers(min_value=0, max_value=8)), max_size=64))
def test_distinct_is_np_unique(values: list[int]) -> None:
    array = np.array(values, dtype=np.uint64)
    got = distinct(array)
    assert got.dtype == np.uint64
    assert np.array_equal(got, np.unique(array))


def test_distinct_leaves_its_input_alone() -> None:
    array = np.array([3, 1, 3, 2], dtype=np.uint8)
    assert distinct(array).tolist() == [1, 2, 3]
    assert array.tolist() == [3, 1, 3, 2]
