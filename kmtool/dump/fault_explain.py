"""Why the kernel stopped: the fault record explained (docs/design.md §11).

From the fault record (kmtool.dump.fault) and the other decoded parts, `explain` says:

- the exception by name, with its error code decoded (#PF: P/W/U/RSVD/I/PK/SS; the selector error
  code of #TS/#NP/#SS/#GP: EXT, IDT/GDT/LDT and the index);
- for a #PF, CR2 walked level by level under the CR3 of the fault, and the level that stopped the
  access and why: not present, read-only, no-execute, a supervisor page, a reserved bit;
- the regions of CR2, RIP and RSP (an unmapped page of the kernel image is the guard page below
  the boot stack);
- what the page at CR2 is now: a free frame in a span, a page-table page, a heap block never handed
  out, kernel virtual space never handed out, the offset map past the end of RAM;
- RIP and the backtrace as function+offset and file:line (with `--kernel`), and the bytes at RIP.

Everything is read from the dump and its parts; nothing here raises for what the dump holds (an
unreadable piece is said to be unreadable).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kmtool.dump.document import FaultDoc, WalkDoc, WalkStepDoc
from kmtool.dump.fault import FaultRecordView
from kmtool.dump.memory import PhysicalMemory
from kmtool.dump.pagetable import PageTables
from kmtool.dump.translate import walk_address
from kmtool.errors import DumpError
from kmtool.layout.table import OFFSET_MAP_BASE, OFFSET_MAP_SIZE, PAGE_SIZE, canonical, region_for
from kmtool.schemas.fault import (
    EXCEPTIONS,
    PAGE_FAULT,
    PAGE_FAULT_BITS,
    SELECTOR_ERROR_VECTORS,
    exception_mnemonic,
)
from kmtool.schemas.paging import Pte

RIP_BYTES = 16
#: Names a code address (`kmain+0x1c8 (kernel/main.c:73)`), from the kernel ELF; the flag says
#: the address is a return address (looked up one byte earlier).
Locate = Callable[[int, bool], str]


def decode_error(vector: int, error: int) -> list[str]:
    """The error code in words: page-fault bits, or a selector error code."""
    if vector == PAGE_FAULT:
        words = [
            f"{name} ({meaning})" for bit, name, meaning in PAGE_FAULT_BITS if error >> bit & 1
        ]
        if not error & 1:
            words.insert(0, "not P (the page was not present)")
        return words
    if vector in SELECTOR_ERROR_VECTORS and error:
        table = "IDT" if error & 2 else ("LDT" if error & 4 else "GDT")
        words = [f"{table} index {error >> 3}"]
        if error & 1:
            words.append("EXT (raised while delivering an external event)")
        return words
    return []


def access_stopped(steps: list[WalkStepDoc], error: int, stopped: str | None) -> str:
    """Which level refused the access that `error` describes, and why (a #PF's walk)."""
    if stopped is not None:
        return stopped
    entries = [(s["level"], s["index"], int(s["entry"], 16)) for s in steps]
    if error & 8:
        return f"a reserved bit is set ({_reserved(entries)})"
    for level, index, entry in entries:
        if error & 2 and not entry & Pte.WRITABLE:
            return f"{level} entry {index} is read-only (W clear) and the access was a write"
        if error & 16 and entry & Pte.NX:
            return f"{level} entry {index} sets NX and the access was an instruction fetch"
        if error & 4 and not entry & Pte.USER:
            return (
                f"{level} entry {index} is supervisor-only (U clear) and the access was a user one"
            )
    return "every level allows the access now: the tables changed after the fault"


def _reserved(entries: list[tuple[str, int, int]]) -> str:
    """The entries with bits set where an address or flag may not be: bits 51..40 beyond a
    40-bit physical address space are the common case; bit 7 of a PML4 entry is always reserved."""
    hits = []
    for level, index, entry in entries:
        high = (entry >> 40) & 0xFFF
        if high:
            top = high.bit_length() + 39
            hits.append(f"{level} entry {index} ({entry:#x}) has bit {top} set")
        elif level == "PML4" and entry & Pte.PS:
            hits.append(f"PML4 entry {index} ({entry:#x}) sets bit 7")
    return "; ".join(hits) or "no entry on the walk shows which"


@dataclass
class FaultExplanation:
    """What `explain` found; `to_json` is inspect's "fault" part, `lines` its text."""

    record: FaultRecordView
    exception: str
    error_words: list[str]
    cr2_walk: WalkDoc | None
    stopped_by: str | None
    regions: dict[str, str]
    page_now: str | None
    rip: str
    backtrace: list[str]
    rip_bytes: str | None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> FaultDoc:
        r = self.record
        return {
            "kind": r.kind,
            "seq": r.seq,
            "vector": r.vector if r.kind == "exception" else None,
            "exception": self.exception,
            "error_code": hex(r.error_code),
            "error": self.error_words,
            "message": r.message,
            "cr2": hex(r.cr2),
            "cr3": hex(r.cr3),
            "rip": hex(r.rip),
            "rip_where": self.rip,
            "rsp": hex(r.rsp),
            "rflags": hex(r.rflags),
            "cs": hex(r.cs),
            "ss": hex(r.ss),
            "regions": self.regions,
            "cr2_walk": self.cr2_walk,
            "stopped_by": self.stopped_by,
            "page_now": self.page_now,
            "backtrace": self.backtrace,
            "rip_bytes": self.rip_bytes,
            "notes": self.notes,
        }


def _region(memory: PhysicalMemory, tables: PageTables | None, va: int) -> str:
    """The innermost region of `va`; in the kernel image, an unmapped page is the guard page."""
    va = canonical(va)
    region = region_for(va)
    name = "no region" if region is None else region.name
    if name == "kernel-image" and tables is not None and tables.translate(va) is None:
        return "kernel-image: the unmapped guard page below the boot stack"
    return name


def _page_now(
    va: int,
    pa: int | None,
    memory: PhysicalMemory,
    frames: Any,
    tables: PageTables | None,
    heap: Any,
) -> str | None:
    """What the page at `va` (mapped to `pa`, or not mapped) is in the dump."""
    va = canonical(va)
    if pa is not None:
        return _frame_now(pa, memory, frames, tables)
    region = region_for(va)
    name = None if region is None else region.name
    if OFFSET_MAP_BASE <= va < OFFSET_MAP_BASE + OFFSET_MAP_SIZE:
        phys = va - OFFSET_MAP_BASE
        if not memory.contains(phys):
            return f"the offset map at physical {phys:#x}, past the end of RAM in the dump"
    if name == "kernel-heap" and heap is not None:
        block = next((b for b in heap.blocks if b.va <= va < b.va + (1 << b.order)), None)
        if block is not None and not block.used:
            return f"inside heap block {block.va:#x} (order {block.order}), never handed out"
        if block is not None:
            return f"inside heap block {block.va:#x} (order {block.order}, in use), not backed"
        if heap.error is not None:
            return "kernel heap, in no block decoded: the heap is partial"
        return "kernel heap outside every block the dump holds"
    if name == "kernel-vspace":
        return "kernel virtual space the address manager never handed out (or it was released)"
    if name in ("user-space", "user-stack"):
        return "user space with no mapping there"
    return None if name is None else f"not mapped ({name})"


def _frame_now(pa: int, memory: PhysicalMemory, frames: Any, tables: PageTables | None) -> str:
    page = pa & ~(PAGE_SIZE - 1)
    if frames is not None and len(frames.starts):
        i = int(np.searchsorted(frames.starts, np.uint64(page), side="right")) - 1
        if i >= 0 and page < int(frames.ends[i]):
            start, count = int(frames.starts[i]), int(frames.counts[i])
            return f"physical {page:#x}: a free frame, in the span at {start:#x} ({count} frames)"
    if tables is not None and np.isin(np.uint64(page), tables.tables):
        return f"physical {page:#x}: a page-table page"
    if not memory.contains(page):
        return f"physical {page:#x}: outside the dump"
    return f"physical {page:#x}: in use (not free, not a page table)"


def _rip_bytes(memory: PhysicalMemory, tables: PageTables | None, rip: int) -> str | None:
    pa = None if tables is None else tables.translate(rip)
    if pa is None or not memory.contains(pa, RIP_BYTES):
        return None
    try:
        return memory.read(pa, RIP_BYTES, "bytes at RIP").hex(" ")
    except DumpError:
        return None


def explain(
    record: FaultRecordView,
    memory: PhysicalMemory,
    tables: PageTables | None,
    frames: Any,
    heap: Any,
    locate: Locate,
) -> FaultExplanation:
    """The fault record in words (see the module docstring). `tables` are the kernel's (for the
    regions and RIP's bytes); CR2 is walked under the record's own CR3."""
    vector = record.vector
    name = exception_mnemonic(vector)
    if vector in EXCEPTIONS:
        name += f" {EXCEPTIONS[vector][1]}"
    if record.kind == "panic":
        name = "panic"
    walked = stopped = page_now = None
    notes = []
    if record.kind == "exception" and vector == PAGE_FAULT:
        try:
            walked = walk_address(memory, record.cr3, canonical(record.cr2))
        except DumpError as err:
            notes.append(str(err))
        if walked is not None:
            stopped = access_stopped(walked["steps"], record.error_code, walked["stopped"])
            pa = None if walked["phys"] is None else int(walked["phys"], 16)
            page_now = _page_now(record.cr2, pa, memory, frames, tables, heap)
    regions = {reg: _region(memory, tables, getattr(record, reg)) for reg in ("cr2", "rip", "rsp")}
    return FaultExplanation(
        record=record,
        exception=name,
        error_words=decode_error(vector, record.error_code) if record.kind == "exception" else [],
        cr2_walk=walked,
        stopped_by=stopped,
        regions=regions,
        page_now=page_now,
        rip=locate(record.rip, record.kind == "panic"),
        backtrace=[locate(a, True) for a in record.frames],
        rip_bytes=_rip_bytes(memory, tables, record.rip),
        notes=notes,
    )
