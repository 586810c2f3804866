/*
 * hello_efi.c: the smallest UEFI application kmtool's runner can boot, used as a yardstick.
 *
 * It writes one line to COM1 (0x3f8) and to debugcon (0xe9), then writes the pass value to the
 * isa-debug-exit port (0xf4), so QEMU exits with status 33 exactly as it does when the real kernel
 * passes. benchmarks/bench_boot.py boots it next to the real image to show the firmware's share of
 * boot time; tests/qemu boots it to test the runner before (and independently of) the real kernel.
 *
 * It also prints a one-line `KM-REPORT {...}` like the kernel's ready report, so the runner's report
 * parsing is exercised without the kernel. Variants for the runner's tests:
 *   -DHELLO_HANG         spin forever after the lines (the timeout test);
 *   -DHELLO_HOLD         print `KM-READY` and halt with interrupts off, like the kernel with `hold`
 *                        (the stop/dump tests);
 *   -DHELLO_EXIT=0x11    exit with the fail (0x11) or panic (0x12) value instead of pass.
 *
 * Build (no gnu-efi, no headers):
 *   clang --target=x86_64-unknown-windows -ffreestanding -fshort-wchar -mno-red-zone -O2 \
 *         -c hello_efi.c -o hello.o
 *   lld-link -subsystem:efi_application -entry:efi_main -nodefaultlib -out:BOOTX64.EFI hello.o
 * The port numbers and values are restated here on purpose: this file stands outside the project's
 * build and must not depend on include/km/.
 */

#ifndef HELLO_EXIT
#define HELLO_EXIT 0x10
#endif

#define HELLO_STR2(x) #x
#define HELLO_STR(x) HELLO_STR2(x)

#define COM1 0x3f8
#define COM1_LSR (COM1 + 5)
#define LSR_THR_EMPTY 0x20
#define DEBUGCON 0xe9
#define DEBUG_EXIT 0xf4

static inline void outb(unsigned short port, unsigned char value)
{
    __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline unsigned char inb(unsigned short port)
{
    unsigned char value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
    return value;
}

static void put(const char *s)
{
    for (; *s; s++) {
        /* OVMF has already programmed COM1 for its own console; just wait for the holding register. */
        for (int spins = 0; spins < 100000 && !(inb(COM1_LSR) & LSR_THR_EMPTY); spins++)
            ;
        outb(COM1, (unsigned char)*s);
        outb(DEBUGCON, (unsigned char)*s);
    }
}

/* UEFI entry (Microsoft ABI, the target's default): the arguments are not needed. */
unsigned long long efi_main(void *image_handle, void *system_table)
{
    (void)image_handle;
    (void)system_table;
    put("hello from EFI\r\n");
    put("KM-REPORT {\"app\": \"hello\", \"exit\": \"" HELLO_STR(HELLO_EXIT) "\"}\r\n");
#if defined(HELLO_HANG)
    for (;;)
        __asm__ volatile("pause");
#elif defined(HELLO_HOLD)
    put("KM-READY\r\n");
    for (;;)
        __asm__ volatile("cli; hlt");
#endif
    outb(DEBUG_EXIT, HELLO_EXIT);
    for (;;)
        __asm__ volatile("hlt");
}
