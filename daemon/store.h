/* store: foliod's registry, one SQLite file in the data dir (WAL mode, a busy timeout, foreign
 * keys on). Tables: models, engines, downloads, api_keys, admin, settings, events, responses. The schema comes from
 * db/ (schema.sql for a new file, migrations/NNNN_name.sql to bring an older file forward),
 * tracked with PRAGMA user_version.
 *
 * Thread-safe: one connection behind a mutex (foliod's HTTP threads and its supervisor share
 * it). Every call is one statement or one transaction, so a crash never leaves half a change.
 * Strings are copied into the caller's structs (fixed-size fields, truncation is an error). */
#ifndef FOLIO_STORE_H
#define FOLIO_STORE_H

#include <stddef.h>
#include <stdint.h>

struct store;

/* Opens (creating) the database at path and brings it to the latest schema from db_dir
 * (db/schema.sql, db/migrations/). Free with store_close. */
int store_open(const char *path, const char *db_dir, struct store **out);
/* store_open, except that a new file is built by applying every migration from 0001 rather
 * than schema.sql: the test that both routes give the same schema uses it. */
int store_open_by_migrations(const char *path, const char *db_dir, struct store **out);
void store_close(struct store *s);
/* PRAGMA user_version after migration. */
int store_schema_version(struct store *s);

/* ---- models ---- */
struct store_model {
    int64_t id;
    char name[128];             /* the served name, unique; [A-Za-z0-9._:/-] */
    char source[16];            /* "local" or "hf" */
    char repo_id[256];          /* hf: "org/name" */
    char revision[128];         /* hf: branch, tag or sha ("main") */
    char path[1024];            /* the local directory (hf: filled once downloaded) */
    /* engine parameters; 0 / "" = the engine's default */
    int max_model_len;
    char dtype[16];
    char kv_cache_dtype[16];    /* "", "bfloat16", "float32", "fp8" (--kv-cache-dtype; "" = auto) */
    char quantization[8];       /* "", "int8", "int4", "fp8" (--quantization at load; "" = none) */
    double gpu_memory_utilization;
    int block_size;
    int max_num_seqs;
    double kv_cache_space;
    char device[8];             /* "", "cpu", "cuda" */
    char chat_template[1024];   /* inline template text, a file in the model dir, or "" */
    char state[16];             /* registered, loading, ready, draining, stopped, failed */
    int want_loaded;            /* 1: should run (reloaded when foliod starts) */
    char last_error[512];
    int64_t created;            /* unix seconds */
};
/* Sets m->id and m->created (and m->state to "registered" when it is ""). FOLIO_EEXIST when
 * the name is taken; FOLIO_EINVAL for a bad name, source, device or a negative parameter. */
int store_model_add(struct store *s, struct store_model *m);
int store_model_get(struct store *s, int64_t id, struct store_model *out);       /* FOLIO_ENOTFOUND */
int store_model_find(struct store *s, const char *name, struct store_model *out); /* FOLIO_ENOTFOUND */
/* All models by id; *out is malloc'd (caller frees), *n set. */
int store_model_list(struct store *s, struct store_model **out, int *n);
/* Writes every field but id and created. FOLIO_ENOTFOUND, FOLIO_EEXIST (renamed onto another). */
int store_model_update(struct store *s, const struct store_model *m);
/* state, and want_loaded unless it is -1; last_error may be NULL (kept) or "" (cleared). */
int store_model_set_state(struct store *s, int64_t id, const char *state, int want_loaded, const char *last_error);
/* Deletes the model and (cascade) its engine row. FOLIO_ENOTFOUND. */
int store_model_delete(struct store *s, int64_t id);

/* ---- engines: at most one row per model, what foliod last knew of its process ---- */
struct store_engine {
    int64_t model_id;
    int pid;                    /* 0 when none */
    int port;
    char state[16];             /* starting, ready, draining, stopped, failed */
    int64_t started;            /* unix seconds */
    int restarts;
    char log_path[1024];
};
/* Insert or replace; FOLIO_ENOTFOUND when there is no such model. */
int store_engine_put(struct store *s, const struct store_engine *e);
int store_engine_list(struct store *s, struct store_engine **out, int *n); /* caller frees */
int store_engine_delete(struct store *s, int64_t model_id); /* 0 also when there was none */

/* ---- downloads: one row per model pulled from the Hub (pull.c) ---- */
struct store_download {
    int64_t model_id;
    char sha[41];               /* the commit being pulled ("" before it is resolved) */
    char state[16];             /* queued, downloading, done, failed, cancelled */
    int64_t bytes_done, bytes_total;
    int files_done, files_total;
    int load_after;             /* 1: load the model once it is here */
    char error[512];
    char files[32768];          /* JSON array of {"name", "size", "done"} */
    int64_t started, updated;   /* unix milliseconds */
};
/* Insert or replace (sets updated). FOLIO_ENOTFOUND when there is no such model. */
int store_download_put(struct store *s, struct store_download *d);
int store_download_get(struct store *s, int64_t model_id, struct store_download *out); /* FOLIO_ENOTFOUND */
int store_download_list(struct store *s, struct store_download **out, int *n);        /* caller frees */
int store_download_delete(struct store *s, int64_t model_id); /* 0 also when there was none */

