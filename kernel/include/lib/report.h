// The ready report: one line `KM-REPORT {json}` (kernel/report.c). Keys (issue 4 item 9 and more):
//   free_frames, spans, managed_frames, stack_depth (runs on the frame stack when the report
//   began; the report then folds them into the spans), folds (folds done, that one included),
//   span_list (first 64 spans as ["0x<start>", count]),
//   span_hash ("0x" + 16 hex digits: the polynomial hash mod 2^64 of kmtool/schemas/frames.py
//   over every span's start and count, in list order), heap_bytes_in_use, heap_blocks_in_use,
//   heap_free_blocks, heap_backed_pages, page_faults, demand_maps, tables_allocated, tables_freed,
//   address_spaces, offset_map_page_size (bytes), offset_map_size, phys_bits, kernel_pml4 and
//   core_info (physical addresses as "0x..." strings), bootstrap_cycles, mm_bootstrap_cycles,
//   memory_map_entries, conventional_frames, firmware_frames, scratch_used, scratch_returned,
//   ignored_frames, cmdline, build_id (32 hex digits: km_core_info.build_id, the first 16 bytes of
//   kernel.elf's GNU build id), and with `test`: tests_passed, tests_failed.
#pragma once

#include <stdint.h>

struct test_totals {
    int ran;       // 0 when no self tests ran
    int passed;
    int failed;
};

// `bootstrap_cycles`: TSC from kernel entry to ready (everything, console output included);
// `mm_cycles`: the memory bootstrap alone (mm_bootstrap()).
void report_ready(uint64_t memory_map_entries, uint64_t bootstrap_cycles, uint64_t mm_cycles,
                  const struct test_totals *tests);
