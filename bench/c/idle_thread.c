/* idle_thread.so - LD_PRELOAD: start one thread that only sleeps.
 *
 * A plain build run with it has what a DSU build adds besides its code: a
 * second thread (psu's update thread).  In a program that had only one,
 * glibc's stdio and malloc then stop taking their single-thread shortcuts
 * (locks and atomic operations where there were none), which
 * bench/example_throughput.py separates from the cost of psu's checks. */
#include <pthread.h>
#include <unistd.h>

static void *sleep_forever(void *unused)
{
    (void)unused;
    for (;;)
        pause();
    return NULL;
}

__attribute__((constructor)) static void start_idle_thread(void)
{
    pthread_t thread;
    pthread_create(&thread, NULL, sleep_forever, NULL);
}
