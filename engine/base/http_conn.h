/* http_conn: what folio-engine's API and foliod's port share about CivetWeb: starting a
 * server the same way, the limits every connection meets before a handler sees it, and the
 * socket under a connection, so that a handler blocked on something else (the engine's
 * tokens, an upstream engine) can notice that its client went away. CivetWeb does not expose
 * the descriptor; it is found by matching the connection's addresses against /proc/self/fd.
 *
 * The limits, applied to every connection of a server:
 * - a client timeout: CivetWeb's one request timer bounds the time to send the request
 *   headers, each stall while sending a body, and each stall in reading a response (a stream
 *   whose client stopped reading fails its next write, and the handler aborts the request).
 *   A generation itself has no time limit. Idle keep-alive connections close after it too.
 * - a cap on concurrent connections per client address: each connection holds a worker
 *   thread, so without it one address could hold them all with requests it never finishes.
 *   Connections over the cap are shut down within 100 ms, whatever state they are in.
 * - a Host allowlist when the server listens on a loopback address: a browser page that
 *   rebinds its own DNS name to 127.0.0.1 would otherwise reach the loopback-only API (the
 *   class of Ollama's CVE-2024-28224). IP literals, localhost and *.localhost pass (no
 *   attacker can own their origin), plus the configured server names; others get 421. */
#ifndef FOLIO_HTTP_CONN_H
#define FOLIO_HTTP_CONN_H

struct mg_connection;

/* The one handler a server calls for every request, with its argument. It returns 1 (or the
 * HTTP status) once it has answered. The struct must outlive the server. */
struct http_route {
    int (*handler)(struct mg_connection *, void *);
    void *ud;
};

#define HTTP_MAX_SERVER_NAMES 16

struct http_conn_params {
    const char *host;             /* listen address ("127.0.0.1") */
    int port;                     /* 0: any free port */
    int threads;                  /* workers = concurrent connections */
    int timeout_s;                /* client timeout (20); see above */
    int max_conns_per_client;     /* per remote address; 0: no cap */
    const char *server_names[HTTP_MAX_SERVER_NAMES]; /* Host names allowed besides localhost */
    int num_server_names;
};

struct http_conn_params http_conn_default_params(void);

struct http_server;

/* Starts a CivetWeb server with p's limits, every path going to `route`; *out on success,
 * else a message naming the address. Stop it with http_server_stop. */
int http_server_start(const struct http_conn_params *p, struct http_route *route, struct http_server **out);
/* The port it listens on. */
int http_server_port(const struct http_server *s);
/* Stops the server (waits for its handler threads) and frees it; NULL does nothing. */
void http_server_stop(struct http_server *s);

/* 1 when host (a Host header's value, with or without a port) may reach a loopback server
 * that also answers to names[n]. Exposed for the tests. */
int http_host_allowed(const char *host, const char *const *names, int n);

/* The connection's socket descriptor, or -1 when it cannot be found. */
int http_conn_fd(const struct mg_connection *c);
/* After an answer sent without reading the request's body (a 413): ends our side (FIN) and
 * reads and discards what the client still sends, until it stops or ms milliseconds pass.
 * Closing with unread data resets the connection, and a client still writing its body may
 * then lose the answer before it reads it (a lingering close, as Apache's). */
void http_conn_linger(struct mg_connection *c, int ms);
/* 1 when the peer of fd has hung up (POLLRDHUP), else 0; fd < 0 is never gone. */
int http_client_gone(int fd);

#endif
