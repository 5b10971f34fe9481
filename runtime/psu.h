/* psu.h - what a DSU program may call: the fast call path (psu_fast.h) and
 * pinning of bundle modules.
 *
 * A program only needs this header if it keeps pointers into a bundle's own
 * constant data or static helpers past an update (SPEC §2, documented limits):
 * it pins the module holding that address for as long as it keeps them.
 */
#ifndef PSU_H
#define PSU_H

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

#endif /* PSU_H */
