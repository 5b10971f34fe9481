/* store.h - the storage engine: KVD_NBUCKETS unbalanced binary search trees
 * guarded by KVD_NSTRIPES striped rwlocks. */
#ifndef KVD_STORE_H
#define KVD_STORE_H

#include "kvd.h"

void store_init(void);
void store_destroy(void);
/* 1 = key added, 0 = value replaced, -1 = out of memory / bad input */
int store_put(const char *key, const char *val, size_t vlen);
/* 1 = found (value copied, NUL-terminated, *vlen set), 0 = not found */
int store_get(const char *key, char *out, size_t cap, size_t *vlen);
/* 1 = deleted, 0 = not found */
int store_del(const char *key);
/* calls cb for every key starting with prefix; returns how many */
unsigned long store_foreach(const char *prefix, store_cb cb, void *ctx);
unsigned long store_count(void);
/* total number of store_put calls ever made */
unsigned long store_puts(void);
unsigned long store_evictions(void);
/* scan buckets [first, first + count) */
struct scan_stats store_scan(unsigned first, unsigned count);
/* removes the smallest key of bucket b; returns 1 if one was removed */
int store_evict_one(unsigned b);

#endif
