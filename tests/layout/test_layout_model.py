"""Plan checks (kmtool/layout/checks.py): each passes on the real table, fails on a broken one."""

from __future__ import annotations

from dataclasses import replace

from kmtool.layout import checks, table
from kmtool.layout.table import GiB, KiB, MiB, Region


def _with(name: str, **changes: object) -> list[Region]:
    """The real table with region `name` changed."""
    return [replace(r, **changes) if r.name == name else r for r in table.REGIONS]  # type: ignore[arg-type]


def test_the_table_of_record_passes_every_check() -> None:
    results = checks.check_plan()
    assert [c.name for c in results] == [
        "canonical",
        "aligned",
        "no-overlap",
        "nesting",
        "shared-pml4",
        "offset-map-coverage",
        "link-base",
    ]
    assert all(c.ok for c in results), [c for c in results if not c.ok]
    assert all(c.culprits == () for c in results)


def test_numbers_of_record() -> None:
    # docs/design.md §2: these are the plan; a change here is a design change, not a refactor.
    assert table.region("kernel-space").start == 0xFFFFFF0000000000
    assert table.region("kernel-space").size == 1 << 40
    assert table.region("kernel-heap").start == 0xFFFFFF7800000000
    assert table.region("kernel-heap").size == 32 * GiB
    assert table.region("offset-map").start == 0xFFFFFF8000000000
    assert table.region("offset-map").size == 512 * GiB
    assert table.region("user-space").size == 128 << 40
    assert table.region("user-stack").end == 0x00007FFFFFFFFFFF
    assert table.region("offset-map").pml4 == (511, 511)
    assert table.region("kernel-heap").pml4 == (510, 510)
    assert table.region("user-space").pml4 == (0, 255)


def test_canonical_rejects_an_address_in_the_hole() -> None:
    bad = _with("kernel-heap", start=0x0000900000000000)
    result = checks.check_canonical(bad)
    assert not result.ok
    assert result.culprits == ("kernel-heap",)
    assert "start 0x900000000000" in result.detail and "not canonical" in result.detail


def test_canonical_rejects_a_region_spanning_the_hole() -> None:
    # Both ends canonical, but the range contains every non-canonical address.
    bad = _with("user-space", size=(1 << 64) - 1)
    result = checks.check_canonical(bad)
    assert not result.ok
    assert "user-space" in result.culprits


def test_canonical_rejects_an_end_past_the_top_and_an_empty_region() -> None:
    past_top = _with("offset-map", size=513 * GiB)
    assert checks.check_canonical(past_top).culprits == ("offset-map",)
    empty = _with("user-stack", size=0)
    result = checks.check_canonical(empty)
    assert result.culprits == ("user-stack",) and "size 0" in result.detail


def test_aligned_rejects_a_start_off_the_page_size() -> None:
    bad = _with("kernel-heap", start=table.HEAP_BASE + 0x800)
    result = checks.check_aligned(bad)
    assert not result.ok
    assert result.culprits == ("kernel-heap",)
    assert "not a multiple of its 4 KiB page size" in result.detail


def test_aligned_holds_each_region_to_its_own_page_size() -> None:
    # 2 MiB is a fine size for a 4 KiB-page region but not for the 1 GiB-page offset map.
    assert checks.check_aligned(_with("kernel-heap", size=2 * MiB)).ok
    bad = checks.check_aligned(_with("offset-map", size=511 * GiB + 2 * MiB))
    assert bad.culprits == ("offset-map",) and "1 GiB page size" in bad.detail


def test_aligned_rejects_a_page_size_x86_does_not_have() -> None:
    result = checks.check_aligned(_with("kernel-image", page_size=8 * KiB))
    assert result.culprits == ("kernel-image",)
    assert "not 4 KiB, 2 MiB or 1 GiB" in result.detail


def test_no_overlap_names_both_siblings() -> None:
    # Heap grown by 1 GiB downwards runs into kernel-vspace.
    bad = _with("kernel-heap", start=table.HEAP_BASE - GiB, size=table.HEAP_SIZE + GiB)
    result = checks.check_no_overlap(bad)
    assert not result.ok
    assert set(result.culprits) == {"kernel-vspace", "kernel-heap"}
    assert "`kernel-vspace`" in result.detail and "overlaps `kernel-heap`" in result.detail


def test_no_overlap_allows_a_child_inside_its_parent() -> None:
    # Parent and child share addresses by design; only siblings are compared.
    assert checks.check_no_overlap(table.REGIONS).ok


def test_nesting_rejects_a_child_outside_its_parent() -> None:
    bad = _with("user-stack", parent="kernel-space")
    result = checks.check_nesting(bad)
    assert not result.ok
    assert result.culprits == ("user-stack",)
    assert "is not inside its parent `kernel-space`" in result.detail


def test_nesting_rejects_an_unknown_parent_and_a_duplicate_name() -> None:
    unknown = checks.check_nesting(_with("kernel-heap", parent="kernel-spaec"))
    assert unknown.culprits == ("kernel-heap",) and "`kernel-spaec`" in unknown.detail
    duplicate = checks.check_nesting([*table.REGIONS, table.region("kernel-heap")])
    assert duplicate.culprits == ("kernel-heap",) and "declared twice" in duplicate.detail


def test_shared_pml4_rejects_a_kernel_region_below_entry_510() -> None:
    # A heap at the bottom of the upper half (PML4 256) would not be copied into new address spaces.
    moved = _with("kernel-heap", start=0xFFFF800000000000, parent=None)
    result = checks.check_shared_pml4(moved)
    assert not result.ok
    assert result.culprits == ("kernel-heap",)
    assert "PML4 entries 256-256, outside the shared 510-511" in result.detail


def test_shared_pml4_ignores_the_lower_half() -> None:
    assert checks.check_shared_pml4(table.REGIONS, first=510, last=511).ok
    assert not checks.check_shared_pml4(table.REGIONS, first=511, last=511).ok


def test_offset_map_must_cover_the_declared_maximum() -> None:
    small = _with("offset-map", size=256 * GiB)
    result = checks.check_offset_map(small)
    assert not result.ok
    assert result.culprits == ("offset-map",)
    assert "covers 256 GiB" in result.detail and "512 GiB" in result.detail
    assert checks.check_offset_map(table.REGIONS, max_physical=512 * GiB).ok
    assert not checks.check_offset_map(table.REGIONS, max_physical=513 * GiB).ok
    missing = [r for r in table.REGIONS if r.name != "offset-map"]
    assert not checks.check_offset_map(missing).ok


def test_link_base_must_be_aligned_and_inside_the_image_region() -> None:
    assert checks.check_link_base(table.REGIONS).ok
    unaligned = checks.check_link_base(table.REGIONS, link_base=table.KERNEL_LINK_BASE + 8)
    assert not unaligned.ok and "not page-aligned" in unaligned.detail
    outside = checks.check_link_base(table.REGIONS, link_base=table.HEAP_BASE)
    assert outside.culprits == ("kernel-image",) and "outside" in outside.detail


def test_check_plan_reports_every_broken_region() -> None:
    broken = _with("kernel-heap", start=table.HEAP_BASE + 0x800)
    failed = [c for c in checks.check_plan(broken) if not c.ok]
    # Unaligned, and its last 2 KiB now run into the offset map.
    assert [(c.name, c.culprits) for c in failed] == [
        ("aligned", ("kernel-heap",)),
        ("no-overlap", ("kernel-heap", "offset-map")),
    ]
