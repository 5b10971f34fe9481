/* Braces written by macros inside function bodies. */
#include "gnuc.h"

#define ELSE_IF(c) } else if (c) {
#define ELSE } else {
#define END_IF }

void classify_into(int x, int *out)
{
    if (x < 0) {
        *out = -1;
    ELSE_IF(x == 0)
        *out = 0;
    ELSE_IF(x < 10)
        *out = 1;
    ELSE
        *out = 2;
    END_IF
}

int classify(int x)
{
    int r;
    classify_into(x, &r);
    if (r > 0) {
        r *= 10;
    ELSE
        r -= 10;
    END_IF
    return r;
}
