/* Plain unit: compiled exactly as Program would. */
#include <stdio.h>
#include "shapes.h"

int main(void)
{
    struct point a = { 2, 4 }, b = { 10, 20 };
    struct point m = midpoint(a, b);
    struct box bx = { { 0, 0 }, { 5, 5 }, "box" };
    long values[] = { 1, 2, 3, 4, 5 };
    reducer pick = add;                       /* address of a DSU function */

    say("fib(20)=%ld\n", fib(20));
    say("ackermann(2,3)=%ld\n", ackermann(2, 3));
    say("midpoint=%ld,%ld\n", m.x, m.y);
    bx = grow(bx, 3);
    say("grow=%ld,%ld,%ld,%ld,%s\n", bx.low.x, bx.low.y, bx.high.x, bx.high.y, bx.tag);
    say("fold add=%ld mul=%ld\n", fold(values, 5, pick, 0), fold(values, 5, mul, 1));
    for (int i = 0; i < 5; i++)
        count_call();
    say("counted=%lu\n", calls_counted());
    say("threads=%lu counted=%lu\n", thread_tally(100), calls_counted());
    say("unit_sum=%ld excluded=%ld even_odd=%ld\n", unit_sum(), excluded_twice(21), even_odd(7));
    return 0;
}
