/* guard: see guard.h. */
#include "guard.h"

#include <civetweb.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "foliod.h"
#include "base/openai_error.h"
#include "base/util.h"

/* Origin "scheme://host[:port]" against Host "host[:port]": equal ignoring the scheme and
 * case. "null" (a sandboxed or file: page) never matches. */
static int origin_matches_host(const char *origin, const char *host) {
    if (!origin || !host) return 0;
    const char *p = strstr(origin, "://");
    if (!p) return 0;
    p += 3;
    size_t n = strlen(p);
    while (n > 0 && p[n - 1] == '/') n--; /* tolerate a trailing slash */
    size_t hn = strlen(host);
    while (hn > 0 && (host[hn - 1] == ' ' || host[hn - 1] == '\t')) hn--;
    return n > 0 && n == hn && !strncasecmp(p, host, n);
}

int guard_cross_origin(struct mg_connection *c) {
    const char *o = mg_get_header(c, "Origin");
    return o && !origin_matches_host(o, mg_get_header(c, "Host"));
}

int guard_same_origin(struct mg_connection *c) {
    const char *o = mg_get_header(c, "Origin");
    if (o) return origin_matches_host(o, mg_get_header(c, "Host"));
    const char *sfs = mg_get_header(c, "Sec-Fetch-Site");
    return sfs && !strcasecmp(sfs, "same-origin");
}

int guard_has_body(struct mg_connection *c) {
    const struct mg_request_info *ri = mg_get_request_info(c);
    if (ri->content_length > 0) return 1;
    const char *te = mg_get_header(c, "Transfer-Encoding");
    return ri->content_length < 0 && te && strcasestr(te, "chunked") != NULL;
}

int guard_json_type(struct mg_connection *c) {
    const char *ct = mg_get_header(c, "Content-Type");
    if (!ct) return 0;
    while (*ct == ' ') ct++;
    if (strncasecmp(ct, "application/json", 16) != 0) return 0;
    const char *rest = ct + 16;
    while (*rest == ' ' || *rest == '\t') rest++;
    return *rest == '\0' || *rest == ';';
}

const char *guard_addr(struct mg_connection *c) {
    const struct mg_request_info *ri = mg_get_request_info(c);
    return ri && ri->remote_addr[0] ? ri->remote_addr : "unknown";
}

int guard_throttled(struct foliod *d, struct mg_connection *c) {
    const char *addr = guard_addr(c);
    const double w = auth_throttle_wait(d->throttle, addr, folio_now());
    if (w <= 0) return 0;
    const long secs = (long)ceil(w);
    char msg[160], hdr[64];
    snprintf(msg, sizeof msg, "too many failed attempts from %.60s: retry in %ld s", addr, secs);
    snprintf(hdr, sizeof hdr, "Retry-After: %ld\r\n", secs);
    openai_error_write(c, 429, "RateLimitError", NULL, hdr, msg);
    pthread_mutex_lock(&d->stats_mu);
    d->unauthorized++;
    pthread_mutex_unlock(&d->stats_mu);
    return 1;
}

void guard_failed(struct foliod *d, struct mg_connection *c) {
    auth_throttle_fail(d->throttle, guard_addr(c), folio_now());
}

void guard_succeeded(struct foliod *d, struct mg_connection *c) { auth_throttle_ok(d->throttle, guard_addr(c)); }
