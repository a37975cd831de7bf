/* upstream: see upstream.h. */
#include "upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/util.h"

int upstream_connect(int port, int timeout_ms) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return folio_err(FOLIO_EIO, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    if (rc != 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t el = sizeof err;
        if (poll(&p, 1, timeout_ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0) rc = 0;
        else errno = err ? err : ETIMEDOUT;
    }
    if (rc != 0) {
        int e = errno;
        close(fd);
        return folio_err(FOLIO_EIO, "connect to 127.0.0.1:%d: %s", port, strerror(e));
    }
    /* Back to blocking: callers bound their waits with poll. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int upstream_write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return folio_err(FOLIO_EIO, "write to engine: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int upstream_get(int port, const char *path, const char *secret, int timeout_ms, int *status, char *body, size_t cap) {
    int fd = upstream_connect(port, timeout_ms);
    if (fd < 0) return fd;
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s%s%sConnection: close\r\n\r\n", path,
                     port, secret ? "Authorization: Bearer " : "", secret ? secret : "", secret ? "\r\n" : "");
    int rc = (n > 0 && (size_t)n < sizeof req) ? upstream_write_all(fd, req, (size_t)n) : folio_err(FOLIO_EINVAL, "path too long");
    /* On the heap: this runs on HTTP worker threads, whose stacks are small. */
    const size_t cap_buf = 65536;
    char *buf = malloc(cap_buf);
    size_t len = 0;
    if (!buf && !rc) rc = folio_err(FOLIO_ENOMEM, "out of memory");
    while (!rc && len < cap_buf - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, timeout_ms);
        if (pr <= 0) {
            rc = folio_err(FOLIO_EIO, "no answer from 127.0.0.1:%d%s within %d ms", port, path, timeout_ms);
            break;
        }
        ssize_t r = recv(fd, buf + len, cap_buf - 1 - len, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    int code = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1) {
        free(buf);
        return folio_err(FOLIO_EIO, "not an HTTP answer from port %d", port);
    }
    *status = code;
    if (body && cap) {
        const char *b = strstr(buf, "\r\n\r\n");
        b = b ? b + 4 : buf + len;
        size_t bl = strlen(b);
        if (bl >= cap) bl = cap - 1;
        memcpy(body, b, bl);
        body[bl] = '\0';
    }
    free(buf);
    return 0;
}

int upstream_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return folio_err(FOLIO_EIO, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port > 0 ? port : folio_err(FOLIO_EIO, "no free loopback port");
}
