"""The registry of inspect checks: each declared once, as data, in `CHECKS`, whose order is the
order of the rows.

A check is a plain function of the inspection parts it reads (`reads`, names of `Inspection`
attributes, passed in that order) that returns a `Verdict`; its row's name is stated here only.
It is named here as "module.function" of kmtool.dump.checks and imported when its row first runs,
so an inspection imports the check modules of the parts it decoded and no others (a foreign dump:
pagetables.py, and descriptors.py when the dump records CPUs; docs/design.md §13).
`run_checks` applies to every check the rules each one used to open with, in this order:

1. A part it reads is None (a foreign dump has no frames, a dump without `--kernel` no kernel
   symbols): no row. Except a part in `optional`, which is passed as None, and a part whose
   absence a structure in `built` explains (no kernel PML4: no kernel tables; no heap), which
   goes on to rule 2.
2. One of its `built` structures is not built yet on a dump of our kernel, or is corrupt
   (`not_applicable`): the row passes with "not applicable, ..." and the reason, without calling
   the check, so an empty or unreadable allocator never "passes" and no row silently vanishes.
3. Else the check runs on its parts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from kmtool.check import Check
from kmtool.dump.checks.common import Verdict
from kmtool.dump.levels import ADDRESS_MASK
from kmtool.layout.table import OFFSET_MAP_BASE, SHARED_PML4_FIRST, SHARED_PML4_LAST

if TYPE_CHECKING:
    from kmtool.dump.inspection import Inspection

# The parts of an `Inspection` a check may read, and the structures `not_built` names.
Part = Literal[
    "source", "kernel", "root", "tables", "core", "core_error", "kernel_tables", "boot",
    "memmap", "frames", "heap", "foreign", "aspaces", "accounting", "part_errors", "descriptors",
    "mode",
]  # fmt: skip
# "span_list": the free list read to its end (a partial list still feeds the checks of each span).
# "memmap": the memory map read whole (a partial or unreadable one makes its checks not applicable).
Built = Literal["kernel_pml4", "frames", "span_list", "heap", "memmap"]

# The detail of a check whose structure the kernel had not built when the dump was taken: it passes
# (nothing to contradict) without reading anything; "kernel reached ready" is the one that fails.
NOT_BUILT_YET = "not applicable, not built yet: the kernel did not reach ready"
NOT_BUILT = "not applicable, not built"  # the same, when ready_tsc says the kernel did reach ready
# The part that is None because a structure is not built (see the module docstring).
EXPLAINED: dict[Built, Part] = {"kernel_pml4": "kernel_tables", "heap": "heap", "frames": "frames",
                                "memmap": "memmap"}  # fmt: skip


@dataclass(frozen=True)
class InspectCheck:
    """One check of `kmtool inspect`: its row's `name`, the function `run` ("module.function" of
    kmtool.dump.checks) of the parts it `reads`, the structures it needs `built`, and the read
    parts that may be None (`optional`).

    The function returns a Verdict; one that returns a whole Check names its own row (the
    core-info block that cannot be read, whose decoder names the fault).
    """

    name: str
    run: str
    reads: tuple[Part, ...]
    built: tuple[Built, ...] = ()
    optional: tuple[Part, ...] = ()

    def function(self) -> Callable[..., Verdict | Check]:
        """The check's function, its module imported on first use."""
        module, name = self.run.split(".")
        found: Callable[..., Verdict | Check] = getattr(
            importlib.import_module(f"kmtool.dump.checks.{module}"), name
        )
        return found


