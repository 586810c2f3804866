// x86-64 instructions that C cannot express, shared by the loader (efi/) and the kernel (kernel/):
// port I/O, the TSC, MSRs and CPUID. Each is a single instruction with no side effect beyond it.
#pragma once

#include <stdint.h>

static inline void outb(uint16_t port, uint8_t value)
{
    __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t value)
{
    __asm__ volatile("outw %0, %1" : : "a"(value), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t value)
{
    __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
    return value;
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t value)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32)));
}

struct cpuid_regs {
    uint32_t eax, ebx, ecx, edx;
};

// CPUID leaf `leaf`, subleaf `subleaf`.
static inline struct cpuid_regs cpuid(uint32_t leaf, uint32_t subleaf)
{
    struct cpuid_regs r;
    __asm__ volatile("cpuid"
                     : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx)
                     : "a"(leaf), "c"(subleaf));
    return r;
}

#define CPUID_EXT_MAX 0x80000000u     // EAX: the highest extended leaf
#define CPUID_EXT_FEATURES 0x80000001u
#define CPUID_EXT_NX (1u << 20)       // CPUID_EXT_FEATURES EDX: execute disable
#define CPUID_EXT_ADDRESS 0x80000008u // EAX[7:0]: MAXPHYADDR

// Extended CPUID leaf `leaf` (subleaf 0), or all zeros when the CPU does not implement it.
static inline struct cpuid_regs cpuid_ext(uint32_t leaf)
{
    if (cpuid(CPUID_EXT_MAX, 0).eax < leaf)
        return (struct cpuid_regs){0};
    return cpuid(leaf, 0);
}

#define MSR_EFER 0xc0000080u
#define EFER_NXE (1ull << 11)
