/* store: foliod's SQLite registry on real files in the test's scratch directory: creation and
 * reopening, both schema routes (schema.sql vs every migration) giving the same schema,
 * refusal of newer, foreign and corrupt files, every table's calls, event trimming, threads
 * sharing the store, and a writer killed mid-way leaving no half-written row. */
#include "audit.h"
#include "store.h"
#include "test.h"
#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The repository's db/ (tests run from the repository root, as make test does). */
static const char *store_db_dir(void) {
    const char *d = getenv("FOLIO_DB_DIR");
    return d && *d ? d : "db";
}

static void store_tpath(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", test_tmp_dir(), name);
}

/* Straight SQLite, bypassing the store, to set up and inspect files. */
static int raw_exec(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    int rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

static long long raw_int(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -999;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int copy_file(const char *src, const char *dst) {
    char *text = NULL;
    if (folio_read_file(src, &text, NULL)) return -1;
    int rc = write_file(dst, text);
    free(text);
    return rc;
}

/* A db dir in scratch space: the real schema.sql and 0001, plus the given 0002 (if any). */
/* A db dir with the real schema.sql and migrations, except that m2_name (when given) takes
 * the place of the real migration with its number, or is added. */
static void make_db_dir(const char *dir, const char *m2_name, const char *m2_sql) {
    char a[1024], b[1024];
    mkdir(dir, 0700);
    snprintf(b, sizeof b, "%s/migrations", dir);
    mkdir(b, 0700);
    snprintf(a, sizeof a, "%s/schema.sql", store_db_dir());
    snprintf(b, sizeof b, "%s/schema.sql", dir);
    CHECK_EQ_INT(copy_file(a, b), 0);
    snprintf(a, sizeof a, "%s/migrations", store_db_dir());
    DIR *dd = opendir(a);
    CHECK(dd != NULL);
    for (struct dirent *e; dd && (e = readdir(dd));) {
        if (strlen(e->d_name) < 9 || strcmp(e->d_name + strlen(e->d_name) - 4, ".sql") != 0) continue;
        if (m2_name && strncmp(e->d_name, m2_name, 4) == 0) continue;
        snprintf(a, sizeof a, "%s/migrations/%s", store_db_dir(), e->d_name);
        snprintf(b, sizeof b, "%s/migrations/%s", dir, e->d_name);
        CHECK_EQ_INT(copy_file(a, b), 0);
    }
    if (dd) closedir(dd);
    if (m2_name) {
        snprintf(b, sizeof b, "%s/migrations/%s", dir, m2_name);
        CHECK_EQ_INT(write_file(b, m2_sql), 0);
    }
}

/* A file at schema version 1, made by running 0001 directly, as a first release would have. */
static void make_v1_file(const char *path) {
    char mig[512], *sql = NULL;
    snprintf(mig, sizeof mig, "%s/migrations/0001_init.sql", store_db_dir());
    CHECK_EQ_INT(folio_read_file(mig, &sql, NULL), 0);
    if (!sql) return;
    CHECK_EQ_INT(raw_exec(path, sql), SQLITE_OK);
    CHECK_EQ_INT(raw_exec(path, "PRAGMA user_version = 1"), SQLITE_OK);
    free(sql);
}

static void model_init(struct store_model *m, const char *name) {
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->source, sizeof m->source, "hf");
    snprintf(m->repo_id, sizeof m->repo_id, "org/%s", name);
    snprintf(m->revision, sizeof m->revision, "main");
}

static int open_new(const char *name, struct store **s) {
    char path[512];
    store_tpath(path, sizeof path, name);
    return store_open(path, store_db_dir(), s);
}

TEST(store_open_create_reopen) {
    char path[512];
    struct store *s = NULL;
    store_tpath(path, sizeof path, "reopen.db");
    CHECK_EQ_INT(store_open(path, store_db_dir(), &s), 0);
    if (!s) return;
    CHECK_EQ_INT(store_schema_version(s), 5);
    struct stat st;
    CHECK_EQ_INT(stat(path, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0077, 0); /* key hashes live here */
    struct store_model m;
    model_init(&m, "llama-3.2-1b");
    m.want_loaded = 1;
    m.gpu_memory_utilization = 0.5;
    CHECK_EQ_INT(store_model_add(s, &m), 0);
    CHECK(m.id > 0);
    CHECK(m.created > 1700000000);
    CHECK_STR(m.state, "registered");
    CHECK_EQ_INT(store_setting_set(s, "hf_token_set", "1"), 0);
    CHECK_EQ_INT(store_event_add(s, "info", "model.added", m.id, "added %s", m.name), 0);
    store_close(s);
    store_close(NULL);

    s = NULL;
    CHECK_EQ_INT(store_open(path, store_db_dir(), &s), 0);
    if (!s) return;
    struct store_model got;
    CHECK_EQ_INT(store_model_find(s, "llama-3.2-1b", &got), 0);
    CHECK_EQ_INT(got.id, m.id);
    CHECK_EQ_INT(got.created, m.created);
    CHECK_EQ_INT(got.want_loaded, 1);
    CHECK_NEAR(got.gpu_memory_utilization, 0.5, 0);
    CHECK_STR(got.repo_id, "org/llama-3.2-1b");
    char val[16];
    CHECK_EQ_INT(store_setting_get(s, "hf_token_set", val, sizeof val), 0);
    CHECK_STR(val, "1");
    struct store_event *ev = NULL;
    int n = 0;
    CHECK_EQ_INT(store_event_list(s, 0, 10, &ev, &n), 0);
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK_STR(ev[0].message, "added llama-3.2-1b");
    free(ev);
    store_close(s);
    /* WAL mode is a property of the file, so the raw reader sees it too. */
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(q), SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    sqlite3_close(db);
}

/* sqlite_master's sql as written, minus comments and layout, so that only meaning counts. */
static void normalize_sql(const char *in, char *out, size_t cap) {
    size_t o = 0;
    int space = 0;
    for (const char *p = in; *p && o + 2 < cap; p++) {
        if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n') p++;
            if (!*p) break;
            space = 1;
            continue;
        }
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            space = 1;
            continue;
        }
        int punct = strchr("(),", *p) != NULL;
        if (space && o && !punct && !strchr("(,", out[o - 1])) out[o++] = ' ';
        space = 0;
        out[o++] = *p;
    }
    out[o] = '\0';
}

