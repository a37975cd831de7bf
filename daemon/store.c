/* store: foliod's registry in one SQLite file (see store.h).
 *
 * One connection serves the whole daemon, behind a mutex: SQLite allows one writer at a time
 * anyway, and every call here is short. Each call is a single statement, or one transaction
 * where it needs several, so a crash (SQLite's WAL recovery) never leaves half a change.
 * The schema comes from db/: schema.sql for a new file, migrations/NNNN_name.sql to bring an
 * older one forward, each migration in its own transaction with its PRAGMA user_version. */
#include "store.h"

#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The schema this code reads and writes: the highest migration in db/migrations/. A file
 * with a higher user_version was written by a newer foliod and is refused. */
#define STORE_SCHEMA_VERSION 5
#define STORE_MAX_EVENTS 10000
#define STORE_BUSY_MS 5000
#define STORE_PATH_MAX 4096
#define STORE_MIG_NAME 256

struct store {
    sqlite3 *db;
    pthread_mutex_t mu;
};

/* ---- errors and statement helpers ---- */

/* Maps the connection's last SQLite error to a FOLIO_E* code and records a message. */
static int store_fail(struct store *s, const char *what) {
    int ext = sqlite3_extended_errcode(s->db);
    const char *msg = sqlite3_errmsg(s->db);
    int code;
    switch (ext & 0xff) {
    case SQLITE_CONSTRAINT:
        if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
            code = FOLIO_EEXIST;
        else if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
            code = FOLIO_ENOTFOUND;
        else
            code = FOLIO_EINVAL;
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: code = FOLIO_EBUSY; break;
    case SQLITE_NOMEM: code = FOLIO_ENOMEM; break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return folio_err(FOLIO_EIO, "store: %s: the database file is corrupt (%s)", what, msg);
    default: code = FOLIO_EIO; break;
    }
    return folio_err(code, "store: %s: %s", what, msg);
}

static int store_prepare(struct store *s, const char *sql, sqlite3_stmt **st) {
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK) {
        *st = NULL;
        return store_fail(s, "prepare");
    }
    return FOLIO_OK;
}

static int store_exec(struct store *s, const char *sql, const char *what) {
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK) return store_fail(s, what);
    return FOLIO_OK;
}

/* After a failure inside a transaction. Some errors (SQLITE_FULL, I/O) already rolled it back,
 * and a second ROLLBACK would only replace the message that matters. */
static void store_rollback(struct store *s) {
    if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* A text column into a fixed field. The schema cannot bound byte lengths cheaply, so a row
 * written by other means could be too long: that is an error, never a silent cut. */
static int store_col_text(sqlite3_stmt *st, int col, char *dst, size_t cap, const char *what) {
    const unsigned char *t = sqlite3_column_text(st, col);
    int n = sqlite3_column_bytes(st, col);
    if (!t) {
        dst[0] = '\0';
        return FOLIO_OK;
    }
    if ((size_t)n >= cap)
        return folio_err(FOLIO_EINVAL, "store: stored %s is %d bytes, longer than its field (%zu)", what, n,
                         cap - 1);
    memcpy(dst, t, (size_t)n);
    dst[n] = '\0';
    return FOLIO_OK;
}

/* A struct field on its way in: it must end within its array. */
static int store_field_ok(const char *v, size_t cap, const char *what) {
    if (!memchr(v, '\0', cap)) return folio_err(FOLIO_EINVAL, "%s is too long (at most %zu bytes)", what, cap - 1);
    return FOLIO_OK;
}

/* A string argument that will be read back into a field of cap bytes. */
static int store_arg_ok(const char *v, size_t cap, const char *what) {
    if (strlen(v) >= cap) return folio_err(FOLIO_EINVAL, "%s is too long (at most %zu bytes)", what, cap - 1);
    return FOLIO_OK;
}

static int store_pragma_int(struct store *s, const char *sql, int *out) {
    sqlite3_stmt *st = NULL;
    int rc = store_prepare(s, sql, &st);
    if (rc) return rc;
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
    } else {
        rc = r == SQLITE_DONE ? folio_err(FOLIO_EUNSUP, "store: %s returned nothing", sql) : store_fail(s, sql);
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---- one-statement calls ----
 * Almost every public call is one statement under the lock: prepare, bind, step to the end,
 * finalize. store_stmt does that in one place, so each call states only its SQL, its
 * parameters and what it does with the rows or the count of changes. */

/* A parameter for ?N. Calls list their values inline (STORE_ARGS) and store_bind checks them
 * all in one place. A NULL text binds SQL NULL (model_set_state's "keep last_error"). */
enum store_arg_type { STORE_INT, STORE_REAL, STORE_TEXT, STORE_TEXTN };
struct store_arg {
    enum store_arg_type type;
    int64_t i;
    double d;
    const char *t;
    size_t n; /* STORE_TEXTN: t's length (a span of a larger text, not NUL-terminated) */
};
#define A_INT(v) ((struct store_arg){.type = STORE_INT, .i = (v)})
#define A_REAL(v) ((struct store_arg){.type = STORE_REAL, .d = (v)})
#define A_TEXT(v) ((struct store_arg){.type = STORE_TEXT, .t = (v)})
#define A_TEXTN(v, len) ((struct store_arg){.type = STORE_TEXTN, .t = (v), .n = (len)})
/* Expands to the two arguments "array, count" for ?1..?n. The second copy of the values sits
 * in sizeof, which does not evaluate it, so each value is computed once. */
#define STORE_ARGS(...)                                                                            \
    ((const struct store_arg[]){__VA_ARGS__}),                                                     \
        (int)(sizeof((const struct store_arg[]){__VA_ARGS__}) / sizeof(struct store_arg))

static int store_bind(sqlite3_stmt *st, const struct store_arg *args, int nargs) {
    int b = 0;
    for (int i = 0; i < nargs; i++) {
        const struct store_arg *a = &args[i];
        switch (a->type) {
        case STORE_INT: b |= sqlite3_bind_int64(st, i + 1, a->i); break;
        case STORE_REAL: b |= sqlite3_bind_double(st, i + 1, a->d); break;
        case STORE_TEXT: b |= sqlite3_bind_text(st, i + 1, a->t, -1, SQLITE_STATIC); break;
        case STORE_TEXTN: b |= sqlite3_bind_text64(st, i + 1, a->t, a->n, SQLITE_STATIC, SQLITE_UTF8); break;
        }
    }
    return b ? folio_err(FOLIO_ENOMEM, "store: cannot bind") : FOLIO_OK;
}

/* Decodes the current row into dst; a FOLIO_E* code stops the statement. */
typedef int (*store_row_fn)(sqlite3_stmt *st, void *dst);

/* What a statement did, read before the lock is released (another call would change it). */
struct store_done {
    int rows;      /* rows returned: 0 is "not found" for a get */
    int changes;   /* rows written: 0 is "not found" for an update or delete */
    int64_t rowid; /* the row an INSERT made */
};

/* Runs sql with args bound to ?1..?nargs, passing each row to row(st, dst) when row is set;
 * done (may be NULL) is filled on success. The caller holds s->mu: event_add runs two
 * statements in one transaction. what names the call in an SQLite error. */
static int store_stmt_held(struct store *s, const char *sql, const struct store_arg *args, int nargs,
                           store_row_fn row, void *dst, const char *what, struct store_done *done) {
    sqlite3_stmt *st = NULL;
    int r, rows = 0;
    if (done) *done = (struct store_done){0};
    int rc = store_prepare(s, sql, &st);
    if (rc) return rc;
    rc = store_bind(st, args, nargs);
    if (rc) goto out;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        rows++;
        if (row && (rc = row(st, dst))) goto out;
    }
    if (r != SQLITE_DONE) {
        rc = store_fail(s, what);
        goto out;
    }
    if (done) {
        done->rows = rows;
        done->changes = sqlite3_changes(s->db);
        done->rowid = sqlite3_last_insert_rowid(s->db);
    }
out:
    sqlite3_finalize(st);
    return rc;
}

/* store_stmt_held under the lock, for the calls that are one statement. */
static int store_stmt(struct store *s, const char *sql, const struct store_arg *args, int nargs, store_row_fn row,
                      void *dst, const char *what, struct store_done *done) {
    pthread_mutex_lock(&s->mu);
    int rc = store_stmt_held(s, sql, args, nargs, row, dst, what, done);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* The state of a list call between rows: a malloc'd array of elem-sized items. */
struct store_list_acc {
    store_row_fn row;
    size_t elem;
    void *arr;
    int cap, cnt;
};

/* Grows the array (doubling) and decodes the row into its next item. */
static int store_list_row(sqlite3_stmt *st, void *dst) {
    struct store_list_acc *l = dst;
    if (l->cnt == l->cap) {
        int ncap = l->cap ? l->cap * 2 : 16;
        void *p = realloc(l->arr, (size_t)ncap * l->elem);
        if (!p) return folio_err(FOLIO_ENOMEM, "store: out of memory listing rows");
        l->arr = p;
        l->cap = ncap;
    }
    int rc = l->row(st, (char *)l->arr + (size_t)l->cnt * l->elem);
    if (!rc) l->cnt++;
    return rc;
}

/* Every row of sql, each decoded by row into an elem-sized item of *out (malloc'd, caller
 * frees; NULL when there are none). On failure *out is NULL and *n 0: no partial list. */
static int store_list(struct store *s, const char *sql, const struct store_arg *args, int nargs, size_t elem,
                      store_row_fn row, void **out, int *n, const char *what) {
    struct store_list_acc l = {.row = row, .elem = elem};
    *out = NULL;
    *n = 0;
    int rc = store_stmt(s, sql, args, nargs, store_list_row, &l, what, NULL);
    if (rc) {
        free(l.arr);
        return rc;
    }
    *out = l.arr;
    *n = l.cnt;
    return FOLIO_OK;
}

static int64_t store_now_s(void) { return (int64_t)time(NULL); }

static int64_t store_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- schema and migrations ---- */

/* migrations/NNNN_name.sql into names[NNNN] for 1..STORE_SCHEMA_VERSION. Every number must be
 * there once; a higher one means db_dir belongs to another release. Other files are ignored. */
static int store_scan_migrations(const char *dir, char names[][STORE_MIG_NAME]) {
    int rc = FOLIO_OK;
    DIR *d = opendir(dir);
    if (!d)
        return folio_err(FOLIO_EIO, "store: cannot read migrations directory %s: %s (is --db-dir foliod's db/?)", dir,
                         strerror(errno));
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        size_t len = strlen(n);
        if (len < 10 || n[4] != '_' || strcmp(n + len - 4, ".sql") != 0) continue;
        int num = 0, digits = 1;
        for (int i = 0; i < 4; i++) {
            if (n[i] < '0' || n[i] > '9') digits = 0;
            else num = num * 10 + (n[i] - '0');
        }
        if (!digits) continue;
        if (num == 0 || num > STORE_SCHEMA_VERSION) {
            rc = folio_err(FOLIO_EUNSUP,
                           "store: %s/%s is outside this foliod's migrations (0001..%04d): the db directory "
                           "belongs to another Folio release",
                           dir, n, STORE_SCHEMA_VERSION);
            goto out_close;
        }
        if (names[num][0]) {
            rc = folio_err(FOLIO_EINVAL, "store: two migrations numbered %04d in %s: %s and %s", num, dir,
                           names[num], n);
            goto out_close;
        }
        if (len >= STORE_MIG_NAME) {
            rc = folio_err(FOLIO_EINVAL, "store: migration name too long: %s", n);
            goto out_close;
        }
        memcpy(names[num], n, len + 1);
    }
    for (int i = 1; i <= STORE_SCHEMA_VERSION; i++) {
        if (!names[i][0]) {
            rc = folio_err(FOLIO_EINVAL, "store: %s has no %04d_*.sql migration", dir, i);
            goto out_close;
        }
    }
out_close:
    closedir(d);
    return rc;
}

/* Runs one SQL file inside the caller's transaction. */
static int store_exec_file(struct store *s, const char *path) {
    char *sql = NULL;
    char *err = NULL;
    int rc = folio_read_file(path, &sql, NULL);
    if (rc) return rc;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK) {
        rc = folio_err(FOLIO_EINVAL, "store: applying %s: %s", path, err ? err : sqlite3_errmsg(s->db));
        goto out;
    }
    /* A file that commits on its own would split the migration from its user_version. */
    if (sqlite3_get_autocommit(s->db))
        rc = folio_err(FOLIO_EINVAL, "store: %s ended the migration's transaction (no BEGIN/COMMIT in db/ files)",
                       path);
out:
    sqlite3_free(err);
    free(sql);
    return rc;
}

