// Console JSON writer; see include/lib/json.h.
#include "lib/json.h"

#include "lib/printf.h"

void json_begin(struct json *j)
{
    j->fields = 0;
    kprintf("{");
}

void json_end_line(struct json *j)
{
    (void)j;
    kprintf("}\n");
}

void json_key(struct json *j, const char *key)
{
    kprintf("%s\"%s\":", j->fields++ ? "," : "", key);
}

void json_u64(struct json *j, const char *key, uint64_t value)
{
    json_key(j, key);
    kprintf("%lu", value);
}

void json_hex(struct json *j, const char *key, uint64_t value)
{
    json_key(j, key);
    kprintf("\"0x%lx\"", value);
}

void json_bool(struct json *j, const char *key, int value)
{
    json_key(j, key);
    kprintf("%s", value ? "true" : "false");
}

void json_str(struct json *j, const char *key, const char *value)
{
    json_key(j, key);
    kprintf("\"");
    for (const char *p = value; *p; p++) {
        unsigned char c = (unsigned char)*p;
        // Bytes >= 0x80 go out raw: the command line is UTF-8, and `\\u00XX` per byte would turn
        // "é" into "Ã©". kmtool decodes the serial line (and so this string) as UTF-8.
        if (c == '"' || c == '\\')
            kprintf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            kprintf("\\u%04x", c);
        else
            kprintf("%c", c);
    }
    kprintf("\"");
}
