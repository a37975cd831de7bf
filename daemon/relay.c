/* relay: see relay.h. */
#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The value of header `name` within head[0..len), NUL-terminated into out; 1 when present. */
static int header(const char *head, size_t len, const char *name, char *out, size_t cap) {
    const size_t nl = strlen(name);
    const char *end = head + len;
    for (const char *p = memchr(head, '\n', len); p && p + 1 < end; p = memchr(p + 1, '\n', (size_t)(end - p - 1))) {
        const char *h = p + 1;
        if ((size_t)(end - h) > nl && strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            h += nl + 1;
            while (h < end && (*h == ' ' || *h == '\t')) h++;
            const char *e = h;
            while (e < end && *e != '\r' && *e != '\n') e++;
            size_t n = (size_t)(e - h);
            if (n >= cap) n = cap - 1;
            memcpy(out, h, n);
            out[n] = '\0';
            return 1;
        }
    }
    return 0;
}

long relay_parse_head(const char *buf, size_t len, struct relay_head *h) {
    const char *end = NULL;
    for (size_t i = 0; i + 3 < len && !end; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') end = buf + i + 4;
    if (!end) return 0;
    const size_t hl = (size_t)(end - buf);
    memset(h, 0, sizeof *h);
    /* "HTTP/1.x NNN" */
    if (hl < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ') return -1;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9') return -1;
        status = status * 10 + (buf[i] - '0');
    }
    if (status < 100) return -1;
    h->status = status;
    snprintf(h->content_type, sizeof h->content_type, "application/json");
    header(buf, hl, "Content-Type", h->content_type, sizeof h->content_type);
    if (header(buf, hl, "Content-Length", h->content_length, sizeof h->content_length)) {
        for (const char *c = h->content_length; *c; c++)
            if (*c < '0' || *c > '9') return -1;
        if (!h->content_length[0]) return -1;
    }
    char te[64] = "";
    h->chunked = header(buf, hl, "Transfer-Encoding", te, sizeof te) && strcasecmp(te, "chunked") == 0;
    header(buf, hl, "Cache-Control", h->cache_control, sizeof h->cache_control);
    header(buf, hl, "Allow", h->allow, sizeof h->allow);
    /* Header values are copied onto the client's response: no line breaks may survive. */
    char *fields[] = {h->content_type, h->cache_control, h->allow};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        if (strpbrk(fields[i], "\r\n")) return -1;
    return (long)hl;
}

int relay_next_chunk(const char *buf, size_t len, size_t max, const char **payload, size_t *plen, size_t *used) {
    size_t i = 0, size = 0;
    int digits = 0;
    for (; i < len; i++) {
        const char c = buf[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (v < 0) break;
        if (++digits > 8) return -1;
        size = size * 16 + (size_t)v;
    }
    if (i == len) return 0;
    if (!digits) return -1;
    /* Chunk extensions (";name=value") are allowed and ignored, up to the line's end. */
    while (i < len && buf[i] != '\r') {
        if (buf[i] != ';' && buf[i] != ' ' && buf[i] != '\t' && buf[i] != '=' && !(buf[i] > ' ' && buf[i] < 127)) return -1;
        i++;
    }
    if (i + 1 >= len) return 0;
    if (buf[i + 1] != '\n') return -1;
    const size_t start = i + 2;
    if (size > max) return -1;
    if (size == 0) {
        if (len < start + 2) return 0;
        if (buf[start] != '\r' || buf[start + 1] != '\n') return -1; /* no trailers from the engine */
        *payload = buf + start;
        *plen = 0;
        *used = start + 2;
        return 2;
    }
    if (len < start + size + 2) return 0;
    if (buf[start + size] != '\r' || buf[start + size + 1] != '\n') return -1;
    *payload = buf + start;
    *plen = size;
    *used = start + size + 2;
    return 1;
}