/* ---- API keys: only a hash is stored (auth.h makes and checks them) ---- */
struct store_key {
    int64_t id;
    char name[128];
    char prefix[16];            /* the key's first characters, to recognise it in a list */
    char hash[65];              /* lowercase hex SHA-256 */
    int64_t created, last_used; /* unix seconds; last_used 0 = never */
};
int store_key_add(struct store *s, struct store_key *k); /* sets id, created; FOLIO_EEXIST: same hash */
int store_key_list(struct store *s, struct store_key **out, int *n); /* caller frees */
int store_key_delete(struct store *s, int64_t id);                    /* FOLIO_ENOTFOUND */
int store_key_touch(struct store *s, int64_t id, int64_t when);       /* FOLIO_ENOTFOUND */
int store_key_count(struct store *s, int *n);

/* ---- the admin password: one crypt(3) string ----
 * The getters below copy into hash/val[cap]: FOLIO_EINVAL when the value does not fit. */
int store_admin_get(struct store *s, char *hash, size_t cap); /* FOLIO_ENOTFOUND before the first set */
int store_admin_set(struct store *s, const char *hash);

/* ---- settings: key/value text ---- */
int store_setting_get(struct store *s, const char *key, char *val, size_t cap); /* FOLIO_ENOTFOUND */
int store_setting_set(struct store *s, const char *key, const char *val);

/* ---- events: an append-only log, trimmed to the newest 10000 ----
 * The one exception to "truncation is an error": a formatted message longer than the field is
 * cut (at a UTF-8 boundary, ending in "...") rather than losing the event. A model_id that no
 * longer exists is stored as 0, so logging never fails on a race with a delete. */
/* admin.login_failed events kept at most (older ones are pruned on insert). */
#define STORE_MAX_LOGIN_FAILED 100
struct store_event {
    int64_t id;
    int64_t ts;                 /* unix milliseconds */
    char level[8];              /* info, warn, error */
    char kind[32];              /* model.added, engine.started, engine.crashed, ... */
    int64_t model_id;           /* 0 = none */
    char message[512];
};
int store_event_add(struct store *s, const char *level, const char *kind, int64_t model_id, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Events with id > since_id, oldest first, at most limit (<= 0: all); caller frees *out. */
int store_event_list(struct store *s, int64_t since_id, int limit, struct store_event **out, int *n);

/* ---- responses: the /v1/responses turns foliod keeps (responses.c) ----
 * A conversation may be megabytes, so the JSON texts are not fixed fields: put reads them by
 * pointer and length, get mallocs the ones asked for. Expired rows are never returned. */
struct store_response {
    char id[65];                /* [A-Za-z0-9_-], the response's "id" */
    int64_t owner;              /* api_keys id of the key that made it; 0: none (see db/schema.sql) */
    char model[256];
    int64_t created_at;         /* unix seconds, the response's */
    int64_t expires_at;         /* unix milliseconds */
    char *request_items, *output, *response; /* JSON text; get: malloc'd, or NULL when not asked for */
    size_t request_items_len, output_len, response_len;
};
/* Which texts store_response_get reads. */
enum { STORE_RESP_ITEMS = 1, STORE_RESP_OUTPUT = 2, STORE_RESP_RESPONSE = 4 };
/* Inserts r in one transaction: first the rows expired at now_ms go, then the oldest rows
 * until the table's bytes plus r's fit in max_bytes. *evicted (may be NULL) counts the rows
 * that went for room. FOLIO_EINVAL when r alone is over max_bytes or a field is bad,
 * FOLIO_EEXIST when the id is taken. */
int store_response_put(struct store *s, const struct store_response *r, int64_t max_bytes, int64_t now_ms,
                       int *evicted);
/* The row with id and owner, unexpired at now_ms, with the texts in cols (STORE_RESP_*);
 * FOLIO_ENOTFOUND. Free the texts with store_response_clear, also after a failure. */
int store_response_get(struct store *s, const char *id, int64_t owner, int64_t now_ms, int cols,
                       struct store_response *out);
void store_response_clear(struct store_response *r);
/* Deletes the row with id and owner; FOLIO_ENOTFOUND when there is none unexpired. */
int store_response_delete(struct store *s, const char *id, int64_t owner, int64_t now_ms);
/* Deletes the rows expired at now_ms; *n (may be NULL) how many. */
int store_response_purge(struct store *s, int64_t now_ms, int *n);
/* Rows and their bytes (as counted against max_bytes), expired ones included until purged. */
int store_response_usage(struct store *s, int64_t *bytes, int64_t *rows);

#endif
