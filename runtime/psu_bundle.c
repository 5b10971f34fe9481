/* psu_bundle.c - bundles: read and verify a bundle file, load its state and
 * code objects, apply it as one switch, and roll updates back.
 *
 * Everything here runs on the update thread with psu_update_lock held; the
 * fields below are written and read only under it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "psu_internal.h"

/* Symbols a bundle's objects export (docs/bundle-format.md). */
struct psu_bundle_function {
    const char *name;
    void *code;
};

#define BUNDLE_MAGIC "PSUBNDL1"
#define HEADER_SIZE 16
#define SECTION_ENTRY_SIZE 32
#define TRAILER_SIZE 32
#define MAX_SECTIONS 32
#define HISTORY_LIMIT 64
#define MAX_BUNDLE_SIZE ((size_t)1 << 30)

/* ---- the process's version (psu_update_lock) ---------------------------- */

static char current_build_id[PSU_BUILD_ID_LEN + 1];
static char *current_label;            /* NULL until the first update */
static unsigned long updates_applied;  /* applies, for status */

const char *psu_current_build_id(void)
{
    if (!current_build_id[0])
        snprintf(current_build_id, sizeof current_build_id, "%s", psu_build_id);
    return current_build_id;
}

const char *psu_current_label(void)
{
    return current_label ? current_label : psu_version_label;
}

unsigned long psu_updates_applied(void)
{
    return updates_applied;
}

/* ---- bundle records ------------------------------------------------------ */

/* Bundles whose state object is loaded (never unloaded): re-applying the same
 * bundle later reuses that state instead of loading a second copy. */
static struct psu_bundle *bundles_with_state;

static void bundle_ref(struct psu_bundle *b)
{
    b->refs++;
}

static void bundle_unref(struct psu_bundle *b)
{
    if (--b->refs > 0)
        return;
    free(b->path);
    free(b->label);
    free(b);
}

void psu_bundle_module_unloaded(struct psu_bundle *b)
{
    b->module = -1;
    bundle_unref(b);
}

/* ---- history ------------------------------------------------------------- */

/* What one switched function pointed at before an update. */
struct previous_provider {
    struct psu_function *fn;
    uintptr_t word;             /* the slot word before the update */
    struct psu_bundle *bundle;  /* its provider, NULL = the executable */
    bool added;                 /* the update added it: rollback leaves it */
};

struct history_entry {
    char build_id[PSU_BUILD_ID_LEN + 1];    /* version before the update */
    char *label;
    struct previous_provider *items;
    size_t n;
};

/* A ring of the last HISTORY_LIMIT updates, oldest first. */
static struct history_entry history[HISTORY_LIMIT];
static size_t history_start, history_len;

static struct history_entry *history_at(size_t i)
{
    return &history[(history_start + i) % HISTORY_LIMIT];
}

static void history_entry_free(struct history_entry *e)
{
    for (size_t i = 0; i < e->n; i++)
        if (e->items[i].bundle)
            bundle_unref(e->items[i].bundle);
    free(e->items);
    free(e->label);
    memset(e, 0, sizeof *e);
}

/* Takes ownership of *e.  Drops the oldest entry when full. */
static void history_push(struct history_entry *e)
{
    if (history_len == HISTORY_LIMIT) {
        history_entry_free(history_at(0));
        history_start = (history_start + 1) % HISTORY_LIMIT;
        history_len--;
    }
    *history_at(history_len) = *e;
    history_len++;
}

size_t psu_history_length(void)
{
    return history_len;
}

void psu_history_entry(size_t i, const char **build_id, const char **label)
{
    struct history_entry *e = history_at(i);
    *build_id = e->build_id;
    *label = e->label;
}

/* Which bundle provides the code a slot word names (NULL: the executable). */
static struct psu_bundle *provider_of(uintptr_t word)
{
    unsigned index = (unsigned)(word >> PSU_MODULE_SHIFT);
    if (word == 0 || index == 0)
        return NULL;
    psu_lock(&psu_module_lock);
    struct psu_bundle *b = psu_modules[index].bundle;
    psu_unlock(&psu_module_lock);
    return b;
}

