/* proxy: one OpenAI request relayed to the engine that serves its model, over loopback with
 * the engine's secret. Responses pass through as they come: a streamed completion's chunks
 * reach the client one by one, never buffered whole. A client that disconnects closes the
 * engine connection, which aborts the request there. An engine that dies mid-request gives
 * the client a clean error (a 502 before the response started, an SSE error event and
 * [DONE] after), never a hang. */
#ifndef FOLIO_PROXY_H
#define FOLIO_PROXY_H

#include <stddef.h>

struct mg_connection;

/* What a caller adds to one relay (responses.c: its headers, and the answer it keeps). Every
 * member may be NULL. The taps see the engine's answer as the client gets it: on_head once
 * (after a retry has been ruled out), on_body with each piece of the body (chunked framing
 * removed) before that piece is written to the client, and on_end when the body is complete,
 * before its last bytes are written. So whatever a tap does with a whole answer (store it) is
 * done before the client can have read it all and sent its next request. */
struct proxy_extra {
    const char *headers; /* more request header lines for the engine, each ending in \r\n */
    void (*on_head)(void *ud, int status, const char *content_type);
    void (*on_body)(void *ud, const char *p, size_t n);
    void (*on_end)(void *ud);
    void *ud;
};

/* Relays `method uri` with body to 127.0.0.1:port. model names the model in errors; x may be
 * NULL. Returns 0 when the engine's whole response reached the client, else a negative code
 * (the client has been answered or is gone either way), except FOLIO_EBUSY: with may_retry
 * set, an engine that answers 503 (it is draining) leaves the client unanswered, for the
 * caller to route the request elsewhere. */
int proxy_forward(struct mg_connection *c, int port, const char *secret, const char *method, const char *uri,
                  const char *body, size_t len, const char *model, int may_retry, const struct proxy_extra *x);

#endif