C = InspectCheck
CHECKS: tuple[InspectCheck, ...] = (
    C("core-info readable", "core.core_info_readable", ("core_error",)),
    C("kernel parts readable", "core.parts_readable", ("core", "part_errors")),
    C("kernel reached ready", "core.kernel_ready", ("core", "frames", "kernel_tables", "heap"),
      optional=("frames", "kernel_tables", "heap")),
    C("core-info constants match the layout table", "core.core_constants", ("core",)),
    C("core-info agrees with kernel symbols", "core.core_symbols",
      ("core", "kernel", "kernel_tables"), ("kernel_pml4",)),
    C("build id matches the kernel ELF", "core.build_id_matches", ("core", "kernel")),
    C("memory map sorted", "memmap.memory_map_sorted", ("memmap",), ("memmap",)),
    C("memory map non-overlapping", "memmap.memory_map_disjoint", ("memmap",), ("memmap",)),
    C("memory map stepped by descriptor size", "memmap.memory_map_stepping", ("memmap",),
      ("memmap",)),
    C("page tables walked", "pagetables.page_tables_walked",
      ("tables", "kernel_tables", "foreign"), optional=("kernel_tables",)),
    C(f"kernel PML4 entries {SHARED_PML4_FIRST} and {SHARED_PML4_LAST} present",
      "pagetables.shared_entries", ("core", "source", "root", "mode"), ("kernel_pml4",),
      ("root",)),
    C(f"offset map is physical + {hex(OFFSET_MAP_BASE)}", "offsetmap.offset_map",
      ("memmap", "kernel_tables"), ("kernel_pml4", "memmap")),
    C("no writable and executable kernel mapping", "pagetables.no_wx", ("kernel_tables",),
      ("kernel_pml4",)),
    C("spans page aligned", "spans.spans_aligned", ("frames",), ("frames",)),
    C("spans sorted and non-overlapping", "spans.spans_sorted", ("frames",), ("frames",)),
    C("spans coalesced", "spans.spans_coalesced", ("frames",), ("frames",)),
    C("span links consistent", "spans.span_links", ("frames",), ("frames",)),
    C("span treap matches the list", "treap.span_treap", ("frames",), ("frames", "span_list")),
    C("spans inside usable memory", "spans.spans_usable", ("frames", "memmap"),
      ("frames", "memmap")),
    C("spans inside the offset map", "spans.spans_offset_mapped", ("frames", "kernel_tables"),
      ("frames", "kernel_pml4")),
    C("spans hold no page table", "spans.spans_no_tables",
      ("frames", "tables", "kernel_tables"), ("frames",), ("kernel_tables",)),
    C("spans hold no mapped kernel page", "spans.spans_no_kernel_pages",
      ("frames", "kernel_tables"), ("frames", "kernel_pml4")),
    C("spans hold no handoff data", "spans.spans_no_handoff", ("frames", "boot", "memmap"),
      ("frames", "memmap")),
    C("free frames match the kernel counter", "spans.free_frames_counter",
      ("frames",), ("frames", "span_list")),
    C("span count matches the kernel counter", "spans.spans_counter",
      ("frames",), ("frames", "span_list")),
    C("frame stack decodes", "stack.stack_decoded", ("frames",), ("frames",)),
    C("frame stack matches the kernel counters", "stack.stack_counters",
      ("frames",), ("frames", "span_list")),
    C("stacked frames are in no span", "stack.stack_not_in_spans",
      ("frames",), ("frames", "span_list")),
    C("frame stack holds no page table", "stack.stack_no_tables",
      ("frames", "tables", "kernel_tables"), ("frames",), ("kernel_tables",)),
    C("frame stack holds no mapped kernel page", "stack.stack_not_mapped",
      ("frames", "kernel_tables"), ("frames", "kernel_pml4")),
    C("heap headers consistent", "heap.heap_headers", ("heap",), ("heap",)),
    C("heap counters match", "heap.heap_counters", ("heap",), ("heap",)),
    C("no leaked frames", "accounting.no_leaked_frames", ("accounting",),
      ("frames", "span_list", "kernel_pml4", "memmap")),
    C(f"every address space shares the kernel's PML4 {SHARED_PML4_FIRST}-{SHARED_PML4_LAST}",
      "aspaces.kernel_half_shared", ("aspaces",), ("kernel_pml4",)),
    C("no supervisor-only page in a user half", "aspaces.user_half_is_user", ("aspaces",)),
    C("no user mapping points into kernel-owned frames", "aspaces.user_not_in_kernel_frames",
      ("kernel_tables", "aspaces", "memmap"), ("kernel_pml4", "memmap")),
    C("IDT covers the exception vectors", "descriptors.idt_covers_exceptions", ("descriptors",)),
    C("exception gates present", "descriptors.exception_gates_present", ("descriptors",)),
    C("IST stacks mapped", "descriptors.ist_stacks_mapped", ("descriptors",)),
    C("TR names the GDT's TSS descriptor", "descriptors.tss_descriptor_matches", ("descriptors",)),
)  # fmt: skip


