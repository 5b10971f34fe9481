/* A nested function (GCC extension): excluded in the SConstruct, psu calls it directly. */
#include "gnuc.h"

int with_nested(int x)
{
    int inner(int y) { return y * x; }
    return inner(3) + 1;
}
