// Whole-word matching over the command line; see include/lib/cmdline.h.
#include "lib/cmdline.h"

#include "lib/string.h"

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool cmdline_has(const char *cmdline, const char *word)
{
    size_t n = strlen(word);
    const char *p = cmdline;
    while (*p) {
        while (is_space(*p))
            p++;
        const char *start = p;
        while (*p && !is_space(*p))
            p++;
        if ((size_t)(p - start) == n && strncmp(start, word, n) == 0)
            return true;
    }
    return false;
}
