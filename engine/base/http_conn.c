/* http_conn: see http_conn.h. */
#include "base/http_conn.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/openai_error.h"
#include "base/util.h"

struct http_server {
    struct http_conn_params p;
    struct http_route *route;
    struct mg_context *ctx;
    int port;
    int loopback;                 /* listening on a loopback address: check Host */
    atomic_int conns;             /* open connections (CivetWeb's workers busy with one) */
    pthread_t guard;              /* enforces max_conns_per_client */
    int guard_running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;                 /* under mu */
};

struct http_conn_params http_conn_default_params(void) {
    return (struct http_conn_params){.host = "127.0.0.1", .port = 8000, .threads = 256, .timeout_s = 20,
                                     .max_conns_per_client = 0};
}

static int is_loopback_host(const char *h) {
    if (!h || !*h) return 1; /* the default, 127.0.0.1 */
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, h, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, h, &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
    return !strcasecmp(h, "localhost");
}

int http_host_allowed(const char *host, const char *const *names, int n) {
    if (!host) return 1; /* HTTP/1.0 without Host: no browser sends that */
    char h[256];
    size_t len = strlen(host);
    if (len == 0 || len >= sizeof h) return 0;
    memcpy(h, host, len + 1);
    /* Strip the port: "[v6]:port", "name:port"; a bare v6 literal has several colons. */
    if (h[0] == '[') {
        char *close = strchr(h, ']');
        if (!close || (close[1] && close[1] != ':')) return 0;
        *close = '\0';
        struct in6_addr a6;
        return inet_pton(AF_INET6, h + 1, &a6) == 1;
    }
    char *colon = strchr(h, ':');
    if (colon && !strchr(colon + 1, ':')) *colon = '\0';
    len = strlen(h);
    if (len && h[len - 1] == '.') h[--len] = '\0'; /* "localhost." is localhost */
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, h, &a4) == 1 || inet_pton(AF_INET6, h, &a6) == 1) return 1;
    if (!strcasecmp(h, "localhost")) return 1;
    if (len > 10 && !strcasecmp(h + len - 10, ".localhost")) return 1;
    for (int i = 0; i < n; i++)
        if (names[i] && !strcasecmp(h, names[i])) return 1;
    return 0;
}

/* Every request, through the callback CivetWeb takes before it starts: mg_start2 listens at
 * once, so a handler registered after it would leave a window in which CivetWeb answers 404
 * (a client polling /health from the spawn saw it). Called after URL decoding and dot-segment
 * removal, as a registered handler would be. */
static int route_request(struct mg_connection *c) {
    struct http_server *s = mg_get_user_data(mg_get_context(c));
    if (s->loopback &&
        !http_host_allowed(mg_get_header(c, "Host"), (const char *const *)s->p.server_names, s->p.num_server_names)) {
        openai_error_write(c, 421, "invalid_request_error", NULL, "Connection: close\r\n",
                           "this server answers only to localhost names on a loopback address; add the host name you "
                           "use with --server-name");
        return 421;
    }
    return s->route->handler(c, s->route->ud);
}

/* CivetWeb hands a connection to a worker before its request is read, but tells nothing of
 * the peer until the headers are in (mg_get_request_info is NULL until then), and a client
 * that never finishes its headers is exactly the one to cap. So the connections are only
 * counted here, and the cap is enforced by the guard thread below from the sockets. */
static int on_connection(const struct mg_connection *c, void **conn_data) {
    struct http_server *s = mg_get_user_data(mg_get_context(c));
    atomic_fetch_add(&s->conns, 1);
    return 0;
}

static void on_closed(const struct mg_connection *c) {
    struct http_server *s = mg_get_user_data(mg_get_context(c));
    atomic_fetch_sub(&s->conns, 1);
}

struct peer_sock {
    int fd;
    char addr[INET6_ADDRSTRLEN];
};

static int by_addr_then_fd(const void *a, const void *b) {
    const struct peer_sock *x = a, *y = b;
    int c = strcmp(x->addr, y->addr);
    return c ? c : (x->fd > y->fd) - (x->fd < y->fd);
}

