/* protocol.c - parse a request line, dispatch it through a table of command
 * handlers, format the reply.  One request per line, one reply line each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "protocol.h"

#define MAX_ARGS 4

typedef int (*cmd_fn)(int argc, char **argv, struct kvbuf *out);

struct command {
    const char *name;
    int min_args;           /* including the command word */
    int max_args;
    cmd_fn fn;
};

struct keys_ctx {
    struct kvbuf *buf;
    unsigned long n;
};

/* Requests served by the current worker thread (batch: the only thread). */
static _Thread_local unsigned long worker_requests;

/* ---- output buffer --------------------------------------------------- */

void kvbuf_init(struct kvbuf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void kvbuf_reset(struct kvbuf *b)
{
    b->len = 0;
}

void kvbuf_free(struct kvbuf *b)
{
    free(b->data);
    kvbuf_init(b);
}

void kvbuf_append(struct kvbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (b->len + n + 1 > cap)
            cap *= 2;
        p = realloc(b->data, cap);
        if (!p) {
            fputs("kvd: out of memory\n", stderr);
            abort();
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void kvbuf_puts(struct kvbuf *b, const char *s)
{
    kvbuf_append(b, s, strlen(s));
}

static void reply_line(struct kvbuf *out, const char *word, const char *arg)
{
    kvbuf_puts(out, word);
    if (arg) {
        kvbuf_append(out, " ", 1);
        kvbuf_puts(out, arg);
    }
    kvbuf_append(out, "\n", 1);
}

/* ---- command handlers ------------------------------------------------ */

static int cmd_set(int argc, char **argv, struct kvbuf *out)
{
    (void)argc;
    if (engine_set(argv[1], argv[2]) != 0)
        reply_line(out, "ERROR", "bad key or value");
    else
        reply_line(out, "OK", NULL);
    return PROTO_CONTINUE;
}

static int cmd_get(int argc, char **argv, struct kvbuf *out)
{
    struct kv_value v = engine_get(argv[1]);
    (void)argc;
    if (v.found)
        reply_line(out, "VALUE", v.data);
    else
        reply_line(out, "NOTFOUND", NULL);
    return PROTO_CONTINUE;
}

static int cmd_del(int argc, char **argv, struct kvbuf *out)
{
    (void)argc;
    reply_line(out, engine_del(argv[1]) ? "DELETED" : "NOTFOUND", NULL);
    return PROTO_CONTINUE;
}

static void keys_collect(const char *key, size_t klen, const char *val,
                         size_t vlen, void *ctx)
{
    struct keys_ctx *kc = ctx;
    (void)val;
    (void)vlen;
    kvbuf_append(kc->buf, " ", 1);
    kvbuf_append(kc->buf, key, klen);
    kc->n++;
}

static int cmd_keys(int argc, char **argv, struct kvbuf *out)
{
    struct kvbuf tmp;
    struct keys_ctx kc;
    char head[32];

    kvbuf_init(&tmp);
    kc.buf = &tmp;
    kc.n = 0;
    engine_keys(argc > 1 ? argv[1] : "", keys_collect, &kc);
    snprintf(head, sizeof head, "KEYS %lu", kc.n);
    kvbuf_puts(out, head);
    if (tmp.len)
        kvbuf_append(out, tmp.data, tmp.len);
    kvbuf_append(out, "\n", 1);
    kvbuf_free(&tmp);
    return PROTO_CONTINUE;
}

static int cmd_info(int argc, char **argv, struct kvbuf *out)
{
    char line[96];
    (void)argc;
    (void)argv;
    snprintf(line, sizeof line, "INFO kvd v1 keys=%lu\n", engine_key_count());
    kvbuf_puts(out, line);
    return PROTO_CONTINUE;
}

static int cmd_stats(int argc, char **argv, struct kvbuf *out)
{
    static unsigned long stats_served;
    struct kvd_stats s = engine_stats();
    char line[512];
    unsigned long served =
        __atomic_add_fetch(&stats_served, 1, __ATOMIC_RELAXED);
    (void)argc;
    (void)argv;
    snprintf(line, sizeof line,
             "STATS puts=%lu gets=%lu dels=%lu cycles=%lu slices=%lu "
             "evictions=%lu keys=%lu nodes=%lu depth=%lu bytes=%lu "
             "stats=%lu worker=%lu\n",
             s.puts, s.gets, s.dels, s.cycles, s.slices, s.evictions, s.keys,
             s.last_scan.nodes, s.last_scan.depth, s.last_scan.bytes,
             served, worker_requests);
    kvbuf_puts(out, line);
    return PROTO_CONTINUE;
}

static int cmd_quit(int argc, char **argv, struct kvbuf *out)
{
    (void)argc;
    (void)argv;
    (void)out;
    return PROTO_CLOSE;
}

static const struct command commands[] = {
    { "SET",   3, 3, cmd_set },
    { "GET",   2, 2, cmd_get },
    { "DEL",   2, 2, cmd_del },
    { "KEYS",  1, 2, cmd_keys },
    { "INFO",  1, 1, cmd_info },
    { "STATS", 1, 1, cmd_stats },
    { "QUIT",  1, 1, cmd_quit },
};

/* ---- parsing and dispatch -------------------------------------------- */

/* Splits line at spaces (in place); returns the number of words, or
 * MAX_ARGS + 1 if there are too many. */
static int split_args(char *line, char **argv)
{
    int argc = 0;
    char *p = line;

    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r')
            *p++ = '\0';
        if (!*p)
            break;
        if (argc == MAX_ARGS)
            return MAX_ARGS + 1;
        argv[argc++] = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\r')
            p++;
    }
    return argc;
}

static const struct command *find_command(const char *name)
{
    size_t i;
    for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int dispatch(int argc, char **argv, struct kvbuf *out)
{
    const struct command *cmd;

    if (argc < 1) {
        reply_line(out, "ERROR", "unknown command");
        return PROTO_CONTINUE;
    }
    cmd = find_command(argv[0]);
    if (!cmd) {
        reply_line(out, "ERROR", "unknown command");
        return PROTO_CONTINUE;
    }
    if (argc < cmd->min_args || argc > cmd->max_args) {
        reply_line(out, "ERROR", "wrong number of arguments");
        return PROTO_CONTINUE;
    }
    return cmd->fn(argc, argv, out);
}

int protocol_handle(char *line, struct kvbuf *out)
{
    char *argv[MAX_ARGS];
    int argc;

    worker_requests++;
    argc = split_args(line, argv);
    return dispatch(argc, argv, out);
}
