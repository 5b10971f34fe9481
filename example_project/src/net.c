/* net.c - listener on 127.0.0.1 and a fixed pool of worker threads.  Each
 * worker accepts a connection and serves it until it closes, then accepts
 * the next one.  Line protocol: see protocol.c. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kvd.h"
#include "net.h"
#include "protocol.h"

#define POLL_MS 200
#define INBUF   (KVD_MAX_LINE * 8)

static int listen_fd = -1;
static int stopping;                 /* atomic flag */
static pthread_t *workers;
static int nworkers;

static int should_stop(void)
{
    return __atomic_load_n(&stopping, __ATOMIC_ACQUIRE);
}

int net_listen(int port, int *bound_port)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(fd, 128) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        close(fd);
        return -1;
    }
    /* non-blocking: several workers poll the same socket */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    *bound_port = ntohs(sa.sin_port);
    listen_fd = fd;
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pfd;
                pfd.fd = fd;
                pfd.events = POLLOUT;
                if (should_stop())
                    return -1;
                poll(&pfd, 1, POLL_MS);
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void serve_conn(int fd)
{
    char in[INBUF];
    size_t used = 0;
    struct kvbuf out;
    int closing = 0;

    kvbuf_init(&out);
    while (!closing && !should_stop()) {
        struct pollfd pfd;
        ssize_t r;
        size_t start = 0, i;
        int pr;

        pfd.fd = fd;
        pfd.events = POLLIN;
        pr = poll(&pfd, 1, POLL_MS);
        if (pr < 0 && errno != EINTR)
            break;
        if (pr <= 0)
            continue;
        r = recv(fd, in + used, sizeof in - used, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0)
            break;
        used += (size_t)r;

        kvbuf_reset(&out);
        for (i = 0; i < used && !closing; i++) {
            if (in[i] != '\n')
                continue;
            in[i] = '\0';
            if (i - start > KVD_MAX_LINE) {
                kvbuf_puts(&out, "ERROR line too long\n");
                closing = 1;
            } else if (protocol_handle(in + start, &out) == PROTO_CLOSE) {
                closing = 1;
            }
            start = i + 1;
        }
        if (out.len && send_all(fd, out.data, out.len) < 0)
            break;
        if (start > 0) {
            memmove(in, in + start, used - start);
            used -= start;
        }
        if (!closing && used > KVD_MAX_LINE) {
            send_all(fd, "ERROR line too long\n", 20);
            break;
        }
    }
    kvbuf_free(&out);
    close(fd);
}

static void *worker_main(void *arg)
{
    (void)arg;
    while (!should_stop()) {
        struct pollfd pfd;
        int fd, one = 1;

        pfd.fd = listen_fd;
        pfd.events = POLLIN;
        if (poll(&pfd, 1, POLL_MS) <= 0)
            continue;
        fd = accept(listen_fd, NULL, NULL);
        if (fd < 0)
            continue;        /* another worker got it, or EINTR */
        /* accepted sockets do not inherit O_NONBLOCK on Linux */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        serve_conn(fd);
    }
    return NULL;
}

int net_start(int lfd, int n)
{
    int i;

    listen_fd = lfd;
    workers = calloc((size_t)n, sizeof *workers);
    if (!workers)
        return -1;
    for (i = 0; i < n; i++) {
        if (pthread_create(&workers[i], NULL, worker_main, NULL) != 0) {
            nworkers = i;
            return -1;
        }
    }
    nworkers = n;
    return 0;
}

void net_stop(void)
{
    int i;

    __atomic_store_n(&stopping, 1, __ATOMIC_RELEASE);
    for (i = 0; i < nworkers; i++)
        pthread_join(workers[i], NULL);
    free(workers);
    workers = NULL;
    nworkers = 0;
    if (listen_fd >= 0)
        close(listen_fd);
    listen_fd = -1;
}