/* The accepted sockets of this server (local port = ours, connected), with their peers'
 * addresses; *n of at most cap. */
static void list_peers(const struct http_server *s, struct peer_sock *out, int cap, int *n) {
    *n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    for (struct dirent *de; *n < cap && (de = readdir(d));) {
        char *end;
        long fd = strtol(de->d_name, &end, 10);
        if (*end || end == de->d_name || fd == dirfd(d)) continue;
        struct sockaddr_storage self, peer;
        socklen_t sl = sizeof self, pl = sizeof peer;
        if (getsockname((int)fd, (struct sockaddr *)&self, &sl) != 0) continue;
        int port;
        if (self.ss_family == AF_INET) port = ntohs(((struct sockaddr_in *)&self)->sin_port);
        else if (self.ss_family == AF_INET6) port = ntohs(((struct sockaddr_in6 *)&self)->sin6_port);
        else continue;
        if (port != s->port || getpeername((int)fd, (struct sockaddr *)&peer, &pl) != 0) continue;
        struct peer_sock *p = &out[*n];
        p->fd = (int)fd;
        if (peer.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&peer)->sin_addr, p->addr, sizeof p->addr);
        else
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&peer)->sin6_addr, p->addr, sizeof p->addr);
        (*n)++;
    }
    closedir(d);
}

/* Every 100 ms while more connections are open than one address may hold: the sockets of
 * each address beyond the cap are shut down (the highest descriptors, most often the newest),
 * which ends their reads and writes at once and frees their workers. A connection over the
 * cap lives at most one period; the scan costs two system calls per open descriptor. */
