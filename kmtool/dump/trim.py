"""Handing freed C heap back to the kernel between the parts of an inspection (docs/design.md §13,
whole-process memory).

numpy allocates its arrays with malloc. What one part of an inspection frees (a walk's chunk
arrays, the accounting's index arrays, a check's temporaries) glibc keeps for later requests
instead of returning it, and later requests fit into it only in part, so each part's transients
stay resident under the next part's data: the peak RSS of a whole `kmtool inspect` became nearly
the sum of the parts' transients rather than the largest one. `trim()` calls glibc's
malloc_trim(0), which returns every free page of the heap (well under a millisecond). With another
C library (no malloc_trim) it does nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from functools import cache


def trim() -> None:
    """Return the C heap's free pages to the kernel (glibc), or nothing elsewhere."""
    malloc_trim = _malloc_trim()
    if malloc_trim is not None:
        malloc_trim(0)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, looked up once; None in a C library without it."""
    try:
        found: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return found
