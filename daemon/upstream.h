/* upstream: plain HTTP/1.1 to an engine on loopback, for the supervisor's health checks, the
 * admin API's reads of each engine's /stats, and the proxy's connections. Blocking sockets
 * with poll-based timeouts; no allocation beyond the caller's buffers. */
#ifndef FOLIO_UPSTREAM_H
#define FOLIO_UPSTREAM_H

#include <stddef.h>

/* A TCP connection to 127.0.0.1:port within timeout_ms; the descriptor, or a negative code. */
int upstream_connect(int port, int timeout_ms);
/* Writes all of buf (EINTR and short writes handled); 0 or FOLIO_EIO. */
int upstream_write_all(int fd, const void *buf, size_t n);
/* GET path with an optional bearer secret; the status in *status and up to cap-1 bytes of
 * the body, NUL-terminated, in body (may be NULL). 0, or a negative code when there was no
 * HTTP answer within timeout_ms. */
int upstream_get(int port, const char *path, const char *secret, int timeout_ms, int *status, char *body, size_t cap);
/* A free loopback port at this moment (bound and released). */
int upstream_free_port(void);

#endif
