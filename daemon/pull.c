/* pull: see pull.h. */
#define _XOPEN_SOURCE 700
#include "pull.h"

#include <cJSON.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "hub.h"
#include "base/util.h"

#define MAX_PULLS 32
#define RATE_SAMPLES 16          /* about 3 s of progress at 200 ms */
#define DISK_MARGIN ((int64_t)64 << 20)

enum stop_why { GOING = 0, CANCELLED_BY_USER, SHUTDOWN };

struct pull {
    int used, running, joining; /* joining: pull_cancel joins it, not reap */
    int64_t model_id;
    int load_after;
    int cancel;                  /* atomic: read by hub_download's loop */
    enum stop_why why;
    pthread_t thread;
    struct pulls *owner;
    /* progress, under owner->mu */
    double t[RATE_SAMPLES];
    int64_t bytes[RATE_SAMPLES];
    int nsamples;
    int64_t total, done;
    double last_store, last_notify;
    struct hub_repo *repo;       /* while downloading */
    struct store_download *row;  /* the pull thread's copy of its row */
};

struct pulls {
    struct pull_params p;
    pthread_mutex_t mu;
    int stopped;                /* pull_shutdown ran: nothing new starts */
    struct pull slot[MAX_PULLS];
};

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int pull_remove_tree(const char *dir) {
    struct stat sb;
    if (lstat(dir, &sb) != 0) return errno == ENOENT ? 0 : folio_err(FOLIO_EIO, "%s: %s", dir, strerror(errno));
    if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return folio_err(FOLIO_EIO, "cannot delete %s: %s", dir, strerror(errno));
    return 0;
}

static int mkdirs(const char *path) {
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0750) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, 0750) != 0 && errno != EEXIST ? -1 : 0;
}

static double gib(int64_t b) { return (double)b / (double)(1 << 30); }

/* The files' progress as the row's JSON array. */
static void files_json(const struct hub_repo *r, const int64_t *done, char *out, size_t cap) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < r->num_files; i++) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "name", r->files[i].name);
        cJSON_AddNumberToObject(f, "size", (double)r->files[i].size);
        cJSON_AddNumberToObject(f, "done", done ? (double)done[i] : 0);
        cJSON_AddItemToArray(a, f);
    }
    char *s = a ? cJSON_PrintUnformatted(a) : NULL;
    snprintf(out, cap, "%s", s && strlen(s) < cap ? s : "[]");
    free(s);
    cJSON_Delete(a);
}

static void notify(struct pulls *ps) {
    if (ps->p.on_change) ps->p.on_change(ps->p.ud);
}

static void progress(void *arg, const int64_t *done, const char *note) {
    struct pull *pl = arg;
    struct pulls *ps = pl->owner;
    const struct hub_repo *r = pl->repo;
    int64_t sum = 0;
    int files_done = 0;
    for (int i = 0; i < r->num_files; i++) {
        sum += done[i];
        files_done += done[i] == r->files[i].size;
    }
    const double now = folio_now();
    pthread_mutex_lock(&ps->mu);
    if (pl->nsamples == RATE_SAMPLES) {
        memmove(pl->t, pl->t + 1, sizeof pl->t[0] * (RATE_SAMPLES - 1));
        memmove(pl->bytes, pl->bytes + 1, sizeof pl->bytes[0] * (RATE_SAMPLES - 1));
        pl->nsamples--;
    }
    pl->t[pl->nsamples] = now;
    pl->bytes[pl->nsamples++] = sum;
    pl->done = sum;
    const int store_now = now - pl->last_store >= 1.0 || files_done == r->num_files || note;
    if (store_now) pl->last_store = now;
    pl->row->load_after = pl->load_after;
    pthread_mutex_unlock(&ps->mu);
    if (note) store_event_add(ps->p.store, "warn", "model.pull_retry", pl->model_id, "%s", note);
    if (store_now) {
        pl->row->bytes_done = sum;
        pl->row->files_done = files_done;
        files_json(r, done, pl->row->files, sizeof pl->row->files);
        store_download_put(ps->p.store, pl->row);
    }
    if (store_now || now - pl->last_notify >= 0.5) {
        pl->last_notify = now;
        notify(ps);
    }
}

