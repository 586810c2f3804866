// The IDT; see include/arch/trap.h. All gates are interrupt gates (IF cleared on entry), DPL 0,
// code segment GDT_KERNEL_CODE. #DF, NMI and #MC run on the IST1 stack so that a kernel stack
// overflow still reaches a handler that can report it.
#include <stdint.h>

#include <km/structs.h>

#include "arch/trap.h"

// struct km_idt_gate is generated from kmtool/schemas/descriptors.py, which kmtool inspect decodes
// the IDT of a dump with.
extern const uint64_t isr_stubs[33];
static struct km_idt_gate idt[256] __attribute__((aligned(16)));

static void set_gate(unsigned vector, uint64_t handler, uint8_t ist)
{
    idt[vector] = (struct km_idt_gate){
        .offset_low = (uint16_t)handler,
        .selector = GDT_KERNEL_CODE,
        .ist = ist,
        .type_attr = KM_GATE_ATTR_INTERRUPT,
        .offset_mid = (uint16_t)(handler >> 16),
        .offset_high = (uint32_t)(handler >> 32),
    };
}

void idt_init(void)
{
    for (unsigned v = 0; v < 256; v++)
        set_gate(v, v < 32 ? isr_stubs[v] : isr_stubs[32], 0);
    set_gate(2, isr_stubs[2], 1);    // NMI
    set_gate(8, isr_stubs[8], 1);    // double fault
    set_gate(18, isr_stubs[18], 1);  // machine check
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) idtr = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};
    __asm__ volatile("lidt %0" : : "m"(idtr) : "memory");
}
