/* admin_api: JSON under /api/ for the console and for scripts.
 *   POST /api/login {password} -> session cookie; POST /api/logout
 *   GET  /api/status            GPUs (NVML), engines with live figures from their /stats
 *   GET|POST /api/models, GET|PATCH|DELETE /api/models/{id}
 *   POST /api/models/{id}/load | unload | activate (the zero-downtime switch of `default`);
 *        loading a Hub model that is not downloaded yet pulls it first
 *   GET|POST|DELETE /api/models/{id}/pull: a Hub model's download (progress, start, cancel)
 *   GET|PUT /api/settings {hf_token}: the Hub token is write-only (the answer says only
 *        whether one is set)
 *   GET  /api/models/{id}/logs?lines=N
 *   GET|POST /api/keys, DELETE /api/keys/{id}
 *   GET  /api/events (JSON, ?since=&limit=; or an SSE stream with Accept: text/event-stream)
 * Everything but login needs a session cookie or the admin token. {id} is a model's id or
 * its name. Before any of it (guard.h): a cross-origin Origin is a 403, a body that is not
 * application/json a 415; a state change authenticated by the cookie needs a same-origin
 * Origin (or Sec-Fetch-Site: same-origin), else 403; wrong passwords and admin tokens back
 * the client's address off (429 with Retry-After). */
#include <civetweb.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin_api.h"
#include "audit.h"
#include "foliod.h"
#include "gpu.h"
#include "guard.h"
#include "hub.h"
#include "pull.h"
#include "upstream.h"
#include "validate.h"
#include "wire.h"
#include "base/openai_error.h"
#include "base/quant.h"
#include "base/util.h"
#include "model/config.h"

#define COOKIE "folio_session"

static void send_obj(struct mg_connection *c, int status, cJSON *j, const char *headers) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    wire_send_json(c, status, s ? s : "{}", headers);
    free(s);
}

static void bad(struct mg_connection *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void bad(struct mg_connection *c, int status, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *type = status == 401 ? "AuthenticationError" : status == 404 ? "NotFoundError"
                     : status == 409 ? "ConflictError" : status >= 500 ? "server_error" : "invalid_request_error";
    openai_error_send(c, status, type, "%s", msg);
}

static int status_of(int rc) {
    return rc == FOLIO_ENOTFOUND ? 404 : rc == FOLIO_EEXIST ? 409 : rc == FOLIO_EBUSY ? 409 : rc == FOLIO_EINVAL ? 400 : 500;
}

/* ---- sessions ---- */

static int session_token(struct mg_connection *c, char *tok, size_t cap) {
    const char *ck = mg_get_header(c, "Cookie");
    return ck && mg_get_cookie(ck, COOKIE, tok, cap) > 0;
}

/* The credential generation sessions are bound to: a hash of the stored admin password hash,
 * so that a password reset (also by another process) ends every session. */
static int session_gen(struct foliod *d, char gen[AUTH_GEN_HEX]) {
    char hash[256];
    int rc = store_admin_get(d->store, hash, sizeof hash);
    if (!rc) rc = auth_sha256_hex(hash, strlen(hash), gen);
    memset(hash, 0, sizeof hash);
    return rc;
}

/* A live session whose password is still the current one. slide: extend its idle expiry. */
static int session_live(struct foliod *d, const char *tok, int slide) {
    char gen[AUTH_GEN_HEX];
    if (session_gen(d, gen)) return 0;
    return auth_session_check_gen(d->sessions, tok, gen, slide);
}

int admin_session_ok(struct foliod *d, struct mg_connection *c) {
    char tok[128];
    return session_token(c, tok, sizeof tok) && session_live(d, tok, 1);
}

enum { AUTHN_NONE, AUTHN_SESSION, AUTHN_TOKEN, AUTHN_ANSWERED };

/* One routed request, as the table's handlers get it (admin_handle). */
struct admin_req {
    const char *method;
    const char *path;         /* the whole path: "/api/models/3/load" */
    const char *id;           /* what {id} matched (its length in id_len); NUL-terminated when
                                 {id} ends the pattern */
    size_t id_len;
    struct store_model model; /* ADMIN_MODEL routes: the model {id} names */
    int how;                  /* AUTHN_SESSION or AUTHN_TOKEN (AUTHN_NONE on open routes) */
    const char *session;      /* the session's token when how is AUTHN_SESSION */
};

/* How the request is authenticated. An admin token (Authorization: Bearer) is checked when
 * one is configured, under the per-address back-off (AUTHN_ANSWERED: a 429 was sent);
 * otherwise the session cookie. */
static int authorized(struct foliod *d, struct mg_connection *c, char *tok, size_t cap) {
    const char *h = mg_get_header(c, "Authorization");
    tok[0] = '\0';
    if (d->cfg.admin_token && *d->cfg.admin_token && h && !strncasecmp(h, "Bearer ", 7)) {
        if (guard_throttled(d, c)) return AUTHN_ANSWERED;
        h += 7;
        while (*h == ' ') h++;
        size_t n = strlen(h);
        while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\r')) n--;
        if (auth_equal(h, n, d->cfg.admin_token, strlen(d->cfg.admin_token))) {
            guard_succeeded(d, c);
            return AUTHN_TOKEN;
        }
        guard_failed(d, c);
        return AUTHN_NONE;
    }
    if (session_token(c, tok, cap) && session_live(d, tok, 1)) return AUTHN_SESSION;
    return AUTHN_NONE;
}

#define ADMIN_MAX_JSON_VALUES 100000

static cJSON *read_json_max(struct foliod *d, struct mg_connection *c, size_t max) {
    char *body = NULL;
    size_t len = 0;
    if (wire_read_body(c, max ? max : d->cfg.max_body, &body, &len)) return NULL;
    /* Checked before cJSON builds a tree: its recursion would overflow a 100 KiB handler
     * stack on a few thousand '[', and each value costs ~80 bytes. Admin bodies are small. */
    if (folio_json_max_depth(body, len, FOLIO_JSON_MAX_DEPTH) > FOLIO_JSON_MAX_DEPTH ||
        folio_json_count_values(body, len, ADMIN_MAX_JSON_VALUES) > ADMIN_MAX_JSON_VALUES) {
        free(body);
        bad(c, 400, "the request body nests more than %d levels or holds more than %d JSON values",
            FOLIO_JSON_MAX_DEPTH, ADMIN_MAX_JSON_VALUES);
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(body, len);
    free(body);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        bad(c, 400, "the request body is not a JSON object");
        return NULL;
    }
    return j;
}

static cJSON *read_json(struct foliod *d, struct mg_connection *c) { return read_json_max(d, c, 0); }

/* Login bodies are small: a bigger one is refused before it is buffered. */
#define LOGIN_MAX_BODY 4096

static void login(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    /* An address in its back-off wait is not even checked (nor its body read). */
    if (guard_throttled(d, c)) return;
    cJSON *j = read_json_max(d, c, LOGIN_MAX_BODY);
    if (!j) return;
    const cJSON *pw = cJSON_GetObjectItemCaseSensitive(j, "password");
    char hash[256], gen[AUTH_GEN_HEX];
    int ok = cJSON_IsString(pw) && store_admin_get(d->store, hash, sizeof hash) == 0 &&
             auth_password_check(pw->valuestring, hash);
    if (ok) auth_sha256_hex(hash, strlen(hash), gen);
    memset(hash, 0, sizeof hash);
    cJSON_Delete(j);
    if (!ok) {
        /* The address backs off (guard.c) instead of an HTTP thread sleeping; the event log
         * gets at most one aggregated entry a minute (audit.c). */
        guard_failed(d, c);
        audit_login_failed(d->audit, guard_addr(c), folio_now());
        bad(c, 401, "wrong password");
        return;
    }
    guard_succeeded(d, c);
    audit_flush(d->audit, folio_now());
    char tok[AUTH_SESSION_HEX], hdr[256];
    if (auth_session_new_gen(d->sessions, tok, gen)) {
        bad(c, 500, "%s", folio_last_error());
        return;
    }
    snprintf(hdr, sizeof hdr, "Set-Cookie: " COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict\r\n", tok);
    wire_send_json(c, 200, "{\"ok\":true}", hdr);
}

static void logout(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    char tok[128];
    if (session_token(c, tok, sizeof tok)) auth_session_end(d->sessions, tok);
    wire_send_json(c, 200, "{\"ok\":true}",
                   "Set-Cookie: " COOKIE "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0\r\n");
}

/* ---- models ---- */

/* A model's pull from its store row, with the live rate and ETA while it runs; NULL when
 * the model was never pulled. */
static cJSON *download_json(struct foliod *d, int64_t model_id) {
    struct store_download *row = malloc(sizeof *row);
    if (!row || store_download_get(d->store, model_id, row)) {
        free(row);
        return NULL;
    }
    cJSON *o = cJSON_CreateObject();
    double rate = 0, eta = -1;
    const int active = d->pulls && pull_rate(d->pulls, model_id, &rate, &eta) == 0;
    cJSON_AddNumberToObject(o, "model_id", (double)model_id);
    cJSON_AddStringToObject(o, "state", row->state);
    cJSON_AddBoolToObject(o, "active", active);
    cJSON_AddStringToObject(o, "sha", row->sha);
    cJSON_AddNumberToObject(o, "bytes_done", (double)row->bytes_done);
    cJSON_AddNumberToObject(o, "bytes_total", (double)row->bytes_total);
    cJSON_AddNumberToObject(o, "files_done", row->files_done);
    cJSON_AddNumberToObject(o, "files_total", row->files_total);
    cJSON_AddNumberToObject(o, "progress", row->bytes_total ? (double)row->bytes_done / (double)row->bytes_total : 0);
    cJSON_AddNumberToObject(o, "rate_bytes_per_s", rate);
    if (eta >= 0) cJSON_AddNumberToObject(o, "eta_s", eta);
    else cJSON_AddNullToObject(o, "eta_s");
    cJSON_AddBoolToObject(o, "load_after", row->load_after);
    cJSON_AddStringToObject(o, "error", row->error);
    cJSON *files = cJSON_Parse(row->files);
    cJSON_AddItemToObject(o, "files", files ? files : cJSON_CreateArray());
    cJSON_AddNumberToObject(o, "started", (double)row->started);
    cJSON_AddNumberToObject(o, "updated", (double)row->updated);
    free(row);
    return o;
}

static cJSON *model_json(struct foliod *d, const struct store_model *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)m->id);
    cJSON_AddStringToObject(o, "name", m->name);
    cJSON_AddStringToObject(o, "source", m->source);
    cJSON_AddStringToObject(o, "repo_id", m->repo_id);
    cJSON_AddStringToObject(o, "revision", m->revision);
    cJSON_AddStringToObject(o, "path", m->path);
    cJSON_AddNumberToObject(o, "max_model_len", m->max_model_len);
    cJSON_AddStringToObject(o, "dtype", m->dtype[0] ? m->dtype : "auto");
    cJSON_AddStringToObject(o, "kv_cache_dtype", m->kv_cache_dtype[0] ? m->kv_cache_dtype : "auto");
    cJSON_AddStringToObject(o, "quantization", m->quantization[0] ? m->quantization : "none");
    cJSON_AddNumberToObject(o, "gpu_memory_utilization", m->gpu_memory_utilization);
    cJSON_AddNumberToObject(o, "block_size", m->block_size);
    cJSON_AddNumberToObject(o, "max_num_seqs", m->max_num_seqs);
    cJSON_AddNumberToObject(o, "kv_cache_space", m->kv_cache_space);
    cJSON_AddStringToObject(o, "device", m->device[0] ? m->device : "auto");
    cJSON_AddStringToObject(o, "chat_template", m->chat_template);
    cJSON_AddStringToObject(o, "state", m->state);
    cJSON_AddBoolToObject(o, "loaded", m->want_loaded);
    cJSON_AddBoolToObject(o, "default", m->id == foliod_default_model(d));
    cJSON_AddStringToObject(o, "last_error", m->last_error);
    cJSON_AddNumberToObject(o, "created", (double)m->created);
    cJSON *dl = m->source[0] == 'h' ? download_json(d, m->id) : NULL;
    if (dl) cJSON_AddItemToObject(o, "download", dl);
    else cJSON_AddNullToObject(o, "download");
    return o;
}

