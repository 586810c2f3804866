// printf core: one formatter writing through a sink callback; see include/lib/printf.h.
#include "lib/printf.h"

#include <stdint.h>

#include "lib/console.h"

struct sink {
    void (*put)(struct sink *s, char c);
    char *buf;      // buffer sinks only
    size_t size;    // buffer capacity including the NUL
    size_t len;     // characters produced so far (also past the end of the buffer)
};

static void emit(struct sink *s, char c)
{
    s->put(s, c);
    s->len++;
}

static void emit_padding(struct sink *s, int count, char c)
{
    while (count-- > 0)
        emit(s, c);
}

// Formats `value` (already made non-negative) with an optional sign.
static void emit_number(struct sink *s, uint64_t value, unsigned base, int upper, int negative,
                        int width, int left, int zero)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = digits[value % base];
        value /= base;
    } while (value);
    int total = n + (negative ? 1 : 0);
    if (!left && !zero)
        emit_padding(s, width - total, ' ');
    if (negative)
        emit(s, '-');
    if (!left && zero)
        emit_padding(s, width - total, '0');
    while (n)
        emit(s, tmp[--n]);
    if (left)
        emit_padding(s, width - total, ' ');
}

static void format(struct sink *s, const char *fmt, va_list ap)
{
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            emit(s, *p);
            continue;
        }
        const char *start = p++;
        int left = 0, zero = 0, width = 0, precision = -1, longs = 0, size_t_mod = 0;
        for (;; p++) {
            if (*p == '-')
                left = 1;
            else if (*p == '0')
                zero = 1;
            else
                break;
        }
        if (*p == '*') {
            width = va_arg(ap, int);
            if (width < 0) {
                left = 1;
                width = -width;
            }
            p++;
        }
        while (*p >= '0' && *p <= '9')
            width = width * 10 + (*p++ - '0');
        if (*p == '.') {
            p++;
            precision = 0;
            if (*p == '*') {
                precision = va_arg(ap, int);
                p++;
            }
            while (*p >= '0' && *p <= '9')
                precision = precision * 10 + (*p++ - '0');
        }
        while (*p == 'l') {
            longs++;
            p++;
        }
        if (*p == 'z') {
            size_t_mod = 1;
            p++;
        }
        switch (*p) {
        case 'd':
        case 'i': {
            int64_t v = (longs || size_t_mod) ? va_arg(ap, int64_t) : va_arg(ap, int);
            uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
            emit_number(s, mag, 10, 0, v < 0, width, left, zero);
            break;
        }
        case 'u':
        case 'x':
        case 'X': {
            uint64_t v = (longs || size_t_mod) ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
            emit_number(s, v, *p == 'u' ? 10 : 16, *p == 'X', 0, width, left, zero);
            break;
        }
        case 'p': {
            uint64_t v = (uint64_t)(uintptr_t)va_arg(ap, void *);
            emit(s, '0');
            emit(s, 'x');
            emit_number(s, v, 16, 0, 0, 16, 0, 1);
            break;
        }
        case 's': {
            const char *str = va_arg(ap, const char *);
            if (!str)
                str = "(null)";
            int n = 0;
            while (str[n] && (precision < 0 || n < precision))
                n++;
            if (!left)
                emit_padding(s, width - n, ' ');
            for (int i = 0; i < n; i++)
                emit(s, str[i]);
            if (left)
                emit_padding(s, width - n, ' ');
            break;
        }
        case 'c': {
            char c = (char)va_arg(ap, int);
            if (!left)
                emit_padding(s, width - 1, ' ');
            emit(s, c);
            if (left)
                emit_padding(s, width - 1, ' ');
            break;
        }
        case '%':
            emit(s, '%');
            break;
        case '\0':
            // A lone '%' at the end: print it and stop.
            for (const char *q = start; *q; q++)
                emit(s, *q);
            return;
        default:
            for (const char *q = start; q <= p; q++)
                emit(s, *q);
            break;
        }
    }
}

static void put_console(struct sink *s, char c)
{
    (void)s;
    console_putc(c);
}

static void put_buffer(struct sink *s, char c)
{
    if (s->len + 1 < s->size)
        s->buf[s->len] = c;
}

int kvprintf(const char *fmt, va_list ap)
{
    struct sink s = {.put = put_console};
    format(&s, fmt, ap);
    return (int)s.len;
}

int kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = kvprintf(fmt, ap);
    va_end(ap);
    return n;
}

int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct sink s = {.put = put_buffer, .buf = buf, .size = size};
    format(&s, fmt, ap);
    if (size)
        buf[s.len < size ? s.len : size - 1] = '\0';
    return (int)s.len;
}

int ksnprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = kvsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}
