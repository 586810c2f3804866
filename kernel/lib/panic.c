// panic(), the end-of-run paths and the `hold` behaviour; see include/lib/panic.h.
#include "lib/panic.h"

#include <km/layout.h>
#include <stdarg.h>

#include "arch/cpu.h"
#include "lib/printf.h"

int kernel_hold;
static int panicking;

void panic_begin(const char *fmt, ...)
{
    __asm__ volatile("cli");
    if (panicking++) {
        kprintf("\npanic: nested panic, halting\n");
        cpu_halt_forever();
    }
    kprintf("\npanic: ");
    va_list ap;
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
    kprintf("\n");
}

_Noreturn void panic_end(void)
{
    if (kernel_hold) {
        kprintf("KM-PANIC-HELD\n");
        cpu_halt_forever();
    }
    kernel_exit(KM_EXIT_PANIC);
}

_Noreturn void panic(const char *fmt, ...)
{
    __asm__ volatile("cli");
    if (panicking++) {
        kprintf("\npanic: nested panic, halting\n");
        cpu_halt_forever();
    }
    kprintf("\npanic: ");
    va_list ap;
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
    kprintf("\n");
    kprintf("  caller   %p\n", __builtin_return_address(0));
    kprintf("  cr2      %p\n", (void *)read_cr2());
    kprintf("  cr3      %p\n", (void *)read_cr3());
    panic_end();
}

_Noreturn void kernel_exit(uint32_t value)
{
    outl(KM_DEBUG_EXIT_PORT, value);
    cpu_halt_forever();
}
