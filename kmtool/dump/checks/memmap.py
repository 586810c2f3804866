"""Checks of the firmware memory map the loader handed over (docs/design.md §3): sorted,
non-overlapping, and stepped by the firmware's descriptor size."""

from __future__ import annotations

import numpy as np

from kmtool.dump.checks.common import SHOWN, Verdict, offenders, problems
from kmtool.dump.memmap import MemoryMap, type_name
from kmtool.layout.table import PAGE_SIZE
from kmtool.schemas.memmap import EfiMemoryDescriptor


def memory_map_sorted(memmap: MemoryMap) -> Verdict:
    s = memmap.starts
    return offenders(
        np.flatnonzero(s[1:] < s[:-1]),
        lambda k: f"entry {k + 1} at {hex(int(s[k + 1]))} follows {hex(int(s[k]))}",
        f"{len(s)} descriptors in address order",
    )


def memory_map_disjoint(memmap: MemoryMap) -> Verdict:
    order = np.argsort(memmap.starts, kind="stable")
    s, e = memmap.starts[order], memmap.ends[order]
    return offenders(
        np.flatnonzero(s[1:] < e[:-1]),
        lambda k: f"{hex(int(s[k]))}-{hex(int(e[k]) - 1)} overlaps {hex(int(s[k + 1]))}",
        "no descriptor overlaps another",
    )


def memory_map_stepping(memmap: MemoryMap) -> Verdict:
    """The map's size is a whole number of descriptors, and every descriptor starts on a page and
    has pages: what a map stepped by `sizeof` instead of the descriptor size breaks."""
    found = []
    if memmap.map_size % memmap.descriptor_size:
        found.append(
            f"map size {memmap.map_size} is not a multiple of descriptor size "
            f"{memmap.descriptor_size}"
        )
    starts = memmap.starts
    for k in np.flatnonzero(starts % np.uint64(PAGE_SIZE))[:SHOWN]:
        found.append(
            f"entry {k} starts at {hex(int(starts[k]))}, not page aligned "
            "(stepped by the wrong size?)"
        )
    for k in np.flatnonzero(memmap.entries["number_of_pages"] == 0)[:SHOWN]:
        found.append(f"entry {k} ({type_name(int(memmap.entries['type'][k]))}) has 0 pages")
    return problems(
        found,
        f"{len(starts)} descriptors of {memmap.descriptor_size} bytes "
        f"(struct is {EfiMemoryDescriptor.sizeof()})",
    )
