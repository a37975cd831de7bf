/* The supervisor with a real store and real folio-engine children (the one beside this test
 * binary), on the shared stories260K: the GPU-share refusal, load to ready, unload to
 * stopped, and what the registry records. */
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "supervisor.h"
#include "test.h"
#include "base/util.h"

static void engine_path(char *out, size_t cap) {
    char exe[PATH_MAX] = "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) exe[n] = '\0';
    snprintf(out, cap, "%s/folio-engine", dirname(exe));
}

static int64_t add(struct store *st, const char *name, double share) {
    struct store_model m = {0};
    snprintf(m.name, sizeof m.name, "%s", name);
    snprintf(m.source, sizeof m.source, "local");
    snprintf(m.path, sizeof m.path, "%s/stories260K", test_models_dir());
    m.gpu_memory_utilization = share;
    m.kv_cache_space = 0.05;
    CHECK_EQ_INT(store_model_add(st, &m), 0);
    return m.id;
}

static const char *state_of(struct supervisor *s, int64_t id) {
    static char state[16];
    struct supervisor_engine_info es[8];
    int n = supervisor_list(s, es, 8);
    snprintf(state, sizeof state, "none");
    for (int i = 0; i < n; i++)
        if (es[i].model_id == id) snprintf(state, sizeof state, "%s", es[i].state);
    return state;
}

TEST(supervisor_gpu_shares_load_unload) {
    char db[PATH_MAX], logs[PATH_MAX], engine[PATH_MAX];
    snprintf(db, sizeof db, "%s/sup.db", test_tmp_dir());
    snprintf(logs, sizeof logs, "%s/sup-logs", test_tmp_dir());
    engine_path(engine, sizeof engine);
    const char *dbdir = getenv("FOLIO_DB_DIR") ? getenv("FOLIO_DB_DIR") : "db";
    struct store *st = NULL;
    CHECK_EQ_INT(store_open(db, dbdir, &st), 0);
    if (!st) return;
    const int64_t a = add(st, "a", 0.6), b = add(st, "b", 0.5), c = add(st, "c", 0.4);
    struct supervisor_params p = supervisor_default_params();
    p.engine_bin = engine;
    p.log_dir = logs;
    p.store = st;
    p.gpus = 1; /* as if on a GPU: the shares must fit in one */
    struct supervisor *s = NULL;
    CHECK_EQ_INT(supervisor_create(&p, &s), 0);
    if (!s) {
        store_close(st);
        return;
    }
    CHECK_EQ_INT(supervisor_load(s, a), 0);
    CHECK_EQ_INT(supervisor_load(s, b), FOLIO_EBUSY); /* 0.6 + 0.5 > 1 */
    CHECK(strstr(folio_last_error(), "not enough GPU memory for b") != NULL);
    CHECK(strstr(folio_last_error(), "a (0.60) already hold 0.60") != NULL);
    CHECK_EQ_INT(supervisor_load(s, c), 0); /* 0.6 + 0.4 fits */
    CHECK_EQ_INT(supervisor_wait_ready(s, a, 30), 1);
    CHECK_EQ_INT(supervisor_wait_ready(s, c, 30), 1);
    struct supervisor_route r;
    CHECK_EQ_INT(supervisor_route(s, a, &r), 0);
    CHECK(r.port > 0 && strlen(r.secret) == 64);
    CHECK_EQ_INT(supervisor_route(s, b, &r), FOLIO_ENOTFOUND);
    struct store_model m;
    CHECK_EQ_INT(store_model_get(st, a, &m), 0);
    CHECK_STR(m.state, "ready");
    CHECK_EQ_INT(m.want_loaded, 1);
    /* Unloading routes nothing more to it at once, and frees the share once it has exited. */
    CHECK_EQ_INT(supervisor_unload(s, a), 0);
    CHECK_EQ_INT(supervisor_route(s, a, &r), FOLIO_ENOTFOUND);
    CHECK_EQ_INT(supervisor_load(s, b), FOLIO_EBUSY); /* a still drains: its memory is not free yet */
    for (int i = 0; i < 500 && strcmp(state_of(s, a), "stopped") != 0; i++) usleep(20000);
    CHECK_STR(state_of(s, a), "stopped");
    CHECK_EQ_INT(supervisor_load(s, b), 0);
    CHECK_EQ_INT(supervisor_wait_ready(s, b, 30), 1);
    supervisor_free(s);
    /* A stop of foliod keeps want_loaded for the next start; unload cleared it. */
    CHECK_EQ_INT(store_model_get(st, a, &m), 0);
    CHECK_EQ_INT(m.want_loaded, 0);
    CHECK_EQ_INT(store_model_get(st, b, &m), 0);
    CHECK_EQ_INT(m.want_loaded, 1);
    CHECK_STR(m.state, "stopped");
    store_close(st);
}

/* The engine's output goes to its log, which rotates to .1 past the cap: the disk it takes is
 * bounded however much an engine writes. */
TEST(supervisor_log_is_capped) {
    char db[PATH_MAX], logs[PATH_MAX], engine[PATH_MAX];
    snprintf(db, sizeof db, "%s/sup-log.db", test_tmp_dir());
    snprintf(logs, sizeof logs, "%s/sup-log-logs", test_tmp_dir());
    engine_path(engine, sizeof engine);
    struct store *st = NULL;
    CHECK_EQ_INT(store_open(db, getenv("FOLIO_DB_DIR") ? getenv("FOLIO_DB_DIR") : "db", &st), 0);
    if (!st) return;
    const int64_t a = add(st, "a", 0);
    struct supervisor_params p = supervisor_default_params();
    p.engine_bin = engine;
    p.log_dir = logs;
    p.store = st;
    p.log_cap = 200; /* the engine's start-up lines alone pass it */
    struct supervisor *s = NULL;
    CHECK_EQ_INT(supervisor_create(&p, &s), 0);
    if (!s) {
        store_close(st);
        return;
    }
    CHECK_EQ_INT(supervisor_load(s, a), 0);
    CHECK_EQ_INT(supervisor_wait_ready(s, a, 30), 1);
    struct supervisor_engine_info es[4];
    CHECK_EQ_INT(supervisor_list(s, es, 4), 1);
    supervisor_free(s);
    char old[PATH_MAX + 8];
    snprintf(old, sizeof old, "%s.1", es[0].log_path);
    struct stat cur, prev;
    CHECK_EQ_INT(stat(es[0].log_path, &cur), 0);
    CHECK_EQ_INT(stat(old, &prev), 0);
    /* A write that would pass the cap goes to a fresh file, so neither exceeds the cap by more
     * than one write (a pipe read is at most 4 KiB). */
    CHECK(cur.st_size <= 200 + 4096 && prev.st_size <= 200 + 4096);
    char *text = NULL;
    size_t len = 0;
    CHECK_EQ_INT(folio_read_file(old, &text, &len), 0);
    CHECK(text && strstr(text, "foliod ") != NULL);
    free(text);
    store_close(st);
}