/* Copies the fields a request sets onto m, validating each; a message names the first bad
 * one. */
static int apply_fields(const cJSON *j, struct store_model *m, char *why, size_t cap) {
    const cJSON *v;
#define STR(key, field)                                                                                     \
    if ((v = cJSON_GetObjectItemCaseSensitive(j, key))) {                                                   \
        if (!cJSON_IsString(v) || strlen(v->valuestring) >= sizeof m->field)                                \
            return snprintf(why, cap, "%s must be a string of at most %zu bytes", key, sizeof m->field - 1), -1; \
        snprintf(m->field, sizeof m->field, "%s", v->valuestring);                                          \
    }
#define NUM(key, field, lo, hi)                                                                             \
    if ((v = cJSON_GetObjectItemCaseSensitive(j, key)) && !cJSON_IsNull(v)) {                               \
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= (lo) && v->valuedouble <= (hi)))                     \
            return snprintf(why, cap, "%s must be a number in [%g, %g]", key, (double)(lo), (double)(hi)), -1; \
        m->field = v->valuedouble;                                                                          \
    }
    STR("name", name);
    STR("path", path);
    STR("repo_id", repo_id);
    STR("revision", revision);
    STR("dtype", dtype);
    STR("kv_cache_dtype", kv_cache_dtype);
    STR("quantization", quantization);
    STR("device", device);
    STR("chat_template", chat_template);
    NUM("max_model_len", max_model_len, 0, 1 << 24);
    NUM("gpu_memory_utilization", gpu_memory_utilization, 0, 1);
    NUM("block_size", block_size, 0, 1024);
    NUM("max_num_seqs", max_num_seqs, 0, 65536);
    NUM("kv_cache_space", kv_cache_space, 0, 1 << 20);
