/* psu_control.c - the update thread: the control socket, its one-line
 * protocol (docs/control-protocol.md), and the unload timer.
 *
 * The update thread is the only thread that applies, rolls back or unloads.
 * It serves one client at a time; each request runs with psu_update_lock. */
#define _GNU_SOURCE
#include <errno.h>
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
#include <unistd.h>

#include "psu_internal.h"

/* While something is pending, the update thread re-scans this often (ms):
 * SPEC §8 wants an old module unloaded within 10 ms of its last call. */
#define UNLOAD_POLL_MS 5
#define REQUEST_MAX 4096

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

/* A JSON string literal: quotes, backslashes and control bytes escaped. */
static void text_add_json(struct text *t, const char *s)
{
    text_add(t, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
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
    if (strcmp(r->result, "applied") == 0)
        add_old_running(t, r->old_running_first);
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
    text_add(t, ",\"membarrier\":%s,\"threads\":%u,\"updates\":%lu,\"history\":[",
             psu_membarrier_ready ? "true" : "false", psu_registered_threads(),
             psu_updates_applied());
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
        text_add(t, ",\"functions_current\":%lu,\"active_calls\":%lu,\"pins\":%lu,\"state\":\"%s\"}",
                 m->functions_current, psu_active_calls(i), m->pins,
                 m->state == PSU_MODULE_PENDING ? "pending-unload" : "current");
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

/* ---- the socket ---------------------------------------------------------- */

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;     /* the client went away: nothing to tell it */
        p += w;
        n -= (size_t)w;
    }
}

/* Serves one accepted connection and closes it.  Peers of another uid are
 * closed without a word. */
static void serve_client(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != geteuid()) {
        close(fd);
        return;
    }
    /* A silent client must not hold the update thread forever. */
    struct timeval timeout = { .tv_sec = 5 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);

    char line[REQUEST_MAX + 1];
    size_t got = 0;
    bool complete = false;
    while (got < REQUEST_MAX) {
        ssize_t r = recv(fd, line + got, REQUEST_MAX - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        char *nl = memchr(line + got, '\n', (size_t)r);
        got += (size_t)r;
        if (nl) {
            *nl = '\0';
            complete = true;
            break;
        }
    }
    struct text answer = { 0 };
    if (!complete && got > 0 && got < REQUEST_MAX) {
        line[got] = '\0';               /* EOF without newline: accept it */
        complete = true;
    }
    if (complete) {
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\r')
            line[n - 1] = '\0';
        handle_request(line, &answer);
    } else {
        struct psu_error err;
        psu_error_set(&err, "request", "no request line (at most %d bytes ending in a newline)",
                      REQUEST_MAX);
        answer_error(&answer, &err);
    }
    text_add(&answer, "\n");
    write_all(fd, answer.p, answer.len);
    free(answer.p);
    close(fd);
}

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

/* Creates the socket <dir>/<pid>.sock; false (one stderr line) when the
 * directory is not ours alone. */
static bool open_socket(void)
{
    /* Room left in sun_path for "/<pid>.sock". */
    char dir[sizeof socket_path - 20];
    if (!runtime_dir(dir, sizeof dir)) {
        psu_log("runtime directory path too long; not serving updates");
        return false;
    }
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
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int n = snprintf(addr.sun_path, sizeof addr.sun_path, "%s/%d.sock", dir, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof addr.sun_path) {
        psu_log("socket path too long; not serving updates");
        return false;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        psu_log("socket: %s; not serving updates", strerror(errno));
        return false;
    }
    unlink(addr.sun_path);      /* a stale socket of a dead process with our pid */
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || chmod(addr.sun_path, 0600) != 0 ||
        listen(fd, 16) != 0) {
        psu_log("cannot listen on %s: %s; not serving updates", addr.sun_path, strerror(errno));
        close(fd);
        return false;
    }
    memcpy(socket_path, addr.sun_path, sizeof socket_path);
    listen_fd = fd;
    atomic_store(&socket_ready, 1);    /* seq_cst; pairs with the atexit handler's load */
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
        struct pollfd fds[2] = {
            { .fd = listen_fd, .events = POLLIN },
            { .fd = wake_fd, .events = POLLIN },
        };
        int timeout = psu_any_pending() ? UNLOAD_POLL_MS : -1;
        if (poll(fds, 2, timeout) < 0 && errno != EINTR)
            psu_die(errno, "poll");
        if (fds[1].revents & POLLIN) {
            uint64_t count;
            ssize_t r = read(wake_fd, &count, sizeof count);
            (void)r;
        }
        if (fds[0].revents & POLLIN) {
            int client;
            while ((client = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
                serve_client(client);
        }
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
    atexit(unlink_socket_at_exit);
    start_update_thread();
}

/* fork child: the parent's update thread does not exist here.  Close (never
 * unlink) the parent's socket, then serve our own <dir>/<childpid>.sock. */
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
    start_update_thread();
}
