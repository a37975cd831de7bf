/* http_conn: what folio-engine's API and foliod's port share about CivetWeb: starting a
 * server the same way, and the socket under a connection, so that a handler blocked on
 * something else (the engine's tokens, an upstream engine) can notice that its client went
 * away. CivetWeb does not expose the descriptor; it is found by matching the connection's
 * addresses against /proc/self/fd. */
#ifndef FOLIO_HTTP_CONN_H
#define FOLIO_HTTP_CONN_H

struct mg_connection;
struct mg_context;

/* The one handler a server calls for every request, with its argument. It returns 1 (or the
 * HTTP status) once it has answered. The struct must outlive the server. */
struct http_route {
    int (*handler)(struct mg_connection *, void *);
    void *ud;
};

/* Starts a CivetWeb server on host:port (port 0: any free port) with `threads` workers, every
 * path going to `route`; *ctx and the actual *port_out on success, else a message naming the
 * address. Stop it with mg_stop then mg_exit_library. */
int http_conn_listen(const char *host, int port, int threads, struct http_route *route, struct mg_context **ctx,
                     int *port_out);

/* The connection's socket descriptor, or -1 when it cannot be found. */
int http_conn_fd(const struct mg_connection *c);
/* 1 when the peer of fd has hung up (POLLRDHUP), else 0; fd < 0 is never gone. */
int http_client_gone(int fd);

#endif