/* ---- old versions still running ------------------------------------------- */

/* A replaced function whose calls in progress may still run its old version.
 * Written by apply and read by status, both under psu_update_lock. */
struct old_running {
    const char *function;           /* the slot's qualified name (lives forever) */
    struct psu_bundle *bundle;      /* provider of the old version (referenced), NULL: the executable */
};

static struct old_running *old_running;
static size_t old_running_len, old_running_cap;

/* Forgets entries whose module was unloaded: nothing runs their code. */
static void old_running_prune(void)
{
    size_t kept = 0;
    for (size_t i = 0; i < old_running_len; i++) {
        if (old_running[i].bundle && old_running[i].bundle->module < 0)
            bundle_unref(old_running[i].bundle);
        else
            old_running[kept++] = old_running[i];
    }
    old_running_len = kept;
}

static void old_running_add(const char *function, struct psu_bundle *bundle)
{
    if (old_running_len == old_running_cap) {
        size_t cap = old_running_cap ? 2 * old_running_cap : 16;
        struct old_running *p = realloc(old_running, cap * sizeof *p);
        if (!p)
            psu_die(ENOMEM, "old versions list");
        old_running = p;
        old_running_cap = cap;
    }
    if (bundle)
        bundle_ref(bundle);
    old_running[old_running_len++] = (struct old_running){ function, bundle };
}

/* Just after the switch of one update: `previous` (n items) are the providers
 * the replaced functions had, `lingering` the bundle's list of functions whose
 * calls may never return (NULL-terminated, or NULL). */
static void old_running_note(const struct previous_provider *previous, size_t n,
                             const char *const *lingering)
{
    for (size_t i = 0; i < n; i++) {
        const struct previous_provider *p = &previous[i];
        if (p->added)
            continue;
        if (p->bundle) {
            if (p->bundle->module > 0 && psu_active_calls((unsigned)p->bundle->module) > 0)
                old_running_add(p->fn->name, p->bundle);
            continue;
        }
        for (const char *const *name = lingering; name && *name; name++)
            if (strcmp(*name, p->fn->name) == 0) {
                bool known = false;
                for (size_t j = 0; j < old_running_len; j++)
                    known |= !old_running[j].bundle && old_running[j].function == p->fn->name;
                if (!known)
                    old_running_add(p->fn->name, NULL);
                break;
            }
    }
}

size_t psu_old_running_length(void)
{
    return old_running_len;
}

bool psu_old_running_entry(size_t i, const char **function, const char **label,
                           int *module, bool *certain)
{
    const struct old_running *e = &old_running[i];
    *function = e->function;
    if (!e->bundle) {
        *label = psu_version_label;
        *module = 0;
        *certain = false;
        return true;
    }
    if (e->bundle->module <= 0 || psu_active_calls((unsigned)e->bundle->module) == 0)
        return false;
    *label = e->bundle->label;
    *module = e->bundle->module;
    *certain = true;
    return true;
}

/* ---- reading and verifying a file -------------------------------------- */

struct section {
    const unsigned char *data;
    size_t size;
};

