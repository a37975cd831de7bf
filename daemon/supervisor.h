/* supervisor: one folio-engine child per loaded model. It builds each engine's argv from the
 * registry, gives it a loopback port and a secret (in its environment, never on a command
 * line that `ps` shows), captures its output into a size-capped log, polls /health until it
 * is ready, restarts it with exponential backoff when it crashes (a crash loop ends in
 * `failed` with the last log lines kept), and stops it with SIGTERM, a drain, then SIGKILL.
 *
 * All forks happen on the supervisor's own thread: PR_SET_PDEATHSIG fires when the thread
 * that forked exits, so children must come from a thread that lives as long as foliod.
 * Other threads ask through supervisor_load/supervisor_unload and read through supervisor_route/supervisor_list. */
#ifndef FOLIO_SUPERVISOR_H
#define FOLIO_SUPERVISOR_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct supervisor;

struct supervisor_params {
    const char *engine_bin;   /* folio-engine */
    const char *log_dir;      /* one <model name>.log per engine */
    const char *template_dir; /* inline chat templates, written as <model id>.jinja at spawn
                                 (NULL: log_dir/../templates) */
    size_t log_cap;           /* bytes per log before it rotates to .1 (8 MiB) */
    double ready_timeout;     /* seconds from spawn to a 200 from /health (600) */
    double stop_timeout;      /* seconds from SIGTERM to SIGKILL (30) */
    double health_interval;   /* seconds between /health checks of a ready engine (2) */
    int crash_loop;           /* this many crashes in a row without staying up ends in failed (5) */
    double restart_backoff;   /* seconds before the first restart after a crash, doubling per crash up
                                 to 30 (0.5; FOLIO_RESTART_BACKOFF_MS, a test knob, sets the default) */
    int gpus;                 /* GPUs present: engines on them share memory (sum of shares <= 1) */
    int engine_connections;   /* an engine's --max-connections (0: its default, 512). foliod opens
                                 at most one upstream per HTTP thread, and each engine connection
                                 thread costs stack and malloc cache once used */
    struct store *store;
    /* Called (on the supervisor thread) after any engine changes state. */
    void (*on_change)(void *ud);
    void *ud;
};
struct supervisor_params supervisor_default_params(void);

/* Starts the supervisor thread. First it reconciles the store with reality: engine processes
 * left by an earlier foliod are killed, and models that were loaded are loaded again. */
int supervisor_create(const struct supervisor_params *p, struct supervisor **out);
/* Stops every engine (SIGTERM, drain, SIGKILL) and the thread; queries keep working (nothing
 * routes any more), so HTTP handlers still running may call them. Idempotent. */
void supervisor_shutdown(struct supervisor *s);
/* supervisor_shutdown, then frees. */
void supervisor_free(struct supervisor *s);

/* Asks for the model to run (an engine is spawned on the supervisor thread). Refused when the
 * GPU memory shares would exceed 1, with a message that says who holds what. */
int supervisor_load(struct supervisor *s, int64_t model_id);
/* Asks for the model's engine to stop (drain first). */
int supervisor_unload(struct supervisor *s, int64_t model_id);
/* Waits until the model's engine is ready (1), has failed or stopped (0), or timeout (-1). */
int supervisor_wait_ready(struct supervisor *s, int64_t model_id, double timeout);

/* Where to send a request for model_id: its port and secret, when ready. */
struct supervisor_route {
    int port;
    char secret[65];
};
/* 0 and *r when ready; FOLIO_ENOTFOUND when no engine runs; FOLIO_EBUSY while it starts. */
int supervisor_route(struct supervisor *s, int64_t model_id, struct supervisor_route *r);

/* A snapshot of one engine, for /api/status. */
struct supervisor_engine_info {
    int64_t model_id;
    char name[128];
    char state[16];           /* starting, ready, draining, stopped, failed, backoff */
    int pid, port;
    double uptime;            /* seconds since it became ready; 0 before */
    int restarts;
    char log_path[1024];
    char last_error[512];
};
/* Snapshots of all engines into out (at most max); returns how many. */
int supervisor_list(struct supervisor *s, struct supervisor_engine_info *out, int max);
/* The same into a malloc'd array (the caller frees it; NULL and *n = 0 when out of memory).
 * HTTP handlers use this: their threads' stacks are too small for the array. */
struct supervisor_engine_info *supervisor_list_all(struct supervisor *s, int *n);

#endif
