// Whole-word matching over the command line; see include/lib/cmdline.h.
#include "lib/cmdline.h"

#include "lib/string.h"

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// The next space-separated word at or after *p: its start, and its length in *n (0 at the end).
static const char *next_word(const char **p, size_t *n)
{
    while (is_space(**p))
        (*p)++;
    const char *start = *p;
    while (**p && !is_space(**p))
        (*p)++;
    *n = (size_t)(*p - start);
    return start;
}

bool cmdline_has(const char *cmdline, const char *word)
{
    size_t n = strlen(word), len;
    const char *p = cmdline;
    while (*p) {
        const char *start = next_word(&p, &len);
        if (len == n && strncmp(start, word, n) == 0)
            return true;
    }
    return false;
}

bool cmdline_value(const char *cmdline, const char *key, char *out, size_t size)
{
    size_t k = strlen(key), len;
    const char *p = cmdline;
    while (*p) {
        const char *start = next_word(&p, &len);
        if (len > k && start[k] == '=' && strncmp(start, key, k) == 0) {
            size_t v = len - k - 1 < size - 1 ? len - k - 1 : size - 1;
            memcpy(out, start + k + 1, v);
            out[v] = 0;
            return true;
        }
    }
    return false;
}
