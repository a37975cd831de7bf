/* http: foliod's port (8000). Routes: the OpenAI API (/v1/..., /tokenize, /detokenize),
 * proxied to the engine of the request's model; /health, /ready and /metrics; /api/...
 * (admin_api.c); /admin/ (the console's static files). API keys guard the OpenAI routes
 * whenever one exists. */
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

#include "foliod.h"
#include "guard.h"
#include "base/http_conn.h"
#include "json_model.h"
#include "proxy.h"
#include "upstream.h"
#include "base/util.h"

struct http {
    struct foliod *d;
    struct http_server *srv;
    struct http_route route; /* handle(), this */
    char names[1024];        /* cfg.server_names, split in place */
};

void http_send_json(struct mg_connection *c, int status, const char *json, const char *extra_headers) {
    size_t n = strlen(json);
    mg_printf(c,
              "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n%s\r\n",
              status, status == 200 ? "OK" : "Status", n, extra_headers ? extra_headers : "");
    mg_write(c, json, n);
}

int http_read_body(struct foliod *d, struct mg_connection *c, size_t max, char **out, size_t *len) {
    const struct mg_request_info *ri = mg_get_request_info(c);
    if (max == 0) max = d->cfg.max_body;
    /* Refused before anything is buffered when the length is declared; a chunked body is
     * counted as it arrives and never grows a buffer past max. */
    if (ri->content_length > (long long)max) goto too_big;
    size_t cap = ri->content_length >= 0 ? (size_t)ri->content_length + 1 : (max < 65536 ? max + 1 : 65536), n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        proxy_send_error(c, 500, "server_error", "out of memory");
        return FOLIO_ENOMEM;
    }
    for (;;) {
        if (n + 1 >= cap) {
            if (ri->content_length >= 0) break; /* all that was declared */
            if (n >= max) {                     /* one byte more than allowed arrived */
                char probe;
                if (mg_read(c, &probe, 1) <= 0) break;
                free(buf);
                goto too_big;
            }
            size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            if (ncap <= cap) ncap = cap + 1;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                proxy_send_error(c, 500, "server_error", "out of memory");
                return FOLIO_ENOMEM;
            }
            buf = nb;
            cap = ncap;
        }
        int r = mg_read(c, buf + n, cap - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
too_big:
    if (max >= (1u << 20))
        proxy_send_error(c, 413, "invalid_request_error", "the request body exceeds %zu MiB", max >> 20);
    else
        proxy_send_error(c, 413, "invalid_request_error", "the request body exceeds %zu KiB", max >> 10);
    return FOLIO_EINVAL;
}

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
 * address backs off after wrong keys, 403 for a cookie-only POST from another origin. */
