"""Core-info, boot info, memory map and heap decoders: what they find, and how they refuse bad data."""

from __future__ import annotations

from pathlib import Path

import dump_fixtures as F
import pytest

from kmtool.dump.bootinfo import read_boot_info
from kmtool.dump.coreinfo import find_core_info, magic_bytes, read_core_info
from kmtool.dump.heap import read_heap
from kmtool.dump.kernel_elf import load_kernel_symbols
from kmtool.dump.memmap import merge_intervals, read_memory_map, type_name
from kmtool.dump.pagetable import walk
from kmtool.dump.source import open_dump
from kmtool.errors import DumpError, KernelElfError
from kmtool.layout.table import HEAP_BASE, MEMTYPE_KERNEL, PAGE_SIZE
from kmtool.schemas.bootinfo import BOOT_INFO_MAGIC
from kmtool.schemas.coreinfo import CoreInfo
from kmtool.schemas.memmap import EfiMemoryType


@pytest.fixture(scope="module")
def fx() -> F.Fixture:
    return F.build()


def _mem(fx: F.Fixture, tmp_path: Path):  # type: ignore[no-untyped-def]
    return open_dump(fx.write_raw(tmp_path / "d.raw")).memory


def copy(fx: F.Fixture) -> F.Fixture:
    return F.Fixture(bytearray(fx.image), fx.cr3, fx.truth, dict(fx.addresses))


# -- core info ------------------------------------------------------------------------------------


def test_scan_finds_the_block_and_skips_stale_copies(fx: F.Fixture, tmp_path: Path) -> None:
    stale = copy(fx)
    block = bytes(fx.image[fx.addresses["core"] : fx.addresses["core"] + CoreInfo.sizeof()])
    stale.put(0x60000, block)  # an old copy: its self_phys names another address
    stale.put(0x61003, magic_bytes())  # an unaligned magic
    mem = _mem(stale, tmp_path)
    core = find_core_info(mem, None, None)
    assert core is not None and core.address == fx.addresses["core"] and core.found_by == "scan"
    assert core.kernel_pml4_phys == fx.addresses["kernel_pml4"]
    assert core.to_json()["offset_map_base"] == "0xffffff8000000000"


def test_symbol_path_translates_through_the_page_tables(fx: F.Fixture, tmp_path: Path) -> None:
    mem = _mem(fx, tmp_path)
    kernel = load_kernel_symbols(fx.write_kernel_elf(tmp_path / "k.elf"))
    assert kernel.symbols == F.SYMBOLS and kernel.link_base == F.KERNEL_LINK_BASE
    core = find_core_info(mem, kernel, walk(mem, fx.cr3))
    assert core is not None and core.found_by == "symbol" and core.address == fx.addresses["core"]


def test_unmapped_symbol(fx: F.Fixture, tmp_path: Path) -> None:
    mem = _mem(fx, tmp_path)
    kernel = load_kernel_symbols(fx.write_kernel_elf(tmp_path / "k.elf", {"km_core_info": 0x1234}))
    with pytest.raises(DumpError, match=r"`km_core_info` at 0x1234 is not mapped under CR3"):
        find_core_info(mem, kernel, walk(mem, fx.cr3))


def test_kernel_without_the_symbol(fx: F.Fixture, tmp_path: Path) -> None:
    with pytest.raises(KernelElfError, match=r"has no `km_core_info` symbol \(stripped\?\)"):
        load_kernel_symbols(fx.write_kernel_elf(tmp_path / "k.elf", {"km_heap": 1}))
    junk = tmp_path / "junk.elf"
    junk.write_bytes(b"not an elf at all")
    with pytest.raises(KernelElfError, match=r"is not an ELF file"):
        load_kernel_symbols(junk)