static char *dump_schema(const char *path) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = calloc(1, cap), *norm = malloc(cap);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master ORDER BY type, name",
                           -1, &st, NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            normalize_sql((const char *)sqlite3_column_text(st, 3), norm, cap);
            len += (size_t)snprintf(buf + len, cap - len, "%s %s %s: %s\n", sqlite3_column_text(st, 0),
                                    sqlite3_column_text(st, 1), sqlite3_column_text(st, 2), norm);
            if (len >= cap) break;
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(norm);
    return buf;
}

TEST(store_schema_sql_equals_migrations) {
    char a[512], b[512];
    struct store *s = NULL;
    store_tpath(a, sizeof a, "route_schema.db");
    store_tpath(b, sizeof b, "route_migrations.db");
    CHECK_EQ_INT(store_open(a, store_db_dir(), &s), 0);
    store_close(s);
    s = NULL;
    CHECK_EQ_INT(store_open_by_migrations(b, store_db_dir(), &s), 0);
    if (s) CHECK_EQ_INT(store_schema_version(s), 5);
    store_close(s);
    char *da = dump_schema(a), *db = dump_schema(b);
    CHECK(strstr(da, "CREATE TABLE models(") != NULL);
    CHECK(strstr(db, "index events_model_id events") != NULL); /* 0002 ran, after 0001 */
    CHECK_STR(da, db);
    free(da);
    free(db);
    CHECK_EQ_INT(raw_int(a, "PRAGMA user_version"), raw_int(b, "PRAGMA user_version"));
    /* Rows a migration seeds are not in sqlite_master: the size counter of 0004. */
    CHECK_EQ_INT(raw_int(a, "SELECT count(*) FROM responses_usage WHERE bytes = 0"), 1);
    CHECK_EQ_INT(raw_int(b, "SELECT count(*) FROM responses_usage WHERE bytes = 0"), 1);
}

TEST(store_migrates_old_file_keeping_rows) {
    char path[512];
    store_tpath(path, sizeof path, "v1.db");
    make_v1_file(path);
    CHECK_EQ_INT(raw_exec(path, "INSERT INTO models (name, source, created) VALUES ('old', 'local', 5);"
                                "INSERT INTO events (ts, level, kind, model_id, message) "
                                "VALUES (1, 'info', 'x', 1, 'm')"),
                 SQLITE_OK);
    struct store *s = NULL;
    CHECK_EQ_INT(store_open(path, store_db_dir(), &s), 0);
    if (!s) return;
    CHECK_EQ_INT(store_schema_version(s), 5);
    struct store_model m;
    CHECK_EQ_INT(store_model_find(s, "old", &m), 0);
    CHECK_EQ_INT(m.created, 5);
    CHECK_STR(m.state, "registered");
    CHECK_STR(m.kv_cache_dtype, ""); /* 0005's column, on a row that predates it: auto */
    store_close(s);
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'events_model_id'"), 1);
}

TEST(store_refuses_newer_schema) {
    char path[512];
    store_tpath(path, sizeof path, "newer.db");
    make_v1_file(path);
    CHECK_EQ_INT(raw_exec(path, "PRAGMA user_version = 6"), SQLITE_OK);
    struct store *s = (struct store *)1;
    CHECK_EQ_INT(store_open(path, store_db_dir(), &s), FOLIO_EUNSUP);
    CHECK(s == NULL);
    CHECK(strstr(folio_last_error(), "schema version 6") != NULL);
    CHECK(strstr(folio_last_error(), "newer") != NULL);
    /* Refused without a write: still the newer version, not switched to WAL. */
    CHECK_EQ_INT(raw_int(path, "PRAGMA user_version"), 6);
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'events_model_id'"), 0);
}

