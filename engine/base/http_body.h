/* http_body: a request's body read whole into memory under a size limit, for folio-engine's
 * API and foliod alike. The limit holds before anything is buffered: a declared
 * Content-Length over it is refused unread, and a chunked body grows its buffer by doubling
 * to at most the limit plus the one byte that shows it is over. Nothing is sent: the caller
 * answers in its own words. */
#ifndef FOLIO_HTTP_BODY_H
#define FOLIO_HTTP_BODY_H

#include <stddef.h>

struct mg_connection;

enum http_body_status {
    HTTP_BODY_OK = 0,
    HTTP_BODY_GONE = -1,        /* the read failed: the client is gone, nobody to answer */
    HTTP_BODY_TOO_LARGE = 413,  /* over max (declared, or as it arrived) */
    HTTP_BODY_NO_MEMORY = 500,
};

/* Reads the body of c's request, at most max bytes, into *out (malloc'd, NUL-terminated;
 * the caller frees) and *len. Returns an enum http_body_status; *out is NULL unless
 * HTTP_BODY_OK. */
int http_body_read(struct mg_connection *c, size_t max, char **out, size_t *len);

#endif