def test_core_info_errors_name_address_and_value(fx: F.Fixture, tmp_path: Path) -> None:
    bad = copy(fx)
    core = fx.addresses["core"]
    bad.poke(bad.field_pa("core", "version"), 7)
    with pytest.raises(DumpError, match=rf"core-info block at {hex(core)} has version 7"):
        read_core_info(_mem(bad, tmp_path), core, "scan")
    # A scan names it too (magic and self_phys say it is ours): not a silent "foreign dump".
    with pytest.raises(DumpError, match=rf"core-info block at {hex(core)} has version 7 \(0x7\)"):
        find_core_info(_mem(bad, tmp_path), None, None)


# -- boot info and memory map ---------------------------------------------------------------------


def test_boot_info_and_memory_map(fx: F.Fixture, tmp_path: Path) -> None:
    mem = _mem(fx, tmp_path)
    boot = read_boot_info(mem, F.BOOT_INFO_PA)
    assert boot.cmdline_text == "hold test" and boot.descriptor_size == F.DESCRIPTOR_SIZE
    doc = boot.to_json()
    assert doc["kernel_virt_base"] == hex(F.KERNEL_LINK_BASE) and doc["cmdline_truncated"] is False
    mm = read_memory_map(mem, boot)
    got = [(int(t), int(s), int(n)) for t, s, n in zip(mm.entries["type"],
           mm.entries["physical_start"], mm.entries["number_of_pages"], strict=True)]  # fmt: skip
    assert got == [(int(t), s, n) for t, s, n in F.MEMORY_MAP]
    totals = mm.to_json()["totals"]
    assert totals["km-kernel"] == 64 * PAGE_SIZE and totals["acpi-nvs"] == 16 * PAGE_SIZE
    assert list(totals)[0] == "conventional"  # largest first


def test_type_names() -> None:
    assert type_name(EfiMemoryType.BOOT_SERVICES_DATA) == "boot-services-data"
    assert type_name(MEMTYPE_KERNEL) == "km-kernel"
    assert type_name(0x80000007) == "oem-0x80000007"
    assert type_name(99) == "type-0x63"


def test_merge_intervals() -> None:
    import numpy as np

    s, e = merge_intervals(np.array([30, 0, 10, 50], dtype=np.uint64),
                           np.array([40, 10, 20, 60], dtype=np.uint64))  # fmt: skip
    assert list(zip(s.tolist(), e.tolist(), strict=True)) == [(0, 20), (30, 40), (50, 60)]


def test_boot_info_refusals(fx: F.Fixture, tmp_path: Path) -> None:
    bad = copy(fx)
    bad.poke(F.BOOT_INFO_PA, 0x4141)
    with pytest.raises(DumpError, match=(
        rf"boot info at {hex(F.BOOT_INFO_PA)} has magic 0x4141, not {hex(BOOT_INFO_MAGIC)}"
    )):  # fmt: skip
        read_boot_info(_mem(bad, tmp_path), F.BOOT_INFO_PA)
    bad = copy(fx)
    bad.poke(bad.field_pa("boot", "descriptor_size"), 12)
    mem = _mem(bad, tmp_path)
    with pytest.raises(DumpError, match=r"gives descriptor_size 12 \(raw 0xc\)"):
        read_memory_map(mem, read_boot_info(mem, F.BOOT_INFO_PA))


