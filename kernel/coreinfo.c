// The core-info block; see include/lib/coreinfo.h.
#include "lib/coreinfo.h"

#include "arch/cpu.h"
#include "lib/bootinfo.h"
#include "mm/bootstrap.h"
#include "mm/paging.h"

struct km_core_info km_core_info;

extern char __kernel_start[], __kernel_end[];

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// KM_BUILD_ID, when the build defines it, is a string of (at least) 32 hex digits.
static void fill_build_id(uint8_t out[16])
{
#ifdef KM_BUILD_ID
    const char *id = KM_BUILD_ID;
    for (int i = 0; i < 16; i++) {
        int hi = hex_digit(id[2 * i]), lo = hi < 0 ? -1 : hex_digit(id[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
#else
    (void)out;
    (void)hex_digit;
#endif
}

void coreinfo_init(void)
{
    struct km_core_info *ci = &km_core_info;
    ci->version = KM_CORE_INFO_VERSION;
    ci->length = sizeof(*ci);
    ci->self_phys = kernel_virt_to_phys(ci);
    ci->boot_info_phys = boot_info_phys;
    ci->frame_state_phys = kernel_virt_to_phys(&km_frames);
    ci->heap_state_phys = kernel_virt_to_phys(&km_heap);
    ci->page_state_phys = kernel_virt_to_phys(&km_page_stats);
    ci->kernel_phys_base = boot_info->kernel_phys_base;
    ci->kernel_virt_base = (uint64_t)(uintptr_t)__kernel_start;
    ci->kernel_size = (uint64_t)(__kernel_end - __kernel_start);
    ci->offset_map_base = KM_OFFSET_MAP_BASE;
    ci->kernel_space_base = KM_KERNEL_SPACE_BASE;
    ci->heap_base = KM_HEAP_BASE;
    ci->heap_size = KM_HEAP_SIZE;
    ci->entry_tsc = kernel_entry_tsc;
    fill_build_id(ci->build_id);
    // The magic words last: a scan that finds them finds a complete block.
    ci->magic2 = KM_CORE_INFO_MAGIC2;
    ci->magic = KM_CORE_INFO_MAGIC;
}

void coreinfo_after_bootstrap(void)
{
    km_core_info.kernel_pml4_phys = kernel_pml4;
    km_core_info.offset_map_page_size = offset_map.page_size;
    km_core_info.offset_map_size = offset_map.size;
}

uint64_t coreinfo_ready(void)
{
    km_core_info.ready_tsc = rdtsc();
    return km_core_info.ready_tsc - km_core_info.entry_tsc;
}
