/* psu_runtime.c - the runtime's core: start-up, the thread registry, the
 * function table, the module table, the switch and the unload decision.
 *
 * The argument for why this is safe is written out in
 * docs/memory-ordering.md; comments name its barriers (A) and (B). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <linux/membarrier.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "psu_internal.h"

/* ---- the fast path's shared variables (declared in psu_fast.h) -------- */

_Thread_local _Atomic(unsigned long) psu_thread_calls[PSU_MAX_MODULES] PSU_TLS;
_Thread_local int psu_thread_registered PSU_TLS;
/* Written once by psu_start (constructor, before the update thread exists);
 * read by every DSU call and by psu_switch_barrier. */
int psu_membarrier_ready;

/* ---- errors and messages ---------------------------------------------- */

void psu_die_at(const char *file, const char *func, int line, int err, const char *what)
{
    fprintf(stderr, "psu[%d]: internal error at %s:%s:%d: %s: %s\n",
            (int)getpid(), file, func, line, what, strerror(err));
    abort();
}

static bool quiet(void)
{
    const char *q = getenv("PSU_QUIET");
    return q && strcmp(q, "1") == 0;
}

void psu_log(const char *fmt, ...)
{
    if (quiet())
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "psu[%d]: %s\n", (int)getpid(), line);
}

void psu_error_set(struct psu_error *err, const char *class, const char *fmt, ...)
{
    err->class = class;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

/* ---- locks -------------------------------------------------------------- */

pthread_mutex_t psu_update_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t psu_module_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t psu_registry_lock = PTHREAD_MUTEX_INITIALIZER;

void psu_lock(pthread_mutex_t *m)
{
    int e = pthread_mutex_lock(m);
    if (e)
        psu_die(e, "pthread_mutex_lock");
}

void psu_unlock(pthread_mutex_t *m)
{
    int e = pthread_mutex_unlock(m);
    if (e)
        psu_die(e, "pthread_mutex_unlock");
}

/* ---- membarrier ------------------------------------------------------- */

static int membarrier(int cmd, unsigned flags)
{
    return (int)syscall(SYS_membarrier, cmd, flags, 0);
}

/* Probes and registers PRIVATE_EXPEDITED; psu_membarrier_ready only on
 * success, otherwise callers use the locked add and we the seq_cst fence. */
static void membarrier_probe(void)
{
    int supported = membarrier(MEMBARRIER_CMD_QUERY, 0);
    if (supported < 0 || !(supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED))
        return;
    if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0) != 0)
        return;
    psu_membarrier_ready = 1;
}

void psu_switch_barrier(void)
{
    if (psu_membarrier_ready) {
        /* (B): a full barrier on every running thread of the process; pairs
         * with the compiler-only barrier (A) in psu_enter.  Threads not
         * running pass a full barrier at their next context switch. */
        if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0) != 0)
            psu_die(errno, "membarrier(PRIVATE_EXPEDITED)");
    } else {
        /* Fallback (B'): pairs with psu_enter's seq_cst fetch_add; with the
         * seq_cst exchanges before it, either the caller's re-check sees the
         * new slot or our later scan sees its increment. */
        atomic_thread_fence(memory_order_seq_cst);
    }
}

/* ---- thread registry -------------------------------------------------- */

/* One registered thread.  Linked under psu_registry_lock; `calls` points at
 * that thread's psu_thread_calls and stays valid until the node is unlinked
 * (by the thread itself, at exit, before its TLS is freed). */
struct registered_thread {
    _Atomic(unsigned long) *calls;
    struct registered_thread *prev, *next;
};

/* Written and read under psu_registry_lock. */
static struct registered_thread *registry_head;
static unsigned registry_count;

static pthread_key_t registry_key;
static pthread_once_t registry_key_once = PTHREAD_ONCE_INIT;

/* Unlinks node; caller holds psu_registry_lock. */
static void registry_unlink(struct registered_thread *node)
{
    if (node->prev)
        node->prev->next = node->next;
    else
        registry_head = node->next;
    if (node->next)
        node->next->prev = node->prev;
    registry_count--;
}

/* Thread exit (pthread key destructor, runs on the exiting thread).  Its
 * counts are dropped with it: a thread that exits inside a DSU call (by
 * pthread_exit) no longer pins the module.  Locks: none on entry; takes
 * psu_registry_lock. */