static int store_foreign_key_check(struct store *s, const char *file) {
    sqlite3_stmt *st = NULL;
    int rc = store_prepare(s, "PRAGMA foreign_key_check", &st);
    if (rc) return rc;
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        rc = folio_err(FOLIO_EINVAL, "store: after %s, table %s breaks a foreign key", file,
                       (const char *)sqlite3_column_text(st, 0));
    else if (r != SQLITE_DONE)
        rc = store_fail(s, "foreign_key_check");
    sqlite3_finalize(st);
    return rc;
}

static int store_refuse_newer(const char *path, int version) {
    return folio_err(FOLIO_EUNSUP,
                     "store: %s has schema version %d, but this foliod knows only up to %d: a newer Folio "
                     "wrote it. Run that newer foliod, or restore a backup taken before the upgrade",
                     path, version, STORE_SCHEMA_VERSION);
}

/* One step forward per transaction: schema.sql for an empty file, else the next migration.
 * BEGIN IMMEDIATE and re-reading user_version inside it make two foliods racing to create
 * the same file safe: the second finds the work done. */
static int store_migrate(struct store *s, const char *path, const char *db_dir, char names[][STORE_MIG_NAME],
                         int by_migrations) {
    char file[STORE_PATH_MAX], rel[STORE_PATH_MAX];
    for (;;) {
        int version = 0, tables = 0, target;
        int rc = store_exec(s, "BEGIN IMMEDIATE", "begin migration");
        if (rc) return rc;
        rc = store_pragma_int(s, "PRAGMA user_version", &version);
        if (rc) goto out_rollback;
        if (version > STORE_SCHEMA_VERSION) {
            rc = store_refuse_newer(path, version);
            goto out_rollback;
        }
        if (version == STORE_SCHEMA_VERSION) return store_exec(s, "COMMIT", "commit");
        if (version == 0) {
            rc = store_pragma_int(s, "SELECT count(*) FROM sqlite_master", &tables);
            if (rc) goto out_rollback;
            if (tables) {
                rc = folio_err(FOLIO_EINVAL,
                               "store: %s has tables but no schema version: it is not a Folio database", path);
                goto out_rollback;
            }
        }
        if (version == 0 && !by_migrations) {
            target = STORE_SCHEMA_VERSION;
            rc = folio_path_join(file, sizeof file, db_dir, "schema.sql");
        } else {
            target = version + 1;
            rc = folio_path_join(rel, sizeof rel, "migrations", names[target]);
            if (!rc) rc = folio_path_join(file, sizeof file, db_dir, rel);
        }
        if (rc) goto out_rollback;
        rc = store_exec_file(s, file);
        if (rc) goto out_rollback;
        if (version == 0 && !by_migrations) {
            int got = 0;
            rc = store_pragma_int(s, "PRAGMA user_version", &got);
            if (rc) goto out_rollback;
            if (got != STORE_SCHEMA_VERSION) {
                rc = folio_err(FOLIO_EINVAL, "store: %s sets user_version %d, this foliod expects %d", file, got,
                               STORE_SCHEMA_VERSION);
                goto out_rollback;
            }
        } else {
            char sql[64];
            snprintf(sql, sizeof sql, "PRAGMA user_version = %d", target);
            rc = store_exec(s, sql, "set user_version");
            if (rc) goto out_rollback;
        }
        rc = store_foreign_key_check(s, file);
        if (rc) goto out_rollback;
        rc = store_exec(s, "COMMIT", "commit migration");
        if (rc) goto out_rollback;
        continue;
    out_rollback:
        store_rollback(s);
        return rc;
    }
}

