/* A DSU unit. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "keys.h"

const char *last_function;

static unsigned varint(const unsigned char *p, unsigned *value)
{
    unsigned n = 0, v = 0;
    do {
        v = (v << 7) | (p[n] & 0x7f);
    } while (p[n++] & 0x80 && n < 5);
    *value = v;
    return n;
}

int key_tail(struct sorter *s, const void *key1, const void *key2)
{
    s->tails++;
    return strcmp((const char *)key1, (const char *)key2);
}

int compare_keys(struct sorter *s, int *cached, const void *key1, int n1,
                 const void *key2, int n2)
{
    const unsigned char *p1 = key1, *p2 = key2;
    unsigned len1, len2;
    int res;
    last_function = __func__;
    varint(p1, &len1);
    varint(p2, &len2);
    res = memcmp(p1 + 1, p2 + 1, (len1 < len2 ? len1 : len2));
    if (res == 0)
        res = (int)len1 - (int)len2;
    if (res == 0) {
        if (s->fields > 1) {
            *cached = 1;
            res = key_tail(s, key1, key2) + (n1 - n2);
        }
    } else if (s->descending) {
        res = -res;
    }
    return res;
}

void note_key(struct sorter *s, const char *key, char *out, int size)
{
    int written = snprintf(out, (size_t)size, "%s:%s:%d", __FUNCTION__, key, s->fields);
    if (written >= size && size > 0)
        out[size - 1] = '\0';
    if (strchr(key, '!'))
        snprintf(out, (size_t)size, "%s", __PRETTY_FUNCTION__);
    s->tails += written > 0;
}

_Noreturn void fail_key(const char *why)
{
    fprintf(stderr, "%s: %s\n", __func__, why);
    fflush(stderr);
    exit(3);
}

const char *say_key(char *out, int size, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    vsnprintf(out, (size_t)size, format, ap);
    va_end(ap);
    return __func__;
}
