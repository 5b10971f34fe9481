/* psu.h - what a DSU program may call: the fast call path (psu_fast.h) and
 * pinning of bundle modules, shadow data.
 *
 * A program only needs this header if it keeps pointers into a bundle's own
 * constant data or static helpers past an update (SPEC §2, documented limits):
 * it pins the module holding that address for as long as it keeps them.
 */
#ifndef PSU_H
#define PSU_H

#include <stddef.h>

#include "psu_fast.h"

/* Pins the bundle code module that contains `addr`, so it is not unloaded
 * until a matching psu_unpin().  Returns the module index pinned (1..255), 0
 * when `addr` is in no unloadable module (the executable, a library, a state
 * object: nothing to pin), or -1 when that module is already being unloaded
 * (the caller held a dangling address).  Takes psu_module_lock briefly;
 * never blocks on an update in progress. */
int psu_pin(const void *addr);

/* Undoes one psu_pin(addr).  Returns the module index, 0 when `addr` is in no
 * unloadable module, -1 when that module has no pin to release. */
int psu_unpin(const void *addr);

/* Shadow data (as kpatch's shadow variables): a patch that needs a new field
 * in objects that already exist attaches it beside them, keyed by the
 * object's address and an id the patch chooses, instead of changing their
 * layout.  The data lives in the runtime, not in a bundle: it survives the
 * unloading of the bundle that attached it, and a later bundle finds it.
 * Thread-safe (a readers-writer lock; keep the pointer on hot paths).  Free a
 * shadow before its object is freed, or its address reused finds it again. */

/* The shadow `id` of `obj`, or NULL if none is attached. */
void *psu_shadow_get(const void *obj, unsigned long id);

/* The shadow `id` of `obj`: the one attached already, else `size` new zeroed
 * bytes attached now.  NULL when out of memory, or when the attached one has
 * another size. */
void *psu_shadow_alloc(const void *obj, unsigned long id, size_t size);

/* Detaches and frees the shadow `id` of `obj` (nothing if none). */
void psu_shadow_free(const void *obj, unsigned long id);

#endif /* PSU_H */
