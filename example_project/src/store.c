/* store.c - the storage engine.
 *
 * A fixed array of KVD_NBUCKETS buckets; each bucket is an unbalanced binary
 * search tree ordered by strcmp on the key.  Buckets are guarded by
 * KVD_NSTRIPES striped pthread rwlocks.  Every tree operation is recursive.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

struct node {
    struct node *left;
    struct node *right;
    char *key;
    char *val;
    size_t klen;
    size_t vlen;
    unsigned long stamp;    /* store_put sequence number of the last write */
};

static struct node *buckets[KVD_NBUCKETS];
static pthread_rwlock_t stripes[KVD_NSTRIPES];
static unsigned long nkeys;          /* atomic */
static unsigned long evictions;      /* atomic */
static unsigned long put_stamp;      /* highest store_put sequence published */

/* FNV-1a; left direct by the updater if it wants (small static inline). */
static inline unsigned bucket_of(const char *key)
{
    unsigned h = 2166136261u;
    while (*key)
        h = (h ^ (unsigned char)*key++) * 16777619u;
    return h % KVD_NBUCKETS;
}

static pthread_rwlock_t *lock_of(unsigned b)
{
    return &stripes[b % KVD_NSTRIPES];
}

static char *dup_bytes(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static void publish_max(unsigned long *where, unsigned long seq)
{
    unsigned long cur = __atomic_load_n(where, __ATOMIC_RELAXED);
    while (cur < seq &&
           !__atomic_compare_exchange_n(where, &cur, seq, 1,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

static void node_free(struct node *n)
{
    free(n->key);
    free(n->val);
    free(n);
}

static void tree_free(struct node *n)
{
    if (!n)
        return;
    tree_free(n->left);
    tree_free(n->right);
    node_free(n);
}

/* *result: 1 added, 0 replaced, -1 out of memory */
static struct node *tree_insert(struct node *n, const char *key, size_t klen,
                                const char *val, size_t vlen,
                                unsigned long stamp, int *result)
{
    int c;
    if (!n) {
        n = calloc(1, sizeof *n);
        if (!n || !(n->key = dup_bytes(key, klen)) ||
            !(n->val = dup_bytes(val, vlen))) {
            if (n)
                node_free(n);
            *result = -1;
            return NULL;
        }
        n->klen = klen;
        n->vlen = vlen;
        n->stamp = stamp;
        *result = 1;
        return n;
    }
    c = strcmp(key, n->key);
    if (c < 0) {
        n->left = tree_insert(n->left, key, klen, val, vlen, stamp, result);
    } else if (c > 0) {
        n->right = tree_insert(n->right, key, klen, val, vlen, stamp, result);
    } else {
        char *v = dup_bytes(val, vlen);
        if (!v) {
            *result = -1;
            return n;
        }
        free(n->val);
        n->val = v;
        n->vlen = vlen;
        n->stamp = stamp;
        *result = 0;
    }
    return n;
}

static const struct node *tree_lookup(const struct node *n, const char *key)
{
    int c;
    if (!n)
        return NULL;
    c = strcmp(key, n->key);
    if (c == 0)
        return n;
    return tree_lookup(c < 0 ? n->left : n->right, key);
}

/* Unlinks the smallest node of the tree rooted at n into *min. */
static struct node *tree_detach_min(struct node *n, struct node **min)
{
    if (!n->left) {
        *min = n;
        return n->right;
    }
    n->left = tree_detach_min(n->left, min);
    return n;
}

static struct node *tree_delete(struct node *n, const char *key, int *deleted)
{
    int c;
    if (!n)
        return NULL;
    c = strcmp(key, n->key);
    if (c < 0) {
        n->left = tree_delete(n->left, key, deleted);
    } else if (c > 0) {
        n->right = tree_delete(n->right, key, deleted);
    } else {
        struct node *repl;
        *deleted = 1;
        if (!n->left) {
            repl = n->right;
        } else if (!n->right) {
            repl = n->left;
        } else {
            n->right = tree_detach_min(n->right, &repl);
            repl->left = n->left;
            repl->right = n->right;
        }
        node_free(n);
        return repl;
    }
    return n;
}

/* Visits every key starting with prefix; keys outside the prefix range
 * prune one side of the tree.  Order: node first, then children. */
static unsigned long tree_walk(const struct node *n, const char *prefix,
                               size_t plen, store_cb cb, void *ctx)
{
    unsigned long count = 0;
    int c;
    if (!n)
        return 0;
    c = strncmp(n->key, prefix, plen);
    if (c == 0) {
        cb(n->key, n->klen, n->val, n->vlen, ctx);
        count++;
    }
    if (c >= 0)
        count += tree_walk(n->left, prefix, plen, cb, ctx);
    if (c <= 0)
        count += tree_walk(n->right, prefix, plen, cb, ctx);
    return count;
}

static void tree_measure(const struct node *n, unsigned long depth,
                         struct scan_stats *acc)
{
    if (!n)
        return;
    acc->nodes++;
    acc->bytes += n->vlen;
    if (depth > acc->depth)
        acc->depth = depth;
    tree_measure(n->left, depth + 1, acc);
    tree_measure(n->right, depth + 1, acc);
}

void store_init(void)
{
    unsigned i;
    for (i = 0; i < KVD_NSTRIPES; i++)
        pthread_rwlock_init(&stripes[i], NULL);
    for (i = 0; i < KVD_NBUCKETS; i++)
        buckets[i] = NULL;
    nkeys = 0;
}

void store_destroy(void)
{
    unsigned i;
    for (i = 0; i < KVD_NBUCKETS; i++) {
        pthread_rwlock_wrlock(lock_of(i));
        tree_free(buckets[i]);
        buckets[i] = NULL;
        pthread_rwlock_unlock(lock_of(i));
    }
    for (i = 0; i < KVD_NSTRIPES; i++)
        pthread_rwlock_destroy(&stripes[i]);
}

int store_put(const char *key, const char *val, size_t vlen)
{
    static unsigned long puts_seen;
    unsigned long seq = __atomic_add_fetch(&puts_seen, 1, __ATOMIC_RELAXED);
    unsigned b = bucket_of(key);
    int result = -1;

    pthread_rwlock_wrlock(lock_of(b));
    buckets[b] = tree_insert(buckets[b], key, strlen(key), val, vlen, seq,
                             &result);
    pthread_rwlock_unlock(lock_of(b));
    if (result == 1)
        __atomic_add_fetch(&nkeys, 1, __ATOMIC_RELAXED);
    publish_max(&put_stamp, seq);
    return result;
}

int store_get(const char *key, char *out, size_t cap, size_t *vlen)
{
    unsigned b = bucket_of(key);
    const struct node *n;
    int found = 0;

    pthread_rwlock_rdlock(lock_of(b));
    n = tree_lookup(buckets[b], key);
    if (n && cap > 0) {
        size_t len = n->vlen < cap - 1 ? n->vlen : cap - 1;
        memcpy(out, n->val, len);
        out[len] = '\0';
        *vlen = len;
        found = 1;
    }
    pthread_rwlock_unlock(lock_of(b));
    return found;
}

int store_del(const char *key)
{
    unsigned b = bucket_of(key);
    int deleted = 0;

    pthread_rwlock_wrlock(lock_of(b));
    buckets[b] = tree_delete(buckets[b], key, &deleted);
    pthread_rwlock_unlock(lock_of(b));
    if (deleted)
        __atomic_sub_fetch(&nkeys, 1, __ATOMIC_RELAXED);
    return deleted;
}

unsigned long store_foreach(const char *prefix, store_cb cb, void *ctx)
{
    size_t plen = strlen(prefix);
    unsigned long count = 0;
    unsigned b;

    for (b = 0; b < KVD_NBUCKETS; b++) {
        pthread_rwlock_rdlock(lock_of(b));
        count += tree_walk(buckets[b], prefix, plen, cb, ctx);
        pthread_rwlock_unlock(lock_of(b));
    }
    return count;
}

unsigned long store_count(void)
{
    return __atomic_load_n(&nkeys, __ATOMIC_RELAXED);
}

unsigned long store_puts(void)
{
    return __atomic_load_n(&put_stamp, __ATOMIC_RELAXED);
}

unsigned long store_evictions(void)
{
    return __atomic_load_n(&evictions, __ATOMIC_RELAXED);
}

struct scan_stats store_scan(unsigned first, unsigned count)
{
    struct scan_stats acc;
    unsigned b;

    memset(&acc, 0, sizeof acc);
    for (b = first; b < first + count && b < KVD_NBUCKETS; b++) {
        pthread_rwlock_rdlock(lock_of(b));
        tree_measure(buckets[b], 1, &acc);
        pthread_rwlock_unlock(lock_of(b));
        acc.buckets++;
    }
    return acc;
}

int store_evict_one(unsigned b)
{
    struct node *min = NULL;

    if (b >= KVD_NBUCKETS)
        return 0;
    pthread_rwlock_wrlock(lock_of(b));
    if (buckets[b])
        buckets[b] = tree_detach_min(buckets[b], &min);
    pthread_rwlock_unlock(lock_of(b));
    if (!min)
        return 0;
    node_free(min);
    __atomic_sub_fetch(&nkeys, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&evictions, 1, __ATOMIC_RELAXED);
    return 1;
}
