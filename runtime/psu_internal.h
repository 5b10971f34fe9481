/* psu_internal.h - what the runtime's .c files (and the runtime stress test)
 * share: the executable's identity, the thread registry, the function table,
 * the module table, the switch and the unload decision.
 *
 * Locks, always taken in this order (never the reverse):
 *   psu_update_lock   serialises updates: apply, rollback, the unload scan,
 *                     the history, the bundle records, the current version.
 *                     Held only by the update thread (and fork's prepare).
 *   psu_module_lock   the module table's fields (state, counts, pins, ranges)
 *                     and the index free list.  Held briefly; application
 *                     threads take it in psu_pin/psu_unpin.
 *   psu_client_lock   the update thread's open client connections (so a
 *                     fork child can close every one).  Held by the update
 *                     thread around accept and close, and by fork's prepare.
 * Thread registration takes no lock (a signal handler may register).
 * No lock is ever held across a DSU call or on the fast path.
 */
#ifndef PSU_INTERNAL_H
#define PSU_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "psu.h"

#define PSU_HIDDEN __attribute__((visibility("hidden")))

/* Defined by the generated code of every DSU executable (and by the tests). */
extern const char psu_build_id[];       /* 64 hex digits */
extern const char psu_program_name[];
extern const char psu_version_label[];

#define PSU_BUILD_ID_LEN 64

/* ---- errors ---------------------------------------------------------- */

/* Unrecoverable internal error: prints file:function:line, what failed and
 * strerror(err), then aborts. */
#define psu_die(err, what) psu_die_at(__FILE__, __func__, __LINE__, (err), (what))
PSU_HIDDEN _Noreturn void psu_die_at(const char *file, const char *func, int line,
                                     int err, const char *what);

/* One line on stderr, prefixed "psu[pid]: ", unless PSU_QUIET=1. */
PSU_HIDDEN void psu_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Why an update was refused: class is one of the protocol's error classes
 * (docs/control-protocol.md), message the precise reason. */
