/* front: foliod's port (8000), routed by a table. Routes: the OpenAI API (the paths of
 * base/openai_paths.h, the list the engine serves), proxied to the engine of the request's
 * model, /v1/models answered here, /v1/responses through responses.c (which keeps what the
 * engine answers, and serves /v1/responses/{id}); /health, /ready, /metrics and /version;
 * /api/... (admin_api.c); /admin/ (the console's static files). API keys guard the OpenAI
 * routes whenever one exists. */
#include <civetweb.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "front.h"
#include "admin_api.h"
#include "foliod.h"
#include "guard.h"
#include "json_model.h"
#include "proxy.h"
#include "responses.h"
#include "upstream.h"
#include "wire.h"
#include "base/http_conn.h"
#include "base/openai_error.h"
#include "base/openai_paths.h"
#include "base/sbuf.h"
#include "base/util.h"

struct front {
    struct foliod *d;
    struct http_server *srv;
    struct http_route route; /* handle(), this */
    char names[1024];        /* cfg.server_names, split in place */
};

/* What a handler gets besides the connection. */
struct front_req {
    const char *method, *uri;
    const char *rest; /* after a prefix route's path; an OpenAI path's item (/v1/models/{id}), or NULL */
    int64_t owner;    /* on FRONT_API_KEY routes: the stored key's id, 0 for any other credential or none */
};

/* ---- API keys on the OpenAI routes ---- */

