// The ready report; the keys are listed in include/lib/report.h.
#include "lib/report.h"

#include "lib/bootinfo.h"
#include "lib/coreinfo.h"
#include "lib/json.h"
#include "lib/printf.h"
#include "mm/bootstrap.h"
#include "mm/paging.h"

#define SPAN_LIST_MAX 64

void report_ready(uint64_t memory_map_entries, uint64_t bootstrap_cycles, uint64_t mm_cycles,
                  const struct test_totals *tests)
{
    struct json j;
    kprintf("KM-REPORT ");
    json_begin(&j);
    uint64_t stack_depth = km_frames.stack_runs;
    frames_fold(&km_frames);  // every free frame in a span: the counts below are stable
    json_u64(&j, "free_frames", km_frames.free_frames);
    json_u64(&j, "spans", km_frames.spans);
    json_u64(&j, "managed_frames", km_frames.managed_frames);
    json_u64(&j, "stack_depth", stack_depth);
    json_u64(&j, "folds", km_frames.folds);
    json_key(&j, "span_list");
    kprintf("[");
    int n = 0;
    for (const struct km_frame_span *s = frames_first(&km_frames); s && n < SPAN_LIST_MAX;
         s = frames_next(s), n++)
        kprintf("%s[\"0x%lx\",%lu]", n ? "," : "", s->start, s->count);
    kprintf("]");
    json_key(&j, "span_hash");
    kprintf("\"0x%016lx\"", frames_span_hash(&km_frames));
    json_u64(&j, "heap_bytes_in_use", km_heap.bytes_in_use);
    json_u64(&j, "heap_blocks_in_use", km_heap.blocks_in_use);
    json_u64(&j, "heap_free_blocks", km_heap.free_blocks);
    json_u64(&j, "heap_backed_pages", km_heap.backed_pages);
    json_u64(&j, "page_faults", km_page_stats.page_faults);
    json_u64(&j, "demand_maps", km_page_stats.demand_maps);
    json_u64(&j, "tables_allocated", km_page_stats.tables_allocated);
    json_u64(&j, "tables_freed", km_page_stats.tables_freed);
    json_u64(&j, "address_spaces", km_page_stats.address_spaces);
    json_u64(&j, "offset_map_page_size", offset_map.page_size);
    json_u64(&j, "offset_map_size", offset_map.size);
    json_u64(&j, "phys_bits", offset_map.phys_bits);
    json_hex(&j, "kernel_pml4", kernel_pml4);
    json_hex(&j, "core_info", km_core_info.self_phys);
    json_u64(&j, "bootstrap_cycles", bootstrap_cycles);
    json_u64(&j, "mm_bootstrap_cycles", mm_cycles);
    json_u64(&j, "memory_map_entries", memory_map_entries);
    json_u64(&j, "conventional_frames", bootstrap_stats.conventional_frames);
    json_u64(&j, "firmware_frames", bootstrap_stats.firmware_frames);
    json_u64(&j, "scratch_used", bootstrap_stats.scratch_used);
    json_u64(&j, "scratch_returned", bootstrap_stats.scratch_returned);
    json_u64(&j, "ignored_frames", bootstrap_stats.ignored_frames);
    json_str(&j, "cmdline", kernel_cmdline);
    char build_id[2 * KM_BUILD_ID_BYTES + 1];
    build_id_hex(build_id);
    json_str(&j, "build_id", build_id);
    if (tests->ran) {
        json_u64(&j, "tests_passed", (uint64_t)tests->passed);
        json_u64(&j, "tests_failed", (uint64_t)tests->failed);
    }
    json_end_line(&j);
}
