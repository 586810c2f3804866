"""5-level paging (CR4.LA57): every walker over a PML5 laid above the fixture's own PML4.

The PML5's entries 1, 300 and 511 all name the fixture kernel's PML4, so each of its leaves is
mapped three times: at PML5 slot 511 the kernel's own (48-bit canonical) addresses, at slots 1 and
300 addresses that only 57-bit paging can name. The truth is the fixture's record of its leaves,
moved to each slot by the arithmetic of the SDM (bits 56:48 index the PML5; bit 56 is the sign),
not by kmtool's level table.
"""

from __future__ import annotations

import json
from pathlib import Path

import dump_fixtures as F
import hostile_dumps as H
import numpy as np
import pytest
from conftest import run_kmtool

from kmtool.dump.inspection import Options, inspect_dump
from kmtool.dump.levels import FIVE_LEVEL, FOUR_LEVEL, LEVELS, LeafRule
from kmtool.dump.pagetable import walk
from kmtool.dump.source import open_dump
from kmtool.dump.translate import translate_many, walk_address
from kmtool.errors import DumpError
from kmtool.layout.table import KERNEL_LINK_BASE, canonical, is_canonical

SLOTS = (1, 300, 511)
LOW48 = (1 << 48) - 1


def at_slot(slot: int, va: int) -> int:
    """The 5-level address of the fixture's 4-level `va` under PML5 entry `slot`."""
    raw = slot << 48 | va & LOW48
    return raw | (((1 << 64) - 1) ^ ((1 << 57) - 1)) if raw >> 56 & 1 else raw


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[H.Dump, int, Path]:
    d = H.Dump()
    pml5 = d.table({slot: d.fx.cr3 | H.TABLE for slot in SLOTS})
    path = d.write(tmp_path_factory.mktemp("la57") / "la57.raw")  # no sidecar: no CPU state
    return d, pml5, path


@pytest.fixture(scope="module")
def mem(dump: tuple[H.Dump, int, Path]):  # type: ignore[no-untyped-def]
    return open_dump(dump[2]).memory


def truth(fx: F.Fixture) -> dict[int, tuple[int, int, int]]:
    return {at_slot(s, va): leaf for s in SLOTS for va, leaf in fx.truth["leaves"].items()}


def test_one_level_table_grows_by_a_row() -> None:
    assert [(lv.name, lv.shift, lv.leaf) for lv in FIVE_LEVEL.levels] == [
        ("PML5", 48, LeafRule.NEVER),
        ("PML4", 39, LeafRule.NEVER),
        ("PDPT", 30, LeafRule.PS_BIT),
        ("PD", 21, LeafRule.PS_BIT),
        ("PT", 12, LeafRule.ALWAYS),
    ]
    assert FIVE_LEVEL.levels[1:] == FOUR_LEVEL.levels == LEVELS
    assert (FOUR_LEVEL.address_bits, FIVE_LEVEL.address_bits) == (48, 57)


def test_canonical_takes_the_width() -> None:
    va = 0xFF00_0000_0000_0000  # PML5 slot 256 onwards: canonical in 57 bits only
    assert is_canonical(va, 57) and not is_canonical(va)
    assert canonical(1 << 56, 57) == 0xFF00_0000_0000_0000 and canonical(1 << 56) == 0
    assert canonical(0xFFFF_8000_0000_0000) == canonical(0xFFFF_8000_0000_0000, 57)


def test_every_leaf_under_the_pml5(dump, mem) -> None:  # type: ignore[no-untyped-def]
    d, pml5, _ = dump
    pt = walk(mem, pml5, keep_leaves=True, mode=FIVE_LEVEL)
    assert pt.error is None and pt.leaves is not None
    got = {
        int(va): (int(pa), int(size), int(raw))
        for va, pa, size, raw in zip(pt.leaves.va, pt.leaves.pa, pt.leaves.size, pt.leaves.entry,
                                     strict=True)
    }  # fmt: skip
    assert got == truth(d.fx)
    assert pt.tables.tolist() == sorted([*d.fx.truth["tables"], pml5])
    four = walk(mem, d.fx.cr3)
    assert pt.leaf_counts == {size: 3 * n for size, n in four.leaf_counts.items()}
    assert pt.to_json()["paging"] == "5-level" and four.to_json()["paging"] == "4-level"
    # the ranges: in address order, and at slot 511 the kernel's own addresses
    assert (np.diff(pt.ranges.start.astype(np.float64)) > 0).all()
    va = KERNEL_LINK_BASE + 0x10
    assert pt.translate(va) == four.translate(va) is not None
    assert pt.translate(at_slot(300, va)) == four.translate(va)


def test_walk_address_shows_five_levels(dump, mem) -> None:  # type: ignore[no-untyped-def]
    d, pml5, _ = dump
    va4, (pa, size, _) = next(iter(d.fx.truth["leaves"].items()))
    va = at_slot(300, va4) + 0x123
    walked = walk_address(mem, pml5, va, FIVE_LEVEL)
    assert walked["phys"] == hex(pa + 0x123) and walked["page_size"] == size
    steps = walked["steps"]
    assert [s["level"] for s in steps][:2] == ["PML5", "PML4"]
    assert (steps[0]["table"], steps[0]["index"]) == (hex(pml5), 300)
    assert steps[1]["table"] == hex(d.fx.cr3) and steps[0]["flags"] == "PRESENT|WRITABLE"


