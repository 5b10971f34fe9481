#include <stdarg.h>
#include "units.h"

static inline int gamma_inline(int x)
{
    return x + 1;
}

/* referenced only from a data initializer */
static int gamma_twice(int x)
{
    return 2 * x;
}

static int (*const gamma_ops[])(int) = { gamma_twice };

int gamma_sum(int n, ...)
{
    va_list ap;
    int total = 0;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        total += va_arg(ap, int);
    va_end(ap);
    return total;
}

int gamma_value(void)
{
    int sum = 0;
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++)
        sum += gamma_ops[0](i);
    return gamma_inline(sum) + 0;
}
