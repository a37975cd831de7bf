/* foliod: the daemon's shared state; see foliod.h. */
#include "foliod.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "responses.h"
#include "base/util.h"

void foliod_init(struct foliod *d) {
    pthread_mutex_init(&d->keys_mu, NULL);
    pthread_mutex_init(&d->ev_mu, NULL);
    pthread_mutex_init(&d->stats_mu, NULL);
    pthread_cond_init(&d->ev_cv, NULL);
}

int foliod_open(struct foliod *d) {
    char db[PATH_MAX + 32];
    d->t_start = folio_now();
    snprintf(db, sizeof db, "%s/folio.db", d->cfg.data_dir);
    int rc = store_open(db, d->cfg.db_dir, &d->store);
    if (rc) return rc;
    if (d->cfg.api_key && *d->cfg.api_key &&
        (rc = auth_sha256_hex(d->cfg.api_key, strlen(d->cfg.api_key), d->env_key_hash)))
        return rc;
    if ((rc = foliod_keys_reload(d))) return rc;
    /* Sessions: 12 h idle, 24 h at most from the login (auth.h). */
    if (!(d->sessions = auth_sessions_create(12 * 3600.0)) || !(d->throttle = auth_throttle_create(NULL)) ||
        !(d->audit = audit_create(d->store, 60)))
        return folio_err(FOLIO_ENOMEM, "out of memory");
    auth_sessions_set_max_age(d->sessions, 24 * 3600.0);
    struct responses_params rp = responses_default_params();
    rp.store = d->store;
    rp.ttl_s = d->cfg.responses_ttl;
    if (d->cfg.responses_max_bytes > 0) rp.max_bytes = d->cfg.responses_max_bytes;
    if (d->cfg.max_body) rp.max_body = d->cfg.max_body;
    return responses_create(&rp, &d->responses);
}

void foliod_close(struct foliod *d) {
    auth_sessions_free(d->sessions);
    auth_throttle_free(d->throttle);
    audit_free(d->audit); /* writes the failed logins still pending */
    responses_free(d->responses);
    store_close(d->store);
    free(d->key_hash);
    free(d->key_id);
    d->sessions = NULL;
    d->throttle = NULL;
    d->audit = NULL;
    d->responses = NULL;
    d->store = NULL;
    d->key_hash = NULL;
    d->key_id = NULL;
    d->num_keys = 0;
    pthread_mutex_destroy(&d->keys_mu);
    pthread_mutex_destroy(&d->ev_mu);
    pthread_mutex_destroy(&d->stats_mu);
    pthread_cond_destroy(&d->ev_cv);
}

int foliod_keys_reload(struct foliod *d) {
    struct store_key *ks = NULL;
    int n = 0, rc = store_key_list(d->store, &ks, &n);
    if (rc) return rc;
    char(*h)[AUTH_HASH_HEX] = calloc((size_t)n + 1, sizeof *h);
    int64_t *ids = calloc((size_t)n + 1, sizeof *ids);
    if (!h || !ids) {
        free(h);
        free(ids);
        free(ks);
        return folio_err(FOLIO_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        memcpy(h[i], ks[i].hash, AUTH_HASH_HEX);
        ids[i] = ks[i].id;
    }
    free(ks);
    pthread_mutex_lock(&d->keys_mu);
    free(d->key_hash);
    free(d->key_id);
    d->key_hash = h;
    d->key_id = ids;
    d->num_keys = n;
    pthread_mutex_unlock(&d->keys_mu);
    return 0;
}

void foliod_notify(struct foliod *d) {
    pthread_mutex_lock(&d->ev_mu);
    d->ev_version++;
    pthread_cond_broadcast(&d->ev_cv);
    pthread_mutex_unlock(&d->ev_mu);
}

void foliod_stop(struct foliod *d) {
    pthread_mutex_lock(&d->ev_mu);
    d->stopping = 1;
    pthread_cond_broadcast(&d->ev_cv);
    pthread_mutex_unlock(&d->ev_mu);
}

int foliod_stopping(struct foliod *d) {
    pthread_mutex_lock(&d->ev_mu);
    const int stopping = d->stopping;
    pthread_mutex_unlock(&d->ev_mu);
    return stopping;
}

int64_t foliod_default_model(struct foliod *d) {
    char v[32];
    if (store_setting_get(d->store, "default_model", v, sizeof v) != 0) return 0;
    return atoll(v);
}

int foliod_set_default_model(struct foliod *d, int64_t id) {
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)id);
    return store_setting_set(d->store, "default_model", v);
}