/* What is already in the staging dir (earlier runs), so that the disk check asks only for the rest. */
static int64_t staged_bytes(const char *dir, const struct hub_repo *r) {
    int64_t have = 0;
    for (int i = 0; i < r->num_files; i++) {
        char path[2400];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, r->files[i].name);
        if (stat(path, &sb) == 0) {
            have += sb.st_size;
            continue;
        }
        snprintf(path, sizeof path, "%s/%s.part", dir, r->files[i].name);
        if (stat(path, &sb) == 0 && sb.st_size <= r->files[i].size) have += sb.st_size;
    }
    return have;
}

static void finish(struct pull *pl, const char *state, const char *error) {
    struct pulls *ps = pl->owner;
    pthread_mutex_lock(&ps->mu);
    pl->row->load_after = pl->load_after;
    pthread_mutex_unlock(&ps->mu);
    snprintf(pl->row->state, sizeof pl->row->state, "%s", state);
    snprintf(pl->row->error, sizeof pl->row->error, "%s", error ? error : "");
    store_download_put(ps->p.store, pl->row);
}

static void *pull_main(void *arg) {
    struct pull *pl = arg;
    struct pulls *ps = pl->owner;
    struct store *st = ps->p.store;
    struct store_model *m = calloc(1, sizeof *m);
    struct hub_repo *repo = calloc(1, sizeof *repo);
    struct store_download *row = calloc(1, sizeof *row);
    char err[768] = "", token[1024] = "", dir[2048], staging[2200], final[2200];
    enum hub_status hs = HUB_BAD;
    if (!m || !repo || !row || store_model_get(st, pl->model_id, m)) {
        snprintf(err, sizeof err, "%s", m && repo && row ? folio_last_error() : "out of memory");
        goto out_nomodel;
    }
    pthread_mutex_lock(&ps->mu);
    pl->row = row;
    pthread_mutex_unlock(&ps->mu);
    if (store_download_get(st, pl->model_id, row) || strcmp(row->state, "downloading") != 0) {
        memset(row, 0, sizeof *row);
        row->model_id = pl->model_id;
        row->started = now_ms();
        snprintf(row->files, sizeof row->files, "[]");
    }
    snprintf(row->state, sizeof row->state, "downloading");
    row->error[0] = '\0';
    pthread_mutex_lock(&ps->mu);
    row->load_after = pl->load_after;
    pthread_mutex_unlock(&ps->mu);
    store_download_put(st, row);
    notify(ps);
    store_event_add(st, "info", "model.pull", m->id, "pulling %s at %s", m->repo_id, m->revision[0] ? m->revision : "main");

    pull_token(ps, token, sizeof token);
    const struct hub_conn conn = {.endpoint = ps->p.endpoint, .token = token, .stall_s = ps->p.stall_s,
                                  .max_attempts = ps->p.max_attempts};
    hs = hub_resolve(&conn, m->repo_id, m->revision, repo, err, sizeof err);
    if (hs) goto out;
    snprintf(dir, sizeof dir, "%s/%s", ps->p.models_dir, m->repo_id);
    snprintf(final, sizeof final, "%s/%s", dir, repo->sha);
    snprintf(staging, sizeof staging, "%s/.incomplete/%s", dir, repo->sha);
    if (strlen(final) >= sizeof m->path) {
        snprintf(err, sizeof err, "the models dir path is too long for %s", m->repo_id);
        hs = HUB_DISK;
        goto out;
    }
    snprintf(row->sha, sizeof row->sha, "%s", repo->sha);
    row->bytes_total = repo->total;
    row->files_total = repo->num_files;
    struct stat sb;
    if (stat(final, &sb) == 0 && S_ISDIR(sb.st_mode)) { /* this commit is already here, verified */
        row->bytes_done = repo->total;
        row->files_done = repo->num_files;
        goto done;
    }
    if (mkdirs(staging) != 0) {
        snprintf(err, sizeof err, "cannot create %.600s: %s", staging, strerror(errno));
        hs = HUB_DISK;
        goto out;
    }
    struct statvfs vfs;
    if (statvfs(staging, &vfs) == 0) {
        const int64_t avail = (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize;
        const int64_t need = repo->total - staged_bytes(staging, repo);
        /* Some room to spare (an eighth, up to 64 MiB), so the pull does not fill the disk to the brim. */
        const int64_t margin = need / 8 < DISK_MARGIN ? need / 8 : DISK_MARGIN;
        if (need + margin > avail) {
            snprintf(err, sizeof err, "not enough disk: need %.1f GiB, %.1f GiB free (in %s)", gib(need), gib(avail),
                     ps->p.models_dir);
            hs = HUB_DISK;
            goto out;
        }
    }
    files_json(repo, NULL, row->files, sizeof row->files);
    store_download_put(st, row);
    pthread_mutex_lock(&ps->mu);
    pl->repo = repo;
    pl->total = repo->total;
    pthread_mutex_unlock(&ps->mu);
    const struct hub_download d = {.conn = &conn, .repo = m->repo_id, .info = repo, .dir = staging,
                                   .cancel = &pl->cancel, .parallel = ps->p.parallel, .progress = progress, .arg = pl};
    hs = hub_download(&d, err, sizeof err);
    if (hs) goto out;
    if (rename(staging, final) != 0) {
        snprintf(err, sizeof err, "cannot move the verified files to %.600s: %s", final, strerror(errno));
        hs = HUB_DISK;
        goto out;
    }
    snprintf(staging, sizeof staging, "%s/.incomplete", dir);
    rmdir(staging); /* when no other revision is half-way */
done:
    memset(token, 0, sizeof token);
    if (store_model_get(st, pl->model_id, m) == 0) {
        memcpy(m->path, final, strlen(final) + 1); /* fits: checked before the download */
        m->last_error[0] = '\0';
        store_model_update(st, m);
    }
    row->bytes_done = repo->total;
    row->files_done = repo->num_files;
    finish(pl, "done", NULL);
    store_event_add(st, "info", "model.pulled", pl->model_id, "%s at %.12s: %d files, %.1f MiB (%d not needed, skipped)",
                    m->repo_id, repo->sha, repo->num_files, (double)repo->total / (1 << 20), repo->num_skipped);
    notify(ps);
    if (ps->p.on_done) ps->p.on_done(ps->p.ud, pl->model_id, row->load_after);
    goto out_free;
out:
    memset(token, 0, sizeof token);
    pthread_mutex_lock(&ps->mu);
    const enum stop_why why = pl->why;
    pthread_mutex_unlock(&ps->mu);
    if (hs == HUB_CANCELLED && why == SHUTDOWN) goto out_free; /* resumed at the next start */
    if (hs == HUB_CANCELLED || hs == HUB_DISK) {
        /* A cancel leaves nothing behind; a full disk gets its space back. */
        if (row->sha[0]) {
            snprintf(staging, sizeof staging, "%s/%s/.incomplete/%s", ps->p.models_dir, m->repo_id, row->sha);
            pull_remove_tree(staging);
            snprintf(staging, sizeof staging, "%s/%s/.incomplete", ps->p.models_dir, m->repo_id);
            rmdir(staging);
        }
        row->bytes_done = 0;
        row->files_done = 0;
        files_json(repo, NULL, row->files, sizeof row->files);
    }
    if (hs == HUB_CANCELLED) {
        finish(pl, "cancelled", NULL);
        store_event_add(st, "info", "model.pull_cancelled", pl->model_id, "pull of %s cancelled, files deleted", m->repo_id);
    } else {
        finish(pl, "failed", err);
        store_model_set_state(st, pl->model_id, "registered", -1, err);
        store_event_add(st, "error", "model.pull_failed", pl->model_id, "%s: %s", m->repo_id, err);
    }
    notify(ps);
    goto out_free;
out_nomodel:
    fprintf(stderr, "foliod: pull of model %lld: %s\n", (long long)pl->model_id, err);
out_free:
    pthread_mutex_lock(&ps->mu);
    pl->repo = NULL;
    pl->row = NULL;
    pl->running = 0;
    pthread_mutex_unlock(&ps->mu);
    free(m);
    free(repo);
    free(row);
    return NULL;
}

void pull_token(struct pulls *ps, char *out, size_t cap) {
    if (ps->p.env_token && *ps->p.env_token) snprintf(out, cap, "%s", ps->p.env_token);
    else if (store_setting_get(ps->p.store, "hf_token", out, cap)) out[0] = '\0';
}

int pull_create(const struct pull_params *p, struct pulls **out) {
    struct pulls *ps = calloc(1, sizeof *ps);
    if (!ps) return folio_err(FOLIO_ENOMEM, "out of memory");
    ps->p = *p;
    pthread_mutex_init(&ps->mu, NULL);
    if (mkdirs(p->models_dir) != 0) {
        int rc = folio_err(FOLIO_EIO, "cannot create %s: %s", p->models_dir, strerror(errno));
        free(ps);
        return rc;
    }
    *out = ps;
    return 0;
}

/* Joins the threads of pulls that have ended, freeing their slots. Called with mu held. */
static void reap(struct pulls *ps) {
    for (int i = 0; i < MAX_PULLS; i++) {
        struct pull *pl = &ps->slot[i];
        if (pl->used && !pl->running && !pl->joining) {
            pthread_join(pl->thread, NULL);
            pl->used = 0;
        }
    }
}

static struct pull *find(struct pulls *ps, int64_t id) {
    for (int i = 0; i < MAX_PULLS; i++)
        if (ps->slot[i].used && ps->slot[i].running && ps->slot[i].model_id == id) return &ps->slot[i];
    return NULL;
}

int pull_start(struct pulls *ps, int64_t model_id, int load_after) {
    struct store_model m;
    int rc = store_model_get(ps->p.store, model_id, &m);
    if (rc) return rc;
    if (strcmp(m.source, "hf") != 0 || !m.repo_id[0])
        return folio_err(FOLIO_EINVAL, "model %s is not from the Hub (no repo_id): nothing to pull", m.name);
    pthread_mutex_lock(&ps->mu);
    if (ps->stopped) {
        pthread_mutex_unlock(&ps->mu);
        return folio_err(FOLIO_EBUSY, "foliod is stopping: pull %s after its restart", m.name);
    }
    reap(ps);
    struct pull *pl = find(ps, model_id);
    if (pl) {
        pl->load_after |= load_after;
        pthread_mutex_unlock(&ps->mu);
        return 0;
    }
    for (int i = 0; i < MAX_PULLS && !pl; i++)
        if (!ps->slot[i].used) pl = &ps->slot[i];
    if (!pl) {
        pthread_mutex_unlock(&ps->mu);
        return folio_err(FOLIO_EBUSY, "%d pulls are running already; wait for one to end", MAX_PULLS);
    }
    /* The row says "queued" before this returns, so that no one reads how an earlier pull
     * ended as this one's state (heap: the row is 33 KiB and HTTP threads have small stacks). */
    struct store_download *row = malloc(sizeof *row);
    if (row && store_download_get(ps->p.store, model_id, row) == 0 && strcmp(row->state, "downloading") != 0) {
        snprintf(row->state, sizeof row->state, "queued");
        row->error[0] = '\0';
        store_download_put(ps->p.store, row);
    }
    free(row);
    memset(pl, 0, sizeof *pl);
    *pl = (struct pull){.used = 1, .running = 1, .model_id = model_id, .load_after = load_after, .owner = ps};
    if (pthread_create(&pl->thread, NULL, pull_main, pl) != 0) {
        pl->used = pl->running = 0;
        pthread_mutex_unlock(&ps->mu);
        return folio_err(FOLIO_ENOMEM, "cannot start a pull thread");
    }
    pthread_mutex_unlock(&ps->mu);
    return 0;
}

int pull_cancel(struct pulls *ps, int64_t model_id) {
    pthread_mutex_lock(&ps->mu);
    struct pull *pl = find(ps, model_id);
    if (!pl) {
        pthread_mutex_unlock(&ps->mu);
        return folio_err(FOLIO_ENOTFOUND, "model %lld is not being pulled", (long long)model_id);
    }
    pl->why = CANCELLED_BY_USER;
    __atomic_store_n(&pl->cancel, 1, __ATOMIC_RELAXED);
    pthread_t t = pl->thread;
    pl->joining = 1;
    pthread_mutex_unlock(&ps->mu);
    /* Wait for the files to be gone, so that the answer means what it says. */
    pthread_join(t, NULL);
    pthread_mutex_lock(&ps->mu);
    pl->used = pl->joining = 0;
    pthread_mutex_unlock(&ps->mu);
    return 0;
}

int pull_resume_all(struct pulls *ps) {
    struct store_download *rows = NULL;
    int n = 0, rc = store_download_list(ps->p.store, &rows, &n);
    for (int i = 0; !rc && i < n; i++)
        if (!strcmp(rows[i].state, "downloading") || !strcmp(rows[i].state, "queued")) {
            if (pull_start(ps, rows[i].model_id, rows[i].load_after))
                fprintf(stderr, "foliod: cannot resume the pull of model %lld: %s\n", (long long)rows[i].model_id,
                        folio_last_error());
        }
    free(rows);
    return rc;
}

int pull_rate(struct pulls *ps, int64_t model_id, double *rate, double *eta) {
    pthread_mutex_lock(&ps->mu);
    struct pull *pl = find(ps, model_id);
    if (!pl) {
        pthread_mutex_unlock(&ps->mu);
        return FOLIO_ENOTFOUND;
    }
    *rate = 0;
    *eta = -1;
    if (pl->nsamples >= 2 && pl->t[pl->nsamples - 1] > pl->t[0]) {
        *rate = (double)(pl->bytes[pl->nsamples - 1] - pl->bytes[0]) / (pl->t[pl->nsamples - 1] - pl->t[0]);
        if (*rate > 0) *eta = (double)(pl->total - pl->done) / *rate;
    }
    pthread_mutex_unlock(&ps->mu);
    return 0;
}

void pull_shutdown(struct pulls *ps) {
    if (!ps) return;
    pthread_t th[MAX_PULLS];
    int idx[MAX_PULLS], n = 0;
    pthread_mutex_lock(&ps->mu);
    ps->stopped = 1;
    for (int i = 0; i < MAX_PULLS; i++) {
        struct pull *pl = &ps->slot[i];
        if (!pl->used || pl->joining) continue; /* a pull_cancel joins those itself */
        if (pl->running) {
            pl->why = SHUTDOWN;
            __atomic_store_n(&pl->cancel, 1, __ATOMIC_RELAXED);
        }
        pl->joining = 1;
        th[n] = pl->thread;
        idx[n++] = i;
    }
    pthread_mutex_unlock(&ps->mu);
    for (int k = 0; k < n; k++) pthread_join(th[k], NULL);
    pthread_mutex_lock(&ps->mu);
    for (int k = 0; k < n; k++) ps->slot[idx[k]].used = ps->slot[idx[k]].joining = 0;
    pthread_mutex_unlock(&ps->mu);
}

void pull_free(struct pulls *ps) {
    if (!ps) return;
    pull_shutdown(ps);
    pthread_mutex_destroy(&ps->mu);
    free(ps);
}
