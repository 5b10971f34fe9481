/* K&R definitions. */
#include "gnuc.h"

int kr_add(a, b)
    int a;
    long b;
{
    return a + (int)b;
}

int kr_default(x)
{
    return x * 2;
}

int kr_promoted(c, f)
    char c;
    float f;
{
    return c + (int)f;
}
