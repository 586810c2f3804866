"""Checks of the address-space plan itself: each returns one named pass/fail `Check`.

The checks read a sequence of `Region`s (the table's `REGIONS` unless given another), so tests can
feed them a broken plan. They never raise for a bad plan: a failure is a `Check` with `ok=False`
whose `culprits` name the regions at fault and whose `detail` says what is wrong in one sentence.

    canonical            start and end canonical, and no region spans the non-canonical hole
    aligned              start and size are multiples of the region's page size (4K, 2M or 1G)
    no-overlap           regions with the same parent do not overlap
    nesting              every child names a parent that exists and lies wholly inside it
    shared-pml4          every upper-half (kernel) region lies in the shared PML4 entries 510-511
    offset-map-coverage  the offset map reaches the declared maximum physical memory
    link-base            the kernel link address is page-aligned and inside `kernel-image`
"""

from __future__ import annotations

from collections.abc import Sequence

from kmtool.check import Check
from kmtool.layout import table
from kmtool.layout.table import Region
from kmtool.units import hexaddr, size_text

PAGE_SIZES = (4 * table.KiB, 2 * table.MiB, table.GiB)


def _span(r: Region) -> str:
    return f"`{r.name}` ({hexaddr(r.start)}-{hexaddr(r.end)})"


Fault = tuple[tuple[str, ...], str]  # (names at fault, sentence without the final full stop)


def find_region(regions: Sequence[Region], name: str) -> Region | None:
    """The region of `regions` called `name`, or None (a broken plan may lack it)."""
    return next((r for r in regions if r.name == name), None)


def missing_region(check: str, name: str) -> Check:
    """The failed `check` of a plan that has no region called `name`."""
    return Check(check, False, f"The plan has no `{name}` region.", (name,))


def verdict(name: str, faults: list[Fault], passed: str) -> Check:
    """A Check from `faults`: a pass saying `passed` when there are none; else one sentence."""
    if not faults:
        return Check(name, True, passed)
    culprits = tuple(dict.fromkeys(c for names, _ in faults for c in names))
    detail = "; ".join(s for _, s in faults) + "."
    return Check(name, False, detail[0].upper() + detail[1:], culprits)


def check_canonical(regions: Sequence[Region]) -> Check:
    """Start and end of every region canonical, size positive, and both ends in the same half."""
    faults: list[Fault] = []
    for r in regions:
        if r.size <= 0:
            faults.append(((r.name,), f"`{r.name}` has size {r.size}"))
            continue
        bad = [
            f"{what} {value:#x}"
            for what, value in (("start", r.start), ("end", r.end))
            if not (0 <= value < 1 << 64 and table.is_canonical(value))
        ]
        if bad:
            faults.append(((r.name,), f"`{r.name}` {' and '.join(bad)} not canonical"))
        elif r.start < 1 << 47 <= r.end:
            faults.append(((r.name,), f"{_span(r)} spans the non-canonical hole"))
    return verdict("canonical", faults, f"All {len(regions)} regions have canonical ends.")


def check_aligned(regions: Sequence[Region]) -> Check:
    """Start and size of each region are multiples of its page size, a real x86 page size."""
    faults: list[Fault] = []
    for r in regions:
        if r.page_size not in PAGE_SIZES:
            faults.append(
                ((r.name,), f"`{r.name}` page size {r.page_size:#x} is not 4 KiB, 2 MiB or 1 GiB")
            )
            continue
        bad = [
            f"{what} {value:#x}"
            for what, value in (("start", r.start), ("size", r.size))
            if value % r.page_size
        ]
        if bad:
            faults.append(
                (
                    (r.name,),
                    f"`{r.name}` {' and '.join(bad)} not a multiple of its "
                    f"{size_text(r.page_size)} page size",
                )
            )
    return verdict("aligned", faults, "Every region starts and ends on its own page size.")


def check_no_overlap(regions: Sequence[Region]) -> Check:
    """No two regions with the same parent (or both top-level) share an address."""
    faults: list[Fault] = []
    groups: dict[str | None, list[Region]] = {}
    for r in regions:
        groups.setdefault(r.parent, []).append(r)
    for siblings in groups.values():
        ordered = sorted(siblings, key=lambda r: (r.start, r.end))
        for i, a in enumerate(ordered):
            for b in ordered[i + 1 :]:
                if b.start > a.end:
                    break
                faults.append(((a.name, b.name), f"{_span(a)} overlaps {_span(b)}"))
    return verdict("no-overlap", faults, "No two sibling regions overlap.")