#undef STR
#undef NUM
    if (!strcmp(m->dtype, "auto")) m->dtype[0] = '\0';
    if (!strcmp(m->device, "auto")) m->device[0] = '\0';
    if (validate_model_name(m->name)) return snprintf(why, cap, "%s", folio_last_error()), -1;
    static const char *const dtypes[] = {"", "float32", "float", "fp32", "float16", "half", "fp16", "bfloat16", "bf16"};
    int ok = 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++) ok |= !strcmp(m->dtype, dtypes[i]);
    if (!ok) return snprintf(why, cap, "dtype must be auto, float32, float16 or bfloat16"), -1;
    /* vLLM's spellings, stored as the engine's canonical ones ("" = auto). */
    enum folio_dtype kvd;
    if (config_kv_dtype(m->kv_cache_dtype, FOLIO_F32, &kvd))
        return snprintf(why, cap, "kv_cache_dtype must be auto, bfloat16, float32 or fp8"), -1;
    if (m->kv_cache_dtype[0] && strcmp(m->kv_cache_dtype, "auto"))
        snprintf(m->kv_cache_dtype, sizeof m->kv_cache_dtype, "%s",
                 kvd == FOLIO_FP8 ? "fp8" : kvd == FOLIO_BF16 ? "bfloat16" : "float32");
    else
        m->kv_cache_dtype[0] = '\0';
    enum folio_dtype qd;
    if (quant_parse_method(m->quantization, &qd))
        return snprintf(why, cap, "quantization must be none, int8, int4 or fp8"), -1;
    if (!qd) m->quantization[0] = '\0'; /* "none" */
    if (m->device[0] && strcmp(m->device, "cpu") && strcmp(m->device, "cuda"))
        return snprintf(why, cap, "device must be auto, cpu or cuda"), -1;
    if (m->block_size && (m->block_size & (m->block_size - 1)))
        return snprintf(why, cap, "block_size must be a power of two"), -1;
    /* A Hub model's path is where its pull put the files: never the client's to give. */
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(j, "path");
    const int path_given = cJSON_IsString(pj) && pj->valuestring[0];
    if (path_given && m->repo_id[0])
        return snprintf(why, cap, "give a local path or a repo_id, not both (a Hub model's files are pulled)"), -1;
    if (m->repo_id[0]) { /* a Hub model; its path is where a pull put the files */
        if (!hub_valid_repo(m->repo_id))
            return snprintf(why, cap, "repo_id \"%.200s\" is not a Hub repo id (org/name)", m->repo_id), -1;
        snprintf(m->source, sizeof m->source, "hf");
        if (!m->revision[0]) snprintf(m->revision, sizeof m->revision, "main");
    } else if (m->path[0]) {
        char real[PATH_MAX];
        if (validate_model_dir(m->path, real, sizeof m->path)) return snprintf(why, cap, "%s", folio_last_error()), -1;
        memcpy(m->path, real, strlen(real) + 1); /* fits: validate_model_dir checked */
        snprintf(m->source, sizeof m->source, "local");
    } else {
        return snprintf(why, cap, "give a local path (a model directory) or a repo_id"), -1;
    }
    /* Inline text, or a file inside the model directory (checked again at spawn, where a Hub
     * model's directory is first known). */
    if (m->chat_template[0] && !validate_template_inline(m->chat_template) && m->path[0]) {
        char real[PATH_MAX];
        if (validate_template_file(m->chat_template, m->path, real, sizeof real))
            return snprintf(why, cap, "%s", folio_last_error()), -1;
    }
    return 0;
}

/* {id} is a number or a name. */
static int find_model(struct foliod *d, const char *ref, struct store_model *m) {
    char *end;
    long long id = strtoll(ref, &end, 10);
    if (*ref && !*end && id > 0) return store_model_get(d->store, id, m);
    return store_model_find(d->store, ref, m);
}

static void models_list(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    struct store_model *ms = NULL;
    int n = 0;
    if (store_model_list(d->store, &ms, &n)) {
        bad(c, 500, "%s", folio_last_error());
        return;
    }
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, model_json(d, &ms[i]));
    free(ms);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "models", a);
    send_obj(c, 200, o, NULL);
}

static void model_create(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    cJSON *j = read_json(d, c);
    if (!j) return;
    struct store_model m = {0};
    snprintf(m.state, sizeof m.state, "registered");
    char why[512];
    if (apply_fields(j, &m, why, sizeof why)) {
        cJSON_Delete(j);
        bad(c, 400, "%s", why);
        return;
    }
    cJSON_Delete(j);
    int rc = store_model_add(d->store, &m);
    if (rc) {
        bad(c, status_of(rc), "%s", folio_last_error());
        return;
    }
    store_event_add(d->store, "info", "model.added", m.id, "registered %s (%s)", m.name,
                    m.source[0] == 'h' ? m.repo_id : m.path);
    foliod_notify(d);
    send_obj(c, 201, model_json(d, &m), NULL);
}

static void model_get(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    send_obj(c, 200, model_json(d, &r->model), NULL);
}

static void model_patch(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    struct store_model *m = &r->model;
    cJSON *j = read_json(d, c);
    if (!j) return;
    char why[512], repo[sizeof m->repo_id], rev[sizeof m->revision];
    memcpy(repo, m->repo_id, sizeof repo);
    memcpy(rev, m->revision, sizeof rev);
    if (apply_fields(j, m, why, sizeof why)) {
        cJSON_Delete(j);
        bad(c, 400, "%s", why);
        return;
    }
    cJSON_Delete(j);
    /* Another repo or revision: the files pulled for the old one no longer apply. */
    if (m->source[0] == 'h' && (strcmp(repo, m->repo_id) || strcmp(rev, m->revision))) m->path[0] = '\0';
    int rc = store_model_update(d->store, m);
    if (rc) {
        bad(c, status_of(rc), "%s", folio_last_error());
        return;
    }
    store_event_add(d->store, "info", "model.updated", m->id, "updated %s (applies at its next load)", m->name);
    foliod_notify(d);
    send_obj(c, 200, model_json(d, m), NULL);
}

/* The end of load, unload and activate: the error for rc, else the model as it is now. */
static void model_changed(struct foliod *d, struct mg_connection *c, struct store_model *m, int rc, int status) {
    if (rc) {
        bad(c, status_of(rc), "%s", folio_last_error());
        return;
    }
    foliod_notify(d);
    store_model_get(d->store, m->id, m);
    send_obj(c, status, model_json(d, m), NULL);
}

static void model_load(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    struct store_model *m = &r->model;
    /* A Hub model without its files yet: pull, then load (pull.c's on_done). */
    const int rc = m->source[0] == 'h' && !m->path[0] ? pull_start(d->pulls, m->id, 1) : supervisor_load(d->sup, m->id);
    model_changed(d, c, m, rc, 202);
}

static void model_unload(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    struct store_model *m = &r->model;
    if (foliod_default_model(d) == m->id) foliod_set_default_model(d, 0);
    model_changed(d, c, m, supervisor_unload(d->sup, m->id), 202);
}

/* The zero-downtime switch: the new engine must be ready before `default` moves; the old one
 * then drains its in-flight requests and stops. */
