"""The page-table walker against the fixture's own record of every mapping it made."""

from __future__ import annotations

from pathlib import Path

import dump_fixtures as F
import numpy as np
import pytest

from kmtool.dump.levels import LEVELS, PERM_U, PERM_W, PERM_X, LeafRule
from kmtool.dump.pagetable import walk
from kmtool.dump.source import open_dump
from kmtool.dump.translate import translate_many, walk_address
from kmtool.errors import DumpError
from kmtool.layout.table import (
    HEAP_BASE,
    KERNEL_LINK_BASE,
    KERNEL_VSPACE_BASE,
    OFFSET_MAP_BASE,
    PAGE_SIZE,
    GiB,
    MiB,
)


def _open(fx: F.Fixture, tmp_path: Path, name: str = "d.raw"):  # type: ignore[no-untyped-def]
    return open_dump(fx.write_raw(tmp_path / name)).memory


@pytest.fixture(scope="module")
def fx() -> F.Fixture:
    return F.build()


@pytest.fixture(scope="module")
def mem(fx: F.Fixture, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return _open(fx, tmp_path_factory.mktemp("pt"))


def test_levels_are_data() -> None:
    assert [(lv.name, lv.shift, lv.leaf) for lv in LEVELS] == [
        ("PML4", 39, LeafRule.NEVER),
        ("PDPT", 30, LeafRule.PS_BIT),
        ("PD", 21, LeafRule.PS_BIT),
        ("PT", 12, LeafRule.ALWAYS),
    ]


def test_every_leaf_equals_the_fixture(fx: F.Fixture, mem) -> None:  # type: ignore[no-untyped-def]
    pt = walk(mem, fx.cr3, keep_leaves=True)
    assert pt.leaves is not None
    got = {
        int(va): (int(pa), int(size), int(raw))
        for va, pa, size, raw in zip(pt.leaves.va, pt.leaves.pa, pt.leaves.size, pt.leaves.entry,
                                     strict=True)
    }  # fmt: skip
    assert got == fx.truth["leaves"]
    pages = 64 + fx.truth["heap_backed_pages"] + fx.truth["pool_pages"]
    assert pt.leaf_counts == {PAGE_SIZE: pages, 2 * MiB: 1, GiB: 512}
    assert pt.tables.tolist() == fx.truth["tables"]


def test_pat_bit_is_not_an_address_bit(fx: F.Fixture, mem) -> None:  # type: ignore[no-untyped-def]
    pa, size, raw = fx.truth["leaves"][KERNEL_VSPACE_BASE]
    assert raw & F.PAT_LARGE and size == 2 * MiB
    pt = walk(mem, fx.cr3)
    assert pt.translate(KERNEL_VSPACE_BASE + 0x1234) == F.VSPACE_2M_PA + 0x1234


def test_merged_ranges_with_effective_permissions(fx: F.Fixture, mem) -> None:  # type: ignore[no-untyped-def]
    rows = walk(mem, fx.cr3).ranges.to_json()
    image = [r for r in rows if r["region"] == "kernel-image"]
    assert [(r["start"], r["size"], r["flags"]) for r in image] == [
        (hex(KERNEL_LINK_BASE), 16 * PAGE_SIZE, "R-X-"),
        (hex(KERNEL_LINK_BASE + 16 * PAGE_SIZE), 8 * PAGE_SIZE, "R---"),
        (hex(KERNEL_LINK_BASE + 24 * PAGE_SIZE), 40 * PAGE_SIZE, "RW--"),
    ]
    offset = [r for r in rows if r["region"] == "offset-map"]
    # 512 x 1 GiB, contiguous virtually and physically: one range ending at the top of memory.
    assert offset == [{"start": hex(OFFSET_MAP_BASE), "end": "0xffffffffffffffff",
                       "size": 512 * GiB, "phys": "0x0", "page_size": GiB, "flags": "RW--",
                       "region": "offset-map"}]  # fmt: skip
    heap = [r for r in rows if r["region"] == "kernel-heap"]
    assert heap[0]["start"] == hex(HEAP_BASE) and heap[0]["page_size"] == PAGE_SIZE
    assert sum(r["size"] for r in heap) == fx.truth["heap_backed_pages"] * PAGE_SIZE
    assert all(int(r["start"], 16) >> 47 == 0x1FFFF for r in rows)  # canonical, upper half


def test_user_bit_is_anded_across_levels(tmp_path: Path) -> None:
    fx = F.build(cr3="process")
    pt = walk(_open(fx, tmp_path), fx.cr3, keep_leaves=True)
    stack = [r for r in pt.ranges.to_json() if r["region"] == "user-stack"]
    assert stack == [{"start": "0x7ffffffff000", "end": "0x7fffffffffff", "size": PAGE_SIZE,
                      "phys": hex(fx.truth["process_stack"]), "page_size": PAGE_SIZE,
                      "flags": "RW--", "region": "user-stack"}]  # fmt: skip
    assert pt.leaves is not None
    leaf = int(np.flatnonzero(pt.leaves.va == np.uint64(0x7FFFFFFFF000))[0])
    assert int(pt.leaves.entry[leaf]) & F.U  # the leaf says user; the PDPT entry does not


def test_nx_is_ored_across_levels(fx: F.Fixture, tmp_path: Path) -> None:
    pml4 = fx.addresses["kernel_pml4"]
    changed = F.Fixture(bytearray(fx.image), fx.cr3)
    changed.poke(pml4 + 510 * 8, fx.u64(pml4 + 510 * 8) | F.NX)
    pt = walk(_open(changed, tmp_path), fx.cr3)
    perm = int(pt.ranges.perm[np.searchsorted(pt.ranges.start, np.uint64(KERNEL_LINK_BASE))])
    assert perm & PERM_X == 0  # the text leaf has NX clear; the PML4 entry now sets it
    assert perm & PERM_W == 0 and perm & PERM_U == 0


def test_bit7_is_reserved_at_pml4_and_pat_at_pt(fx: F.Fixture, tmp_path: Path) -> None:
    pml4 = fx.addresses["kernel_pml4"]
    changed = F.Fixture(bytearray(fx.image), fx.cr3)
    changed.poke(pml4 + 510 * 8, fx.u64(pml4 + 510 * 8) | F.PS)  # not a 512 GiB page
    pdpt = fx.u64(pml4 + 510 * 8) & F.ADDR
    pd = fx.u64(pdpt) & F.ADDR
    pt = fx.u64(pd) & F.ADDR
    index = (KERNEL_LINK_BASE >> 12) & 511
    changed.poke(pt + index * 8, fx.u64(pt + index * 8) | F.PS)  # PAT at PT level: still 4 KiB
    tables = walk(_open(changed, tmp_path), fx.cr3, keep_leaves=True)
    assert tables.translate(KERNEL_LINK_BASE + 5) == F.KERNEL_PHYS + 5
    assert tables.leaf_counts[PAGE_SIZE] == (
        64 + fx.truth["heap_backed_pages"] + fx.truth["pool_pages"]
    )


def test_translate_many_agrees_with_the_leaves(fx: F.Fixture, mem) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    vas, expect = [], []
    for va, (pa, size, _raw) in fx.truth["leaves"].items():
        offset = int(rng.integers(0, size))
        vas.append(va + offset)
        expect.append(pa + offset)
    vas += [0x1000, HEAP_BASE + 20 * GiB, KERNEL_VSPACE_BASE + 2 * MiB]  # unmapped
    phys, ok = translate_many(mem, fx.cr3, np.array(vas, dtype=np.uint64))
    n = len(expect)
    assert ok[:n].all() and not ok[n:].any()
    assert phys[:n].tolist() == expect


def test_walk_address_shows_each_level(fx: F.Fixture, mem) -> None:  # type: ignore[no-untyped-def]
    w = walk_address(mem, fx.cr3, KERNEL_LINK_BASE + 0x10)
    assert [s["level"] for s in w["steps"]] == ["PML4", "PDPT", "PD", "PT"]
    assert [s["index"] for s in w["steps"]] == [510, 0, 0, 256]
    assert w["steps"][0]["table"] == hex(fx.addresses["kernel_pml4"])
    assert w["phys"] == hex(F.KERNEL_PHYS + 0x10) and w["flags"] == "R-X-"
    assert w["steps"][3]["flags"] == "PRESENT|GLOBAL"
    big = walk_address(mem, fx.cr3, OFFSET_MAP_BASE + 3 * GiB + 7)
    assert [s["level"] for s in big["steps"]] == ["PML4", "PDPT"]
    assert big["phys"] == hex(3 * GiB + 7) and big["page_size"] == GiB
    assert "PS" in big["steps"][1]["flags"]
    miss = walk_address(mem, fx.cr3, 0x1000)
    assert miss["phys"] is None and miss["stopped"] == "PML4 entry 0 is not present"
    with pytest.raises(DumpError, match=r"0x800000000000 is not canonical"):
        walk_address(mem, fx.cr3, 0x0000800000000000)


def test_aliases_of_a_physical_frame(fx: F.Fixture, mem) -> None:  # type: ignore[no-untyped-def]
    pt = walk(mem, fx.cr3)
    got = pt.aliases(F.KERNEL_PHYS + 0x20)
    assert [(a["va"], a["region"]) for a in got] == [
        (hex(KERNEL_LINK_BASE + 0x20), "kernel-image"),
        (hex(OFFSET_MAP_BASE + F.KERNEL_PHYS + 0x20), "offset-map"),
    ]


def test_two_mb_offset_map(tmp_path: Path) -> None:
    fx = F.build(offset_page=2 * MiB)
    pt = walk(_open(fx, tmp_path), fx.cr3)
    rows = [r for r in pt.ranges.to_json() if r["region"] == "offset-map"]
    assert rows == [{"start": hex(OFFSET_MAP_BASE), "end": hex(OFFSET_MAP_BASE + 16 * MiB - 1),
                     "size": 16 * MiB, "phys": "0x0", "page_size": 2 * MiB, "flags": "RW--",
                     "region": "offset-map"}]  # fmt: skip


def test_recursive_entry_is_skipped_with_a_note(fx: F.Fixture, tmp_path: Path) -> None:
    pml4 = fx.addresses["kernel_pml4"]
    changed = F.Fixture(bytearray(fx.image), fx.cr3)
    raw = pml4 | F.P | F.W
    changed.poke(pml4 + 300 * 8, raw)
    tables = walk(_open(changed, tmp_path), fx.cr3)
    assert tables.errors == []
    assert tables.recursive == [
        f"PML4 entry 300 of the table at {hex(pml4)} points back to table {hex(pml4)} on its own "
        f"path (raw entry {hex(raw)}); not followed"
    ]
    clean = walk(_open(fx, tmp_path), fx.cr3)
    assert tables.leaf_counts == clean.leaf_counts  # everything else still walked


def test_table_outside_the_dump(fx: F.Fixture, tmp_path: Path) -> None:
    pml4 = fx.addresses["kernel_pml4"]
    changed = F.Fixture(bytearray(fx.image), fx.cr3)
    raw = 0x900000 | F.P | F.W
    changed.poke(pml4 + 5 * 8, raw)  # into the hole
    path = changed.write_elf(tmp_path / "d.elf")
    tables = walk(open_dump(path).memory, fx.cr3)
    assert tables.errors == [
        f"Page table: PML4 entry 5 of the table at {hex(pml4)} (raw entry {hex(raw)}) points to a "
        "PDPT table at 0x900000, outside the dump; not followed."
    ]
    assert tables.leaf_total == walk(_open(fx, tmp_path), fx.cr3).leaf_total
    assert tables.to_json()["error"] == tables.errors[0]
    root = walk(open_dump(path).memory, 0x900000)
    assert root.error == "Page table: the PML4 at 0x900000 (CR3) is outside the dump."
    assert root.leaf_total == 0


def test_too_many_leaves(fx: F.Fixture, mem) -> None:  # type: ignore[no-untyped-def]
    tables = walk(mem, fx.cr3, max_leaves=100)
    assert (
        tables.error is not None
        and "would map more than 100 pages (at PDPT level: " in tables.error
    )
    assert len(tables.ranges) == 0


def test_bounded_ranges(fx: F.Fixture, mem, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import kmtool.dump.pagetable as pagetable

    monkeypatch.setattr(pagetable, "RANGES_LISTED", 3)
    doc = walk(mem, fx.cr3).to_json()
    # 8 ranges, and 6 for the held frames' pool (4 scattered frames, the heap and table pools' rest)
    assert len(doc["regions"]) == 3 and doc["regions_total"] == 8 + 6
    monkeypatch.setattr(pagetable, "MAX_RANGES", 5)
    error = walk(mem, fx.cr3).error
    assert error is not None and "hold more than 5 distinct mappings (at PT level)" in error


def test_the_count_reads_no_deeper_than_its_bounds_need(fx: F.Fixture, tmp_path: Path) -> None:
    """On a kernel's own tables the count before the walk stops at the PDPTs: their PDs could
    not hold more pages or tables than the bounds even if every entry below were full."""
    from kmtool.dump import pagecount

    mem = _open(fx, tmp_path)
    read: list[int] = []
    gather = mem.gather
    mem.gather = lambda pas, width: (read.append(len(pas)), gather(pas, width))[1]  # type: ignore[method-assign]
    assert pagecount.refusal(mem, fx.cr3, 1 << 25, 1 << 20) is None
    pml4 = np.frombuffer(bytes(fx.image[fx.cr3 : fx.cr3 + 4096]), "<u8")
    pdpts = len({int(e) & F.ADDR for e in pml4 if e & F.P})
    assert read == [1, pdpts]  # the PML4, then its PDPTs; no PD and no PT
    # with bounds that full PDs could pass, it reads on and still says nothing of this dump
    read.clear()
    assert pagecount.refusal(mem, fx.cr3, 1 << 17, 1 << 20) is None and len(read) > 2
