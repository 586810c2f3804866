// panic(), the end-of-run paths and the `hold` behaviour; see include/lib/panic.h.
#include "lib/panic.h"

#include <km/layout.h>
#include <stdarg.h>

#include "arch/cpu.h"
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

extern char __text_start[], __text_end[], __bss_start[], __bss_end[];

void print_backtrace(uint64_t rbp)
{
    // Frames live on the boot stack or the IST stack, both inside .bss.
    uint64_t lo = (uint64_t)(uintptr_t)__bss_start, hi = (uint64_t)(uintptr_t)__bss_end;
    uint64_t text_lo = (uint64_t)(uintptr_t)__text_start, text_hi = (uint64_t)(uintptr_t)__text_end;
    kprintf("  backtrace");
    for (int depth = 0; depth < 16; depth++) {
        if (rbp < lo || rbp + 16 > hi || (rbp & 7))
            break;
        const uint64_t *frame = (const uint64_t *)(uintptr_t)rbp;
        uint64_t ret = frame[1];
        if (ret < text_lo || ret >= text_hi)
            break;
        kprintf(" 0x%lx", ret);
        if (frame[0] <= rbp)
            break;   // frames only go up the stack
        rbp = frame[0];
    }
    kprintf("\n");
}

_Noreturn void panic(const char *fmt, ...)
{
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