static void model_activate(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    struct store_model *m = &r->model;
    const int64_t old = foliod_default_model(d);
    if (m->source[0] == 'h' && !m->path[0]) {
        bad(c, 409, "%s is not downloaded yet: pull it (POST /api/models/%lld/pull) or load it first", m->name,
            (long long)m->id);
        return;
    }
    int rc = supervisor_load(d->sup, m->id);
    if (rc == 0) {
        int ready = supervisor_wait_ready(d->sup, m->id, 900);
        if (ready != 1) {
            struct store_model now;
            store_model_get(d->store, m->id, &now);
            bad(c, 409, "%s did not become ready (%s)%s%s", m->name, ready < 0 ? "timed out" : now.state,
                now.last_error[0] ? ": " : "", now.last_error);
            return;
        }
        foliod_set_default_model(d, m->id);
        store_event_add(d->store, "info", "model.activated", m->id, "`default` is now %s", m->name);
        if (old && old != m->id) supervisor_unload(d->sup, old);
    }
    model_changed(d, c, m, rc, 200);
}

static void model_delete(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    const struct store_model *m = &r->model;
    if (foliod_default_model(d) == m->id) foliod_set_default_model(d, 0);
    pull_cancel(d->pulls, m->id); /* FOLIO_ENOTFOUND when none runs: nothing to stop */
    supervisor_unload(d->sup, m->id);
    /* The engine drains before the row goes: wait for it (bounded by its stop timeout). */
    for (int i = 0; i < 400; i++) {
        struct supervisor_route sr;
        if (supervisor_route(d->sup, m->id, &sr) == FOLIO_ENOTFOUND && supervisor_wait_ready(d->sup, m->id, 0.05) == 0)
            break;
        usleep(100 * 1000);
    }
    int rc = store_model_delete(d->store, m->id);
    if (rc) {
        bad(c, status_of(rc), "%s", folio_last_error());
        return;
    }
    store_event_add(d->store, "info", "model.deleted", 0, "deleted %s", m->name);
    foliod_notify(d);
    wire_send_json(c, 200, "{\"deleted\":true}", NULL);
}

static void model_logs(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    const struct store_model *m = &r->model;
    int n = 0;
    struct supervisor_engine_info *es = supervisor_list_all(d->sup, &n);
    char log_path[1024] = "";
    for (int i = 0; i < n; i++)
        if (es[i].model_id == m->id) snprintf(log_path, sizeof log_path, "%s", es[i].log_path);
    free(es);
    const char *path = log_path[0] ? log_path : NULL;
    const struct mg_request_info *ri = mg_get_request_info(c);
    char v[16];
    int lines = 200;
    if (ri->query_string && mg_get_var(ri->query_string, strlen(ri->query_string), "lines", v, sizeof v) > 0)
        lines = atoi(v);
    if (lines < 1 || lines > 10000) lines = 200;
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "lines");
    FILE *f = path ? fopen(path, "r") : NULL;
    if (f) {
        /* The last `lines` lines, from at most the last 1 MiB. */
        fseek(f, 0, SEEK_END);
        long size = ftell(f), from = size > (1 << 20) ? size - (1 << 20) : 0;
        fseek(f, from, SEEK_SET);
        char *buf = malloc((size_t)(size - from) + 1);
        size_t got = buf ? fread(buf, 1, (size_t)(size - from), f) : 0;
        if (buf) {
            buf[got] = '\0';
            char *p = buf + got;
            int seen = 0;
            while (p > buf && seen <= lines)
                if (*--p == '\n') seen++;
            if (*p == '\n') p++;
            char *save = NULL; /* strtok_r: concurrent HTTP threads */
            for (char *line = strtok_r(p, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                cJSON_AddItemToArray(arr, cJSON_CreateString(line));
        }
        free(buf);
        fclose(f);
    }
    send_obj(c, 200, o, NULL);
}

static void human_bytes(double b, char *out, size_t cap) {
    if (b >= (double)(1 << 30)) snprintf(out, cap, "%.2f GiB", b / (1 << 30));
    else snprintf(out, cap, "%.1f MiB", b / (1 << 20));
}

/* A parameter count as model cards write it: 30.5B, 135M, 260K. */
static void human_count(double n, char *out, size_t cap) {
    if (n >= 1e9) snprintf(out, cap, "%.1fB", n / 1e9);
    else if (n >= 1e6) snprintf(out, cap, "%.0fM", n / 1e6);
    else snprintf(out, cap, "%.0fK", n / 1e3);
}

/* Bytes of the *.safetensors files in dir: the weights as the checkpoint stores them. */
static int64_t safetensors_bytes(const char *dir) {
    char file[1400];
    int64_t n = 0;
    DIR *dd = opendir(dir);
    for (struct dirent *e; dd && (e = readdir(dd));) {
        const size_t l = strlen(e->d_name);
        struct stat sb;
        if (l < 12 || strcmp(e->d_name + l - 12, ".safetensors") != 0) continue;
        snprintf(file, sizeof file, "%.1100s/%.256s", dir, e->d_name);
        if (stat(file, &sb) == 0) n += sb.st_size;
    }
    if (dd) closedir(dd);
    return n;
}

/* POST /api/models/estimate: will a model fit, and how long a context? From its config
 * (a local dir, or the Hub's config.json) and the device's free memory: the weights in the
 * chosen dtype plus the KV cache for max_model_len, against the GPU share (or the CPU's KV
 * space), and the longest max_model_len the rest could hold. */
static void model_estimate(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    cJSON *j = read_json(d, c);
    if (!j) return;
    struct store_model m = {0};
    char why[512];
    struct model_config *cfg = calloc(1, sizeof *cfg);
    cJSON *o = NULL;
    int64_t ckpt_bytes = 0;
    if (!cfg) {
        bad(c, 500, "out of memory");
        goto out;
    }
    snprintf(m.name, sizeof m.name, "estimate"); /* the form may not have a name yet */
    if (apply_fields(j, &m, why, sizeof why)) {
        bad(c, 400, "%s", why);
        goto out;
    }
    if (m.source[0] == 'h') {
        char token[1024], err[512] = "";
        pull_token(d->pulls, token, sizeof token);
        const struct hub_conn conn = {.endpoint = d->cfg.hf_endpoint, .token = token, .stall_s = 20, .max_attempts = 2};
        struct hub_repo *repo = malloc(sizeof *repo);
        char *json = NULL;
        enum hub_status st = repo ? hub_resolve(&conn, m.repo_id, m.revision, repo, err, sizeof err) : HUB_TRANSIENT;
        if (!st) st = hub_fetch(&conn, m.repo_id, repo->sha, "config.json", &json, err, sizeof err);
        for (int i = 0; !st && i < repo->num_files; i++)
            if (strstr(repo->files[i].name, ".safetensors") && !strstr(repo->files[i].name, ".index.json"))
                ckpt_bytes += repo->files[i].size;
        memset(token, 0, sizeof token);
        free(repo);
        if (st || config_parse(json, cfg)) {
            free(json);
            bad(c, st == HUB_NOT_FOUND ? 404 : 422, "%s", st ? err : folio_last_error());
            goto out;
        }
        free(json);
    } else {
        if (config_load(m.path, cfg)) {
            bad(c, 422, "%s", folio_last_error());
            goto out;
        }
        ckpt_bytes = safetensors_bytes(m.path);
    }
    const int bs = m.block_size > 0 ? m.block_size : 16;
    const int len = m.max_model_len > 0 ? m.max_model_len : cfg->max_position_embeddings;
    enum folio_dtype dt = cfg->torch_dtype;
    if (!strcmp(m.dtype, "float32")) dt = FOLIO_F32;
    else if (!strcmp(m.dtype, "float16")) dt = FOLIO_F16;
    else if (!strcmp(m.dtype, "bfloat16")) dt = FOLIO_BF16;
    enum folio_dtype qd = (enum folio_dtype)0; /* --quantization: the matrices' resident size changes */
    quant_parse_method(m.quantization, &qd);
    const double weights = qd || (m.dtype[0] && strcmp(m.dtype, "auto"))
                               ? (double)config_weight_bytes(cfg, qd ? qd : dt)
                               : (double)(ckpt_bytes ? ckpt_bytes : (int64_t)config_weight_bytes(cfg, dt));
    /* A model that mixes sliding and full layers keeps the sliding ones' K/V for the window
     * only (config_kv_split): those cost one sequence a fixed amount, not one per token. */
    const int split = config_kv_split(cfg);
    enum folio_dtype kvd = FOLIO_F32; /* the engine's rule: auto follows the weights (config_kv_dtype) */
    config_kv_dtype(m.kv_cache_dtype, dt, &kvd);
    const double per_token =
        (double)(split ? config_kv_block_bytes_layers(cfg, bs, 0, kvd) : config_kv_block_bytes(cfg, bs, kvd)) / bs;
    const double window_kv = split ? (double)config_kv_local_blocks(cfg, bs, 1, 0, len) *
                                         (double)config_kv_block_bytes_layers(cfg, bs, 1, kvd)
                                   : 0.0;
    struct gpu_info g[GPU_MAX];
    const int ng = strcmp(m.device, "cpu") ? gpu_query(g, GPU_MAX, NULL) : 0;
    double budget, free_bytes;
    const char *device;
    if (ng > 0) { /* this engine's share of GPU 0, less what others hold; ~10% for activations */
        const double share = m.gpu_memory_utilization > 0 ? m.gpu_memory_utilization : 0.9;
        free_bytes = (double)g[0].mem_free;
        budget = fmin(share * (double)g[0].mem_total, free_bytes) * 0.9 - weights;
        device = "cuda";
    } else { /* the CPU: the KV pool is --kv-cache-space (4 GiB) */
        free_bytes = (m.kv_cache_space > 0 ? m.kv_cache_space : 4.0) * (double)(1 << 30);
        budget = free_bytes;
        device = "cpu";
    }
    const double kv_need = per_token * len + window_kv;
    const double fits_len = budget > window_kv && per_token > 0 ? floor((budget - window_kv) / per_token / bs) * bs : 0;
    int64_t params_total, params_active;
    config_param_counts(cfg, &params_total, &params_active);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "device", device);
    cJSON_AddStringToObject(o, "architecture", cfg->arch_name);
    cJSON_AddNumberToObject(o, "params_total", (double)params_total);
    cJSON_AddNumberToObject(o, "params_active", (double)params_active);
    cJSON_AddNumberToObject(o, "weights_bytes", weights);
    cJSON_AddNumberToObject(o, "kv_bytes_per_token", per_token);
    cJSON_AddStringToObject(o, "kv_cache_dtype", folio_dtype_name(kvd));
    cJSON_AddNumberToObject(o, "kv_window_bytes", window_kv);
    cJSON_AddNumberToObject(o, "max_model_len", len);
    cJSON_AddNumberToObject(o, "kv_bytes_needed", kv_need);
    cJSON_AddNumberToObject(o, "free_bytes", free_bytes);
    cJSON_AddBoolToObject(o, "fits", budget >= kv_need);
    cJSON_AddNumberToObject(o, "max_model_len_fits", fmin(fits_len, cfg->max_position_embeddings));
    char note[480], wb[32], kb[32], fb[32], params[96], pt[16], pa[16];
    human_bytes(weights, wb, sizeof wb);
    human_bytes(kv_need, kb, sizeof kb);
    human_bytes(free_bytes, fb, sizeof fb);
    human_count((double)params_total, pt, sizeof pt);
    human_count((double)params_active, pa, sizeof pa);
    if (params_active < params_total)
        snprintf(params, sizeof params, "%s parameters, %s active per token; ", pt, pa);
    else
        snprintf(params, sizeof params, "%s parameters; ", pt);
    if (ng > 0)
        snprintf(note, sizeof note, "%sweights %s + %s KV for %d tokens %s against %s free on %.100s", params, wb,
                 folio_dtype_name(kvd), len, kb, fb, g[0].name);
    else
        snprintf(note, sizeof note, "%sno GPU: weights %s in RAM; %s KV for %d tokens %s of the %s KV space", params,
                 wb, folio_dtype_name(kvd), len, kb, fb);
    cJSON_AddStringToObject(o, "note", note);
    send_obj(c, 200, o, NULL);
out:
    free(cfg);
    cJSON_Delete(j);
}

