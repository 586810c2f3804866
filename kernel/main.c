// kmain: the boot, as a straight list of steps. Reading this file top to bottom is reading the boot.
#include <km/layout.h>
#include <km/structs.h>

#include "arch/cpu.h"
#include "lib/bootinfo.h"
#include "lib/cmdline.h"
#include "lib/console.h"
#include "lib/json.h"
#include "lib/panic.h"
#include "lib/printf.h"
#include "mm/memmap.h"

uint64_t kernel_entry_tsc;   // written by _start before anything else runs

static struct memmap firmware_map;

static void ready_report(uint64_t ready_tsc)
{
    struct json j;
    kprintf("KM-REPORT ");
    json_begin(&j);
    json_u64(&j, "memory_map_entries", firmware_map.count);
    json_u64(&j, "conventional_bytes", memmap_conventional_bytes(&firmware_map));
    json_u64(&j, "bootstrap_cycles", ready_tsc - kernel_entry_tsc);
    json_str(&j, "cmdline", kernel_cmdline);
    json_end_line(&j);
}

_Noreturn void kmain(uint64_t boot_info_phys);

_Noreturn void kmain(uint64_t boot_info_phys)
{
    console_init();
    kprintf("\nkmtool kernel: entered at TSC %lu, boot info at phys 0x%lx\n", kernel_entry_tsc,
            boot_info_phys);
    bootinfo_init(boot_info_phys);
    kernel_hold = cmdline_has(kernel_cmdline, "hold");
    bootinfo_print();
    memmap_init(&firmware_map, boot_info);
    memmap_print(&firmware_map);

    uint64_t ready_tsc = rdtsc();
    ready_report(ready_tsc);
    if (kernel_hold) {
        kprintf("KM-READY\n");
        cpu_halt_forever();
    }
    kernel_exit(KM_EXIT_PASS);
}
