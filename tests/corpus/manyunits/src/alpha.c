#include "units.h"

/* constant data other units read: each bundle keeps its own copy */
const int alpha_table[4] = { 10, 20, 30, 40 };

static int alpha_helper(int x)
{
    return x * 2;
}

int alpha_other(int x)
{
    return alpha_helper(x) + alpha_table[0];
}

int alpha_value(void)
{
    return 1;
}