def test_not_canonical_in_57_bits(dump, mem) -> None:  # type: ignore[no-untyped-def]
    _, pml5, _ = dump
    for va in (1 << 56, 0x7F00_0000_0000_0000, 0xFE00_0000_0000_0000):
        with pytest.raises(
            DumpError, match=r"not canonical in 5-level paging \(bits 63..56 differ"
        ):
            walk_address(mem, pml5, va, FIVE_LEVEL)
    # a 57-bit address is not canonical in 4-level paging: refused, not walked through 4 levels
    with pytest.raises(DumpError, match=r"not canonical in 4-level paging \(bits 63..47 differ"):
        walk_address(mem, pml5, at_slot(300, KERNEL_LINK_BASE), FOUR_LEVEL)


def test_translate_many_in_five_levels(dump, mem) -> None:  # type: ignore[no-untyped-def]
    d, pml5, _ = dump
    leaves = truth(d.fx)
    rng = np.random.default_rng(57)
    vas = rng.choice(np.array(sorted(leaves), dtype=np.uint64), 2000)
    offsets = rng.integers(0, 4096, len(vas), dtype=np.uint64)
    bad = np.array([1 << 56, 0x0080_0000_0000_0000 + (1 << 56)], dtype=np.uint64)  # not canonical
    pa, ok = translate_many(mem, pml5, np.concatenate([vas + offsets, bad]), FIVE_LEVEL)
    want = [leaves[int(v)][0] + int(o) for v, o in zip(vas, offsets, strict=True)]
    assert ok[: len(vas)].all() and pa[: len(vas)].tolist() == want
    assert not ok[len(vas) :].any()
    _, ok4 = translate_many(mem, pml5, np.array([at_slot(1, KERNEL_LINK_BASE)], np.uint64))
    assert not ok4[0]  # 4-level: not canonical, so not translated


def test_aliases_across_pml5_slots(dump, mem) -> None:  # type: ignore[no-untyped-def]
    d, pml5, _ = dump
    pt = walk(mem, pml5, mode=FIVE_LEVEL)
    va4 = KERNEL_LINK_BASE
    pa = walk(mem, d.fx.cr3).translate(va4)
    assert pa is not None
    got = {int(a["va"], 16) for a in pt.aliases(pa)}
    assert {at_slot(s, va4) for s in SLOTS} <= got


def test_inspect_takes_the_mode_from_cr4_or_the_statement(dump) -> None:  # type: ignore[no-untyped-def]
    d, pml5, path = dump
    va = at_slot(1, KERNEL_LINK_BASE)
    stated = inspect_dump(path, Options(cr3=pml5, paging="5-level", walk=[va], pa=[0x200000]))
    doc = stated.to_json()["page_tables"]
    assert doc is not None and doc["paging"] == "5-level" and doc["root_source"] == "--cr3"
    assert doc["walks"][0]["phys"] is not None and len(doc["walks"][0]["steps"]) >= 4
    sidecar = H.write_la57_sidecar(path, pml5)
    try:
        from_cpu = inspect_dump(path, Options(keep_leaves=True))
        assert from_cpu.root_source is not None and from_cpu.root_source.startswith("CPU 0")
        assert from_cpu.tables is not None and from_cpu.tables.mode is FIVE_LEVEL
        assert from_cpu.kernel_tables is not None and from_cpu.kernel_tables.mode is FOUR_LEVEL
        with pytest.raises(DumpError, match=r"uses 5-level paging \(CR4 0x16a0\), not the 4-lev"):
            inspect_dump(path, Options(cr3=pml5, paging="4-level"))
        assert json.loads(sidecar.read_text())["cpus"][0]["cr4"] == "0x16a0"
    finally:
        sidecar.unlink()


def test_cli_states_the_mode(dump) -> None:  # type: ignore[no-untyped-def]
    _, pml5, path = dump
    va = at_slot(300, KERNEL_LINK_BASE)
    done = run_kmtool("inspect", str(path), "--cr3", hex(pml5), "--paging", "5-level", "--part", "summary",
                      "--walk", hex(va))  # fmt: skip
    assert done.stderr == "", done.stderr
    assert f"CR3 {hex(pml5)} (from --cr3, 5-level paging)" in done.stdout
    assert "PML5" in done.stdout
    refused = run_kmtool("inspect", str(path), "--cr3", hex(pml5), "--walk", hex(va))
    assert refused.returncode == 1 and "not canonical in 4-level paging" in refused.stderr


def test_shared_entries_are_read_under_pml5_entry_511(tmp_path: Path) -> None:
    """Our kernel's check of its shared PML4 entries, under a 5-level CR3: the PML4 that PML5
    entry 511 names must be the kernel's; without that entry the check fails naming it."""
    d = H.Dump()
    pml5 = d.table({1: d.fx.cr3 | H.TABLE})
    d.la57_root = pml5  # the sidecar's CPU 0: no --cr3, so the core-info block is scanned for
    ins = inspect_dump(d.write(tmp_path / "no511.raw"), Options())
    assert ins.core is not None and ins.tables is not None and ins.tables.mode is FIVE_LEVEL
    (row,) = [c for c in ins.checks if c.name == "kernel PML4 entries 510 and 511 present"]
    assert not row.ok and row.detail == "CR3's PML5 entry 511 is 0x0 (not present)"
