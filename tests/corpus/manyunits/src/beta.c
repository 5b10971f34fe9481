#include "units.h"

static int beta_calls;

/* used only by beta_kr: unused where a bundle leaves beta_kr out */
#define BETA_BASE 0
static const int beta_weights[2] = { 1, 1 };

/* K&R definition */
int beta_kr(a, b)
    int a;
    int b;
{
    return beta_weights[0] * a + beta_weights[1] * b + alpha_table[1] + BETA_BASE;
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
