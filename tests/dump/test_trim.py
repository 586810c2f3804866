"""Handing freed C heap back (kmtool.dump.trim): glibc's malloc_trim where there is one, nothing
where there is none, never an exception."""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import pytest

from kmtool.dump import trim


def test_trim_calls_malloc_trim_once_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    class Libc:
        def malloc_trim(self, pad: int) -> int:
            calls.append(pad)
            return 1

    looked_up: list[Any] = []
    trim._malloc_trim.cache_clear()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: looked_up.append(name) or Libc())
    try:
        trim.trim()
        trim.trim()
    finally:
        trim._malloc_trim.cache_clear()  # the next caller looks up the real one
    assert calls == [0, 0] and looked_up == [None]  # the whole heap, looked up once


def test_trim_without_malloc_trim_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    class Musl:
        pass  # no malloc_trim: ctypes raises AttributeError for it

    trim._malloc_trim.cache_clear()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: Musl())
    try:
        trim.trim()
        assert trim._malloc_trim() is None
    finally:
        trim._malloc_trim.cache_clear()


def test_trim_on_this_machine_keeps_live_arrays() -> None:
    trim._malloc_trim.cache_clear()
    kept = np.arange(1 << 20, dtype=np.uint64)
    freed = np.ones(1 << 22, dtype=np.uint64)
    del freed
    trim.trim()
    assert trim._malloc_trim() is not None  # Debian's C library is glibc: the real call ran
    assert int(kept.sum()) == (1 << 20) * ((1 << 20) - 1) // 2
