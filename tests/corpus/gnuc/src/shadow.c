/* A typedef name redeclared as a variable, used in its own initializer
   (valid C: the variable's scope begins at its declarator). */
#include <stdlib.h>
#include "gnuc.h"

typedef struct rax { int size; int total; } rax;

static rax *rax_new(int size)
{
    rax *rax = malloc(sizeof(*rax));
    rax->size = size;
    rax->total = 0;
    return rax;
}

int shadow_demo(int n)
{
    rax *rax = rax_new(n);
    for (int i = 0; i < rax->size; i++)
        rax->total += i;
    int total = rax->total;
    free(rax);
    return total;
}
