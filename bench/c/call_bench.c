/* call_bench.c - per-call cost of a direct call, a plain function pointer, a
 * psu DSU call (the real psu_fast.h path, runtime linked in) and a naive DSU
 * design (one shared atomic reference count per module, a baseline written
 * only here).
 *
 *   call_bench VARIANT CALLEE THREADS CALLS
 *     VARIANT  direct | pointer | dsu | dsu-bundle | naive
 *              (dsu: the executable's version is current; dsu-bundle: a
 *              bundle's version is, so outermost calls count a reference)
 *     CALLEE   triv | work | rec   (rec: recursion of depth REC_DEPTH)
 *   prints one JSON line: {"ns_per_call": X, "per_thread": [...]}
 * ns_per_call is the median over threads of elapsed / calls, where calls
 * counts every call made (each recursion level is one call). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "psu_fast.h"
#include "callee.h"

#define REC_DEPTH 10

const char psu_build_id[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const char psu_program_name[] = "call_bench";
const char psu_version_label[] = "v1";

/* The DSU functions (triv_dsu, ..., rec_bdsu) are in callee.c, written as
 * psu writes a DSU function of the program: its own body behind the entry
 * check, the general path beside it. */

/* ---- naive design: one shared atomic reference count per module ------- */
static _Alignas(64) _Atomic(unsigned long) naive_count[PSU_MAX_MODULES];
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
        cnt = &naive_count[w >> PSU_MODULE_SHIFT];
        atomic_fetch_add_explicit(cnt, 1, memory_order_seq_cst);
        if (atomic_load_explicit(slot, memory_order_seq_cst) == w)
            break;
        atomic_fetch_sub_explicit(cnt, 1, memory_order_release);
    }
    int r = ((int (*)(int))(w & PSU_CODE_MASK))(x);
    atomic_fetch_sub_explicit(cnt, 1, memory_order_release);
    return r;
}
__attribute__((noinline)) int triv_naive(int x) { return naive_call(&naive_triv, x); }
__attribute__((noinline)) int work_naive(int x) { return naive_call(&naive_work, x); }
__attribute__((noinline)) int rec_naive(int n) { return naive_call(&naive_rec, n); }

/* ---- plain function pointers (global: reloaded at every call) --------- */
int (*triv_fp)(int) = triv_impl;
int (*work_fp)(int) = work_impl;
int (*rec_fp)(int) = rec_ptr_impl;

/* ---- the measurement loop -------------------------------------------- */
static int variant, callee;   /* index in variants[] and callees[] of main */
static long calls;
static pthread_barrier_t start_barrier;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define LOOP(CALL) do { for (long i = 0; i < iters; i++) acc += CALL; } while (0)

static int run_loop(long iters)
{
    int acc = 0;
    switch (variant * 3 + callee) {
    case 0: LOOP(triv_impl(acc)); break;
    case 1: LOOP(work_impl(acc)); break;
    case 2: LOOP(rec_direct(REC_DEPTH)); break;
    case 3: LOOP(triv_fp(acc)); break;
    case 4: LOOP(work_fp(acc)); break;
    case 5: LOOP(rec_fp(REC_DEPTH)); break;
    case 6: LOOP(triv_dsu(acc)); break;
    case 7: LOOP(work_dsu(acc)); break;
    case 8: LOOP(rec_dsu(REC_DEPTH)); break;
    case 9: LOOP(triv_bdsu(acc)); break;
    case 10: LOOP(work_bdsu(acc)); break;
    case 11: LOOP(rec_bdsu(REC_DEPTH)); break;
    case 12: LOOP(triv_naive(acc)); break;
    case 13: LOOP(work_naive(acc)); break;
    case 14: LOOP(rec_naive(REC_DEPTH)); break;
    }
    return acc;
}

static volatile int sink;

static void *thread_main(void *arg)
{
    double *out = arg;
    long iters = callee == 2 ? calls / (REC_DEPTH + 1) : calls;
    sink = run_loop(iters / 20 + 1000);          /* warm-up, registers the thread */
    pthread_barrier_wait(&start_barrier);
    double t0 = now();
    sink = run_loop(iters);
    double t1 = now();
    long made = callee == 2 ? iters * (REC_DEPTH + 1) : iters;
    *out = (t1 - t0) * 1e9 / (double)made;
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    static const char *variants[] = { "direct", "pointer", "dsu", "dsu-bundle", "naive" };
    static const char *callees[] = { "triv", "work", "rec" };
    if (argc != 5) {
        fprintf(stderr, "usage: call_bench direct|pointer|dsu|dsu-bundle|naive triv|work|rec THREADS CALLS\n");
        return 2;
    }
    variant = callee = -1;
    for (int i = 0; i < 5; i++) if (!strcmp(argv[1], variants[i])) variant = i;
    for (int i = 0; i < 3; i++) if (!strcmp(argv[2], callees[i])) callee = i;
    int threads = atoi(argv[3]);
    calls = atol(argv[4]);
    if (variant < 0 || callee < 0 || threads < 1 || threads > 64 || calls < 1) {
        fprintf(stderr, "call_bench: bad arguments\n");
        return 2;
    }
    pthread_barrier_init(&start_barrier, NULL, (unsigned)threads);
    pthread_t tid[64];
    double ns[64];
    for (int i = 0; i < threads; i++)
        pthread_create(&tid[i], NULL, thread_main, &ns[i]);
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    printf("{\"ns_per_call\": ");
    double sorted[64];
    memcpy(sorted, ns, sizeof(double) * threads);
    qsort(sorted, threads, sizeof(double), cmp);
    printf("%.4f, \"per_thread\": [", threads % 2 ? sorted[threads / 2]
           : (sorted[threads / 2 - 1] + sorted[threads / 2]) / 2);
    for (int i = 0; i < threads; i++)
        printf("%s%.4f", i ? ", " : "", ns[i]);
    printf("]}\n");
    return 0;
}