struct psu_error {
    const char *class;
    char message[768];
};
PSU_HIDDEN void psu_error_set(struct psu_error *err, const char *class, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- locks (see the order above) -------------------------------------- */

extern PSU_HIDDEN pthread_mutex_t psu_update_lock;
extern PSU_HIDDEN pthread_mutex_t psu_module_lock;
extern PSU_HIDDEN pthread_mutex_t psu_client_lock;
PSU_HIDDEN void psu_lock(pthread_mutex_t *m);
PSU_HIDDEN void psu_unlock(pthread_mutex_t *m);

/* ---- thread registry (psu_runtime.c) ---------------------------------- */

/* Sum over every thread record of calls[index] (acquire loads; pair with the
 * release decrements in psu_leave, psu_enter's retry and the longjmp
 * release); records of exited threads holding a count are reclaimed first.
 * Only meaningful after the barrier of the last switch away from `index`.
 * Locks: none (callers may hold update and module locks). */
PSU_HIDDEN unsigned long psu_active_calls(unsigned index);
/* Number of live threads with a record (exited ones are reclaimed first). */
PSU_HIDDEN unsigned psu_registered_threads(void);

/* ---- function table (psu_runtime.c) ----------------------------------- */

/* Name -> record.  Written by the update thread under psu_update_lock (and by
 * the constructor before it exists); read under psu_update_lock. */
PSU_HIDDEN struct psu_function *psu_function_lookup(const char *name);
PSU_HIDDEN bool psu_function_table_add(struct psu_function *fn);
/* Calls `visit` with the name of each function whose current version is in
 * module `module` (psu_update_lock held). */
PSU_HIDDEN void psu_functions_in_module(unsigned module, void (*visit)(const char *name, void *arg),
                                        void *arg);

/* ---- modules (psu_runtime.c) ------------------------------------------ */

enum psu_module_state {
    PSU_MODULE_FREE,            /* index unused */
    PSU_MODULE_CURRENT,         /* some function current in it, or pinned */
    PSU_MODULE_PENDING,         /* no function current, no pin: unload when idle */
    PSU_MODULE_UNLOADING,       /* decided: dlclose in progress */
};

struct psu_bundle;

/* One loaded unit of code.  Every field is written under psu_module_lock
 * (by the update thread, and pins by psu_pin/psu_unpin callers) and read
 * under psu_module_lock. */
struct psu_module {
    unsigned index;                 /* 0 = the executable */
    enum psu_module_state state;
    struct psu_bundle *bundle;      /* NULL for the executable */
    void *handle;                   /* dlopen handle; NULL for the executable */
    int fd;                         /* memfd the object was loaded from, -1 */
    uintptr_t lo, hi;               /* mapped address range [lo, hi) */
    unsigned long functions_current; /* slots whose word names this index */
    unsigned long pins;             /* psu_pin count */
};

extern PSU_HIDDEN struct psu_module psu_modules[PSU_MAX_MODULES];
/* Modules unloaded since start (psu_module_lock). */
extern PSU_HIDDEN unsigned long psu_modules_unloaded;

/* Takes a free index 1..255 for a freshly dlopened code object (loaded from
 * memfd `fd`) and computes its address range.  On success the module owns
 * handle and fd.  Returns -1 when none is free.  Takes psu_module_lock. */
PSU_HIDDEN int psu_module_alloc(struct psu_bundle *bundle, void *handle, int fd);
/* Gives back an index taken by psu_module_alloc that never received a
 * function (a refused update): dlcloses its object, closes its fd.
 * Takes psu_module_lock. */
PSU_HIDDEN void psu_module_release_unused(int index);

/* One slot exchange of a switch. */
struct psu_switch_item {
    struct psu_function *fn;
    uintptr_t new_word;     /* psu_word(index, code) */
    uintptr_t old_word;     /* filled in by psu_switch */
};

/* Exchanges every slot of the batch (seq_cst), then issues ONE barrier
 * (membarrier, or a seq_cst fence in the fallback) covering the batch, then
 * moves the per-module function counts.  Returns with every slot switched
 * and every later psu_active_calls() of an old index meaningful.
 * Locks: caller holds psu_update_lock; takes psu_module_lock. */
PSU_HIDDEN void psu_switch(struct psu_switch_item *items, size_t n);

/* Why entry hooks are off (psu_runtime.c, "Entry hooks"), or NULL: on. */
PSU_HIDDEN const char *psu_entry_hooks_off(void);
/* NULL while hooks jump to stubs (psu_runtime.c, "entry stubs"), else why not. */
PSU_HIDDEN const char *psu_entry_stubs_off(void);

/* The barrier (B) of psu_fast.h; exported for the stress test. */
PSU_HIDDEN void psu_switch_barrier(void);

/* Unloads every pending module that is idle.  Returns true while some module
 * is still pending.  Locks: caller holds psu_update_lock. */
PSU_HIDDEN bool psu_unload_idle_modules(void);
/* True while some module is pending (psu_module_lock). */
PSU_HIDDEN bool psu_any_pending(void);

/* Wakes the update thread (psu_unpin made a module pending). */
PSU_HIDDEN void psu_wake_update_thread(void);

/* ---- bundles, versions and history (psu_bundle.c) --------------------- */

struct psu_bundle {
    char *path;                         /* absolute path it was read from */
    unsigned char sha256[32];           /* SHA-256 trailer of the file */
    char base[PSU_BUILD_ID_LEN + 1];
    char target[PSU_BUILD_ID_LEN + 1];
    char *label;
    void *state_handle;                 /* never dlclosed once registered */
    int module;                         /* code module index, -1 if unloaded */
    unsigned refs;                      /* history entries + module + state */
    struct psu_bundle *next;            /* list of bundles with state */
};

/* Result of apply / rollback, for the protocol's answer. */
struct psu_update_result {
    const char *result;                 /* "applied" "already" "rolled-back" */
    char from[PSU_BUILD_ID_LEN + 1];
    char to[PSU_BUILD_ID_LEN + 1];
    char label[256];
    size_t functions;
    int module;
    size_t old_running_first;           /* entries psu_apply_bundle added: from here on */
};

/* Locks: caller holds psu_update_lock for all of these. */
PSU_HIDDEN bool psu_apply_bundle(const char *path, struct psu_update_result *res,
                                 struct psu_error *err);
PSU_HIDDEN bool psu_rollback(struct psu_update_result *res, struct psu_error *err);
PSU_HIDDEN const char *psu_current_build_id(void);
PSU_HIDDEN const char *psu_current_label(void);
PSU_HIDDEN unsigned long psu_updates_applied(void);
PSU_HIDDEN size_t psu_history_length(void);
PSU_HIDDEN void psu_history_entry(size_t i, const char **build_id, const char **label);
/* Replaced functions whose calls in progress may still run an old version
 * (SPEC §2, documented limits): entry i of psu_old_running_length() gives the
 * function's qualified name, the label of the version still running, its
 * module (0: the executable) and whether that is certain (a bundle module with
 * active calls) or only possible (the executable's version, whose calls are
 * not counted, of a function the bundle says may never return).  False when
 * that version has stopped running (its module drained). */
PSU_HIDDEN size_t psu_old_running_length(void);
PSU_HIDDEN bool psu_old_running_entry(size_t i, const char **function, const char **label,
                                      int *module, bool *certain);
/* A module was unloaded: its bundle forgets it (psu_runtime.c calls this). */
PSU_HIDDEN void psu_bundle_module_unloaded(struct psu_bundle *b);

/* ---- control (psu_control.c) ------------------------------------------ */

/* Starts the update thread and the socket (constructor, fork child). */
PSU_HIDDEN void psu_control_start(void);
/* fork child: forget the parent's socket and start our own. */
PSU_HIDDEN void psu_control_after_fork_child(void);

/* ---- SHA-256 (psu_sha256.c) ------------------------------------------- */

struct psu_sha256 {
    uint32_t h[8];
    uint64_t length;
    unsigned char block[64];
    size_t used;
};
PSU_HIDDEN void psu_sha256_init(struct psu_sha256 *s);
PSU_HIDDEN void psu_sha256_update(struct psu_sha256 *s, const void *data, size_t n);
PSU_HIDDEN void psu_sha256_final(struct psu_sha256 *s, unsigned char out[32]);
PSU_HIDDEN void psu_sha256(const void *data, size_t n, unsigned char out[32]);

#endif /* PSU_INTERNAL_H */
