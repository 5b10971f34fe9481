#include "units.h"

static int beta_calls;

/* K&R definition */
int beta_kr(a, b)
    int a;
    int b;
{
    return a + b + alpha_table[1];
}

static int beta_count(void)
{
    return ++beta_calls;
}

int beta_value(void)
{
    if (alpha_table[0] != 10)
        return -1;
    beta_count();
    return 2;
}
