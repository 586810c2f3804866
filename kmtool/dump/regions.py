"""Region names for arrays of virtual addresses, from the layout table (kmtool.layout.table).

The region table nests (kernel-heap inside kernel-space), so the innermost region is what a user wants
to see. Between two consecutive region boundaries the set of containing regions cannot change, so the
table is flattened once into sorted boundary points, each naming the innermost region from there up to
the next point; naming a million addresses is then one `searchsorted`.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from kmtool.layout.table import REGIONS, region_for

ADDRESS_LIMIT = 1 << 64
NO_REGION = -1  # the id of "no region name" (ranges of a foreign dump)


@cache
def partition() -> tuple[np.ndarray, tuple[str | None, ...]]:
    """(boundary points as uint64, innermost region name from each point on; None = no region)."""
    points = {0}
    for r in REGIONS:
        points.add(r.start)
        if r.end + 1 < ADDRESS_LIMIT:
            points.add(r.end + 1)
    ordered = sorted(points)
    names = []
    for p in ordered:
        found = region_for(p)
        names.append(None if found is None else found.name)
    return np.array(ordered, dtype=np.uint64), tuple(names)


def region_ids(addresses: np.ndarray) -> np.ndarray:
    """Index into `partition()[1]` of the innermost region holding each (canonical) address."""
    points, _ = partition()
    return (
        np.searchsorted(points, np.asarray(addresses, dtype=np.uint64), side="right") - 1
    ).astype(np.int16)


def ids_named(region: str) -> list[int]:
    """Every id `region_ids` gives for addresses of `region` (the region is one id per piece of it
    that another region does not cut out)."""
    return [i for i, name in enumerate(partition()[1]) if name == region]


def region_name(region_id: int) -> str | None:
    """The region name for an id from `region_ids` (None for NO_REGION)."""
    return None if region_id == NO_REGION else partition()[1][region_id]