TEST(store_refuses_garbage_and_bad_setup) {
    char path[512], dir[512];
    struct store *s = NULL;

    store_tpath(path, sizeof path, "garbage.db");
    CHECK_EQ_INT(write_file(path, "this is not a database, just some text that is long enough to matter\n"), 0);
    CHECK_EQ_INT(store_open(path, store_db_dir(), &s), FOLIO_EIO);
    CHECK(s == NULL);
    CHECK(strstr(folio_last_error(), "not a SQLite database") != NULL);

    /* A real database with a damaged page: quick_check at open catches it. */
    store_tpath(path, sizeof path, "corrupt.db");
    CHECK_EQ_INT(open_new("corrupt.db", &s), 0);
    for (int i = 0; s && i < 200; i++) {
        struct store_model m;
        char name[32];
        snprintf(name, sizeof name, "m%d", i);
        model_init(&m, name);
        CHECK_EQ_INT(store_model_add(s, &m), 0);
    }
    store_close(s);
    s = NULL;
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    if (fd >= 0) {
        char junk[4096];
        memset(junk, 0xa5, sizeof junk);
        for (int page = 1; page < 4; page++)
            CHECK_EQ_INT(pwrite(fd, junk, sizeof junk, (off_t)page * 4096), (long long)sizeof junk);
        close(fd);
    }
    CHECK(store_open(path, store_db_dir(), &s) < 0);
    CHECK(s == NULL);
    CHECK(strstr(folio_last_error(), "corrupt") != NULL);

    /* An SQLite file of some other program. */
    store_tpath(path, sizeof path, "foreign.db");
    CHECK_EQ_INT(raw_exec(path, "CREATE TABLE t (x)"), SQLITE_OK);
    CHECK_EQ_INT(store_open(path, store_db_dir(), &s), FOLIO_EINVAL);
    CHECK(strstr(folio_last_error(), "not a Folio database") != NULL);

    /* A wrong db dir: clear error, and no empty database left behind. */
    store_tpath(path, sizeof path, "nodir.db");
    store_tpath(dir, sizeof dir, "no-such-db-dir");
    CHECK_EQ_INT(store_open(path, dir, &s), FOLIO_EIO);
    CHECK(strstr(folio_last_error(), "schema.sql") != NULL);
    CHECK(access(path, F_OK) != 0);

    /* A db dir from a newer release, and one missing a migration. */
    store_tpath(dir, sizeof dir, "dbdir-newer");
    make_db_dir(dir, "0002_x.sql", "SELECT 1;");
    char extra[600];
    snprintf(extra, sizeof extra, "%s/migrations/0006_future.sql", dir);
    CHECK_EQ_INT(write_file(extra, "SELECT 1;"), 0);
    CHECK_EQ_INT(store_open(path, dir, &s), FOLIO_EUNSUP);
    CHECK(strstr(folio_last_error(), "0006_future.sql") != NULL);
    store_tpath(dir, sizeof dir, "dbdir-gap");
    make_db_dir(dir, NULL, NULL);
    snprintf(extra, sizeof extra, "%s/migrations/0002_events_model_index.sql", dir);
    CHECK_EQ_INT(unlink(extra), 0);
    CHECK_EQ_INT(store_open(path, dir, &s), FOLIO_EINVAL);
    CHECK(strstr(folio_last_error(), "0002") != NULL);

    /* A directory where the file should be, and an unreadable file (root reads anything). */
    store_tpath(path, sizeof path, "adir.db");
    mkdir(path, 0700);
    CHECK_EQ_INT(store_open(path, store_db_dir(), &s), FOLIO_EIO);
    CHECK(strstr(folio_last_error(), "cannot open") != NULL);
    if (geteuid() != 0) {
        store_tpath(path, sizeof path, "unreadable.db");
        CHECK_EQ_INT(write_file(path, ""), 0);
        chmod(path, 0);
        CHECK_EQ_INT(store_open(path, store_db_dir(), &s), FOLIO_EIO);
        CHECK(strstr(folio_last_error(), "Permission denied") != NULL);
    }
    CHECK(s == NULL);
}

