"""What the inspect checks share: the verdict they return, the offender list, interval tests.

A check function returns a `Verdict` (passed, and the one-line detail); the registry
(kmtool.dump.checks.registry) adds the row's name. A failing detail names at most SHOWN offenders
and then "(and N more)". The interval tests are bulk numpy comparisons, so a check costs little
even with a million spans or leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

SHOWN = 3  # offenders named in a failing check's detail


class Verdict(NamedTuple):
    """What a check found: `ok`, and the `detail` its row shows."""

    ok: bool
    detail: str


def u64(values: Any) -> np.ndarray:
    """`values` as a numpy array of unsigned 64-bit integers."""
    return np.asarray(values, dtype=np.uint64)


def listing(items: list[str], total: int) -> str:
    """`items` joined by "; ", then "(and N more)" when `total` counts more than were given."""
    more = f" (and {total - len(items)} more)" if total > len(items) else ""
    return "; ".join(items) + more


def problems(found: list[str], passed: str) -> Verdict:
    """A pass saying `passed` when nothing was `found`; else a failure naming the first SHOWN."""
    if not found:
        return Verdict(True, passed)
    return Verdict(False, listing(found[:SHOWN], len(found)))


def offenders(
    bad: np.ndarray, name: Callable[[int], str], passed: str, suffix: str = ""
) -> Verdict:
    """The verdict of an offender-list check: `bad` holds the indices at fault, `name(k)` says
    what index k is; a failure names the first SHOWN, then `suffix` (what is wrong with them)."""
    if not len(bad):
        return Verdict(True, passed)
    return Verdict(False, listing([name(int(k)) for k in bad[:SHOWN]], len(bad)) + suffix)


def overlapping(
    a_start: np.ndarray, a_end: np.ndarray, b_start: np.ndarray, b_end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) where [a_start[i], a_end[i]) meets [b_start[j], b_end[j]); `a` sorted, disjoint.

    For each b only the last a starting before b's end is tested, which is exact when the a
    intervals are sorted and disjoint (callers pass a union otherwise).
    """
    if len(a_start) == 0 or len(b_start) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    i = np.searchsorted(a_start, b_end, side="left") - 1
    valid = i >= 0
    hit = np.zeros(len(b_start), dtype=bool)
    hit[valid] = a_end[i[valid]] > b_start[valid]
    j = np.flatnonzero(hit)
    return i[j], j


def contained(
    starts: np.ndarray, ends: np.ndarray, u_start: np.ndarray, u_end: np.ndarray
) -> np.ndarray:
    """Bool per interval: inside one interval of the sorted, disjoint union (u_start, u_end)."""
    if len(u_start) == 0:
        return np.zeros(len(starts), dtype=bool)
    i = np.searchsorted(u_start, starts, side="right") - 1
    ok = i >= 0
    ok[ok] = ends[ok] <= u_end[i[ok]]
    return ok
