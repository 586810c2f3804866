// x86-64 instructions the kernel needs, as inline functions.
//
// Control registers, TLB invalidation and halting; port I/O, the TSC, MSRs and CPUID come from
// include/x86/insn.h (shared with the loader). Nothing here allocates or prints.
#pragma once

#include <stdint.h>
#include <x86/insn.h>

static inline uint64_t read_cr2(void)
{
    uint64_t value;
    __asm__ volatile("mov %%cr2, %0" : "=r"(value));
    return value;
}

static inline uint64_t read_cr3(void)
{
    uint64_t value;
    __asm__ volatile("mov %%cr3, %0" : "=r"(value));
    return value;
}

// Loading CR3 also flushes every non-global TLB entry. The "memory" clobber keeps the compiler from
// moving page-table stores after the switch.
static inline void write_cr3(uint64_t value)
{
    __asm__ volatile("mov %0, %%cr3" : : "r"(value) : "memory");
}

static inline uint64_t read_cr0(void)
{
    uint64_t value;
    __asm__ volatile("mov %%cr0, %0" : "=r"(value));
    return value;
}

static inline void write_cr0(uint64_t value)
{
    __asm__ volatile("mov %0, %%cr0" : : "r"(value) : "memory");
}

static inline uint64_t read_cr4(void)
{
    uint64_t value;
    __asm__ volatile("mov %%cr4, %0" : "=r"(value));
    return value;
}

// Drops the TLB entry (and paging-structure cache entries) for the page containing `va`.
static inline void invlpg(uint64_t va)
{
    __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory");
}

_Noreturn static inline void cpu_halt_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}