/* GET: the download's progress; POST: start (or join) the pull; DELETE: cancel it, deleting
 * its files. */
static void model_pull(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    struct store_model *m = &r->model;
    const char *method = r->method;
    int rc = 0;
    if (!strcmp(method, "POST")) {
        if (m->source[0] != 'h') {
            bad(c, 400, "%s is a local model (%s): only Hub models (repo_id) are pulled", m->name, m->path);
            return;
        }
        rc = pull_start(d->pulls, m->id, 0);
    } else if (!strcmp(method, "DELETE")) {
        rc = pull_cancel(d->pulls, m->id);
    }
    if (rc) {
        bad(c, status_of(rc), "%s", folio_last_error());
        return;
    }
    if (strcmp(method, "GET") != 0) foliod_notify(d);
    cJSON *o = download_json(d, m->id);
    if (!o && !strcmp(method, "POST")) { /* the thread has not written its row yet */
        o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "model_id", (double)m->id);
        cJSON_AddStringToObject(o, "state", "queued");
        cJSON_AddBoolToObject(o, "active", 1);
    }
    if (!o) {
        bad(c, 404, "%s has never been pulled", m->name);
        return;
    }
    send_obj(c, !strcmp(method, "POST") ? 202 : 200, o, NULL);
}

/* ---- keys ---- */

static void keys_list(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    struct store_key *ks = NULL;
    int n = 0;
    if (store_key_list(d->store, &ks, &n)) {
        bad(c, 500, "%s", folio_last_error());
        return;
    }
    cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "keys");
    for (int i = 0; i < n; i++) {
        cJSON *k = cJSON_CreateObject();
        cJSON_AddNumberToObject(k, "id", (double)ks[i].id);
        cJSON_AddStringToObject(k, "name", ks[i].name);
        cJSON_AddStringToObject(k, "prefix", ks[i].prefix);
        cJSON_AddNumberToObject(k, "created", (double)ks[i].created);
        if (ks[i].last_used) cJSON_AddNumberToObject(k, "last_used", (double)ks[i].last_used);
        else cJSON_AddNullToObject(k, "last_used");
        cJSON_AddItemToArray(a, k);
    }
    free(ks);
    send_obj(c, 200, o, NULL);
}

