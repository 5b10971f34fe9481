/* DSU unit: each command exercises one kind of state. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "state.h"

static int counter;                         /* file-scope static */
static _Thread_local long per_thread;       /* thread-local */
static struct tally tally;                  /* a struct that existing state uses */
static int history[] = { 1, 2, 3, 4 };      /* sized by its initializer */

static inline int scale(int v) { return v * 2; }

static int calc(int v) { return scale(v) + 1; }

void log_line(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

extern inline int twice(int v) { return 2 * v; }   /* direct (inline), external linkage */

static int count(void)
{
    static int calls;                       /* function-local static */
    calls++;
    return calls;
}

void handle(const char *command, char *out, unsigned long size)
{
    if (strcmp(command, "version") == 0)
        snprintf(out, size, "v1");
    else if (strcmp(command, "count") == 0)
        snprintf(out, size, "count %d", count());
    else if (strcmp(command, "tls") == 0)
        snprintf(out, size, "tls %ld", ++per_thread);
    else if (strcmp(command, "calc") == 0)
        snprintf(out, size, "calc %d", calc(5));
    else if (strcmp(command, "bump") == 0)
        snprintf(out, size, "counter %d", ++counter);
    else if (strcmp(command, "history") == 0)
        snprintf(out, size, "history %d of %d", history[0]++, (int)(sizeof history / sizeof history[0]));
    else if (strcmp(command, "twice") == 0)
        snprintf(out, size, "twice %d", twice(21));
    else if (strcmp(command, "tally") == 0)
        snprintf(out, size, "tally %d", ++tally.hits);
    else
        snprintf(out, size, "unknown %s", command);
}
