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
from typing import Any

_malloc_trim: list[Any] = []  # [glibc's malloc_trim, or None], looked up on first use


def trim() -> None:
    """Return the C heap's free pages to the kernel (glibc), or nothing elsewhere."""
    if not _malloc_trim:
        try:
            _malloc_trim.append(ctypes.CDLL(None).malloc_trim)
        except (OSError, AttributeError):
            _malloc_trim.append(None)
    if _malloc_trim[0] is not None:
        _malloc_trim[0](0)
