/* stress.c - stress test of the call path (psu_fast.h) and the unload
 * decision (psu_switch + psu_active_calls), through the runtime's internal
 * API, without dlopen.
 *
 * One DSU function `work` has five versions: v0 in "the executable" (module
 * index 0, never reclaimed) and v1..v4, each given its own module index 1..4.
 * Caller threads call `work` through a trampoline written as the generator
 * writes it, recursing through the trampoline to a random depth 0..MAX_DEPTH.
 * The updater switches among the versions thousands of times; a version that
 * was switched away is reclaimed -- marked poisoned -- only once the runtime's
 * scan (psu_active_calls) says no thread is in it.  A reclaimed version is
 * made current again by clearing the mark first (as a reload would).  Every
 * version checks the mark on entry and on exit: a poisoned version running is
 * a failure, i.e. the runtime unloaded code that was still executing.
 *
 * v1..v4 are bundle versions: half of their recursive calls go straight to
 * their own version behind the check a bundle's code makes
 * (psu_version_is_current, codegen._bundle_self_calls), the rest through the
 * trampoline.  Every call also checks guarantee 2: the updater stamps each
 * switch with an epoch; a caller reads the epoch before each call, and a
 * version that had been switched away (and not back) by that epoch must not
 * run -- a "stale" call.
 *
 * Counted calls of the general path count on the caller's TLS (psu_fast_calls),
 * which the scan reads while the caller lives.  With STRESS_CHURN=1 a further
 * thread keeps making short-lived callers on stacks it maps itself and unmaps
 * once each is joined -- their TLS with them -- some of which end by
 * pthread_exit from inside a counted call: a scan that read a finished
 * thread's counts would fault, or count a call that no longer exists.
 *
 * Usage: stress ITERATIONS CALLERS WINDOW [fallback]
 *   WINDOW: maximum random spin injected by PSU_TEST_RACE_WINDOW (0 = none)
 *   fallback: run with psu_membarrier_ready = 0 (locked add + seq_cst fence)
 * Env STRESS_MAX_SECONDS (default 10) caps the run's length; a run also
 * ends after 100 failures.
 * Prints "switches=S calls=C reclaims=R failures=F ..." and exits 0.
 * Run with PSU_DISABLE=1 (no update thread, no socket). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static void race_window(void);
#define PSU_TEST_RACE_WINDOW() race_window()
#include "psu_internal.h"

const char psu_build_id[] = "0000000000000000000000000000000000000000000000000000000000000000";
const char psu_program_name[] = "stress";
const char psu_version_label[] = "stress";

#define VERSIONS 5          /* v0 .. v4 = module indices 0 .. 4 */
#define MAX_DEPTH 12
#define MAX_CALLERS 16

static unsigned race_window_max;                  /* set before threads start */
static _Atomic int poisoned[VERSIONS];            /* written by the updater */
static _Atomic unsigned long failures;
static _Atomic unsigned long calls_made;
static _Atomic int updater_done;
static _Atomic unsigned long fast_counted;     /* calls the general path counted on TLS */
static _Atomic unsigned long churned;          /* short-lived callers joined */
static _Thread_local int exit_at_depth = -1;   /* a churned caller's pthread_exit */

/* Guarantee 2: `epoch` counts switches (written by the updater, release,
 * after each switch); switched_in[v] / switched_out[v] hold the epoch stamp
 * of v's last switch in (stored before the switch's exchange, which releases
 * it to a caller whose slot read sees v) and out (stored before `epoch`). */
static _Atomic unsigned long epoch;
static _Atomic unsigned long switched_in[VERSIONS], switched_out[VERSIONS];
static _Atomic unsigned long stale;
static _Thread_local unsigned long call_epoch;      /* read just before each call */

static _Thread_local unsigned rng_state;

