"""Checks of the core-info block (kmtool.dump.coreinfo): readable, the kernel reached ready, its
constants match the layout table, and it agrees with the kernel ELF's symbols and build id."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kmtool.check import Check
from kmtool.dump.checks.common import Verdict
from kmtool.dump.kernel_elf import CORE_INFO_SYMBOL, STATE_SYMBOLS
from kmtool.elf.kernel import build_ids_match
from kmtool.layout.table import HEAP_BASE, HEAP_SIZE, KERNEL_SPACE_BASE, OFFSET_MAP_BASE, canonical

if TYPE_CHECKING:
    from kmtool.dump.coreinfo import CoreInfoBlock, UnreadableCoreInfo
    from kmtool.dump.frames import FreeList
    from kmtool.dump.heap import HeapView
    from kmtool.dump.kernel_elf import KernelSymbols
    from kmtool.dump.pagetable import PageTables


def core_info_readable(core_error: UnreadableCoreInfo) -> Check:
    """Fails when the dump holds our core-info block (magic and self_phys agree) in a version, or
    of a length, this kmtool cannot read: named here (the row takes the name the decoder gave the
    fault), while the rest of the inspection goes on without it (kmtool.dump.inspection)."""
    return Check(core_error.check, False, str(core_error))


def kernel_ready(
    core: CoreInfoBlock,
    frames: FreeList | None,
    kernel_tables: PageTables | None,
    heap: HeapView | None,
) -> Verdict:
    """The kernel reached KM-READY and built everything the dump is read through."""
    found = []
    if not core.ready_tsc:
        found.append("ready_tsc is 0: the dump was taken before KM-READY (a panic?)")
    if not core.kernel_pml4_phys:
        found.append("kernel_pml4_phys is 0: the kernel's own page tables were not built")
    if frames is not None and not frames.initialized:
        found.append("km_frames is all zero: the frame allocator was not set up")
    if kernel_tables is not None and not kernel_tables.errors and heap is None:
        found.append("km_heap is all zero: the heap was not set up")
    return Verdict(not found, "; ".join(found) if found else
                   f"{core.ready_tsc - core.entry_tsc} TSC cycles from entry to ready")  # fmt: skip


def core_constants(core: CoreInfoBlock) -> Verdict:
    expected = {
        "offset_map_base": OFFSET_MAP_BASE,
        "kernel_space_base": KERNEL_SPACE_BASE,
        "heap_base": HEAP_BASE,
        "heap_size": HEAP_SIZE,
    }
    wrong = [
        f"{name} is {hex(core.fields[name])}, the layout table says {hex(value)}"
        for name, value in expected.items()
        if canonical(core.fields[name]) != value
    ]
    return Verdict(
        not wrong, "; ".join(wrong) if wrong else "offset map, kernel space and heap agree"
    )


def core_symbols(core: CoreInfoBlock, kernel: KernelSymbols, kernel_tables: PageTables) -> Verdict:
    """The kernel ELF's `km_core_info` and state symbols translate, through the kernel's tables,
    to the addresses the core-info block records."""
    wrong, seen = [], 0
    core_va = kernel.address(CORE_INFO_SYMBOL)
    if core_va is not None:
        seen += 1
        pa = kernel_tables.translate(core_va)
        if pa != core.address:
            wrong.append(f"`{CORE_INFO_SYMBOL}` maps to {None if pa is None else hex(pa)}, the "
                         f"block is at {hex(core.address)}")  # fmt: skip
    for fieldname, symbol in STATE_SYMBOLS.items():
        va = kernel.address(symbol)
        if va is None:
            continue
        seen += 1
        pa = kernel_tables.translate(va)
        if pa != core.fields[fieldname]:
            wrong.append(
                f"`{symbol}` maps to {None if pa is None else hex(pa)}, core-info "
                f"{fieldname} is {hex(core.fields[fieldname])}"
            )
    return Verdict(not wrong, "; ".join(wrong) if wrong else f"{seen} symbols agree")


def build_id_matches(core: CoreInfoBlock, kernel: KernelSymbols) -> Verdict:
    """The dump's km_core_info.build_id is the start of the kernel ELF's NT_GNU_BUILD_ID note
    (kmtool.elf.kernel.build_ids_match, the one rule for "this ELF is that kernel")."""
    dump_id = bytes(core.build_id)
    elf_id = kernel.build_id
    name = f"`{kernel.path.name}`"
    if elf_id is None:
        return Verdict(
            False, f"the kernel ELF {name} has no .note.gnu.build-id (linked without --build-id?)"
        )
    if build_ids_match(dump_id, elf_id):
        return Verdict(True, f"{dump_id.hex()} in the dump and in {name}'s .note.gnu.build-id")
    problem = f"the dump's build id is {dump_id.hex()}, the kernel ELF {name} has {elf_id.hex()}"
    if not any(dump_id):
        problem += " (zeros in the dump: the kernel did not record one)"
    return Verdict(False, problem)


def parts_readable(core: CoreInfoBlock, part_errors: dict[str, str]) -> Verdict:
    """Every part the core-info block leads to decoded; else each one that did not, and why."""
    del core  # the row exists only on a dump of our kernel
    if not part_errors:
        return Verdict(True, "free list, heap, address spaces and fault record decoded")
    return Verdict(False, "; ".join(f"{part}: {why}" for part, why in part_errors.items()))
