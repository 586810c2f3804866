"""Hostile values in real structures: absurd counts, broken page tables, wrong versions.

Each test plants one bad value in the clean fixture and asserts what kmtool says about it: an error
(or a failing check) naming the structure, its address and the raw value, never a wrapped number
that happens to pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import dump_fixtures as F
import pytest

from kmtool.dump.inspection import Inspection, Options, inspect_dump
from kmtool.errors import DumpError
from kmtool.layout.table import PAGE_SIZE
from kmtool.schemas.coreinfo import CORE_INFO_VERSION
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
def test_absurd_span_count_is_a_failed_check_and_the_rest_decodes(
    fx: F.Fixture, tmp_path: Path, count: int
) -> None:
    ins = run(_set_first_count(fx, count, consistent=True), tmp_path)
    start = FIRST_SPAN[0]
    why = ins.part_errors["frames"]
    assert why == (
        f"Frame free list: node {hex(start)} has count {hex(count)} ({count} frames), more than "
        f"the {ins.source.memory.ram_bytes // PAGE_SIZE} frames the dump holds (linked from "
        f"the allocator head at {hex(fx.addresses['frames'])})."
    )
    assert ins.frames is not None and len(ins.frames.nodes) == 0  # the bad node is the first
    assert ins.heap is not None and ins.tables is not None
    assert check(ins, "kernel parts readable") == (False, f"frames: {why}")
    ok, detail = check(ins, "free frames match the kernel counter")  # needs the whole list
    assert ok and detail == f"not applicable, the free list is partial: {why}"


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


# -- 2. page-table faults do not cost the other parts ----------------------------------------------


def test_table_outside_the_dump_fails_one_check(fx: F.Fixture, tmp_path: Path) -> None:
    broken = copy(fx)
    pml4 = fx.addresses["kernel_pml4"]
    raw = 0x7FFFFFF000 | F.P | F.W
    broken.poke(pml4 + 5 * 8, raw)
    ins = run(broken, tmp_path, walk=[5 << 39])
    assert ins.frames is not None and ins.memmap is not None and ins.boot is not None
    message = (
        f"Page table: PML4 entry 5 of the table at {hex(pml4)} (raw entry {hex(raw)}) points to a "
        "PDPT table at 0x7ffffff000, outside the dump; not followed."
    )
    assert check(ins, "page tables walked") == (False, message)
    doc = ins.to_json()
    assert doc["page_tables"]["error"] == message and doc["frames"] is not None
    assert ins.heap is None  # found through the broken tables: left out
    assert ins.walks[0]["stopped"] == (
        f"the PDPT table at 0x7ffffff000 (named by PML4 entry 5 ({hex(raw)})) is outside the dump"
    )


def test_cr3_outside_the_dump(fx: F.Fixture, tmp_path: Path) -> None:
    # With --cr3 the core-info block is not searched for in the whole dump (docs/design.md §5.3),
    # so this dump says where it is, as kmtool's own dumps do (here through the raw sidecar).
    dump = fx.write_raw(tmp_path / "dump.raw", layout=True)
    sidecar = tmp_path / "dump.raw.layout.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()),
                                   "core_info": hex(fx.addresses["core"])}))  # fmt: skip
    ins = inspect_dump(dump, Options(cr3=0x7FFFFFF000))
    assert ins.core is not None and ins.core.found_by == "sidecar"
    assert ins.frames is not None
    ok, detail = check(ins, "page tables walked")
    assert not ok and detail == "Page table: the PML4 at 0x7ffffff000 (CR3) is outside the dump."


def test_recursive_entry_fails_on_our_kernel_and_is_a_note_on_a_foreign_one(
    fx: F.Fixture, tmp_path: Path
) -> None:
    pml4 = fx.addresses["kernel_pml4"]
    broken = copy(fx)
    broken.poke(pml4 + 300 * 8, pml4 | F.P | F.W)
    entry = (
        f"PML4 entry 300 of the table at {hex(pml4)} points back to table {hex(pml4)} on its own "
        f"path (raw entry {hex(pml4 | F.P | F.W)}); not followed"
    )
    ok, detail = check(run(broken, tmp_path), "page tables walked")
    assert not ok and detail == "recursive mapping (kmtool's kernel makes none): " + entry
    broken.poke(fx.addresses["core"], 0)  # now a foreign dump
    ins = run(broken, tmp_path, cr3=pml4)
    ok, detail = check(ins, "page tables walked")
    assert ok and detail.endswith("; skipped recursive " + entry)
    assert ins.to_json()["page_tables"]["recursive_entries"] == [entry]


# -- 3. foreign dumps get no region names ----------------------------------------------------------


def test_foreign_ranges_have_no_region_names(fx: F.Fixture, tmp_path: Path) -> None:
    ours = run(fx, tmp_path).to_json()["page_tables"]["regions"]
    assert "kernel-image" in {r["region"] for r in ours}
    foreign = copy(fx)
    foreign.poke(fx.addresses["core"], 0)
    doc = run(foreign, tmp_path, cr3=fx.cr3, pa=[F.KERNEL_PHYS]).to_json()["page_tables"]
    assert {r["region"] for r in doc["regions"]} == {None}
    assert {a["region"] for a in doc["aliases"][hex(F.KERNEL_PHYS)]} == {None}
    assert len(doc["regions"]) <= len(ours)  # merged again without our region boundaries


# -- 6. an early panic: what the kernel had not built is not applicable ------------------------------


def test_early_panic_reads_no_pml4_at_zero(fx: F.Fixture, tmp_path: Path) -> None:
    from kmtool.dump import render
    from kmtool.schemas.heap import Heap

    early = copy(fx)
    early.poke(early.field_pa("core", "kernel_pml4_phys"), 0)
    early.poke(early.field_pa("core", "ready_tsc"), 0)
    early.poke(early.field_pa("core", "offset_map_page_size"), 0)
    early.put(fx.addresses["heap"], bytes(Heap.sizeof()))
    early.put(0, b"\xff" * PAGE_SIZE)  # garbage where a PML4 "at 0" would be read
    ins = inspect_dump(early.write_elf(tmp_path / "early.elf"), Options())
    ok, detail = check(ins, "kernel PML4 entries 510 and 511 present")
    assert ok and detail.startswith("not applicable, not built yet: the kernel did not reach ready")
    assert not check(ins, "kernel reached ready")[0]
    core = ins.to_json()["source"]["core_info"]
    assert render._core_line(core).endswith("kernel PML4 not built yet")


def test_early_panic_before_the_allocator_every_dependent_check_is_not_applicable(
    fx: F.Fixture, tmp_path: Path
) -> None:
    from kmtool.dump import render
    from kmtool.schemas.frames import FrameAllocator
    from kmtool.schemas.heap import Heap

    early = copy(fx)
    early.poke(early.field_pa("core", "kernel_pml4_phys"), 0)
    early.poke(early.field_pa("core", "ready_tsc"), 0)
    early.put(fx.addresses["frames"], bytes(FrameAllocator.sizeof()))
    early.put(fx.addresses["heap"], bytes(Heap.sizeof()))
    ins = inspect_dump(early.write_elf(tmp_path / "early.elf"), Options())
    clean = inspect_dump(fx.write_elf(tmp_path / "clean.elf"), Options())
    # the same rows as on a ready kernel: none vanishes, none passes against an empty allocator
    assert [c.name for c in ins.checks] == [c.name for c in clean.checks]
    assert [c.name for c in ins.failed] == ["kernel reached ready"]
    assert "km_frames is all zero: the frame allocator was not set up" in ins.failed[0].detail
    frames_state = hex(fx.addresses["frames"])
    span_rows = [c for c in ins.checks if "span" in c.name or "free frames" in c.name]
    assert len(span_rows) == 13  # 12 of the span list, 1 of the stack
    for row in span_rows:
        assert row.detail.startswith(
            "not applicable, not built yet: the kernel did not reach ready"
        )
        assert row.ok and row.detail.endswith(
            f"(km_frames at {frames_state} is all zero: the frame allocator was not set up)"
        ), row
    for name in ("heap headers consistent", "no writable and executable kernel mapping"):
        ok, detail = check(ins, name)
        assert (
            ok
            and detail.startswith("not applicable, not built yet")
            and "kernel_pml4_phys" in detail
        )
    doc = ins.to_json()
    assert doc["frames"]["initialized"] is False and clean.to_json()["frames"]["initialized"]
    assert render._frames_line(doc["frames"]) == (
        f"allocator not set up (km_frames at {frames_state} is all zero)"
    )


# -- 7. a core-info block of another version is named, not ignored ----------------------------------


def test_core_info_of_another_version_is_a_failed_check(fx: F.Fixture, tmp_path: Path) -> None:
    other = copy(fx)
    other.poke(other.field_pa("core", "version"), 0x1000099)
    core = fx.addresses["core"]
    problem = (
        f"The core-info block at {hex(core)} has version 16777369 (0x1000099); this kmtool reads "
        f"version {CORE_INFO_VERSION}."
    )
    # with the QEMU note's CR3: one failed check, and the parts that need no core-info
    ins = inspect_dump(other.write_elf(tmp_path / "other.elf"), Options())
    assert check(ins, "core-info version") == (False, problem)
    assert ins.core is None and ins.frames is None and ins.heap is None
    assert ins.tables is not None and ins.root == fx.cr3
    assert ins.boot is not None and ins.boot.address == F.BOOT_INFO_PA and ins.memmap is not None
    # a short block is named the same way
    short = copy(fx)
    short.poke(
        short.field_pa("core", "version"), CORE_INFO_VERSION | 16 << 32
    )  # u32 version, length
    ok, detail = check(inspect_dump(short.write_elf(tmp_path / "short.elf"), Options()),
                       "core-info length")  # fmt: skip
    assert not ok and detail.startswith(f"The core-info block at {hex(core)} says it is 16 bytes")
    # without any CR3 (a raw image) there is nothing else to show: the one-line error as before
    with pytest.raises(DumpError) as err:
        run(other, tmp_path)
    assert str(err.value) == problem


def test_boot_info_found_by_scan_only_when_unique(fx: F.Fixture, tmp_path: Path) -> None:
    from kmtool.dump.bootinfo import BootInfo, find_boot_info
    from kmtool.dump.source import open_dump

    twice = copy(fx)
    twice.put(0x5000, bytes(fx.image[F.BOOT_INFO_PA : F.BOOT_INFO_PA + BootInfo.sizeof()]))
    one = find_boot_info(open_dump(fx.write_raw(tmp_path / "one.raw")).memory)
    assert one is not None and one.address == F.BOOT_INFO_PA
    assert find_boot_info(open_dump(twice.write_raw(tmp_path / "two.raw")).memory) is None


# -- 8. ELF core headers -----------------------------------------------------------------------------

E_PHOFF, E_PHENTSIZE, E_PHNUM = 32, 54, 56  # offsets in Elf64_Ehdr
P_MEMSZ = 40  # offset in Elf64_Phdr


def _damaged_elf(fx: F.Fixture, tmp_path: Path, at: int, fmt: str, value: int) -> Path:
    import struct

    path = fx.write_elf(tmp_path / "d.elf")
    raw = bytearray(path.read_bytes())
    phoff = struct.unpack_from("<Q", raw, E_PHOFF)[0]
    struct.pack_into(fmt, raw, at if at >= 0 else phoff + 56 * 1 + P_MEMSZ, value)
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(
    ("at", "fmt", "value", "message"),
    [
        (
            -1,
            "<Q",
            1 << 62,
            r"has a memory range at physical 0x[0-9a-f]+ of 0x4000000000000000 "
            r"bytes, past the 52-bit physical address space of x86-64: an absurd size\.$",
        ),
        (
            E_PHOFF,
            "<Q",
            1 << 40,
            r"has its \d+ program headers at file offset 0x10000000000 "
            r"\(e_phoff\), past the end of the \d+-byte file: truncated or damaged\.$",
        ),
        (E_PHNUM, "<H", 0xFFFF, r"has e_phnum 0xffff \(PN_XNUM"),
        (E_PHENTSIZE, "<H", 32, r"has e_phentsize 32; an ELF64 program header is 56 bytes\.$"),
    ],
    ids=["p_memsz-2^62", "e_phoff-past-eof", "e_phnum-0xffff", "e_phentsize"],
)
def test_damaged_elf_header_is_one_sentence(
    fx: F.Fixture, tmp_path: Path, at: int, fmt: str, value: int, message: str
) -> None:
    path = _damaged_elf(fx, tmp_path, at, fmt, value)
    with pytest.raises(DumpError, match=message):
        inspect_dump(path, Options())


# -- 9. small things --------------------------------------------------------------------------------


def test_source_range_ends_are_inclusive(fx: F.Fixture, tmp_path: Path) -> None:
    ranges = run(fx, tmp_path).to_json()["source"]["ranges"]
    assert [(r["start"], r["end"]) for r in ranges] == [("0x0", hex(len(fx.image) - 1))]


def test_base_keeps_the_layout_files_cr3(fx: F.Fixture, tmp_path: Path) -> None:
    path = fx.write_raw(tmp_path / "laid-out.raw", layout=True)
    ins = inspect_dump(path, Options(base=0x1000))
    assert ins.root == fx.cr3 and ins.root_source == "CPU 0, layout file"
    assert ins.to_json()["source"]["base"] == "0x1000"
