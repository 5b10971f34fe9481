/* DSU unit: the functions the dsu and dsu-bundle variants call.  Revision v2
 * of the benchmark's repository rewrites each body without changing what it
 * computes, so the bundle v1 -> v2 replaces all three. */
#include "callee.h"

int triv_dsu(int x)
{
    return x + 1;
}

int work_dsu(int x)
{
    unsigned v = (unsigned)x;
    WORK_LOOP(v)
    return (int)(v >> 1);
}

int rec_dsu(int x)
{
    if (x <= 0)
        return 0;
    int r = rec_dsu(x - 1);
    __asm__ volatile("" : "+r"(r));     /* no turning the recursion into a loop */
    return r + 1;
}
