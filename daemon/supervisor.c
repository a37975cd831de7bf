/* supervisor: see supervisor.h.
 *
 * One thread runs every engine's state machine, ticking at least every 100 ms while it waits
 * for engine output:
 *   stopped --load--> starting --/health 200--> ready --unload--> draining --exit--> stopped
 *   starting|ready --exit or hung--> backoff --delay--> starting      (crash)
 *   N crashes in a row without staying up                --> failed
 * Slow work (health checks) runs with the lock released, so routing never waits on it. */
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "upstream.h"
#include "validate.h"
#include "base/util.h"

extern char **environ;

#define SUP_MAX 64
#define TAIL_CAP 4096        /* the last output bytes kept for a failure's message */
#define STAY_UP 60.0         /* seconds ready after which a crash no longer counts as a loop */
#define HEALTH_FAILS 3       /* failed checks in a row before a ready engine counts as hung */

enum est { E_STOPPED, E_STARTING, E_READY, E_DRAINING, E_BACKOFF, E_FAILED };
static const char *const est_name[] = {"stopped", "starting", "ready", "draining", "backoff", "failed"};

struct eng {
    int used;
    struct store_model m;       /* as loaded */
    enum est st;
    int want;                   /* 1: should run */
    pid_t pid;
    int port;
    char secret[65];
    int log_in;                 /* read end of the child's stdout/stderr, or -1 */
    int log_fd;                 /* the log file, or -1 */
    size_t log_size;
    char log_path[1024];
    char tail[TAIL_CAP];        /* ring of the last output bytes */
    size_t tail_at, tail_len;
    double spawn_t, ready_t, term_t, next_check, backoff_until;
    int64_t spawn_wall;         /* unix seconds of the current process's start */
    int health_fails, crashes, restarts;
    char last_error[512];
};

struct supervisor {
    struct supervisor_params p;
    char engine_bin[PATH_MAX], log_dir[PATH_MAX], template_dir[PATH_MAX];
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* broadcast on every state change */
    int stopping;
    struct eng eng[SUP_MAX];
};

struct supervisor_params supervisor_default_params(void) {
    /* FOLIO_RESTART_BACKOFF_MS: a test knob, so that the suites' crash loops do not wait seconds. */
    const char *ms = getenv("FOLIO_RESTART_BACKOFF_MS");
    double backoff = ms && *ms ? atof(ms) / 1000 : 0.5;
    if (!(backoff >= 0 && backoff <= 30)) backoff = 0.5; /* NaN, negative or past the 30 s cap */
    return (struct supervisor_params){.engine_bin = "folio-engine", .log_dir = "logs", .log_cap = 8u << 20,
                               .ready_timeout = 600, .stop_timeout = 30, .health_interval = 2, .crash_loop = 5,
                               .restart_backoff = backoff};
}

static double now_s(void) { return folio_now(); }

/* Whether e should run now. Shutting down stops every engine but keeps e->want (and the
 * registry's want_loaded), so that the next foliod loads the same models again. */
static int wants(const struct supervisor *s, const struct eng *e) { return e->want && !s->stopping; }

static struct eng *find(struct supervisor *s, int64_t model_id) {
    for (int i = 0; i < SUP_MAX; i++)
        if (s->eng[i].used && s->eng[i].m.id == model_id) return &s->eng[i];
    return NULL;
}

/* ---- logs ---- */

static void tail_add(struct eng *e, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        e->tail[e->tail_at] = b[i];
        e->tail_at = (e->tail_at + 1) % TAIL_CAP;
        if (e->tail_len < TAIL_CAP) e->tail_len++;
    }
}

/* The last `lines` lines of the engine's output, into out. */
static void tail_lines(const struct eng *e, int lines, char *out, size_t cap) {
    char buf[TAIL_CAP + 1];
    size_t start = (e->tail_at + TAIL_CAP - e->tail_len) % TAIL_CAP;
    for (size_t i = 0; i < e->tail_len; i++) buf[i] = e->tail[(start + i) % TAIL_CAP];
    size_t n = e->tail_len;
    while (n > 0 && buf[n - 1] == '\n') n--;
    buf[n] = '\0';
    const char *p = buf + n;
    for (int seen = 0; p > buf; p--)
        if (p[-1] == '\n' && ++seen == lines) break;
    size_t len = strlen(p);
    if (len >= cap) {
        p += len - (cap - 1); /* keep the end: the last words matter most */
        len = cap - 1;
    }
    memcpy(out, p, len + 1);
}

