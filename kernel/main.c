// kmain: the boot, as a straight list of steps. Reading this file top to bottom is reading the boot.
#include <km/layout.h>
#include <km/structs.h>

#include "arch/cpu.h"
#include "arch/trap.h"
#include "lib/bootinfo.h"
#include "lib/cmdline.h"
#include "lib/console.h"
#include "lib/coreinfo.h"
#include "lib/panic.h"
#include "lib/printf.h"
#include "lib/report.h"
#include "mm/bootstrap.h"
#include "mm/memmap.h"
#include "mm/paging.h"
#include "test/bugs.h"
#include "test/selftest.h"
#include "test/workload.h"

uint64_t kernel_entry_tsc;   // written by _start before anything else runs

static struct memmap firmware_map;

static void print_mm_summary(uint64_t cycles, uint64_t mm_cycles)
{
    kprintf("mm: offset map %s pages over %lu GiB (MAXPHYADDR %lu bits)\n",
            offset_map.page_size == (1ull << 30) ? "1 GiB" : "2 MiB", offset_map.size >> 30,
            offset_map.phys_bits);
    kprintf("mm: %lu frames free in %lu spans (%lu managed: %lu conventional, %lu firmware and "
            "loader, %lu scratch)\n",
            km_frames.free_frames, km_frames.spans, km_frames.managed_frames,
            bootstrap_stats.conventional_frames, bootstrap_stats.firmware_frames,
            bootstrap_stats.scratch_returned);
    kprintf("mm: kernel PML4 at 0x%lx, heap 0x%lx + %lu GiB, core info at 0x%lx\n", kernel_pml4,
            km_heap.base, km_heap.size >> 30, km_core_info.self_phys);
    kprintf("mm: bootstrap took %lu TSC cycles from kernel entry (memory manager: %lu)\n", cycles,
            mm_cycles);
    const uint64_t *step = bootstrap_stats.step_cycles;
    kprintf("mm: steps: offset map %lu, free RAM %lu, kernel PML4 %lu, firmware memory %lu, "
            "heap %lu\n", step[0], step[1], step[2], step[3], step[4]);
}

_Noreturn void kmain(uint64_t boot_info_phys);

_Noreturn void kmain(uint64_t boot_info_phys)
{
    console_init();
    char build_id[2 * KM_BUILD_ID_BYTES + 1];
    build_id_hex(build_id);
    kprintf("\nkmtool kernel (build id %s): entered at TSC %lu, boot info at phys 0x%lx\n",
            build_id, kernel_entry_tsc, boot_info_phys);
    gdt_init();
    idt_init();
    bootinfo_init(boot_info_phys);
    kernel_hold = cmdline_has(kernel_cmdline, "hold");
    coreinfo_init();
    coreinfo_publish();
    bootinfo_print();
    memmap_init(&firmware_map, boot_info);
    memmap_print(&firmware_map);

    uint64_t mm_start = rdtsc();
    mm_bootstrap(&firmware_map);
    uint64_t mm_cycles = rdtsc() - mm_start;
    coreinfo_after_bootstrap();
    uint64_t cycles = coreinfo_ready();
    print_mm_summary(cycles, mm_cycles);

    struct test_totals tests = {0, 0, 0};
    if (cmdline_has(kernel_cmdline, "fault")) {
        selftest_fault();
        kernel_exit(KM_EXIT_FAIL);
    }
    if (cmdline_has(kernel_cmdline, "test"))
        selftest_run(&tests);
    workloads_run(kernel_cmdline);
    bugs_before_ready(kernel_cmdline);

    report_ready(firmware_map.count, cycles, mm_cycles, &tests);
    bugs_after_ready(kernel_cmdline);
    if (kernel_hold) {
        kprintf("KM-READY\n");
        cpu_halt_forever();
    }
    kernel_exit(tests.failed ? KM_EXIT_FAIL : KM_EXIT_PASS);
}
