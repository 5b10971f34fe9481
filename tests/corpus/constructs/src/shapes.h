#ifndef SHAPES_H
#define SHAPES_H
#include <stddef.h>

struct point { long x, y; };
struct box { struct point low, high; char tag[8]; };

typedef long (*reducer)(long, long);

long fib(int n);
long ackermann(long m, long n);
struct point midpoint(struct point a, struct point b);
struct box grow(struct box b, long by);
long fold(const long *values, size_t count, reducer f, long start);
long add(long a, long b);
long mul(long a, long b);
void count_call(void);
unsigned long calls_counted(void);
unsigned long thread_tally(int rounds);
long unit_sum(void);
void say(const char *fmt, ...);
long excluded_twice(long v);
long even_odd(long n);
#endif