static void key_create(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    cJSON *j = read_json(d, c);
    if (!j) return;
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(j, "name");
    struct store_key k = {0};
    if (nm && (!cJSON_IsString(nm) || strlen(nm->valuestring) >= sizeof k.name)) {
        cJSON_Delete(j);
        bad(c, 400, "name must be a string of at most %zu bytes", sizeof k.name - 1);
        return;
    }
    snprintf(k.name, sizeof k.name, "%s", nm ? nm->valuestring : "");
    cJSON_Delete(j);
    char key[AUTH_KEY_LEN + 1];
    int rc = auth_key_new(key, k.hash);
    if (!rc) {
        snprintf(k.prefix, sizeof k.prefix, "%.10s", key);
        rc = store_key_add(d->store, &k);
    }
    if (!rc) rc = foliod_keys_reload(d);
    if (rc) {
        bad(c, 500, "%s", folio_last_error());
        return;
    }
    store_event_add(d->store, "info", "key.created", 0, "API key %s (%s...) created", k.name, k.prefix);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)k.id);
    cJSON_AddStringToObject(o, "name", k.name);
    cJSON_AddStringToObject(o, "prefix", k.prefix);
    cJSON_AddStringToObject(o, "key", key); /* the only time it is ever shown */
    cJSON_AddNumberToObject(o, "created", (double)k.created);
    send_obj(c, 201, o, NULL);
}

/* {id} ends the pattern: r->id is the rest of the path. */
static void key_delete(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    int rc = store_key_delete(d->store, atoll(r->id));
    if (!rc) rc = foliod_keys_reload(d);
    if (rc) {
        bad(c, status_of(rc), "%s", folio_last_error());
        return;
    }
    store_event_add(d->store, "info", "key.revoked", 0, "API key %s revoked", r->id);
    wire_send_json(c, 200, "{\"deleted\":true}", NULL);
}

/* ---- status and events ---- */

static cJSON *status_json(struct foliod *d) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", FOLIO_VERSION);
    cJSON_AddNumberToObject(o, "uptime_s", folio_now() - d->t_start);
    struct gpu_info g[GPU_MAX];
    const char *why = NULL;
    int ng = gpu_query(g, GPU_MAX, &why);
    cJSON *ga = cJSON_AddArrayToObject(o, "gpus");
    for (int i = 0; i < ng; i++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "index", g[i].index);
        cJSON_AddStringToObject(x, "name", g[i].name);
        cJSON_AddStringToObject(x, "uuid", g[i].uuid);
        cJSON_AddNumberToObject(x, "memory_total", (double)g[i].mem_total);
        cJSON_AddNumberToObject(x, "memory_used", (double)g[i].mem_used);
        cJSON_AddNumberToObject(x, "memory_free", (double)g[i].mem_free);
        cJSON_AddNumberToObject(x, "utilization", g[i].util_gpu);
        cJSON_AddNumberToObject(x, "temperature", g[i].temperature);
        cJSON_AddItemToArray(ga, x);
    }
    if (!ng && why) cJSON_AddStringToObject(o, "gpus_note", why);
    struct store_model def;
    const int64_t did = foliod_default_model(d);
    if (did && store_model_get(d->store, did, &def) == 0) cJSON_AddStringToObject(o, "default_model", def.name);
    else cJSON_AddNullToObject(o, "default_model");
    int n = 0;
    struct supervisor_engine_info *es = supervisor_list_all(d->sup, &n);
    cJSON *ea = cJSON_AddArrayToObject(o, "engines");
    char *body = malloc(1 << 16);
    for (int i = 0; i < n; i++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "model_id", (double)es[i].model_id);
        cJSON_AddStringToObject(x, "model", es[i].name);
        cJSON_AddStringToObject(x, "state", es[i].state);
        cJSON_AddNumberToObject(x, "pid", es[i].pid);
        cJSON_AddNumberToObject(x, "port", es[i].port);
        cJSON_AddNumberToObject(x, "uptime_s", es[i].uptime);
        cJSON_AddNumberToObject(x, "restarts", es[i].restarts);
        if (es[i].last_error[0]) cJSON_AddStringToObject(x, "last_error", es[i].last_error);
        struct supervisor_route r;
        int st = 0;
        cJSON *s = NULL;
        if (body && supervisor_route(d->sup, es[i].model_id, &r) == 0 &&
            upstream_get(r.port, "/stats", r.secret, 1000, &st, body, 1 << 16) == 0 && st == 200)
            s = cJSON_Parse(body);
        if (s) {
            const cJSON *req = cJSON_GetObjectItem(s, "requests"), *kv = cJSON_GetObjectItem(s, "kv_cache"),
                        *tk = cJSON_GetObjectItem(s, "tokens"), *pc = cJSON_GetObjectItem(s, "prefix_cache");
            cJSON_AddNumberToObject(x, "running", cJSON_GetNumberValue(cJSON_GetObjectItem(req, "running")));
            cJSON_AddNumberToObject(x, "waiting", cJSON_GetNumberValue(cJSON_GetObjectItem(req, "waiting")));
            cJSON_AddNumberToObject(x, "preempted", cJSON_GetNumberValue(cJSON_GetObjectItem(req, "preempted_waiting")));
            cJSON_AddNumberToObject(x, "kv_usage", cJSON_GetNumberValue(cJSON_GetObjectItem(kv, "usage")));
            const char *kvd = cJSON_GetStringValue(cJSON_GetObjectItem(kv, "dtype"));
            if (kvd) cJSON_AddStringToObject(x, "kv_cache_dtype", kvd);
            const cJSON *mem = cJSON_GetObjectItem(s, "memory");
            const char *wd = cJSON_GetStringValue(cJSON_GetObjectItem(mem, "weights_dtype"));
            const char *qn = cJSON_GetStringValue(cJSON_GetObjectItem(mem, "quantization"));
            if (wd) cJSON_AddStringToObject(x, "weights_dtype", wd);
            if (qn) cJSON_AddStringToObject(x, "quantization", qn);
            /* The part of the KV pool ever written: on the CPU its pages become resident then. */
            const double blocks = cJSON_GetNumberValue(cJSON_GetObjectItem(kv, "blocks"));
            const double kv_bytes = cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "memory"), "kv_cache_bytes"));
            if (blocks > 0 && kv_bytes > 0)
                cJSON_AddNumberToObject(x, "kv_touched_bytes",
                                        kv_bytes * cJSON_GetNumberValue(cJSON_GetObjectItem(kv, "touched")) / blocks);
            cJSON_AddNumberToObject(x, "tokens_per_s", cJSON_GetNumberValue(cJSON_GetObjectItem(tk, "generation_per_s")));
            cJSON_AddNumberToObject(x, "prefix_hit_rate", cJSON_GetNumberValue(cJSON_GetObjectItem(pc, "hit_rate")));
            const cJSON *ttft = cJSON_GetObjectItem(s, "ttft_s");
            if (cJSON_GetNumberValue(cJSON_GetObjectItem(ttft, "count")) > 0) { /* since the engine started */
                cJSON_AddNumberToObject(x, "ttft_p50_s", cJSON_GetNumberValue(cJSON_GetObjectItem(ttft, "p50")));
                cJSON_AddNumberToObject(x, "ttft_p99_s", cJSON_GetNumberValue(cJSON_GetObjectItem(ttft, "p99")));
            }
            cJSON *stats = cJSON_DetachItemFromObject(s, "memory");
            if (stats) cJSON_AddItemToObject(x, "memory", stats);
            cJSON *dev = cJSON_DetachItemFromObject(s, "device");
            if (dev) cJSON_AddItemToObject(x, "device", dev);
            cJSON_Delete(s);
        }
        cJSON_AddItemToArray(ea, x);
    }
    free(body);
    free(es);
    /* Pulls: those running and how the others ended. */
    cJSON *da = cJSON_AddArrayToObject(o, "downloads");
    struct store_model *ms = NULL;
    int nm = 0;
    if (store_model_list(d->store, &ms, &nm) == 0)
        for (int i = 0; i < nm; i++) {
            cJSON *x = ms[i].source[0] == 'h' ? download_json(d, ms[i].id) : NULL;
            if (!x) continue;
            cJSON_AddStringToObject(x, "model", ms[i].name);
            cJSON_AddStringToObject(x, "repo_id", ms[i].repo_id);
            cJSON_AddStringToObject(x, "revision", ms[i].revision);
            cJSON_AddItemToArray(da, x);
        }
    free(ms);
    return o;
}

