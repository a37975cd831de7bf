/* api: the CivetWeb server of folio-engine: listening, routing, API-key checks, CORS, request
 * bodies and the shape of every response and error. The endpoints live in api_endpoints.c
 * (everything but generation) and api_generate.c (completions and chat). */
#include "server/api_internal.h"
#include "base/http_body.h"
#include "base/http_conn.h"
#include "base/openai_error.h"
#include "base/openai_paths.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat_template/chat_template.h"
#include "server/reasoning.h"
#include "server/tool_parser.h"
#include "core/engine.h"
#include "text/tokenizer.h"
#include "base/util.h"

struct api_params api_default_params(void) {
    return (struct api_params){
        .host = "127.0.0.1", .port = 8000, .max_body = 16u << 20, .num_threads = 512, .timeout_s = 20,
        .max_conns_per_client = 0};
}

const char *api_error_type(int status) {
    switch (status) {
    case 400: return "BadRequestError";
    case 401: return "AuthenticationError";
    case 404: return "NotFoundError";
    case 405: return "MethodNotAllowedError";
    case 413: return "RequestTooLargeError";
    case 429: return "RateLimitError";
    case 503: return "ServiceUnavailableError";
    default: return "InternalServerError";
    }
}

/* ---- CORS ---- */

static int origin_allowed(const struct api *a, const char *origin) {
    for (int i = 0; i < a->num_origins; i++)
        if (!strcmp(a->origins[i], "*") || !strcmp(a->origins[i], origin)) return 1;
    return 0;
}

