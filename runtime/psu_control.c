/* psu_control.c - the update thread: the control socket, its one-line
 * protocol (docs/control-protocol.md), and the unload timer.
 *
 * The update thread is the only thread that applies, rolls back or unloads.
 * It reads up to MAX_CLIENTS requests at once (poll), each within one
 * deadline, so a slow client delays no other; a complete request runs with
 * psu_update_lock. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "psu_internal.h"

/* While something is pending, the update thread re-scans this often (ms):
 * SPEC §8 wants an old module unloaded within 10 ms of its last call. */
#define UNLOAD_POLL_MS 5
#define REQUEST_MAX 4096
/* Requests read at once; more connections wait in the listen backlog. */
#define MAX_CLIENTS 16
/* One deadline per request line: from accept to its last byte (and as long
 * again to send the answer). */
#define REQUEST_MS 5000

/* Written by the thread that starts the update thread (constructor or fork
 * child handler) before pthread_create, then by the update thread; read by
 * the atexit handler and psu_wake_update_thread.  The fds and the path are
 * only replaced in a fork child, where the old update thread is gone. */
static int listen_fd = -1;
static int wake_fd = -1;
static char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static _Atomic int socket_ready;          /* socket_path is ours to unlink */
static bool control_started;              /* the parent started control */

/* ---- a growing string for JSON answers ---------------------------------- */

struct text {
    char *p;
    size_t len, cap;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(struct text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            psu_die(EINVAL, "formatting an answer");
        if (t->p && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap : 256;
        while (cap <= t->len + (size_t)n)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p)
            psu_die(ENOMEM, "growing an answer");
        t->p = p;
        t->cap = cap;
    }
}

/* Length of the valid UTF-8 sequence at c (shortest form, no surrogate,
 * at most U+10FFFF), 0 if the bytes there are not one. */
static size_t utf8_sequence(const unsigned char *c)
{
    if (c[0] < 0x80)
        return 1;
    size_t n = c[0] >= 0xc2 && c[0] <= 0xdf ? 2 : c[0] >= 0xe0 && c[0] <= 0xef ? 3
             : c[0] >= 0xf0 && c[0] <= 0xf4 ? 4 : 0;
    for (size_t i = 1; i < n; i++)
        if ((c[i] & 0xc0) != 0x80)
            return 0;
    if ((n == 3 && c[0] == 0xe0 && c[1] < 0xa0) || (n == 3 && c[0] == 0xed && c[1] >= 0xa0) ||
        (n == 4 && c[0] == 0xf0 && c[1] < 0x90) || (n == 4 && c[0] == 0xf4 && c[1] >= 0x90))
        return 0;
    return n;
}

/* A JSON string literal: quotes, backslashes and control bytes escaped; a
 * byte that is not part of valid UTF-8 becomes U+FFFD (labels and paths are
 * bytes, a JSON text is UTF-8: strict parsers refuse anything else). */
static void text_add_json(struct text *t, const char *s)
{
    text_add(t, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c;) {
        size_t n = utf8_sequence(c);
        if (n == 0) {
            text_add(t, "\\ufffd");
            c++;
            continue;
        }
        if (n > 1) {
            text_add(t, "%.*s", (int)n, (const char *)c);
            c += n;
            continue;
        }
        switch (*c) {
        case '"': text_add(t, "\\\""); break;
        case '\\': text_add(t, "\\\\"); break;
        case '\n': text_add(t, "\\n"); break;
        case '\r': text_add(t, "\\r"); break;
        case '\t': text_add(t, "\\t"); break;
        default:
            if (*c < 0x20 || *c == 0x7f)
                text_add(t, "\\u%04x", *c);
            else
                text_add(t, "%c", *c);
        }
        c++;
    }
    text_add(t, "\"");
}

/* ---- requests (psu_update_lock held by the caller) --------------------- */

static void answer_error(struct text *t, const struct psu_error *err)
{
    text_add(t, "{\"ok\":false,\"error\":");
    text_add_json(t, err->class);
    text_add(t, ",\"message\":");
    text_add_json(t, err->message);
    text_add(t, "}");
}

/* `"old_versions_running":[...]`: replaced functions with calls in progress in
 * an old version (entries from `first` on), the new code runs on their next call. */
