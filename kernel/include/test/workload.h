// Workloads (docs/design.md §12): the command-line word `workload=NAME[,NAME...]` builds realistic
// memory-manager state after bootstrap and leaves it in place for the ready report and the dump
// (kernel/test/workload.c), so kmtool inspect and kmtool diff have something to show. Each prints
// one line "workload NAME: <what it built, with the addresses>".
//
//   processes  PROCESSES address spaces with user code, data, heap and stack pages: one code frame
//              is shared by all of them, and two are forked from the first copy-on-write style
//              (their first data page is the first's frame, read-only in all three)
//   heap       a spread of kernel-heap blocks of many orders, every third one freed again
//   fragment   frames taken in a run and every other one given back, so the free list gains one
//              single-frame span per pair; the kept frames back a kernel-vspace range
//   all        all of them, in that order
#pragma once

// Runs the workloads the command line names; an unknown name panics, naming it.
void workloads_run(const char *cmdline);
