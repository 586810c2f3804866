// The kernel's GDT and TSS; see include/arch/trap.h.
#include <stdint.h>

#include "arch/trap.h"
#include "lib/string.h"

struct tss {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
} __attribute__((packed));
_Static_assert(sizeof(struct tss) == 104, "TSS size");

#define IST_STACK_SIZE 16384

static struct tss tss;
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
    gdt[5] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |   // present, 64-bit TSS
             (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    gdt[6] = base >> 32;

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