def check_nesting(regions: Sequence[Region]) -> Check:
    """Names are unique; every parent exists; every child lies wholly inside its parent."""
    faults: list[Fault] = []
    by_name: dict[str, Region] = {}
    for r in regions:
        if r.name in by_name:
            faults.append(((r.name,), f"`{r.name}` is declared twice"))
        by_name.setdefault(r.name, r)
    for r in regions:
        if r.parent is None:
            continue
        parent = by_name.get(r.parent)
        if parent is None or parent is r:
            faults.append(
                ((r.name,), f"`{r.name}` names parent `{r.parent}`, which is not a region")
            )
        elif not (parent.start <= r.start and r.end <= parent.end):
            faults.append(((r.name,), f"{_span(r)} is not inside its parent {_span(parent)}"))
    children = sum(1 for r in regions if r.parent is not None)
    return verdict("nesting", faults, f"All {children} nested regions lie inside their parents.")


def check_shared_pml4(
    regions: Sequence[Region], first: int | None = None, last: int | None = None
) -> Check:
    """Every upper-half region uses only the PML4 entries every address space shares."""
    first = table.SHARED_PML4_FIRST if first is None else first
    last = table.SHARED_PML4_LAST if last is None else last
    faults: list[Fault] = []
    for r in regions:
        if not r.upper_half:
            continue
        lo, hi = r.pml4
        if lo < first or hi > last:
            faults.append(
                (
                    (r.name,),
                    f"`{r.name}` uses PML4 entries {lo}-{hi}, outside the shared {first}-{last}",
                )
            )
    kernel = sum(1 for r in regions if r.upper_half)
    return verdict(
        "shared-pml4", faults, f"All {kernel} kernel regions lie in PML4 entries {first}-{last}."
    )


def check_offset_map(regions: Sequence[Region], max_physical: int | None = None) -> Check:
    """The `offset-map` region exists and is at least as large as the declared physical maximum."""
    max_physical = table.MAX_PHYSICAL_MEMORY if max_physical is None else max_physical
    om = find_region(regions, "offset-map")
    if om is None:
        return missing_region("offset-map-coverage", "offset-map")
    if om.size < max_physical:
        return Check(
            "offset-map-coverage",
            False,
            f"`offset-map` covers {size_text(om.size)} but the kernel is declared to manage "
            f"{size_text(max_physical)} of physical memory.",
            ("offset-map",),
        )
    return Check(
        "offset-map-coverage",
        True,
        f"`offset-map` covers {size_text(om.size)}, the declared maximum is "
        f"{size_text(max_physical)}.",
    )


def check_link_base(regions: Sequence[Region], link_base: int | None = None) -> Check:
    """The kernel's link address is page-aligned and inside the `kernel-image` region."""
    link_base = table.KERNEL_LINK_BASE if link_base is None else link_base
    image = find_region(regions, "kernel-image")
    if image is None:
        return missing_region("link-base", "kernel-image")
    if link_base % table.PAGE_SIZE:
        return Check(
            "link-base",
            False,
            f"The kernel link base {hexaddr(link_base)} is not page-aligned.",
            ("kernel-image",),
        )
    if not image.start <= link_base <= image.end:
        return Check(
            "link-base",
            False,
            f"The kernel link base {hexaddr(link_base)} lies outside {_span(image)}.",
            ("kernel-image",),
        )
    return Check(
        "link-base",
        True,
        f"The kernel links at {hexaddr(link_base)}, inside `kernel-image`.",
    )


def check_plan(regions: Sequence[Region] | None = None) -> list[Check]:
    """Every check of the plan, in report order (the table's regions unless `regions` is given)."""
    regions = table.REGIONS if regions is None else regions
    return [
        check_canonical(regions),
        check_aligned(regions),
        check_no_overlap(regions),
        check_nesting(regions),
        check_shared_pml4(regions),
        check_offset_map(regions),
        check_link_base(regions),
    ]