TEST(store_model_crud) {
    struct store *s = NULL;
    CHECK_EQ_INT(open_new("models.db", &s), 0);
    if (!s) return;
    struct store_model a, b, got;
    model_init(&a, "qwen2.5:0.5b");
    snprintf(a.path, sizeof a.path, "/var/lib/folio/models/qwen");
    a.max_model_len = 4096;
    snprintf(a.dtype, sizeof a.dtype, "bfloat16");
    snprintf(a.kv_cache_dtype, sizeof a.kv_cache_dtype, "fp8");
    a.block_size = 16;
    a.max_num_seqs = 64;
    a.kv_cache_space = 2.5;
    snprintf(a.device, sizeof a.device, "cuda");
    snprintf(a.chat_template, sizeof a.chat_template, "/etc/t.jinja");
    CHECK_EQ_INT(store_model_add(s, &a), 0);
    model_init(&b, "Org/Model-B_1");
    snprintf(b.source, sizeof b.source, "local");
    CHECK_EQ_INT(store_model_add(s, &b), 0);
    CHECK(b.id > a.id);

    CHECK_EQ_INT(store_model_get(s, a.id, &got), 0);
    CHECK(memcmp(&got, &a, sizeof got) == 0);
    CHECK_EQ_INT(store_model_find(s, "Org/Model-B_1", &got), 0);
    CHECK_EQ_INT(got.id, b.id);
    CHECK_STR(got.source, "local");

    struct store_model *list = NULL;
    int n = 0;
    CHECK_EQ_INT(store_model_list(s, &list, &n), 0);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_STR(list[0].name, "qwen2.5:0.5b");
        CHECK_STR(list[1].name, "Org/Model-B_1");
        CHECK_NEAR(list[0].kv_cache_space, 2.5, 0);
        CHECK_STR(list[0].device, "cuda");
    }
    free(list);

    /* Duplicate names, on add and on rename. */
    struct store_model dup;
    model_init(&dup, "qwen2.5:0.5b");
    CHECK_EQ_INT(store_model_add(s, &dup), FOLIO_EEXIST);
    CHECK(strstr(folio_last_error(), "qwen2.5:0.5b") != NULL);
    CHECK_EQ_INT(dup.id, 0);
    got = b;
    snprintf(got.name, sizeof got.name, "qwen2.5:0.5b");
    CHECK_EQ_INT(store_model_update(s, &got), FOLIO_EEXIST);

    /* Update, then the partial state setter. */
    got = b;
    snprintf(got.path, sizeof got.path, "/models/b");
    snprintf(got.name, sizeof got.name, "b-renamed");
    got.want_loaded = 7; /* any non-zero is 1 */
    CHECK_EQ_INT(store_model_update(s, &got), 0);
    CHECK_EQ_INT(store_model_get(s, b.id, &got), 0);
    CHECK_STR(got.name, "b-renamed");
    CHECK_STR(got.path, "/models/b");
    CHECK_EQ_INT(got.want_loaded, 1);
    CHECK_EQ_INT(got.created, b.created);
    CHECK_STR(got.kv_cache_dtype, "");
    snprintf(got.kv_cache_dtype, sizeof got.kv_cache_dtype, "bfloat16");
    CHECK_EQ_INT(store_model_update(s, &got), 0);
    CHECK_EQ_INT(store_model_get(s, b.id, &got), 0);
    CHECK_STR(got.kv_cache_dtype, "bfloat16");
    snprintf(got.kv_cache_dtype, sizeof got.kv_cache_dtype, "float16"); /* not a KV dtype */
    CHECK_EQ_INT(store_model_update(s, &got), FOLIO_EINVAL);
    CHECK(strstr(folio_last_error(), "kv_cache_dtype") != NULL);
    CHECK_EQ_INT(store_model_find(s, "Org/Model-B_1", &got), FOLIO_ENOTFOUND);

    CHECK_EQ_INT(store_model_set_state(s, a.id, "failed", 0, "out of memory"), 0);
    CHECK_EQ_INT(store_model_set_state(s, a.id, "loading", -1, NULL), 0);
    CHECK_EQ_INT(store_model_get(s, a.id, &got), 0);
    CHECK_STR(got.state, "loading");
    CHECK_EQ_INT(got.want_loaded, 0);
    CHECK_STR(got.last_error, "out of memory");
    CHECK_EQ_INT(store_model_set_state(s, a.id, "ready", 1, ""), 0);
    CHECK_EQ_INT(store_model_get(s, a.id, &got), 0);
    CHECK_STR(got.state, "ready");
    CHECK_EQ_INT(got.want_loaded, 1);
    CHECK_STR(got.last_error, "");
    CHECK_EQ_INT(store_model_set_state(s, 999999, "ready", 1, NULL), FOLIO_ENOTFOUND);

    /* Not found. */
    CHECK_EQ_INT(store_model_get(s, 999999, &got), FOLIO_ENOTFOUND);
    CHECK_EQ_INT(store_model_find(s, "nope", &got), FOLIO_ENOTFOUND);
    CHECK(strstr(folio_last_error(), "nope") != NULL);
    got = a;
    got.id = 999999;
    snprintf(got.name, sizeof got.name, "ghost");
    CHECK_EQ_INT(store_model_update(s, &got), FOLIO_ENOTFOUND);
    CHECK_EQ_INT(store_model_delete(s, 999999), FOLIO_ENOTFOUND);

    /* Bad input names its field. */
    struct store_model bad;
    model_init(&bad, "x");
    memset(bad.name, 'n', sizeof bad.name);
    CHECK_EQ_INT(store_model_add(s, &bad), FOLIO_EINVAL);
    CHECK(strstr(folio_last_error(), "model name") != NULL);
    model_init(&bad, "x");
    memset(bad.revision, 'r', sizeof bad.revision);
    CHECK_EQ_INT(store_model_add(s, &bad), FOLIO_EINVAL);
    CHECK(strstr(folio_last_error(), "revision") != NULL);
    model_init(&bad, "has space");
    CHECK_EQ_INT(store_model_add(s, &bad), FOLIO_EINVAL);
    model_init(&bad, "");
    CHECK_EQ_INT(store_model_add(s, &bad), FOLIO_EINVAL);
    model_init(&bad, "x");
    snprintf(bad.source, sizeof bad.source, "ftp");
    CHECK_EQ_INT(store_model_add(s, &bad), FOLIO_EINVAL);
    CHECK(strstr(folio_last_error(), "source") != NULL);
    model_init(&bad, "x");
    bad.gpu_memory_utilization = 1.5;
    CHECK_EQ_INT(store_model_add(s, &bad), FOLIO_EINVAL);
    model_init(&bad, "x");
    snprintf(bad.device, sizeof bad.device, "tpu");
    CHECK_EQ_INT(store_model_add(s, &bad), FOLIO_EINVAL);
    char longstate[64];
    memset(longstate, 's', sizeof longstate - 1);
    longstate[sizeof longstate - 1] = '\0';
    CHECK_EQ_INT(store_model_set_state(s, a.id, longstate, 1, NULL), FOLIO_EINVAL);
    CHECK(strstr(folio_last_error(), "model state") != NULL);

    CHECK_EQ_INT(store_model_delete(s, a.id), 0);
    CHECK_EQ_INT(store_model_get(s, a.id, &got), FOLIO_ENOTFOUND);
    /* A deleted id is never handed out again (a stale console cannot hit a new model). */
    model_init(&dup, "after-delete");
    CHECK_EQ_INT(store_model_add(s, &dup), 0);
    CHECK(dup.id > b.id);
    store_close(s);
}

TEST(store_delete_cascades_to_engine) {
    struct store *s = NULL;
    CHECK_EQ_INT(open_new("cascade.db", &s), 0);
    if (!s) return;
    struct store_model a, b;
    model_init(&a, "a");
    model_init(&b, "b");
    CHECK_EQ_INT(store_model_add(s, &a), 0);
    CHECK_EQ_INT(store_model_add(s, &b), 0);
    struct store_engine e = {.model_id = a.id, .pid = 1234, .port = 41000, .started = 17, .restarts = 0};
    snprintf(e.state, sizeof e.state, "starting");
    snprintf(e.log_path, sizeof e.log_path, "/var/log/folio/a.log");
    CHECK_EQ_INT(store_engine_put(s, &e), 0);
    e.restarts = 2;
    snprintf(e.state, sizeof e.state, "ready");
    CHECK_EQ_INT(store_engine_put(s, &e), 0); /* replaces */
    struct store_engine eb = {.model_id = b.id, .pid = 99, .port = 41001};
    snprintf(eb.state, sizeof eb.state, "ready");
    CHECK_EQ_INT(store_engine_put(s, &eb), 0);
    struct store_engine ghost = {.model_id = 424242};
    snprintf(ghost.state, sizeof ghost.state, "ready");
    CHECK_EQ_INT(store_engine_put(s, &ghost), FOLIO_ENOTFOUND);

    struct store_engine *list = NULL;
    int n = 0;
    CHECK_EQ_INT(store_engine_list(s, &list, &n), 0);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(list[0].model_id, a.id);
        CHECK_EQ_INT(list[0].restarts, 2);
        CHECK_EQ_INT(list[0].pid, 1234);
        CHECK_EQ_INT(list[0].port, 41000);
        CHECK_EQ_INT(list[0].started, 17);
        CHECK_STR(list[0].state, "ready");
        CHECK_STR(list[0].log_path, "/var/log/folio/a.log");
    }
    free(list);

    CHECK_EQ_INT(store_event_add(s, "error", "engine.crashed", a.id, "exit %d", 9), 0);
    CHECK_EQ_INT(store_model_delete(s, a.id), 0);
    CHECK_EQ_INT(store_engine_list(s, &list, &n), 0);
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK_EQ_INT(list[0].model_id, b.id);
    free(list);
    /* The event outlives its model, unattached. */
    struct store_event *ev = NULL;
    CHECK_EQ_INT(store_event_list(s, 0, 0, &ev, &n), 0);
    CHECK_EQ_INT(n, 1);
    if (n == 1) {
        CHECK_EQ_INT(ev[0].model_id, 0);
        CHECK_STR(ev[0].message, "exit 9");
    }
    free(ev);
    CHECK_EQ_INT(store_engine_delete(s, b.id), 0);
    CHECK_EQ_INT(store_engine_delete(s, b.id), 0); /* already gone: still fine */
    CHECK_EQ_INT(store_engine_list(s, &list, &n), 0);
    CHECK_EQ_INT(n, 0);
    free(list);
    store_close(s);
}

