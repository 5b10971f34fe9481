/* kvload - load generator for kvd.
 *
 *   kvload -p PORT -t THREADS -d SECONDS [-k KEYSPACE] [--interval MS]
 *
 * Each thread keeps one connection to 127.0.0.1:PORT and loops over SET/GET
 * on the keys it owns (key space partitioned between threads, key names
 * unique to this run), verifying every value it reads back, plus an INFO
 * every few requests whose version word ("v1", "v2", ...) is counted.
 * Every --interval ms one JSON line goes to stdout:
 *   {"t":S,"ok":N,"failed":N,"rps":R,"versions":{"v1":N,...}}
 * (ok, failed and versions cumulative, rps over the last interval), and at
 * the end one line with "final":true, the totals and latency percentiles in
 * microseconds.  Exit status 0 if nothing failed, 1 otherwise, 2 on usage.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kvclient.h"

#define INFO_EVERY   8
#define MAX_VERSIONS 16
#define LAT_FINE     65536              /* 1 us buckets below 65.536 ms */
#define LAT_COARSE   4096               /* then 1 ms buckets up to ~4.2 s */

struct worker {
    pthread_t tid;
    int id;
    unsigned long ok;          /* atomic */
    unsigned long failed;      /* atomic */
    unsigned long wrong;       /* wrong replies */
    unsigned long connerr;     /* connection errors */
    unsigned long timeouts;
    unsigned long lat_max;
    unsigned *fine;            /* latency histogram */
    unsigned *coarse;
    unsigned overflow;
    char (*expect)[64];        /* last value set per owned key, "" = none */
    unsigned nkeys;
};

static int port = -1, nthreads = 1, duration = 0, interval_ms = 500;
static long keyspace = 1000;
static int stop;                                /* atomic */
static pthread_mutex_t ver_lock = PTHREAD_MUTEX_INITIALIZER;
static char ver_name[MAX_VERSIONS][16];
static unsigned long ver_count[MAX_VERSIONS];
static int nver;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long)ts.tv_sec * 1000000UL + (unsigned long)ts.tv_nsec / 1000;
}

static void count_version(const char *v)
{
    int i;
    pthread_mutex_lock(&ver_lock);
    for (i = 0; i < nver; i++)
        if (strcmp(ver_name[i], v) == 0)
            break;
    if (i == nver && nver < MAX_VERSIONS) {
        snprintf(ver_name[i], sizeof ver_name[i], "%s", v);
        nver++;
    }
    if (i < nver)
        ver_count[i]++;
    pthread_mutex_unlock(&ver_lock);
}

static void print_versions(void)
{
    int i;
    pthread_mutex_lock(&ver_lock);
    printf("\"versions\":{");
    for (i = 0; i < nver; i++)
        printf("%s\"%s\":%lu", i ? "," : "", ver_name[i], ver_count[i]);
    printf("}");
    pthread_mutex_unlock(&ver_lock);
}

