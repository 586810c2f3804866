"""--memory: the SIZE parser and the page-table cost model (kmtool/layout/cost.py)."""

from __future__ import annotations

import pytest

from kmtool.errors import ValidationError
from kmtool.layout import cost, table
from kmtool.layout.table import GiB, KiB, MiB


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512M", 512 * MiB),
        ("64G", 64 * GiB),
        ("1T", 1 << 40),
        ("4096", 4096),
        ("2GiB", 2 * GiB),
        ("2gb", 2 * GiB),
        (" 1.5G ", 3 * GiB // 2),
        ("16k", 16 * KiB),
    ],
)
def test_parse_size_accepts_binary_units(text: str, size: int) -> None:
    assert cost.parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is not a size"),
        ("lots", "is not a size"),
        ("12X", "is not a size"),
        ("-5G", "is not a size"),
        ("1E", "is not a size"),
        ("0", "must be larger than zero"),
        ("0.3K", "not a whole number of bytes"),
        ("5P", "more than the 4 PiB"),
    ],
)
def test_parse_size_rejects_bad_input_with_a_sentence(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        cost.parse_size(text)
    assert message in str(err.value)
    assert f"`{text}`" in str(err.value) and str(err.value).endswith(".")


def test_tables_for_counts_each_level() -> None:
    # 2 MiB at 4 KiB pages, aligned: one PDPT, one PD, one PT.
    assert cost.describe(cost.tables_for(table.KERNEL_LINK_BASE, 2 * MiB, 4096)) == (
        "1 PDPT + 1 PD + 2 PTs"  # the link base is 1 MiB into a 2 MiB block: it straddles two
    )
    assert cost.describe(cost.tables_for(table.HEAP_BASE, 2 * MiB, 4096)) == "1 PDPT + 1 PD + 1 PT"
    # 1 GiB leaves need only the PDPT; 2 MiB leaves need one PD per GiB.
    assert len(cost.tables_for(table.OFFSET_MAP_BASE, 512 * GiB, GiB)) == 1
    assert len(cost.tables_for(table.OFFSET_MAP_BASE, 3 * GiB + 1, 2 * MiB)) == 1 + 4
    assert cost.tables_for(table.HEAP_BASE, 0, 4096) == set()


def test_cost_for_64_gib() -> None:
    plan = cost.plan_cost(64 * GiB, image_size=60 * KiB)
    tables = {item.key: item.tables for item in plan.items}
    assert tables == {
        "pml4": 1,
        "offset-map-1g": 1,  # one PDPT of 1 GiB pages
        "offset-map-2m": 1 + 64,  # the PDPT plus a PD per GiB
        "image": 3,  # PDPT + PD + PT for 60 KiB at the link base
        "heap": 32 + 32 * 512,  # a PD per GiB and a PT per 2 MiB; the PDPT is the image's
    }
    assert plan.image_bytes == 60 * KiB
    assert plan.fixed_1g == 60 * KiB + (1 + 1 + 3) * 4096
    assert plan.fixed_2m == 60 * KiB + (1 + 65 + 3) * 4096
    assert plan.left_1g == 64 * GiB - plan.fixed_1g
    assert all(c.ok for c in cost.check_memory(plan))


def test_image_size_is_rounded_to_pages() -> None:
    assert cost.plan_cost(GiB, image_size=4097).image_bytes == 8192
    unknown = cost.plan_cost(GiB)
    assert unknown.image_bytes == 0 and not unknown.image_known


def test_more_ram_than_the_offset_map_reaches_fails() -> None:
    plan = cost.plan_cost(1 << 40)
    assert plan.managed == 512 * GiB
    assert plan.item("offset-map-2m").tables == 1 + 512
    result = {c.name: c for c in cost.check_memory(plan)}
    check = result["memory-in-offset-map"]
    assert not check.ok and check.culprits == ("offset-map",)
    assert "512 GiB would be unmanaged" in check.detail


def test_fixed_costs_larger_than_ram_fail() -> None:
    plan = cost.plan_cost(16 * KiB, image_size=12 * KiB)
    result = {c.name: c for c in cost.check_memory(plan)}
    assert not result["memory-fixed-costs"].ok
    assert result["memory-in-offset-map"].ok