static void log_open(struct eng *e) {
    e->log_fd = open(e->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    struct stat st;
    e->log_size = (e->log_fd >= 0 && fstat(e->log_fd, &st) == 0) ? (size_t)st.st_size : 0;
}

/* Appends to the engine's log; past the cap the file rotates to .1, so a chatty engine costs
 * at most twice the cap on disk. */
static void log_write(struct supervisor *s, struct eng *e, const char *b, size_t n) {
    tail_add(e, b, n);
    if (e->log_fd < 0) return;
    if (e->log_size + n > s->p.log_cap) {
        char old[PATH_MAX + 8];
        snprintf(old, sizeof old, "%s.1", e->log_path);
        close(e->log_fd);
        rename(e->log_path, old);
        log_open(e);
        if (e->log_fd < 0) return;
    }
    if (write(e->log_fd, b, n) > 0) e->log_size += n;
}

static void log_note(struct supervisor *s, struct eng *e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void log_note(struct supervisor *s, struct eng *e, const char *fmt, ...) {
    char line[512];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(line, sizeof line, "foliod %Y-%m-%dT%H:%M:%SZ: ", &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    line[len++] = '\n';
    log_write(s, e, line, len);
}

/* ---- state ---- */

static void persist(struct supervisor *s, struct eng *e) {
    const char *state = est_name[e->st];
    /* The registry shows backoff as loading: the model is on its way back. */
    if (e->st == E_BACKOFF) state = "loading";
    if (e->st == E_STARTING) state = "loading";
    store_model_set_state(s->p.store, e->m.id, state, e->want, e->st == E_FAILED ? e->last_error : "");
    struct store_engine se = {.model_id = e->m.id, .pid = e->pid, .port = e->port, .started = e->spawn_wall,
                              .restarts = e->restarts};
    snprintf(se.state, sizeof se.state, "%s", est_name[e->st]);
    snprintf(se.log_path, sizeof se.log_path, "%s", e->log_path);
    store_engine_put(s->p.store, &se);
}

static void set_state(struct supervisor *s, struct eng *e, enum est st) {
    if (e->st == st) return;
    e->st = st;
    persist(s, e);
    pthread_cond_broadcast(&s->cv);
}

static void secret_new(char out[65]) {
    unsigned char r[32];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n > 0) got += (size_t)n;
    }
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", r[i]);
}

#define MAX_ARGS 40
#define MAX_ENV 512

/* What of foliod's environment an engine gets: the system's basics, the CUDA/NVIDIA, BLAS,
 * OpenMP and malloc tuning, the sanitizers' options, and FOLIO_CPU_ISA; never foliod's own
 * secrets (FOLIO_ADMIN_PASSWORD, FOLIO_ADMIN_TOKEN, FOLIO_API_KEY, HF_TOKEN) nor anything
 * else. The engine's FOLIO_API_KEY is its own secret, added by spawn. */
static int env_allowed(const char *kv) {
    static const char *const exact[] = {"PATH", "HOME", "LANG", "TZ", "TMPDIR", "LD_LIBRARY_PATH", "ASAN_OPTIONS",
                                        "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS", "FOLIO_CPU_ISA",
                                        "GLIBC_TUNABLES"};
    static const char *const prefix[] = {"LC_", "CUDA_", "NVIDIA_", "OMP_", "OPENBLAS_", "MKL_", "MALLOC_"};
    const char *eq = strchr(kv, '=');
    if (!eq) return 0;
    const size_t n = (size_t)(eq - kv);
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
        if (strlen(exact[i]) == n && !strncmp(kv, exact[i], n)) return 1;
    for (size_t i = 0; i < sizeof prefix / sizeof *prefix; i++)
        if (!strncmp(kv, prefix[i], strlen(prefix[i])) && n > strlen(prefix[i])) return 1;
    return 0;
}

/* The model's chat template for the engine: inline text is written to
 * template_dir/<model id>.jinja (the engine only ever gets a file foliod wrote); a path must
 * still be a file inside the model directory (validate.h; a Hub model's directory is first
 * known here). *out is "" when the model has no template. */
static int template_arg(struct supervisor *s, const struct eng *e, char *out, size_t cap) {
    out[0] = '\0';
    if (!e->m.chat_template[0]) return 0;
    if (!validate_template_inline(e->m.chat_template)) {
        if (validate_template_file(e->m.chat_template, e->m.path, out, cap)) {
            char why[512];
            snprintf(why, sizeof why, "%s", folio_last_error()); /* folio_err reuses its buffer */
            return folio_err(FOLIO_EINVAL, "refusing to start: %s", why);
        }
        return 0;
    }
    char tmp[PATH_MAX + 64];
    if (mkdir(s->template_dir, 0750) != 0 && errno != EEXIST)
        return folio_err(FOLIO_EIO, "cannot create %s: %s", s->template_dir, strerror(errno));
    snprintf(out, cap, "%.3900s/%lld.jinja", s->template_dir, (long long)e->m.id);
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
    const size_t n = strlen(e->m.chat_template);
    const int ok = fd >= 0 && write(fd, e->m.chat_template, n) == (ssize_t)n;
    if (fd >= 0) close(fd);
    if (!ok || rename(tmp, out) != 0) {
        unlink(tmp);
        return folio_err(FOLIO_EIO, "cannot write the chat template %s: %s", out, strerror(errno));
    }
    return 0;
}

/* Spawns the engine for e (supervisor thread only). Everything the child needs is built
 * before fork: between fork and exec a threaded process may only make async-signal-safe
 * calls. */
static int spawn(struct supervisor *s, struct eng *e) {
    char num[8][32], secret_env[96], tmpl[PATH_MAX];
    const char *argv[MAX_ARGS];
    int a = 0, k = 0;
    /* The name becomes an argv value: it must not read as a flag (validate.h). */
    char why[512];
    if (validate_model_name(e->m.name)) {
        snprintf(why, sizeof why, "%s", folio_last_error()); /* folio_err reuses its buffer */
        return folio_err(FOLIO_EINVAL, "refusing to start: %s", why);
    }
    int rc = template_arg(s, e, tmpl, sizeof tmpl);
    if (rc) return rc;
    int port = upstream_free_port();
    if (port < 0) return port;
    e->port = port;
    secret_new(e->secret);
    argv[a++] = s->engine_bin;
    argv[a++] = "--model";
    argv[a++] = e->m.path;
    argv[a++] = "--host";
    argv[a++] = "127.0.0.1";
    argv[a++] = "--port";
    snprintf(num[k], sizeof num[k], "%d", port);
    argv[a++] = num[k++];
    argv[a++] = "--served-model-name";
    argv[a++] = e->m.name;
    /* Every connection to an engine comes from foliod's address: foliod caps clients itself. */
    argv[a++] = "--max-connections-per-client";
    argv[a++] = "0";
    if (s->p.engine_connections > 0) {
        argv[a++] = "--max-connections";
        snprintf(num[k], sizeof num[k], "%d", s->p.engine_connections);
        argv[a++] = num[k++];
    }
    if (e->m.max_model_len > 0) {
        argv[a++] = "--max-model-len";
        snprintf(num[k], sizeof num[k], "%d", e->m.max_model_len);
        argv[a++] = num[k++];
    }
    if (e->m.block_size > 0) {
        argv[a++] = "--block-size";
        snprintf(num[k], sizeof num[k], "%d", e->m.block_size);
        argv[a++] = num[k++];
    }
    if (e->m.max_num_seqs > 0) {
        argv[a++] = "--max-num-seqs";
        snprintf(num[k], sizeof num[k], "%d", e->m.max_num_seqs);
        argv[a++] = num[k++];
    }
    if (e->m.gpu_memory_utilization > 0) {
        argv[a++] = "--gpu-memory-utilization";
        snprintf(num[k], sizeof num[k], "%g", e->m.gpu_memory_utilization);
        argv[a++] = num[k++];
    }
    if (e->m.kv_cache_space > 0) {
        argv[a++] = "--kv-cache-space";
        snprintf(num[k], sizeof num[k], "%g", e->m.kv_cache_space);
        argv[a++] = num[k++];
    }
    if (e->m.dtype[0]) {
        argv[a++] = "--dtype";
        argv[a++] = e->m.dtype;
    }
    if (e->m.kv_cache_dtype[0]) {
        argv[a++] = "--kv-cache-dtype";
        argv[a++] = e->m.kv_cache_dtype;
    }
    if (e->m.quantization[0]) {
        argv[a++] = "--quantization";
        argv[a++] = e->m.quantization;
    }
    if (e->m.device[0]) {
        argv[a++] = "--device";
        argv[a++] = e->m.device;
    }
    if (tmpl[0]) {
        argv[a++] = "--chat-template";
        argv[a++] = tmpl;
    }
    argv[a] = NULL;
    /* The secret travels in the environment: a command line is world-readable in /proc. */
    const char *envp[MAX_ENV];
    int ne = 0;
    int tunables = 0;
    for (char **ev = environ; *ev && ne < MAX_ENV - 3; ev++)
        if (env_allowed(*ev)) {
            envp[ne++] = *ev;
            tunables |= !strncmp(*ev, "GLIBC_TUNABLES=", 15);
        }
    /* No per-thread malloc cache: each of an engine's connection threads would otherwise keep
     * up to ~236 KB of freed chunks once it has served a few kinds of request, and they take
     * connections in turn, so RSS climbed for thousands of requests (measured: +6 MiB over
     * 4,800 requests at 512 threads, flat without the cache). The step loop allocates
     * nothing, so nothing hot pays for the shared arenas. An operator's own setting wins. */
    if (!tunables) envp[ne++] = "GLIBC_TUNABLES=glibc.malloc.tcache_count=0";
    snprintf(secret_env, sizeof secret_env, "FOLIO_API_KEY=%s", e->secret);
    envp[ne++] = secret_env;
    envp[ne] = NULL;

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return folio_err(FOLIO_EIO, "pipe: %s", strerror(errno));
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return folio_err(FOLIO_EIO, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        /* The engine dies with foliod, so that no orphan holds a port or GPU memory. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close_range(3, ~0u, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(argv[0], (char *const *)argv, (char *const *)envp);
        static const char msg[] = "foliod: cannot exec the engine binary\n";
        if (write(2, msg, sizeof msg - 1) < 0) _exit(127);
        _exit(127);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    e->log_in = fds[0];
    e->pid = pid;
    e->spawn_t = now_s();
    e->spawn_wall = (int64_t)time(NULL);
    e->next_check = e->spawn_t + 0.1;
    e->health_fails = 0;
    log_note(s, e, "started %s for %s (pid %d, port %d)", s->engine_bin, e->m.name, (int)pid, port);
    return 0;
}

static void drain_output(struct supervisor *s, struct eng *e) {
    char buf[4096];
    while (e->log_in >= 0) {
        ssize_t n = read(e->log_in, buf, sizeof buf);
        if (n > 0) {
            log_write(s, e, buf, (size_t)n);
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            close(e->log_in);
            e->log_in = -1;
        }
        break;
    }
}

/* A child that exited: stopped when asked to, else a crash (restart after a backoff, or
 * failed once it loops). */
static void reap(struct supervisor *s, struct eng *e, int status) {
    drain_output(s, e);
    char how[64];
    if (WIFEXITED(status)) snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
    else snprintf(how, sizeof how, "was killed by signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    log_note(s, e, "engine pid %d %s", (int)e->pid, how);
    e->pid = 0;
    e->port = 0;
    if (e->log_in >= 0) {
        close(e->log_in);
        e->log_in = -1;
    }
    if (e->st == E_DRAINING || !wants(s, e)) {
        store_event_add(s->p.store, "info", "engine.stopped", e->m.id, "engine for %s stopped", e->m.name);
        set_state(s, e, E_STOPPED);
        return;
    }
    const double now = now_s();
    if (e->st == E_READY && now - e->ready_t >= STAY_UP) e->crashes = 0;
    e->crashes++;
    char tail[400];
    tail_lines(e, 3, tail, sizeof tail);
    if (e->crashes >= s->p.crash_loop) {
        snprintf(e->last_error, sizeof e->last_error, "engine %s %d times in a row; last output: %s", how,
                 e->crashes, tail);
        e->want = 0;
        store_event_add(s->p.store, "error", "engine.failed", e->m.id, "%s: %s", e->m.name, e->last_error);
        set_state(s, e, E_FAILED);
        return;
    }
    double delay = s->p.restart_backoff;
    for (int i = 1; i < e->crashes && delay < 30; i++) delay *= 2;
    if (delay > 30) delay = 30;
    e->backoff_until = now + delay;
    e->restarts++;
    store_event_add(s->p.store, "warn", "engine.crashed", e->m.id, "engine for %s %s; restarting in %.1f s (%s)",
                    e->m.name, how, delay, tail);
    set_state(s, e, E_BACKOFF);
}

static void stop_engine(struct supervisor *s, struct eng *e, int sig) {
    if (e->pid <= 0) return;
    kill(e->pid, sig);
    if (sig == SIGTERM) {
        e->term_t = now_s();
        log_note(s, e, "stopping engine pid %d (SIGTERM, drain up to %.0f s)", (int)e->pid, s->p.stop_timeout);
        set_state(s, e, E_DRAINING);
    }
}

/* One pass of every engine's state machine (under the lock). Health checks to run are
 * collected into checks[] and done by the caller without the lock. */
struct check {
    int64_t model_id;
    int port;
};

static int tick(struct supervisor *s, struct check *checks) {
    const double now = now_s();
    int nc = 0;
    for (int i = 0; i < SUP_MAX; i++) {
        struct eng *e = &s->eng[i];
        if (!e->used) continue;
        if (e->pid > 0) {
            int status;
            pid_t r = waitpid(e->pid, &status, WNOHANG);
            if (r == e->pid) {
                reap(s, e, status);
                continue;
            }
        }
        const int want = wants(s, e);
        switch (e->st) {
        case E_STOPPED:
        case E_FAILED:
            if (want && e->st == E_STOPPED) {
                if (spawn(s, e) == 0) {
                    set_state(s, e, E_STARTING);
                } else {
                    snprintf(e->last_error, sizeof e->last_error, "%s", folio_last_error());
                    e->want = 0;
                    set_state(s, e, E_FAILED);
                }
            }
            break;
        case E_BACKOFF:
            if (!want) set_state(s, e, E_STOPPED);
            else if (now >= e->backoff_until) {
                if (spawn(s, e) == 0) set_state(s, e, E_STARTING);
                else e->backoff_until = now + 1;
            }
            break;
        case E_STARTING:
            if (!want) stop_engine(s, e, SIGTERM);
            else if (now - e->spawn_t > s->p.ready_timeout) {
                log_note(s, e, "not ready after %.0f s: killing it", s->p.ready_timeout);
                stop_engine(s, e, SIGKILL);
            } else if (now >= e->next_check) {
                checks[nc++] = (struct check){e->m.id, e->port};
                e->next_check = now + 0.1;
            }
            break;
        case E_READY:
            if (!want) stop_engine(s, e, SIGTERM);
            else if (now >= e->next_check) {
                checks[nc++] = (struct check){e->m.id, e->port};
                e->next_check = now + s->p.health_interval;
            }
            break;
        case E_DRAINING:
            if (now - e->term_t > s->p.stop_timeout) {
                log_note(s, e, "still running %.0f s after SIGTERM: SIGKILL", s->p.stop_timeout);
                kill(e->pid, SIGKILL);
                e->term_t = now; /* once per timeout */
            }
            break;
        }
    }
    return nc;
}

static void apply_check(struct supervisor *s, const struct check *c, int status) {
    struct eng *e = find(s, c->model_id);
    if (!e || e->port != c->port) return; /* restarted meanwhile */
    if (e->st == E_STARTING && status == 200) {
        e->ready_t = now_s();
        e->health_fails = 0;
        log_note(s, e, "engine pid %d ready after %.1f s", (int)e->pid, e->ready_t - e->spawn_t);
        store_event_add(s->p.store, "info", "engine.ready", e->m.id, "%s is ready (pid %d, port %d)", e->m.name,
                        (int)e->pid, e->port);
        e->last_error[0] = '\0';
        set_state(s, e, E_READY);
    } else if (e->st == E_READY) {
        if (status == 200) {
            e->health_fails = 0;
        } else if (++e->health_fails >= HEALTH_FAILS) {
            log_note(s, e, "engine pid %d failed %d health checks in a row: killing it", (int)e->pid, HEALTH_FAILS);
            kill(e->pid, SIGKILL);
        }
    }
}

static void *sup_main(void *arg) {
    struct supervisor *s = arg;
    struct check checks[SUP_MAX];
    struct pollfd pf[SUP_MAX];
    pthread_mutex_lock(&s->mu);
    for (;;) {
        int nc = tick(s, checks);
        int live = 0, np = 0;
        int64_t who[SUP_MAX];
        for (int i = 0; i < SUP_MAX; i++) {
            if (s->eng[i].used && s->eng[i].pid > 0) live++;
            if (s->eng[i].used && s->eng[i].log_in >= 0) {
                pf[np] = (struct pollfd){.fd = s->eng[i].log_in, .events = POLLIN};
                who[np++] = s->eng[i].m.id;
            }
        }
        if (s->stopping && live == 0) break;
        void (*cb)(void *) = s->p.on_change;
        pthread_mutex_unlock(&s->mu);
        int status[SUP_MAX];
        for (int i = 0; i < nc; i++) {
            status[i] = 0;
            if (upstream_get(checks[i].port, "/health", NULL, 1000, &status[i], NULL, 0) != 0) status[i] = 0;
        }
        /* Engine output, or the next tick. */
        poll(pf, (nfds_t)np, nc ? 0 : 100);
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < nc; i++) apply_check(s, &checks[i], status[i]);
        for (int i = 0; i < np; i++) {
            struct eng *e = find(s, who[i]);
            if (e && e->log_in == pf[i].fd && (pf[i].revents & (POLLIN | POLLHUP))) drain_output(s, e);
        }
        if (cb && nc) {
            pthread_mutex_unlock(&s->mu);
            cb(s->p.ud);
            pthread_mutex_lock(&s->mu);
        }
    }
    for (int i = 0; i < SUP_MAX; i++)
        if (s->eng[i].used && s->eng[i].log_fd >= 0) {
            close(s->eng[i].log_fd);
            s->eng[i].log_fd = -1;
        }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- reconcile ---- */

/* Whether pid runs the engine binary (its argv[0]), so that a recycled pid is never killed. */
static int is_engine(struct supervisor *s, int pid) {
    char path[64], cmd[PATH_MAX];
    snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(cmd, 1, sizeof cmd - 1, f);
    fclose(f);
    cmd[n] = '\0';
    const char *base = strrchr(s->engine_bin, '/');
    base = base ? base + 1 : s->engine_bin;
    const char *cbase = strrchr(cmd, '/');
    cbase = cbase ? cbase + 1 : cmd;
    return n > 0 && strcmp(cbase, base) == 0;
}

static int reconcile(struct supervisor *s) {
    struct store_engine *es = NULL;
    struct store_model *ms = NULL;
    int ne = 0, nm = 0, rc;
    if ((rc = store_engine_list(s->p.store, &es, &ne))) return rc;
    for (int i = 0; i < ne; i++) {
        if (es[i].pid > 0 && is_engine(s, es[i].pid)) {
            kill(es[i].pid, SIGKILL);
            store_event_add(s->p.store, "warn", "engine.orphan", es[i].model_id,
                            "killed engine pid %d left by an earlier foliod", es[i].pid);
        }
        store_engine_delete(s->p.store, es[i].model_id);
    }
    free(es);
    if ((rc = store_model_list(s->p.store, &ms, &nm))) return rc;
    for (int i = 0; i < nm; i++) {
        const char *st = ms[i].state;
        if (ms[i].want_loaded) {
            if ((rc = supervisor_load(s, ms[i].id)) != 0)
                store_model_set_state(s->p.store, ms[i].id, "failed", 0, folio_last_error());
        } else if (strcmp(st, "registered") != 0 && strcmp(st, "failed") != 0 && strcmp(st, "stopped") != 0) {
            store_model_set_state(s->p.store, ms[i].id, "stopped", 0, NULL);
        }
    }
    free(ms);
    return 0;
}

/* ---- API ---- */

int supervisor_create(const struct supervisor_params *p, struct supervisor **out) {
    struct supervisor *s = calloc(1, sizeof *s);
    if (!s) return folio_err(FOLIO_ENOMEM, "out of memory");
    s->p = *p;
    snprintf(s->engine_bin, sizeof s->engine_bin, "%s", p->engine_bin);
    snprintf(s->log_dir, sizeof s->log_dir, "%s", p->log_dir);
    s->p.engine_bin = s->engine_bin;
    s->p.log_dir = s->log_dir;
    /* Inline chat templates: beside the logs unless given (DATA/templates in foliod). */
    if (p->template_dir) snprintf(s->template_dir, sizeof s->template_dir, "%s", p->template_dir);
    else snprintf(s->template_dir, sizeof s->template_dir, "%.4000s/../templates", s->log_dir);
    s->p.template_dir = s->template_dir;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc;
    if (access(s->engine_bin, X_OK) != 0) {
        rc = folio_err(FOLIO_EINVAL, "engine binary %s is not executable: %s", s->engine_bin, strerror(errno));
        goto fail;
    }
    if (mkdir(s->log_dir, 0750) != 0 && errno != EEXIST) {
        rc = folio_err(FOLIO_EIO, "cannot create the log directory %s: %s", s->log_dir, strerror(errno));
        goto fail;
    }
    if ((rc = reconcile(s))) goto fail;
    if (pthread_create(&s->thread, NULL, sup_main, s) != 0) {
        rc = folio_err(FOLIO_ENOMEM, "cannot start the supervisor thread");
        goto fail;
    }
    s->started = 1;
    *out = s;
    return 0;
fail:
    supervisor_free(s);
    return rc;
}

void supervisor_shutdown(struct supervisor *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_mutex_unlock(&s->mu);
    if (s->started) pthread_join(s->thread, NULL);
    s->started = 0;
}

void supervisor_free(struct supervisor *s) {
    if (!s) return;
    supervisor_shutdown(s);
    for (int i = 0; i < SUP_MAX; i++) {
        if (s->eng[i].log_in >= 0 && s->eng[i].used) close(s->eng[i].log_in);
        if (s->eng[i].log_fd >= 0 && s->eng[i].used) close(s->eng[i].log_fd);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

static double share_of(const struct store_model *m) {
    return m->gpu_memory_utilization > 0 ? m->gpu_memory_utilization : 0.9;
}

static int on_gpu(const struct supervisor *s, const struct store_model *m) {
    return s->p.gpus > 0 && strcmp(m->device, "cpu") != 0;
}

int supervisor_load(struct supervisor *s, int64_t model_id) {
    struct store_model m;
    int rc = store_model_get(s->p.store, model_id, &m);
    if (rc) return rc;
    if (!m.path[0]) return folio_err(FOLIO_EINVAL, "model %s has no local files yet", m.name);
    pthread_mutex_lock(&s->mu);
    struct eng *e = find(s, model_id);
    if (e && e->want) {
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    /* GPU memory is shared by share: what the running engines hold plus this one. */
    if (on_gpu(s, &m)) {
        double held = 0;
        char who[512] = "";
        size_t wl = 0;
        for (int i = 0; i < SUP_MAX; i++) {
            const struct eng *o = &s->eng[i];
            if (!o->used || o == e || !(o->want || o->pid > 0) || !on_gpu(s, &o->m)) continue;
            held += share_of(&o->m);
            if (wl < sizeof who - 1)
                wl += (size_t)snprintf(who + wl, sizeof who - wl, "%s%s (%.2f)", wl ? ", " : "", o->m.name,
                                       share_of(&o->m));
        }
        if (held + share_of(&m) > 1.0 + 1e-9) {
            pthread_mutex_unlock(&s->mu);
            return folio_err(FOLIO_EBUSY,
                             "not enough GPU memory for %s: it asks for gpu_memory_utilization %.2f, and %s already "
                             "hold %.2f of the GPU; unload a model or lower its gpu_memory_utilization",
                             m.name, share_of(&m), who, held);
        }
    }
    if (!e) {
        for (int i = 0; i < SUP_MAX && !e; i++)
            if (!s->eng[i].used) e = &s->eng[i];
        if (!e) {
            pthread_mutex_unlock(&s->mu);
            return folio_err(FOLIO_EBUSY, "at most %d engines run at once", SUP_MAX);
        }
        memset(e, 0, sizeof *e);
        e->used = 1;
        e->log_in = e->log_fd = -1;
        char name[128];
        snprintf(name, sizeof name, "%s", m.name);
        for (char *c = name; *c; c++)
            if (*c == '/' || *c == '\\' || *c == '.') *c = '_';
        snprintf(e->log_path, sizeof e->log_path, "%.900s/%lld-%.100s.log", s->log_dir, (long long)m.id, name);
        log_open(e);
    }
    e->m = m;
    e->want = 1;
    if (e->st == E_FAILED) {
        e->crashes = 0;
        e->st = E_STOPPED;
    }
    store_model_set_state(s->p.store, m.id, "loading", 1, "");
    store_event_add(s->p.store, "info", "model.load", m.id, "loading %s", m.name);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int supervisor_unload(struct supervisor *s, int64_t model_id) {
    pthread_mutex_lock(&s->mu);
    struct eng *e = find(s, model_id);
    if (e) e->want = 0;
    pthread_mutex_unlock(&s->mu);
    if (!e) return store_model_set_state(s->p.store, model_id, "stopped", 0, NULL);
    store_event_add(s->p.store, "info", "model.unload", model_id, "unloading");
    return 0;
}

int supervisor_wait_ready(struct supervisor *s, int64_t model_id, double timeout) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double end = (double)ts.tv_sec + ts.tv_nsec / 1e9 + timeout;
    pthread_mutex_lock(&s->mu);
    int r = -1;
    for (;;) {
        struct eng *e = find(s, model_id);
        if (e && e->st == E_READY) {
            r = 1;
            break;
        }
        if (!e || e->st == E_FAILED || (!e->want && e->st == E_STOPPED)) {
            r = 0;
            break;
        }
        struct timespec w = {.tv_sec = (time_t)end, .tv_nsec = (long)((end - (double)(time_t)end) * 1e9)};
        if (pthread_cond_timedwait(&s->cv, &s->mu, &w) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

int supervisor_route(struct supervisor *s, int64_t model_id, struct supervisor_route *r) {
    pthread_mutex_lock(&s->mu);
    struct eng *e = find(s, model_id);
    int rc = 0;
    if (!e || (!e->want && e->st != E_DRAINING)) rc = FOLIO_ENOTFOUND;
    else if (e->st != E_READY) rc = FOLIO_EBUSY;
    else {
        r->port = e->port;
        memcpy(r->secret, e->secret, sizeof r->secret);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int supervisor_list(struct supervisor *s, struct supervisor_engine_info *out, int max) {
    pthread_mutex_lock(&s->mu);
    int n = 0;
    const double now = now_s();
    for (int i = 0; i < SUP_MAX && n < max; i++) {
        const struct eng *e = &s->eng[i];
        if (!e->used) continue;
        struct supervisor_engine_info *o = &out[n++];
        memset(o, 0, sizeof *o);
        o->model_id = e->m.id;
        snprintf(o->name, sizeof o->name, "%s", e->m.name);
        snprintf(o->state, sizeof o->state, "%s", est_name[e->st]);
        o->pid = e->pid;
        o->port = e->port;
        o->uptime = e->st == E_READY ? now - e->ready_t : 0;
        o->restarts = e->restarts;
        snprintf(o->log_path, sizeof o->log_path, "%s", e->log_path);
        snprintf(o->last_error, sizeof o->last_error, "%s", e->last_error);
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

struct supervisor_engine_info *supervisor_list_all(struct supervisor *s, int *n) {
    struct supervisor_engine_info *out = malloc(sizeof *out * SUP_MAX);
    *n = out ? supervisor_list(s, out, SUP_MAX) : 0;
    return out;
}