static int bearer(struct mg_connection *c, const char **tok, size_t *len) {
    const char *h = mg_get_header(c, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    h += 7;
    while (*h == ' ') h++;
    *tok = h;
    *len = strlen(h);
    while (*len > 0 && (h[*len - 1] == ' ' || h[*len - 1] == '\r')) (*len)--;
    return *len > 0;
}

/* 1 when the request may use the OpenAI routes: no key exists, or it presents one; 0 when
 * not (the caller answers 401); -1 when it has been answered already: 429 while the client's
 * address backs off after wrong keys, 403 for a cookie-only POST from another origin. *owner
 * is the stored key's id when one was presented, else 0 (what stored responses belong to). */
static int api_authorized(struct foliod *d, struct mg_connection *c, int64_t *owner) {
    *owner = 0;
    pthread_mutex_lock(&d->keys_mu);
    const int need = d->num_keys > 0 || d->env_key_hash[0];
    pthread_mutex_unlock(&d->keys_mu);
    if (!need) return 1;
    const char *tok;
    size_t len;
    /* The console's playground: its session (HttpOnly, SameSite=Strict) stands for a key.
     * SameSite does not separate this host's other ports, so a POST it authorizes must come
     * from the console's own origin (guard.h). */
    if (!bearer(c, &tok, &len)) {
        if (!admin_session_ok(d, c)) return 0;
        if (strcmp(mg_get_request_info(c)->request_method, "GET") != 0 && !guard_same_origin(c)) {
            openai_error_send(c, 403, "PermissionDeniedError",
                             "a request authorized by the console's session needs an Origin header matching Host "
                             "(or Sec-Fetch-Site: same-origin); API clients send Authorization: Bearer <key>");
            return -1;
        }
        return 1;
    }
    if (guard_throttled(d, c)) return -1;
    char hash[AUTH_HASH_HEX];
    if (auth_sha256_hex(tok, len, hash)) return 0;
    pthread_mutex_lock(&d->keys_mu);
    int idx = auth_key_match(tok, len, (const char(*)[AUTH_HASH_HEX])d->key_hash, d->num_keys);
    int64_t id = idx >= 0 ? d->key_id[idx] : 0;
    int ok = idx >= 0 || (d->env_key_hash[0] && auth_equal(hash, 64, d->env_key_hash, 64));
    pthread_mutex_unlock(&d->keys_mu);
    if (id) store_key_touch(d->store, id, (int64_t)time(NULL));
    if (ok) *owner = id;
    if (ok) guard_succeeded(d, c);
    else guard_failed(d, c);
    return ok;
}

/* ---- the OpenAI routes ---- */

/* The model a request names, resolved: `default` (or no model) is the active alias. */
static int resolve(struct foliod *d, const char *name, struct store_model *m) {
    if (!name || !*name || !strcmp(name, "default")) {
        int64_t id = foliod_default_model(d);
        if (!id) return FOLIO_ENOTFOUND;
        return store_model_get(d->store, id, m);
    }
    return store_model_find(d->store, name, m);
}

/* Routes body[0..len) by its "model" and relays it to that model's engine, with x's headers
 * and taps (may be NULL). The client has been answered when it returns. */
static void forward(struct foliod *d, struct mg_connection *c, const struct front_req *req, const char *body,
                    size_t len, const struct proxy_extra *x) {
    const char *method = req->method, *uri = req->uri;
    /* Only the top-level "model" is needed: a scan, not a tree of a 16 MiB body. */
    size_t ms = 0, me = 0;
    const int kind = json_model_find(body, len, &ms, &me);
    char name[256] = "";
    if (kind < 0 || kind == JSON_MODEL_OTHER ||
        (kind == JSON_MODEL_STRING && json_model_decode(body, ms, me, name, sizeof name))) {
        openai_error_send(c, 400, "invalid_request_error", "%s",
                         kind == JSON_MODEL_OTHER ? "model must be a string" : folio_last_error());
        return;
    }
    /* The `default` alias may move while the request is routed (a switch): then the old
     * engine no longer takes it, and it is routed again to where the alias points now. */
    const int alias = !name[0] || !strcmp(name, "default");
    char *out = NULL;
    for (int attempt = 0;; attempt++) {
        struct store_model m;
        if (resolve(d, name, &m)) {
            if (alias) openai_error_send(c, 404, "NotFoundError", "no model is active as `default`; name a model");
            else openai_error_send(c, 404, "NotFoundError", "The model `%s` does not exist.", name);
            break;
        }
        /* The engine knows the model by its served name: rewrite an alias to it, in a copy
         * with only the member's value replaced. */
        free(out);
        out = NULL;
        const char *send = body;
        size_t send_len = len;
        int rc = 0;
        if (strcmp(name, m.name) != 0) {
            if (json_model_splice(body, len, kind, ms, me, m.name, &out, &send_len)) {
                out = NULL;
                rc = FOLIO_ENOMEM;
            }
            send = out;
        }
        struct supervisor_route r;
        if (!rc) rc = supervisor_route(d->sup, m.id, &r);
        const int retry = alias && attempt < 20;
        if ((rc == FOLIO_ENOTFOUND || rc == FOLIO_EBUSY) && retry && foliod_default_model(d) != m.id) continue;
        if (rc == FOLIO_ENOTFOUND)
            openai_error_send(c, 503, "ServiceUnavailableError", "The model `%s` is registered but not loaded.", m.name);
        else if (rc == FOLIO_EBUSY)
            openai_error_send(c, 503, "ServiceUnavailableError", "The model `%s` is loading; retry shortly.", m.name);
        else if (rc)
            openai_error_send(c, 500, "server_error", "out of memory");
        else {
            rc = proxy_forward(c, r.port, r.secret, method, uri, send, send_len, m.name, retry, x);
            if (rc == FOLIO_EBUSY) {
                /* Draining: the alias has moved or is about to; give the switch a moment. */
                usleep(20 * 1000);
                continue;
            }
            pthread_mutex_lock(&d->stats_mu);
            d->proxied++;
            if (rc) d->proxy_errors++;
            pthread_mutex_unlock(&d->stats_mu);
        }
        break;
    }
    free(out);
}

static void ep_proxy(struct foliod *d, struct mg_connection *c, const struct front_req *req) {
    char *body = NULL;
    size_t len = 0;
    if (wire_read_body(c, d->cfg.max_body, &body, &len)) return;
    forward(d, c, req, body, len, NULL);
    free(body);
}

/* ---- /v1/responses: the engine answers, foliod keeps (responses.h) ---- */

static void send_responses_error(struct mg_connection *c, const struct responses_error *e) {
    openai_error_write(c, e->status, e->type, e->param, NULL, e->message);
}

/* POST /v1/responses: previous_response_id expanded into the body, the answer stored. */
static void ep_responses_create(struct foliod *d, struct mg_connection *c, const struct front_req *req) {
    char *body = NULL;
    size_t len = 0;
    struct responses_turn *t = NULL;
    struct responses_error err;
    if (wire_read_body(c, d->cfg.max_body, &body, &len)) return;
    if (responses_turn_begin(d->responses, req->owner, body, len, &t, &err)) {
        send_responses_error(c, &err);
        free(body);
        return;
    }
    size_t n = 0;
    const char *send = responses_turn_body(t, &n);
    /* An expanded body is the turn's own and nothing in the turn points into the client's:
     * that one goes now, so that a long conversation is held once while it streams. */
    if (send != body) {
        free(body);
        body = NULL;
    }
    const struct proxy_extra x = {.headers = responses_turn_headers(t),
                                  .on_head = responses_turn_on_head,
                                  .on_body = responses_turn_on_body,
                                  .on_end = responses_turn_on_end,
                                  .ud = t};
    forward(d, c, req, send, n, &x);
    responses_turn_free(t);
    free(body);
}

/* /v1/responses/{id} (GET, DELETE) and /v1/responses/{id}/input_items (GET). */
static void ep_responses_item(struct foliod *d, struct mg_connection *c, const struct front_req *req) {
    char id[128];
    const char *rest = req->rest, *slash = strchr(rest, '/');
    const size_t idn = slash ? (size_t)(slash - rest) : strlen(rest);
    const int items = slash && !strcmp(slash, "/input_items");
    if (idn == 0 || idn >= sizeof id || (slash && !items)) {
        openai_error_send(c, 404, "NotFoundError", "no route for %s %s", req->method, req->uri);
        return;
    }
    memcpy(id, rest, idn);
    id[idn] = '\0';
    const char *allow = items ? "GET" : "GET, DELETE";
    char *json = NULL;
    struct responses_error err;
    int rc;
    if (!strcmp(req->method, "GET") && items) {
        /* The query's values, decoded; an absent one is NULL. */
        const char *qs = mg_get_request_info(c)->query_string;
        char v[4][96];
        const char *names[4] = {"limit", "order", "after", "before"};
        const char *vals[4] = {NULL, NULL, NULL, NULL};
        for (int i = 0; i < 4 && qs; i++) {
            const int got = mg_get_var(qs, strlen(qs), names[i], v[i], sizeof v[i]);
            if (got == -2) { /* longer than any valid value */
                openai_error_write(c, 400, "invalid_request_error", names[i], NULL, "the value is too long");
                return;
            }
            if (got >= 0) vals[i] = v[i];
        }
        const struct responses_list_query q = {vals[0], vals[1], vals[2], vals[3]};
        rc = responses_input_items(d->responses, id, req->owner, &q, &json, &err);
    } else if (!strcmp(req->method, "GET")) {
        rc = responses_get(d->responses, id, req->owner, &json, &err);
    } else if (!strcmp(req->method, "DELETE") && !items) {
        rc = responses_delete(d->responses, id, req->owner, &json, &err);
    } else {
        mg_printf(c, "HTTP/1.1 405 Method Not Allowed\r\nAllow: %s\r\nContent-Length: 0\r\n\r\n", allow);
        return;
    }
    if (rc) send_responses_error(c, &err);
    else wire_send_json(c, 200, json, NULL);
    free(json);
}

static cJSON *model_card(const struct store_model *m, const char *id) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddNumberToObject(o, "created", (double)m->created);
    cJSON_AddStringToObject(o, "owned_by", "folio");
    cJSON_AddStringToObject(o, "root", m->source[0] == 'h' ? m->repo_id : m->path);
    if (strcmp(id, m->name) != 0) cJSON_AddStringToObject(o, "parent", m->name);
    else cJSON_AddNullToObject(o, "parent");
    if (m->max_model_len > 0) cJSON_AddNumberToObject(o, "max_model_len", m->max_model_len);
    return o;
}