static void add_old_running(struct text *t, size_t first)
{
    text_add(t, ",\"old_versions_running\":[");
    bool comma = false;
    for (size_t i = first; i < psu_old_running_length(); i++) {
        const char *function, *label;
        int module;
        bool certain;
        if (!psu_old_running_entry(i, &function, &label, &module, &certain))
            continue;
        text_add(t, "%s{\"function\":", comma ? "," : "");
        text_add_json(t, function);
        text_add(t, ",\"label\":");
        text_add_json(t, label);
        text_add(t, ",\"module\":%d,\"certain\":%s}", module, certain ? "true" : "false");
        comma = true;
    }
    text_add(t, "]");
}

/* `"functions":[...]`: the functions current in module `module`, the first
 * PSU_FUNCTIONS_LISTED of them (psu_update_lock held). */
#define PSU_FUNCTIONS_LISTED 32

struct function_list { struct text *t; unsigned count; };

static void list_function(const char *name, void *arg)
{
    struct function_list *list = arg;
    if (list->count++ < PSU_FUNCTIONS_LISTED) {
        text_add(list->t, list->count > 1 ? "," : "");
        text_add_json(list->t, name);
    }
}

static void add_module_functions(struct text *t, unsigned module)
{
    struct function_list list = { t, 0 };
    text_add(t, ",\"functions\":[");
    psu_functions_in_module(module, list_function, &list);
    text_add(t, "]");
}

/* `"older_bundles_kept":[...]` (left out when there is none): bundle modules
 * other than `newest` that still provide current functions after an apply --
 * the bundle did not carry them (its maker did not know the bundle that
 * produced the running build). */
static void add_older_bundles_kept(struct text *t, int newest)
{
    bool any = false;
    psu_lock(&psu_module_lock);
    for (unsigned i = 1; i < PSU_MAX_MODULES; i++) {
        struct psu_module *m = &psu_modules[i];
        if ((int)i == newest || m->state == PSU_MODULE_FREE || m->functions_current == 0)
            continue;
        text_add(t, "%s{\"module\":%u,\"label\":", any ? "," : ",\"older_bundles_kept\":[", i);
        text_add_json(t, m->bundle->label);
        add_module_functions(t, i);
        text_add(t, "}");
        any = true;
    }
    psu_unlock(&psu_module_lock);
    if (any)
        text_add(t, "]");
}

static void answer_update(struct text *t, const struct psu_update_result *r)
{
    if (strcmp(r->result, "already") == 0) {
        text_add(t, "{\"ok\":true,\"result\":\"already\",\"build_id\":\"%s\",\"label\":", r->to);
        text_add_json(t, r->label);
        text_add(t, "}");
        return;
    }
    text_add(t, "{\"ok\":true,\"result\":\"%s\",\"from\":\"%s\",\"to\":\"%s\",\"label\":",
             r->result, r->from, r->to);
    text_add_json(t, r->label);
    text_add(t, ",\"functions\":%zu,\"module\":%d", r->functions, r->module);
    if (strcmp(r->result, "applied") == 0) {
        add_old_running(t, r->old_running_first);
        add_older_bundles_kept(t, r->module);
    }
    text_add(t, "}");
}

static void answer_status(struct text *t)
{
    text_add(t, "{\"ok\":true,\"pid\":%d,\"program\":", (int)getpid());
    text_add_json(t, psu_program_name);
    text_add(t, ",\"build_id\":\"%s\",\"label\":", psu_current_build_id());
    text_add_json(t, psu_current_label());
    text_add(t, ",\"original_build_id\":");
    text_add_json(t, psu_build_id);
    text_add(t, ",\"membarrier\":%s,\"entry_hooks\":", psu_membarrier_ready ? "true" : "false");
    const char *hooks_off = psu_entry_hooks_off();
    text_add_json(t, hooks_off ? hooks_off : "on");
    text_add(t, ",\"entry_stubs\":");
    const char *stubs_off = psu_entry_stubs_off();
    text_add_json(t, stubs_off ? stubs_off : "on");
    text_add(t, ",\"threads\":%u,\"updates\":%lu,\"history\":[",
             psu_registered_threads(), psu_updates_applied());
    for (size_t i = 0; i < psu_history_length(); i++) {
        const char *id, *label;
        psu_history_entry(i, &id, &label);
        text_add(t, "%s{\"build_id\":\"%s\",\"label\":", i ? "," : "", id);
        text_add_json(t, label);
        text_add(t, "}");
    }
    text_add(t, "],\"modules\":[");
    bool first = true;
    psu_lock(&psu_module_lock);
    for (unsigned i = 0; i < PSU_MAX_MODULES; i++) {
        struct psu_module *m = &psu_modules[i];
        if (m->state == PSU_MODULE_FREE)
            continue;
        text_add(t, "%s{\"index\":%u,\"kind\":\"%s\",\"label\":", first ? "" : ",", i,
                 i == 0 ? "executable" : "bundle");
        text_add_json(t, i == 0 ? psu_version_label : m->bundle->label);
        text_add(t, ",\"build_id\":");
        text_add_json(t, i == 0 ? psu_build_id : m->bundle->target);
        text_add(t, ",\"functions_current\":%lu,\"active_calls\":%lu,\"pins\":%lu,\"state\":\"%s\"",
                 m->functions_current, psu_active_calls(i), m->pins,
                 m->state == PSU_MODULE_PENDING ? "pending-unload" : "current");
        if (i != 0)
            add_module_functions(t, i);
        text_add(t, "}");
        first = false;
    }
    unsigned long unloaded = psu_modules_unloaded;
    psu_unlock(&psu_module_lock);
    text_add(t, "],\"unloaded\":%lu", unloaded);
    add_old_running(t, 0);
    text_add(t, "}");
}

