/* main.c - kvd: option parsing, start-up, signal handling.
 *
 *   kvd [-p PORT] [-w WORKERS] [-m MAXKEYS] [-v]
 *   kvd --batch [--cycle-every N] [-m MAXKEYS] [-v]
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "net.h"
#include "protocol.h"
#include "store.h"

static int maint_stop;   /* atomic flag */

static void usage(FILE *f)
{
    fputs("usage: kvd [-p PORT] [-w WORKERS] [-m MAXKEYS] [-v]\n"
          "       kvd --batch [--cycle-every N] [-m MAXKEYS] [-v]\n"
          "  -p PORT          TCP port on 127.0.0.1 (0 = ephemeral; default 7070)\n"
          "  -w WORKERS       worker threads, one connection each (default 4)\n"
          "  -m MAXKEYS       maintenance evicts keys above this count (0 = off)\n"
          "  -v               log to stderr\n"
          "  --batch          no network, no threads: requests on stdin,\n"
          "                   replies on stdout (deterministic)\n"
          "  --cycle-every N  batch: run one maintenance cycle every N requests\n",
          f);
}

static int parse_num(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static void *maintenance_main(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&maint_stop, __ATOMIC_ACQUIRE))
        maintenance_cycle();
    return NULL;
}

static int run_batch(long cycle_every)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long served = 0;
    struct kvbuf out;

    kvbuf_init(&out);
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        int rc;
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        kvbuf_reset(&out);
        if (n > KVD_MAX_LINE) {
            kvbuf_puts(&out, "ERROR line too long\n");
            rc = PROTO_CLOSE;
        } else {
            rc = protocol_handle(line, &out);
        }
        fwrite(out.data ? out.data : "", 1, out.len, stdout);
        if (rc == PROTO_CLOSE)
            break;
        if (cycle_every > 0 && ++served % cycle_every == 0)
            maintenance_cycle();
    }
    fflush(stdout);
    free(line);
    kvbuf_free(&out);
    return ferror(stdout) ? 1 : 0;
}

int main(int argc, char **argv)
{
    long port = 7070, nworkers = 4, max_keys = 0, cycle_every = 0;
    int batch = 0, verbose = 0, bound = 0, lfd, sig, i, rc;
    sigset_t set;
    pthread_t maint;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--batch") == 0) {
            batch = 1;
        } else if (strcmp(a, "-v") == 0) {
            verbose = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (next && strcmp(a, "-p") == 0) {
            if (parse_num(next, 0, 65535, &port) < 0)
                goto bad;
            i++;
        } else if (next && strcmp(a, "-w") == 0) {
            if (parse_num(next, 1, 1024, &nworkers) < 0)
                goto bad;
            i++;
        } else if (next && strcmp(a, "-m") == 0) {
            if (parse_num(next, 0, 1L << 40, &max_keys) < 0)
                goto bad;
            i++;
        } else if (next && strcmp(a, "--cycle-every") == 0) {
            if (parse_num(next, 0, 1L << 40, &cycle_every) < 0)
                goto bad;
            i++;
        } else {
            goto bad;
        }
    }

    store_init();
    engine_init(batch, (unsigned long)max_keys, verbose);

    if (batch) {
        rc = run_batch(cycle_every);
        store_destroy();
        return rc;
    }

    /* SIGTERM/SIGINT are taken synchronously by the main thread below;
     * every thread created from here on inherits the blocked mask. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    lfd = net_listen((int)port, &bound);
    if (lfd < 0) {
        fprintf(stderr, "kvd: cannot listen on 127.0.0.1:%ld: %s\n", port,
                strerror(errno));
        return 1;
    }
    if (pthread_create(&maint, NULL, maintenance_main, NULL) != 0) {
        fputs("kvd: cannot start maintenance thread\n", stderr);
        return 1;
    }
    if (net_start(lfd, (int)nworkers) < 0) {
        fputs("kvd: cannot start workers\n", stderr);
        return 1;
    }
    printf("listening on %d\n", bound);
    fflush(stdout);

    while (sigwait(&set, &sig) != 0)
        ;
    if (verbose)
        fprintf(stderr, "kvd: signal %d, shutting down\n", sig);
    net_stop();
    __atomic_store_n(&maint_stop, 1, __ATOMIC_RELEASE);
    pthread_join(maint, NULL);
    store_destroy();
    return 0;

bad:
    usage(stderr);
    return 2;
}
