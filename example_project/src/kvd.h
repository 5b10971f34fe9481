/* kvd.h - limits and types shared by every part of kvd. */
#ifndef KVD_H
#define KVD_H

#include <stddef.h>

#define KVD_MAX_KEY     255   /* bytes, without the terminating NUL */
#define KVD_MAX_VALUE   255
#define KVD_MAX_LINE    1024  /* longest request line accepted */
#define KVD_NBUCKETS    256   /* fixed number of tree buckets */
#define KVD_NSTRIPES    16    /* rwlocks, bucket b uses lock b % KVD_NSTRIPES */

/* A value read from the store, returned by value (see engine_get). */
struct kv_value {
    int found;
    unsigned len;
    char data[KVD_MAX_VALUE + 1];
};

/* What one maintenance scan over some buckets found. */
struct scan_stats {
    unsigned long buckets;   /* buckets visited */
    unsigned long nodes;     /* keys seen */
    unsigned long depth;     /* deepest tree */
    unsigned long bytes;     /* payload bytes */
};

/* Counters reported by STATS. */
struct kvd_stats {
    unsigned long puts;
    unsigned long gets;
    unsigned long dels;
    unsigned long cycles;
    unsigned long slices;
    unsigned long evictions;
    unsigned long keys;
    struct scan_stats last_scan;
};

/* Called once per key by store_foreach, under the bucket's read lock:
 * the callback must not call back into the store. */
typedef void (*store_cb)(const char *key, size_t klen,
                         const char *val, size_t vlen, void *ctx);

/* A growable output buffer (protocol.c). */
struct kvbuf {
    char *data;
    size_t len;
    size_t cap;
};

#endif