/* GET /v1/models: every served model (ready engines), plus `default` when one is active. */
static void ep_models(struct foliod *d, struct mg_connection *c, const struct front_req *req) {
    const char *id = req->rest;
    struct store_model *ms = NULL;
    int n = 0;
    if (store_model_list(d->store, &ms, &n)) {
        openai_error_send(c, 500, "server_error", "%s", folio_last_error());
        return;
    }
    const int64_t def = foliod_default_model(d);
    cJSON *root = cJSON_CreateObject(), *data = NULL, *found = NULL;
    if (!id) {
        cJSON_AddStringToObject(root, "object", "list");
        data = cJSON_AddArrayToObject(root, "data");
    }
    for (int i = 0; i < n; i++) {
        struct supervisor_route r;
        if (supervisor_route(d->sup, ms[i].id, &r) != 0) continue;
        if (!id) cJSON_AddItemToArray(data, model_card(&ms[i], ms[i].name));
        else if (!strcmp(id, ms[i].name)) found = model_card(&ms[i], ms[i].name);
        if (ms[i].id == def) {
            if (!id) cJSON_AddItemToArray(data, model_card(&ms[i], "default"));
            else if (!strcmp(id, "default")) found = model_card(&ms[i], "default");
        }
    }
    free(ms);
    if (id) {
        cJSON_Delete(root);
        if (!found) {
            openai_error_send(c, 404, "NotFoundError", "The model `%s` does not exist.", id);
            return;
        }
        root = found;
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    wire_send_json(c, 200, s ? s : "{}", NULL);
    free(s);
}

/* ---- ops ---- */

static void ep_ready(struct foliod *d, struct mg_connection *c, const struct front_req *r) {
    int n = 0, ready = 0;
    struct supervisor_engine_info *es = supervisor_list_all(d->sup, &n);
    for (int i = 0; i < n; i++) ready += !strcmp(es[i].state, "ready");
    free(es);
    char body[96];
    snprintf(body, sizeof body, "{\"status\":\"%s\",\"models_ready\":%d}", ready ? "ready" : "not ready", ready);
    wire_send_json(c, ready ? 200 : 503, body, NULL);
}

/* foliod's own counters, then each ready engine's exposition (its samples carry
 * model_name); a family's HELP and TYPE lines appear once. */
static void ep_metrics(struct foliod *d, struct mg_connection *c, const struct front_req *req) {
    struct sbuf out = {0};
    char line_buf[512];
    if (sbuf_reserve(&out, 1 << 16)) {
        openai_error_send(c, 500, "server_error", "out of memory");
        return;
    }
    pthread_mutex_lock(&d->stats_mu);
    snprintf(line_buf, sizeof line_buf,
             "# HELP foliod:proxied_requests_total Requests relayed to engines.\n"
             "# TYPE foliod:proxied_requests_total counter\nfoliod:proxied_requests_total %lld\n",
             d->proxied);
    sbuf_puts(&out, line_buf);
    snprintf(line_buf, sizeof line_buf,
             "# HELP foliod:proxy_errors_total Relayed requests that failed or were cut short.\n"
             "# TYPE foliod:proxy_errors_total counter\nfoliod:proxy_errors_total %lld\n",
             d->proxy_errors);
    sbuf_puts(&out, line_buf);
    snprintf(line_buf, sizeof line_buf,
             "# HELP foliod:unauthorized_total Requests refused for a missing or bad key or session.\n"
             "# TYPE foliod:unauthorized_total counter\nfoliod:unauthorized_total %lld\n",
             d->unauthorized);
    sbuf_puts(&out, line_buf);
    pthread_mutex_unlock(&d->stats_mu);
    int64_t rbytes = 0, rrows = 0;
    if (!responses_usage(d->responses, &rbytes, &rrows)) {
        snprintf(line_buf, sizeof line_buf,
                 "# HELP foliod:responses_stored Responses kept for previous_response_id (expired ones until purged).\n"
                 "# TYPE foliod:responses_stored gauge\nfoliod:responses_stored %lld\n"
                 "# HELP foliod:responses_stored_bytes Their bytes, as counted against responses_max_mib.\n"
                 "# TYPE foliod:responses_stored_bytes gauge\nfoliod:responses_stored_bytes %lld\n",
                 (long long)rrows, (long long)rbytes);
        sbuf_puts(&out, line_buf);
    }
    int ne = 0, ready = 0;
    struct supervisor_engine_info *es = supervisor_list_all(d->sup, &ne);
    for (int i = 0; i < ne; i++) ready += !strcmp(es[i].state, "ready");
    snprintf(line_buf, sizeof line_buf,
             "# HELP foliod:engines Engines by state.\n# TYPE foliod:engines gauge\n"
             "foliod:engines{state=\"ready\"} %d\nfoliod:engines{state=\"all\"} %d\n",
             ready, ne);
    sbuf_puts(&out, line_buf);
    char *seen = calloc(1, 1 << 16);
    size_t seen_len = 0;
    char *body = malloc(1 << 16);
    for (int i = 0; body && seen && i < ne; i++) {
        struct supervisor_route r;
        int status = 0;
        if (supervisor_route(d->sup, es[i].model_id, &r) || upstream_get(r.port, "/metrics", r.secret, 2000, &status, body, 1 << 16) ||
            status != 200)
            continue;
        /* strtok_r: HTTP threads run this concurrently, and strtok's state is global. */
        char *save = NULL;
        for (char *line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            if (line[0] == '#') {
                /* "# HELP name ..." / "# TYPE name ...": keep the first of each. */
                if (strstr(seen, line)) continue;
                size_t ll = strlen(line);
                if (seen_len + ll + 2 < (1 << 16)) {
                    memcpy(seen + seen_len, line, ll);
                    seen_len += ll;
                    seen[seen_len++] = '\n';
                }
            }
            /* Samples gain a model="..." label (the engine's own is vLLM's model_name). */
            char *brace = line[0] != '#' ? strchr(line, '{') : NULL;
            int rc = 0;
            if (brace) {
                const size_t pre = (size_t)(brace - line) + 1;
                rc = sbuf_put(&out, line, pre) || sbuf_puts(&out, "model=\"") || sbuf_puts(&out, es[i].name) ||
                     sbuf_puts(&out, "\",") || sbuf_puts(&out, line + pre);
            } else {
                rc = sbuf_puts(&out, line);
            }
            if (rc || sbuf_put(&out, "\n", 1)) goto done;
        }
    }
done:
    free(seen);
    free(es);
    free(body);
    mg_printf(c,
              "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: %zu\r\n"
              "Cache-Control: no-store\r\n\r\n",
              out.n);
    mg_write(c, out.p, out.n);
    sbuf_free(&out);
}

/* ---- /admin/: the console's static files ---- */

static const char *mime(const char *path) {
    const char *dot = strrchr(path, '.');
    if (!dot) return "application/octet-stream";
    static const char *const map[][2] = {{".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
                                         {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
                                         {".json", "application/json"}, {".svg", "image/svg+xml"},
                                         {".png", "image/png"}, {".ico", "image/x-icon"}, {".map", "application/json"},
                                         {".txt", "text/plain; charset=utf-8"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcasecmp(dot, map[i][0])) return map[i][1];
    return "application/octet-stream";
}

/* Serves a file under admin_ui_dir. The path is resolved with realpath and must stay inside
 * the root (no "..", no symlink out); anything else is a 404, not a hint. */
static void ep_console(struct foliod *d, struct mg_connection *c, const struct front_req *r) {
    const char *rel = r->rest;
    char root[PATH_MAX], want[PATH_MAX * 2], real[PATH_MAX];
    if (!d->cfg.admin_ui_dir || !realpath(d->cfg.admin_ui_dir, root)) {
        openai_error_send(c, 404, "NotFoundError", "the admin console is not installed");
        return;
    }
    if (!*rel || rel[strlen(rel) - 1] == '/') snprintf(want, sizeof want, "%s/%sindex.html", root, rel);
    else snprintf(want, sizeof want, "%s/%s", root, rel);
    size_t rl = strlen(root);
    struct stat st;
    if (strstr(rel, "..") || !realpath(want, real) || strncmp(real, root, rl) != 0 || (real[rl] != '/' && real[rl]) ||
        stat(real, &st) != 0 || !S_ISREG(st.st_mode)) {
        openai_error_send(c, 404, "NotFoundError", "no such file");
        return;
    }
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        openai_error_send(c, 404, "NotFoundError", "no such file");
        return;
    }
    /* Revalidated on every use (a 304 when unchanged): the console's module URLs carry no
     * version, so a cached copy could outlive an upgrade. */
    char etag[64];
    snprintf(etag, sizeof etag, "\"%lx-%lx\"", (unsigned long)st.st_mtime, (unsigned long)st.st_size);
    const char *inm = mg_get_header(c, "If-None-Match");
    if (inm && !strcmp(inm, etag)) {
        close(fd);
        mg_printf(c, "HTTP/1.1 304 Not Modified\r\nETag: %s\r\nContent-Length: 0\r\n\r\n", etag);
        return;
    }
    mg_printf(c,
              "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %lld\r\nETag: %s\r\nCache-Control: %s\r\n"
              "X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n"
              "Content-Security-Policy: default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'\r\n\r\n",
              mime(real), (long long)st.st_size, etag, "no-cache");
    char buf[16384];
    ssize_t got;
    while ((got = read(fd, buf, sizeof buf)) > 0)
        if (mg_write(c, buf, (size_t)got) <= 0) break;
    close(fd);
}

/* ---- routing ---- */


enum {
    FRONT_PREFIX = 1,         /* path is a prefix: the route takes everything under it */
    FRONT_API_KEY = 2,        /* an API key (or the console's session) whenever a key exists */
    FRONT_METHOD_MATCHES = 4, /* another method is no route at all (404), not a 405 */
    FRONT_ALSO_HEAD = 8,      /* HEAD is taken as well as the method */
    FRONT_BARE_405 = 16,      /* another method: a 405 with Allow and no body (else a JSON error) */
};

struct front_route {
    const char *path;
    const char *method; /* the one it takes; NULL: any */
    int flags;
    void (*fn)(struct foliod *d, struct mg_connection *c, const struct front_req *r);
};

static void ep_health(struct foliod *d, struct mg_connection *c, const struct front_req *r) {
    wire_send_json(c, 200, "{\"status\":\"ok\"}", NULL);
}

static void ep_version(struct foliod *d, struct mg_connection *c, const struct front_req *r) {
    wire_send_json(c, 200, "{\"version\":\"" FOLIO_VERSION "\"}", NULL);
}

static void ep_admin(struct foliod *d, struct mg_connection *c, const struct front_req *r) {
    admin_handle(d, c, r->method, r->uri);
}

static void ep_console_dir(struct foliod *d, struct mg_connection *c, const struct front_req *r) {
    mg_printf(c, "HTTP/1.1 301 Moved Permanently\r\nLocation: /admin/\r\nContent-Length: 0\r\n\r\n");
}

/* In order: the first that matches takes the request. */
static const struct front_route routes[] = {
    {"/health", NULL, 0, ep_health},
    {"/ready", NULL, 0, ep_ready},
    {"/metrics", "GET", FRONT_METHOD_MATCHES, ep_metrics},
    {"/version", NULL, 0, ep_version},
    {"/api", NULL, 0, ep_admin},
    {"/api/", NULL, FRONT_PREFIX, ep_admin},
    {"/admin", NULL, 0, ep_console_dir},
    {"/admin/", "GET", FRONT_PREFIX | FRONT_ALSO_HEAD, ep_console},
    /* Ahead of the OpenAI table, whose /v1/responses takes POST only: the stored ones. */
    {"/v1/responses/", NULL, FRONT_PREFIX | FRONT_API_KEY, ep_responses_item},
};

/* The OpenAI paths (base/openai_paths.h), after the routes above: path and method come from
 * there. /v1/models is answered from the registry, the rest relayed to an engine. */
static const struct front_route openai_routes[OPENAI_NUM_PATHS] = {
    [OPENAI_MODELS] = {NULL, NULL, FRONT_API_KEY, ep_models},
    [OPENAI_CHAT_COMPLETIONS] = {NULL, NULL, FRONT_API_KEY | FRONT_BARE_405, ep_proxy},
    [OPENAI_COMPLETIONS] = {NULL, NULL, FRONT_API_KEY | FRONT_BARE_405, ep_proxy},
    [OPENAI_TOKENIZE] = {NULL, NULL, FRONT_API_KEY | FRONT_BARE_405, ep_proxy},
    [OPENAI_DETOKENIZE] = {NULL, NULL, FRONT_API_KEY | FRONT_BARE_405, ep_proxy},
    [OPENAI_RESPONSES] = {NULL, NULL, FRONT_API_KEY | FRONT_BARE_405, ep_responses_create},
};

static int method_ok(const struct front_route *rt, const char *m) {
    return !rt->method || !strcmp(m, rt->method) || ((rt->flags & FRONT_ALSO_HEAD) && !strcmp(m, "HEAD"));
}

/* The route for uri and method into *out (and its rest); 0 when none. */
static int find_route(const char *uri, const char *m, struct front_route *out, const char **rest) {
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        const struct front_route *rt = &routes[i];
        const size_t n = strlen(rt->path);
        if ((rt->flags & FRONT_PREFIX) ? strncmp(uri, rt->path, n) != 0 : strcmp(uri, rt->path) != 0) continue;
        if ((rt->flags & FRONT_METHOD_MATCHES) && !method_ok(rt, m)) continue;
        *out = *rt;
        *rest = rt->flags & FRONT_PREFIX ? uri + n : NULL;
        return 1;
    }
    const int k = openai_paths_find(uri, rest);
    if (k < 0) return 0;
    *out = openai_routes[k];
    out->path = openai_paths[k].path;
    out->method = openai_paths[k].method;
    return 1;
}

static int handle(struct mg_connection *c, void *ud) {
    struct front *f = ud;
    struct foliod *d = f->d;
    const struct mg_request_info *ri = mg_get_request_info(c);
    const char *m = ri->request_method, *uri = ri->local_uri ? ri->local_uri : "/";
    struct front_route rt;
    struct front_req r = {m, uri, NULL, 0};
    if (!find_route(uri, m, &rt, &r.rest)) {
        openai_error_send(c, 404, "NotFoundError", "no route for %s %s", m, uri);
        return 1;
    }
    if (rt.flags & FRONT_API_KEY) {
        const int az = api_authorized(d, c, &r.owner);
        if (az < 0) return 1; /* answered: 403 or 429 */
        if (!az) {
            pthread_mutex_lock(&d->stats_mu);
            d->unauthorized++;
            pthread_mutex_unlock(&d->stats_mu);
            openai_error_send(c, 401, "AuthenticationError", "Incorrect API key provided.");
            return 1;
        }
    }
    if (!method_ok(&rt, m)) {
        if (rt.flags & FRONT_BARE_405)
            mg_printf(c, "HTTP/1.1 405 Method Not Allowed\r\nAllow: %s\r\nContent-Length: 0\r\n\r\n", rt.method);
        else
            openai_error_send(c, 405, "invalid_request_error", "only %s here", rt.method);
        return 1;
    }
    rt.fn(d, c, &r);
    return 1;
}

int front_start(struct foliod *d, struct front **out) {
    for (int k = 0; k < OPENAI_NUM_PATHS; k++)
        if (!openai_routes[k].fn) return folio_err(FOLIO_EINVAL, "no route for %s", openai_paths[k].path);
    struct front *h = calloc(1, sizeof *h);
    if (!h) return folio_err(FOLIO_ENOMEM, "out of memory");
    h->d = d;
    h->route = (struct http_route){handle, h};
    struct http_conn_params hp = {.host = d->cfg.host, .port = d->cfg.port, .threads = d->cfg.threads > 0 ? d->cfg.threads : 256,
                                  .timeout_s = d->cfg.header_timeout, .max_conns_per_client = d->cfg.max_conns_per_client};
    snprintf(h->names, sizeof h->names, "%s", d->cfg.server_names ? d->cfg.server_names : "");
    char *save = NULL;
    for (char *t = strtok_r(h->names, ", ", &save); t && hp.num_server_names < HTTP_MAX_SERVER_NAMES;
         t = strtok_r(NULL, ", ", &save))
        hp.server_names[hp.num_server_names++] = t;
    int rc = http_server_start(&hp, &h->route, &h->srv);
    if (rc) {
        free(h);
        return rc;
    }
    *out = h;
    return 0;
}

int front_port(const struct front *h) { return http_server_port(h->srv); }

void front_stop(struct front *h) {
    if (!h) return;
    http_server_stop(h->srv);
    free(h);
}
