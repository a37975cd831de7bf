/* openai_error: the one writer of the OpenAI error body, for folio-engine and foliod alike:
 *   {"error":{"message":"...","type":"...","param":"..."|null,"code":STATUS}}
 * (members in that order, printed by cJSON without spaces), alone as a response or inside
 * an SSE event. The code is the HTTP status, as both processes have always sent it. */
#ifndef FOLIO_OPENAI_ERROR_H
#define FOLIO_OPENAI_ERROR_H

struct mg_connection;

/* The body, malloc'd and NUL-terminated; NULL when out of memory. param NULL or "": null. */
char *openai_error_json(int status, const char *type, const char *param, const char *message);

/* A complete response carrying the body: the status line, Content-Type: application/json,
 * Content-Length, Cache-Control: no-store, then headers (each line ending in \r\n; NULL for
 * none). Out of memory, a 500 with a fixed body. */
void openai_error_write(struct mg_connection *c, int status, const char *type, const char *param,
                        const char *headers, const char *message);

/* openai_error_write with no param and no extra headers, the message printf-formatted (at most
 * 1023 bytes). */
void openai_error_send(struct mg_connection *c, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
