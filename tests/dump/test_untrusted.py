"""Hostile values in real structures: absurd counts, broken page tables, wrong versions.

Each test plants one bad value in the clean fixture and asserts what kmtool says about it: an error
(or a failing check) naming the structure, its address and the raw value, never a wrapped number
that happens to pass.
"""

from __future__ import annotations

from pathlib import Path

import dump_fixtures as F
import pytest

from kmtool.dump.inspection import Inspection, Options, inspect_dump
from kmtool.errors import DumpError
from kmtool.layout.table import PAGE_SIZE
from kmtool.schemas.frames import FrameSpan

FIRST_SPAN = F.build().truth["spans"][0]


@pytest.fixture(scope="module")
def fx() -> F.Fixture:
    return F.build()


def copy(fx: F.Fixture) -> F.Fixture:
    return F.Fixture(bytearray(fx.image), fx.cr3, fx.truth, dict(fx.addresses))


def run(fx: F.Fixture, tmp_path: Path, **options: object) -> Inspection:
    return inspect_dump(fx.write_raw(tmp_path / "dump.raw"), Options(**options))  # type: ignore[arg-type]


def check(ins: Inspection, name: str) -> tuple[bool, str]:
    (row,) = [c for c in ins.checks if c.name == name]
    return row.ok, row.detail


def _set_first_count(fx: F.Fixture, count: int, consistent: bool) -> F.Fixture:
    broken = copy(fx)
    start, old = FIRST_SPAN
    broken.poke(start + _count_offset(), count)
    if consistent:  # the kernel counter agrees, so only the bound can catch it
        counter = broken.field_pa("frames", "free_frames")
        broken.poke(counter, (broken.u64(counter) - old + count) % (1 << 64))
    return broken


def _count_offset() -> int:
    from kmtool.dump.records import field_offset

    return field_offset(FrameSpan, "count")


# -- 1. span counts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "count",
    [1 << 60, (1 << 52) + 152, (1 << 64) - 1, (1 << 64) // PAGE_SIZE],
    ids=["huge", "wraps-52", "all-ones", "wraps-exactly"],
)
def test_absurd_span_count_is_an_error(fx: F.Fixture, tmp_path: Path, count: int) -> None:
    broken = _set_first_count(fx, count, consistent=True)
    with pytest.raises(DumpError) as err:
        run(broken, tmp_path)
    start = FIRST_SPAN[0]
    assert str(err.value).startswith(
        f"Frame free list: FrameSpan at phys {hex(start)} has count {hex(count)} ({count} frames), "
        "more than the "
    )


def test_count_within_ram_but_past_usable_memory_fails_checks(
    fx: F.Fixture, tmp_path: Path
) -> None:
    ram_frames = sum(size for _, size in F.RAM) // PAGE_SIZE
    ins = run(_set_first_count(fx, ram_frames, consistent=True), tmp_path)
    assert check(ins, "free frames match the kernel counter")[0]  # consistent on purpose
    ok, text = check(ins, "spans inside usable memory")
    assert not ok and f"span {hex(FIRST_SPAN[0])} (+{ram_frames} frames)" in text
    assert not check(ins, "spans sorted and non-overlapping")[0]


def test_span_ends_saturate_instead_of_wrapping(fx: F.Fixture, tmp_path: Path) -> None:
    broken = copy(fx)
    start = FIRST_SPAN[0]
    from kmtool.dump.records import field_offset

    broken.poke(start + field_offset(FrameSpan, "start"), (1 << 64) - PAGE_SIZE)
    broken.poke(start + _count_offset(), 4)
    ins = run(broken, tmp_path)
    assert int(ins.frames.ends[0]) == (1 << 64) - 1  # type: ignore[union-attr]
    assert not check(ins, "spans inside usable memory")[0]
    assert not check(ins, "span links consistent")[0]