/* Answers one request line (without its newline). */
static void handle_request(char *line, struct text *t)
{
    struct psu_error err = { 0 };
    struct psu_update_result res = { 0 };
    psu_lock(&psu_update_lock);
    if (strcmp(line, "ping") == 0) {
        text_add(t, "{\"ok\":true,\"pid\":%d,\"program\":", (int)getpid());
        text_add_json(t, psu_program_name);
        text_add(t, "}");
    } else if (strcmp(line, "status") == 0) {
        answer_status(t);
    } else if (strncmp(line, "apply ", 6) == 0) {
        if (psu_apply_bundle(line + 6, &res, &err))
            answer_update(t, &res);
        else
            answer_error(t, &err);
    } else if (strcmp(line, "rollback") == 0) {
        if (psu_rollback(&res, &err))
            answer_update(t, &res);
        else
            answer_error(t, &err);
    } else {
        psu_error_set(&err, "request", "unknown request '%.100s' (expected ping, status, "
                      "apply <absolute path>, rollback)", line);
        answer_error(t, &err);
    }
    psu_unlock(&psu_update_lock);
}

/* ---- clients ------------------------------------------------------------- */

/* Connections being read.  fd -1 = unused.  The fds are taken and closed
 * under psu_client_lock (so a fork child, whose prepare handler took it, sees
 * every one and closes its copies); the rest is the update thread's alone. */
struct client {
    int fd;
    size_t got;
    long long deadline_ms;
    char line[REQUEST_MAX + 1];
};
static struct client clients[MAX_CLIENTS];
static bool clients_ready;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void clients_init(void)
{
    for (int i = 0; i < MAX_CLIENTS; i++)
        clients[i].fd = -1;
    clients_ready = true;
}

static void client_close(struct client *c)
{
    psu_lock(&psu_client_lock);
    close(c->fd);
    c->fd = -1;
    psu_unlock(&psu_client_lock);
}

/* Sends the answer, then closes.  A client that does not read its answer is
 * dropped after REQUEST_MS (counted afresh: an apply may have taken long). */
static void client_answer(struct client *c, struct text *answer)
{
    c->deadline_ms = now_ms() + REQUEST_MS;
    text_add(answer, "\n");
    const char *p = answer->p;
    size_t n = answer->len;
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        long long left = c->deadline_ms - now_ms();
        if (w == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) || left <= 0)
            break;          /* gone, or too slow: nothing more to tell it */
        struct pollfd out = { .fd = c->fd, .events = POLLOUT };
        poll(&out, 1, (int)left);
    }
    free(answer->p);
    client_close(c);
}

static void client_refuse(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void client_refuse(struct client *c, const char *fmt, ...)
{
    struct psu_error err = { .class = "request" };
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof err.message, fmt, ap);
    va_end(ap);
    struct text answer = { 0 };
    answer_error(&answer, &err);
    client_answer(c, &answer);
}

