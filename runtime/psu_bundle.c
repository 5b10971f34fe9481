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

#include "psu_bundle_abi.h"
#include "psu_internal.h"


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
    unsigned index = psu_word_module(word);
    if (index == 0)
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

/* The sections the runtime knows, where each goes in a bundle_file, and
 * whether a bundle must have it.  Other names are skipped (newer formats). */
static const struct {
    const char *name;
    size_t offset;              /* of its struct section in struct bundle_file */
    bool required;
} known_sections[] = {
    { "manifest", offsetof(struct bundle_file, manifest), true },
    { "program", offsetof(struct bundle_file, program), true },
    { "base", offsetof(struct bundle_file, base), true },
    { "target", offsetof(struct bundle_file, target), true },
    { "label", offsetof(struct bundle_file, label), true },
    { "code", offsetof(struct bundle_file, code), true },
    { "state", offsetof(struct bundle_file, state), false },
};
#define KNOWN_SECTIONS (sizeof known_sections / sizeof known_sections[0])
#define STATE_SECTION (KNOWN_SECTIONS - 1)

/* Verify, step 1: size, checksum, magic and the section table's bounds.
 * Sets f->sha256 and the table's entry count and end. */
static bool verify_header(struct bundle_file *f, uint32_t *count, size_t *table_end,
                          struct psu_error *err)
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
    if (HEADER_SIZE + (size_t)n * SECTION_ENTRY_SIZE > body) {
        psu_error_set(err, "format", "section table (%u entries) runs past the end of the file", n);
        return false;
    }
    *count = n;
    *table_end = HEADER_SIZE + (size_t)n * SECTION_ENTRY_SIZE;
    return true;
}

/* Verify, step 2: points each known section of f at its bytes (every entry
 * inside the data area, none twice, every required one present). */
static bool locate_sections(struct bundle_file *f, uint32_t count, size_t table_end,
                            struct psu_error *err)
{
    size_t body = f->size - TRAILER_SIZE;
    bool seen[KNOWN_SECTIONS] = { false };
    for (uint32_t i = 0; i < count; i++) {
        const unsigned char *entry = f->bytes + HEADER_SIZE + (size_t)i * SECTION_ENTRY_SIZE;
        char name[17];
        memcpy(name, entry, 16);
        name[16] = '\0';
        uint64_t off = le64(entry + 16), size = le64(entry + 24);
        if (off < table_end || off > body || size > body - off) {
            psu_error_set(err, "format", "section '%s' (offset %llu, size %llu) lies outside the data area",
                          name, (unsigned long long)off, (unsigned long long)size);
            return false;
        }
        for (size_t k = 0; k < KNOWN_SECTIONS; k++) {
            if (strcmp(name, known_sections[k].name) != 0)
                continue;
            if (seen[k]) {
                psu_error_set(err, "format", "section '%s' appears twice", name);
                return false;
            }
            seen[k] = true;
            struct section *s = (struct section *)((char *)f + known_sections[k].offset);
            s->data = f->bytes + off;
            s->size = (size_t)size;
        }
    }
    for (size_t k = 0; k < KNOWN_SECTIONS; k++) {
        if (known_sections[k].required && !seen[k]) {
            psu_error_set(err, "format", "required section '%s' is missing", known_sections[k].name);
            return false;
        }
    }
    f->has_state = seen[STATE_SECTION];
    return true;
}

