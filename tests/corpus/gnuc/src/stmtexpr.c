/* Statement expressions: the idiom behind MAX/MIN and container_of. */
#include <stddef.h>
#include "gnuc.h"

#define MAX(a, b) ({ __typeof__(a) _a = (a); __typeof__(b) _b = (b); _a > _b ? _a : _b; })
#define MIN(a, b) ({ __auto_type _a = (a); __auto_type _b = (b); _a < _b ? _a : _b; })
#define CLAMP(x, lo, hi) MIN(MAX(x, lo), hi)
#define container_of(ptr, type, member) ({ \
        const __typeof__(((type *)0)->member) *__mptr = (ptr); \
        (type *)((char *)__mptr - offsetof(type, member)); })

/* local labels, as statement-expression macros declare them */
#define FIRST_ABOVE(values, n, limit) ({ \
        __label__ found; \
        int _i; \
        for (_i = 0; _i < (n); _i++) \
            if ((values)[_i] > (limit)) \
                goto found; \
    found: \
        _i; })

struct link { struct link *next; };
struct item { int key; struct link link; };

static int scale(int v)
{
    return v * 3;
}

int first_negative(const int *values, int n)
{
    /* a return inside a loop, inside a statement expression */
    int found = ({
        int at = -1;
        for (int i = 0; i < n; i++) {
            if (values[i] > 1000)
                return -2;
            if (values[i] < 0) { at = i; break; }
        }
        at;
    });
    return found * 10 + FIRST_ABOVE(values, n, 5);
}

int stmt_expr_demo(int x)
{
    struct item it = { .key = x, .link = { 0 } };
    struct link *l = &it.link;
    struct item *back = container_of(l, struct item, link);
    int nested = ({ int a = ({ int b = scale(x); b + 1; }); a * 2; });
    return CLAMP(back->key, 0, 100) + nested;
}