/* The first row of quick_check is "ok" or the first problem found. */
static int store_quick_check(struct store *s, const char *path) {
    sqlite3_stmt *st = NULL;
    int rc = store_prepare(s, "PRAGMA quick_check(1)", &st);
    if (rc) return rc;
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        const char *res = (const char *)sqlite3_column_text(st, 0);
        if (!res || strcmp(res, "ok") != 0) {
            /* The report spans lines ("*** in database main ***\nPage 4: ..."); messages do not. */
            char detail[256];
            snprintf(detail, sizeof detail, "%s", res ? res : "(no detail)");
            for (char *p = detail; *p; p++)
                if (*p == '\n') *p = ' ';
            rc = folio_err(FOLIO_EIO, "store: %s is corrupt: %s", path, detail);
        }
    } else {
        rc = store_fail(s, "quick_check");
    }
    sqlite3_finalize(st);
    return rc;
}

static int store_open_impl(const char *path, const char *db_dir, int by_migrations, struct store **out) {
    int rc = FOLIO_OK;
    struct store *s = NULL;
    char schema[STORE_PATH_MAX], migdir[STORE_PATH_MAX];
    char (*mig)[STORE_MIG_NAME] = NULL;
    *out = NULL;
    if (!path || !*path || !db_dir || !*db_dir) return folio_err(FOLIO_EINVAL, "store: no database path or db dir");
    if (!sqlite3_threadsafe()) return folio_err(FOLIO_EUNSUP, "store: libsqlite3 was built without thread support");

    /* Check db_dir before touching path, so a wrong --db-dir leaves no empty database behind. */
    rc = folio_path_join(schema, sizeof schema, db_dir, "schema.sql");
    if (rc) return rc;
    if (access(schema, R_OK) != 0)
        return folio_err(FOLIO_EIO, "store: no readable %s (%s): the db directory must hold foliod's schema.sql "
                         "and migrations/", schema, strerror(errno));
    rc = folio_path_join(migdir, sizeof migdir, db_dir, "migrations");
    if (rc) return rc;
    mig = calloc(STORE_SCHEMA_VERSION + 1, sizeof *mig);
    if (!mig) return folio_err(FOLIO_ENOMEM, "store: out of memory");
    rc = store_scan_migrations(migdir, mig);
    if (rc) goto out_free;

    /* Created here rather than by SQLite, which would use 0644: the file holds key hashes and
     * the admin password hash. SQLite gives its -wal and -shm files the same mode. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = folio_err(FOLIO_EIO, "store: cannot open %s: %s", path, strerror(errno));
        goto out_free;
    }
    close(fd);

    s = calloc(1, sizeof *s);
    if (!s) {
        rc = folio_err(FOLIO_ENOMEM, "store: out of memory");
        goto out_free;
    }
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        s = NULL;
        rc = folio_err(FOLIO_EIO, "store: cannot create a mutex");
        goto out_free;
    }
    /* NOMUTEX: s->mu already serializes every use of the connection. */
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        rc = folio_err(FOLIO_EIO, "store: cannot open %s: %s", path,
                       s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto out_close;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, STORE_BUSY_MS);

    /* The first read of the header: a file that is not SQLite fails here. */
    int version = 0;
    rc = store_pragma_int(s, "PRAGMA user_version", &version);
    if (rc) {
        int ext = sqlite3_extended_errcode(s->db) & 0xff;
        if (ext == SQLITE_NOTADB || ext == SQLITE_CORRUPT)
            rc = folio_err(FOLIO_EIO, "store: %s is not a SQLite database, or it is corrupt (%s)", path,
                           sqlite3_errmsg(s->db));
        goto out_close;
    }
    /* Refused before anything writes to the file (the WAL switch would). */
    if (version > STORE_SCHEMA_VERSION) {
        rc = store_refuse_newer(path, version);
        goto out_close;
    }
    if (version < 0) {
        rc = folio_err(FOLIO_EINVAL, "store: %s has schema version %d: not a Folio database", path, version);
        goto out_close;
    }
    rc = store_quick_check(s, path);
    if (rc) goto out_close;

    sqlite3_stmt *st = NULL;
    rc = store_prepare(s, "PRAGMA journal_mode=WAL", &st);
    if (rc) goto out_close;
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = store_fail(s, "journal_mode=WAL");
    } else {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        if (!mode || sqlite3_stricmp(mode, "wal") != 0)
            rc = folio_err(FOLIO_EUNSUP, "store: %s cannot use write-ahead logging (journal mode stays %s): is it "
                           "on a network filesystem?", path, mode ? mode : "unknown");
    }
    sqlite3_finalize(st);
    if (rc) goto out_close;
    /* NORMAL under WAL: a process crash loses nothing; a power cut may lose the last commits
     * but never corrupts. */
    rc = store_exec(s, "PRAGMA synchronous=NORMAL", "synchronous");
    if (rc) goto out_close;
    /* Off while migrating (a migration may rebuild a table); each is checked before commit. */
    rc = store_exec(s, "PRAGMA foreign_keys=OFF", "foreign_keys");
    if (rc) goto out_close;
    rc = store_migrate(s, path, db_dir, mig, by_migrations);
    if (rc) goto out_close;
    rc = store_exec(s, "PRAGMA foreign_keys=ON", "foreign_keys");
    if (rc) goto out_close;
    int fk = 0;
    rc = store_pragma_int(s, "PRAGMA foreign_keys", &fk);
    if (!rc && fk != 1) rc = folio_err(FOLIO_EUNSUP, "store: libsqlite3 does not enforce foreign keys");
    if (rc) goto out_close;

    *out = s;
    s = NULL;
out_close:
    store_close(s);
out_free:
    free(mig);
    return rc;
}

int store_open(const char *path, const char *db_dir, struct store **out) {
    return store_open_impl(path, db_dir, 0, out);
}

int store_open_by_migrations(const char *path, const char *db_dir, struct store **out) {
    return store_open_impl(path, db_dir, 1, out);
}

