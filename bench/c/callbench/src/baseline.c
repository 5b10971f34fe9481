/* Plain unit: the baselines -- direct calls, plain function pointers, and a
 * naive DSU design (one shared atomic reference count per module, written
 * only here) -- each in this unit, so the caller (main.c) cannot inline them. */
#include <stdatomic.h>
#include <stdint.h>
#include "callee.h"

__attribute__((noinline)) int triv_impl(int x) { return x + 1; }

__attribute__((noinline)) int work_impl(int x)
{
    unsigned v = (unsigned)x;
    WORK_LOOP(v)
    return (int)(v >> 1);
}

/* as rec_dsu in dsu.c, which gcc may inline into itself as it does this */
int rec_direct(int x)
{
    if (x <= 0)
        return 0;
    RECURSE(x, rec_direct)
}

int (*triv_fp)(int) = triv_impl;
int (*work_fp)(int) = work_impl;
int (*rec_fp)(int) = rec_ptr_impl;

__attribute__((noinline)) int rec_ptr_impl(int x)
{
    if (x <= 0)
        return 0;
    RECURSE(x, rec_fp)
}

/* ---- naive design ---------------------------------------------------- */
#define NAIVE_SHIFT 56
static _Alignas(64) _Atomic(unsigned long) naive_count[256];
static int rec_naive_impl(int x);
static _Atomic(uintptr_t) naive_triv = (uintptr_t)triv_impl;
static _Atomic(uintptr_t) naive_work = (uintptr_t)work_impl;
static _Atomic(uintptr_t) naive_rec = (uintptr_t)rec_naive_impl;

static inline __attribute__((always_inline)) int
naive_call(_Atomic(uintptr_t) *slot, int x)
{
    uintptr_t w;
    _Atomic(unsigned long) *cnt;
    for (;;) {
        w = atomic_load_explicit(slot, memory_order_acquire);
        cnt = &naive_count[w >> NAIVE_SHIFT];
        atomic_fetch_add_explicit(cnt, 1, memory_order_seq_cst);
        if (atomic_load_explicit(slot, memory_order_seq_cst) == w)
            break;
        atomic_fetch_sub_explicit(cnt, 1, memory_order_release);
    }
    int r = ((int (*)(int))(w & ((UINT64_C(1) << NAIVE_SHIFT) - 1)))(x);
    atomic_fetch_sub_explicit(cnt, 1, memory_order_release);
    return r;
}
__attribute__((noinline)) int triv_naive(int x) { return naive_call(&naive_triv, x); }
__attribute__((noinline)) int work_naive(int x) { return naive_call(&naive_work, x); }
__attribute__((noinline)) int rec_naive(int n) { return naive_call(&naive_rec, n); }

static __attribute__((noinline)) int rec_naive_impl(int x)
{
    if (x <= 0)
        return 0;
    RECURSE(x, rec_naive)
}
