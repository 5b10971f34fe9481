/* engine.h - command execution layer over the store, and maintenance. */
#ifndef KVD_ENGINE_H
#define KVD_ENGINE_H

#include "kvd.h"

void engine_init(int batch, unsigned long max_keys, int verbose);
int engine_set(const char *key, const char *val);
struct kv_value engine_get(const char *key);
int engine_del(const char *key);
unsigned long engine_keys(const char *prefix, store_cb cb, void *ctx);
unsigned long engine_key_count(void);
struct kvd_stats engine_stats(void);
/* One maintenance pass over all buckets, in slices with short pauses
 * (no pauses in batch mode). Called in a loop by the maintenance thread. */
void maintenance_cycle(void);

#endif