static void record_latency(struct worker *w, unsigned long us)
{
    if (us > w->lat_max)
        w->lat_max = us;
    if (us < LAT_FINE)
        w->fine[us]++;
    else if (us / 1000 < LAT_COARSE)
        w->coarse[us / 1000]++;
    else
        w->overflow++;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct kv_conn c;
    unsigned long seed = 0x9e3779b97f4a7c15UL ^ ((unsigned long)w->id * 7919 + 1);
    unsigned long iter = 0;
    char req[512], reply[512], key[64];
    pid_t pid = getpid();

    c.fd = -1;
    c.used = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        unsigned long t0, j;
        const char *what;
        int rc, good, is_info = 0, is_set = 0;

        if (c.fd < 0) {
            c.fd = kv_connect(port);
            c.used = 0;
            if (c.fd < 0) {
                w->connerr++;
                __atomic_add_fetch(&w->failed, 1, __ATOMIC_RELAXED);
                usleep(100000);
                continue;
            }
        }
        iter++;
        j = kv_xorshift(&seed) % w->nkeys;
        /* key j of this thread: global index j * nthreads + id */
        snprintf(key, sizeof key, "kl%d.%lu", (int)pid,
                 j * (unsigned long)nthreads + (unsigned long)w->id);
        if (iter % INFO_EVERY == 0) {
            is_info = 1;
            snprintf(req, sizeof req, "INFO\n");
        } else if (w->expect[j][0] == '\0' || (kv_xorshift(&seed) & 1)) {
            is_set = 1;
            snprintf(req, sizeof req, "SET %s v%d.%lu\n", key, w->id, iter);
        } else {
            snprintf(req, sizeof req, "GET %s\n", key);
        }
        t0 = now_us();
        rc = kv_request(&c, req, reply, sizeof reply);
        if (rc != 0) {
            if (rc == -2)
                w->timeouts++;
            else
                w->connerr++;
            __atomic_add_fetch(&w->failed, 1, __ATOMIC_RELAXED);
            if (is_set)
                w->expect[j][0] = '\0';   /* unknown now: SET it again */
            close(c.fd);
            c.fd = -1;
            continue;
        }
        record_latency(w, now_us() - t0);
        if (is_info) {
            char ver[16];
            good = sscanf(reply, "INFO kvd %15s", ver) == 1;
            if (good)
                count_version(ver);
            what = "INFO";
        } else if (is_set) {
            good = strcmp(reply, "OK") == 0;
            if (good)
                snprintf(w->expect[j], sizeof w->expect[j], "v%d.%lu",
                         w->id, iter);
            what = "SET";
        } else {
            good = strncmp(reply, "VALUE ", 6) == 0 &&
                   strcmp(reply + 6, w->expect[j]) == 0;
            what = "GET";
        }
        if (good) {
            __atomic_add_fetch(&w->ok, 1, __ATOMIC_RELAXED);
        } else {
            w->wrong++;
            __atomic_add_fetch(&w->failed, 1, __ATOMIC_RELAXED);
            if (w->wrong <= 5)
                fprintf(stderr, "kvload: thread %d: %s %s: unexpected reply "
                        "'%s' (expected %s)\n", w->id, what, key, reply,
                        is_set ? "OK" : is_info ? "INFO kvd ..." : w->expect[j]);
        }
    }
    if (c.fd >= 0) {
        send(c.fd, "QUIT\n", 5, MSG_NOSIGNAL);
        close(c.fd);
    }
    return NULL;
}

static void usage(void)
{
    fputs("usage: kvload -p PORT -t THREADS -d SECONDS [-k KEYSPACE] "
          "[--interval MS]\n", stderr);
    exit(2);
}

static unsigned long percentile(struct worker *ws, unsigned long total,
                                double q)
{
    unsigned long want = (unsigned long)(q * (double)total), seen = 0;
    unsigned long i, maxv = 0;
    int t;

    if (total == 0)
        return 0;
    if (want >= total)
        want = total - 1;
    for (i = 0; i < LAT_FINE; i++) {
        for (t = 0; t < nthreads; t++)
            seen += ws[t].fine[i];
        if (seen > want)
            return i;
    }
    for (i = 0; i < LAT_COARSE; i++) {
        for (t = 0; t < nthreads; t++)
            seen += ws[t].coarse[i];
        if (seen > want)
            return i * 1000 + 999;
    }
    for (t = 0; t < nthreads; t++)
        if (ws[t].lat_max > maxv)
            maxv = ws[t].lat_max;
    return maxv;
}

