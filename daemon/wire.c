/* wire: see wire.h. */
#include "wire.h"

#include <civetweb.h>
#include <string.h>

#include "base/http_body.h"
#include "base/http_conn.h"

/* How long a refused body may keep arriving after its 413, so the client reads the answer. */
#define WIRE_LINGER_MS 1000
#include "base/openai_error.h"
#include "base/util.h"

void wire_send_json(struct mg_connection *c, int status, const char *json, const char *extra_headers) {
    size_t n = strlen(json);
    mg_printf(c,
              "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n%s\r\n",
              status, mg_get_response_code_text(c, status), n, extra_headers ? extra_headers : "");
    mg_write(c, json, n);
}

int wire_read_body(struct mg_connection *c, size_t max, char **out, size_t *len) {
    switch (http_body_read(c, max, out, len)) {
    case HTTP_BODY_OK: return 0;
    case HTTP_BODY_TOO_LARGE:
        if (max >= (1u << 20))
            openai_error_send(c, 413, "invalid_request_error", "the request body exceeds %zu MiB", max >> 20);
        else
            openai_error_send(c, 413, "invalid_request_error", "the request body exceeds %zu KiB", max >> 10);
        http_conn_linger(c, WIRE_LINGER_MS);
        return FOLIO_EINVAL;
    case HTTP_BODY_NO_MEMORY:
        openai_error_send(c, 500, "server_error", "out of memory");
        return FOLIO_ENOMEM;
    default: return FOLIO_EIO; /* the client is gone */
    }
}
