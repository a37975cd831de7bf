/* http_conn: the Host allowlist of loopback servers, and a real CivetWeb server on loopback
 * with a per-client connection cap and a short client timeout: idle connections from one
 * address beyond the cap are shut at once, the others time out, and a second address is
 * served all along. */
#include "base/http_conn.h"
#include "test.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

TEST(http_host_allowlist) {
    const char *names[] = {"folio.lan"};
    CHECK(http_host_allowed(NULL, NULL, 0));
    CHECK(http_host_allowed("localhost", NULL, 0));
    CHECK(http_host_allowed("localhost:8000", NULL, 0));
    CHECK(http_host_allowed("LOCALHOST.:8000", NULL, 0));
    CHECK(http_host_allowed("app.localhost:3000", NULL, 0));
    CHECK(http_host_allowed("127.0.0.1:8000", NULL, 0));
    CHECK(http_host_allowed("10.1.2.3", NULL, 0));
    CHECK(http_host_allowed("[::1]:8000", NULL, 0));
    CHECK(http_host_allowed("[::1]", NULL, 0));
    CHECK(http_host_allowed("folio.lan:8000", names, 1));
    CHECK(!http_host_allowed("folio.lan:8000", NULL, 0));
    CHECK(!http_host_allowed("evil.example", names, 1));
    CHECK(!http_host_allowed("evil.example:8000", names, 1));
    CHECK(!http_host_allowed("localhost.evil.example", names, 1));
    CHECK(!http_host_allowed("evillocalhost", names, 1));
    CHECK(!http_host_allowed("127.0.0.1.evil.example", names, 1));
    CHECK(!http_host_allowed("[::1", names, 1));
    CHECK(!http_host_allowed("[::1]x", names, 1));
    CHECK(!http_host_allowed("[evil.example]:80", names, 1));
    CHECK(!http_host_allowed("", names, 1));
}

static int ok_handler(struct mg_connection *c, void *ud) {
    (void)ud;
    mg_printf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    return 200;
}

/* A TCP connection to 127.0.0.1:port from source address `from`. */
static int dial(const char *from, int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, from, &src.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof src) != 0 ||
        connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

/* Reads until EOF or ms pass; the bytes read (into buf, NUL-terminated), -1 on timeout. */
static int read_all(int fd, char *buf, size_t cap, int ms) {
    size_t n = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        int left = ms - (int)((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0) return -1;
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
        if (n + 1 >= cap) break;
    }
    buf[n] = '\0';
    return (int)n;
}

static int request(const char *from, int port, const char *host, char *buf, size_t cap) {
    int fd = dial(from, port);
    if (fd < 0) return -1;
    char req[256];
    int n = snprintf(req, sizeof req, "GET /x HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host);
    int got = send(fd, req, (size_t)n, MSG_NOSIGNAL) == n ? read_all(fd, buf, cap, 3000) : -1;
    close(fd);
    return got;
}

TEST(http_conn_cap_timeout_and_host) {
    struct http_route route = {ok_handler, NULL};
    struct http_conn_params p = http_conn_default_params();
    p.port = 0;
    p.threads = 16;
    p.timeout_s = 2;
    p.max_conns_per_client = 4;
    p.server_names[p.num_server_names++] = "folio.lan";
    struct http_server *s = NULL;
    if (http_server_start(&p, &route, &s)) {
        CHECK(!"http_server_start");
        return;
    }
    const int port = http_server_port(s);
    char buf[1024];
    /* Ten idle connections from .1: four are held (each a worker), six are shut down at once. */
    int idle[10], refused = 0;
    for (int i = 0; i < 10; i++) {
        idle[i] = dial("127.0.0.1", port);
        CHECK(idle[i] >= 0);
        if (idle[i] >= 0 && send(idle[i], "GET / HT", 8, MSG_NOSIGNAL) != 8) CHECK(!"send");
    }
    usleep(600 * 1000); /* the guard looks every 100 ms; the timeout (2 s) is still far */
    for (int i = 0; i < 10; i++) {
        struct pollfd pf = {.fd = idle[i], .events = POLLIN};
        if (idle[i] >= 0 && poll(&pf, 1, 0) > 0 && read_all(idle[i], buf, sizeof buf, 100) >= 0) refused++;
    }
    CHECK_EQ_INT(refused, 6);
    /* Another address is served while .1 holds its four. */
    CHECK(request("127.0.0.2", port, "127.0.0.1", buf, sizeof buf) > 0);
    CHECK(strstr(buf, "200 OK") != NULL);
    /* The held ones are closed once the client timeout (2 s) passes without headers. */
    int closed = 0;
    for (int i = 0; i < 10; i++) {
        if (idle[i] < 0) continue;
        if (read_all(idle[i], buf, sizeof buf, 4000) >= 0) closed++;
        close(idle[i]);
    }
    CHECK_EQ_INT(closed, 10);
    usleep(200 * 1000); /* CivetWeb releases a slot just after the socket closes */
    /* Their slots are free again. */
    CHECK(request("127.0.0.1", port, "localhost", buf, sizeof buf) > 0);
    CHECK(strstr(buf, "200 OK") != NULL);
    /* DNS rebinding: a name that is not ours gets 421; a configured one passes. */
    CHECK(request("127.0.0.1", port, "evil.example", buf, sizeof buf) > 0);
    CHECK(strstr(buf, "421") != NULL);
    CHECK(request("127.0.0.1", port, "folio.lan:8000", buf, sizeof buf) > 0);
    CHECK(strstr(buf, "200 OK") != NULL);
    http_server_stop(s);
}