static void *guard_main(void *arg) {
    struct http_server *s = arg;
    const int cap = s->p.threads * 2 + 64;
    struct peer_sock *ps = calloc((size_t)cap, sizeof *ps);
    pthread_mutex_lock(&s->mu);
    while (ps && !s->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        if (s->stopping || atomic_load(&s->conns) <= s->p.max_conns_per_client) continue;
        pthread_mutex_unlock(&s->mu);
        int n = 0;
        list_peers(s, ps, cap, &n);
        qsort(ps, (size_t)n, sizeof *ps, by_addr_then_fd);
        for (int i = 0, run = 0; i < n; i++) {
            run = i > 0 && !strcmp(ps[i].addr, ps[i - 1].addr) ? run + 1 : 1;
            if (run > s->p.max_conns_per_client) shutdown(ps[i].fd, SHUT_RDWR);
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    free(ps);
    return NULL;
}

int http_server_start(const struct http_conn_params *p, struct http_route *route, struct http_server **out) {
    char ports[128], nthreads[16], timeout[24];
    int rc = 0;
    struct http_server *s = calloc(1, sizeof *s);
    if (!s) return folio_err(FOLIO_ENOMEM, "out of memory");
    s->p = *p;
    s->route = route;
    if (!s->p.host || !*s->p.host) s->p.host = "127.0.0.1";
    if (s->p.threads <= 0) s->p.threads = http_conn_default_params().threads;
    if (s->p.timeout_s <= 0) s->p.timeout_s = http_conn_default_params().timeout_s;
    if (s->p.num_server_names > HTTP_MAX_SERVER_NAMES) s->p.num_server_names = HTTP_MAX_SERVER_NAMES;
    s->loopback = is_loopback_host(s->p.host);
    atomic_init(&s->conns, 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    /* CivetWeb takes "addr:port"; an IPv6 address goes in brackets. */
    if (strchr(s->p.host, ':')) snprintf(ports, sizeof ports, "[%s]:%d", s->p.host, p->port);
    else snprintf(ports, sizeof ports, "%s:%d", s->p.host, p->port);
    snprintf(nthreads, sizeof nthreads, "%d", s->p.threads);
    snprintf(timeout, sizeof timeout, "%lld", (long long)s->p.timeout_s * 1000);
    /* Each streaming client holds one worker thread, so the thread count is the number of
     * concurrent connections; tcp_nodelay sends each SSE delta at once. */
    const char *opts[] = {"listening_ports", ports, "num_threads", nthreads, "tcp_nodelay", "1",
                          "enable_keep_alive", "yes", "keep_alive_timeout_ms", timeout, "listen_backlog", "1024",
                          "request_timeout_ms", timeout, "decode_url", "yes",
                          /* CivetWeb would answer CORS preflights itself, for any origin: off,
                           * so that the handler applies its own policy. */
                          "access_control_allow_origin", "", "access_control_allow_methods", "",
                          "access_control_allow_headers", "", NULL};
    mg_init_library(0);
    struct mg_callbacks cb = {.begin_request = route_request, .init_connection = on_connection,
                              .connection_closed = on_closed};
    char why[256] = "";
    unsigned code = 0;
    struct mg_init_data init = {.callbacks = &cb, .user_data = s, .configuration_options = opts};
    struct mg_error_data ed = {.code = &code, .text = why, .text_buffer_size = sizeof why};
    s->ctx = mg_start2(&init, &ed);
    if (!s->ctx) {
        mg_exit_library();
        rc = folio_err(FOLIO_EIO, "cannot listen on %s: %s", ports, why[0] ? why : "unknown error");
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return rc;
    }
    struct mg_server_port sp[4];
    int np = mg_get_server_ports(s->ctx, 4, sp);
    s->port = np > 0 ? sp[0].port : p->port;
    if (s->p.max_conns_per_client > 0) {
        if (pthread_create(&s->guard, NULL, guard_main, s) != 0) {
            http_server_stop(s);
            return folio_err(FOLIO_EIO, "cannot start the connection guard thread");
        }
        s->guard_running = 1;
    }
    *out = s;
    return 0;
}

int http_server_port(const struct http_server *s) { return s->port; }

void http_server_stop(struct http_server *s) {
    if (!s) return;
    if (s->guard_running) {
        pthread_mutex_lock(&s->mu);
        s->stopping = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->guard, NULL);
    }
    mg_stop(s->ctx);
    mg_exit_library();
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int http_conn_fd(const struct mg_connection *c) {
    const struct mg_request_info *ri = mg_get_request_info(c);
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int found = -1;
    struct dirent *de;
    while (found < 0 && (de = readdir(d))) {
        char *end;
        long fd = strtol(de->d_name, &end, 10);
        if (*end || end == de->d_name || fd == dirfd(d)) continue;
        struct sockaddr_storage peer, self;
        socklen_t pl = sizeof peer, sl = sizeof self;
        if (getpeername((int)fd, (struct sockaddr *)&peer, &pl) != 0) continue;
        if (getsockname((int)fd, (struct sockaddr *)&self, &sl) != 0) continue;
        char addr[64] = "";
        int pport = 0, sport = 0;
        if (peer.ss_family == AF_INET) {
            const struct sockaddr_in *p4 = (const struct sockaddr_in *)&peer;
            inet_ntop(AF_INET, &p4->sin_addr, addr, sizeof addr);
            pport = ntohs(p4->sin_port);
            sport = ntohs(((const struct sockaddr_in *)&self)->sin_port);
        } else if (peer.ss_family == AF_INET6) {
            const struct sockaddr_in6 *p6 = (const struct sockaddr_in6 *)&peer;
            inet_ntop(AF_INET6, &p6->sin6_addr, addr, sizeof addr);
            pport = ntohs(p6->sin6_port);
            sport = ntohs(((const struct sockaddr_in6 *)&self)->sin6_port);
        } else {
            continue;
        }
        if (pport == ri->remote_port && sport == ri->server_port && !strcmp(addr, ri->remote_addr)) found = (int)fd;
    }
    closedir(d);
    return found;
}

int http_client_gone(int fd) {
    if (fd < 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

void http_conn_linger(struct mg_connection *c, int ms) {
    const int fd = http_conn_fd(c);
    if (fd < 0) return;
    shutdown(fd, SHUT_WR);
    const double deadline = folio_now() + ms / 1000.0;
    char buf[16384];
    for (;;) {
        const double left = deadline - folio_now();
        if (left <= 0) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0) break;
        const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR))) break;
    }
}