/* Reads what the client sent; answers once its request is complete. */
static void client_read(struct client *c)
{
    ssize_t r = recv(c->fd, c->line + c->got, REQUEST_MAX - c->got, MSG_DONTWAIT);
    if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (r < 0) {
        client_close(c);
        return;
    }
    char *nl = memchr(c->line + c->got, '\n', (size_t)r);
    c->got += (size_t)r;
    size_t length;
    if (nl) {
        /* Exactly one line: bytes after it mean the line is not what the
         * client meant (a path with a newline), so nothing is done. */
        length = (size_t)(nl - c->line);
        if (length + 1 != c->got) {
            client_refuse(c, "more than one line sent (a request, and a path in it, cannot "
                          "contain a newline)");
            return;
        }
    } else if (r == 0 && c->got > 0) {
        length = c->got;            /* EOF without newline: accept it */
    } else if (r == 0 || c->got == REQUEST_MAX) {
        client_refuse(c, "no request line (at most %d bytes ending in a newline)", REQUEST_MAX);
        return;
    } else {
        return;                     /* more to come */
    }
    if (memchr(c->line, '\0', length)) {
        client_refuse(c, "a request cannot contain a NUL byte");
        return;
    }
    c->line[length] = '\0';
    size_t n = strlen(c->line);
    if (n > 0 && c->line[n - 1] == '\r')
        c->line[n - 1] = '\0';
    struct text answer = { 0 };
    handle_request(c->line, &answer);
    client_answer(c, &answer);
}

/* Takes every waiting connection there is room for.  Peers of another uid
 * are closed without a word. */
static void clients_accept(int listen_fd)
{
    for (int i = 0; i < MAX_CLIENTS; i++) {
        struct client *c = &clients[i];
        if (c->fd >= 0)
            continue;
        psu_lock(&psu_client_lock);
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        c->fd = fd;
        psu_unlock(&psu_client_lock);
        if (fd < 0)
            return;
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != geteuid()) {
            client_close(c);
            continue;
        }
        c->got = 0;
        c->deadline_ms = now_ms() + REQUEST_MS;
    }
}

/* ---- the socket ---------------------------------------------------------- */

/* $PSU_RUNTIME_DIR, else $XDG_RUNTIME_DIR/psu, else /tmp/psu-<uid>. */
static bool runtime_dir(char *out, size_t size)
{
    const char *dir = getenv("PSU_RUNTIME_DIR");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n;
    if (dir && *dir)
        n = snprintf(out, size, "%s", dir);
    else if (xdg && *xdg)
        n = snprintf(out, size, "%s/psu", xdg);
    else
        n = snprintf(out, size, "/tmp/psu-%u", (unsigned)geteuid());
    return n > 0 && (size_t)n < size;
}

/* Removes sockets left by processes that died without exiting normally
 * (_exit, a signal): named <pid>.sock or <pid>.tmp, no process has that pid,
 * and (for a socket) nothing accepts a connection on it. */
static void remove_stale_sockets(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (end == e->d_name || pid <= 0 || pid == (long)getpid() ||
            (strcmp(end, ".sock") != 0 && strcmp(end, ".tmp") != 0))
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        int n = snprintf(addr.sun_path, sizeof addr.sun_path, "%s/%s", dir, e->d_name);
        if (n < 0 || (size_t)n >= sizeof addr.sun_path)
            continue;
        struct stat before, after;
        if (lstat(addr.sun_path, &before) != 0 || !S_ISSOCK(before.st_mode))
            continue;
        if (strcmp(end, ".sock") == 0) {
            int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0)
                continue;
            int refused = connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0 &&
                          errno == ECONNREFUSED;
            close(fd);
            /* The same inode still: not a socket a new process of that pid
             * published meanwhile. */
            if (!refused || lstat(addr.sun_path, &after) != 0 || after.st_ino != before.st_ino)
                continue;
        }
        unlink(addr.sun_path);
    }
    closedir(d);
}

/* Creates the socket <dir>/<pid>.sock, published only once it listens with
 * mode 0600: bound as <dir>/<pid>.tmp, then renamed into place.  False (one
 * stderr line) when that cannot be done safely. */
static bool open_socket(void)
{
    char dir[PATH_MAX];
    if (!runtime_dir(dir, sizeof dir)) {
        psu_log("runtime directory path too long; not serving updates");
        return false;
    }
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    char final_path[PATH_MAX + 32];
    int n = snprintf(final_path, sizeof final_path, "%s/%d.sock", dir, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof addr.sun_path) {
        psu_log("socket path %s is %d bytes, more than the %zu a Unix socket address holds: "
                "choose a shorter PSU_RUNTIME_DIR; not serving updates",
                final_path, n, sizeof addr.sun_path - 1);
        return false;
    }
    /* "<pid>.tmp" is shorter than "<pid>.sock": it fits too. */
    if (snprintf(addr.sun_path, sizeof addr.sun_path, "%s/%d.tmp", dir, (int)getpid()) < 0)
        return false;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        psu_log("cannot create %s: %s; not serving updates", dir, strerror(errno));
        return false;
    }
    struct stat st;
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 077) != 0) {
        psu_log("%s is not a directory owned by uid %u with mode 0700; not serving updates",
                dir, (unsigned)geteuid());
        return false;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        psu_log("socket: %s; not serving updates", strerror(errno));
        return false;
    }
    unlink(addr.sun_path);      /* left by a dead process with our pid */
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || chmod(addr.sun_path, 0600) != 0 ||
        listen(fd, 16) != 0 || rename(addr.sun_path, final_path) != 0) {
        psu_log("cannot listen on %s: %s; not serving updates", final_path, strerror(errno));
        unlink(addr.sun_path);
        close(fd);
        return false;
    }
    memcpy(socket_path, final_path, (size_t)n + 1);
    listen_fd = fd;
    atomic_store(&socket_ready, 1);    /* seq_cst; pairs with the atexit handler's load */
    remove_stale_sockets(dir);
    return true;
}

