/* foliod: the state the daemon's HTTP modules share (http.c routes, admin_api.c, main.c).
 * Not a public API: one struct, set up by main and read by the handlers. */
#ifndef FOLIO_FOLIOD_H
#define FOLIO_FOLIOD_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "store.h"
#include "supervisor.h"
#include "version.h"

struct mg_connection;

#define FOLIOD_MAX_KEYS 4096

struct foliod_config {
    const char *host;
    int port;
    const char *data_dir;
    const char *engine_bin;
    const char *db_dir;
    const char *admin_ui_dir;
    const char *api_key;        /* --api-key / FOLIO_API_KEY: accepted besides the stored keys */
    const char *admin_token;    /* --admin-token / FOLIO_ADMIN_TOKEN: /api/ without a session */
    const char *models[16];     /* --model: registered (if new), loaded, the first made default */
    int num_models;
    int threads;                /* HTTP threads = concurrent connections (256) */
    const char *hf_endpoint;    /* HF_ENDPOINT ("https://huggingface.co") */
    const char *hf_token;       /* HF_TOKEN, or NULL: the stored setting */
    size_t max_body;            /* bytes (16 MiB) */
};

struct foliod {
    struct foliod_config cfg;
    struct store *store;
    struct supervisor *sup;
    struct pulls *pulls;
    struct auth_sessions *sessions;
    double t_start;
    int gpus;

    /* Hashes of the stored API keys, reloaded when keys change. */
    pthread_mutex_t keys_mu;
    char (*key_hash)[AUTH_HASH_HEX];
    int64_t *key_id;
    int num_keys;
    char env_key_hash[AUTH_HASH_HEX]; /* of cfg.api_key, or "" */

    /* Status changes, for /api/events streams: a counter and a condvar. */
    pthread_mutex_t ev_mu;
    pthread_cond_t ev_cv;
    long ev_version;
    int stopping;               /* under ev_mu: foliod is shutting down, event streams end */

    /* Counters for /metrics. */
    pthread_mutex_t stats_mu;
    long long proxied, proxy_errors, unauthorized;
};

/* Reloads the key hashes from the store. */
int foliod_keys_reload(struct foliod *d);
/* Wakes /api/events streams. */
void foliod_notify(struct foliod *d);
/* The model currently behind the `default` alias (0 = none). */
int64_t foliod_default_model(struct foliod *d);
int foliod_set_default_model(struct foliod *d, int64_t id);

/* ---- http.c ---- */
struct http;
int http_start(struct foliod *d, struct http **out);
void http_stop(struct http *h);
int http_port(const struct http *h);
/* Reads the request body (at most cfg.max_body); caller frees. On error the client has been
 * answered. */
int http_read_body(struct foliod *d, struct mg_connection *c, char **out, size_t *len);
void http_send_json(struct mg_connection *c, int status, const char *json, const char *extra_headers);

/* ---- admin_api.c: everything under /api/ ---- */
void admin_handle(struct foliod *d, struct mg_connection *c, const char *method, const char *path);
/* Whether the request carries a live console session (the playground uses /v1 with it). */
int admin_session_ok(struct foliod *d, struct mg_connection *c);

#endif
