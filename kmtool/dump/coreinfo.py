"""The kernel's core-info block (struct km_core_info): the root that makes a bare dump explain itself.

Found, in this order (docs/design.md §5.3), the first that holds a valid block winning:
1. the address the dump's VMCOREINFO note gives (`KMTOOL_COREINFO=0x...`, kmtool/schemas/vmcoreinfo.py);
2. through the kernel ELF (`--kernel`): the `km_core_info` symbol's virtual address, translated with
   the dump's page tables;
3. the address the raw dump's sidecar records;
4. by scanning physical memory for its two magic words, first in the pages mapped in the kernel-image
   region (when a CR3 is known), then everywhere -- unless `full_scan` is off (`--cr3` given: a
   foreign dump is not searched end to end). A hit counts only when the block's `self_phys` equals
   the address it was found at: copies of the magic in code or stale memory never do. A hit that
   counts but has another version (or a short length) is an `UnreadableCoreInfo` naming its address
   and version, not a silent "no block": the dump is of a kmtool kernel this kmtool cannot read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kmtool.dump.document import CoreInfoDoc
from kmtool.dump.memory import PhysicalMemory
from kmtool.dump.pagetable import PageTables
from kmtool.dump.translate import translate_many
from kmtool.errors import DumpError
from kmtool.schemas.signatures import CORE_INFO_MAGIC, CORE_INFO_MAGIC2, CORE_INFO_NEEDLE

if TYPE_CHECKING:
    from kmtool.dump.kernel_elf import KernelSymbols


@dataclass
class CoreInfoBlock:
    """A decoded core-info block, where it was found and how."""

    address: int
    fields: Any  # construct Container of CoreInfo
    found_by: str  # "note", "symbol", "sidecar" or "scan"

    def __getattr__(self, name: str) -> Any:
        return self.fields[name]

    def to_json(self) -> CoreInfoDoc:
        """Every field in schema order: addresses and magics as hex (as recorded, not made
        canonical), the build id as bare hex digits."""
        f = self.fields
        return {
            "address": hex(self.address),
            "found_by": self.found_by,
            "magic": hex(f.magic),
            "magic2": hex(f.magic2),
            "version": f.version,
            "length": f.length,
            "self_phys": hex(f.self_phys),
            "boot_info_phys": hex(f.boot_info_phys),
            "kernel_pml4_phys": hex(f.kernel_pml4_phys),
            "frame_state_phys": hex(f.frame_state_phys),
            "heap_state_phys": hex(f.heap_state_phys),
            "page_state_phys": hex(f.page_state_phys),
            "kernel_phys_base": hex(f.kernel_phys_base),
            "kernel_virt_base": hex(f.kernel_virt_base),
            "kernel_size": f.kernel_size,
            "offset_map_base": hex(f.offset_map_base),
            "offset_map_page_size": f.offset_map_page_size,
            "offset_map_size": f.offset_map_size,
            "kernel_space_base": hex(f.kernel_space_base),
            "heap_base": hex(f.heap_base),
            "heap_size": f.heap_size,
            "entry_tsc": f.entry_tsc,
            "ready_tsc": f.ready_tsc,
            "build_id": bytes(f.build_id).hex(),
            "fault_phys": f.fault_phys,
            "aspaces_phys": f.aspaces_phys,
        }


def magic_bytes() -> bytes:
    """The byte string a scan looks for: magic, then magic2 (the block's first 16 bytes)."""
    return CORE_INFO_NEEDLE


def read_core_info(memory: PhysicalMemory, pa: int, found_by: str) -> CoreInfoBlock:
    """Decode and check the core-info block at physical `pa` (DumpError when it is not one)."""
    # The schema, and construct with it, is imported here: only a dump that gives an address or
    # holds the magic gets this far, and a foreign dump's inspection never needs a parser.
    from kmtool.dump.records import parse
    from kmtool.schemas.coreinfo import CORE_INFO_VERSION, CoreInfo

    data = memory.read(pa, CoreInfo.sizeof(), "core-info block")
    block = parse(CoreInfo, data, "core-info block", pa)
    if block.magic != CORE_INFO_MAGIC or block.magic2 != CORE_INFO_MAGIC2:
        raise DumpError(
            f"The core-info block at {hex(pa)} has magic {hex(block.magic)}/{hex(block.magic2)}, "
            f"not {hex(CORE_INFO_MAGIC)}/{hex(CORE_INFO_MAGIC2)}."
        )
    if block.self_phys != pa:
        raise DumpError(
            f"The core-info block at {hex(pa)} records self_phys {hex(block.self_phys)}."
        )
    if block.version != CORE_INFO_VERSION:
        raise UnreadableCoreInfo(
            "core-info version",
            pa,
            f"The core-info block at {hex(pa)} has version {block.version} ({hex(block.version)})"
            f"; this kmtool reads version {CORE_INFO_VERSION}.",
        )
    if block.length < CoreInfo.sizeof():
        raise UnreadableCoreInfo(
            "core-info length",
            pa,
            f"The core-info block at {hex(pa)} says it is {block.length} bytes, shorter than "
            f"struct km_core_info ({CoreInfo.sizeof()}).",
        )
    return CoreInfoBlock(pa, block, found_by)


class UnreadableCoreInfo(DumpError):
    """A genuine core-info block (magic and self_phys agree) that this kmtool cannot read.

    `check` names the failed check it becomes in `kmtool inspect` (which then goes on with what
    needs no core-info), `address` is the block's physical address."""

    def __init__(self, check: str, address: int, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.address = address


def find_core_info(
    memory: PhysicalMemory,
    kernel: KernelSymbols | None,
    tables: PageTables | None,
    hints: tuple[int | None, int | None] = (None, None),
    full_scan: bool = True,
) -> CoreInfoBlock | None:
    """The core-info block of the dump, or None when there is none (a foreign dump). `hints` are
    the addresses the dump's note and the raw sidecar give (None: no such address)."""
    note, sidecar = hints
    if note is not None and (block := _at_hint(memory, note, "note")) is not None:
        return block
    if kernel is not None and tables is not None:
        from kmtool.dump.kernel_elf import CORE_INFO_SYMBOL  # loaded already: `kernel` is one

        va = kernel.symbols[CORE_INFO_SYMBOL]
        pa, ok = translate_many(memory, tables.root, np.array([va], dtype=np.uint64), tables.mode)
        if not ok[0]:
            raise DumpError(
                f"The kernel symbol `{CORE_INFO_SYMBOL}` at {hex(va)} is not mapped under CR3 "
                f"{hex(tables.root)}."
            )
        return read_core_info(memory, int(pa[0]), "symbol")
    if sidecar is not None and (block := _at_hint(memory, sidecar, "sidecar")) is not None:
        return block
    needle = magic_bytes()
    unreadable: UnreadableCoreInfo | None = None
    for candidate in _candidates(memory, needle, tables, full_scan):
        try:
            return read_core_info(memory, candidate, "scan")
        except UnreadableCoreInfo as err:
            unreadable = unreadable or err  # ours, but another version: say so unless one reads
        except DumpError:
            continue
    if unreadable is not None:
        raise unreadable
    return None


def _at_hint(memory: PhysicalMemory, pa: int, how: str) -> CoreInfoBlock | None:
    """The block at `pa` when one is there; None when not (the next way is tried). A block that is
    ours but of another version raises UnreadableCoreInfo, as a scan hit would."""
    try:
        return read_core_info(memory, pa, how)
    except UnreadableCoreInfo:
        raise
    except DumpError:
        return None


def _candidates(
    memory: PhysicalMemory, needle: bytes, tables: PageTables | None, full_scan: bool
) -> Iterator[int]:
    seen: set[int] = set()
    if tables is not None:
        image = tables.ranges_in("kernel-image")
        for phys, size in zip(image.phys.tolist(), image.size.tolist(), strict=True):
            if not memory.contains(phys, size) or size > 256 << 20:
                continue
            data = memory.read(phys, size, "kernel image")
            at = data.find(needle)
            while at >= 0:
                if at % 8 == 0 and phys + at not in seen:
                    seen.add(phys + at)
                    yield phys + at
                at = data.find(needle, at + 1)
    if not full_scan:
        return
    for pa in memory.scan(needle):
        if pa not in seen:
            yield pa