static int api_authorized(struct foliod *d, struct mg_connection *c) {
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
            proxy_send_error(c, 403, "PermissionDeniedError",
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

static void handle_proxy(struct foliod *d, struct mg_connection *c, const char *method, const char *uri) {
    char *body = NULL;
    size_t len = 0;
    if (http_read_body(d, c, 0, &body, &len)) return;
    /* Only the top-level "model" is needed: a scan, not a tree of a 16 MiB body. */
    size_t ms = 0, me = 0;
    const int kind = json_model_find(body, len, &ms, &me);
    char name[256] = "";
    if (kind < 0 || kind == JSON_MODEL_OTHER ||
        (kind == JSON_MODEL_STRING && json_model_decode(body, ms, me, name, sizeof name))) {
        free(body);
        proxy_send_error(c, 400, "invalid_request_error", "%s",
                         kind == JSON_MODEL_OTHER ? "model must be a string" : folio_last_error());
        return;
    }
    /* The `default` alias may move while the request is routed (a switch): then the old
     * engine no longer takes it, and it is routed again to where the alias points now. */
    const int alias = !name[0] || !strcmp(name, "default");
    char *out = body;
    size_t out_len = len;
    for (int attempt = 0;; attempt++) {
        struct store_model m;
        if (resolve(d, name, &m)) {
            if (alias) proxy_send_error(c, 404, "NotFoundError", "no model is active as `default`; name a model");
            else proxy_send_error(c, 404, "NotFoundError", "The model `%s` does not exist.", name);
            break;
        }
        /* The engine knows the model by its served name: rewrite an alias to it, in a copy
         * with only the member's value replaced. */
        if (out != body) free(out);
        out = body;
        out_len = len;
        int rc = 0;
        if (strcmp(name, m.name) != 0 && json_model_splice(body, len, kind, ms, me, m.name, &out, &out_len)) {
            out = NULL;
            rc = FOLIO_ENOMEM;
        }
        struct supervisor_route r;
        if (!rc) rc = supervisor_route(d->sup, m.id, &r);
        const int retry = alias && attempt < 20;
        if ((rc == FOLIO_ENOTFOUND || rc == FOLIO_EBUSY) && retry && foliod_default_model(d) != m.id) continue;
        if (rc == FOLIO_ENOTFOUND)
            proxy_send_error(c, 503, "ServiceUnavailableError", "The model `%s` is registered but not loaded.", m.name);
        else if (rc == FOLIO_EBUSY)
            proxy_send_error(c, 503, "ServiceUnavailableError", "The model `%s` is loading; retry shortly.", m.name);
        else if (rc)
            proxy_send_error(c, 500, "server_error", "out of memory");
        else {
            rc = proxy_forward(c, r.port, r.secret, method, uri, out, out_len, m.name, retry);
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
    if (out && out != body) free(out);
    free(body);
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
static void handle_models(struct foliod *d, struct mg_connection *c, const char *id) {
    struct store_model *ms = NULL;
    int n = 0;
    if (store_model_list(d->store, &ms, &n)) {
        proxy_send_error(c, 500, "server_error", "%s", folio_last_error());
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
            proxy_send_error(c, 404, "NotFoundError", "The model `%s` does not exist.", id);
            return;
        }
        root = found;
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    http_send_json(c, 200, s ? s : "{}", NULL);
    free(s);
}

/* ---- ops ---- */

static void handle_ready(struct foliod *d, struct mg_connection *c) {
    int n = 0, ready = 0;
    struct supervisor_engine_info *es = supervisor_list_all(d->sup, &n);
    for (int i = 0; i < n; i++) ready += !strcmp(es[i].state, "ready");
    free(es);
    char body[96];
    snprintf(body, sizeof body, "{\"status\":\"%s\",\"models_ready\":%d}", ready ? "ready" : "not ready", ready);
    http_send_json(c, ready ? 200 : 503, body, NULL);
}

/* foliod's own counters, then each ready engine's exposition (its samples carry
 * model_name); a family's HELP and TYPE lines appear once. */
static void handle_metrics(struct foliod *d, struct mg_connection *c) {
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    if (!out) {
        proxy_send_error(c, 500, "server_error", "out of memory");
        return;
    }
    pthread_mutex_lock(&d->stats_mu);
    n += (size_t)snprintf(out + n, cap - n,
                          "# HELP foliod:proxied_requests_total Requests relayed to engines.\n"
                          "# TYPE foliod:proxied_requests_total counter\nfoliod:proxied_requests_total %lld\n"
                          "# HELP foliod:proxy_errors_total Relayed requests that failed or were cut short.\n"
                          "# TYPE foliod:proxy_errors_total counter\nfoliod:proxy_errors_total %lld\n"
                          "# HELP foliod:unauthorized_total Requests refused for a missing or bad key or session.\n"
                          "# TYPE foliod:unauthorized_total counter\nfoliod:unauthorized_total %lld\n",
                          d->proxied, d->proxy_errors, d->unauthorized);
    pthread_mutex_unlock(&d->stats_mu);
    int ne = 0, ready = 0;
    struct supervisor_engine_info *es = supervisor_list_all(d->sup, &ne);
    for (int i = 0; i < ne; i++) ready += !strcmp(es[i].state, "ready");
    n += (size_t)snprintf(out + n, cap - n,
                          "# HELP foliod:engines Engines by state.\n# TYPE foliod:engines gauge\n"
                          "foliod:engines{state=\"ready\"} %d\nfoliod:engines{state=\"all\"} %d\n",
                          ready, ne);
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
            size_t ll = strlen(line), extra = brace ? strlen(es[i].name) + 10 : 0;
            while (n + ll + extra + 2 >= cap) {
                char *nb = realloc(out, cap * 2);
                if (!nb) goto done;
                out = nb;
                cap *= 2;
            }
            if (brace) {
                size_t pre = (size_t)(brace - line) + 1;
                memcpy(out + n, line, pre);
                n += pre;
                n += (size_t)snprintf(out + n, cap - n, "model=\"%s\",", es[i].name);
                memcpy(out + n, line + pre, ll - pre);
                n += ll - pre;
            } else {
                memcpy(out + n, line, ll);
                n += ll;
            }
            out[n++] = '\n';
        }
    }
done:
    free(seen);
    free(es);
    free(body);
    mg_printf(c,
              "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: %zu\r\n"
              "Cache-Control: no-store\r\n\r\n",
              n);
    mg_write(c, out, n);
    free(out);
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
static void handle_static(struct foliod *d, struct mg_connection *c, const char *rel) {
    char root[PATH_MAX], want[PATH_MAX * 2], real[PATH_MAX];
    if (!d->cfg.admin_ui_dir || !realpath(d->cfg.admin_ui_dir, root)) {
        proxy_send_error(c, 404, "NotFoundError", "the admin console is not installed");
        return;
    }
    if (!*rel || rel[strlen(rel) - 1] == '/') snprintf(want, sizeof want, "%s/%sindex.html", root, rel);
    else snprintf(want, sizeof want, "%s/%s", root, rel);
    size_t rl = strlen(root);
    struct stat st;
    if (strstr(rel, "..") || !realpath(want, real) || strncmp(real, root, rl) != 0 || (real[rl] != '/' && real[rl]) ||
        stat(real, &st) != 0 || !S_ISREG(st.st_mode)) {
        proxy_send_error(c, 404, "NotFoundError", "no such file");
        return;
    }
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        proxy_send_error(c, 404, "NotFoundError", "no such file");
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
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0)
        if (mg_write(c, buf, (size_t)r) <= 0) break;
    close(fd);
}

/* ---- routing ---- */

static int handle(struct mg_connection *c, void *ud) {
    struct http *h = ud;
    struct foliod *d = h->d;
    const struct mg_request_info *ri = mg_get_request_info(c);
    const char *m = ri->request_method, *uri = ri->local_uri ? ri->local_uri : "/";
    const int get = !strcmp(m, "GET"), post = !strcmp(m, "POST");
    if (!strcmp(uri, "/health")) {
        http_send_json(c, 200, "{\"status\":\"ok\"}", NULL);
    } else if (!strcmp(uri, "/ready")) {
        handle_ready(d, c);
    } else if (!strcmp(uri, "/metrics") && get) {
        handle_metrics(d, c);
    } else if (!strcmp(uri, "/version")) {
        http_send_json(c, 200, "{\"version\":\"" FOLIO_VERSION "\"}", NULL);
    } else if (!strncmp(uri, "/api/", 5) || !strcmp(uri, "/api")) {
        admin_handle(d, c, m, uri);
    } else if (!strcmp(uri, "/admin")) {
        mg_printf(c, "HTTP/1.1 301 Moved Permanently\r\nLocation: /admin/\r\nContent-Length: 0\r\n\r\n");
    } else if (!strncmp(uri, "/admin/", 7)) {
        if (!get && strcmp(m, "HEAD") != 0) proxy_send_error(c, 405, "invalid_request_error", "only GET here");
        else handle_static(d, c, uri + 7);
    } else if (!strcmp(uri, "/v1/models") || !strncmp(uri, "/v1/models/", 11) ||
               !strcmp(uri, "/v1/chat/completions") || !strcmp(uri, "/v1/completions") || !strcmp(uri, "/tokenize") ||
               !strcmp(uri, "/detokenize")) {
        const int az = api_authorized(d, c);
        if (az < 0) {
            /* answered: 403 or 429 */
        } else if (!az) {
            pthread_mutex_lock(&d->stats_mu);
            d->unauthorized++;
            pthread_mutex_unlock(&d->stats_mu);
            proxy_send_error(c, 401, "AuthenticationError", "Incorrect API key provided.");
        } else if (!strncmp(uri, "/v1/models", 10)) {
            if (!get) proxy_send_error(c, 405, "invalid_request_error", "only GET here");
            else handle_models(d, c, uri[10] == '/' ? uri + 11 : NULL);
        } else if (!post) {
            mg_printf(c, "HTTP/1.1 405 Method Not Allowed\r\nAllow: POST\r\nContent-Length: 0\r\n\r\n");
        } else {
            handle_proxy(d, c, m, uri);
        }
    } else {
        proxy_send_error(c, 404, "NotFoundError", "no route for %s %s", m, uri);
    }
    return 1;
}

int http_start(struct foliod *d, struct http **out) {
    struct http *h = calloc(1, sizeof *h);
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

int http_port(const struct http *h) { return http_server_port(h->srv); }

void http_stop(struct http *h) {
    if (!h) return;
    http_server_stop(h->srv);
    free(h);
}
