/* DSU unit: variadic and K&R functions, hidden ones, a thread main loop. */
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include "core.h"
#include "core_internal.h"

static long ticks;

int core_scale(int x)
{
    return x * 2;
}

int core_weight(int i)
{
    return core_weights[i & 3];
}

int core_step(int x)
{
    return core_scale(x) + 1;
}

/* takes the address of a hidden function */
int core_apply(int x)
{
    int (*volatile fn)(int) = core_scale;
    return fn(x);
}

int core_format(char *out, unsigned long size, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(out, size, fmt, ap);
    va_end(ap);
    return n;
}

/* recursive through its own variadic entry */
int core_nest(int depth, const char *tag, ...)
{
    va_list ap;
    double d;
    int i;
    va_start(ap, tag);
    d = va_arg(ap, double);
    i = va_arg(ap, int);
    va_end(ap);
    if (depth <= 0)
        return (int)(d * 10) + i + (tag[0] == 'x');
    return 1 + core_nest(depth - 1, tag, d, i);
}

/* the builtins written directly */
int core_sum(int count, ...)
{
    __builtin_va_list ap;
    int total = 0;
    __builtin_va_start(ap, count);
    while (count-- > 0)
        total += __builtin_va_arg(ap, int);
    __builtin_va_end(ap);
    return total;
}

/* never reads its variable arguments */
int core_first(int a, ...)
{
    return a + 1;
}

/* static, its address taken: a DSU function reached by name in its unit */
static int tally(int count, ...)
{
    va_list ap;
    int sum = 0;
    va_start(ap, count);
    while (count-- > 0)
        sum += va_arg(ap, int);
    va_end(ap);
    return sum;
}

int core_tally(void)
{
    int (*volatile fn)(int, ...) = tally;
    return fn(2, 5, 6) + tally(1, 100);
}

int core_kr(c, f, n)
    char c;
    float f;
    int n;
{
    return c + (int)(f * 100) + n;
}

int core_fact(n)
    int n;
{
    return n <= 1 ? 1 : n * core_fact(n - 1);
}

void *core_worker(void *arg)
{
    (void)arg;
    for (;;) {
        __atomic_add_fetch(&ticks, 1, __ATOMIC_RELAXED);
        usleep(1000);
    }
}

/* a long call: it waits until released */
static int waiting, released;

int core_wait(void)
{
    __atomic_store_n(&waiting, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&released, __ATOMIC_ACQUIRE))
        usleep(1000);
    __atomic_store_n(&released, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&waiting, 0, __ATOMIC_RELAXED);
    return 1;
}

int core_waiting(void)
{
    return __atomic_load_n(&waiting, __ATOMIC_ACQUIRE);
}

void core_release(void)
{
    __atomic_store_n(&released, 1, __ATOMIC_RELEASE);
}

long core_ticks(void)
{
    return __atomic_load_n(&ticks, __ATOMIC_RELAXED);
}