def test_memory_maps_too_long_or_cut_by_the_dump_are_partial(fx: F.Fixture, tmp_path: Path) -> None:
    whole = read_memory_map(_mem(fx, tmp_path), read_boot_info(_mem(fx, tmp_path), F.BOOT_INFO_PA))
    bad = copy(fx)
    bad.poke(bad.field_pa("boot", "memory_map_size"), 1 << 40)
    mem = _mem(bad, tmp_path)
    mm = read_memory_map(mem, read_boot_info(mem, F.BOOT_INFO_PA))
    assert mm.error == (
        f"The boot info at {hex(F.BOOT_INFO_PA)} gives memory_map_size 0x10000000000: "
        f"{(1 << 40) // 48} descriptors is more than kmtool accepts (65536); the first 65536 are "
        "shown."
    )
    assert len(mm.entries) == 65536 and mm.entries[: len(whole.entries)].tolist() == (
        whole.entries.tolist()
    )
    bad = copy(fx)  # the map moved to the last 100 bytes of RAM: two descriptors fit
    top = F.RAM[-1][0] + F.RAM[-1][1]
    at = top - 100
    bad.put(at, bytes(bad.image[F.BOOT_INFO_PA + 0x1000 : F.BOOT_INFO_PA + 0x1000 + 96]))
    bad.poke(bad.field_pa("boot", "memory_map"), at)
    mem = _mem(bad, tmp_path)
    mm = read_memory_map(mem, read_boot_info(mem, F.BOOT_INFO_PA))
    assert mm.error is not None and mm.error.startswith(f"Memory map at {hex(at)} (boot info at ")
    assert mm.error.endswith(f"descriptor 2 at {hex(at + 96)} is outside the dump; the 2 before "
                             "it are shown.")  # fmt: skip
    assert mm.entries.tolist() == whole.entries[:2].tolist()


# -- heap -----------------------------------------------------------------------------------------


def test_heap_blocks_equal_the_buddy_model(fx: F.Fixture, tmp_path: Path) -> None:
    mem = _mem(fx, tmp_path)
    heap = read_heap(mem, fx.addresses["heap"], walk(mem, fx.cr3))
    got = sorted((b.va, b.order, b.used, b.size) for b in heap.blocks)
    assert got == fx.truth["heap_blocks"]
    assert heap.problems == []
    assert {o: v for o, v in heap.free_lists.items() if v} == fx.truth["heap_free_lists"]
    assert heap.backed_pages == fx.truth["heap_backed_pages"]
    assert fx.truth["heap_stale_headers"]  # merged buddies left headers the walk never reads
    # split-off halves: free, recorded in km_heap.untouched, no header read, no page backed
    assert {b.order: b.va for b in heap.untouched} == fx.truth["heap_untouched"]
    assert fx.truth["heap_untouched"] and heap.backed_pages < len(fx.truth["heap_untouched"])
    doc = heap.to_json()
    assert doc["bytes_in_use"] == fx.truth["heap_bytes_in_use"] and doc["base"] == hex(HEAP_BASE)
    assert sum(r["used"] + r["free"] for r in doc["by_order"]) == len(got)


def test_heap_state_refusals(fx: F.Fixture, tmp_path: Path) -> None:
    bad = copy(fx)
    bad.put(bad.field_pa("heap", "max_order"), (200).to_bytes(4, "little"))
    mem = _mem(bad, tmp_path)
    with pytest.raises(DumpError, match=r"orders 6\.\.200 are not within 0\.\.63 .*max_order 0xc8"):
        read_heap(mem, fx.addresses["heap"], walk(mem, fx.cr3))
    bad = copy(fx)
    bad.poke(bad.field_pa("heap", "size"), 12345)
    mem = _mem(bad, tmp_path)
    with pytest.raises(DumpError, match=r"size 0x3039 is not 2\^max_order"):
        read_heap(mem, fx.addresses["heap"], walk(mem, fx.cr3))


def test_heap_list_problems_are_reported_not_guessed(fx: F.Fixture, tmp_path: Path) -> None:
    bad = copy(fx)
    order, vas = max(fx.truth["heap_free_lists"].items(), key=lambda kv: len(kv[1]))
    head_at = bad.field_pa("heap", "free_heads") + 8 * order
    bad.poke(head_at, HEAP_BASE + 0x40 * 3)  # not a block of that order
    mem = _mem(bad, tmp_path)
    heap = read_heap(mem, fx.addresses["heap"], walk(mem, fx.cr3))
    assert any(f"free list {order} holds" in p for p in heap.problems)
    assert any("is on no free list" in p for p in heap.problems)
    assert vas