int main(int argc, char **argv)
{
    struct worker *ws;
    double start, last, end;
    unsigned long last_ok = 0, ok, failed, samples = 0, maxlat = 0;
    unsigned long wrong = 0, connerr = 0, timeouts = 0;
    int i, t;

    for (i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "-p") == 0)
            port = (int)kv_arg_num(argv[++i], 1, 65535, usage);
        else if (strcmp(argv[i], "-t") == 0)
            nthreads = (int)kv_arg_num(argv[++i], 1, 256, usage);
        else if (strcmp(argv[i], "-d") == 0)
            duration = (int)kv_arg_num(argv[++i], 1, 86400, usage);
        else if (strcmp(argv[i], "-k") == 0)
            keyspace = kv_arg_num(argv[++i], 1, 100000000, usage);
        else if (strcmp(argv[i], "--interval") == 0)
            interval_ms = (int)kv_arg_num(argv[++i], 10, 3600000, usage);
        else
            usage();
    }
    if (port < 0 || duration <= 0)
        usage();
    signal(SIGPIPE, SIG_IGN);

    ws = calloc((size_t)nthreads, sizeof *ws);
    if (!ws)
        return 2;
    for (t = 0; t < nthreads; t++) {
        ws[t].id = t;
        ws[t].nkeys = (unsigned)((keyspace + nthreads - 1 - t) / nthreads);
        if (ws[t].nkeys == 0)
            ws[t].nkeys = 1;
        ws[t].fine = calloc(LAT_FINE, sizeof *ws[t].fine);
        ws[t].coarse = calloc(LAT_COARSE, sizeof *ws[t].coarse);
        ws[t].expect = calloc(ws[t].nkeys, sizeof *ws[t].expect);
        if (!ws[t].fine || !ws[t].coarse || !ws[t].expect)
            return 2;
    }
    start = last = now_s();
    for (t = 0; t < nthreads; t++)
        if (pthread_create(&ws[t].tid, NULL, worker_main, &ws[t]) != 0) {
            fputs("kvload: cannot create thread\n", stderr);
            return 2;
        }

    end = start + duration;
    for (;;) {
        double now = now_s(), next = last + interval_ms / 1000.0;
        double wait = (next < end ? next : end) - now;
        if (wait > 0) {
            struct timespec ts;
            ts.tv_sec = (time_t)wait;
            ts.tv_nsec = (long)((wait - (double)ts.tv_sec) * 1e9);
            nanosleep(&ts, NULL);
        }
        now = now_s();
        if (now >= end)
            break;
        ok = failed = 0;
        for (t = 0; t < nthreads; t++) {
            ok += __atomic_load_n(&ws[t].ok, __ATOMIC_RELAXED);
            failed += __atomic_load_n(&ws[t].failed, __ATOMIC_RELAXED);
        }
        printf("{\"t\":%.3f,\"ok\":%lu,\"failed\":%lu,\"rps\":%.1f,",
               now - start, ok, failed,
               (double)(ok - last_ok) / (now - last));
        print_versions();
        printf("}\n");
        fflush(stdout);
        last_ok = ok;
        last = now;
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (t = 0; t < nthreads; t++)
        pthread_join(ws[t].tid, NULL);
    end = now_s();

    ok = failed = 0;
    for (t = 0; t < nthreads; t++) {
        unsigned long k;
        ok += ws[t].ok;
        failed += ws[t].failed;
        wrong += ws[t].wrong;
        connerr += ws[t].connerr;
        timeouts += ws[t].timeouts;
        if (ws[t].lat_max > maxlat)
            maxlat = ws[t].lat_max;
        for (k = 0; k < LAT_FINE; k++)
            samples += ws[t].fine[k];
        for (k = 0; k < LAT_COARSE; k++)
            samples += ws[t].coarse[k];
        samples += ws[t].overflow;
    }
    printf("{\"final\":true,\"t\":%.3f,\"threads\":%d,\"ok\":%lu,"
           "\"failed\":%lu,\"wrong\":%lu,\"conn_errors\":%lu,"
           "\"timeouts\":%lu,\"rps\":%.1f,",
           end - start, nthreads, ok, failed, wrong, connerr, timeouts,
           (double)ok / (end - start));
    print_versions();
    printf(",\"latency_us\":{\"p50\":%lu,\"p99\":%lu,\"p999\":%lu,"
           "\"max\":%lu}}\n",
           percentile(ws, samples, 0.50), percentile(ws, samples, 0.99),
           percentile(ws, samples, 0.999), maxlat);
    fflush(stdout);
    for (t = 0; t < nthreads; t++) {
        free(ws[t].fine);
        free(ws[t].coarse);
        free(ws[t].expect);
    }
    free(ws);
    return failed ? 1 : 0;
}
