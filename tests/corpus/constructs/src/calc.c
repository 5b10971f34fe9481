/* DSU unit: recursion, struct arguments and returns, function pointers, statics. */
#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "shapes.h"

static unsigned long counted;                 /* file-scope static */
long calc_global = 7;                          /* global */
static _Thread_local unsigned long per_thread; /* thread-local */
static const long weights[] = { 1, 2, 3 };     /* constant data */

static inline long square(long v) { return v * v; }

static int is_odd(long n);
static long twice_static(long v);

static int is_even(long n)                     /* mutual recursion between statics */
{
    return n == 0 ? 1 : is_odd(n - 1);
}

static int is_odd(long n)
{
    return n == 0 ? 0 : is_even(n - 1);
}

long even_odd(long n) { return is_even(n) * 10 + is_odd(n) + twice_static(0); }

long twice_static(long v) { return 2 * v; }  /* static by its earlier declaration */

long fib(int n)
{
    static unsigned long entered = 0;          /* function-local static */
    entered++;
    assert(n >= 0);
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

long ackermann(long m, long n)
{
    if (m == 0)
        return n + 1;
    if (n == 0)
        return ackermann(m - 1, 1);
    return ackermann(m - 1, ackermann(m, n - 1));
}

struct point midpoint(struct point a, struct point b)
{
    struct point m = { (a.x + b.x) / 2, (a.y + b.y) / 2 };
    return m;
}

struct box grow(struct box b, long by)
{
    b.low.x -= by; b.low.y -= by;
    b.high.x += by; b.high.y += by;
    strcpy(b.tag, "grown");
    return b;
}

long add(long a, long b) { return a + b; }
long mul(long a, long b) { return a * b; }

long fold(const long *values, size_t count, reducer f, long start)
{
    for (size_t i = 0; i < count; i++)
        start = f(start, values[i]);
    return start;
}

void count_call(void) { counted++; per_thread++; }

unsigned long calls_counted(void) { return counted; }

static void *tally_thread(void *arg)
{
    int rounds = *(int *)arg;
    for (int i = 0; i < rounds; i++)
        count_call();
    return (void *)(unsigned long)per_thread;
}

unsigned long thread_tally(int rounds)
{
    pthread_t threads[3];
    unsigned long sum = 0;
    for (int i = 0; i < 3; i++)
        pthread_create(&threads[i], NULL, tally_thread, &rounds);
    for (int i = 0; i < 3; i++) {
        void *result;
        pthread_join(threads[i], &result);
        sum += (unsigned long)result;
    }
    return sum;
}

long unit_sum(void)
{
    return square(calc_global) + weights[0] + weights[1] + weights[2];
}

void say(const char *fmt, ...)                 /* variadic: stays direct */
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

long excluded_twice(long v) { return 2 * v; } /* PSU_EXCLUDE keeps it direct */
