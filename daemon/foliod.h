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
#include "base/version.h"

struct mg_connection;

#define FOLIOD_MAX_KEYS 4096

struct foliod_config {
    const char *host;
    int port;
    const char *data_dir;
    const char *engine_bin;
    const char *db_dir;
    const char *admin_ui_dir;
    const char *api_key;        /* api_key[_file] / FOLIO_API_KEY (32+): accepted besides the stored keys */
    const char *admin_token;    /* admin_token[_file] / FOLIO_ADMIN_TOKEN (32+): /api/ without a session */
    const char *models[16];     /* --model: registered (if new), loaded, the first made default */
    int num_models;
    int threads;                /* HTTP threads = concurrent connections (256) */
    const char *hf_endpoint;    /* HF_ENDPOINT ("https://huggingface.co") */
    const char *hf_token;       /* HF_TOKEN, or NULL: the stored setting */
    size_t max_body;            /* bytes (16 MiB) */
    int header_timeout;         /* seconds (20): headers, and a stalled body or response (http_conn.h) */
    int max_conns_per_client;   /* per client address (128); 0: no cap */
    const char *server_names;   /* comma-separated Host names allowed on a loopback bind, or NULL */
};

struct foliod {
    struct foliod_config cfg;
    struct store *store;
    struct supervisor *sup;
    struct pulls *pulls;
    struct auth_sessions *sessions;
    struct auth_throttle *throttle; /* back-off per client address on failed credentials */
    struct audit *audit;            /* failed logins, aggregated into the event log */
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
/* Reads the request body (at most max bytes; 0 means cfg.max_body), NUL-terminated; caller
 * frees. A declared Content-Length over max is refused (413) before anything is read, a
 * chunked body as soon as it passes max; a declared length is allocated exactly. On error
 * the client has been answered. */
int http_read_body(struct foliod *d, struct mg_connection *c, size_t max, char **out, size_t *len);
void http_send_json(struct mg_connection *c, int status, const char *json, const char *extra_headers);

/* ---- admin_api.c: everything under /api/ ---- */
void admin_handle(struct foliod *d, struct mg_connection *c, const char *method, const char *path);
/* Whether the request carries a live console session (the playground uses /v1 with it). */
int admin_session_ok(struct foliod *d, struct mg_connection *c);
/* The credential generation sessions are bound to: a hash of the stored admin password hash,
 * so that a password reset (also by another process) ends every session. */
int admin_session_gen(struct foliod *d, char gen[AUTH_GEN_HEX]);

#endif
