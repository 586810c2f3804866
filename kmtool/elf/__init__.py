"""The kernel ELF, read in one place with one error policy.

kernel   read_kernel(path) -> KernelElf: the PT_LOAD segments, the symbol table (whole and by name),
         address -> function + offset, the GNU build id and the one build-id comparison
lines    the DWARF line table (address -> file:line), loaded only when first asked for

Every problem with the file is a `KernelElfError` (kmtool.errors) whose message names the file and
what is wrong with it. This package imports nothing of kmtool but kmtool.errors, so layout, dump,
qemu and build can all use it without an import cycle.
"""
