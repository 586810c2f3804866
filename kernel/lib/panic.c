// panic(), the end-of-run paths and the `hold` behaviour; see include/lib/panic.h.
#include "lib/panic.h"

#include <km/layout.h>
#include <stdarg.h>

#include "arch/cpu.h"
#include "lib/fault.h"
#include "lib/printf.h"

int kernel_hold;
static int panicking;

// Interrupts off, the first line of the report; a panic inside a panic stops at once.
static void panic_vbegin(const char *fmt, va_list ap)
{
    __asm__ volatile("cli");
    if (panicking++) {
        kprintf("\npanic: nested panic, halting\n");
        cpu_halt_forever();
    }
    fault_record_message(fmt, ap);
    kprintf("\npanic: ");
    kvprintf(fmt, ap);
    kprintf("\n");
}

void panic_begin(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    panic_vbegin(fmt, ap);
    va_end(ap);
}

_Noreturn void panic_end(void)
{
    if (kernel_hold) {
        kprintf("KM-PANIC-HELD\n");
        cpu_halt_forever();
    }
    kernel_exit(KM_EXIT_PANIC);
}

void print_backtrace(uint64_t rbp)
{
    uint64_t frames[KM_FAULT_MAX_FRAMES];
    int n = backtrace_collect(rbp, frames, KM_FAULT_MAX_FRAMES);
    kprintf("  backtrace");
    for (int i = 0; i < n; i++)
        kprintf(" 0x%lx", frames[i]);
    kprintf("\n");
}

_Noreturn void panic(const char *fmt, ...)
{
    uint64_t rsp;
    __asm__ volatile("mov %%rsp, %0" : "=r"(rsp));
    fault_record_panic((uint64_t)(uintptr_t)__builtin_return_address(0), rsp,
                       (uint64_t)(uintptr_t)__builtin_frame_address(0));
    va_list ap;
    va_start(ap, fmt);
    panic_vbegin(fmt, ap);
    va_end(ap);
    kprintf("  caller   %p\n", __builtin_return_address(0));
    kprintf("  cr2      %p\n", (void *)read_cr2());
    kprintf("  cr3      %p\n", (void *)read_cr3());
    print_backtrace((uint64_t)(uintptr_t)__builtin_frame_address(0));
    panic_end();
}

_Noreturn void kernel_exit(uint32_t value)
{
    outl(KM_DEBUG_EXIT_PORT, value);
    cpu_halt_forever();
}
