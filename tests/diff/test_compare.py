"""kmtool diff on the dump fixture: a frame taken off the free list and kept by nobody is named as
the one leak; a PTE given W and X is a mapping change and a W+X finding; the same dump twice, or
a dump and its own document, is no change. The real kernel's diff is in tests/integration."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dump"))

import dump_fixtures as F  # noqa: E402

from kmtool.diff.compare import compare  # noqa: E402
from kmtool.diff.snapshot import DiffError, load  # noqa: E402
from kmtool.dump.records import field_offset  # noqa: E402
from kmtool.layout.table import PAGE_SIZE  # noqa: E402
from kmtool.schemas.frames import FrameAllocator, FrameSpan  # noqa: E402


@pytest.fixture(scope="module")
def fx() -> F.Fixture:
    return F.build()


def _copy(fx: F.Fixture) -> F.Fixture:
    return F.Fixture(bytearray(fx.image), fx.cr3, fx.truth, dict(fx.addresses))


def test_a_dump_against_itself_and_its_document_is_no_change(fx: F.Fixture, tmp_path: Path) -> None:
    dump = fx.write_raw(tmp_path / "a.raw")
    assert compare(load(dump), load(dump)).kinds == set()
    from kmtool.dump.inspection import Options, inspect_dump

    doc = tmp_path / "a.json"
    doc.write_text(json.dumps(inspect_dump(dump, Options()).to_json()))
    assert compare(load(dump), load(doc)).kinds == set()


def test_a_frame_nobody_keeps_is_the_leak(fx: F.Fixture, tmp_path: Path) -> None:
    start, count = fx.truth["spans"][-1]
    leaked = _copy(fx)  # the last span's top frame leaves the list, and the counters agree
    leaked.poke(start + field_offset(FrameSpan, "count"), count - 1)
    free = fx.addresses["frames"] + field_offset(FrameAllocator, "free_frames")
    leaked.poke(free, fx.u64(free) - 1)
    diff = compare(
        load(fx.write_raw(tmp_path / "a.raw")), load(leaked.write_raw(tmp_path / "b.raw"))
    )
    top = start + (count - 1) * PAGE_SIZE
    assert diff.leaks is not None and diff.leaks.ranges == [(top, top + 4095)]
    assert diff.leaks.frames == 1 and "leak" in diff.kinds
    assert diff.counters["km_frames.free_frames"] == (fx.u64(free), fx.u64(free) - 1)
    assert diff.owners == []  # the frame went from free to nobody: a leak, no other change


def test_a_pte_made_writable_and_executable(fx: F.Fixture, tmp_path: Path) -> None:
    from kmtool.dump.inspection import Options, inspect_dump

    ins = inspect_dump(fx.write_raw(tmp_path / "a.raw"), Options(keep_leaves=True))
    assert ins.tables is not None and ins.tables.leaves is not None
    leaves = ins.tables.leaves
    text = next(i for i in range(len(leaves.va)) if int(leaves.va[i]) == F.KERNEL_LINK_BASE)
    changed = _copy(fx)
    # find the PT entry of the first text page by walking the fixture's tables, then set W
    from kmtool.dump.translate import walk_address

    step = walk_address(ins.source.memory, fx.cr3, int(leaves.va[text]))["steps"][-1]
    changed.poke(int(step["entry_address"], 16), int(step["entry"], 16) | F.W)
    diff = compare(
        load(fx.write_raw(tmp_path / "a.raw")), load(changed.write_raw(tmp_path / "b.raw"))
    )
    assert {"mapping-change", "wx"} <= diff.kinds and "leak" not in diff.kinds
    assert [c.after.start for c in diff.new_wx if c.after] == [F.KERNEL_LINK_BASE]


def test_what_is_not_a_dump_or_a_document_is_one_sentence(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(
        DiffError, match=r"^`.*notes\.txt` is neither an inspect document nor a dump"
    ):
        load(text)
    other = tmp_path / "other.json"
    other.write_text('{"cpu": []}')
    with pytest.raises(DiffError, match=r"is not a `kmtool inspect --json` document"):
        load(other)


def test_a_document_with_the_wrong_shapes_is_one_sentence(tmp_path: Path) -> None:
    odd = tmp_path / "odd.json"
    odd.write_text('{"frames": null, "page_tables": null, "accounting": {"owner_ranges": []}}')
    with pytest.raises(DiffError, match=r"is an inspect document kmtool cannot read"):
        load(odd)


@pytest.mark.parametrize(
    "region",
    [
        {"start": "0x1ffffffffffffffff", "size": 4096, "phys": "0x0", "flags": "R---"},
        {"start": "0x1000", "size": -4096, "phys": "0x0", "flags": "R---"},
    ],
)
def test_a_document_with_numbers_past_64_bits_is_one_sentence(
    tmp_path: Path, region: dict[str, object]
) -> None:
    """An address past 2^64 or a negative size cannot become a uint64 range: a DiffError, not
    an OverflowError out of numpy."""
    doc = {"frames": None, "page_tables": {"regions": [region], "regions_total": 1}}
    odd = tmp_path / "big.json"
    odd.write_text(json.dumps(doc))
    with pytest.raises(DiffError, match=r"is an inspect document kmtool cannot read"):
        load(odd)
