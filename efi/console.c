// Loader output. Every line goes to COM1 (port 0x3f8, left programmed by the firmware) and to the
// debugcon port (KM_DEBUGCON_PORT); fatal messages also go to the firmware console (ConOut) while
// boot services still run, so a human looking at the screen sees them. Port output keeps working
// after ExitBootServices; ConOut does not, hence console_firmware_gone(). OVMF mirrors ConOut to
// COM1 itself, so a fatal line shows twice in a serial log (once with the firmware's escapes).

#include <stdarg.h>

#include "cpu.h"
#include "loader.h"

#define COM1_BASE 0x3f8
#define COM1_LSR (COM1_BASE + 5)
#define LSR_THR_EMPTY 0x20
#define LINE_MAX 512

static bool firmware_console = true;

void console_firmware_gone(void)
{
    firmware_console = false;
}

static void serial_putc(char c)
{
    /* Bounded wait: a missing UART reads 0xff (THR empty), a stuck one must not hang the boot. */
    for (unsigned spin = 0; spin < 100000 && !(inb(COM1_LSR) & LSR_THR_EMPTY); spin++)
        __asm__ volatile("pause");
    outb(COM1_BASE, (uint8_t)c);
}

static void ports_write(const char *s)
{
    for (; *s; s++) {
        if (*s == '\n')
            serial_putc('\r');
        serial_putc(*s);
        outb(KM_DEBUGCON_PORT, (uint8_t)*s);
    }
}

static void conout_write(const char *s)
{
    CHAR16 wide[LINE_MAX + 2];
    unsigned n = 0;
    for (; *s && n < LINE_MAX; s++) {
        if (*s == '\n')
            wide[n++] = '\r';
        wide[n++] = (uint8_t)*s;
    }
    wide[n] = 0;
    ST->ConOut->OutputString(ST->ConOut, wide);
}

/* ---- a small vsnprintf ---- */

struct sink {
    char *buf;
    size_t cap; /* bytes usable for characters (one more is kept for the NUL) */
    size_t len;
};

static void put(struct sink *out, char c)
{
    if (out->len < out->cap)
        out->buf[out->len++] = c;
}

static void put_number(struct sink *out, uint64_t value, unsigned base, bool upper, bool negative,
                       unsigned width, char pad)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    unsigned n = 0;
    do {
        tmp[n++] = digits[value % base];
        value /= base;
    } while (value);
    if (negative)
        tmp[n++] = '-';
    for (unsigned i = n; i < width; i++)
        put(out, pad);
    while (n)
        put(out, tmp[--n]);
}

static void vformat(struct sink *out, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(out, *fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        unsigned width = 0, longs = 0;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (unsigned)(*fmt++ - '0');
        while (*fmt == 'l' || *fmt == 'z') {
            longs += *fmt == 'z' ? 2 : 1;
            fmt++;
        }
        /* Target is LLP64: long is 32 bits, long long and size_t are 64. */
        bool wide = longs >= 2;
        switch (*fmt) {
        case 'd': {
            int64_t v = wide ? va_arg(ap, int64_t) : va_arg(ap, int);
            put_number(out, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, 10, false, v < 0, width, pad);
            break;
        }
        case 'u':
        case 'x':
        case 'X': {
            uint64_t v = wide ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
            put_number(out, v, *fmt == 'u' ? 10 : 16, *fmt == 'X', false, width, pad);
            break;
        }
        case 'p':
            put(out, '0');
            put(out, 'x');
            put_number(out, (uint64_t)(uintptr_t)va_arg(ap, void *), 16, false, false, width, pad);
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            for (s = s ? s : "(null)"; *s; s++)
                put(out, *s);
            break;
        }
        case 'c':
            put(out, (char)va_arg(ap, int));
            break;
        case '%':
            put(out, '%');
            break;
        default: /* unknown conversion: show it rather than guess */
            put(out, '%');
            if (*fmt)
                put(out, *fmt);
            else
                fmt--;
        }
    }
}

static void format_line(char *buf, size_t size, const char *prefix, const char *fmt, va_list ap)
{
    struct sink out = { buf, size - 2, 0 };
    for (; *prefix; prefix++)
        put(&out, *prefix);
    vformat(&out, fmt, ap);
    buf[out.len++] = '\n';
    buf[out.len] = 0;
}

void log_line(const char *fmt, ...)
{
    char line[LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    format_line(line, sizeof line, "kmtool loader: ", fmt, ap);
    va_end(ap);
    ports_write(line);
}

_Noreturn void fatal(EFI_STATUS status, const char *what_fmt, ...)
{
    char line[LINE_MAX];
    char what[LINE_MAX - 64];
    va_list ap;
    va_start(ap, what_fmt);
    struct sink out = { what, sizeof what - 1, 0 };
    vformat(&out, what_fmt, ap);
    what[out.len] = 0;
    va_end(ap);

    struct sink full = { line, sizeof line - 2, 0 };
    const char *parts[] = { "fatal: ", what, ": ", efi_status_name(status) };
    for (unsigned i = 0; i < 4; i++)
        for (const char *s = parts[i]; *s; s++)
            put(&full, *s);
    line[full.len++] = '\n';
    line[full.len] = 0;

    ports_write(line);
    if (firmware_console)
        conout_write(line);
    outb(KM_DEBUG_EXIT_PORT, KM_EXIT_FAIL);
    for (;;)
        __asm__ volatile("hlt");
}
