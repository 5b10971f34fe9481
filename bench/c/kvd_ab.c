/* kvd_ab - one load, two kvd servers, requests interleaved between them.
 *
 *   kvd_ab -a PORT_A -b PORT_B -t THREADS -d SECONDS [-k KEYSPACE] [-w WINDOW_MS]
 *
 * Each thread keeps one connection to each server and sends every request to
 * both, back to back, alternating which server goes first.  The two servers
 * therefore see the same requests at the same concurrency, at the same
 * moments: whatever the machine does to one (frequency, other tenants,
 * scheduling) it does to the other within microseconds, and it cancels in
 * the ratio.  By Little's law a closed loop at fixed concurrency has
 * throughput = concurrency / mean latency, so the ratio of mean latencies is
 * the ratio of throughputs.
 *
 * Both servers must run the same revision: the replies to SET and GET must
 * be identical, and a difference is counted as a mismatch.
 *
 * Output, one JSON line: per server the requests answered and their summed
 * latency in nanoseconds, the same per WINDOW_MS window (to judge the
 * spread), failures and mismatches.  Exit status 0 if nothing failed or
 * mismatched, 1 otherwise, 2 on usage.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kvclient.h"       /* example_project/tools: kv_connect, kv_request */

#define MAX_WINDOWS 4096
#define INFO_EVERY 8

struct tally {
    unsigned long requests;
    unsigned long latency_ns;
};

struct worker {
    pthread_t tid;
    int id;
    unsigned long failed, mismatched;
    struct tally total[2];
    struct tally (*windows)[2];
};

static int ports[2] = {-1, -1}, nthreads = 1, duration = 0, window_ms = 1000;
static long keyspace = 1000;
static unsigned long start_ns, end_ns;

static unsigned long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long)ts.tv_sec * 1000000000UL + (unsigned long)ts.tv_nsec;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct kv_conn c[2];
    unsigned long seed = 0x9e3779b97f4a7c15UL ^ ((unsigned long)w->id * 7919 + 1);
    unsigned long iter = 0, nkeys = (unsigned long)(keyspace / nthreads) + 1;
    char req[256], reply[2][512];
    int s;

    for (s = 0; s < 2; s++) {
        c[s].used = 0;
        c[s].fd = kv_connect(ports[s]);
        if (c[s].fd < 0) {
            fprintf(stderr, "kvd_ab: cannot connect to port %d: %s\n", ports[s], strerror(errno));
            w->failed++;
            return NULL;
        }
    }
    for (;;) {
        unsigned long t0 = now_ns(), key, window;
        int first = (int)(iter & 1), n;

        if (t0 >= end_ns)
            break;
        iter++;
        key = (kv_xorshift(&seed) % nkeys) * (unsigned long)nthreads + (unsigned long)w->id;
        if (iter % INFO_EVERY == 0)
            n = snprintf(req, sizeof req, "INFO\n");
        else if (kv_xorshift(&seed) & 1)
            n = snprintf(req, sizeof req, "SET ab%lu v%d.%lu\n", key, w->id, iter);
        else
            n = snprintf(req, sizeof req, "GET ab%lu\n", key);
        window = (t0 - start_ns) / ((unsigned long)window_ms * 1000000UL);
        if (window >= MAX_WINDOWS)
            window = MAX_WINDOWS - 1;
        for (s = first; s < first + 2; s++) {
            int server = s & 1;
            unsigned long t1 = now_ns(), dt;
            if (kv_request(&c[server], req, reply[server], sizeof reply[server]) != 0) {
                fprintf(stderr, "kvd_ab: port %d: request failed\n", ports[server]);
                w->failed++;
                goto out;
            }
            dt = now_ns() - t1;
            w->total[server].requests++;
            w->total[server].latency_ns += dt;
            w->windows[window][server].requests++;
            w->windows[window][server].latency_ns += dt;
        }
        if (req[0] != 'I' && strcmp(reply[0], reply[1]) != 0) {
            if (w->mismatched++ < 5)
                fprintf(stderr, "kvd_ab: %.*s: '%s' from port %d, '%s' from port %d\n",
                        n - 1, req, reply[0], ports[0], reply[1], ports[1]);
        }
    }
