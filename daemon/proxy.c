/* proxy: see proxy.h. */
#include "proxy.h"

#include <civetweb.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/http_conn.h"
#include "base/openai_error.h"
#include "relay.h"
#include "upstream.h"
#include "base/util.h"

#define HEAD_CAP 16384
#define BUF_CAP 65536

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

/* Reads more of the engine's answer into buf[*len..cap), waking every 50 ms to see whether
 * the client is still there. 1: got bytes; 0: the engine closed; -1: the client left or the
 * read failed. */
static int fill(int up, int client_fd, char *buf, size_t *len, size_t cap) {
    for (;;) {
        struct pollfd p = {.fd = up, .events = POLLIN};
        int r = poll(&p, 1, 50);
        if (r < 0 && errno != EINTR) return -1;
        if (r > 0) {
            ssize_t n = recv(up, buf + *len, cap - *len, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return 0; /* a reset reads as the engine going away */
            if (n == 0) return 0;
            *len += (size_t)n;
            return 1;
        }
        if (http_client_gone(client_fd)) return -1;
    }
}

/* The engine stopped in the middle of a stream: close it the way the engine would have,
 * with an SSE error event and [DONE], so that SDK clients raise a clean error. */
static void stream_error(struct mg_connection *c, const char *model) {
    char msg[400], ev[640];
    snprintf(msg, sizeof msg, "the engine serving %s stopped during the request", model);
    char *body = openai_error_json(502, "server_error", NULL, msg);
    int n = snprintf(ev, sizeof ev, "data: %s\n\n", body ? body : "{}");
    free(body);
    if (n >= (int)sizeof ev) n = sizeof ev - 1;
    mg_printf(c, "%x\r\n", n);
    mg_write(c, ev, (size_t)n);
    static const char done[] = "data: [DONE]\n\n";
    mg_printf(c, "\r\n%zx\r\n%s\r\n0\r\n\r\n", sizeof done - 1, done);
}

int proxy_forward(struct mg_connection *c, int port, const char *secret, const char *method, const char *uri,
                  const char *body, size_t len, const char *model, int may_retry, const struct proxy_extra *x) {
    static const struct proxy_extra none = {0};
    if (!x) x = &none;
    const int client_fd = http_conn_fd(c);
    int up = upstream_connect(port, 2000);
    if (up < 0) {
        openai_error_send(c, 502, "server_error", "the engine serving %s is not answering", model);
        return up;
    }
    char *buf = malloc(BUF_CAP);
    int rc = 0;
    if (!buf) {
        close(up);
        openai_error_send(c, 500, "server_error", "out of memory");
        return FOLIO_ENOMEM;
    }
    int n = snprintf(buf, BUF_CAP,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                     method, uri, port, secret, len, x->headers ? x->headers : "");
    if (n <= 0 || n >= BUF_CAP || upstream_write_all(up, buf, (size_t)n) || (len && upstream_write_all(up, body, len))) {
        openai_error_send(c, 502, "server_error", "the engine serving %s is not answering", model);
        rc = FOLIO_EIO;
        goto out;
    }
    /* The head. */
    size_t have = 0;
    struct relay_head h;
    long head_len;
    while ((head_len = relay_parse_head(buf, have, &h)) == 0) {
        if (have >= HEAD_CAP) break;
        int r = fill(up, client_fd, buf, &have, HEAD_CAP);
        if (r < 0) {
            rc = FOLIO_EIO; /* client gone: closing `up` aborts the request in the engine */
            goto out;
        }
        if (r == 0) {
            openai_error_send(c, 502, "server_error", "the engine serving %s stopped before answering", model);
            rc = FOLIO_EIO;
            goto out;
        }
    }
    if (head_len <= 0) {
        openai_error_send(c, 502, "server_error", "the engine serving %s sent a malformed response", model);
        rc = FOLIO_EIO;
        goto out;
    }
    if (may_retry && h.status == 503) {
        rc = FOLIO_EBUSY;
        goto out;
    }
    if (x->on_head) x->on_head(x->ud, h.status, h.content_type);
    mg_printf(c, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n", h.status, reason(h.status), h.content_type);
    if (h.cache_control[0]) mg_printf(c, "Cache-Control: %s\r\n", h.cache_control);
    if (h.allow[0]) mg_printf(c, "Allow: %s\r\n", h.allow);
    if (h.chunked) mg_printf(c, "Transfer-Encoding: chunked\r\nX-Accel-Buffering: no\r\n\r\n");
    else if (h.content_length[0]) mg_printf(c, "Content-Length: %s\r\n\r\n", h.content_length);
    else mg_printf(c, "Connection: close\r\n\r\n");
    memmove(buf, buf + head_len, have - (size_t)head_len);
    have -= (size_t)head_len;

    if (!h.chunked) {
        long long want = h.content_length[0] ? atoll(h.content_length) : -1, sent = 0;
        for (;;) {
            size_t take = have;
            if (want >= 0 && (long long)take > want - sent) take = (size_t)(want - sent);
            if (take && x->on_body) x->on_body(x->ud, buf, take);
            if (want >= 0 && sent + (long long)take >= want && x->on_end) x->on_end(x->ud);
            if (take && mg_write(c, buf, take) != (int)take) { /* a stalled client: CivetWeb's timeout */
                rc = FOLIO_EIO;
                break;
            }
            sent += (long long)take;
            have = 0;
            if (want >= 0 && sent >= want) break;
            int r = fill(up, client_fd, buf, &have, BUF_CAP);
            if (r <= 0) {
                if (want >= 0 || r < 0) rc = FOLIO_EIO; /* cut short: the client sees a short body */
                else if (x->on_end) x->on_end(x->ud); /* no length: the close ends the body */
                break;
            }
        }
        goto out;
    }
    /* Chunked: relay chunk by chunk, so that the stream can be ended cleanly if the engine
     * stops between (or inside) chunks. */
    for (;;) {
        const char *payload;
        size_t plen, used;
        int k = relay_next_chunk(buf, have, BUF_CAP - 64, &payload, &plen, &used);
        if (k == 2) {
            if (x->on_end) x->on_end(x->ud);
            mg_printf(c, "0\r\n\r\n");
            break;
        }
        if (k == 1) {
            if (x->on_body) x->on_body(x->ud, payload, plen);
            mg_printf(c, "%zx\r\n", plen);
            if (mg_write(c, payload, plen) != (int)plen || mg_printf(c, "\r\n") != 2) {
                rc = FOLIO_EIO;
                break;
            }
            memmove(buf, buf + used, have - used);
            have -= used;
            continue;
        }
        int r = k < 0 || have == BUF_CAP ? 0 : fill(up, client_fd, buf, &have, BUF_CAP);
        if (r < 0) {
            rc = FOLIO_EIO;
            break;
        }
        if (r == 0) { /* the engine stopped, or broke its framing */
            stream_error(c, model);
            rc = FOLIO_EIO;
            break;
        }
    }
out:
    close(up);
    free(buf);
    return rc;
}
