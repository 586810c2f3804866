"""kmtool/units.py: each size style, plurals and addresses, exactly as the commands print them."""

from __future__ import annotations

import pytest

from kmtool import units
from kmtool.layout import table
from kmtool.layout.table import GiB, KiB, MiB, TiB


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (4095, "3.99 KiB"),  # truncated, never rounded up
        (479 * GiB, "479 GiB"),
        (128 << 40, "128 TiB"),
        (-48 * KiB, "-48 KiB"),
        (GiB - 1, "1023.99 MiB"),
        ((1 << 64) - 1, "15.99 EiB"),
    ],
)
def test_size_text(size: int, text: str) -> None:
    assert units.size_text(size) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (4096, "4 KiB"),
        (64 * GiB - 20 * KiB, "63 GiB 1023 MiB 1004 KiB"),
        (16416 * 4096, "64 MiB 128 KiB"),
        (2 * TiB + 5, "2 TiB 5 B"),
        (-3 * MiB, "-3 MiB"),
    ],
)
def test_exact_size_text(size: int, text: str) -> None:
    assert units.exact_size_text(size) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (512 * MiB, "512M"),
        (3 * GiB, "3G"),
        (1536 * MiB, "1536M"),  # exact: never 1.5G
        (4 * KiB, "4K"),
        (2 * MiB, "2M"),
        (GiB, "1G"),
        (512 * GiB, "512G"),
        (TiB, "1T"),
        (4097, "4097"),
        (512, "512"),
        (0, "0"),
    ],
)
def test_suffix_size_text(size: int, text: str) -> None:
    assert units.suffix_size_text(size) == text


def test_suffix_size_text_reads_back_through_parse_size() -> None:
    from kmtool.layout.cost import parse_size

    for size in (64 * MiB, 512 * MiB, 1536 * MiB, 3 * GiB, 512 * GiB):
        assert parse_size(units.suffix_size_text(size)) == size


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 checks"), (1, "1 check"), (2, "2 checks"), (-1, "-1 checks")],
)
def test_plural(count: int, text: str) -> None:
    assert units.plural(count, "check") == text


def test_plural_keeps_the_noun_phrase() -> None:
    assert units.plural(3, "PT_LOAD segment") == "3 PT_LOAD segments"
    assert units.plural(1, "backed page") == "1 backed page"


def test_hexaddr_is_sixteen_digits() -> None:
    assert units.hexaddr(0) == "0x0000000000000000"
    assert units.hexaddr(table.HEAP_BASE) == "0xffffff7800000000"
    assert units.hexaddr(0x1000) == "0x0000000000001000"
    assert units.hexaddr((1 << 64) - 1) == "0xffffffffffffffff"
