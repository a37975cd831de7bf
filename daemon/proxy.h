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

/* Relays `method uri` with body to 127.0.0.1:port. model names the model in errors. Returns 0
 * when the engine's whole response reached the client, else a negative code (the client has
 * been answered or is gone either way), except FOLIO_EBUSY: with may_retry set, an engine
 * that answers 503 (it is draining) leaves the client unanswered, for the caller to route the
 * request elsewhere. */
int proxy_forward(struct mg_connection *c, int port, const char *secret, const char *method, const char *uri,
                  const char *body, size_t len, const char *model, int may_retry);

#endif
