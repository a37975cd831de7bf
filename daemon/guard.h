/* guard: the request checks foliod applies before it trusts a credential.
 *   Origin: a browser names the page's origin on every cross-origin request and on every
 *     same-origin POST/PUT/PATCH/DELETE. SameSite=Strict does not separate ports (another
 *     port on the host is the same site), so state-changing requests authenticated by the
 *     session cookie must show an Origin whose host[:port] is the request's Host (the scheme
 *     is ignored, so a TLS proxy in front still matches) or Sec-Fetch-Site: same-origin.
 *   Content-Type: /api bodies are application/json, which a cross-origin form or a
 *     "simple" fetch cannot send without a CORS preflight (never granted).
 *   Back-off: per client address (auth_throttle), a 429 with Retry-After while it waits.
 * Thread-safe; every function reads only the connection's request. */
#ifndef FOLIO_GUARD_H
#define FOLIO_GUARD_H

struct foliod;
struct mg_connection;

/* 1 when the request carries an Origin header that is not the request's own (Host). */
int guard_cross_origin(struct mg_connection *c);
/* 1 when the request shows it comes from a page of this origin: Origin equal to Host, or
 * Sec-Fetch-Site: same-origin. */
int guard_same_origin(struct mg_connection *c);
/* 1 when the request has a body (Content-Length > 0, or chunked). */
int guard_has_body(struct mg_connection *c);
/* 1 when Content-Type is application/json (parameters such as charset allowed). */
int guard_json_type(struct mg_connection *c);
/* The client address (remote_addr). */
const char *guard_addr(struct mg_connection *c);

/* 1 (and the client answered 429 with Retry-After) while the client's address must wait
 * after failed attempts; else 0, and nothing is sent. */
int guard_throttled(struct foliod *d, struct mg_connection *c);
/* A failed credential from the client's address; a success. */
void guard_failed(struct foliod *d, struct mg_connection *c);
void guard_succeeded(struct foliod *d, struct mg_connection *c);

#endif
