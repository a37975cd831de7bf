/* http_body: see http_body.h. */
#include "base/http_body.h"

#include <civetweb.h>
#include <stdlib.h>

int http_body_read(struct mg_connection *c, size_t max, char **out, size_t *len) {
    const struct mg_request_info *ri = mg_get_request_info(c);
    *out = NULL;
    *len = 0;
    if (ri->content_length > (long long)max) return HTTP_BODY_TOO_LARGE;
    /* A declared length is allocated exactly; a chunked body starts small and doubles, up to
     * max + 2: max bytes, the byte that shows it is over, and the NUL. */
    const int declared = ri->content_length >= 0;
    size_t cap = declared ? (size_t)ri->content_length + 1 : (max + 2 < 65536 ? max + 2 : 65536), n = 0;
    char *buf = malloc(cap);
    if (!buf) return HTTP_BODY_NO_MEMORY;
    for (;;) {
        if (n + 1 >= cap) {
            if (declared) break; /* all that was declared */
            if (n > max) break;
            size_t ncap = cap * 2 < max + 2 ? cap * 2 : max + 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                return HTTP_BODY_NO_MEMORY;
            }
            buf = nb;
            cap = ncap;
        }
        int r = mg_read(c, buf + n, cap - 1 - n);
        if (r < 0) {
            free(buf);
            return HTTP_BODY_GONE;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    if (n > max) {
        free(buf);
        return HTTP_BODY_TOO_LARGE;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return HTTP_BODY_OK;
}
