/* DSU unit: tables of anonymous struct type sized by their initializers,
 * a string define, a deprecated function; C89 and warning-free. */
#include <stdio.h>
#include <string.h>
#include "unit.h"

static const struct { const char *name; int value; } names[] = {
    { "one", 1 }, { "two", 2 }, { "three", 3 }
};

static struct { const char *name; int hits; } counters[] = {
    { "a", 0 }, { "b", 0 }
};

static int calls;

static int twice(int v)
{
    return 2 * v;
}

static int square(int v)
{
    return v * v;
}

/* a global table of an anonymous struct type, handlers in it */
struct {
    const char *name;
    int (*handler)(int);
    int uses;
} directives[] = {
    { "twice", twice, 0 },
    { "square", square, 0 }
};

/* sized by its initializer; in C99 and later by enumerators as designators */
enum level { LEVEL_LOW = 1, LEVEL_MID, LEVEL_HIGH = LEVEL_MID + 2 };
static struct { const char *name; int seen; } levels[] = {
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L
    [LEVEL_HIGH] = { "high", 0 },
    [LEVEL_LOW] = { "low", 0 },
    [LEVEL_MID] = { "mid", 0 }
#else
    { "", 0 }, { "low", 0 }, { "mid", 0 }, { "", 0 }, { "high", 0 }
#endif
};

static int level(const char *name)
{
    size_t i;
    for (i = 1; i < sizeof levels / sizeof *levels; i++)
        if (levels[i].name != NULL && strcmp(levels[i].name, name) == 0)
            return (int)i * 10 + ++levels[i].seen;
    return (int)(sizeof levels / sizeof *levels);
}

static int run_directive(const char *name, int v)
{
    size_t i;
    for (i = 0; i < sizeof(directives) / sizeof(directives[0]); i++)
        if (strcmp(directives[i].name, name) == 0) {
            directives[i].uses++;
            return directives[i].handler(v);
        }
    return -1;
}

int old_api(int x)
{
    return x + 1;
}

static int lookup(const char *name)
{
    size_t i;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(names[i].name, name) == 0)
            return names[i].value;
    return -1;
}

static int hit(const char *name)
{
    size_t i;
    for (i = 0; i < sizeof counters / sizeof counters[0]; i++)
        if (strcmp(counters[i].name, name) == 0)
            return ++counters[i].hits;
    return -1;
}

/* sized by a string psu does not count (an escape): not bound, and a patch
   of a function naming it is refused */
static char banner[] = "strict\tunit";

int banner_size(void)
{
    return (int)sizeof banner;
}

int total_calls(void)
{
    return calls;
}

void handle(const char *command, char *out, size_t size)
{
    char text[64];
    calls++;
    if (strcmp(command, "version") == 0)
        sprintf(text, "version %s", VERSION);
    else if (strncmp(command, "lookup ", 7) == 0)
        sprintf(text, "%s=%d", command + 7, lookup(command + 7));
    else if (strncmp(command, "run ", 4) == 0)
        sprintf(text, "%d", run_directive(command + 4, 7));
    else if (strncmp(command, "level ", 6) == 0)
        sprintf(text, "level %d", level(command + 6));
    else if (strcmp(command, "banner") == 0)
        sprintf(text, "banner %d", banner_size());
    else if (strncmp(command, "hit ", 4) == 0)
        sprintf(text, "hits %d", hit(command + 4));
    else
        sprintf(text, "calls %d", total_calls());
    if (size > 0) {
        strncpy(out, text, size - 1);
        out[size - 1] = '\0';
    }
}

void old_log(const char *text)
{
    calls += (int)strlen(text);
}
