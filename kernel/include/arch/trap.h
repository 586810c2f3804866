// CPU exceptions: the GDT/TSS/IDT set-up and the register frame the handlers see
// (kernel/arch/x86_64/gdt.c, idt.c, isr.S, trap.c).
#pragma once

#include <stdint.h>

// What isr.S pushes, lowest address first; the CPU pushed rip..ss (and the error code, or the stub
// pushed 0 in its place).
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;
};

#define GDT_KERNEL_CODE 0x08
#define GDT_KERNEL_DATA 0x10
#define GDT_USER_DATA 0x18
#define GDT_USER_CODE 0x20
#define GDT_TSS 0x28

// Loads the kernel's own GDT (with a TSS whose IST1 stack serves #DF, NMI and #MC) and reloads
// every segment register. The firmware's GDT is not used afterwards.
void gdt_init(void);

// Loads an IDT with handlers for exceptions 0-31 and a catch-all for the rest.
void idt_init(void);

// Called by isr.S for every exception and interrupt.
void trap_dispatch(struct trap_frame *f);

// The innermost region of the address-space plan containing `addr`, or "none" (kernel/lib/regions.c).
const char *region_name(uint64_t addr);

#define PF_PRESENT (1u << 0)   // error code bits of a page fault
#define PF_WRITE (1u << 1)
#define PF_USER (1u << 2)
#define PF_RESERVED (1u << 3)
#define PF_FETCH (1u << 4)