def not_built(ins: Inspection) -> dict[Built, str]:
    """The kernel structures a dump of our kernel does not hold yet, each with the reason:
    "kernel_pml4" (kernel_pml4_phys is 0), "frames" (km_frames all zero), "heap" (km_heap all zero,
    or no kernel PML4 to reach it through). Empty for a foreign dump."""
    c = ins.core
    if c is None:
        return {}
    out: dict[Built, str] = {}
    if not c.kernel_pml4_phys & ADDRESS_MASK:
        out["kernel_pml4"] = "kernel_pml4_phys is 0"
        out["heap"] = "kernel_pml4_phys is 0, and the heap is read through the kernel's tables"
    fl = ins.frames
    if fl is not None and not fl.initialized:
        out["frames"] = (
            f"km_frames at {hex(fl.state_address)} is all zero: the frame allocator was not set up"
        )
    kt = ins.kernel_tables
    if kt is not None and not kt.errors and ins.heap is None:
        out["heap"] = f"km_heap at {hex(c.heap_state_phys)} is all zero: the heap was not set up"
    return out


def not_applicable(ins: Inspection) -> dict[Built, str]:
    """The detail of the "not applicable" row of a check that needs each structure: not built yet
    (`not_built`, with the reason), or unreadable (a corrupt free list or heap: the decoder's
    sentence, from `ins.part_errors`), which wins."""
    prefix = NOT_BUILT if ins.core is not None and ins.core.ready_tsc else NOT_BUILT_YET
    out = {b: f"{prefix} ({why})" for b, why in not_built(ins).items()}
    corrupt: dict[Built, str] = {"frames": "frames", "heap": "heap", "memmap": "memory map"}
    for built, part in corrupt.items():
        why = ins.part_errors.get(part)
        if why is None:
            continue
        if getattr(ins, built) is None:
            out[built] = f"not applicable, unreadable: {why}"
        elif built == "frames":  # partial: read up to the fault, which the part's row names
            out["span_list"] = f"not applicable, the free list is partial: {why}"
        elif built == "memmap":
            out["memmap"] = f"not applicable, the memory map is partial: {why}"
        elif built == "heap":  # partial: the blocks of the orders above the bound
            out["heap"] = f"not applicable, the heap is partial: {why}"
    return out


def run_checks(ins: Inspection) -> list[Check]:
    """The row of every check in `CHECKS` that applies to `ins`, in `CHECKS` order."""
    missing = not_applicable(ins)
    rows = (_row(spec, ins, missing) for spec in CHECKS)
    return [row for row in rows if row is not None]


def _row(spec: InspectCheck, ins: Inspection, missing: dict[Built, str]) -> Check | None:
    """The row of `spec` on `ins` by the rules of the module docstring (None: no row)."""
    parts = [getattr(ins, part) for part in spec.reads]
    absent = {p for p, v in zip(spec.reads, parts, strict=True) if v is None} - set(spec.optional)
    if absent - {EXPLAINED[b] for b in spec.built if b in EXPLAINED}:
        return None
    for b in spec.built:
        if b in missing:
            return Check(spec.name, True, missing[b])
    if absent:
        return None
    result = spec.function()(*parts)
    return result if isinstance(result, Check) else Check(spec.name, result.ok, result.detail)