/* The Hub settings. The token is never sent back: only whether one is set, and from where. */
static void settings(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    char tok[1024] = "";
    if (strcmp(r->method, "GET") != 0) { /* PUT or POST */
        cJSON *j = read_json(d, c);
        if (!j) return;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "hf_token");
        if (t && !cJSON_IsString(t)) {
            cJSON_Delete(j);
            bad(c, 400, "hf_token must be a string (\"\" removes it)");
            return;
        }
        int rc = 0;
        const int given = t != NULL, set = t && *t->valuestring;
        if (t && strlen(t->valuestring) >= sizeof tok) rc = folio_err(FOLIO_EINVAL, "hf_token is too long");
        else if (t) rc = store_setting_set(d->store, "hf_token", t->valuestring);
        cJSON_Delete(j);
        if (rc) {
            bad(c, status_of(rc), "%s", folio_last_error());
            return;
        }
        if (given) store_event_add(d->store, "info", "settings.updated", 0, "the Hub token was %s", set ? "set" : "removed");
    }
    const int stored = store_setting_get(d->store, "hf_token", tok, sizeof tok) == 0 && tok[0];
    memset(tok, 0, sizeof tok);
    cJSON *o = cJSON_CreateObject();
    const int env = d->cfg.hf_token && *d->cfg.hf_token;
    cJSON_AddBoolToObject(o, "hf_token_set", env || stored);
    cJSON_AddStringToObject(o, "hf_token_source", env ? "environment" : stored ? "settings" : "none");
    cJSON_AddStringToObject(o, "hf_endpoint", d->cfg.hf_endpoint);
    send_obj(c, 200, o, NULL);
}

static void events_json(struct foliod *d, struct mg_connection *c) {
    const struct mg_request_info *ri = mg_get_request_info(c);
    char v[32];
    long long since = 0;
    int limit = 100;
    if (ri->query_string) {
        if (mg_get_var(ri->query_string, strlen(ri->query_string), "since", v, sizeof v) > 0) since = atoll(v);
        if (mg_get_var(ri->query_string, strlen(ri->query_string), "limit", v, sizeof v) > 0) limit = atoi(v);
    }
    if (limit < 1 || limit > 1000) limit = 100;
    struct store_event *ev = NULL;
    int n = 0;
    if (store_event_list(d->store, since, limit, &ev, &n)) {
        bad(c, 500, "%s", folio_last_error());
        return;
    }
    cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "events");
    for (int i = 0; i < n; i++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "id", (double)ev[i].id);
        cJSON_AddNumberToObject(x, "ts", (double)ev[i].ts);
        cJSON_AddStringToObject(x, "level", ev[i].level);
        cJSON_AddStringToObject(x, "kind", ev[i].kind);
        if (ev[i].model_id) cJSON_AddNumberToObject(x, "model_id", (double)ev[i].model_id);
        cJSON_AddStringToObject(x, "message", ev[i].message);
        cJSON_AddItemToArray(a, x);
    }
    free(ev);
    send_obj(c, 200, o, NULL);
}

/* An SSE stream: a `status` event at once and then every second (or at once on a change),
 * and an `event` for each new log entry, until the client leaves or its session (when it
 * came with one) ends. */
/* One SSE message as one chunk; > 0 when sent. */
static int sse_send(struct mg_connection *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sse_send(struct mg_connection *c, const char *fmt, ...) {
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n <= 0) return -1;
    int rc = mg_send_chunk(c, msg, (unsigned)n);
    free(msg);
    return rc;
}

static void events_stream(struct foliod *d, struct mg_connection *c, const char *session) {
    /* Chunked, so that foliod can end the stream (its session ended) and the client sees the
     * end at once, whatever keep-alive says. */
    mg_printf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
                 "X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    struct store_event *last = NULL;
    int n = 0;
    int64_t since = 0;
    if (store_event_list(d->store, 0, 1000000, &last, &n) == 0 && n > 0) since = last[n - 1].id;
    free(last);
    long seen = -1;
    for (;;) {
        cJSON *st = status_json(d);
        char *s = cJSON_PrintUnformatted(st);
        cJSON_Delete(st);
        int ok = s && sse_send(c, "event: status\ndata: %s\n\n", s) > 0;
        free(s);
        struct store_event *ev = NULL;
        if (ok && store_event_list(d->store, since, 100, &ev, &n) == 0) {
            for (int i = 0; i < n && ok; i++) {
                cJSON *x = cJSON_CreateObject();
                cJSON_AddNumberToObject(x, "id", (double)ev[i].id);
                cJSON_AddNumberToObject(x, "ts", (double)ev[i].ts);
                cJSON_AddStringToObject(x, "level", ev[i].level);
                cJSON_AddStringToObject(x, "kind", ev[i].kind);
                cJSON_AddStringToObject(x, "message", ev[i].message);
                char *e = cJSON_PrintUnformatted(x);
                cJSON_Delete(x);
                ok = e && sse_send(c, "event: event\nid: %lld\ndata: %s\n\n", (long long)ev[i].id, e) > 0;
                free(e);
                since = ev[i].id;
            }
            free(ev);
        }
        /* A stream opened with a session ends with it (logout, expiry, a password reset). */
        if (!ok || (session && !session_live(d, session, 0))) break;
        pthread_mutex_lock(&d->ev_mu);
        if (d->stopping) {
            pthread_mutex_unlock(&d->ev_mu);
            break;
        }
        if (seen < 0) seen = d->ev_version;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        while (d->ev_version == seen)
            if (pthread_cond_timedwait(&d->ev_cv, &d->ev_mu, &ts) == ETIMEDOUT) break;
        seen = d->ev_version;
        pthread_mutex_unlock(&d->ev_mu);
    }
    mg_send_chunk(c, "", 0); /* the last chunk: the stream is over */
}

static void status(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    send_obj(c, 200, status_json(d), NULL);
}

static void events(struct foliod *d, struct mg_connection *c, struct admin_req *r) {
    const char *acc = mg_get_header(c, "Accept");
    if (acc && strstr(acc, "text/event-stream")) events_stream(d, c, r->how == AUTHN_SESSION ? r->session : NULL);
    else events_json(d, c);
}

