/* switch_bench.c - time of one psu update's switch of N functions once their
 * code is loaded: the runtime's own psu_switch (N seq_cst slot exchanges, ONE
 * membarrier, module accounting), called under psu_update_lock exactly as the
 * update thread calls it.
 *
 *   switch_bench REPS N1 N2 ...     -> one JSON line per (condition, N)
 * Conditions: "idle" (no other application thread) and "busy" (one thread on
 * the other core calling DSU functions whose slots are being switched).
 * Repetitions of the different N are interleaved.  Times in microseconds. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "psu_internal.h"
#include "psu_fast.h"

#define MAXF 1000

const char psu_build_id[] = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
const char psu_program_name[] = "switch_bench";
const char psu_version_label[] = "v1";

/* aligned as a bundle's versions are: the slot word's low byte is the module */
__attribute__((noinline, aligned(PSU_CODE_ALIGN))) int impl_a(int x) { return x + 1; }
__attribute__((noinline, aligned(PSU_CODE_ALIGN))) int impl_b(int x) { return x + 2; }

static struct psu_function recs[MAXF] = { [0] = { (uintptr_t)impl_a, "bench.c:f0" } };
static struct psu_function *section_recs[] __attribute__((used, section("psu_functions"))) = { &recs[0] };
static char names[MAXF][32];

__attribute__((noinline)) static int call_rec(struct psu_function *r, int x)
{
    struct psu_call c = psu_enter(r);
    int v = ((int (*)(int))c.code)(x);
    psu_leave(c);
    return v;
}

static atomic_int busy_stop;
static atomic_ulong busy_calls;

static void *busy_main(void *arg)
{
    (void)arg;
    unsigned long n = 0;
    int acc = 0;
    while (!atomic_load_explicit(&busy_stop, memory_order_relaxed)) {
        for (int i = 0; i < 64; i++)
            acc += call_rec(&recs[(n + i) % MAXF], acc);
        n += 64;
    }
    atomic_store(&busy_calls, n + (unsigned)(acc & 0));
    return NULL;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static struct psu_switch_item items[MAXF];
static int flip;

static double one_switch(size_t n)
{
    uintptr_t code = flip ? (uintptr_t)impl_a : (uintptr_t)impl_b;
    flip = !flip;
    for (size_t i = 0; i < n; i++) {
        items[i].fn = &recs[i];
        items[i].new_word = code;            /* module 0 (the executable) */
    }
    /* the update thread holds psu_update_lock around every switch */
    psu_lock(&psu_update_lock);
    double t0 = now_us();
    psu_switch(items, n);
    double t1 = now_us();
    psu_unlock(&psu_update_lock);
    /* keep every slot on the same code between switches of different N */
    for (size_t i = n; i < MAXF; i++)
        atomic_store(&recs[i].current, code);
    return t1 - t0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: switch_bench REPS N...\n");
        return 2;
    }
    int reps = atoi(argv[1]);
    int nn = argc - 2;
    size_t ns[16];
    for (int i = 0; i < nn && i < 16; i++) {
        ns[i] = (size_t)atol(argv[i + 2]);
        if (ns[i] < 1 || ns[i] > MAXF) {
            fprintf(stderr, "N must be 1..%d\n", MAXF);
            return 2;
        }
    }
    for (int i = 0; i < MAXF; i++) {
        snprintf(names[i], sizeof names[i], "bench.c:f%d", i);
        recs[i].current = (uintptr_t)impl_a;
        recs[i].name = names[i];
    }
    double *t = malloc(sizeof(double) * (size_t)reps * (size_t)nn);
    for (int cond = 0; cond < 2; cond++) {
        pthread_t busy;
        if (cond == 1) {
            atomic_store(&busy_stop, 0);
            pthread_create(&busy, NULL, busy_main, NULL);
            struct timespec w = { 0, 50 * 1000 * 1000 };
            nanosleep(&w, NULL);
        }
        for (int i = 0; i < 20; i++)
            one_switch(ns[i % nn]);                       /* warm-up */
        for (int r = 0; r < reps; r++)
            for (int i = 0; i < nn; i++)
                t[i * reps + r] = one_switch(ns[i]);
        if (cond == 1) {
            atomic_store(&busy_stop, 1);
            pthread_join(busy, NULL);
        }
        for (int i = 0; i < nn; i++) {
            double *s = t + i * reps;
            qsort(s, (size_t)reps, sizeof(double), cmpd);
            printf("{\"condition\":\"%s\",\"n\":%zu,\"reps\":%d,\"p50_us\":%.3f,\"p90_us\":%.3f,"
                   "\"p99_us\":%.3f,\"min_us\":%.3f,\"max_us\":%.3f",
                   cond ? "busy" : "idle", ns[i], reps, s[reps / 2], s[reps * 9 / 10],
                   s[reps * 99 / 100], s[0], s[reps - 1]);
            if (cond == 1)
                printf(",\"busy_thread_calls\":%lu", atomic_load(&busy_calls));
            printf("}\n");
        }
    }
    free(t);
    return 0;
}
