/* call_bench - per-call cost of a direct call, a plain function pointer, a
 * psu DSU call (dsu.c, generated and built by psu) while the executable's
 * version is current and once a real bundle's version is, and a naive DSU
 * design (baseline.c).
 *
 *   call_bench VARIANT CALLEE THREADS CALLS
 *     VARIANT  direct | pointer | dsu | dsu-bundle | naive
 *     CALLEE   triv | work | rec   (rec: recursion of depth REC_DEPTH)
 * Prints "ready", then waits for a line on stdin (bench/call_overhead.py
 * applies the bundle meanwhile, for dsu-bundle), runs, and prints one JSON
 * line: {"ns_per_call": X, "per_thread": [...], "calls_total": N}.
 * ns_per_call is the median over threads of elapsed / calls, where calls
 * counts every call made (each recursion level is one call); calls_total
 * counts the warm-up's too (for instruction counts per call). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "callee.h"

#define REC_DEPTH 10

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
    case 6: case 9: LOOP(triv_dsu(acc)); break;
    case 7: case 10: LOOP(work_dsu(acc)); break;
    case 8: case 11: LOOP(rec_dsu(REC_DEPTH)); break;
    case 12: LOOP(triv_naive(acc)); break;
    case 13: LOOP(work_naive(acc)); break;
    case 14: LOOP(rec_naive(REC_DEPTH)); break;
    }
    return acc;
}

static volatile int sink;
static long warm_iters, timed_iters;

static void *thread_main(void *arg)
{
    double *out = arg;
    sink = run_loop(warm_iters);          /* warm-up, registers the thread */
    pthread_barrier_wait(&start_barrier);
    double t0 = now();
    sink = run_loop(timed_iters);
    double t1 = now();
    long made = callee == 2 ? timed_iters * (REC_DEPTH + 1) : timed_iters;
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
    char line[64];
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
    timed_iters = callee == 2 ? calls / (REC_DEPTH + 1) : calls;
    warm_iters = timed_iters / 20 + 1000;
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return 2;
    pthread_barrier_init(&start_barrier, NULL, (unsigned)threads);
    pthread_t tid[64];
    double ns[64];
    for (int i = 0; i < threads; i++)
        pthread_create(&tid[i], NULL, thread_main, &ns[i]);
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    double sorted[64];
    memcpy(sorted, ns, sizeof(double) * threads);
    qsort(sorted, threads, sizeof(double), cmp);
    printf("{\"ns_per_call\": %.4f, \"per_thread\": [", threads % 2 ? sorted[threads / 2]
           : (sorted[threads / 2 - 1] + sorted[threads / 2]) / 2);
    for (int i = 0; i < threads; i++)
        printf("%s%.4f", i ? ", " : "", ns[i]);
    long per_iter = callee == 2 ? REC_DEPTH + 1 : 1;
    printf("], \"calls_total\": %ld}\n", (warm_iters + timed_iters) * per_iter * threads);
    return 0;
}