static void unlink_socket_at_exit(void)
{
    if (atomic_load(&socket_ready))    /* seq_cst; pairs with open_socket's store */
        unlink(socket_path);
}

void psu_wake_update_thread(void)
{
    if (wake_fd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(wake_fd, &one, sizeof one);
        (void)w;    /* EAGAIN: a wake-up is already pending */
    }
}

static void *update_thread(void *arg)
{
    (void)arg;
    if (!open_socket())
        return NULL;
    for (;;) {
        struct pollfd fds[2 + MAX_CLIENTS];
        struct client *polled[MAX_CLIENTS];
        int nfds = 0, nclients = 0;
        long long now = now_ms(), wait = psu_any_pending() ? UNLOAD_POLL_MS : -1;
        bool room = false;
        for (int i = 0; i < MAX_CLIENTS; i++) {
            struct client *c = &clients[i];
            if (c->fd < 0) {
                room = true;
                continue;
            }
            if (c->deadline_ms <= now) {
                /* What arrived while other requests ran still counts. */
                client_read(c);
                if (c->fd >= 0)
                    client_refuse(c, "no complete request line within %d s", REQUEST_MS / 1000);
                room = true;
                continue;
            }
            if (wait < 0 || c->deadline_ms - now < wait)
                wait = c->deadline_ms - now;
            polled[nclients++] = c;
        }
        fds[nfds++] = (struct pollfd){ .fd = wake_fd, .events = POLLIN };
        fds[nfds++] = (struct pollfd){ .fd = room ? listen_fd : -1, .events = POLLIN };
        for (int i = 0; i < nclients; i++)
            fds[nfds++] = (struct pollfd){ .fd = polled[i]->fd, .events = POLLIN };
        if (poll(fds, (nfds_t)nfds, (int)wait) < 0 && errno != EINTR)
            psu_die(errno, "poll");
        if (fds[0].revents & POLLIN) {
            uint64_t count;
            ssize_t r = read(wake_fd, &count, sizeof count);
            (void)r;
        }
        for (int i = 0; i < nclients; i++)
            if (fds[2 + i].revents)
                client_read(polled[i]);
        if (fds[1].revents & POLLIN)
            clients_accept(listen_fd);
        psu_lock(&psu_update_lock);
        psu_unload_idle_modules();
        psu_unlock(&psu_update_lock);
    }
    return NULL;
}

/* Starts the detached update thread with every signal blocked in it, so
 * the program's signals go to its own threads. */
static void start_update_thread(void)
{
    wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd < 0)
        psu_die(errno, "eventfd");
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int e = pthread_create(&thread, &attr, update_thread, NULL);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (e)
        psu_log("cannot start the update thread: %s; not serving updates", strerror(e));
}

void psu_control_start(void)
{
    control_started = true;
    clients_init();
    atexit(unlink_socket_at_exit);
    start_update_thread();
}

/* fork child: the parent's update thread does not exist here.  Close (never
 * unlink) the parent's socket and the connections it was serving (a client
 * must not wait for our exit to see its answer end), then serve our own
 * <dir>/<childpid>.sock. */
void psu_control_after_fork_child(void)
{
    if (!control_started)
        return;
    atomic_store(&socket_ready, 0);
    if (listen_fd >= 0)
        close(listen_fd);
    if (wake_fd >= 0)
        close(wake_fd);
    listen_fd = wake_fd = -1;
    if (clients_ready) {
        for (int i = 0; i < MAX_CLIENTS; i++) {
            if (clients[i].fd >= 0)
                close(clients[i].fd);
            clients[i].fd = -1;
        }
    }
    start_update_thread();
}