TEST(store_keys) {
    struct store *s = NULL;
    CHECK_EQ_INT(open_new("keys.db", &s), 0);
    if (!s) return;
    int n = -1;
    CHECK_EQ_INT(store_key_count(s, &n), 0);
    CHECK_EQ_INT(n, 0);
    struct store_key k1 = {0}, k2 = {0};
    snprintf(k1.name, sizeof k1.name, "ci");
    snprintf(k1.prefix, sizeof k1.prefix, "sk-folio-ab");
    memset(k1.hash, 'a', 64);
    snprintf(k2.name, sizeof k2.name, "laptop");
    snprintf(k2.prefix, sizeof k2.prefix, "sk-folio-cd");
    memset(k2.hash, '0', 64);
    k2.hash[63] = 'f';
    CHECK_EQ_INT(store_key_add(s, &k1), 0);
    CHECK_EQ_INT(store_key_add(s, &k2), 0);
    CHECK(k1.id > 0 && k2.id > k1.id);
    CHECK(k1.created > 0);
    CHECK_EQ_INT(store_key_count(s, &n), 0);
    CHECK_EQ_INT(n, 2);

    struct store_key dup = k1;
    CHECK_EQ_INT(store_key_add(s, &dup), FOLIO_EEXIST);
    struct store_key bad = k1;
    bad.hash[3] = 'A'; /* uppercase is not what auth makes */
    CHECK_EQ_INT(store_key_add(s, &bad), FOLIO_EINVAL);
    bad = k1;
    bad.hash[40] = '\0';
    CHECK_EQ_INT(store_key_add(s, &bad), FOLIO_EINVAL);
    bad = k1;
    memset(bad.name, 'x', sizeof bad.name);
    CHECK_EQ_INT(store_key_add(s, &bad), FOLIO_EINVAL);
    CHECK(strstr(folio_last_error(), "key name") != NULL);

    CHECK_EQ_INT(store_key_touch(s, k2.id, 1750000000), 0);
    CHECK_EQ_INT(store_key_touch(s, 77777, 1), FOLIO_ENOTFOUND);
    struct store_key *list = NULL;
    CHECK_EQ_INT(store_key_list(s, &list, &n), 0);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_STR(list[0].name, "ci");
        CHECK_STR(list[0].prefix, "sk-folio-ab");
        CHECK_STR(list[0].hash, k1.hash);
        CHECK_EQ_INT(list[0].last_used, 0);
        CHECK_EQ_INT(list[1].last_used, 1750000000);
        CHECK_EQ_INT(list[1].created, k2.created);
    }
    free(list);
    CHECK_EQ_INT(store_key_delete(s, k1.id), 0);
    CHECK_EQ_INT(store_key_delete(s, k1.id), FOLIO_ENOTFOUND);
    CHECK_EQ_INT(store_key_count(s, &n), 0);
    CHECK_EQ_INT(n, 1);
    store_close(s);
}

TEST(store_admin_and_settings) {
    struct store *s = NULL;
    CHECK_EQ_INT(open_new("admin.db", &s), 0);
    if (!s) return;
    char buf[128];
    CHECK_EQ_INT(store_admin_get(s, buf, sizeof buf), FOLIO_ENOTFOUND);
    CHECK_EQ_INT(store_admin_set(s, "$y$j9T$salt$hash1"), 0);
    CHECK_EQ_INT(store_admin_get(s, buf, sizeof buf), 0);
    CHECK_STR(buf, "$y$j9T$salt$hash1");
    CHECK_EQ_INT(store_admin_set(s, "$y$j9T$salt$hash2"), 0);
    CHECK_EQ_INT(store_admin_get(s, buf, sizeof buf), 0);
    CHECK_STR(buf, "$y$j9T$salt$hash2");
    CHECK_EQ_INT(store_admin_get(s, buf, 5), FOLIO_EINVAL); /* buffer too small: no cut */
    CHECK_EQ_INT(store_admin_set(s, ""), FOLIO_EINVAL);

    CHECK_EQ_INT(store_setting_get(s, "listen", buf, sizeof buf), FOLIO_ENOTFOUND);
    CHECK(strstr(folio_last_error(), "listen") != NULL);
    CHECK_EQ_INT(store_setting_set(s, "listen", "0.0.0.0:8000"), 0);
    CHECK_EQ_INT(store_setting_set(s, "empty", ""), 0);
    CHECK_EQ_INT(store_setting_set(s, "listen", "127.0.0.1:9000"), 0);
    CHECK_EQ_INT(store_setting_get(s, "listen", buf, sizeof buf), 0);
    CHECK_STR(buf, "127.0.0.1:9000");
    CHECK_EQ_INT(store_setting_get(s, "empty", buf, sizeof buf), 0);
    CHECK_STR(buf, "");
    CHECK_EQ_INT(store_setting_get(s, "listen", buf, 4), FOLIO_EINVAL);
    CHECK_EQ_INT(store_setting_set(s, "", "x"), FOLIO_EINVAL);
    store_close(s);
}

