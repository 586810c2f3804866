"""Every check passes on the clean fixture, and each one fails (naming what) when its invariant breaks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dump_fixtures as F
import pytest

from kmtool.dump.inspection import Inspection, Options, inspect_dump
from kmtool.dump.records import field_offset
from kmtool.errors import DumpError
from kmtool.layout.table import OFFSET_MAP_BASE, PAGE_SIZE, GiB, MiB
from kmtool.schemas.frames import FrameSpan
from kmtool.schemas.heap import Heap
from kmtool.schemas.memmap import EfiMemoryDescriptor

ALL_CHECKS = [
    "kernel parts readable",
    "kernel reached ready",
    "core-info constants match the layout table",
    "memory map sorted",
    "memory map non-overlapping",
    "memory map stepped by descriptor size",
    "page tables walked",
    "kernel PML4 entries 510 and 511 present",
    f"offset map is physical + {hex(OFFSET_MAP_BASE)}",
    "no writable and executable kernel mapping",
    "spans page aligned",
    "spans sorted and non-overlapping",
    "spans coalesced",
    "span links consistent",
    "span treap matches the list",
    "spans inside usable memory",
    "spans inside the offset map",
    "spans hold no page table",
    "spans hold no mapped kernel page",
    "spans hold no handoff data",
    "free frames match the kernel counter",
    "span count matches the kernel counter",
    "frame stack decodes",
    "frame stack matches the kernel counters",
    "stacked frames are in no span",
    "frame stack holds no page table",
    "frame stack holds no mapped kernel page",
    "heap headers consistent",
    "heap counters match",
    "no leaked frames",
]


def run(fx: F.Fixture, tmp_path: Path, **options: object) -> Inspection:
    return inspect_dump(fx.write_raw(tmp_path / "dump.raw"), Options(**options))  # type: ignore[arg-type]


def copy(fx: F.Fixture) -> F.Fixture:
    return F.Fixture(bytearray(fx.image), fx.cr3, fx.truth, dict(fx.addresses))


def check(ins: Inspection, name: str) -> tuple[bool, str]:
    (row,) = [c for c in ins.checks if c.name == name]
    return row.ok, row.detail


@pytest.fixture(scope="module")
def fx() -> F.Fixture:
    return F.build()


def test_clean_fixture_passes_every_check(fx: F.Fixture, tmp_path: Path) -> None:
    ins = run(fx, tmp_path)
    assert [c.name for c in ins.checks] == ALL_CHECKS
    assert [c.name for c in ins.failed] == []
    with_kernel = run(fx, tmp_path, kernel=fx.write_kernel_elf(tmp_path / "k.elf"))
    names = [c.name for c in with_kernel.checks]
    assert names[3:5] == ["core-info agrees with kernel symbols", "build id matches the kernel ELF"]
    assert with_kernel.failed == []
    assert check(with_kernel, "build id matches the kernel ELF")[1] == (
        "000102030405060708090a0b0c0d0e0f in the dump and in `k.elf`'s .note.gnu.build-id"
    )


def node(fx: F.Fixture, start: int, field: str) -> int:
    return start + field_offset(FrameSpan, field)


def spans(fx: F.Fixture) -> list[tuple[int, int]]:
    return fx.truth["spans"]


def desc(index: int, field: str) -> int:
    return F.MEMORY_MAP_PA + index * F.DESCRIPTOR_SIZE + field_offset(EfiMemoryDescriptor, field)


def _pt_entry(fx: F.Fixture, va: int) -> int:
    """Physical address of the PT entry mapping `va` (4 KiB pages)."""
    table = fx.addresses["kernel_pml4"]
    for shift in (39, 30, 21):
        table = fx.u64(table + ((va >> shift) & 511) * 8) & F.ADDR
    return table + ((va >> 12) & 511) * 8


def mutate_core_constant(fx: F.Fixture) -> None:
    fx.poke(fx.field_pa("core", "heap_base"), 0xFFFFFF7000000000)


def mutate_unsorted_map(fx: F.Fixture) -> None:
    a, b = desc(4, "type"), desc(5, "type")
    first = bytes(fx.image[a : a + 40])
    fx.put(a, bytes(fx.image[b : b + 40]))
    fx.put(b, first)


def mutate_overlapping_map(fx: F.Fixture) -> None:
    fx.poke(desc(4, "number_of_pages"), fx.u64(desc(4, "number_of_pages")) + 1)


def mutate_stepping(fx: F.Fixture) -> None:
    fx.poke(fx.field_pa("boot", "descriptor_size"), 40)  # sizeof, not the firmware's 48


def mutate_shared_entry(fx: F.Fixture) -> None:
    fx.poke(fx.addresses["kernel_pml4"] + 510 * 8, 0)


def mutate_offset_map(fx: F.Fixture) -> None:
    pdpt = fx.u64(fx.addresses["kernel_pml4"] + 511 * 8) & F.ADDR
    fx.poke(pdpt, GiB | F.P | F.W | F.PS | F.NX)  # OFFSET_MAP_BASE -> physical 1 GiB


def mutate_wx(fx: F.Fixture) -> None:
    entry = _pt_entry(fx, F.DATA_VA)
    fx.poke(entry, fx.u64(entry) & ~F.NX)


def mutate_span_start(fx: F.Fixture) -> None:
    start = spans(fx)[3][0]
    fx.poke(node(fx, start, "start"), start + 8)


def mutate_unsorted_spans(fx: F.Fixture) -> None:
    (s0, _), (s1, _), (s2, _) = spans(fx)[:3]
    fx.poke(fx.field_pa("frames", "head"), s1)
    fx.poke(node(fx, s1, "next"), s0)
    fx.poke(node(fx, s0, "next"), s2)


def mutate_uncoalesced(fx: F.Fixture) -> None:
    (s2, _), (s3, _) = spans(fx)[2:4]
    fx.poke(node(fx, s2, "count"), (s3 - s2) // PAGE_SIZE)


def mutate_prev(fx: F.Fixture) -> None:
    s5 = spans(fx)[5][0]
    fx.poke(node(fx, s5, "prev"), 0x1234000)


# The fixture's treap (F.treap): root 0x1000 -> right 0x150000 -> right 0x353000, whose left is
# 0x318000 (children 0x1ab000, 0x351000) and whose right is 0x600000 -> right 0xd01000 -> left
# 0x6a1000 -> right 0xc00000.
def test_fixture_treap_shape(fx: F.Fixture) -> None:
    tree = fx.truth["treap"]
    assert fx.truth["treap_root"] == 0x1000
    assert tree[0x353000][:2] == (0x318000, 0x600000)
    assert tree[0x318000][:2] == (0x1AB000, 0x351000)
    assert tree[0xD01000][:2] == (0x6A1000, 0) and tree[0x6A1000][:2] == (0, 0xC00000)


def mutate_treap_root(fx: F.Fixture) -> None:
    fx.poke(fx.field_pa("frames", "root"), 0x353000)


def mutate_treap_dangling(fx: F.Fixture) -> None:
    fx.poke(node(fx, 0x318000, "left"), 0x1AA000)


def mutate_treap_twice(fx: F.Fixture) -> None:
    fx.poke(node(fx, 0x1AB000, "left"), 0x351000)


def mutate_treap_missing(fx: F.Fixture) -> None:
    fx.poke(node(fx, 0xD01000, "left"), 0)


def mutate_treap_cycle(fx: F.Fixture) -> None:
    fx.poke(node(fx, 0x600000, "right"), 0)
    fx.poke(node(fx, 0xC00000, "left"), 0xD01000)  # 0xd01000 -> 0x6a1000 -> 0xc00000 -> 0xd01000


def mutate_treap_order(fx: F.Fixture) -> None:
    fx.poke(node(fx, 0x318000, "left"), 0x351000)
    fx.poke(node(fx, 0x318000, "right"), 0x1AB000)


def mutate_treap_priority(fx: F.Fixture) -> None:
    fx.poke(node(fx, 0xC00000, "priority"), (1 << 64) - 1)


def mutate_unusable(fx: F.Fixture) -> None:
    start, count = [s for s in spans(fx) if s[0] + s[1] * PAGE_SIZE == 0x7F0000][0]
    fx.poke(node(fx, start, "count"), count + 1)  # into ACPI NVS


def mutate_table_in_span(fx: F.Fixture) -> None:
    start, count = [s for s in spans(fx) if s[0] == 0x150000][0]
    fx.poke(node(fx, start, "count"), count + 1)  # up to and over the first table at 0x190000


def mutate_kernel_in_span(fx: F.Fixture) -> None:
    fx.poke(node(fx, 0x1000, "count"), (F.KERNEL_PHYS + PAGE_SIZE - 0x1000) // PAGE_SIZE)


def mutate_handoff_in_span(fx: F.Fixture) -> None:
    fx.poke(node(fx, 0x150000, "start"), 0x14F000)


def mutate_free_counter(fx: F.Fixture) -> None:
    at = fx.field_pa("frames", "free_frames")
    fx.poke(at, fx.u64(at) + 1)


def mutate_span_counter(fx: F.Fixture) -> None:
    at = fx.field_pa("frames", "spans")
    fx.poke(at, fx.u64(at) + 1)


def _heap_header_pa(fx: F.Fixture, va: int) -> int:
    return fx.u64(_pt_entry(fx, va)) & F.ADDR | (va & 0xFFF)


def mutate_heap_header(fx: F.Fixture) -> None:
    untouched = set(fx.truth["heap_untouched"].values())
    listed = [b for b in fx.truth["heap_blocks"] if not b[2] and b[0] not in untouched]
    fx.put(_heap_header_pa(fx, listed[-1][0]), b"JUNK")


def mutate_heap_untouched(fx: F.Fixture) -> None:
    # Move an untouched block to another upper half of its order: not a block in the tree, and the
    # real one has no header.
    order, va = min(fx.truth["heap_untouched"].items())
    fx.poke(fx.field_pa("heap", "untouched") + 8 * order, va + (2 << order))


def mutate_heap_counter(fx: F.Fixture) -> None:
    at = fx.field_pa("heap", "bytes_in_use")
    fx.poke(at, fx.u64(at) + 3)


CASES: list[tuple[Callable[[F.Fixture], None], str, str]] = [
    (mutate_core_constant, "core-info constants match the layout table",
     "heap_base is 0xffffff7000000000, the layout table says 0xffffff7800000000"),
    (mutate_unsorted_map, "memory map sorted", "entry 5 at 0x190000 follows 0x400000"),
    (mutate_overlapping_map, "memory map non-overlapping", "0x190000-0x400fff overlaps 0x400000"),
    (mutate_stepping, "memory map stepped by descriptor size", "not page aligned"),
    (mutate_shared_entry, "kernel PML4 entries 510 and 511 present", "entry 510 is 0x0"),
    (mutate_offset_map, f"offset map is physical + {hex(OFFSET_MAP_BASE)}",
     f"{hex(OFFSET_MAP_BASE)} maps physical 0x40000000"),
    (mutate_wx, "no writable and executable kernel mapping", f"{hex(F.DATA_VA)} (+4096 bytes, RWX-)"),
    (mutate_span_start, "spans page aligned", "not page aligned"),
    (mutate_unsorted_spans, "spans sorted and non-overlapping", "span 0x1000 follows 0x150000"),
    (mutate_uncoalesced, "spans coalesced", "ends where"),
    (mutate_prev, "span links consistent", "has prev 0x1234000, expected"),
    (mutate_treap_root, "span treap matches the list", "root 0x353000 is also linked as a child; "
     "span 0x1000 is not in the treap (no node links to it)"),
    (mutate_treap_dangling, "span treap matches the list",
     "span 0x318000 has left 0x1aa000, not a span on the list"),
    (mutate_treap_twice, "span treap matches the list", "span 0x351000 is linked from 2 nodes"),
    (mutate_treap_missing, "span treap matches the list",
     "span 0x6a1000 is not in the treap (no node links to it)"),
    (mutate_treap_cycle, "span treap matches the list",
     "span 0x6a1000 is on a cycle of links, not reachable from the root"),
    (mutate_treap_order, "span treap matches the list",
     "span 0x1ab000 is in the right subtree of 0x318000; span 0x351000 is in the left subtree of "
     "0x318000"),
    (mutate_treap_priority, "span treap matches the list",
     "span 0xc00000 has priority 0xffffffffffffffff, above its parent 0x6a1000's "
     "0x81f340a3c02b5c8"),
    (mutate_unusable, "spans inside usable memory", "outside usable firmware ranges"),
    (mutate_table_in_span, "spans hold no page table", "page table 0x190000 is inside a free span"),
    (mutate_kernel_in_span, "spans hold no mapped kernel page",
     f"physical 0x100000 (mapped at {hex(F.KERNEL_LINK_BASE)}) is inside a free span"),
    (mutate_handoff_in_span, "spans hold no handoff data", "handoff range 0x140000 is inside"),
    (mutate_free_counter, "free frames match the kernel counter", "km_frames.free_frames is"),
    (mutate_span_counter, "span count matches the kernel counter", "km_frames.spans is"),
    (mutate_heap_header, "heap headers consistent", "has magic 0x4b4e554a"),
    (mutate_heap_untouched, "heap headers consistent", "not a block of order"),
    (mutate_heap_counter, "heap counters match", "km_heap.bytes_in_use is"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "name", "detail"), CASES, ids=[c[1] for c in CASES])
def test_each_check_fails_on_its_defect(
    fx: F.Fixture, tmp_path: Path, mutate: Callable[[F.Fixture], None], name: str, detail: str
) -> None:
    broken = copy(fx)
    mutate(broken)
    ok, text = check(run(broken, tmp_path), name)
    assert not ok
    assert detail in text


def test_spans_outside_the_offset_map(tmp_path: Path) -> None:
    fx = F.build(offset_page=2 * MiB)
    broken = copy(fx)
    pdpt = fx.u64(fx.addresses["kernel_pml4"] + 511 * 8) & F.ADDR
    pd = fx.u64(pdpt) & F.ADDR
    broken.poke(pd + 7 * 8, 0)  # physical 14..16 MiB no longer offset-mapped
    ins = run(broken, tmp_path)
    ok, text = check(ins, "spans inside the offset map")
    assert not ok and "span 0xd01000-0xffffff not reachable through the offset map" in text
    ok, text = check(ins, f"offset map is physical + {hex(OFFSET_MAP_BASE)}")
    assert not ok and "RAM 0xc00000-0xffffff is not offset-mapped" in text


def test_kernel_symbols_that_disagree(fx: F.Fixture, tmp_path: Path) -> None:
    symbols = dict(F.SYMBOLS, km_heap=F.SYMBOLS["km_heap"] + 0x40)
    kernel = fx.write_kernel_elf(tmp_path / "k.elf", symbols)
    ok, text = check(run(fx, tmp_path, kernel=kernel), "core-info agrees with kernel symbols")
    assert not ok and "`km_heap` maps to" in text


def test_build_id_of_another_kernel(fx: F.Fixture, tmp_path: Path) -> None:
    other = fx.write_kernel_elf(tmp_path / "other.elf", build_id=bytes(range(1, 21)))
    ok, text = check(run(fx, tmp_path, kernel=other), "build id matches the kernel ELF")
    assert not ok
    assert text == (
        "the dump's build id is 000102030405060708090a0b0c0d0e0f, the kernel ELF `other.elf` has "
        "0102030405060708090a0b0c0d0e0f1011121314"
    )


def test_build_id_missing_from_the_elf_or_the_dump(fx: F.Fixture, tmp_path: Path) -> None:
    bare = fx.write_kernel_elf(tmp_path / "bare.elf", build_id=None)
    ok, text = check(run(fx, tmp_path, kernel=bare), "build id matches the kernel ELF")
    assert not ok and "the kernel ELF `bare.elf` has no .note.gnu.build-id" in text
    zeros = copy(fx)
    zeros.put(zeros.field_pa("core", "build_id"), bytes(16))
    kernel = fx.write_kernel_elf(tmp_path / "k.elf")
    ok, text = check(run(zeros, tmp_path, kernel=kernel), "build id matches the kernel ELF")
    assert not ok and "(zeros in the dump: the kernel did not record one)" in text
    # a shorter id (here 8 bytes) is zero-padded in the dump, as the kernel copies it
    short = copy(fx)
    short.put(short.field_pa("core", "build_id"), F.BUILD_ID[:8] + bytes(8))
    kernel = fx.write_kernel_elf(tmp_path / "short.elf", build_id=F.BUILD_ID[:8])
    assert check(run(short, tmp_path, kernel=kernel), "build id matches the kernel ELF")[0]


def test_dump_of_an_early_panic(fx: F.Fixture, tmp_path: Path) -> None:
    early = copy(fx)
    early.poke(early.field_pa("core", "kernel_pml4_phys"), 0)
    early.poke(early.field_pa("core", "ready_tsc"), 0)
    early.put(fx.addresses["heap"], bytes(Heap.sizeof()))
    ins = inspect_dump(early.write_elf(tmp_path / "early.elf"), Options())  # CR3 from the note
    assert ins.heap is None and ins.kernel_tables is None and ins.frames is not None
    ok, text = check(ins, "kernel reached ready")
    assert not ok
    assert "ready_tsc is 0: the dump was taken before KM-READY" in text
    assert "kernel_pml4_phys is 0" in text
    ok, text = check(ins, "heap headers consistent")  # reached through the kernel's tables
    assert (
        ok and text.startswith("not applicable, not built yet:") and "kernel_pml4_phys is 0" in text
    )
    ok, text = check(ins, "spans inside the offset map")
    assert ok and text.startswith("not applicable, not built yet:")
    with pytest.raises(DumpError, match=r"records no kernel PML4 yet \(raw kernel_pml4_phys 0x0\)"):
        run(early, tmp_path)  # raw, no CR3 anywhere


def test_registry_reads_what_each_check_takes() -> None:
    # every check is declared once, and takes exactly the parts it declares it reads, by name
    import dataclasses
    import inspect
    from typing import get_args

    from kmtool.dump.checks import CHECKS
    from kmtool.dump.checks.registry import Part

    attributes = {f.name for f in dataclasses.fields(Inspection)} | {"foreign"}
    assert set(get_args(Part)) <= attributes
    names = [spec.name for spec in CHECKS]
    assert len(set(names)) == len(names)
    for spec in CHECKS:
        assert tuple(inspect.signature(spec.function()).parameters) == spec.reads, spec.name
        assert set(spec.optional) <= set(spec.reads), spec.name
