/* http_conn: see http_conn.h. */
#include "http_conn.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/socket.h>

#include "util.h"

/* Every request, through the callback CivetWeb takes before it starts: mg_start2 listens at
 * once, so a handler registered after it would leave a window in which CivetWeb answers 404
 * (a client polling /health from the spawn saw it). Called after URL decoding and dot-segment
 * removal, as a registered handler would be. */
static int route_request(struct mg_connection *c) {
    const struct http_route *r = mg_get_user_data(mg_get_context(c));
    return r->handler(c, r->ud);
}

int http_conn_listen(const char *host, int port, int threads, struct http_route *route, struct mg_context **ctx,
                     int *port_out) {
    char ports[128], nthreads[16];
    if (!host || !*host) host = "127.0.0.1";
    /* CivetWeb takes "addr:port"; an IPv6 address goes in brackets. */
    if (strchr(host, ':')) snprintf(ports, sizeof ports, "[%s]:%d", host, port);
    else snprintf(ports, sizeof ports, "%s:%d", host, port);
    snprintf(nthreads, sizeof nthreads, "%d", threads);
    /* Each streaming client holds one worker thread, so the thread count is the number of
     * concurrent connections; tcp_nodelay sends each SSE delta at once. */
    const char *opts[] = {"listening_ports", ports, "num_threads", nthreads, "tcp_nodelay", "1",
                          "enable_keep_alive", "yes", "keep_alive_timeout_ms", "30000", "listen_backlog", "1024",
                          "request_timeout_ms", "600000", "decode_url", "yes",
                          /* CivetWeb would answer CORS preflights itself, for any origin: off,
                           * so that the handler applies its own policy. */
                          "access_control_allow_origin", "", "access_control_allow_methods", "",
                          "access_control_allow_headers", "", NULL};
    mg_init_library(0);
    struct mg_callbacks cb = {.begin_request = route_request};
    char why[256] = "";
    unsigned code = 0;
    struct mg_init_data init = {.callbacks = &cb, .user_data = route, .configuration_options = opts};
    struct mg_error_data ed = {.code = &code, .text = why, .text_buffer_size = sizeof why};
    *ctx = mg_start2(&init, &ed);
    if (!*ctx) {
        mg_exit_library();
        return folio_err(FOLIO_EIO, "cannot listen on %s: %s", ports, why[0] ? why : "unknown error");
    }
    struct mg_server_port sp[4];
    int np = mg_get_server_ports(*ctx, 4, sp);
    *port_out = np > 0 ? sp[0].port : port;
    return 0;
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
