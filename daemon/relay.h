/* relay: the parsing half of the proxy (proxy.c), kept free of sockets so that it is fuzzed
 * on its own: an engine's response head, and its chunked body one chunk at a time. The engine
 * is trusted, but a bug or a half-written response must end in an error, never in a read
 * past the buffer. */
#ifndef FOLIO_RELAY_H
#define FOLIO_RELAY_H

#include <stddef.h>

struct relay_head {
    int status;
    char content_type[256];
    char content_length[32];  /* "" when absent */
    char cache_control[128];
    char allow[64];
    int chunked;              /* Transfer-Encoding: chunked */
};

/* Parses a response head from buf[0..len). Returns the head's length (through the blank
 * line) with *h filled, 0 when more bytes are needed, or -1 when it is not an HTTP response. */
long relay_parse_head(const char *buf, size_t len, struct relay_head *h);

/* One chunk of a chunked body from buf[0..len): 1 with payload, plen and used (the bytes it
 * took) set; 2 at the last (zero-size) chunk; 0 when more bytes are needed; -1 when the
 * framing is broken or a chunk is larger than max. */
int relay_next_chunk(const char *buf, size_t len, size_t max, const char **payload, size_t *plen, size_t *used);

#endif