static unsigned rng(void)
{
    unsigned x = rng_state ? rng_state : 2463534242u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

static void spin(unsigned n)
{
    for (volatile unsigned i = 0; i < n; i++)
        ;
}

/* Injected into psu_enter's race window: usually nothing, sometimes a spin
 * long enough for the updater to switch, scan and reclaim meanwhile. */
static void race_window(void)
{
    if (race_window_max && rng() % 4 == 0)
        spin(rng() % race_window_max);
}

typedef long (*work_fn)(int depth);

/* The function's record, in the section the runtime reads at start-up; its
 * entry is a hook (the test builds it as the adapters do: psu.entryhooks),
 * so the runtime jumps from it to the stub of the current version's module
 * -- or to the general path -- while a bundle version is current. */
static long work(int depth) PSU_ENTRY_HOOK;
static __attribute__((noinline)) long psu_general_work(int depth);
static struct psu_function work_record = { PSU_EXECUTABLE_VERSION, "stress.c:work",
                                           psu_hooked_entry(work), (void (*)(void))psu_general_work };
static struct psu_function *work_record_ptr __attribute__((used, section("psu_functions"))) = &work_record;

static const work_fn version_code[VERSIONS];

static void begin_call(void)
{
    call_epoch = atomic_load_explicit(&epoch, memory_order_acquire);
}

/* The general path, as templates/unit_trailer.c.j2 generates it for the
 * executable (uncounted when nested) ... */
static __attribute__((noinline, cold)) long work_slow(int depth)
{
    struct psu_call c = psu_enter(&work_record);
    if (c.calls) {
        long r = ((work_fn)c.code)(depth);
        psu_leave(c);
        return r;
    }
    if (c.code)
        return ((work_fn)c.code)(depth);
    return (*psu_executable_version(&work_record, work))(depth);
}

static __attribute__((noinline)) long psu_general_work(int depth)
{
    struct psu_fast_call c;
    enum psu_route route = psu_enter_fast(&work_record, psu_current(&work_record), &c);
    if (__builtin_expect(route == PSU_COUNTED, 1)) {
        atomic_fetch_add_explicit(&fast_counted, 1, memory_order_relaxed);
        long r = ((work_fn)c.code)(depth);
        psu_leave_fast(c);
        return r;
    }
    if (route == PSU_NESTED)
        return ((work_fn)c.code)(depth);
    return work_slow(depth);
}

/* A bundle's call of its own version, as codegen writes it (function_entry.c.j2,
 * bundle_self): direct while the slot still names it, else through the
 * program's function. */
static inline __attribute__((always_inline)) long self_call(int version, int depth)
{
    if (__builtin_expect(!psu_version_is_current(&work_record, version_code[version]), 0))
        return work(depth);
    return version_code[version](depth);
}

static inline __attribute__((always_inline)) long version_body(int version, int depth)
{
    unsigned long began = call_epoch;
    unsigned long in = atomic_load_explicit(&switched_in[version], memory_order_acquire);
    unsigned long out = atomic_load_explicit(&switched_out[version], memory_order_acquire);
    if (out > in && out <= began)
        atomic_fetch_add(&stale, 1);    /* switched away before this call began */
    if (atomic_load_explicit(&poisoned[version], memory_order_relaxed))
        atomic_fetch_add(&failures, 1);
    long r = version;
    if (depth == exit_at_depth && version != 0)
        pthread_exit(NULL);     /* inside a counted call (a bundle version) */
    if (depth > 0) {
        begin_call();
        r += version != 0 && rng() % 2 ? self_call(version, depth - 1) : work(depth - 1);
    }
    if (rng() % 8 == 0)
        spin(rng() % 200);
    if (atomic_load_explicit(&poisoned[version], memory_order_relaxed))
        atomic_fetch_add(&failures, 1);
    return r;
}

/* ... and the executable's version: the function itself, whose body begins
 * with the entry check templates/function_entry.c.j2 inserts. */
static long work(int depth)
{
    if (__builtin_expect(!psu_executable_is_current(&work_record), 0))
        return psu_general_work(depth);
    return version_body(0, depth);
}

#define VERSION(k) \
    static __attribute__((noinline, aligned(PSU_CODE_ALIGN))) long work_v##k(int depth)        \
    { return version_body(k, depth) + k * 1000; }
VERSION(1)
VERSION(2)
VERSION(3)
VERSION(4)

static const work_fn version_code[VERSIONS] = { work, work_v1, work_v2, work_v3, work_v4 };

static void *caller(void *arg)
{
    rng_state = 0x9e3779b9u * (unsigned)(uintptr_t)arg + 1;
    while (!atomic_load_explicit(&updater_done, memory_order_relaxed)) {
        begin_call();
        work((int)(rng() % (MAX_DEPTH + 1)));
        /* A shared counter is fine here: this is a test, not the fast path.
         * It lets the updater pace itself to the callers (see main). */
        atomic_fetch_add_explicit(&calls_made, 1, memory_order_relaxed);
    }
    return NULL;
}

/* A short-lived caller: a few calls, the last perhaps left by pthread_exit. */
static void *short_caller(void *arg)
{
    rng_state = 0x85ebca6bu * (unsigned)(uintptr_t)arg + 1;
    for (int i = 0; i < 20; i++) {
        if (i == 19 && rng() % 2)
            exit_at_depth = 0;
        begin_call();
        work((int)(rng() % (MAX_DEPTH + 1)));
    }
    return NULL;
}

#define CHURN_STACK (4 * 1024 * 1024)    /* (sanitizers want large stacks) */

static void *churn(void *arg)
{
    (void)arg;
    for (uintptr_t n = 1; !atomic_load_explicit(&updater_done, memory_order_relaxed); n++) {
        void *stack = mmap(NULL, CHURN_STACK, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (stack == MAP_FAILED)
            abort();
        pthread_attr_t attr;
        pthread_t t;
        pthread_attr_init(&attr);
        pthread_attr_setstack(&attr, stack, CHURN_STACK);
        if (pthread_create(&t, &attr, short_caller, (void *)n) != 0)
            abort();
        pthread_attr_destroy(&attr);
        pthread_join(t, NULL);
        munmap(stack, CHURN_STACK);     /* its TLS was in there */
        atomic_fetch_add_explicit(&churned, 1, memory_order_relaxed);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: stress ITERATIONS CALLERS WINDOW [fallback]\n");
        return 2;
    }
    unsigned long iterations = strtoul(argv[1], NULL, 10);
    int callers = atoi(argv[2]);
    race_window_max = (unsigned)strtoul(argv[3], NULL, 10);
    long max_seconds = getenv("STRESS_MAX_SECONDS") ? atol(getenv("STRESS_MAX_SECONDS")) : 10;
    if (argc > 4)
        psu_membarrier_ready = 0;   /* before any thread: exercise the fallback */
    if (callers < 1 || callers > MAX_CALLERS)
        return 2;

    pthread_t threads[MAX_CALLERS], churner;
    for (int i = 0; i < callers; i++)
        pthread_create(&threads[i], NULL, caller, (void *)(uintptr_t)(i + 1));
    bool churning = getenv("STRESS_CHURN") && atoi(getenv("STRESS_CHURN"));
    if (churning)
        pthread_create(&churner, NULL, churn, NULL);

    rng_state = 12345;
    int current = 0;
    bool pending[VERSIONS] = { false };
    unsigned long reclaims = 0;
    pthread_mutex_lock(&psu_update_lock);
    /* Bounded by the iteration count, and by a time cap so a machine whose
     * cores are taken by something else still finishes (the test asserts
     * counts, never times).  Enough failures also end a run early. */
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    unsigned long it;
    for (it = 0; it < iterations; it++) {
        if (it % 64 == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - start.tv_sec >= max_seconds || atomic_load(&failures) >= 100)
                break;
        }
        /* Pace: at least one call completes between two switches, so the
         * callers are really racing the updater whatever the scheduler does
         * (bounded by iteration count, not by time). */
        unsigned long seen = atomic_load_explicit(&calls_made, memory_order_relaxed);
        while (atomic_load_explicit(&calls_made, memory_order_relaxed) == seen)
            sched_yield();
        int next = (int)(rng() % (VERSIONS - 1));
        if (next >= current)
            next++;
        /* Reload a reclaimed version: clear the mark before publishing it
         * (the exchange below releases it to every caller's acquire load). */
        atomic_store_explicit(&poisoned[next], 0, memory_order_relaxed);
        pending[next] = false;
        unsigned long stamp = it + 1;
        atomic_store_explicit(&switched_in[next], stamp, memory_order_relaxed);
        struct psu_switch_item item = {
            .fn = &work_record,
            .new_word = next == 0 ? PSU_EXECUTABLE_VERSION
                                  : psu_word((unsigned)next, (const void *)version_code[next]),
        };
        psu_switch(&item, 1);
        atomic_store_explicit(&switched_out[current], stamp, memory_order_relaxed);
        atomic_store_explicit(&epoch, stamp, memory_order_release);
        if (current != 0)
            pending[current] = true;
        current = next;
        if (rng() % 4 == 0)
            spin(rng() % 2000);
        /* The unload decision: reclaim what the scan says is idle. */
        for (int v = 1; v < VERSIONS; v++) {
            if (pending[v] && psu_active_calls((unsigned)v) == 0) {
                atomic_store_explicit(&poisoned[v], 1, memory_order_relaxed);
                pending[v] = false;
                reclaims++;
            }
        }
    }
    pthread_mutex_unlock(&psu_update_lock);
    atomic_store(&updater_done, 1);
    for (int i = 0; i < callers; i++)
        pthread_join(threads[i], NULL);
    if (churning)
        pthread_join(churner, NULL);

    /* Counts must be back at zero, and the module accounting consistent:
     * exactly the current version's module has one function. */
    unsigned long leftover = 0;
    for (unsigned v = 0; v < VERSIONS; v++)
        leftover += psu_active_calls(v);
    unsigned long accounting_errors = 0;
    for (int v = 0; v < VERSIONS; v++)
        if (psu_modules[v].functions_current != (v == current ? 1u : 0u))
            accounting_errors++;
    printf("switches=%lu calls=%lu reclaims=%lu failures=%lu leftover=%lu accounting_errors=%lu membarrier=%d stale=%lu fast=%lu churned=%lu hooks=%s stubs=%s\n",
           it, atomic_load(&calls_made), reclaims, atomic_load(&failures), leftover,
           accounting_errors, psu_membarrier_ready, atomic_load(&stale),
           atomic_load(&fast_counted), atomic_load(&churned),
           psu_entry_hooks_off() ? "off" : "on", psu_entry_stubs_off() ? "off" : "on");
    return 0;
}
