#ifndef CALLEE_H
#define CALLEE_H
#ifndef WORK_ITERS
#define WORK_ITERS 40
#endif
/* ~50 ns of dependent integer work (calibrated by the direct variant). */
#define WORK_LOOP(v)                                                           \
    for (int i_ = 0; i_ < WORK_ITERS; i_++) {                                  \
        v = v * 1103515245u + 12345u;                                          \
        __asm__ volatile("" : "+r"(v));                                        \
    }
/* A recursion level: the empty asm keeps the compiler from turning the
 * recursion into a loop. */
#define RECURSE(x, next)                                                       \
    int r_ = next(x - 1);                                                      \
    __asm__ volatile("" : "+r"(r_));                                           \
    return r_ + 1;

/* plain functions (baseline.c) */
int triv_impl(int x);
int work_impl(int x);
int rec_direct(int n);
int rec_ptr_impl(int n);
int triv_naive(int x);
int work_naive(int x);
int rec_naive(int n);
extern int (*triv_fp)(int), (*work_fp)(int), (*rec_fp)(int);
/* DSU functions (dsu.c): `dsu` calls them while the executable's version is
 * current, `dsu-bundle` once a real bundle's version is */
int triv_dsu(int x);
int work_dsu(int x);
int rec_dsu(int n);
#endif