static void registry_thread_exit(void *arg)
{
    struct registered_thread *node = arg;
    psu_lock(&psu_registry_lock);
    registry_unlink(node);
    psu_unlock(&psu_registry_lock);
    free(node);
    /* A DSU call from a later TLS destructor registers again (and the key
     * destructor runs again in glibc's next round). */
    psu_thread_registered = 0;
}

static void registry_key_create(void)
{
    int e = pthread_key_create(&registry_key, registry_thread_exit);
    if (e)
        psu_die(e, "pthread_key_create");
}

/* Called from psu_enter before the thread's first count.  Locks: none on
 * entry or exit; takes psu_registry_lock. */
void psu_thread_register(void)
{
    if (psu_thread_registered)
        return;
    pthread_once(&registry_key_once, registry_key_create);
    struct registered_thread *node = calloc(1, sizeof *node);
    if (!node)
        psu_die(ENOMEM, "registering a thread");
    node->calls = psu_thread_calls;
    psu_lock(&psu_registry_lock);
    node->next = registry_head;
    if (registry_head)
        registry_head->prev = node;
    registry_head = node;
    registry_count++;
    psu_unlock(&psu_registry_lock);
    int e = pthread_setspecific(registry_key, node);
    if (e)
        psu_die(e, "pthread_setspecific");
    psu_thread_registered = 1;
}

unsigned long psu_active_calls(unsigned index)
{
    unsigned long sum = 0;
    psu_lock(&psu_registry_lock);
    for (struct registered_thread *t = registry_head; t; t = t->next)
        /* Acquire: pairs with the release decrement in psu_leave (and in
         * psu_enter's retry), so everything the call did in the module
         * happens-before the dlclose that a zero sum allows. */
        sum += atomic_load_explicit(&t->calls[index], memory_order_acquire);
    psu_unlock(&psu_registry_lock);
    return sum;
}

unsigned psu_registered_threads(void)
{
    psu_lock(&psu_registry_lock);
    unsigned n = registry_count;
    psu_unlock(&psu_registry_lock);
    return n;
}

/* ---- function table ------------------------------------------------------ */

/* Open addressing, power-of-two capacity, never more than half full.
 * Written under psu_update_lock (or by the constructor, before the update
 * thread exists); read under psu_update_lock. */
static struct psu_function **table_slots;
static size_t table_capacity, table_used;

static size_t name_hash(const char *s)
{
    size_t h = 1469598103934665603u;          /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static void table_insert_unchecked(struct psu_function *fn)
{
    size_t i = name_hash(fn->name) & (table_capacity - 1);
    while (table_slots[i])
        i = (i + 1) & (table_capacity - 1);
    table_slots[i] = fn;
    table_used++;
}

static void table_grow(void)
{
    struct psu_function **old = table_slots;
    size_t old_capacity = table_capacity;
    table_capacity = old_capacity ? old_capacity * 2 : 64;
    table_slots = calloc(table_capacity, sizeof *table_slots);
    if (!table_slots)
        psu_die(ENOMEM, "growing the function table");
    table_used = 0;
    for (size_t i = 0; i < old_capacity; i++)
        if (old[i])
            table_insert_unchecked(old[i]);
    free(old);
}

struct psu_function *psu_function_lookup(const char *name)
{
    if (!table_capacity)
        return NULL;
    size_t i = name_hash(name) & (table_capacity - 1);
    for (; table_slots[i]; i = (i + 1) & (table_capacity - 1))
        if (strcmp(table_slots[i]->name, name) == 0)
            return table_slots[i];
    return NULL;
}

bool psu_function_table_add(struct psu_function *fn)
{
    if (psu_function_lookup(fn->name))
        return false;
    if (2 * (table_used + 1) > table_capacity)
        table_grow();
    table_insert_unchecked(fn);
    return true;
}

size_t psu_function_count(void)
{
    return table_used;
}

/* The executable's records, collected by the linker into section
 * psu_functions; absent (NULL) in a program without DSU functions. */
extern struct psu_function *__start_psu_functions[] __attribute__((weak));
extern struct psu_function *__stop_psu_functions[] __attribute__((weak));

/* ---- modules ------------------------------------------------------------- */

struct psu_module psu_modules[PSU_MAX_MODULES];
unsigned long psu_modules_unloaded;

/* Free indices 1..255, a stack (psu_module_lock). */
static unsigned char free_indices[PSU_MAX_MODULES];
static unsigned free_count;

static void modules_init(size_t executable_functions)
{
    psu_modules[0] = (struct psu_module){
        .index = 0, .state = PSU_MODULE_CURRENT, .fd = -1,
        .functions_current = executable_functions,
    };
    free_count = 0;
    for (unsigned i = PSU_MAX_MODULES - 1; i >= 1; i--) {
        psu_modules[i] = (struct psu_module){ .index = i, .state = PSU_MODULE_FREE, .fd = -1 };
        free_indices[free_count++] = (unsigned char)i;
    }
}

struct range_search {
    uintptr_t load_bias;
    uintptr_t lo, hi;
    bool found;
};

static int range_of_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct range_search *search = arg;
    if (info->dlpi_addr != search->load_bias)
        return 0;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (start < lo)
            lo = start;
        if (start + ph->p_memsz > hi)
            hi = start + ph->p_memsz;
    }
    search->lo = lo;
    search->hi = hi;
    search->found = true;
    return 1;
}

