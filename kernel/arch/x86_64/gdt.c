// The kernel's GDT and TSS; see include/arch/trap.h.
#include <stdint.h>

#include <km/structs.h>

#include "arch/trap.h"
#include "lib/string.h"

// struct km_tss and struct km_system_descriptor are generated from kmtool/schemas/descriptors.py,
// which kmtool inspect decodes the TSS and GDT of a dump with.

#define IST_STACK_SIZE 16384

static struct km_tss tss;
static uint8_t ist1_stack[IST_STACK_SIZE] __attribute__((aligned(16)));

// Null, kernel code (64-bit), kernel data, user data, user code, then the 16-byte TSS descriptor.
static uint64_t gdt[7] __attribute__((aligned(16))) = {
    0,
    0x00af9a000000ffffull,   // 0x08: present, DPL 0, code, readable, L=1
    0x00cf92000000ffffull,   // 0x10: present, DPL 0, data, writable
    0x00cff2000000ffffull,   // 0x18: present, DPL 3, data, writable
    0x00affa000000ffffull,   // 0x20: present, DPL 3, code, readable, L=1
    0,
    0,
};

struct descriptor_pointer {
    uint16_t limit;
    uint64_t base;
} __attribute__((packed));

void gdt_init(void)
{
    memset(&tss, 0, sizeof(tss));
    tss.ist[0] = (uint64_t)(uintptr_t)(ist1_stack + IST_STACK_SIZE);
    tss.iomap_base = sizeof(tss);   // no I/O permission bitmap

    uint64_t base = (uint64_t)(uintptr_t)&tss;
    uint64_t limit = sizeof(tss) - 1;
    struct km_system_descriptor tss_descriptor = {
        .limit_low = (uint16_t)limit,
        .base_low = (uint16_t)base,
        .base_mid = (uint8_t)(base >> 16),
        .access = KM_TSS_ACCESS_AVAILABLE,
        .limit_high_flags = (uint8_t)((limit >> 16) & 0xf),
        .base_high = (uint8_t)(base >> 24),
        .base_upper = (uint32_t)(base >> 32),
    };
    memcpy(&gdt[5], &tss_descriptor, sizeof(tss_descriptor));   // slots 5 and 6 (selector GDT_TSS)

    struct descriptor_pointer gdtr = {.limit = sizeof(gdt) - 1, .base = (uint64_t)(uintptr_t)gdt};
    __asm__ volatile(
        "lgdt %0\n\t"
        "pushq %1\n\t"
        "leaq 1f(%%rip), %%rax\n\t"
        "pushq %%rax\n\t"
        "lretq\n"
        "1:\n\t"
        "movw %w2, %%ax\n\t"
        "movw %%ax, %%ds\n\t"
        "movw %%ax, %%es\n\t"
        "movw %%ax, %%ss\n\t"
        "xorl %%eax, %%eax\n\t"
        "movw %%ax, %%fs\n\t"
        "movw %%ax, %%gs\n\t"
        "ltr %w3\n\t"
        :
        : "m"(gdtr), "i"(GDT_KERNEL_CODE), "r"(GDT_KERNEL_DATA), "r"(GDT_TSS)
        : "rax", "memory");
}