struct bundle_file {
    unsigned char *bytes;
    size_t size;
    unsigned char sha256[32];
    struct section manifest, program, base, target, label, code, state;
    bool has_state;
};

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static bool read_whole_file(const char *path, struct bundle_file *f, struct psu_error *err)
{
    /* O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer;
     * only a regular file is read, in blocking mode again. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        psu_error_set(err, "io", "cannot open %s: %s", path, strerror(errno));
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > MAX_BUNDLE_SIZE ||
        fcntl(fd, F_SETFL, 0) != 0) {
        psu_error_set(err, "io", "%s is not a regular file of at most 1 GiB", path);
        close(fd);
        return false;
    }
    size_t size = (size_t)st.st_size;
    f->bytes = malloc(size ? size : 1);
    if (!f->bytes)
        psu_die(ENOMEM, "reading a bundle");
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, f->bytes + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            psu_error_set(err, "io", "cannot read %s: %s", path,
                          r < 0 ? strerror(errno) : "file shrank while reading");
            close(fd);
            return false;
        }
        got += (size_t)r;
    }
    close(fd);
    f->size = size;
    return true;
}

static bool text_section_ok(const struct section *s)
{
    return memchr(s->data, '\0', s->size) == NULL;
}

static bool build_id_ok(const struct section *s)
{
    if (s->size != PSU_BUILD_ID_LEN)
        return false;
    for (size_t i = 0; i < s->size; i++)
        if (!strchr("0123456789abcdef", s->data[i]) || s->data[i] == '\0')
            return false;
    return true;
}

/* Checks in the order docs/bundle-format.md gives; refuses on the first
 * failure. */
static bool verify_bundle(struct bundle_file *f, struct psu_error *err)
{
    const unsigned char *b = f->bytes;
    if (f->size < HEADER_SIZE + TRAILER_SIZE) {
        psu_error_set(err, "format", "file is %zu bytes, shorter than header and checksum (48)", f->size);
        return false;
    }
    size_t body = f->size - TRAILER_SIZE;
    psu_sha256(b, body, f->sha256);
    if (memcmp(f->sha256, b + body, 32) != 0) {
        psu_error_set(err, "checksum", "SHA-256 of the first %zu bytes does not match the trailer", body);
        return false;
    }
    if (memcmp(b, BUNDLE_MAGIC, 8) != 0) {
        psu_error_set(err, "format", "bad magic (not a psu bundle)");
        return false;
    }
    uint32_t n = le32(b + 8);
    if (n < 1 || n > MAX_SECTIONS) {
        psu_error_set(err, "format", "section count %u out of range 1..%d", n, MAX_SECTIONS);
        return false;
    }
    size_t header_end = HEADER_SIZE + (size_t)n * SECTION_ENTRY_SIZE;
    if (header_end > body) {
        psu_error_set(err, "format", "section table (%u entries) runs past the end of the file", n);
        return false;
    }
    struct { const char *name; struct section *s; bool required; bool seen; } known[] = {
        { "manifest", &f->manifest, true, false }, { "program", &f->program, true, false },
        { "base", &f->base, true, false },         { "target", &f->target, true, false },
        { "label", &f->label, true, false },       { "code", &f->code, true, false },
        { "state", &f->state, false, false },
    };
    size_t nknown = sizeof known / sizeof known[0];
    for (uint32_t i = 0; i < n; i++) {
        const unsigned char *entry = b + HEADER_SIZE + (size_t)i * SECTION_ENTRY_SIZE;
        char name[17];
        memcpy(name, entry, 16);
        name[16] = '\0';
        uint64_t off = le64(entry + 16), size = le64(entry + 24);
        if (off < header_end || off > body || size > body - off) {
            psu_error_set(err, "format", "section '%s' (offset %llu, size %llu) lies outside the data area",
                          name, (unsigned long long)off, (unsigned long long)size);
            return false;
        }
        for (size_t k = 0; k < nknown; k++) {
            if (strcmp(name, known[k].name) != 0)
                continue;
            if (known[k].seen) {
                psu_error_set(err, "format", "section '%s' appears twice", name);
                return false;
            }
            known[k].seen = true;
            known[k].s->data = b + off;
            known[k].s->size = (size_t)size;
        }
    }
    for (size_t k = 0; k < nknown; k++) {
        if (known[k].required && !known[k].seen) {
            psu_error_set(err, "format", "required section '%s' is missing", known[k].name);
            return false;
        }
    }
    f->has_state = known[nknown - 1].seen;
    if (!text_section_ok(&f->program) || !text_section_ok(&f->label) || f->label.size > 255) {
        psu_error_set(err, "format", "section 'program' or 'label' is not text (or label > 255 bytes)");
        return false;
    }
    if (!build_id_ok(&f->base) || !build_id_ok(&f->target)) {
        psu_error_set(err, "format", "section 'base' or 'target' is not 64 lowercase hex digits");
        return false;
    }
    return true;
}

static bool section_equals(const struct section *s, const char *text)
{
    return s->size == strlen(text) && memcmp(s->data, text, s->size) == 0;
}

/* ---- loading shared objects from memory -------------------------------- */

/* Writes an object to a memfd named after the bundle (so /proc/PID/maps
 * shows "/memfd:psu-<label>-<kind> (deleted)") and dlopens it. */
static void *dlopen_from_memory(const struct section *s, const char *label, const char *kind,
                                int flags, int *fd_out, struct psu_error *err)
{
    char name[300];
    snprintf(name, sizeof name, "psu-%s-%s", label, kind);
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) {
        psu_error_set(err, "io", "memfd_create: %s", strerror(errno));
        return NULL;
    }
    size_t done = 0;
    while (done < s->size) {
        ssize_t w = write(fd, s->data + done, s->size - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            psu_error_set(err, "io", "writing the %s object to a memfd: %s", kind, strerror(errno));
            close(fd);
            return NULL;
        }
        done += (size_t)w;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    void *handle = dlopen(path, flags);
    if (!handle) {
        psu_error_set(err, "load", "cannot load the %s object: %s", kind, dlerror());
        close(fd);
        return NULL;
    }
    /* The fd stays open as long as the object is loaded: dlopen knows the
     * object by its name "/proc/self/fd/N", and a later dlopen of the same
     * name (fd number reused) would return this object instead of the new. */
    *fd_out = fd;
    return handle;
}

static struct psu_bundle *bundle_with_state(const unsigned char sha256[32])
{
    for (struct psu_bundle *b = bundles_with_state; b; b = b->next)
        if (memcmp(b->sha256, sha256, 32) == 0)
            return b;
    return NULL;
}

/* Finds `name` among the state functions of a just-loaded (not yet
 * registered) state object. */
static struct psu_function *find_new_state_function(struct psu_function **list, const char *name)
{
    for (; list && *list; list++)
        if (strcmp((*list)->name, name) == 0)
            return *list;
    return NULL;
}

/* Loads the code object of a bundle record (state already loaded), takes a
 * module index and returns the code table, or refuses with everything undone. */
static const struct psu_bundle_function *load_code(struct psu_bundle *b, const struct section *code,
                                                   void **handle_out, int *index_out,
                                                   struct psu_error *err)
{
    int fd;
    void *handle = dlopen_from_memory(code, b->label, "code", RTLD_NOW | RTLD_LOCAL, &fd, err);
    if (!handle)
        return NULL;
    const struct psu_bundle_function *table = dlsym(handle, "psu_bundle_functions");
    if (!table) {
        psu_error_set(err, "load", "the code object exports no psu_bundle_functions");
        dlclose(handle);
        close(fd);
        return NULL;
    }
    int index = psu_module_alloc(b, handle, fd);
    if (index < 0) {
        /* Old modules whose last call just returned free their index now,
         * not at the next 5 ms scan. */
        psu_unload_idle_modules();
        index = psu_module_alloc(b, handle, fd);
    }
    if (index < 0) {
        psu_error_set(err, "capacity", "all %d module indices are in use (old modules still running?)",
                      PSU_MAX_MODULES - 1);
        dlclose(handle);
        close(fd);
        return NULL;
    }
    *handle_out = handle;
    *index_out = index;
    return table;
}

/* ---- apply ----------------------------------------------------------------- */

static char *section_strdup(const struct section *s)
{
    char *p = strndup((const char *)s->data, s->size);
    if (!p)
        psu_die(ENOMEM, "copying a section");
    return p;
}

bool psu_apply_bundle(const char *path, struct psu_update_result *res, struct psu_error *err)
{
    struct bundle_file f = { 0 };
    struct psu_bundle *b = NULL;
    void *state_handle = NULL, *code_handle = NULL;
    int state_fd = -1;      /* open for as long as the state is loaded: forever */
    bool state_is_new = false;
    int index = -1;
    struct psu_switch_item *items = NULL;
    struct previous_provider *previous = NULL;
    bool ok = false;

    if (path[0] != '/') {
        psu_error_set(err, "request", "bundle path must be absolute: %s", path);
        return false;
    }
    if (!read_whole_file(path, &f, err) || !verify_bundle(&f, err))
        goto out;
    if (!section_equals(&f.program, psu_program_name)) {
        psu_error_set(err, "program", "bundle is for program '%.*s', this is '%s'",
                      (int)f.program.size, (const char *)f.program.data, psu_program_name);
        goto out;
    }
    if (section_equals(&f.target, psu_current_build_id())) {
        res->result = "already";
        snprintf(res->to, sizeof res->to, "%s", psu_current_build_id());
        snprintf(res->label, sizeof res->label, "%s", psu_current_label());
        ok = true;
        goto out;
    }
    if (!section_equals(&f.base, psu_current_build_id())) {
        psu_error_set(err, "base", "bundle applies to build %.*s, the process is at %s",
                      (int)f.base.size, (const char *)f.base.data, psu_current_build_id());
        goto out;
    }

    b = calloc(1, sizeof *b);
    if (!b)
        psu_die(ENOMEM, "bundle record");
    b->path = strdup(path);
    b->label = section_strdup(&f.label);
    memcpy(b->sha256, f.sha256, 32);
    memcpy(b->base, f.base.data, PSU_BUILD_ID_LEN);
    memcpy(b->target, f.target.data, PSU_BUILD_ID_LEN);
    b->module = -1;
    b->refs = 1;            /* ours until the end of this function */

    /* State first (RTLD_GLOBAL), so the code object's references to added
     * variables and slots resolve against it. */
    struct psu_function **new_state_functions = NULL;
    if (f.has_state) {
        struct psu_bundle *earlier = bundle_with_state(f.sha256);
        if (earlier) {
            state_handle = earlier->state_handle;   /* already registered */
        } else {
            state_handle = dlopen_from_memory(&f.state, b->label, "state",
                                              RTLD_NOW | RTLD_GLOBAL, &state_fd, err);
            if (!state_handle)
                goto out;
            state_is_new = true;
            new_state_functions = dlsym(state_handle, "psu_state_functions");
        }
    }

    const struct psu_bundle_function *table = load_code(b, &f.code, &code_handle, &index, err);
    if (!table)
        goto out;

    /* Resolve every name before anything changes. */
    size_t n = 0, ncarried = 0;
    while (table[n].name)
        n++;
    const struct psu_bundle_function *carried = dlsym(code_handle, "psu_bundle_carried");
    while (carried && carried[ncarried].name)
        ncarried++;
    size_t nreplaced = n;       /* the bundle's own functions come first in items */
    items = calloc(n + ncarried + 1, sizeof *items);
    previous = calloc(n + ncarried + 1, sizeof *previous);
    if (!items || !previous)
        psu_die(ENOMEM, "switch batch");
    for (size_t i = 0; i < n; i++) {
        struct psu_function *fn = psu_function_lookup(table[i].name);
        if (!fn)
            fn = find_new_state_function(new_state_functions, table[i].name);
        if (!fn) {
            psu_error_set(err, "link", "function '%s' of the bundle is not a DSU function of this "
                          "process nor added by the bundle's state", table[i].name);
            goto out;
        }
        if (!table[i].code) {
            psu_error_set(err, "link", "function '%s' has no code in the bundle", table[i].name);
            goto out;
        }
        items[i].fn = fn;
        items[i].new_word = ((uintptr_t)index << PSU_MODULE_SHIFT) | (uintptr_t)table[i].code;
    }
    /* Carried functions are unchanged by this bundle; it brings copies so that
     * older bundle modules stop being current and can be unloaded.  A carried
     * function still current in the executable stays there: nothing to free. */
    for (size_t i = 0; i < ncarried; i++) {
        struct psu_function *fn = psu_function_lookup(carried[i].name);
        if (!fn || !carried[i].code) {
            psu_error_set(err, "link", "carried function '%s' is not a DSU function of this "
                          "process", carried[i].name);
            goto out;
        }
        uintptr_t word = atomic_load_explicit(&fn->current, memory_order_relaxed);
        if (word >> PSU_MODULE_SHIFT == 0)
            continue;
        items[n].fn = fn;
        items[n++].new_word = ((uintptr_t)index << PSU_MODULE_SHIFT) | (uintptr_t)carried[i].code;
    }
    for (struct psu_function **p = new_state_functions; p && *p; p++) {
        struct psu_function *existing = psu_function_lookup((*p)->name);
        if (existing) {
            psu_error_set(err, "link", "function '%s' added by the bundle already exists", (*p)->name);
            goto out;
        }
    }

    /* State transformers, in order; the first non-zero refuses. */
    int (*const *transformers)(void) = dlsym(code_handle, "psu_bundle_transformers");
    for (size_t i = 0; transformers && transformers[i]; i++) {
        int rc = transformers[i]();
        if (rc != 0) {
            psu_error_set(err, "transform", "state transformer %zu returned %d", i, rc);
            goto out;
        }
    }

    /* ---- from here on nothing can fail: commit ---- */
    for (struct psu_function **p = new_state_functions; p && *p; p++)
        psu_function_table_add(*p);
    if (state_handle) {
        if (state_is_new) {
            b->state_handle = state_handle;
            b->next = bundles_with_state;
            bundles_with_state = b;
            bundle_ref(b);           /* the state list keeps it forever */
        } else {
            b->state_handle = state_handle;
        }
    }

    struct history_entry entry = { .n = n, .items = previous };
    snprintf(entry.build_id, sizeof entry.build_id, "%s", psu_current_build_id());
    entry.label = strdup(psu_current_label());
    for (size_t i = 0; i < n; i++) {
        uintptr_t word = atomic_load_explicit(&items[i].fn->current, memory_order_relaxed);
        previous[i] = (struct previous_provider){
            .fn = items[i].fn, .word = word, .bundle = provider_of(word), .added = word == 0,
        };
        if (previous[i].bundle)
            bundle_ref(previous[i].bundle);
    }

    psu_switch(items, n);

    old_running_prune();
    res->old_running_first = psu_old_running_length();
    old_running_note(previous, nreplaced,
                     (const char *const *)dlsym(code_handle, "psu_bundle_may_not_return"));

    b->module = index;
    bundle_ref(b);                  /* the module's reference */
    history_push(&entry);
    previous = NULL;

    res->result = "applied";
    snprintf(res->from, sizeof res->from, "%s", psu_current_build_id());
    snprintf(res->to, sizeof res->to, "%s", b->target);
    snprintf(res->label, sizeof res->label, "%s", b->label);
    res->functions = n;
    res->module = index;
    snprintf(current_build_id, sizeof current_build_id, "%s", b->target);
    free(current_label);
    current_label = strdup(b->label);
    updates_applied++;
    index = -1;
    code_handle = NULL;
    state_handle = NULL;
    ok = true;

out:
    if (index >= 0)
        psu_module_release_unused(index);   /* dlcloses the code object */
    /* A state object loaded just now whose functions were never registered
     * is not referenced by anything: close it too. */
    if (state_handle && state_is_new) {
        dlclose(state_handle);
        close(state_fd);
    }
    if (b)
        bundle_unref(b);
    free(items);
    free(previous);
    free(f.bytes);
    return ok;
}

/* ---- rollback ------------------------------------------------------------- */

/* Makes sure bundle b's code is loaded (re-reading its file when it was
 * unloaded) and returns its module index and code table. */
static const struct psu_bundle_function *bundle_code(struct psu_bundle *b, int *index,
                                                     bool *reloaded, struct psu_error *err)
{
    *reloaded = false;
    if (b->module >= 0) {
        psu_lock(&psu_module_lock);
        void *handle = psu_modules[b->module].handle;
        psu_unlock(&psu_module_lock);
        *index = b->module;
        return dlsym(handle, "psu_bundle_functions");
    }
    struct bundle_file f = { 0 };
    const struct psu_bundle_function *table = NULL;
    if (!read_whole_file(b->path, &f, err) || !verify_bundle(&f, err))
        goto out;
    if (memcmp(f.sha256, b->sha256, 32) != 0) {
        psu_error_set(err, "checksum", "%s changed since it was applied (SHA-256 differs)", b->path);
        goto out;
    }
    void *handle;
    table = load_code(b, &f.code, &handle, index, err);
    (void)handle;       /* owned by the module now */
    if (table)
        *reloaded = true;
out:
    free(f.bytes);
    return table;
}

/* The entry named `name` of a NULL-terminated bundle table, or NULL. */
static const struct psu_bundle_function *find_code(const struct psu_bundle_function *table,
                                                   const char *name)
{
    for (const struct psu_bundle_function *t = table; t && t->name; t++)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

bool psu_rollback(struct psu_update_result *res, struct psu_error *err)
{
    if (history_len == 0) {
        psu_error_set(err, "history", "no update to roll back");
        return false;
    }
    struct history_entry *e = history_at(history_len - 1);
    struct psu_switch_item *items = calloc(e->n ? e->n : 1, sizeof *items);
    if (!items)
        psu_die(ENOMEM, "rollback batch");

    /* At most one distinct bundle per provider; remember those reloaded so a
     * refusal can unload them again. */
    struct psu_bundle **reloaded = calloc(e->n ? e->n : 1, sizeof *reloaded);
    if (!reloaded)
        psu_die(ENOMEM, "rollback batch");
    size_t nreloaded = 0;
    size_t n = 0;
    bool ok = false;
    for (size_t i = 0; i < e->n; i++) {
        struct previous_provider *p = &e->items[i];
        if (p->added)
            continue;       /* added functions keep their code: old callers */
        if (!p->bundle) {
            items[n].fn = p->fn;
            items[n++].new_word = p->word;
            continue;
        }
        int index;
        bool was_reloaded;
        const struct psu_bundle_function *table = bundle_code(p->bundle, &index, &was_reloaded, err);
        if (!table)
            goto out;
        if (was_reloaded) {
            p->bundle->module = index;
            bundle_ref(p->bundle);
            reloaded[nreloaded++] = p->bundle;
        }
        const struct psu_bundle_function *t = find_code(table, p->fn->name);
        if (!t) {
            psu_lock(&psu_module_lock);
            void *handle = psu_modules[index].handle;
            psu_unlock(&psu_module_lock);
            t = find_code(dlsym(handle, "psu_bundle_carried"), p->fn->name);
        }
        if (!t) {
            psu_error_set(err, "link", "bundle %s no longer provides '%s'", p->bundle->path, p->fn->name);
            goto out;
        }
        items[n].fn = p->fn;
        items[n++].new_word = ((uintptr_t)index << PSU_MODULE_SHIFT) | (uintptr_t)t->code;
    }

    psu_switch(items, n);
    res->result = "rolled-back";
    snprintf(res->from, sizeof res->from, "%s", psu_current_build_id());
    snprintf(res->to, sizeof res->to, "%s", e->build_id);
    snprintf(res->label, sizeof res->label, "%s", e->label);
    res->functions = n;
    res->module = n ? (int)(items[0].new_word >> PSU_MODULE_SHIFT) : 0;
    snprintf(current_build_id, sizeof current_build_id, "%s", e->build_id);
    free(current_label);
    current_label = strdup(e->label);
    history_entry_free(e);
    history_len--;
    nreloaded = 0;
    ok = true;
out:
    /* Refused: unload what we reloaded (it received no function). */
    for (size_t i = 0; i < nreloaded; i++) {
        struct psu_bundle *b = reloaded[i];
        psu_module_release_unused(b->module);   /* dlcloses the code object */
        psu_bundle_module_unloaded(b);
    }
    free(reloaded);
    free(items);
    return ok;
}