int psu_module_alloc(struct psu_bundle *bundle, void *handle, int fd)
{
    struct link_map *map = NULL;
    struct range_search search = { 0 };
    if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map) {
        search.load_bias = map->l_addr;
        dl_iterate_phdr(range_of_object, &search);
    }
    psu_lock(&psu_module_lock);
    if (free_count == 0) {
        psu_unlock(&psu_module_lock);
        return -1;
    }
    unsigned index = free_indices[--free_count];
    psu_modules[index] = (struct psu_module){
        .index = index, .state = PSU_MODULE_CURRENT, .bundle = bundle,
        .handle = handle, .fd = fd, .lo = search.found ? search.lo : 0,
        .hi = search.found ? search.hi : 0,
    };
    psu_unlock(&psu_module_lock);
    return (int)index;
}

/* Caller holds psu_module_lock. */
static void module_free_index(unsigned index)
{
    psu_modules[index] = (struct psu_module){ .index = index, .state = PSU_MODULE_FREE, .fd = -1 };
    free_indices[free_count++] = (unsigned char)index;
}

void psu_module_release_unused(int index)
{
    psu_lock(&psu_module_lock);
    void *handle = psu_modules[index].handle;
    int fd = psu_modules[index].fd;
    module_free_index((unsigned)index);
    psu_unlock(&psu_module_lock);
    dlclose(handle);
    close(fd);
}

/* A module with nothing current and nothing pinned waits for its callers to
 * leave.  Caller holds psu_module_lock. */
static void module_update_state(struct psu_module *m)
{
    if (m->index == 0 || m->state == PSU_MODULE_FREE || m->state == PSU_MODULE_UNLOADING)
        return;
    m->state = (m->functions_current == 0 && m->pins == 0) ? PSU_MODULE_PENDING
                                                          : PSU_MODULE_CURRENT;
}

bool psu_any_pending(void)
{
    bool pending = false;
    psu_lock(&psu_module_lock);
    for (unsigned i = 1; i < PSU_MAX_MODULES && !pending; i++)
        pending = psu_modules[i].state == PSU_MODULE_PENDING;
    psu_unlock(&psu_module_lock);
    return pending;
}

void psu_switch(struct psu_switch_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        /* seq_cst exchange: ordered before the barrier (B) below; pairs with
         * the caller's acquire load / seq_cst re-check of the slot. */
        items[i].old_word = atomic_exchange_explicit(&items[i].fn->current,
                                                     items[i].new_word,
                                                     memory_order_seq_cst);
    /* (B): one barrier for the whole batch. */
    psu_switch_barrier();

    psu_lock(&psu_module_lock);
    for (size_t i = 0; i < n; i++) {
        unsigned to = (unsigned)(items[i].new_word >> PSU_MODULE_SHIFT);
        psu_modules[to].functions_current++;
        module_update_state(&psu_modules[to]);
        /* A slot of a function added by a bundle holds 0 until its first
         * switch: it was current nowhere. */
        if (items[i].old_word == 0)
            continue;
        unsigned from = (unsigned)(items[i].old_word >> PSU_MODULE_SHIFT);
        psu_modules[from].functions_current--;
        module_update_state(&psu_modules[from]);
    }
    psu_unlock(&psu_module_lock);
}

