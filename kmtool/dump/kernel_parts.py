"""The parts of a dump of our kernel beyond its allocator state: the address spaces it lists, the
frame accounting over them (and over the tables under CR3), and the fault record explained
(docs/design.md §10-§12).

`decode_kernel_parts(ins)` fills `ins.aspaces`, `ins.accounting` and `ins.fault`. Each decodes on
its own: one that cannot be read stays None and its sentence goes into `ins.part_errors` (the
"kernel parts readable" check fails with it), and the others are still decoded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kmtool.dump.accounting import account_frames
from kmtool.dump.aspaces import read_address_spaces
from kmtool.dump.fault import read_fault_record
from kmtool.dump.fault_explain import Locate, explain
from kmtool.dump.trim import trim
from kmtool.errors import DumpError
from kmtool.layout.table import PAGE_SIZE

if TYPE_CHECKING:
    from kmtool.dump.inspection import Inspection


def decode_kernel_parts(ins: Inspection) -> None:
    """Address spaces, accounting and fault of `ins` (which has its core-info block)."""
    core, memory = ins.core, ins.source.memory
    assert core is not None
    try:
        listed = read_address_spaces(
            memory, core.aspaces_phys, core.kernel_pml4_phys, ins.kernel_tables
        )
        ins.aspaces = listed if listed.spaces else None  # None: the kernel lists none
    except DumpError as err:
        ins.part_errors["address spaces"] = str(err)
    trim()  # the walks' transients go back before the accounting's (kmtool.dump.trim)
    if ins.memmap is not None and ins.frames is not None:
        # The kernel's tables, CR3's (another address space, or the loader's before the kernel
        # built its own: the check is "not applicable" then), and every listed address space's.
        spaces = [] if ins.aspaces is None else [s.tables for s in ins.aspaces.spaces]
        own = [t for t in (ins.kernel_tables, ins.tables) if t is not None]
        walks = list({id(t): t for t in own}.values()) + spaces
        f = ins.frames
        start, end = f.starts, f.ends
        if f.stack is not None and len(f.stack.runs):  # stacked runs are free frames too
            runs = f.stack.runs.astype(np.uint64)
            start = np.concatenate((start, runs))
            end = np.concatenate(
                (end, runs + f.stack.counts.astype(np.uint64) * np.uint64(PAGE_SIZE))
            )
        ins.accounting = account_frames(ins.memmap, start, end, walks, f.state.limit)
        trim()
    try:
        record = read_fault_record(memory, core.fault_phys)
    except DumpError as err:
        ins.part_errors["fault record"] = str(err)
        return
    if record is not None:
        ins.fault = explain(record, memory, ins.kernel_tables, ins.frames, ins.heap, _locator(ins))


def _locator(ins: Inspection) -> Locate:
    """Code addresses named with the kernel ELF (KernelElf.describe), or as bare hex without one."""
    elf = None if ins.kernel is None else ins.kernel.elf
    if elf is None:
        return lambda address, return_address: f"{address:#x}"
    return elf.describe
