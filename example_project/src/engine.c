/* engine.c - command execution layer over the store, and the maintenance
 * cycle run in a loop by the maintenance thread (see main.c). */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "store.h"

#define MAINT_SLICE     32      /* buckets scanned per slice */
#define MAINT_PAUSE_MS  8       /* pause between slices */

static int batch_mode;
static int verbose;
static unsigned long max_keys;          /* 0 = unlimited */
static unsigned long gets_total;        /* atomic */
static unsigned long dels_total;        /* atomic */
static unsigned long cycles;            /* atomic; written by maintenance */
static unsigned long slices_published;  /* atomic; written by maintenance */
static struct scan_stats last_scan;     /* guarded by scan_lock */
static pthread_mutex_t scan_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_msg(const char *fmt, ...)
{
    va_list ap;
    if (!verbose)
        return;
    flockfile(stderr);
    fputs("kvd: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    funlockfile(stderr);
}

static void pause_ms(long ms)
{
    struct timespec ts;
    if (batch_mode || ms <= 0)
        return;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static struct scan_stats scan_merge(struct scan_stats a, struct scan_stats b)
{
    a.buckets += b.buckets;
    a.nodes += b.nodes;
    a.bytes += b.bytes;
    if (b.depth > a.depth)
        a.depth = b.depth;
    return a;
}

/* Evicts from the buckets of one slice while the store is over its limit. */
static unsigned long enforce_limit(unsigned first, unsigned count)
{
    unsigned long evicted = 0;
    unsigned b;
    if (max_keys == 0)
        return 0;
    for (b = first; b < first + count && store_count() > max_keys; b++)
        evicted += (unsigned long)store_evict_one(b);
    return evicted;
}

static int valid_token(const char *s, size_t max)
{
    size_t n = 0;
    for (; *s; s++, n++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 127)
            return 0;
    return n > 0 && n <= max;
}

void engine_init(int batch, unsigned long maxk, int verb)
{
    batch_mode = batch;
    max_keys = maxk;
    verbose = verb;
    memset(&last_scan, 0, sizeof last_scan);
    log_msg("engine ready (batch=%d, max_keys=%lu)", batch, maxk);
}

int engine_set(const char *key, const char *val)
{
    if (!valid_token(key, KVD_MAX_KEY) || !valid_token(val, KVD_MAX_VALUE))
        return -1;
    return store_put(key, val, strlen(val)) < 0 ? -1 : 0;
}

struct kv_value engine_get(const char *key)
{
    struct kv_value v;
    size_t len = 0;

    __atomic_add_fetch(&gets_total, 1, __ATOMIC_RELAXED);
    v.found = store_get(key, v.data, sizeof v.data, &len);
    v.len = (unsigned)len;
    if (!v.found) {
        v.len = 0;
        v.data[0] = '\0';
    }
    return v;
}

int engine_del(const char *key)
{
    __atomic_add_fetch(&dels_total, 1, __ATOMIC_RELAXED);
    return store_del(key);
}

unsigned long engine_keys(const char *prefix, store_cb cb, void *ctx)
{
    return store_foreach(prefix, cb, ctx);
}

unsigned long engine_key_count(void)
{
    return store_count();
}

struct kvd_stats engine_stats(void)
{
    struct kvd_stats s;

    s.puts = store_puts();
    s.gets = __atomic_load_n(&gets_total, __ATOMIC_RELAXED);
    s.dels = __atomic_load_n(&dels_total, __ATOMIC_RELAXED);
    s.cycles = __atomic_load_n(&cycles, __ATOMIC_RELAXED);
    s.slices = __atomic_load_n(&slices_published, __ATOMIC_RELAXED);
    s.evictions = store_evictions();
    s.keys = store_count();
    pthread_mutex_lock(&scan_lock);
    s.last_scan = last_scan;
    pthread_mutex_unlock(&scan_lock);
    return s;
}

void maintenance_cycle(void)
{
    static unsigned long slices_done;
    struct scan_stats total;
    unsigned long evicted = 0;
    unsigned b;

    memset(&total, 0, sizeof total);
    for (b = 0; b < KVD_NBUCKETS; b += MAINT_SLICE) {
        evicted += enforce_limit(b, MAINT_SLICE);
        total = scan_merge(total, store_scan(b, MAINT_SLICE));
        slices_done++;
        __atomic_store_n(&slices_published, slices_done, __ATOMIC_RELAXED);
        pause_ms(MAINT_PAUSE_MS);
    }
    pthread_mutex_lock(&scan_lock);
    last_scan = total;
    pthread_mutex_unlock(&scan_lock);
    __atomic_add_fetch(&cycles, 1, __ATOMIC_RELAXED);
    if (evicted)
        log_msg("maintenance: evicted %lu keys, %lu left", evicted,
                store_count());
}
