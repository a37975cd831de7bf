/* wire: what foliod's handlers (front.c, admin_api.c) write to and read from a client:
 * JSON responses, and request bodies under a size limit, refused in foliod's words. Errors
 * go out through base/openai_error.h. */
#ifndef FOLIO_WIRE_H
#define FOLIO_WIRE_H

#include <stddef.h>

struct mg_connection;

/* A complete response with a JSON body (no-store); extra_headers are lines ending in \r\n,
 * or NULL. */
void wire_send_json(struct mg_connection *c, int status, const char *json, const char *extra_headers);

/* Reads the request body, at most max bytes, NUL-terminated; the caller frees *out. A
 * declared Content-Length over max is refused (413) before anything is read, a chunked body
 * as soon as it passes max (base/http_body.h). Non-zero when there is no body to use: the
 * client has been answered (413, 500) or is gone. */
int wire_read_body(struct mg_connection *c, size_t max, char **out, size_t *len);

#endif
