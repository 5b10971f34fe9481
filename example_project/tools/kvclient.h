/* kvclient.h - the client side of kvd's protocol, for kvload and for the
 * benchmark client bench/c/kvd_ab.c: one TCP connection to 127.0.0.1, one
 * request line out, one reply line back, with a send/receive timeout; and
 * what both load tools share besides (their key choice, their arguments). */
#ifndef KVCLIENT_H
#define KVCLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define KV_TIMEOUT_MS 2000

static int kv_connect(int port)
{
    struct sockaddr_in sa;
    struct timeval tv;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return -1;
    tv.tv_sec = KV_TIMEOUT_MS / 1000;
    tv.tv_usec = (KV_TIMEOUT_MS % 1000) * 1000;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Connection with a small read buffer; one reply line at a time. */
struct kv_conn {
    int fd;
    char buf[4096];
    size_t used;
};

/* 0 ok, -1 connection error, -2 timeout */
static int kv_request(struct kv_conn *c, const char *req, char *reply, size_t cap)
{
    size_t n = strlen(req), off = 0;

    while (off < n) {
        ssize_t w = send(c->fd, req + off, n - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? -2 : -1;
        }
        off += (size_t)w;
    }
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->used);
        ssize_t r;
        if (nl) {
            size_t len = (size_t)(nl - c->buf);
            size_t copy = len < cap - 1 ? len : cap - 1;
            memcpy(reply, c->buf, copy);
            reply[copy] = '\0';
            c->used -= len + 1;
            memmove(c->buf, nl + 1, c->used);
            return 0;
        }
        if (c->used == sizeof c->buf)
            return -1;
        r = recv(c->fd, c->buf + c->used, sizeof c->buf - c->used, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? -2 : -1;
        if (r == 0)
            return -1;
        c->used += (size_t)r;
    }
}

/* The load tools' pseudo-random key choice: deterministic per seed. */
static unsigned long kv_xorshift(unsigned long *s)
{
    unsigned long x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* A whole-number argument in [min, max], or the tool's usage message. */
static long kv_arg_num(const char *s, long min, long max, void (*usage)(void))
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (!s[0] || errno || *end || v < min || v > max)
        usage();
    return v;
}

#endif