TEST(store_events) {
    struct store *s = NULL;
    CHECK_EQ_INT(open_new("events.db", &s), 0);
    if (!s) return;
    struct store_model m;
    model_init(&m, "m");
    CHECK_EQ_INT(store_model_add(s, &m), 0);
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(store_event_add(s, "info", "test.tick", m.id, "tick %d", i), 0);
    CHECK_EQ_INT(store_event_add(s, "warn", "test.ghost", 424242, "no such model"), 0);
    CHECK_EQ_INT(store_event_add(s, "debug", "x", 0, "bad level"), FOLIO_EINVAL);
    CHECK_EQ_INT(store_event_add(s, "info", "", 0, "no kind"), FOLIO_EINVAL);
    CHECK_EQ_INT(store_event_add(s, "info", "a.kind.that.is.much.too.long.for.its.field", 0, "x"), FOLIO_EINVAL);
    CHECK(strstr(folio_last_error(), "event kind") != NULL);

    struct store_event *ev = NULL;
    int n = 0;
    CHECK_EQ_INT(store_event_list(s, 0, 100, &ev, &n), 0);
    CHECK_EQ_INT(n, 6);
    if (n == 6) {
        CHECK_STR(ev[0].message, "tick 0");
        CHECK_STR(ev[0].level, "info");
        CHECK_STR(ev[0].kind, "test.tick");
        CHECK_EQ_INT(ev[0].model_id, m.id);
        CHECK(ev[0].ts > 1700000000000LL);
        CHECK(ev[5].id > ev[4].id);
        CHECK_EQ_INT(ev[5].model_id, 0);
        CHECK_STR(ev[5].level, "warn");
    }
    int64_t second = n >= 2 ? ev[1].id : 0;
    free(ev);
    CHECK_EQ_INT(store_event_list(s, second, 2, &ev, &n), 0);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_STR(ev[0].message, "tick 2");
        CHECK_STR(ev[1].message, "tick 3");
    }
    free(ev);
    CHECK_EQ_INT(store_event_list(s, 1000000, 10, &ev, &n), 0);
    CHECK_EQ_INT(n, 0);
    free(ev);

    /* A long message is cut, not lost, and never mid-character. */
    char big[2000];
    size_t off = 0;
    while (off + 3 < sizeof big) {
        memcpy(big + off, "\xc3\xa9", 2); /* é */
        off += 2;
    }
    big[off] = '\0';
    CHECK_EQ_INT(store_event_add(s, "error", "test.long", 0, "x%s", big), 0);
    CHECK_EQ_INT(store_event_list(s, 0, 0, &ev, &n), 0);
    CHECK_EQ_INT(n, 7);
    if (n == 7) {
        const char *msg = ev[6].message;
        size_t len = strlen(msg);
        CHECK(len < sizeof ev[6].message && len > 400);
        CHECK(len >= 3 && strcmp(msg + len - 3, "...") == 0);
        CHECK(len >= 4 && (unsigned char)msg[len - 4] == 0xa9); /* ends on a whole é */
    }
    free(ev);
    store_close(s);
}

TEST(store_events_trimmed_to_newest_10000) {
    struct store *s = NULL;
    CHECK_EQ_INT(open_new("trim.db", &s), 0);
    if (!s) return;
    int failures = 0;
    for (int i = 1; i <= 10050; i++)
        if (store_event_add(s, "info", "test.fill", 0, "event %d", i) != 0) failures++;
    CHECK_EQ_INT(failures, 0);
    struct store_event *ev = NULL;
    int n = 0;
    CHECK_EQ_INT(store_event_list(s, 0, 0, &ev, &n), 0);
    CHECK_EQ_INT(n, 10000);
    if (n == 10000) {
        CHECK_STR(ev[0].message, "event 51"); /* 1..50, the oldest, are gone */
        CHECK_STR(ev[9999].message, "event 10050");
        CHECK_EQ_INT(ev[9999].id - ev[0].id, 9999);
    }
    free(ev);
    store_close(s);
    char path[512];
    store_tpath(path, sizeof path, "trim.db");
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM events"), 10000);
}

/* Failed logins keep only their newest STORE_MAX_LOGIN_FAILED events, and pruning them
 * leaves every other event alone. */
TEST(store_login_failed_pruned_to_newest_100) {
    struct store *s = NULL;
    CHECK_EQ_INT(open_new("loginfail.db", &s), 0);
    if (!s) return;
    CHECK_EQ_INT(store_event_add(s, "info", "model.added", 0, "keep me"), 0);
    for (int i = 1; i <= 150; i++) {
        CHECK_EQ_INT(store_event_add(s, "warn", "admin.login_failed", 0, "fail %d", i), 0);
        if (i % 50 == 0) CHECK_EQ_INT(store_event_add(s, "info", "other", 0, "other %d", i), 0);
    }
    store_close(s);
    char path[512];
    store_tpath(path, sizeof path, "loginfail.db");
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM events WHERE kind = 'admin.login_failed'"), STORE_MAX_LOGIN_FAILED);
    CHECK_EQ_INT(raw_int(path, "SELECT min(CAST(substr(message, 6) AS INTEGER)) FROM events WHERE kind = 'admin.login_failed'"), 51);
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM events WHERE kind != 'admin.login_failed'"), 4);
}

/* audit: one event per window; later failures are counted, not lost, and written at the next
 * failure past the window, at a successful login (audit_flush) or at audit_free. */