out:
    for (s = 0; s < 2; s++)
        close(c[s].fd);
    return NULL;
}

static void usage(void)
{
    fputs("usage: kvd_ab -a PORT_A -b PORT_B -t THREADS -d SECONDS [-k KEYSPACE] "
          "[-w WINDOW_MS]\n", stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    struct worker *ws;
    struct tally total[2] = {{0, 0}, {0, 0}};
    unsigned long failed = 0, mismatched = 0, nwindows;
    int i, t, s;

    for (i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "-a") == 0)
            ports[0] = (int)kv_arg_num(argv[++i], 1, 65535, usage);
        else if (strcmp(argv[i], "-b") == 0)
            ports[1] = (int)kv_arg_num(argv[++i], 1, 65535, usage);
        else if (strcmp(argv[i], "-t") == 0)
            nthreads = (int)kv_arg_num(argv[++i], 1, 64, usage);
        else if (strcmp(argv[i], "-d") == 0)
            duration = (int)kv_arg_num(argv[++i], 1, 3600, usage);
        else if (strcmp(argv[i], "-k") == 0)
            keyspace = kv_arg_num(argv[++i], 1, 10000000, usage);
        else if (strcmp(argv[i], "-w") == 0)
            window_ms = (int)kv_arg_num(argv[++i], 10, 3600000, usage);
        else
            usage();
    }
    if (ports[0] < 0 || ports[1] < 0 || duration <= 0)
        usage();
    signal(SIGPIPE, SIG_IGN);
    nwindows = ((unsigned long)duration * 1000UL + (unsigned long)window_ms - 1) / (unsigned long)window_ms;
    if (nwindows > MAX_WINDOWS)
        nwindows = MAX_WINDOWS;

    ws = calloc((size_t)nthreads, sizeof *ws);
    if (!ws)
        return 2;
    start_ns = now_ns();
    end_ns = start_ns + (unsigned long)duration * 1000000000UL;
    for (t = 0; t < nthreads; t++) {
        ws[t].id = t;
        ws[t].windows = calloc(MAX_WINDOWS, sizeof *ws[t].windows);
        if (!ws[t].windows || pthread_create(&ws[t].tid, NULL, worker_main, &ws[t]) != 0) {
            fputs("kvd_ab: cannot start a thread\n", stderr);
            return 2;
        }
    }
    for (t = 0; t < nthreads; t++) {
        pthread_join(ws[t].tid, NULL);
        failed += ws[t].failed;
        mismatched += ws[t].mismatched;
        for (s = 0; s < 2; s++) {
            total[s].requests += ws[t].total[s].requests;
            total[s].latency_ns += ws[t].total[s].latency_ns;
        }
    }
    printf("{\"threads\":%d,\"seconds\":%d,\"failed\":%lu,\"mismatched\":%lu", nthreads,
           duration, failed, mismatched);
    for (s = 0; s < 2; s++)
        printf(",\"%c\":{\"port\":%d,\"requests\":%lu,\"latency_ns\":%lu}", "ab"[s], ports[s],
               total[s].requests, total[s].latency_ns);
    printf(",\"window_ms\":%d,\"windows\":[", window_ms);
    for (i = 0; i < (int)nwindows; i++) {
        struct tally wt[2] = {{0, 0}, {0, 0}};
        for (t = 0; t < nthreads; t++)
            for (s = 0; s < 2; s++) {
                wt[s].requests += ws[t].windows[i][s].requests;
                wt[s].latency_ns += ws[t].windows[i][s].latency_ns;
            }
        printf("%s[%lu,%lu,%lu,%lu]", i ? "," : "", wt[0].requests, wt[0].latency_ns,
               wt[1].requests, wt[1].latency_ns);
    }
    printf("]}\n");
    for (t = 0; t < nthreads; t++)
        free(ws[t].windows);
    free(ws);
    return failed || mismatched ? 1 : 0;
}
