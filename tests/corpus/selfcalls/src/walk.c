/* DSU unit: a recursive function and two mutually recursive ones, each
 * leaving its version's digit in a trace on entry, and on exit its digit
 * with the value the newest `leaf` gives.  A call at the chosen level waits
 * for `go`, so an update can switch the functions mid-recursion. */
#include <stdio.h>
#include <unistd.h>
#include "walk.h"

static char trace[512];
static int trace_length;
static int pause_level = -1;
static int paused, released;

static void record(char what, int version)
{
    if (trace_length < (int)sizeof trace - 4)
        trace_length += snprintf(trace + trace_length, sizeof trace - trace_length, "%c%d", what, version);
}

static void gate(int n)
{
    if (n != pause_level)
        return;
    __atomic_store_n(&paused, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&released, __ATOMIC_SEQ_CST))
        usleep(1000);
}

int leaf(void)
{
    return 1;
}

int walk(int n)
{
    int r = 0;
    record('>', 1);
    gate(n);
    if (n > 0)
        r = walk(n - 1);
    record('<', 1);
    record('=', leaf());
    return r + 1;
}

int is_even(int n)
{
    record('e', 1);
    gate(n);
    if (n == 0)
        return 1;
    return is_odd(n - 1) + leaf() * 0;
}

int is_odd(int n)
{
    record('o', 1);
    gate(n);
    if (n == 0)
        return 0;
    return is_even(n - 1);
}

void walk_pause_at(int level)
{
    trace_length = 0;
    trace[0] = 0;
    paused = released = 0;
    pause_level = level;
}

int walk_paused(void)
{
    return __atomic_load_n(&paused, __ATOMIC_SEQ_CST);
}

void walk_go(void)
{
    __atomic_store_n(&released, 1, __ATOMIC_SEQ_CST);
}

const char *walk_trace(void)
{
    return trace;
}