TEST(store_audit_login_failed_aggregated) {
    struct store *s = NULL;
    CHECK_EQ_INT(open_new("audit.db", &s), 0);
    if (!s) return;
    struct audit *a = audit_create(s, 60);
    CHECK(a != NULL);
    audit_login_failed(a, "10.0.0.1", 1000); /* the first: written at once */
    for (int i = 0; i < 500; i++) audit_login_failed(a, i % 5 ? "10.0.0.2" : "10.0.0.3", 1001 + i * 0.1);
    char path[512];
    store_tpath(path, sizeof path, "audit.db");
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM events WHERE kind = 'admin.login_failed'"), 1);
    audit_login_failed(a, "10.0.0.4", 1061); /* past the window: the 501 pending ones, with this */
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM events WHERE kind = 'admin.login_failed'"), 2);
    audit_login_failed(a, "10.0.0.1", 1062);
    audit_flush(a, 1063); /* a successful login */
    audit_login_failed(a, "10.0.0.9", 1064);
    audit_free(a); /* shutdown */
    struct store_event *ev = NULL;
    int n = 0;
    CHECK_EQ_INT(store_event_list(s, 0, 0, &ev, &n), 0);
    CHECK_EQ_INT(n, 4);
    if (n == 4) {
        CHECK_STR(ev[0].message, "1 failed admin login (wrong password) from 10.0.0.1 (1)");
        CHECK_STR(ev[1].message,
                  "501 failed admin logins (wrong password) from 10.0.0.2 (400), 10.0.0.3 (100), 10.0.0.4 (1)");
        CHECK_STR(ev[2].message, "1 failed admin login (wrong password) from 10.0.0.1 (1)");
        CHECK_STR(ev[3].message, "1 failed admin login (wrong password) from 10.0.0.9 (1)");
    }
    free(ev);
    store_close(s);
}

struct store_thread_arg {
    struct store *s;
    int index;
    int errors;
    char error[256];
};

static void *store_thread(void *p) {
    struct store_thread_arg *a = p;
    for (int i = 0; i < 25; i++) {
        struct store_model m;
        char name[64];
        snprintf(name, sizeof name, "t%d-m%d", a->index, i);
        model_init(&m, name);
        int rc = store_model_add(a->s, &m);
        if (!rc) rc = store_event_add(a->s, "info", "model.added", m.id, "thread %d model %d", a->index, i);
        if (!rc) rc = store_model_set_state(a->s, m.id, "ready", 1, "");
        for (int j = 0; !rc && j < 3; j++)
            rc = store_event_add(a->s, "info", "test.thread", 0, "thread %d event %d.%d", a->index, i, j);
        if (!rc) {
            struct store_event *ev = NULL;
            int n = 0;
            rc = store_event_list(a->s, 0, 50, &ev, &n);
            free(ev);
        }
        if (rc) {
            a->errors++;
            snprintf(a->error, sizeof a->error, "%s", folio_last_error());
        }
    }
    return NULL;
}

/* Two threads on each of two connections: the mutex serializes one connection, and
 * busy_timeout with BEGIN IMMEDIATE keeps the two connections from failing with SQLITE_BUSY. */
TEST(store_concurrent_threads) {
    char path[512];
    store_tpath(path, sizeof path, "threads.db");
    struct store *s1 = NULL, *s2 = NULL;
    CHECK_EQ_INT(store_open(path, store_db_dir(), &s1), 0);
    CHECK_EQ_INT(store_open(path, store_db_dir(), &s2), 0);
    if (!s1 || !s2) {
        store_close(s1);
        store_close(s2);
        return;
    }
    pthread_t th[4];
    struct store_thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct store_thread_arg){.s = i < 2 ? s1 : s2, .index = i};
        CHECK_EQ_INT(pthread_create(&th[i], NULL, store_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(args[i].errors, 0);
        if (args[i].errors) fprintf(stderr, "    thread %d: %s\n", i, args[i].error);
    }
    struct store_model *models = NULL;
    int n = 0;
    CHECK_EQ_INT(store_model_list(s2, &models, &n), 0);
    CHECK_EQ_INT(n, 100);
    for (int i = 0; i < n; i++) CHECK_STR(models[i].state, "ready");
    free(models);
    struct store_event *ev = NULL;
    CHECK_EQ_INT(store_event_list(s1, 0, 0, &ev, &n), 0);
    CHECK_EQ_INT(n, 400);
    for (int i = 1; i < n; i++) CHECK(ev[i].id == ev[i - 1].id + 1);
    free(ev);
    store_close(s1);
    store_close(s2);
}

TEST(store_failed_writes_change_nothing) {
    struct store *s = NULL;
    CHECK_EQ_INT(open_new("atomic.db", &s), 0);
    if (!s) return;
    struct store_model a, b, before, after, w;
    model_init(&a, "a");
    model_init(&b, "b");
    CHECK_EQ_INT(store_model_add(s, &a), 0);
    CHECK_EQ_INT(store_model_add(s, &b), 0);
    CHECK_EQ_INT(store_model_get(s, a.id, &before), 0);

    w = before; /* rename onto b, along with other changes */
    snprintf(w.name, sizeof w.name, "b");
    snprintf(w.path, sizeof w.path, "/changed");
    w.max_model_len = 99;
    CHECK_EQ_INT(store_model_update(s, &w), FOLIO_EEXIST);
    w = before; /* one over-long field among good changes */
    snprintf(w.path, sizeof w.path, "/changed");
    memset(w.last_error, 'e', sizeof w.last_error);
    CHECK_EQ_INT(store_model_update(s, &w), FOLIO_EINVAL);
    CHECK(strstr(folio_last_error(), "last_error") != NULL);
    w = before;
    snprintf(w.path, sizeof w.path, "/changed");
    w.block_size = -1;
    CHECK_EQ_INT(store_model_update(s, &w), FOLIO_EINVAL);
    CHECK_EQ_INT(store_model_get(s, a.id, &after), 0);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    store_close(s);

    /* A migration that fails half-way is rolled back whole: no table from its first
     * statement, user_version unchanged, and the file still upgrades with a good db dir. */
    char path[512], dir[512];
    store_tpath(path, sizeof path, "halfmigrated.db");
    store_tpath(dir, sizeof dir, "dbdir-broken");
    make_v1_file(path);
    make_db_dir(dir, "0002_broken.sql",
                "CREATE TABLE half_done (x);\nINSERT INTO half_done VALUES (1);\n"
                "INSERT INTO no_such_table VALUES (1);\n");
    s = NULL;
    CHECK_EQ_INT(store_open(path, dir, &s), FOLIO_EINVAL);
    CHECK(s == NULL);
    CHECK(strstr(folio_last_error(), "0002_broken.sql") != NULL);
    CHECK(strstr(folio_last_error(), "no_such_table") != NULL);
    CHECK_EQ_INT(raw_int(path, "PRAGMA user_version"), 1);
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'half_done'"), 0);
    CHECK_EQ_INT(store_open(path, store_db_dir(), &s), 0);
    if (s) CHECK_EQ_INT(store_schema_version(s), 5);
    store_close(s);
}

