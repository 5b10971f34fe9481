/* protocol.h - request parsing, dispatch and reply formatting. */
#ifndef KVD_PROTOCOL_H
#define KVD_PROTOCOL_H

#include "kvd.h"

#define PROTO_CONTINUE 0
#define PROTO_CLOSE    1

/* Handles one request line (without '\n'; modified in place) and appends
 * the reply line (with '\n') to out. Returns PROTO_CLOSE for QUIT. */
int protocol_handle(char *line, struct kvbuf *out);

void kvbuf_init(struct kvbuf *b);
void kvbuf_reset(struct kvbuf *b);
void kvbuf_free(struct kvbuf *b);
void kvbuf_append(struct kvbuf *b, const char *s, size_t n);
void kvbuf_puts(struct kvbuf *b, const char *s);

#endif
