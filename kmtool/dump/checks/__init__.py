"""Cross-checks of a decoded dump: each is one named row that passes or says what is wrong.

The decoders (memmap, frames, heap, pagetable) assume the data means what it claims and stop only on
structural faults; the invariants the design promises are checked here, one module per subject:

    registry    every check's name, the parts it reads and its not-applicable rule, in order
    common      the Verdict a check returns, the offender list, interval tests
    core        the core-info block: readable, ready, constants, symbols, build id
    memmap      the firmware memory map
    pagetables  the walk, the shared PML4 entries, W^X
    offsetmap   the offset map against the memory map
    spans       the frame allocator's free list
    treap       the search tree over the free list
    stack       the stack half of the free list (stacked single frames and short runs)
    heap        the kernel heap
    accounting  every ownable frame has an owner (no leaks)
    aspaces     the kernel's address spaces
    descriptors the IDT, GDT and TSS each CPU was using
"""

from kmtool.check import Check
from kmtool.dump.checks.common import SHOWN, contained, overlapping
from kmtool.dump.checks.registry import CHECKS, InspectCheck, not_built, run_checks

__all__ = [
    "CHECKS",
    "SHOWN",
    "Check",
    "InspectCheck",
    "contained",
    "not_built",
    "overlapping",
    "run_checks",
]
