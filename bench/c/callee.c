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
 * own mechanism (direct, pointer, DSU trampoline, naive trampoline). */
__attribute__((noinline)) int rec_direct(int n)
{
    if (n <= 0)
        return 0;
    int r = rec_direct(n - 1);
    __asm__ volatile("" : "+r"(r));   /* no tail-recursion elimination */
    return r + 1;
}
__attribute__((noinline)) int rec_ptr_impl(int n)
{
    if (n <= 0)
        return 0;
    int r = rec_fp(n - 1);
    __asm__ volatile("" : "+r"(r));   /* no tail-recursion elimination */
    return r + 1;
}
__attribute__((noinline)) int rec_dsu_impl(int n)
{
    if (n <= 0)
        return 0;
    int r = rec_dsu(n - 1);
    __asm__ volatile("" : "+r"(r));   /* no tail-recursion elimination */
    return r + 1;
}
__attribute__((noinline)) int rec_bundle_impl(int n)
{
    if (n <= 0)
        return 0;
    int r = rec_bdsu(n - 1);
    __asm__ volatile("" : "+r"(r));   /* no tail-recursion elimination */
    return r + 1;
}
__attribute__((noinline)) int rec_naive_impl(int n)
{
    if (n <= 0)
        return 0;
    int r = rec_naive(n - 1);
    __asm__ volatile("" : "+r"(r));   /* no tail-recursion elimination */
    return r + 1;
}