/* A writer killed with SIGKILL in the middle of its work: after recovery every row is one
 * whole write, and the model and the event log agree on how far it got. */
TEST(store_killed_writer_leaves_no_half_write) {
    char path[512];
    store_tpath(path, sizeof path, "killed.db");
    struct store *s = NULL;
    struct store_model m;
    CHECK_EQ_INT(store_open(path, store_db_dir(), &s), 0);
    if (!s) return;
    model_init(&m, "victim");
    CHECK_EQ_INT(store_model_add(s, &m), 0);
    store_close(s);
    s = NULL;

    int pfd[2];
    CHECK_EQ_INT(pipe(pfd), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct store *cs = NULL;
        close(pfd[0]);
        if (store_open(path, store_db_dir(), &cs)) _exit(2);
        if (write(pfd[1], "r", 1) != 1) _exit(3);
        for (int gen = 1;; gen++) {
            struct store_model w = m;
            snprintf(w.path, sizeof w.path, "/gen/%d", gen);
            snprintf(w.last_error, sizeof w.last_error, "gen %d", gen);
            w.max_model_len = gen;
            if (store_model_update(cs, &w)) _exit(4);
            if (store_event_add(cs, "info", "test.gen", m.id, "gen %d", gen)) _exit(5);
        }
    }
    CHECK(pid > 0);
    close(pfd[1]);
    char c = 0;
    CHECK_EQ_INT(read(pfd[0], &c, 1), 1);
    close(pfd[0]);
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    if (pid > 0) {
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    }

    CHECK_EQ_INT(store_open(path, store_db_dir(), &s), 0); /* recovery, then quick_check */
    if (!s) return;
    struct store_model got;
    CHECK_EQ_INT(store_model_get(s, m.id, &got), 0);
    int gen = got.max_model_len;
    char want[64];
    CHECK(gen > 1); /* the child got well into its loop before the kill */
    snprintf(want, sizeof want, "/gen/%d", gen);
    CHECK_STR(got.path, want);
    snprintf(want, sizeof want, "gen %d", gen);
    CHECK_STR(got.last_error, want);
    struct store_event *ev = NULL;
    int n = 0;
    CHECK_EQ_INT(store_event_list(s, 0, 0, &ev, &n), 0);
    CHECK(n > 0);
    int bad = 0, last = 0;
    for (int i = 0; i < n; i++) {
        int g = 0;
        if (sscanf(ev[i].message, "gen %d", &g) != 1 || (i > 0 && g != last + 1) || ev[i].model_id != m.id) bad++;
        last = g;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(last == gen || last == gen - 1); /* each event follows its update */
    free(ev);
    store_close(s);
}

TEST(store_downloads) {
    struct store *s = NULL;
    CHECK_EQ_INT(open_new("downloads.db", &s), 0);
    if (!s) return;
    struct store_model m;
    model_init(&m, "org/pulled");
    snprintf(m.source, sizeof m.source, "hf");
    snprintf(m.repo_id, sizeof m.repo_id, "org/pulled");
    CHECK_EQ_INT(store_model_add(s, &m), 0);
    struct store_download *d = calloc(1, sizeof *d), *got = calloc(1, sizeof *got);
    if (!d || !got) goto out;
    d->model_id = m.id;
    snprintf(d->sha, sizeof d->sha, "0123456789abcdef0123456789abcdef01234567");
    snprintf(d->state, sizeof d->state, "downloading");
    d->bytes_done = 5;
    d->bytes_total = 1LL << 40; /* past 32 bits */
    d->files_total = 2;
    d->load_after = 1;
    snprintf(d->files, sizeof d->files, "[{\"name\":\"config.json\",\"size\":5,\"done\":5}]");
    d->started = 1700000000000LL;
    CHECK_EQ_INT(store_download_put(s, d), 0);
    CHECK(d->updated > 0);
    CHECK_EQ_INT(store_download_get(s, m.id, got), 0);
    CHECK(memcmp(got, d, sizeof *d) == 0);
    /* An update in place, a bad state refused without a change, a row for no model refused. */
    snprintf(d->state, sizeof d->state, "done");
    d->bytes_done = d->bytes_total;
    CHECK_EQ_INT(store_download_put(s, d), 0);
    snprintf(got->state, sizeof got->state, "finished");
    CHECK_EQ_INT(store_download_put(s, got), FOLIO_EINVAL);
    CHECK(strstr(folio_last_error(), "queued, downloading, done") != NULL);
    got->model_id = m.id + 100;
    snprintf(got->state, sizeof got->state, "queued");
    CHECK_EQ_INT(store_download_put(s, got), FOLIO_ENOTFOUND);
    struct store_download *all = NULL;
    int n = 0;
    CHECK_EQ_INT(store_download_list(s, &all, &n), 0);
    CHECK_EQ_INT(n, 1);
    if (n == 1) {
        CHECK_STR(all[0].state, "done");
        CHECK(all[0].bytes_done == 1LL << 40);
    }
    free(all);
    /* The row goes with its model. */
    CHECK_EQ_INT(store_model_delete(s, m.id), 0);
    CHECK_EQ_INT(store_download_get(s, m.id, got), FOLIO_ENOTFOUND);
    CHECK_EQ_INT(store_download_delete(s, m.id), 0);
out:
    free(d);
    free(got);
    store_close(s);
}