/* ---- routing ---- */

enum {
    ADMIN_OPEN = 1,  /* no credentials: the login itself */
    ADMIN_MODEL = 2, /* {id} names a model, looked up (404 when there is none) before the method is checked */
};

/* A route: a pattern under /api, where {id} stands for whatever lies between the text before
 * and after it (slashes included: Hub models are named org/name), and one method (NULL: any).
 * Rows for the same pattern are adjacent; the first pattern that matches takes the request,
 * and a method none of its rows takes is a 405 with the first row's message. */
struct admin_route {
    const char *pattern, *method;
    int flags;
    const char *wrong_method;
    void (*fn)(struct foliod *d, struct mg_connection *c, struct admin_req *r);
};

#define KEYS_405 "use GET or POST on /api/keys, DELETE on /api/keys/{id}"
static const struct admin_route routes[] = {
    {"/login", "POST", ADMIN_OPEN, "use POST", login},
    {"/logout", NULL, 0, NULL, logout},
    {"/status", NULL, 0, NULL, status},
    {"/models/estimate", "POST", 0, "use POST", model_estimate},
    {"/models", "GET", 0, "use GET or POST", models_list},
    {"/models", "POST", 0, "use GET or POST", model_create},
    {"/models/", "GET", 0, "use GET or POST", models_list},
    {"/models/", "POST", 0, "use GET or POST", model_create},
    {"/models/{id}/load", "POST", ADMIN_MODEL, "use POST", model_load},
    {"/models/{id}/unload", "POST", ADMIN_MODEL, "use POST", model_unload},
    {"/models/{id}/activate", "POST", ADMIN_MODEL, "use POST", model_activate},
    {"/models/{id}/logs", NULL, ADMIN_MODEL, NULL, model_logs},
    {"/models/{id}/pull", "GET", ADMIN_MODEL, "use GET, POST or DELETE", model_pull},
    {"/models/{id}/pull", "POST", ADMIN_MODEL, "use GET, POST or DELETE", model_pull},
    {"/models/{id}/pull", "DELETE", ADMIN_MODEL, "use GET, POST or DELETE", model_pull},
    {"/models/{id}", "GET", ADMIN_MODEL, "use GET, PATCH or DELETE", model_get},
    {"/models/{id}", "PATCH", ADMIN_MODEL, "use GET, PATCH or DELETE", model_patch},
    {"/models/{id}", "DELETE", ADMIN_MODEL, "use GET, PATCH or DELETE", model_delete},
    {"/keys", "GET", 0, KEYS_405, keys_list},
    {"/keys", "POST", 0, KEYS_405, key_create},
    {"/keys/", "GET", 0, KEYS_405, keys_list},
    {"/keys/", "POST", 0, KEYS_405, key_create},
    {"/keys/{id}", "DELETE", 0, KEYS_405, key_delete},
    {"/settings", "GET", 0, "use GET or PUT", settings},
    {"/settings", "PUT", 0, "use GET or PUT", settings},
    {"/settings", "POST", 0, "use GET or PUT", settings},
    {"/events", NULL, 0, NULL, events},
};
#define NUM_ROUTES (sizeof routes / sizeof *routes)

/* 1 when p (under /api) matches pattern; {id}'s text into r. */
static int pattern_match(const char *pattern, const char *p, struct admin_req *r) {
    const char *brace = strstr(pattern, "{id}");
    if (!brace) return !strcmp(pattern, p);
    const size_t pre = (size_t)(brace - pattern), post = strlen(brace + 4), n = strlen(p);
    if (n < pre + post || strncmp(p, pattern, pre) != 0 || strcmp(p + n - post, brace + 4) != 0) return 0;
    r->id = p + pre;
    r->id_len = n - pre - post;
    return 1;
}

/* The index of the first route whose pattern matches p, or -1. */
static int route_find(const char *p, struct admin_req *r) {
    for (size_t i = 0; i < NUM_ROUTES; i++)
        if (pattern_match(routes[i].pattern, p, r)) return (int)i;
    return -1;
}

/* Among the rows of the pattern at first, the one that takes method, or -1. */
static int route_method(int first, const char *method) {
    for (size_t i = (size_t)first; i < NUM_ROUTES && !strcmp(routes[i].pattern, routes[first].pattern); i++)
        if (!routes[i].method || !strcmp(routes[i].method, method)) return (int)i;
    return -1;
}

void admin_handle(struct foliod *d, struct mg_connection *c, const char *method, const char *path) {
    const char *p = path + 4; /* after "/api" */
    /* A page of another origin (another port of this host included) gets nothing here, with
     * whatever credentials; bodies must be JSON, which no form or simple fetch can send. */
    if (guard_cross_origin(c)) {
        bad(c, 403, "cross-origin request refused: Origin %.200s does not match Host %.200s", mg_get_header(c, "Origin"),
            mg_get_header(c, "Host") ? mg_get_header(c, "Host") : "(none)");
        return;
    }
    if (guard_has_body(c) && !guard_json_type(c)) {
        bad(c, 415, "the request body must be sent as Content-Type: application/json");
        return;
    }
    struct admin_req *r = calloc(1, sizeof *r);
    if (!r) {
        bad(c, 500, "out of memory");
        return;
    }
    r->method = method;
    r->path = path;
    r->id = "";
    const int first = route_find(p, r);
    const struct admin_route *rt = first >= 0 ? &routes[first] : NULL;
    char tok[128];
    if (!rt || !(rt->flags & ADMIN_OPEN)) {
        r->how = authorized(d, c, tok, sizeof tok);
        if (r->how == AUTHN_ANSWERED) goto out;
        if (r->how == AUTHN_NONE) {
            pthread_mutex_lock(&d->stats_mu);
            d->unauthorized++;
            pthread_mutex_unlock(&d->stats_mu);
            bad(c, 401, "log in first (POST /api/login)");
            goto out;
        }
        r->session = r->how == AUTHN_SESSION ? tok : NULL;
        /* The cookie rides along with any request a browser sends to this host: a state
         * change it authenticates must show that it comes from the console's own origin. */
        const int changes = strcmp(method, "GET") && strcmp(method, "HEAD") && strcmp(method, "OPTIONS");
        if (r->how == AUTHN_SESSION && changes && !guard_same_origin(c)) {
            bad(c, 403,
                "a %s with the session cookie needs an Origin header matching Host (or Sec-Fetch-Site: same-origin); "
                "scripts use Authorization: Bearer with the admin token",
                method);
            goto out;
        }
    }
    if (!rt) {
        bad(c, 404, "no route %s %s", method, path);
        goto out;
    }
    if (rt->flags & ADMIN_MODEL) {
        char ref[256];
        if (r->id_len == 0 || r->id_len >= sizeof ref) {
            bad(c, 404, "no such model");
            goto out;
        }
        memcpy(ref, r->id, r->id_len);
        ref[r->id_len] = '\0';
        if (find_model(d, ref, &r->model)) {
            bad(c, 404, "no model %s", ref);
            goto out;
        }
    }
    const int i = route_method(first, method);
    if (i < 0) bad(c, 405, "%s", rt->wrong_method);
    else routes[i].fn(d, c, r);
out:
    free(r);
}
