/* psu_shadow.c - shadow data: fields a patch attaches to existing objects
 * (psu.h).  A fixed table of hash chains keyed by (object address, id),
 * guarded by one readers-writer lock; entries are malloc'ed by the runtime, so
 * they outlive the bundle whose code attached them.
 *
 * psu_shadow_lock: taken for reading by psu_shadow_get, for writing by
 * psu_shadow_alloc and psu_shadow_free; held only inside those functions,
 * never across a call out of this file.  No atomics: every access to the
 * table is under the lock. */
#define _GNU_SOURCE     /* pthread_rwlock_t under a strict -std (Lua builds with -std=c99) */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "psu.h"

#define PSU_SHADOW_BUCKETS 4096u

struct psu_shadow {
    struct psu_shadow *next;     /* chain of one bucket */
    const void *obj;
    unsigned long id;
    size_t size;
    /* what the patch sees, aligned for any object (max_align_t is C11, and the
       runtime compiles with the program's -std, C99 for Lua) */
    union { long double ld; long long ll; void *p; void (*fn)(void); } data[];
};

static pthread_rwlock_t psu_shadow_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct psu_shadow *psu_shadow_table[PSU_SHADOW_BUCKETS];

static unsigned psu_shadow_bucket(const void *obj, unsigned long id)
{
    uint64_t key = (uint64_t)(uintptr_t)obj ^ ((uint64_t)id * 0x9e3779b97f4a7c15u);
    key ^= key >> 29;
    key *= 0xbf58476d1ce4e5b9u;
    key ^= key >> 32;
    return (unsigned)(key % PSU_SHADOW_BUCKETS);
}

/* Caller holds psu_shadow_lock (either way). */
static struct psu_shadow **psu_shadow_find(const void *obj, unsigned long id)
{
    struct psu_shadow **link = &psu_shadow_table[psu_shadow_bucket(obj, id)];
    while (*link != NULL && !((*link)->obj == obj && (*link)->id == id))
        link = &(*link)->next;
    return link;
}

void *psu_shadow_get(const void *obj, unsigned long id)
{
    pthread_rwlock_rdlock(&psu_shadow_lock);
    struct psu_shadow *found = *psu_shadow_find(obj, id);
    pthread_rwlock_unlock(&psu_shadow_lock);
    return found != NULL ? found->data : NULL;
}

void *psu_shadow_alloc(const void *obj, unsigned long id, size_t size)
{
    pthread_rwlock_wrlock(&psu_shadow_lock);
    struct psu_shadow **link = psu_shadow_find(obj, id);
    void *data = NULL;
    if (*link != NULL) {
        if ((*link)->size == size)
            data = (*link)->data;
    } else {
        struct psu_shadow *created = calloc(1, sizeof *created + size);
        if (created != NULL) {
            created->obj = obj;
            created->id = id;
            created->size = size;
            *link = created;
            data = created->data;
        }
    }
    pthread_rwlock_unlock(&psu_shadow_lock);
    return data;
}

void psu_shadow_free(const void *obj, unsigned long id)
{
    pthread_rwlock_wrlock(&psu_shadow_lock);
    struct psu_shadow **link = psu_shadow_find(obj, id);
    struct psu_shadow *found = *link;
    if (found != NULL)
        *link = found->next;
    pthread_rwlock_unlock(&psu_shadow_lock);
    free(found);
}