bool psu_unload_idle_modules(void)
{
    bool still_pending = false;
    for (unsigned i = 1; i < PSU_MAX_MODULES; i++) {
        psu_lock(&psu_module_lock);
        struct psu_module *m = &psu_modules[i];
        if (m->state != PSU_MODULE_PENDING) {
            psu_unlock(&psu_module_lock);
            continue;
        }
        /* Every switch away from index i was followed by its barrier (B)
         * before this point (psu_switch returns after it), so a zero sum
         * means no thread runs, or will ever run, code of this module:
         * docs/memory-ordering.md, "The unload decision". */
        if (psu_active_calls(i) != 0) {
            still_pending = true;
            psu_unlock(&psu_module_lock);
            continue;
        }
        m->state = PSU_MODULE_UNLOADING;
        void *handle = m->handle;
        int fd = m->fd;
        struct psu_bundle *bundle = m->bundle;
        psu_unlock(&psu_module_lock);

        if (dlclose(handle) != 0)
            psu_log("dlclose of module %u failed: %s", i, dlerror());
        close(fd);
        psu_bundle_module_unloaded(bundle);

        psu_lock(&psu_module_lock);
        module_free_index(i);
        psu_modules_unloaded++;
        psu_unlock(&psu_module_lock);
    }
    return still_pending;
}

/* ---- pins ------------------------------------------------------------- */

/* Caller holds psu_module_lock.  Only loaded bundle code modules count. */
static struct psu_module *module_containing(const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    for (unsigned i = 1; i < PSU_MAX_MODULES; i++) {
        struct psu_module *m = &psu_modules[i];
        if (m->state != PSU_MODULE_FREE && m->lo <= a && a < m->hi)
            return m;
    }
    return NULL;
}

int psu_pin(const void *addr)
{
    psu_lock(&psu_module_lock);
    struct psu_module *m = module_containing(addr);
    int result = 0;
    if (m && m->state == PSU_MODULE_UNLOADING) {
        result = -1;
    } else if (m) {
        m->pins++;
        module_update_state(m);
        result = (int)m->index;
    }
    psu_unlock(&psu_module_lock);
    return result;
}

int psu_unpin(const void *addr)
{
    psu_lock(&psu_module_lock);
    struct psu_module *m = module_containing(addr);
    int result = 0;
    bool became_pending = false;
    if (m && (m->pins == 0 || m->state == PSU_MODULE_UNLOADING)) {
        result = -1;
    } else if (m) {
        m->pins--;
        module_update_state(m);
        became_pending = m->state == PSU_MODULE_PENDING;
        result = (int)m->index;
    }
    psu_unlock(&psu_module_lock);
    if (became_pending)
        psu_wake_update_thread();
    return result;
}

/* ---- fork ------------------------------------------------------------- */

/* prepare: take every lock in order, so the child gets them in a consistent
 * state (no update half done, no registry half linked). */
static void fork_prepare(void)
{
    psu_lock(&psu_update_lock);
    psu_lock(&psu_module_lock);
    psu_lock(&psu_registry_lock);
}

static void fork_parent(void)
{
    psu_unlock(&psu_registry_lock);
    psu_unlock(&psu_module_lock);
    psu_unlock(&psu_update_lock);
}

/* child: only the forking thread exists.  Keep its registry node (its TLS is
 * at the same address), drop the others, reinitialise the locks, then start
 * the child's own update thread and socket. */
static void fork_child(void)
{
    struct registered_thread *keep = NULL, *next;
    for (struct registered_thread *t = registry_head; t; t = next) {
        next = t->next;
        if (t->calls == psu_thread_calls)
            keep = t;
        else
            free(t);
    }
    registry_head = keep;
    registry_count = keep ? 1 : 0;
    if (keep)
        keep->prev = keep->next = NULL;
    pthread_mutex_init(&psu_registry_lock, NULL);
    pthread_mutex_init(&psu_module_lock, NULL);
    pthread_mutex_init(&psu_update_lock, NULL);
    psu_control_after_fork_child();
}

/* ---- start-up ----------------------------------------------------------- */

/* Runs before ordinary constructors (priority 101), so user constructors
 * that call DSU functions already see membarrier decided. */
__attribute__((constructor(101))) static void psu_start(void)
{
    membarrier_probe();

    size_t n = 0;
    if (__start_psu_functions && __stop_psu_functions) {
        for (struct psu_function **p = __start_psu_functions; p < __stop_psu_functions; p++) {
            if (!*p)
                continue;
            if (!psu_function_table_add(*p))
                psu_log("duplicate DSU function name %s ignored", (*p)->name);
            else
                n++;
        }
    }
    modules_init(n);

    int e = pthread_atfork(fork_prepare, fork_parent, fork_child);
    if (e)
        psu_die(e, "pthread_atfork");

    const char *disable = getenv("PSU_DISABLE");
    if (disable && strcmp(disable, "1") == 0)
        return;
    psu_control_start();
}