void store_close(struct store *s) {
    if (!s) return;
    /* close_v2: a leaked statement must not leave the file open forever. */
    sqlite3_close_v2(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int store_schema_version(struct store *s) {
    int v = 0;
    pthread_mutex_lock(&s->mu);
    int rc = store_pragma_int(s, "PRAGMA user_version", &v);
    pthread_mutex_unlock(&s->mu);
    return rc ? rc : v;
}

/* ---- models ---- */

#define MODEL_COLS                                                                                  \
    "id, name, source, repo_id, revision, path, max_model_len, dtype, gpu_memory_utilization, "    \
    "block_size, max_num_seqs, kv_cache_space, device, chat_template, state, want_loaded, last_error, created, "  \
    "kv_cache_dtype, quantization"

static int model_from_row(sqlite3_stmt *st, void *dst) {
    struct store_model *m = dst;
    int rc;
    memset(m, 0, sizeof *m);
    m->id = sqlite3_column_int64(st, 0);
    if ((rc = store_col_text(st, 1, m->name, sizeof m->name, "model name"))) return rc;
    if ((rc = store_col_text(st, 2, m->source, sizeof m->source, "model source"))) return rc;
    if ((rc = store_col_text(st, 3, m->repo_id, sizeof m->repo_id, "model repo_id"))) return rc;
    if ((rc = store_col_text(st, 4, m->revision, sizeof m->revision, "model revision"))) return rc;
    if ((rc = store_col_text(st, 5, m->path, sizeof m->path, "model path"))) return rc;
    m->max_model_len = sqlite3_column_int(st, 6);
    if ((rc = store_col_text(st, 7, m->dtype, sizeof m->dtype, "model dtype"))) return rc;
    m->gpu_memory_utilization = sqlite3_column_double(st, 8);
    m->block_size = sqlite3_column_int(st, 9);
    m->max_num_seqs = sqlite3_column_int(st, 10);
    m->kv_cache_space = sqlite3_column_double(st, 11);
    if ((rc = store_col_text(st, 12, m->device, sizeof m->device, "model device"))) return rc;
    if ((rc = store_col_text(st, 13, m->chat_template, sizeof m->chat_template, "model chat_template"))) return rc;
    if ((rc = store_col_text(st, 14, m->state, sizeof m->state, "model state"))) return rc;
    m->want_loaded = sqlite3_column_int(st, 15);
    if ((rc = store_col_text(st, 16, m->last_error, sizeof m->last_error, "model last_error"))) return rc;
    m->created = sqlite3_column_int64(st, 17);
    if ((rc = store_col_text(st, 18, m->kv_cache_dtype, sizeof m->kv_cache_dtype, "model kv_cache_dtype"))) return rc;
    if ((rc = store_col_text(st, 19, m->quantization, sizeof m->quantization, "model quantization"))) return rc;
    return FOLIO_OK;
}

static int model_name_ok(const char *name) {
    if (!name[0]) return folio_err(FOLIO_EINVAL, "model name is empty");
    for (const char *p = name; *p; p++) {
        char c = *p;
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                 c == '_' || c == ':' || c == '/' || c == '-';
        if (!ok) return folio_err(FOLIO_EINVAL, "model name \"%s\" may only use A-Z a-z 0-9 . _ : / -", name);
    }
    return FOLIO_OK;
}

/* Everything the schema's CHECKs would refuse, with a message that names the field. */
static int model_check(const struct store_model *m) {
    int rc;
    if ((rc = store_field_ok(m->name, sizeof m->name, "model name"))) return rc;
    if ((rc = store_field_ok(m->source, sizeof m->source, "model source"))) return rc;
    if ((rc = store_field_ok(m->repo_id, sizeof m->repo_id, "model repo_id"))) return rc;
    if ((rc = store_field_ok(m->revision, sizeof m->revision, "model revision"))) return rc;
    if ((rc = store_field_ok(m->path, sizeof m->path, "model path"))) return rc;
    if ((rc = store_field_ok(m->dtype, sizeof m->dtype, "model dtype"))) return rc;
    if ((rc = store_field_ok(m->kv_cache_dtype, sizeof m->kv_cache_dtype, "model kv_cache_dtype"))) return rc;
    if ((rc = store_field_ok(m->quantization, sizeof m->quantization, "model quantization"))) return rc;
    if ((rc = store_field_ok(m->device, sizeof m->device, "model device"))) return rc;
    if ((rc = store_field_ok(m->chat_template, sizeof m->chat_template, "model chat_template"))) return rc;
    if ((rc = store_field_ok(m->state, sizeof m->state, "model state"))) return rc;
    if ((rc = store_field_ok(m->last_error, sizeof m->last_error, "model last_error"))) return rc;
    if ((rc = model_name_ok(m->name))) return rc;
    if (strcmp(m->source, "local") != 0 && strcmp(m->source, "hf") != 0)
        return folio_err(FOLIO_EINVAL, "model source \"%s\" must be \"local\" or \"hf\"", m->source);
    if (m->device[0] && strcmp(m->device, "cpu") != 0 && strcmp(m->device, "cuda") != 0)
        return folio_err(FOLIO_EINVAL, "model device \"%s\" must be \"\", \"cpu\" or \"cuda\"", m->device);
    const char *kvd = m->kv_cache_dtype;
    if (kvd[0] && strcmp(kvd, "bfloat16") != 0 && strcmp(kvd, "float32") != 0 && strcmp(kvd, "fp8") != 0)
        return folio_err(FOLIO_EINVAL, "model kv_cache_dtype \"%s\" must be \"\", \"bfloat16\", \"float32\" or \"fp8\"",
                         m->kv_cache_dtype);
    const char *qz = m->quantization;
    if (qz[0] && strcmp(qz, "int8") != 0 && strcmp(qz, "int4") != 0 && strcmp(qz, "fp8") != 0)
        return folio_err(FOLIO_EINVAL, "model quantization \"%s\" must be \"\", \"int8\", \"int4\" or \"fp8\"", qz);
    if (!m->state[0]) return folio_err(FOLIO_EINVAL, "model state is empty");
    if (m->max_model_len < 0) return folio_err(FOLIO_EINVAL, "model max_model_len is negative");
    if (m->block_size < 0) return folio_err(FOLIO_EINVAL, "model block_size is negative");
    if (m->max_num_seqs < 0) return folio_err(FOLIO_EINVAL, "model max_num_seqs is negative");
    /* Written so that NaN fails too. */
    if (!(m->gpu_memory_utilization >= 0 && m->gpu_memory_utilization <= 1))
        return folio_err(FOLIO_EINVAL, "model gpu_memory_utilization must be within [0, 1]");
    if (!(m->kv_cache_space >= 0 && m->kv_cache_space < 1e12))
        return folio_err(FOLIO_EINVAL, "model kv_cache_space must be >= 0");
    return FOLIO_OK;
}

/* Every field but id and created as ?1..?18, for STORE_ARGS: add and update append their ?19
 * (created, id) after it. */
#define MODEL_ARGS(m)                                                                              \
    A_TEXT((m)->name), A_TEXT((m)->source), A_TEXT((m)->repo_id), A_TEXT((m)->revision),           \
        A_TEXT((m)->path), A_INT((m)->max_model_len), A_TEXT((m)->dtype),                          \
        A_REAL((m)->gpu_memory_utilization), A_INT((m)->block_size), A_INT((m)->max_num_seqs),     \
        A_REAL((m)->kv_cache_space), A_TEXT((m)->device), A_TEXT((m)->chat_template),              \
        A_TEXT((m)->state), A_INT((m)->want_loaded != 0), A_TEXT((m)->last_error), A_TEXT((m)->kv_cache_dtype), \
        A_TEXT((m)->quantization)

int store_model_add(struct store *s, struct store_model *m) {
    struct store_done d;
    int rc;
    /* Validated on a copy, so that a refused add leaves the caller's struct as it was. */
    struct store_model *c = malloc(sizeof *c);
    if (!c) return folio_err(FOLIO_ENOMEM, "store: out of memory");
    memcpy(c, m, sizeof *c);
    if (!c->state[0]) strcpy(c->state, "registered");
    c->created = store_now_s();
    rc = model_check(c);
    if (rc) goto out;
    rc = store_stmt(s,
                    "INSERT INTO models (name, source, repo_id, revision, path, max_model_len, dtype, "
                    "gpu_memory_utilization, block_size, max_num_seqs, kv_cache_space, device, chat_template, "
                    "state, want_loaded, last_error, kv_cache_dtype, quantization, created) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
                    STORE_ARGS(MODEL_ARGS(c), A_INT(c->created)), NULL, NULL, "add model", &d);
    if (rc == FOLIO_EEXIST) rc = folio_err(FOLIO_EEXIST, "a model named \"%s\" already exists", c->name);
    if (rc) goto out;
    c->id = d.rowid;
    memcpy(m, c, sizeof *m);
out:
    free(c);
    return rc;
}

int store_model_get(struct store *s, int64_t id, struct store_model *out) {
    struct store_done d;
    int rc = store_stmt(s, "SELECT " MODEL_COLS " FROM models WHERE id = ?1", STORE_ARGS(A_INT(id)), model_from_row,
                        out, "get model", &d);
    if (!rc && !d.rows) rc = folio_err(FOLIO_ENOTFOUND, "no model with id %lld", (long long)id);
    return rc;
}

int store_model_find(struct store *s, const char *name, struct store_model *out) {
    struct store_done d;
    int rc = store_stmt(s, "SELECT " MODEL_COLS " FROM models WHERE name = ?1", STORE_ARGS(A_TEXT(name)),
                        model_from_row, out, "get model", &d);
    if (!rc && !d.rows) rc = folio_err(FOLIO_ENOTFOUND, "no model named \"%s\"", name);
    return rc;
}

int store_model_list(struct store *s, struct store_model **out, int *n) {
    void *arr;
    int rc = store_list(s, "SELECT " MODEL_COLS " FROM models ORDER BY id", NULL, 0, sizeof **out, model_from_row,
                        &arr, n, "list models");
    *out = arr;
    return rc;
}

int store_model_update(struct store *s, const struct store_model *m) {
    struct store_done d;
    int rc = model_check(m);
    if (rc) return rc;
    rc = store_stmt(s,
                    "UPDATE models SET name = ?1, source = ?2, repo_id = ?3, revision = ?4, path = ?5, "
                    "max_model_len = ?6, dtype = ?7, gpu_memory_utilization = ?8, block_size = ?9, "
                    "max_num_seqs = ?10, kv_cache_space = ?11, device = ?12, chat_template = ?13, state = ?14, "
                    "want_loaded = ?15, last_error = ?16, kv_cache_dtype = ?17, quantization = ?18 WHERE id = ?19",
                    STORE_ARGS(MODEL_ARGS(m), A_INT(m->id)), NULL, NULL, "update model", &d);
    if (rc == FOLIO_EEXIST) rc = folio_err(FOLIO_EEXIST, "a model named \"%s\" already exists", m->name);
    if (!rc && d.changes == 0) rc = folio_err(FOLIO_ENOTFOUND, "no model with id %lld", (long long)m->id);
    return rc;
}

int store_model_set_state(struct store *s, int64_t id, const char *state, int want_loaded, const char *last_error) {
    struct store_done d;
    int rc;
    if (!state || !state[0]) return folio_err(FOLIO_EINVAL, "model state is empty");
    if ((rc = store_arg_ok(state, sizeof((struct store_model *)0)->state, "model state"))) return rc;
    if (last_error && (rc = store_arg_ok(last_error, sizeof((struct store_model *)0)->last_error, "model last_error")))
        return rc;
    /* A NULL last_error binds NULL, which coalesce() turns into "keep". */
    rc = store_stmt(s,
                    "UPDATE models SET state = ?1, want_loaded = CASE WHEN ?2 < 0 THEN want_loaded ELSE ?2 END, "
                    "last_error = coalesce(?3, last_error) WHERE id = ?4",
                    STORE_ARGS(A_TEXT(state), A_INT(want_loaded < 0 ? -1 : want_loaded != 0), A_TEXT(last_error),
                               A_INT(id)),
                    NULL, NULL, "set model state", &d);
    if (!rc && d.changes == 0) rc = folio_err(FOLIO_ENOTFOUND, "no model with id %lld", (long long)id);
    return rc;
}

/* Runs "... WHERE id = ?1" and reports FOLIO_ENOTFOUND (naming what) when no row changed. */
static int store_by_id(struct store *s, const char *sql, int64_t id, int must_exist, const char *what) {
    struct store_done d;
    int rc = store_stmt(s, sql, STORE_ARGS(A_INT(id)), NULL, NULL, what, &d);
    if (!rc && must_exist && d.changes == 0)
        rc = folio_err(FOLIO_ENOTFOUND, "no %s with id %lld", what, (long long)id);
    return rc;
}

int store_model_delete(struct store *s, int64_t id) {
    /* The engine row goes with it (ON DELETE CASCADE), and its events keep model_id NULL. */
    return store_by_id(s, "DELETE FROM models WHERE id = ?1", id, 1, "model");
}

/* ---- engines ---- */

int store_engine_put(struct store *s, const struct store_engine *e) {
    int rc;
    if ((rc = store_field_ok(e->state, sizeof e->state, "engine state"))) return rc;
    if ((rc = store_field_ok(e->log_path, sizeof e->log_path, "engine log_path"))) return rc;
    if (!e->state[0]) return folio_err(FOLIO_EINVAL, "engine state is empty");
    if (e->pid < 0 || e->port < 0 || e->port > 65535 || e->restarts < 0)
        return folio_err(FOLIO_EINVAL, "engine pid %d, port %d or restarts %d out of range", e->pid, e->port,
                         e->restarts);
    /* An upsert rather than INSERT OR REPLACE: REPLACE deletes first, which would fire any
     * ON DELETE action that a later schema hangs on engines. */
    rc = store_stmt(s,
                    "INSERT INTO engines (model_id, pid, port, state, started, restarts, log_path) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (model_id) DO UPDATE SET "
                    "pid = excluded.pid, port = excluded.port, state = excluded.state, "
                    "started = excluded.started, restarts = excluded.restarts, log_path = excluded.log_path",
                    STORE_ARGS(A_INT(e->model_id), A_INT(e->pid), A_INT(e->port), A_TEXT(e->state),
                               A_INT(e->started), A_INT(e->restarts), A_TEXT(e->log_path)),
                    NULL, NULL, "put engine", NULL);
    if (rc == FOLIO_ENOTFOUND) rc = folio_err(FOLIO_ENOTFOUND, "no model with id %lld", (long long)e->model_id);
    return rc;
}

static int engine_from_row(sqlite3_stmt *st, void *dst) {
    struct store_engine *e = dst;
    int rc;
    memset(e, 0, sizeof *e);
    e->model_id = sqlite3_column_int64(st, 0);
    e->pid = sqlite3_column_int(st, 1);
    e->port = sqlite3_column_int(st, 2);
    if ((rc = store_col_text(st, 3, e->state, sizeof e->state, "engine state"))) return rc;
    e->started = sqlite3_column_int64(st, 4);
    e->restarts = sqlite3_column_int(st, 5);
    return store_col_text(st, 6, e->log_path, sizeof e->log_path, "engine log_path");
}

int store_engine_list(struct store *s, struct store_engine **out, int *n) {
    void *arr;
    int rc = store_list(s,
                        "SELECT model_id, pid, port, state, started, restarts, log_path FROM engines "
                        "ORDER BY model_id",
                        NULL, 0, sizeof **out, engine_from_row, &arr, n, "list engines");
    *out = arr;
    return rc;
}

int store_engine_delete(struct store *s, int64_t model_id) {
    return store_by_id(s, "DELETE FROM engines WHERE model_id = ?1", model_id, 0, "engine");
}

/* ---- downloads ---- */

int store_download_put(struct store *s, struct store_download *d) {
    static const char *const states[] = {"queued", "downloading", "done", "failed", "cancelled"};
    int rc, known = 0;
    if ((rc = store_field_ok(d->sha, sizeof d->sha, "download sha"))) return rc;
    if ((rc = store_field_ok(d->state, sizeof d->state, "download state"))) return rc;
    if ((rc = store_field_ok(d->error, sizeof d->error, "download error"))) return rc;
    if ((rc = store_field_ok(d->files, sizeof d->files, "download files"))) return rc;
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) known |= strcmp(d->state, states[i]) == 0;
    if (!known) return folio_err(FOLIO_EINVAL, "download state \"%s\" is not one of queued, downloading, done, failed, cancelled", d->state);
    if (d->bytes_done < 0 || d->bytes_total < 0 || d->files_done < 0 || d->files_total < 0)
        return folio_err(FOLIO_EINVAL, "download counts must not be negative");
    d->updated = store_now_ms();
    rc = store_stmt(s,
                    "INSERT INTO downloads (model_id, sha, state, bytes_done, bytes_total, files_done, files_total, "
                    "load_after, error, files, started, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
                    "ON CONFLICT (model_id) DO UPDATE SET sha = excluded.sha, state = excluded.state, "
                    "bytes_done = excluded.bytes_done, bytes_total = excluded.bytes_total, "
                    "files_done = excluded.files_done, files_total = excluded.files_total, "
                    "load_after = excluded.load_after, error = excluded.error, files = excluded.files, "
                    "started = excluded.started, updated = excluded.updated",
                    STORE_ARGS(A_INT(d->model_id), A_TEXT(d->sha), A_TEXT(d->state), A_INT(d->bytes_done),
                               A_INT(d->bytes_total), A_INT(d->files_done), A_INT(d->files_total),
                               A_INT(d->load_after != 0), A_TEXT(d->error), A_TEXT(d->files), A_INT(d->started),
                               A_INT(d->updated)),
                    NULL, NULL, "put download", NULL);
    if (rc == FOLIO_ENOTFOUND) rc = folio_err(FOLIO_ENOTFOUND, "no model with id %lld", (long long)d->model_id);
    return rc;
}

#define DOWNLOAD_COLS                                                                               \
    "model_id, sha, state, bytes_done, bytes_total, files_done, files_total, load_after, error, "   \
    "files, started, updated"

static int download_from_row(sqlite3_stmt *st, void *dst) {
    struct store_download *d = dst;
    int rc;
    memset(d, 0, sizeof *d);
    d->model_id = sqlite3_column_int64(st, 0);
    if ((rc = store_col_text(st, 1, d->sha, sizeof d->sha, "download sha"))) return rc;
    if ((rc = store_col_text(st, 2, d->state, sizeof d->state, "download state"))) return rc;
    d->bytes_done = sqlite3_column_int64(st, 3);
    d->bytes_total = sqlite3_column_int64(st, 4);
    d->files_done = sqlite3_column_int(st, 5);
    d->files_total = sqlite3_column_int(st, 6);
    d->load_after = sqlite3_column_int(st, 7);
    if ((rc = store_col_text(st, 8, d->error, sizeof d->error, "download error"))) return rc;
    if ((rc = store_col_text(st, 9, d->files, sizeof d->files, "download files"))) return rc;
    d->started = sqlite3_column_int64(st, 10);
    d->updated = sqlite3_column_int64(st, 11);
    return 0;
}

int store_download_get(struct store *s, int64_t model_id, struct store_download *out) {
    struct store_done d;
    int rc = store_stmt(s, "SELECT " DOWNLOAD_COLS " FROM downloads WHERE model_id = ?1", STORE_ARGS(A_INT(model_id)),
                        download_from_row, out, "get download", &d);
    if (!rc && d.rows == 0) rc = folio_err(FOLIO_ENOTFOUND, "no download for model %lld", (long long)model_id);
    return rc;
}

int store_download_list(struct store *s, struct store_download **out, int *n) {
    void *arr;
    int rc = store_list(s, "SELECT " DOWNLOAD_COLS " FROM downloads ORDER BY model_id", NULL, 0, sizeof **out,
                        download_from_row, &arr, n, "list downloads");
    *out = arr;
    return rc;
}

int store_download_delete(struct store *s, int64_t model_id) {
    return store_by_id(s, "DELETE FROM downloads WHERE model_id = ?1", model_id, 0, "download");
}

/* ---- API keys ---- */

int store_key_add(struct store *s, struct store_key *k) {
    struct store_done d;
    int rc;
    if ((rc = store_field_ok(k->name, sizeof k->name, "key name"))) return rc;
    if ((rc = store_field_ok(k->prefix, sizeof k->prefix, "key prefix"))) return rc;
    if ((rc = store_field_ok(k->hash, sizeof k->hash, "key hash"))) return rc;
    if (strlen(k->hash) != 64 || strspn(k->hash, "0123456789abcdef") != 64)
        return folio_err(FOLIO_EINVAL, "key hash must be 64 lowercase hex digits (SHA-256)");
    int64_t created = store_now_s();
    rc = store_stmt(s, "INSERT INTO api_keys (name, prefix, hash, created, last_used) VALUES (?1, ?2, ?3, ?4, 0)",
                    STORE_ARGS(A_TEXT(k->name), A_TEXT(k->prefix), A_TEXT(k->hash), A_INT(created)), NULL, NULL,
                    "add key", &d);
    if (rc == FOLIO_EEXIST) rc = folio_err(FOLIO_EEXIST, "a key with this hash already exists");
    if (rc) return rc;
    k->id = d.rowid;
    k->created = created;
    k->last_used = 0;
    return FOLIO_OK;
}

static int key_from_row(sqlite3_stmt *st, void *dst) {
    struct store_key *k = dst;
    int rc;
    memset(k, 0, sizeof *k);
    k->id = sqlite3_column_int64(st, 0);
    if ((rc = store_col_text(st, 1, k->name, sizeof k->name, "key name"))) return rc;
    if ((rc = store_col_text(st, 2, k->prefix, sizeof k->prefix, "key prefix"))) return rc;
    if ((rc = store_col_text(st, 3, k->hash, sizeof k->hash, "key hash"))) return rc;
    k->created = sqlite3_column_int64(st, 4);
    k->last_used = sqlite3_column_int64(st, 5);
    return FOLIO_OK;
}

int store_key_list(struct store *s, struct store_key **out, int *n) {
    void *arr;
    int rc = store_list(s, "SELECT id, name, prefix, hash, created, last_used FROM api_keys ORDER BY id", NULL, 0,
                        sizeof **out, key_from_row, &arr, n, "list keys");
    *out = arr;
    return rc;
}

int store_key_delete(struct store *s, int64_t id) {
    return store_by_id(s, "DELETE FROM api_keys WHERE id = ?1", id, 1, "key");
}

int store_key_touch(struct store *s, int64_t id, int64_t when) {
    struct store_done d;
    int rc = store_stmt(s, "UPDATE api_keys SET last_used = ?2 WHERE id = ?1", STORE_ARGS(A_INT(id), A_INT(when)),
                        NULL, NULL, "touch key", &d);
    if (!rc && d.changes == 0) rc = folio_err(FOLIO_ENOTFOUND, "no key with id %lld", (long long)id);
    return rc;
}

int store_key_count(struct store *s, int *n) {
    pthread_mutex_lock(&s->mu);
    int rc = store_pragma_int(s, "SELECT count(*) FROM api_keys", n);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- admin password and settings: one text value by key ---- */

/* Where text_from_row copies a one-row query's single text column. */
struct store_text {
    char *val;
    size_t cap;
    const char *what;
};

static int text_from_row(sqlite3_stmt *st, void *dst) {
    struct store_text *t = dst;
    const unsigned char *v = sqlite3_column_text(st, 0);
    size_t len = (size_t)sqlite3_column_bytes(st, 0);
    if (len >= t->cap)
        return folio_err(FOLIO_EINVAL, "%s is %zu bytes, the buffer holds %zu", t->what, len, t->cap ? t->cap - 1 : 0);
    if (len) memcpy(t->val, v, len);
    t->val[len] = '\0';
    return FOLIO_OK;
}

/* The single text column of a one-row query on ?1 (none when key is NULL) into val[cap]. */
static int store_get_text(struct store *s, const char *sql, const char *key, char *val, size_t cap,
                          const char *what) {
    struct store_text t = {val, cap, what};
    struct store_arg arg = A_TEXT(key);
    struct store_done d;
    int rc = store_stmt(s, sql, &arg, key != NULL, text_from_row, &t, what, &d);
    if (!rc && !d.rows) rc = folio_err(FOLIO_ENOTFOUND, "%s is not set", what);
    return rc;
}

int store_admin_get(struct store *s, char *hash, size_t cap) {
    return store_get_text(s, "SELECT password_hash FROM admin WHERE id = 1", NULL, hash, cap, "the admin password");
}

int store_admin_set(struct store *s, const char *hash) {
    if (!hash || !hash[0]) return folio_err(FOLIO_EINVAL, "admin password hash is empty");
    return store_stmt(s,
                      "INSERT INTO admin (id, password_hash, updated) VALUES (1, ?1, ?2) ON CONFLICT (id) "
                      "DO UPDATE SET password_hash = excluded.password_hash, updated = excluded.updated",
                      STORE_ARGS(A_TEXT(hash), A_INT(store_now_s())), NULL, NULL, "set admin password", NULL);
}

int store_setting_get(struct store *s, const char *key, char *val, size_t cap) {
    if (!key || !key[0]) return folio_err(FOLIO_EINVAL, "setting name is empty");
    char what[160];
    snprintf(what, sizeof what, "setting \"%.120s\"", key);
    return store_get_text(s, "SELECT value FROM settings WHERE key = ?1", key, val, cap, what);
}

int store_setting_set(struct store *s, const char *key, const char *val) {
    if (!key || !key[0]) return folio_err(FOLIO_EINVAL, "setting name is empty");
    if (!val) return folio_err(FOLIO_EINVAL, "setting %s has no value", key);
    return store_stmt(s,
                      "INSERT INTO settings (key, value) VALUES (?1, ?2) "
                      "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                      STORE_ARGS(A_TEXT(key), A_TEXT(val)), NULL, NULL, "set setting", NULL);
}

/* ---- events ---- */

/* Cuts a formatted message that did not fit: back to a UTF-8 lead byte, then "...". */
static void event_truncate(char *msg, size_t cap) {
    size_t end = cap - 4;
    while (end > 0 && ((unsigned char)msg[end] & 0xc0) == 0x80) end--;
    memcpy(msg + end, "...", 4);
}

int store_event_add(struct store *s, const char *level, const char *kind, int64_t model_id, const char *fmt, ...) {
    char msg[sizeof((struct store_event *)0)->message];
    int rc;
    if (!level || (strcmp(level, "info") != 0 && strcmp(level, "warn") != 0 && strcmp(level, "error") != 0))
        return folio_err(FOLIO_EINVAL, "event level \"%s\" must be info, warn or error", level ? level : "(null)");
    if (!kind || !kind[0]) return folio_err(FOLIO_EINVAL, "event kind is empty");
    if ((rc = store_arg_ok(kind, sizeof((struct store_event *)0)->kind, "event kind"))) return rc;
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (len < 0) return folio_err(FOLIO_EINVAL, "event message cannot be formatted");
    if ((size_t)len >= sizeof msg) event_truncate(msg, sizeof msg);

    struct store_done d;
    pthread_mutex_lock(&s->mu);
    /* IMMEDIATE: takes the write lock up front, so another connection's writer makes this
     * wait (busy_timeout) instead of failing at the upgrade from read to write. */
    rc = store_exec(s, "BEGIN IMMEDIATE", "begin");
    if (rc) goto out;
    /* The subquery stores NULL for a model deleted meanwhile, instead of failing the log. */
    rc = store_stmt_held(s,
                         "INSERT INTO events (ts, level, kind, model_id, message) "
                         "VALUES (?1, ?2, ?3, (SELECT id FROM models WHERE id = ?4), ?5)",
                         STORE_ARGS(A_INT(store_now_ms()), A_TEXT(level), A_TEXT(kind), A_INT(model_id), A_TEXT(msg)),
                         NULL, NULL, "add event", &d);
    if (rc) goto out_rollback;
    /* AUTOINCREMENT ids have no gaps but those of trimmed failed logins (below; a rolled-back
     * insert takes its sequence number back), so an id bound is the newest N, on the index. */
    rc = store_stmt_held(s, "DELETE FROM events WHERE id <= ?1", STORE_ARGS(A_INT(d.rowid - STORE_MAX_EVENTS)), NULL,
                         NULL, "trim events", NULL);
    if (rc) goto out_rollback;
    /* Failed logins (already aggregated per minute by audit.c) keep only their newest
     * STORE_MAX_LOGIN_FAILED, so that guessing cannot push the rest of the log out. The
     * gaps this leaves only make the id bound above keep fewer than STORE_MAX_EVENTS. */
    if (!strcmp(kind, "admin.login_failed")) {
        rc = store_stmt_held(s,
                             "DELETE FROM events WHERE kind = 'admin.login_failed' AND id <= "
                             "(SELECT id FROM events WHERE kind = 'admin.login_failed' ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                             STORE_ARGS(A_INT(STORE_MAX_LOGIN_FAILED)), NULL, NULL, "trim failed logins", NULL);
        if (rc) goto out_rollback;
    }
    rc = store_exec(s, "COMMIT", "commit event");
    if (rc) goto out_rollback;
    goto out;
out_rollback:
    store_rollback(s);
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int event_from_row(sqlite3_stmt *st, void *dst) {
    struct store_event *e = dst;
    int rc;
    memset(e, 0, sizeof *e);
    e->id = sqlite3_column_int64(st, 0);
    e->ts = sqlite3_column_int64(st, 1);
    if ((rc = store_col_text(st, 2, e->level, sizeof e->level, "event level"))) return rc;
    if ((rc = store_col_text(st, 3, e->kind, sizeof e->kind, "event kind"))) return rc;
    e->model_id = sqlite3_column_int64(st, 4);
    return store_col_text(st, 5, e->message, sizeof e->message, "event message");
}

int store_event_list(struct store *s, int64_t since_id, int limit, struct store_event **out, int *n) {
    void *arr;
    if (limit <= 0 || limit > STORE_MAX_EVENTS) limit = STORE_MAX_EVENTS;
    int rc = store_list(s,
                        "SELECT id, ts, level, kind, coalesce(model_id, 0), message FROM events "
                        "WHERE id > ?1 ORDER BY id LIMIT ?2",
                        STORE_ARGS(A_INT(since_id), A_INT(limit)), sizeof **out, event_from_row, &arr, n,
                        "list events");
    *out = arr;
    return rc;
}

/* ---- responses ---- */

static int response_id_ok(const char *id) {
    const size_t n = strlen(id);
    if (n == 0 || n > 64 || strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != n)
        return folio_err(FOLIO_EINVAL, "a response id is 1-64 of A-Z a-z 0-9 _ -");
    return FOLIO_OK;
}

/* What each row of an oldest-first walk frees, until the table has room for `need`. */
struct store_room {
    int64_t over;     /* bytes still to free */
    int64_t last;     /* the newest rowid that goes */
    int rows;
};

static int room_row(sqlite3_stmt *st, void *dst) {
    struct store_room *r = dst;
    if (r->over <= 0) return 1; /* enough: stops the walk (not an error, see the caller) */
    r->last = sqlite3_column_int64(st, 0);
    r->over -= sqlite3_column_int64(st, 1);
    r->rows++;
    return FOLIO_OK;
}

static int usage_row(sqlite3_stmt *st, void *dst) {
    *(int64_t *)dst = sqlite3_column_int64(st, 0);
    return FOLIO_OK;
}

int store_response_put(struct store *s, const struct store_response *r, int64_t max_bytes, int64_t now_ms,
                       int *evicted) {
    int rc;
    if (evicted) *evicted = 0;
    if ((rc = store_field_ok(r->id, sizeof r->id, "response id")) || (rc = response_id_ok(r->id)) ||
        (rc = store_field_ok(r->model, sizeof r->model, "response model")))
        return rc;
    if (!r->request_items || !r->output || !r->response || r->owner < 0)
        return folio_err(FOLIO_EINVAL, "a stored response needs its items, output and response");
    const int64_t bytes = (int64_t)(r->request_items_len + r->output_len + r->response_len + strlen(r->id) +
                                    strlen(r->model));
    if (bytes > max_bytes)
        return folio_err(FOLIO_EINVAL, "response %s is %lld bytes, more than the %lld kept for all responses", r->id,
                         (long long)bytes, (long long)max_bytes);
    pthread_mutex_lock(&s->mu);
    rc = store_exec(s, "BEGIN IMMEDIATE", "begin");
    if (rc) goto out;
    rc = store_stmt_held(s, "DELETE FROM responses WHERE expires_at <= ?1", STORE_ARGS(A_INT(now_ms)), NULL, NULL,
                         "purge responses", NULL);
    if (rc) goto out_rollback;
    int64_t used = 0;
    rc = store_stmt_held(s, "SELECT bytes FROM responses_usage WHERE id = 1", NULL, 0, usage_row, &used,
                         "responses usage", NULL);
    if (rc) goto out_rollback;
    if (used + bytes > max_bytes) {
        /* Oldest first: rowids grow with each insert (the id is a separate key). */
        struct store_room room = {.over = used + bytes - max_bytes};
        rc = store_stmt_held(s, "SELECT rowid, bytes FROM responses ORDER BY rowid", NULL, 0, room_row, &room,
                             "responses by age", NULL);
        if (rc == 1) rc = FOLIO_OK;
        if (rc) goto out_rollback;
        rc = store_stmt_held(s, "DELETE FROM responses WHERE rowid <= ?1", STORE_ARGS(A_INT(room.last)), NULL, NULL,
                             "evict responses", NULL);
        if (rc) goto out_rollback;
        if (evicted) *evicted = room.rows;
    }
    rc = store_stmt_held(s,
                         "INSERT INTO responses (id, owner, model, created_at, expires_at, request_items, output, "
                         "response, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                         STORE_ARGS(A_TEXT(r->id), A_INT(r->owner), A_TEXT(r->model), A_INT(r->created_at),
                                    A_INT(r->expires_at), A_TEXTN(r->request_items, r->request_items_len),
                                    A_TEXTN(r->output, r->output_len), A_TEXTN(r->response, r->response_len),
                                    A_INT(bytes)),
                         NULL, NULL, "store response", NULL);
    if (rc == FOLIO_EEXIST) rc = folio_err(FOLIO_EEXIST, "a response with id %s is stored already", r->id);
    if (rc) goto out_rollback;
    rc = store_exec(s, "COMMIT", "commit response");
    if (rc) goto out_rollback;
    goto out;
out_rollback:
    store_rollback(s);
    if (evicted) *evicted = 0;
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* A text column into a malloc'd copy (NULL stays NULL: not asked for). */
static int response_text(sqlite3_stmt *st, int col, char **dst, size_t *len) {
    const unsigned char *t = sqlite3_column_text(st, col);
    const size_t n = (size_t)sqlite3_column_bytes(st, col);
    if (!t) return FOLIO_OK;
    *dst = malloc(n + 1);
    if (!*dst) return folio_err(FOLIO_ENOMEM, "store: out of memory reading a response");
    memcpy(*dst, t, n);
    (*dst)[n] = '\0';
    *len = n;
    return FOLIO_OK;
}

static int response_from_row(sqlite3_stmt *st, void *dst) {
    struct store_response *r = dst;
    int rc;
    if ((rc = store_col_text(st, 0, r->id, sizeof r->id, "response id"))) return rc;
    r->owner = sqlite3_column_int64(st, 1);
    if ((rc = store_col_text(st, 2, r->model, sizeof r->model, "response model"))) return rc;
    r->created_at = sqlite3_column_int64(st, 3);
    r->expires_at = sqlite3_column_int64(st, 4);
    if ((rc = response_text(st, 5, &r->request_items, &r->request_items_len))) return rc;
    if ((rc = response_text(st, 6, &r->output, &r->output_len))) return rc;
    return response_text(st, 7, &r->response, &r->response_len);
}

int store_response_get(struct store *s, const char *id, int64_t owner, int64_t now_ms, int cols,
                       struct store_response *out) {
    struct store_done d;
    memset(out, 0, sizeof *out);
    /* A text not asked for is never read: CASE evaluates the column only when it is wanted,
     * and SQLite loads a row's overflow pages only for the columns it evaluates. */
    int rc = store_stmt(s,
                        "SELECT id, owner, model, created_at, expires_at, "
                        "CASE WHEN ?4 & 1 THEN request_items END, CASE WHEN ?4 & 2 THEN output END, "
                        "CASE WHEN ?4 & 4 THEN response END "
                        "FROM responses WHERE id = ?1 AND owner = ?2 AND expires_at > ?3",
                        STORE_ARGS(A_TEXT(id), A_INT(owner), A_INT(now_ms), A_INT(cols)), response_from_row, out,
                        "get response", &d);
    if (!rc && !d.rows) rc = folio_err(FOLIO_ENOTFOUND, "no response with id %.64s", id);
    return rc;
}

void store_response_clear(struct store_response *r) {
    if (!r) return;
    free(r->request_items);
    free(r->output);
    free(r->response);
    r->request_items = r->output = r->response = NULL;
    r->request_items_len = r->output_len = r->response_len = 0;
}

int store_response_delete(struct store *s, const char *id, int64_t owner, int64_t now_ms) {
    struct store_done d;
    int rc = store_stmt(s, "DELETE FROM responses WHERE id = ?1 AND owner = ?2 AND expires_at > ?3",
                        STORE_ARGS(A_TEXT(id), A_INT(owner), A_INT(now_ms)), NULL, NULL, "delete response", &d);
    if (!rc && !d.changes) rc = folio_err(FOLIO_ENOTFOUND, "no response with id %.64s", id);
    return rc;
}

int store_response_purge(struct store *s, int64_t now_ms, int *n) {
    struct store_done d;
    int rc = store_stmt(s, "DELETE FROM responses WHERE expires_at <= ?1", STORE_ARGS(A_INT(now_ms)), NULL, NULL,
                        "purge responses", &d);
    if (n) *n = rc ? 0 : d.changes;
    return rc;
}

int store_response_usage(struct store *s, int64_t *bytes, int64_t *rows) {
    *bytes = *rows = 0;
    int rc = store_stmt(s, "SELECT bytes FROM responses_usage WHERE id = 1", NULL, 0, usage_row, bytes,
                        "responses usage", NULL);
    if (!rc) rc = store_stmt(s, "SELECT count(*) FROM responses", NULL, 0, usage_row, rows, "count responses", NULL);
    return rc;
}
