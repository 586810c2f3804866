// COM1 and debugcon output. Polling only: the kernel never enables interrupts.
#include "lib/console.h"

#include <km/layout.h>

#include "arch/cpu.h"

#define COM1 0x3f8
#define UART_DATA 0
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_LSR_THRE 0x20
#define UART_LCR_DLAB 0x80

void console_init(void)
{
    outb(COM1 + UART_IER, 0x00);      // no UART interrupts
    outb(COM1 + UART_LCR, UART_LCR_DLAB);
    outb(COM1 + UART_DATA, 0x01);     // divisor 1: 115200 baud
    outb(COM1 + UART_IER, 0x00);
    outb(COM1 + UART_LCR, 0x03);      // 8 data bits, no parity, 1 stop bit, DLAB off
    outb(COM1 + UART_FCR, 0xc7);      // FIFOs on and cleared, 14-byte threshold
    outb(COM1 + UART_MCR, 0x03);      // DTR and RTS
}

static void serial_putc(char c)
{
    // Bounded wait: with no UART present the status reads 0xff, which also has THRE set.
    for (int spins = 0; spins < 100000; spins++) {
        if (inb(COM1 + UART_LSR) & UART_LSR_THRE)
            break;
    }
    outb(COM1 + UART_DATA, (uint8_t)c);
}

void console_putc(char c)
{
    if (c == '\n')
        serial_putc('\r');
    serial_putc(c);
    outb(KM_DEBUGCON_PORT, (uint8_t)c);
}

void console_write(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        console_putc(s[i]);
}