/* Verify, step 3: the identity sections hold what they should. */
static bool check_identity_sections(const struct bundle_file *f, struct psu_error *err)
{
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

/* Checks in the order docs/bundle-format.md gives; refuses on the first
 * failure. */
static bool verify_bundle(struct bundle_file *f, struct psu_error *err)
{
    uint32_t count;
    size_t table_end;
    return verify_header(f, &count, &table_end, err) &&
           locate_sections(f, count, table_end, err) &&
           check_identity_sections(f, err);
}

/* Reads the file at `path` into f and verifies it; on refusal f->bytes may
 * still need freeing (always free(f->bytes)). */
static bool read_bundle_file(const char *path, struct bundle_file *f, struct psu_error *err)
{
    return read_whole_file(path, f, err) && verify_bundle(f, err);
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
    const struct psu_bundle_function *table = dlsym(handle, PSU_BUNDLE_FUNCTIONS);
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

/* An apply in progress: what each phase has taken so far.  The phases run in
 * the order of psu_apply_bundle; each refusal returns to it, and
 * apply_release() gives back whatever is still held here.  The commit moves
 * what it keeps out of this record (setting the field to "nothing held"), so
 * after a commit apply_release() frees only the scratch memory. */
struct apply {
    struct bundle_file file;            /* read_bundle_file: the bytes */
    struct psu_bundle *bundle;          /* new_bundle_record: one reference */
    /* load_state */
    void *state_handle;                 /* NULL: no state, or handed to the record */
    bool state_is_new;                  /* loaded just now (else reused) */
    int state_fd;                       /* open as long as the state is loaded: forever */
    struct psu_function **new_state_functions;
    /* load_code */
    void *code_handle;                  /* owned by the module index */
    int index;                          /* -1: none held */
    const struct psu_bundle_function *table;
    /* resolve_functions, add_carried_functions: the switch batch */
    struct psu_switch_item *items;
    struct previous_provider *previous; /* their providers before: the history entry */
    size_t n;                           /* items used */
    size_t nreplaced;                   /* the bundle's own functions: items[0, nreplaced) */
};

/* The undo path: gives back, newest phase first, what a refused apply still
 * holds (after a commit: only the scratch memory and the apply's reference). */
static void apply_release(struct apply *a)
{
    /* resolve_functions, add_carried_functions: the batch (the history owns
     * `previous` after a commit) */
    free(a->previous);
    free(a->items);
    /* load_code_module: the index never received a function */
    if (a->index >= 0)
        psu_module_release_unused(a->index);    /* dlcloses the code object */
    /* load_state: a state object loaded just now whose functions were never
     * registered is referenced by nothing */
    if (a->state_handle && a->state_is_new) {
        dlclose(a->state_handle);
        close(a->state_fd);
    }
    /* new_bundle_record: the apply's reference (frees a refused bundle's record) */
    if (a->bundle)
        bundle_unref(a->bundle);
    /* read_bundle_file */
    free(a->file.bytes);
}

/* Phase: the bundle is for this program and applies to the running version.
 * Sets *already when the process runs the bundle's target already. */
static bool check_applies_here(const struct bundle_file *f, bool *already, struct psu_error *err)
{
    *already = false;
    if (!section_equals(&f->program, psu_program_name)) {
        psu_error_set(err, "program", "bundle is for program '%.*s', this is '%s'",
                      (int)f->program.size, (const char *)f->program.data, psu_program_name);
        return false;
    }
    if (section_equals(&f->target, psu_current_build_id())) {
        *already = true;
        return true;
    }
    if (!section_equals(&f->base, psu_current_build_id())) {
        psu_error_set(err, "base", "bundle applies to build %.*s, the process is at %s",
                      (int)f->base.size, (const char *)f->base.data, psu_current_build_id());
        return false;
    }
    return true;
}

/* Phase: the record of the bundle, with one reference for the apply. */
static struct psu_bundle *new_bundle_record(const char *path, const struct bundle_file *f)
{
    struct psu_bundle *b = calloc(1, sizeof *b);
    if (!b)
        psu_die(ENOMEM, "bundle record");
    b->path = strdup(path);
    b->label = section_strdup(&f->label);
    if (!b->path)
        psu_die(ENOMEM, "bundle record");
    memcpy(b->sha256, f->sha256, 32);
    memcpy(b->base, f->base.data, PSU_BUILD_ID_LEN);
    memcpy(b->target, f->target.data, PSU_BUILD_ID_LEN);
    b->module = -1;
    b->refs = 1;
    return b;
}

/* Phase: the state object, loaded before the code (RTLD_GLOBAL) so that the
 * code object's references to added variables and slots resolve against it.
 * A bundle applied before (same SHA-256) reuses the state it loaded then. */
static bool load_state(struct apply *a, struct psu_error *err)
{
    if (!a->file.has_state)
        return true;
    struct psu_bundle *earlier = bundle_with_state(a->file.sha256);
    if (earlier) {
        a->state_handle = earlier->state_handle;    /* already registered */
        return true;
    }
    a->state_handle = dlopen_from_memory(&a->file.state, a->bundle->label, "state",
                                         RTLD_NOW | RTLD_GLOBAL, &a->state_fd, err);
    if (!a->state_handle)
        return false;
    a->state_is_new = true;
    a->new_state_functions = dlsym(a->state_handle, PSU_STATE_FUNCTIONS);
    return true;
}

/* Phase: the code object, in a module index of its own. */
static bool load_code_module(struct apply *a, struct psu_error *err)
{
    a->table = load_code(a->bundle, &a->file.code, &a->code_handle, &a->index, err);
    return a->table != NULL;
}

/* The slot word naming `code` in module `index`. */
static uintptr_t slot_word(int index, void *code)
{
    return psu_word((unsigned)index, code);
}

/* A version's code must leave the slot word's low byte to the module index
 * (psu_fast.h): codegen aligns every version it compiles into a bundle. */
static bool version_code_usable(const char *name, const void *code, struct psu_error *err)
{
    if (!code) {
        psu_error_set(err, "link", "function '%s' has no code in the bundle", name);
        return false;
    }
    if ((uintptr_t)code % PSU_CODE_ALIGN != 0) {
        psu_error_set(err, "link", "the code of '%s' is not aligned to %d bytes: the bundle was "
                      "made by an older psu; make it again with this one", name, PSU_CODE_ALIGN);
        return false;
    }
    return true;
}

static size_t table_length(const struct psu_bundle_function *table)
{
    size_t n = 0;
    while (table && table[n].name)
        n++;
    return n;
}

/* Grows the switch batch (items and their previous providers) to hold
 * `capacity` items. */
static void batch_reserve(struct apply *a, size_t capacity)
{
    struct psu_switch_item *items = realloc(a->items, capacity * sizeof *items);
    if (!items)
        psu_die(ENOMEM, "switch batch");
    a->items = items;
    struct previous_provider *previous = realloc(a->previous, capacity * sizeof *previous);
    if (!previous)
        psu_die(ENOMEM, "switch batch");
    a->previous = previous;
}

/* Phase: every function of the bundle's table names a DSU function of the
 * process (or one its state adds) and has code: the first items of the
 * switch batch. */
static bool resolve_functions(struct apply *a, struct psu_error *err)
{
    size_t n = table_length(a->table);
    batch_reserve(a, n + 1);
    for (size_t i = 0; i < n; i++) {
        const struct psu_bundle_function *t = &a->table[i];
        struct psu_function *fn = psu_function_lookup(t->name);
        if (!fn)
            fn = find_new_state_function(a->new_state_functions, t->name);
        if (!fn) {
            psu_error_set(err, "link", "function '%s' of the bundle is not a DSU function of this "
                          "process nor added by the bundle's state", t->name);
            return false;
        }
        if (!version_code_usable(t->name, t->code, err))
            return false;
        a->items[a->n++] = (struct psu_switch_item){ .fn = fn, .new_word = slot_word(a->index, t->code) };
    }
    a->nreplaced = a->n;
    return true;
}

/* Phase: carried functions are unchanged by this bundle; it brings copies so
 * that older bundle modules stop being current and can be unloaded.  A
 * carried function still current in the executable stays there: nothing to
 * free.  Appends to the batch after the bundle's own functions. */
static bool add_carried_functions(struct apply *a, struct psu_error *err)
{
    const struct psu_bundle_function *carried = dlsym(a->code_handle, PSU_BUNDLE_CARRIED);
    batch_reserve(a, a->n + table_length(carried) + 1);
    for (size_t i = 0; carried && carried[i].name; i++) {
        struct psu_function *fn = psu_function_lookup(carried[i].name);
        if (!fn) {
            psu_error_set(err, "link", "carried function '%s' is not a DSU function of this "
                          "process", carried[i].name);
            return false;
        }
        if (!version_code_usable(carried[i].name, carried[i].code, err))
            return false;
        /* relaxed: the slot is written only by the update thread, which we are */
        uintptr_t word = atomic_load_explicit(&fn->current, memory_order_relaxed);
        if (psu_word_module(word) == 0)
            continue;
        a->items[a->n++] = (struct psu_switch_item){ .fn = fn,
                                                     .new_word = slot_word(a->index, carried[i].code) };
    }
    return true;
}

/* Phase: no function the state adds exists already. */
static bool check_added_functions_are_new(const struct apply *a, struct psu_error *err)
{
    for (struct psu_function **p = a->new_state_functions; p && *p; p++) {
        if (psu_function_lookup((*p)->name)) {
            psu_error_set(err, "link", "function '%s' added by the bundle already exists", (*p)->name);
            return false;
        }
    }
    return true;
}

/* Phase: the state transformers, in order; the first non-zero refuses. */
static bool run_transformers(const struct apply *a, struct psu_error *err)
{
    int (*const *transformers)(void) = dlsym(a->code_handle, PSU_BUNDLE_TRANSFORMERS);
    for (size_t i = 0; transformers && transformers[i]; i++) {
        int rc = transformers[i]();
        if (rc != 0) {
            psu_error_set(err, "transform", "state transformer %zu returned %d", i, rc);
            return false;
        }
    }
    return true;
}

/* Commit, step 1: the functions the state adds join the table, and the
 * record keeps the state (a new one forever, on the list of loaded states). */
static void commit_state(struct apply *a)
{
    for (struct psu_function **p = a->new_state_functions; p && *p; p++)
        psu_function_table_add(*p);
    if (!a->state_handle)
        return;
    a->bundle->state_handle = a->state_handle;
    if (a->state_is_new) {
        a->bundle->next = bundles_with_state;
        bundles_with_state = a->bundle;
        bundle_ref(a->bundle);      /* the state list keeps it forever */
    }
    a->state_handle = NULL;
}

/* Commit, step 2: what each switched slot holds now, for the rollback
 * (each provider bundle referenced by the entry). */
static void record_previous(struct apply *a)
{
    for (size_t i = 0; i < a->n; i++) {
        /* relaxed: the slot is written only by the update thread, which we are */
        uintptr_t word = atomic_load_explicit(&a->items[i].fn->current, memory_order_relaxed);
        a->previous[i] = (struct previous_provider){
            .fn = a->items[i].fn, .word = word, .bundle = provider_of(word),
            .added = word == PSU_NO_VERSION,
        };
        if (a->previous[i].bundle)
            bundle_ref(a->previous[i].bundle);
    }
}

/* Commit, step 4: the module belongs to the bundle, the update to the
 * history (the entry takes `previous`), and the process to the new version. */
static void commit_version(struct apply *a)
{
    a->bundle->module = a->index;
    bundle_ref(a->bundle);              /* the module's reference */
    a->index = -1;

    struct history_entry entry = { .n = a->n, .items = a->previous };
    snprintf(entry.build_id, sizeof entry.build_id, "%s", psu_current_build_id());
    entry.label = strdup(psu_current_label());
    history_push(&entry);
    a->previous = NULL;

    snprintf(current_build_id, sizeof current_build_id, "%s", a->bundle->target);
    free(current_label);
    current_label = strdup(a->bundle->label);
    updates_applied++;
}

/* Commit, step 3: the switch, and which replaced functions may still run
 * their old version (entries from res->old_running_first on). */
static void switch_slots(struct apply *a, struct psu_update_result *res)
{
    psu_switch(a->items, a->n);
    old_running_prune();
    res->old_running_first = psu_old_running_length();
    old_running_note(a->previous, a->nreplaced,
                     (const char *const *)dlsym(a->code_handle, PSU_BUNDLE_MAY_NOT_RETURN));
}

/* The phases from the switch on: nothing can fail from here. */
static void commit(struct apply *a, struct psu_update_result *res)
{
    commit_state(a);
    record_previous(a);
    switch_slots(a, res);
    res->result = "applied";
    snprintf(res->from, sizeof res->from, "%s", psu_current_build_id());
    snprintf(res->to, sizeof res->to, "%s", a->bundle->target);
    snprintf(res->label, sizeof res->label, "%s", a->bundle->label);
    res->functions = a->n;
    res->module = a->index;
    commit_version(a);
}

static void result_already(struct psu_update_result *res)
{
    res->result = "already";
    snprintf(res->to, sizeof res->to, "%s", psu_current_build_id());
    snprintf(res->label, sizeof res->label, "%s", psu_current_label());
}

/* Applies the bundle at `path` as one switch, or refuses it with nothing
 * changed.  Each phase refuses with its error; apply_release() then undoes
 * what the phases before took (see struct apply). */
bool psu_apply_bundle(const char *path, struct psu_update_result *res, struct psu_error *err)
{
    if (path[0] != '/') {
        psu_error_set(err, "request", "bundle path must be absolute: %s", path);
        return false;
    }
    struct apply a = { .state_fd = -1, .index = -1 };
    bool already = false;
    bool ok = read_bundle_file(path, &a.file, err) &&
              check_applies_here(&a.file, &already, err);
    if (ok && already) {
        result_already(res);
    } else if (ok) {
        a.bundle = new_bundle_record(path, &a.file);
        ok = load_state(&a, err) &&
             load_code_module(&a, err) &&
             resolve_functions(&a, err) &&
             add_carried_functions(&a, err) &&
             check_added_functions_are_new(&a, err) &&
             run_transformers(&a, err);
        if (ok)
            commit(&a, res);
    }
    apply_release(&a);
    return ok;
}

/* ---- rollback ------------------------------------------------------------- */

/* The bundles a rollback loaded again (their code had been unloaded): a
 * refused rollback unloads them again.  At most one per history item. */
struct reloaded {
    struct psu_bundle **bundles;
    size_t n;
};

/* Makes sure bundle b's code is loaded (re-reading its file when it was
 * unloaded, and noting it in `reloaded`) and returns its dlopen handle and
 * module index. */
static void *bundle_code(struct psu_bundle *b, int *index, struct reloaded *reloaded,
                         struct psu_error *err)
{
    if (b->module >= 0) {
        psu_lock(&psu_module_lock);
        void *handle = psu_modules[b->module].handle;
        psu_unlock(&psu_module_lock);
        *index = b->module;
        return handle;
    }
    struct bundle_file f = { 0 };
    void *handle = NULL;
    if (read_bundle_file(b->path, &f, err)) {
        if (memcmp(f.sha256, b->sha256, 32) != 0)
            psu_error_set(err, "checksum", "%s changed since it was applied (SHA-256 differs)", b->path);
        else if (load_code(b, &f.code, &handle, index, err)) {
            b->module = *index;                 /* the module owns the handle now */
            bundle_ref(b);                      /* the module's reference */
            reloaded->bundles[reloaded->n++] = b;
        }
    }
    free(f.bytes);
    return handle;
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

/* The slot word that makes p's function run what it ran before the update:
 * the executable's version as it was, or the providing bundle's code (its
 * own function or a carried copy), loaded again if it was unloaded. */
static bool previous_word(const struct previous_provider *p, uintptr_t *word,
                          struct reloaded *reloaded, struct psu_error *err)
{
    if (!p->bundle) {
        *word = p->word;
        return true;
    }
    int index;
    void *handle = bundle_code(p->bundle, &index, reloaded, err);
    if (!handle)
        return false;
    const struct psu_bundle_function *t = find_code(dlsym(handle, PSU_BUNDLE_FUNCTIONS), p->fn->name);
    if (!t)
        t = find_code(dlsym(handle, PSU_BUNDLE_CARRIED), p->fn->name);
    if (!t) {
        psu_error_set(err, "link", "bundle %s no longer provides '%s'", p->bundle->path, p->fn->name);
        return false;
    }
    *word = slot_word(index, t->code);
    return true;
}

/* The rollback's switch batch (n items): every function the update replaced
 * back to its previous provider.  Added functions keep their code: old
 * callers may still reach them. */
static bool rollback_batch(const struct history_entry *e, struct psu_switch_item *items, size_t *n,
                           struct reloaded *reloaded, struct psu_error *err)
{
    *n = 0;
    for (size_t i = 0; i < e->n; i++) {
        const struct previous_provider *p = &e->items[i];
        if (p->added)
            continue;
        uintptr_t word;
        if (!previous_word(p, &word, reloaded, err))
            return false;
        items[(*n)++] = (struct psu_switch_item){ .fn = p->fn, .new_word = word };
    }
    return true;
}

/* The rollback's commit: the switch, the result, the version before the
 * update current again, its history entry dropped. */
static void rollback_commit(struct history_entry *e, struct psu_switch_item *items, size_t n,
                            struct psu_update_result *res)
{
    psu_switch(items, n);
    res->result = "rolled-back";
    snprintf(res->from, sizeof res->from, "%s", psu_current_build_id());
    snprintf(res->to, sizeof res->to, "%s", e->build_id);
    snprintf(res->label, sizeof res->label, "%s", e->label);
    res->functions = n;
    res->module = n ? (int)psu_word_module(items[0].new_word) : 0;
    snprintf(current_build_id, sizeof current_build_id, "%s", e->build_id);
    free(current_label);
    current_label = strdup(e->label);
    history_entry_free(e);
    history_len--;
}

/* The undo path of a refused rollback: unload what it loaded again (those
 * modules received no function). */
static void unload_reloaded(struct reloaded *reloaded)
{
    for (size_t i = 0; i < reloaded->n; i++) {
        struct psu_bundle *b = reloaded->bundles[i];
        psu_module_release_unused(b->module);   /* dlcloses the code object */
        psu_bundle_module_unloaded(b);
    }
    reloaded->n = 0;
}

bool psu_rollback(struct psu_update_result *res, struct psu_error *err)
{
    if (history_len == 0) {
        psu_error_set(err, "history", "no update to roll back");
        return false;
    }
    struct history_entry *e = history_at(history_len - 1);
    size_t capacity = e->n ? e->n : 1;
    struct psu_switch_item *items = calloc(capacity, sizeof *items);
    struct reloaded reloaded = { .bundles = calloc(capacity, sizeof *reloaded.bundles) };
    if (!items || !reloaded.bundles)
        psu_die(ENOMEM, "rollback batch");
    size_t n;
    bool ok = rollback_batch(e, items, &n, &reloaded, err);
    if (ok)
        rollback_commit(e, items, n, res);
    else
        unload_reloaded(&reloaded);
    free(reloaded.bundles);
    free(items);
    return ok;
}
