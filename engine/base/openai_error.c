/* openai_error: see openai_error.h. */
#include "base/openai_error.h"

#include <civetweb.h>
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *openai_error_json(int status, const char *type, const char *param, const char *message) {
    cJSON *j = cJSON_CreateObject(), *e = j ? cJSON_AddObjectToObject(j, "error") : NULL;
    char *s = NULL;
    if (e && cJSON_AddStringToObject(e, "message", message ? message : "") &&
        cJSON_AddStringToObject(e, "type", type ? type : "") &&
        (param && *param ? cJSON_AddStringToObject(e, "param", param) : cJSON_AddNullToObject(e, "param")) &&
        cJSON_AddNumberToObject(e, "code", status))
        s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

void openai_error_write(struct mg_connection *c, int status, const char *type, const char *param,
                        const char *headers, const char *message) {
    static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"InternalServerError\","
                              "\"param\":null,\"code\":500}}";
    char *body = openai_error_json(status, type, param, message);
    if (!body) status = 500;
    const size_t n = body ? strlen(body) : sizeof oom - 1;
    mg_printf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n%s\r\n",
              status, mg_get_response_code_text(c, status), n, headers ? headers : "");
    mg_write(c, body ? body : oom, n);
    free(body);
}

void openai_error_send(struct mg_connection *c, int status, const char *type, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    openai_error_write(c, status, type, NULL, NULL, msg);
}
