/* callee.c - the callees of call_bench, in their own translation unit so the
 * caller cannot inline them (no LTO). */
#include "callee.h"

__attribute__((noinline)) int triv_impl(int x) { return x + 1; }

/* ~50 ns of dependent integer work (calibrated by the direct variant). */
__attribute__((noinline)) int work_impl(int x)
{
    unsigned v = (unsigned)x;
    for (int i = 0; i < WORK_ITERS; i++) {
        v = v * 1103515245u + 12345u;
        __asm__ volatile("" : "+r"(v));
    }
    return (int)(v >> 1);
}

/* Recursion: depth levels, each level calls the next through the variant's
 * own mechanism (direct, pointer, DSU trampoline, bundle's version, naive
 * trampoline).  The empty asm keeps the compiler from eliminating the tail
 * recursion. */
#define RECURSION(name, next)                       \
    __attribute__((noinline)) int name(int n)       \
    {                                               \
        if (n <= 0)                                 \
            return 0;                               \
        int r = next(n - 1);                        \
        __asm__ volatile("" : "+r"(r));             \
        return r + 1;                               \
    }
RECURSION(rec_direct, rec_direct)
RECURSION(rec_ptr_impl, rec_fp)
RECURSION(rec_dsu_impl, rec_dsu)
RECURSION(rec_bundle_impl, rec_bdsu)
RECURSION(rec_naive_impl, rec_naive)
