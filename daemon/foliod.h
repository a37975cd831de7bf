/* foliod: the daemon's shared state (foliod.c): one struct, configured by main.c, opened
 * and closed here, and read by the HTTP front (front.c), the admin API (admin_api.c) and the
 * request checks (guard.c). Not a public API. */
#ifndef FOLIO_FOLIOD_H
#define FOLIO_FOLIOD_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "store.h"
#include "supervisor.h"
#include "base/version.h"

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
    int64_t responses_ttl;      /* seconds a stored /v1/responses answer is kept (30 days); 0: none is */
    int64_t responses_max_bytes; /* all stored responses together (1 GiB), the oldest out */
};

struct foliod {
    struct foliod_config cfg;
    struct store *store;
    struct supervisor *sup;
    struct pulls *pulls;
    struct auth_sessions *sessions;
    struct auth_throttle *throttle; /* back-off per client address on failed credentials */
    struct audit *audit;            /* failed logins, aggregated into the event log */
    struct responses *responses;    /* stored /v1/responses answers (responses.h) */
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

/* Sets up the locks; d->cfg is filled by the caller. */
void foliod_init(struct foliod *d);
/* Opens DATA/folio.db (the schema from cfg.db_dir), hashes cfg.api_key, loads the stored
 * keys' hashes, and creates the sessions (12 h idle, 24 h at most), the per-address back-off,
 * the login audit and the stored responses. On failure what was opened stays for foliod_close. */
int foliod_open(struct foliod *d);
/* Frees what foliod_open made (the audit writes what is pending) and the locks; after the
 * HTTP front and everything else that reads d has stopped. */
void foliod_close(struct foliod *d);

/* Reloads the key hashes from the store. */
int foliod_keys_reload(struct foliod *d);
/* Wakes /api/events streams. */
void foliod_notify(struct foliod *d);
/* foliod is shutting down: event streams end, and foliod_stopping says so from now on. */
void foliod_stop(struct foliod *d);
int foliod_stopping(struct foliod *d);
/* The model currently behind the `default` alias (0 = none). */
int64_t foliod_default_model(struct foliod *d);
int foliod_set_default_model(struct foliod *d, int64_t id);

#endif