void api_cors_headers(struct api *a, struct mg_connection *c, char *buf, size_t cap) {
    buf[0] = '\0';
    const char *origin = mg_get_header(c, "Origin");
    if (!origin || !origin_allowed(a, origin) || strpbrk(origin, "\r\n")) return;
    snprintf(buf, cap, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", origin);
}

/* --allowed-origins: '["http://a", "http://b"]' as vLLM takes it, or "http://a,http://b". */
static int parse_origins(struct api *a, const char *s) {
    cJSON *j = cJSON_Parse(s);
    int cnt = 0;
    if (j && cJSON_IsArray(j)) {
        cnt = cJSON_GetArraySize(j);
    } else {
        cnt = 1;
        for (const char *p = s; *p; p++) cnt += *p == ',';
    }
    if (!(a->origins = calloc((size_t)cnt, sizeof *a->origins))) goto nomem;
    if (j && cJSON_IsArray(j)) {
        for (const cJSON *x = j->child; x; x = x->next) {
            if (!cJSON_IsString(x)) {
                cJSON_Delete(j);
                return folio_err(FOLIO_EINVAL, "--allowed-origins: a JSON list must hold strings");
            }
            if (!(a->origins[a->num_origins++] = strdup(x->valuestring))) goto nomem;
        }
    } else {
        for (const char *p = s; *p;) {
            while (*p == ' ' || *p == ',') p++;
            size_t n = strcspn(p, ", ");
            if (n && !(a->origins[a->num_origins++] = strndup(p, n))) goto nomem;
            p += n;
        }
    }
    cJSON_Delete(j);
    return 0;
nomem:
    cJSON_Delete(j);
    return folio_err(FOLIO_ENOMEM, "out of memory");
}

/* ---- responses ---- */

static void send_body(struct api *a, struct mg_connection *c, int status, const char *type, const char *extra,
                      const char *body, size_t len) {
    char cors[512];
    api_cors_headers(a, c, cors, sizeof cors);
    mg_printf(c,
              "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n%s%s\r\n",
              status, mg_get_response_code_text(c, status), type, len, cors, extra ? extra : "");
    if (len) mg_write(c, body, len);
}

void api_send_json(struct api *a, struct mg_connection *c, int status, cJSON *body) {
    char *s = body ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    if (!s) {
        api_send_error_msg(a, c, 500, NULL, "out of memory");
        return;
    }
    send_body(a, c, status, "application/json", status == 503 ? "Retry-After: 1\r\n" : NULL, s, strlen(s));
    free(s);
}

/* The error body (base/openai_error.h) after the CORS headers and `extra`. */
static void send_error_with(struct api *a, struct mg_connection *c, const struct api_error *err, const char *extra) {
    char cors[512], headers[640];
    api_cors_headers(a, c, cors, sizeof cors);
    snprintf(headers, sizeof headers, "%s%s", cors, extra ? extra : "");
    openai_error_write(c, err->status, api_error_type(err->status), err->param, headers, err->message);
}

void api_send_error(struct api *a, struct mg_connection *c, const struct api_error *err) {
    send_error_with(a, c, err, err->status == 503 ? "Retry-After: 1\r\n" : NULL);
}

void api_send_error_msg(struct api *a, struct mg_connection *c, int status, const char *param, const char *fmt, ...) {
    struct api_error err = {.status = status};
    snprintf(err.param, sizeof err.param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof err.message, fmt, ap);
    va_end(ap);
    api_send_error(a, c, &err);
}

int api_check_model(struct api *a, const char *model, struct api_error *err) {
    if (!model) return 0;
    for (int i = 0; i < a->num_names; i++)
        if (!strcmp(model, a->names[i])) return 0;
    return api_error_set(err, 404, "model", "The model `%s` does not exist.", model);
}

/* ---- the client's socket ---- */


/* ---- routing ---- */

/* Reads the whole body, up to max_body (base/http_body.h). 0, or -1 when it has been answered
 * (413, 500) or the client is gone. */
static int read_body(struct api *a, struct mg_connection *c, char **out, size_t *len) {
    const int rc = http_body_read(c, a->p.max_body, out, len);
    const long long declared = mg_get_request_info(c)->content_length;
    if (rc == HTTP_BODY_TOO_LARGE && declared > (long long)a->p.max_body)
        api_send_error_msg(a, c, 413, NULL, "the request body is %lld bytes; the limit is %zu", declared, a->p.max_body);
    else if (rc == HTTP_BODY_TOO_LARGE)
        api_send_error_msg(a, c, 413, NULL, "the request body exceeds the limit of %zu bytes", a->p.max_body);
    /* The rest of a refused body may still be on its way: let it arrive, so that closing does
     * not reset the connection before the client reads the 413. */
    if (rc == HTTP_BODY_TOO_LARGE) http_conn_linger(c, 1000);
    else if (rc == HTTP_BODY_NO_MEMORY)
        api_send_error_msg(a, c, 500, NULL, "out of memory");
    return rc == HTTP_BODY_OK ? 0 : -1;
}

/* Compares in time that depends only on the presented key's length, so that timing does not
 * reveal how much of a guess was right. */
static int key_matches(const char *want, const char *got) {
    size_t wn = strlen(want), gn = strlen(got);
    unsigned char diff = (unsigned char)(wn != gn);
    for (size_t i = 0; i < gn; i++) diff |= (unsigned char)(got[i] ^ want[i % (wn ? wn : 1)]);
    return diff == 0;
}

static int authorized(struct api *a, struct mg_connection *c) {
    if (!a->api_key) return 1;
    const char *h = mg_get_header(c, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    h += 7;
    while (*h == ' ') h++;
    return key_matches(a->api_key, h);
}

struct route {
    const char *path, *method;
    int open;          /* no API key needed */
    int needs_engine;  /* 503 while loading */
    int body;          /* POST with a JSON body */
    void (*fn)(struct api *a, struct mg_connection *c, struct engine *e, const char *body, size_t len);
};

static void ep_chat(struct api *a, struct mg_connection *c, struct engine *e, const char *b, size_t n) {
    api_handle_generate(a, c, e, API_CHAT, b, n);
}

static void ep_completions(struct api *a, struct mg_connection *c, struct engine *e, const char *b, size_t n) {
    api_handle_generate(a, c, e, API_COMPLETIONS, b, n);
}

static void ep_responses(struct api *a, struct mg_connection *c, struct engine *e, const char *b, size_t n) {
    api_handle_responses(a, c, e, b, n);
}

static const struct route routes[] = {
    {"/health", "GET", 1, 0, 0, api_ep_health},
    {"/version", "GET", 1, 0, 0, api_ep_version},
    {"/metrics", "GET", 1, 1, 0, api_ep_metrics},
    {"/stats", "GET", 0, 1, 0, api_ep_stats},
};

/* The OpenAI paths (base/openai_paths.h, the list foliod relays): their path and method come
 * from there. */
static const struct route openai_routes[OPENAI_NUM_PATHS] = {
    [OPENAI_MODELS] = {NULL, NULL, 0, 1, 0, api_ep_models},
    [OPENAI_CHAT_COMPLETIONS] = {NULL, NULL, 0, 1, 1, ep_chat},
    [OPENAI_COMPLETIONS] = {NULL, NULL, 0, 1, 1, ep_completions},
    [OPENAI_TOKENIZE] = {NULL, NULL, 0, 1, 1, api_ep_tokenize},
    [OPENAI_DETOKENIZE] = {NULL, NULL, 0, 1, 1, api_ep_detokenize},
    [OPENAI_RESPONSES] = {NULL, NULL, 0, 1, 1, ep_responses},
};

static int handle(struct mg_connection *c, void *arg) {
    struct api *a = arg;
    const struct mg_request_info *ri = mg_get_request_info(c);
    const char *path = ri->local_uri ? ri->local_uri : "";
    /* Model ids may be paths ("/models/x" by default): take the id from the uncleaned URI. */
    const char *raw = ri->local_uri_raw ? ri->local_uri_raw : path;
    const struct route *rt = NULL;
    struct route openai;
    /* /v1/models/{id} (the SDK's models.retrieve) is /v1/models answered for one id. */
    const char *item = NULL, *exact_item = NULL;
    const int item_of = openai_paths_find(raw, &item);
    const int model_by_id = item_of == OPENAI_MODELS && item && *item;
    if (item_of == OPENAI_RESPONSES && item && *item && strcmp(ri->request_method, "OPTIONS") != 0) {
        api_send_error_msg(a, c, 404, NULL,
                           "folio-engine keeps no responses (it runs stateless): stored responses are served by "
                           "foliod");
        return 404;
    }
    for (size_t i = 0; i < sizeof routes / sizeof *routes && !rt; i++)
        if (!strcmp(path, routes[i].path)) rt = &routes[i];
    const int k = rt ? -1 : model_by_id ? item_of : openai_paths_find(path, &exact_item);
    if (k >= 0 && (model_by_id || !exact_item)) {
        openai = openai_routes[k];
        openai.path = openai_paths[k].path;
        openai.method = openai_paths[k].method;
        rt = &openai;
    }
    if (!strcmp(ri->request_method, "OPTIONS")) {
        /* A CORS preflight: allowed origins get the methods and headers they ask for. */
        char cors[512], extra[1024];
        api_cors_headers(a, c, cors, sizeof cors);
        const char *hdrs = mg_get_header(c, "Access-Control-Request-Headers");
        snprintf(extra, sizeof extra,
                 "%sAccess-Control-Allow-Methods: GET, POST, OPTIONS\r\nAccess-Control-Allow-Headers: %s\r\n"
                 "Access-Control-Max-Age: 600\r\n",
                 cors, hdrs && !strpbrk(hdrs, "\r\n") ? hdrs : "Authorization, Content-Type");
        mg_printf(c, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\n%s\r\n", cors[0] ? 204 : 403,
                  cors[0] ? "No Content" : "Forbidden", cors[0] ? extra : "");
        return cors[0] ? 204 : 403;
    }
    if (!rt) {
        api_send_error_msg(a, c, 404, NULL, "no such endpoint: %s %.200s", ri->request_method, path);
        return 404;
    }
    if (strcmp(ri->request_method, rt->method) != 0) {
        char allow[64];
        snprintf(allow, sizeof allow, "Allow: %s\r\n", rt->method);
        struct api_error err = {.status = 405};
        snprintf(err.message, sizeof err.message, "%s takes %s, not %s", rt->path, rt->method, ri->request_method);
        send_error_with(a, c, &err, allow);
        return 405;
    }
    if (!rt->open && !authorized(a, c)) {
        api_send_error_msg(a, c, 401, NULL, "a valid API key is required: send it as 'Authorization: Bearer KEY'");
        return 401;
    }
    struct engine *e = atomic_load(&a->engine);
    if (rt->needs_engine && !e) {
        api_send_error_msg(a, c, 503, NULL, "the model is loading; retry when /health answers 200");
        return 503;
    }
    if (rt->body && atomic_load(&a->draining)) {
        api_send_error_msg(a, c, 503, NULL, "the server is shutting down");
        return 503;
    }
    char *body = NULL;
    size_t len = 0;
    atomic_fetch_add(&a->in_flight, 1);
    if (!rt->body || read_body(a, c, &body, &len) == 0)
        rt->fn(a, c, e, model_by_id ? item : body, model_by_id ? strlen(item) : len);
    atomic_fetch_sub(&a->in_flight, 1);
    free(body);
    return 200;
}

/* ---- lifetime ---- */

int api_create(const struct api_params *p, struct api **out) {
    int rc = 0;
    struct api *a = calloc(1, sizeof *a);
    if (!a) return folio_err(FOLIO_ENOMEM, "out of memory");
    a->p = *p;
    a->created = (long long)time(NULL);
    a->t_start = folio_now();
    if (p->num_names > 0) {
        for (int i = 0; i < p->num_names && i < API_MAX_NAMES; i++)
            if (!(a->names[a->num_names++] = strdup(p->names[i]))) goto nomem;
    } else if (!(a->names[a->num_names++] = strdup(p->model_path ? p->model_path : "default"))) {
        goto nomem;
    }
    if (p->api_key && *p->api_key && !(a->api_key = strdup(p->api_key))) goto nomem;
    if (p->allowed_origins && (rc = parse_origins(a, p->allowed_origins))) goto fail;
    if (a->p.max_body == 0) a->p.max_body = api_default_params().max_body;
    if (a->p.num_threads <= 0) a->p.num_threads = api_default_params().num_threads;

    a->route = (struct http_route){handle, a};
    struct http_conn_params hp = {.host = p->host, .port = p->port, .threads = a->p.num_threads,
                                  .timeout_s = p->timeout_s, .max_conns_per_client = p->max_conns_per_client};
    for (int i = 0; i < p->num_server_names && i < HTTP_MAX_SERVER_NAMES; i++)
        hp.server_names[hp.num_server_names++] = p->server_names[i];
    if ((rc = http_server_start(&hp, &a->route, &a->srv))) goto fail;
    a->port = http_server_port(a->srv);
    *out = a;
    return 0;
nomem:
    rc = folio_err(FOLIO_ENOMEM, "out of memory");
fail:
    api_free(a);
    return rc;
}

/* The model's tool-call and reasoning formats: the flags', else what its template shows; the
 * load log says which. */
static int pick_formats(struct api *a) {
    const char *src = chat_template_source(a->tmpl);
    const char *tp = a->p.tool_call_parser, *rp = a->p.reasoning_parser;
    if (tp && !strcmp(tp, "none")) a->tool_format = -1;
    else if (tp && (a->tool_format = tool_format_from_name(tp)) < 0)
        return folio_err(FOLIO_EINVAL, "--tool-call-parser %s: not a parser (hermes, llama3_json, mistral, qwen3_coder, none)", tp);
    else if (!tp) a->tool_format = (int)tool_format_detect(src);
    if (rp && !strcmp(rp, "none")) a->reasoning_format = REASONING_NONE;
    else if (rp && (a->reasoning_format = reasoning_format_from_name(rp)) < 0)
        return folio_err(FOLIO_EINVAL, "--reasoning-parser %s: not a parser (qwen3, deepseek_r1, none)", rp);
    else if (!rp) a->reasoning_format = (int)reasoning_format_detect(src);
    fprintf(stderr, "folio-engine: tool calls: %s (%s); reasoning: %s (%s)\n",
            a->tool_format < 0 ? "not parsed" : a->tool_format == TOOL_FORMAT_NONE ? "hermes when tools are sent" : tool_format_name((enum tool_format)a->tool_format),
            tp ? "--tool-call-parser" : "from the chat template",
            reasoning_format_name((enum reasoning_format)a->reasoning_format), rp ? "--reasoning-parser" : "from the chat template");
    return 0;
}

int api_attach(struct api *a, struct engine *e) {
    int rc = 0;
    const struct tokenizer *tok = engine_tokenizer(e);
    if (a->p.chat_template) rc = chat_template_load_arg(a->p.chat_template, &a->tmpl);
    else if (a->p.model_path) rc = chat_template_load_model(a->p.model_path, &a->tmpl);
    if (rc) return rc;
    if ((rc = pick_formats(a))) return rc;
    const char *bos = tokenizer_id_to_piece(tok, tokenizer_bos_id(tok)), *eos = tokenizer_id_to_piece(tok, tokenizer_eos_id(tok));
    if (!(a->bos_token = strdup(bos ? bos : "")) || !(a->eos_token = strdup(eos ? eos : "")))
        return folio_err(FOLIO_ENOMEM, "out of memory");
    atomic_store(&a->engine, e);
    return 0;
}

int api_port(const struct api *a) { return a->port; }

int api_drain(struct api *a) {
    atomic_store(&a->draining, 1);
    return atomic_load(&a->in_flight);
}

void api_free(struct api *a) {
    if (!a) return;
    atomic_store(&a->stopping, 1);
    http_server_stop(a->srv);
    for (int i = 0; i < a->num_names; i++) free(a->names[i]);
    for (int i = 0; i < a->num_origins; i++) free(a->origins[i]);
    free(a->origins);
    free(a->api_key);
    chat_template_free(a->tmpl);
    free(a->bos_token);
    free(a->eos_token);
    free(a);
}
