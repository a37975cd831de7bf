/* api_internal.h: state and helpers shared by api.c (server, routing, small endpoints) and
 * api_generate.c (completions and chat). Not a public header. */
#ifndef FOLIO_API_INTERNAL_H
#define FOLIO_API_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <civetweb.h>
#include <cjson/cJSON.h>

#include "server/api.h"
#include "server/api_request.h"
#include "base/http_conn.h"

struct chat_template;

struct api {
    struct api_params p;
    char *names[API_MAX_NAMES];
    int num_names;
    char *api_key;
    char **origins;            /* [num_origins]; "*" allows any */
    int num_origins;
    struct http_server *srv;
    struct http_route route;         /* handle(), a */
    int port;
    _Atomic(struct engine *) engine; /* NULL while the model loads */
    struct chat_template *tmpl;      /* NULL: the model has none */
    int tool_format;                 /* enum tool_format of the model's calls; -1: never parse calls */
    int reasoning_format;            /* enum reasoning_format; 0: none */
    char *bos_token, *eos_token;     /* for the template */
    atomic_int stopping;             /* api_free: handlers abort their requests */
    atomic_int draining;             /* api_drain: new requests get 503 */
    atomic_int in_flight;            /* POST requests being handled */
    long long created;               /* unix time the server started */
    double t_start;
};

/* Writes a complete response with a JSON body (cJSON is printed and deleted). */
void api_send_json(struct api *a, struct mg_connection *c, int status, cJSON *body);
/* Writes {"error":{"message","type","param","code"}} (base/openai_error.h) with the CORS
 * headers, and Retry-After on a 503. */
void api_send_error(struct api *a, struct mg_connection *c, const struct api_error *err);
void api_send_error_msg(struct api *a, struct mg_connection *c, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The CORS headers for this request's Origin (or ""), into buf. */
void api_cors_headers(struct api *a, struct mg_connection *c, char *buf, size_t cap);
/* The OpenAI error type for an HTTP status ("BadRequestError", ...). */
const char *api_error_type(int status);

/* The served model's id, or fills err (404) when `model` names another. */
int api_check_model(struct api *a, const char *model, struct api_error *err);

/* The prompt of a chat request: the template rendered with its messages, then tokenized.
 * *ids is malloc'd. *think_open (may be NULL): 1 when the prompt ends inside an open reasoning
 * block ("<think>"), -1 when it ends with a closed one (the model is not to think), else 0. */
int api_chat_prompt(struct api *a, struct engine *e, const struct api_request *r, int32_t **ids, int *n,
                    int *think_open, struct api_error *err);

/* After a request this big, its handler returns the freed heap to the OS (malloc_trim): a
 * body of 256 KiB or more (its parse tree was up to ~40x that), 16 or more sequences, or
 * 1 MiB of collected output. */
#define API_TRIM_BODY_BYTES ((size_t)256 << 10)
#define API_TRIM_SEQS 16
#define API_TRIM_HELD_BYTES ((size_t)1 << 20)

/* POST /v1/completions and /v1/chat/completions. */
void api_handle_generate(struct api *a, struct mg_connection *c, struct engine *e, enum api_kind kind,
                         const char *body, size_t len);

/* POST /v1/responses (api_responses.c). */
void api_handle_responses(struct api *a, struct mg_connection *c, struct engine *e, const char *body, size_t len);

/* The small endpoints (api_endpoints.c), routed by api.c's table. */
void api_ep_health(struct api *a, struct mg_connection *c, struct engine *e, const char *b, size_t n);
void api_ep_version(struct api *a, struct mg_connection *c, struct engine *e, const char *b, size_t n);
void api_ep_metrics(struct api *a, struct mg_connection *c, struct engine *e, const char *b, size_t n);
void api_ep_stats(struct api *a, struct mg_connection *c, struct engine *e, const char *b, size_t n);
void api_ep_models(struct api *a, struct mg_connection *c, struct engine *e, const char *b, size_t n);
void api_ep_tokenize(struct api *a, struct mg_connection *c, struct engine *e, const char *b, size_t n);
void api_ep_detokenize(struct api *a, struct mg_connection *c, struct engine *e, const char *b, size_t n);

#endif
