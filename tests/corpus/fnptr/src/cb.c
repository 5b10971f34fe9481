/* DSU unit: a static function whose address is stored in a variable by a
 * function a bundle replaces, and called through it later, when that bundle
 * may be long gone. */
#include "cb.h"
static int (*handler)(int);
static int twice(int x)
{
    return 2 * x;
}
void install(void)
{
    handler = twice;
}
int call(int x)
{
    return handler ? handler(x) : -1;
}
int version(void)
{
    return 1;
}
