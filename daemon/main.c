/* foliod: the appliance's daemon. It owns port 8000: the OpenAI API proxied to one
 * folio-engine per loaded model, the admin API and console, the SQLite registry.
 *
 * Configuration, highest first: flags, the config file (--config, default
 * /etc/folio/foliod.conf when it exists; `key = value` lines, # comments), then environment
 * variables (FOLIO_HOST, FOLIO_PORT, FOLIO_DATA_DIR, FOLIO_ENGINE_BIN, FOLIO_API_KEY,
 * FOLIO_ADMIN_TOKEN, FOLIO_ADMIN_PASSWORD). Secrets never come from a flag (ps shows flags):
 * --api-key-file / --admin-token-file and the file keys api_key_file, admin_token_file,
 * hf_token_file and admin_password_file name a file holding one. API keys and admin tokens
 * need 32+ characters, the admin password 12+. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "foliod.h"
#include "front.h"
#include "gpu.h"
#include "hub.h"
#include "pull.h"
#include "sdnotify.h"
#include "base/util.h"
#include "validate.h"

static const char usage[] =
    "usage: foliod [options]\n"
    "  --host H              listen address (127.0.0.1; 0.0.0.0 for every interface)\n"
    "  --port P              (8000)\n"
    "  --data-dir DIR        registry, logs and models (/var/lib/folio)\n"
    "  --engine-bin PATH     folio-engine (next to foliod, else on PATH)\n"
    "  --model DIR|ORG/NAME  register (if new), load and make `default` at start (repeatable); a Hub\n"
    "                        repo id is pulled first (HF_ENDPOINT, HF_TOKEN), with a progress bar\n"
    "  --api-key-file FILE   a key (the file's contents, 32+ characters) accepted on /v1/* besides the\n"
    "                        keys created in the console (or FOLIO_API_KEY; never a flag: ps shows flags)\n"
    "  --admin-token-file FILE  a token (32+ characters) accepted on /api/* as Authorization: Bearer\n"
    "                        instead of a login session (or FOLIO_ADMIN_TOKEN)\n"
    "  --config FILE         (/etc/folio/foliod.conf)\n"
    "  --db-dir DIR          schema and migrations (db/ beside the build, else /usr/share/folio/db)\n"
    "  --admin-ui DIR        the console's files (admin-ui/ beside the build, else /usr/share/folio/admin-ui)\n"
    "  --threads N           concurrent HTTP connections (256)\n"
    "  --max-body MIB        the largest request body (16; /api/login takes 4 KiB); also the largest\n"
    "                        conversation a previous_response_id may expand to\n"
    "  --responses-ttl S     how long a /v1/responses answer is kept for previous_response_id and\n"
    "                        GET /v1/responses/{id} (2592000: 30 days; 0: none is, store is false)\n"
    "  --responses-max-mib MIB  all stored responses together; the oldest go first (1024)\n"
    "  --header-timeout S    a client's time to send its headers; also the longest stall in sending a\n"
    "                        body or in reading a response, after which a stream is aborted (20)\n"
    "  --max-connections-per-client N  connections from one address at once (128; 0: no cap; raise it\n"
    "                        behind a reverse proxy, where every client has the proxy's address)\n"
    "  --server-name NAMES   host names (comma-separated) this server answers to when it listens on a\n"
    "                        loopback address, besides localhost and IP addresses (DNS rebinding)\n"
    "  --hf-endpoint URL     the Hugging Face Hub (HF_ENDPOINT; https://huggingface.co); the token\n"
    "                        comes from HF_TOKEN, the config file's hf_token or the console, never a flag\n"
    "  --reset-admin-password  set a new admin password (FOLIO_ADMIN_PASSWORD, 12+ characters, else a\n"
    "                        random one, printed and written to DATA/admin-password), then exit; run it\n"
    "                        as the user foliod runs as. A running foliod's sessions end with it\n"
    "  --version             print the version and exit\n";

/* Settings by name, as strings: flags first win, then the file, then the environment. */
#define NKEYS 24
static const char *const key_names[NKEYS] = {"host",      "port",    "data_dir",    "engine_bin",
                                             "api_key",   "admin_token", "db_dir",  "admin_ui_dir",
                                             "threads",   "admin_password", "config", "model",
                                             "hf_endpoint", "hf_token", "header_timeout",
                                             "max_connections_per_client", "server_name",
                                             "api_key_file", "admin_token_file", "hf_token_file",
                                             "admin_password_file", "max_body", "responses_ttl",
                                             "responses_max_mib"};
static const char *const env_names[NKEYS] = {"FOLIO_HOST",       "FOLIO_PORT",         "FOLIO_DATA_DIR",
                                             "FOLIO_ENGINE_BIN", "FOLIO_API_KEY",      "FOLIO_ADMIN_TOKEN",
                                             "FOLIO_DB_DIR",     "FOLIO_ADMIN_UI_DIR", "FOLIO_THREADS",
                                             "FOLIO_ADMIN_PASSWORD", "FOLIO_CONFIG", NULL,
                                             "HF_ENDPOINT", "HF_TOKEN", "FOLIO_HEADER_TIMEOUT",
                                             "FOLIO_MAX_CONNECTIONS_PER_CLIENT", "FOLIO_SERVER_NAME",
                                             NULL, NULL, NULL, NULL, "FOLIO_MAX_BODY", "FOLIO_RESPONSES_TTL",
                                             "FOLIO_RESPONSES_MAX_MIB"};
/* Where a setting came from: its rank decides between a secret and its *_file twin. */
enum { SRC_NONE, SRC_FLAG, SRC_FILE, SRC_ENV };
struct settings {
    char *v[NKEYS];
    int src[NKEYS];
    const char *conf_path;
    const char *models[16];
    int num_models, models_from_flags;
    char *owned[16];          /* models strdup'd from the file, freed at exit */
    int reset_admin_password;
};

static int key_index(const char *k) {
    for (int i = 0; i < NKEYS; i++)
        if (!strcmp(k, key_names[i])) return i;
    return -1;
}

static void set_once(struct settings *s, int i, const char *v, int src) {
    if (i >= 0 && !s->v[i]) {
        s->v[i] = strdup(v);
        s->src[i] = src;
    }
}

struct conf_ctx {
    struct settings *s;
    const char *path;
};

static int conf_set(void *ud, const char *k, const char *v, int line) {
    struct conf_ctx *c = ud;
    int i = key_index(k);
    if (i < 0 || !strcmp(k, "config"))
        return folio_err(FOLIO_EINVAL, "%s:%d: unknown setting '%s'", c->path, line, k);
    if (!strcmp(k, "model")) {
        /* --model on the command line replaces the file's list. */
        if (!c->s->models_from_flags && c->s->num_models < 16) {
            char *m = strdup(v);
            if (!m) return folio_err(FOLIO_ENOMEM, "out of memory");
            c->s->owned[c->s->num_models] = m;
            c->s->models[c->s->num_models++] = m;
        }
    } else {
        set_once(c->s, i, v, SRC_FILE);
    }
    return 0;
}

static int read_conf(struct settings *s, const char *path, int must_exist) {
    FILE *f = fopen(path, "r");
    if (!f) return must_exist ? folio_err(FOLIO_EIO, "cannot read %s: %s", path, strerror(errno)) : 0;
    /* Read as a stream: the file may be a pipe or /dev/null. A config is small. */
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap);
    if (text) len = fread(text, 1, cap, f);
    int rc = !text ? folio_err(FOLIO_ENOMEM, "out of memory")
           : ferror(f) ? folio_err(FOLIO_EIO, "cannot read %s", path)
           : len == cap ? folio_err(FOLIO_EINVAL, "%s is larger than 1 MiB", path) : 0;
    fclose(f);
    if (!rc) {
        struct conf_ctx c = {s, path};
        rc = conf_parse(text, len, path, conf_set, &c);
    }
    free(text);
    return rc;
}

/* A secret's file: its contents with the trailing newline(s) stripped. */
static int read_secret_file(const char *setting, const char *path, char **out) {
    FILE *f = fopen(path, "r");
    if (!f) return folio_err(FOLIO_EIO, "%s: cannot read %s: %s", setting, path, strerror(errno));
    char *buf = malloc(65537);
    size_t n = buf ? fread(buf, 1, 65536, f) : 0;
    const int err = ferror(f);
    fclose(f);
    if (!buf) return folio_err(FOLIO_ENOMEM, "out of memory");
    if (err || n == 65536) {
        free(buf);
        return folio_err(FOLIO_EIO, "%s: cannot read %s%s", setting, path, err ? "" : ": larger than 64 KiB");
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
    buf[n] = '\0';
    *out = buf;
    return 0;
}

/* Where a setting came from, for messages: "--api-key-file", "api_key in FILE", "FOLIO_API_KEY". */
static void setting_origin(const struct settings *s, int i, const char *env, char *out, size_t cap) {
    if (s->src[i] == SRC_FLAG) {
        snprintf(out, cap, "--%s", key_names[i]);
        for (char *c = out + 2; *c; c++)
            if (*c == '_') *c = '-';
    } else if (s->src[i] == SRC_FILE) {
        snprintf(out, cap, "%s in %s", key_names[i], s->conf_path);
    } else {
        snprintf(out, cap, "%s", env);
    }
}

/* NAME and NAME_file: the one from the higher-ranked source wins (flags, then the config
 * file, then the environment); a file's contents become the value. Both in one source is
 * an error. */
static int resolve_secret(struct settings *s, const char *name, const char *env) {
    char fname[64], where[PATH_MAX + 64];
    snprintf(fname, sizeof fname, "%s_file", name);
    const int i = key_index(name), f = key_index(fname);
    if (!s->v[f]) return 0;
    if (s->v[i] && s->src[i] == s->src[f]) return folio_err(FOLIO_EINVAL, "give %s or %s, not both", name, fname);
    if (s->v[i] && s->src[i] < s->src[f]) return 0;
    setting_origin(s, f, env, where, sizeof where);
    char *v = NULL;
    int rc = read_secret_file(where, s->v[f], &v);
    if (rc) return rc;
    free(s->v[i]);
    s->v[i] = v;
    s->src[i] = s->src[f] == SRC_FLAG ? SRC_FLAG : s->src[f];
    return 0;
}

/* Configured secrets need a minimum length: API keys and admin tokens are used as they are,
 * the admin password is yescrypt-hashed and guarded by the per-address back-off. Empty means
 * unset. */
static int check_secret_lengths(const struct settings *s) {
    static const struct {
        const char *name, *env, *what;
        size_t min;
    } req[] = {{"api_key", "FOLIO_API_KEY", "the API key", 32},
               {"admin_token", "FOLIO_ADMIN_TOKEN", "the admin token", 32},
               {"admin_password", "FOLIO_ADMIN_PASSWORD", "the admin password", 12}};
    for (size_t k = 0; k < sizeof req / sizeof *req; k++) {
        const int i = key_index(req[k].name);
        const size_t n = s->v[i] ? strlen(s->v[i]) : 0;
        if (n == 0 || n >= req[k].min) continue;
        char where[PATH_MAX + 64];
        setting_origin(s, i, req[k].env, where, sizeof where);
        if (req[k].min == 12)
            return folio_err(FOLIO_EINVAL,
                             "%s (%s) has %zu characters: at least 12 are required (it is stored yescrypt-hashed "
                             "and failed logins back off per address, but a short password is still guessable)",
                             req[k].what, where, n);
        return folio_err(FOLIO_EINVAL, "%s (%s) has %zu characters: at least 32 are required (e.g. openssl rand -hex 32)",
                         req[k].what, where, n);
    }
    return 0;
}

static int parse_flags(int argc, char **argv, struct settings *s) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            exit(0);
        }
        if (!strcmp(a, "--version")) {
            printf("foliod %s\n", FOLIO_VERSION);
            exit(0);
        }
        if (!strcmp(a, "--reset-admin-password")) {
            s->reset_admin_password = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || i + 1 >= argc)
            return folio_err(FOLIO_EINVAL, "unexpected argument '%s' (foliod --help lists the options)", a);
        char k[64];
        snprintf(k, sizeof k, "%s", a + 2);
        for (char *c = k; *c; c++)
            if (*c == '-') *c = '_';
        if (!strcmp(k, "admin_ui")) snprintf(k, sizeof k, "admin_ui_dir");
        int idx = key_index(k);
        /* Secrets stay out of ps: a command line is world-readable in /proc. */
        if (!strcmp(k, "api_key") || !strcmp(k, "admin_token"))
            return folio_err(FOLIO_EINVAL,
                             "%s is refused: a flag shows in ps; use --%s-file FILE (the file's contents), %s in "
                             "the config file, or the environment variable %s",
                             a, !strcmp(k, "api_key") ? "api-key" : "admin-token", k,
                             !strcmp(k, "api_key") ? "FOLIO_API_KEY" : "FOLIO_ADMIN_TOKEN");
        if (idx < 0 || !strcmp(k, "admin_password") || !strcmp(k, "hf_token") || !strcmp(k, "hf_token_file") ||
            !strcmp(k, "admin_password_file"))
            return folio_err(FOLIO_EINVAL, "unknown option '%s' (foliod --help lists them)", a);
        const char *v = argv[++i];
        if (!strcmp(k, "model")) {
            if (s->num_models >= 16) return folio_err(FOLIO_EINVAL, "at most 16 --model");
            s->models[s->num_models++] = v;
        } else {
            free(s->v[idx]);
            s->v[idx] = strdup(v);
            s->src[idx] = SRC_FLAG;
        }
    }
    return 0;
}

/* A directory beside the binary: the checkout's (build/<variant>/foliod -> db/), else the
 * installed prefix's (PREFIX/bin/foliod -> PREFIX/share/folio/db, for make install), else the
 * package's. */
static void beside(const char *exe_dir, const char *rel, const char *probe, const char *installed, char *out, size_t cap) {
    const char *const layouts[] = {"%s/../../%s", "%s/../share/folio/%s"};
    char p[PATH_MAX + 64];
    for (size_t i = 0; i < sizeof layouts / sizeof *layouts; i++) {
        snprintf(out, cap, layouts[i], exe_dir, rel);
        snprintf(p, sizeof p, "%s/%s", out, probe);
        if (access(p, R_OK) == 0) return;
    }
    snprintf(out, cap, "%s", installed);
}

static void on_change(void *ud) { foliod_notify(ud); }

/* A pull finished: load the model when that was asked for. */
static void on_pulled(void *ud, int64_t model_id, int load_after) {
    struct foliod *d = ud;
    if (load_after && supervisor_load(d->sup, model_id))
        store_event_add(d->store, "error", "model.load_failed", model_id, "cannot load after the pull: %s",
                        folio_last_error());
    foliod_notify(d);
}

/* Whether --model names a Hub repo (org/name) rather than a directory here. */
static int hub_ref(const char *arg) {
    struct stat sb;
    if (stat(arg, &sb) == 0 || arg[0] == '/' || arg[0] == '.') return 0;
    const char *slash = strchr(arg, '/');
    return slash && slash != arg && slash[1] && !strchr(slash + 1, '/');
}

/* --model org/name: registered as a Hub model named after the repo (if new), pulled, then
 * loaded by on_pulled. */
static int start_hub_model(struct foliod *d, const char *repo, int first, int64_t *id) {
    struct store_model m = {0};
    int rc = store_model_find(d->store, repo, &m);
    if (rc == FOLIO_ENOTFOUND) {
        memset(&m, 0, sizeof m);
        if (strlen(repo) >= sizeof m.repo_id) return folio_err(FOLIO_EINVAL, "--model %.100s: too long", repo);
        snprintf(m.name, sizeof m.name, "%.127s", repo);
        snprintf(m.source, sizeof m.source, "hf");
        snprintf(m.repo_id, sizeof m.repo_id, "%s", repo);
        snprintf(m.revision, sizeof m.revision, "main");
        snprintf(m.state, sizeof m.state, "registered");
        if ((rc = store_model_add(d->store, &m))) return rc;
        store_event_add(d->store, "info", "model.added", m.id, "registered %s (Hub) from --model", m.name);
    } else if (rc) {
        return rc;
    }
    *id = m.id;
    if (first) foliod_set_default_model(d, m.id);
    if (m.path[0]) return supervisor_load(d->sup, m.id);
    return pull_start(d->pulls, m.id, 1);
}

/* The terminal progress bar of the --model pulls: redrawn in place on a terminal, a line
 * every few seconds otherwise; ends when every pull has ended (or foliod stops). */
struct bar_ctx {
    struct foliod *d;
    int64_t ids[16];
    int n;
};

static void *progress_bar(void *arg) {
    struct bar_ctx *b = arg;
    struct store_download *row = malloc(sizeof *row);
    const int tty = isatty(2);
    double last_line = 0;
    while (row && b->n > 0) {
        if (foliod_stopping(b->d)) break;
        const int line_due = folio_now() - last_line >= 5;
        for (int i = 0; i < b->n; i++) {
            struct store_model m;
            if (store_model_get(b->d->store, b->ids[i], &m) || store_download_get(b->d->store, b->ids[i], row))
                continue; /* not started yet */
            const int running = !strcmp(row->state, "downloading") || !strcmp(row->state, "queued");
            double rate = 0, eta = -1;
            pull_rate(b->d->pulls, b->ids[i], &rate, &eta);
            const double frac = row->bytes_total ? (double)row->bytes_done / (double)row->bytes_total : 0;
            char bar[31];
            for (int k = 0; k < 30; k++) bar[k] = k < (int)(frac * 30 + 0.5) ? '#' : '.';
            bar[30] = '\0';
            if (tty || !running || line_due) {
                char left[32] = "";
                if (running && eta >= 0) snprintf(left, sizeof left, ", %.0f s left", eta);
                fprintf(stderr, "%spulling %s [%s] %5.1f%% %.1f/%.1f MiB %.1f MiB/s%s%s%s", tty ? "\r" : "", m.name,
                        bar, 100 * frac, (double)row->bytes_done / (1 << 20), (double)row->bytes_total / (1 << 20),
                        rate / (1 << 20), left, running ? "" : ": ", running ? (tty ? "   " : "\n") : row->state);
                if (!running) fprintf(stderr, "%s%s\n", row->error[0] ? ": " : "", row->error);
            }
            if (!running) b->ids[i--] = b->ids[--b->n];
        }
        if (line_due) last_line = folio_now();
        usleep(tty ? 200 * 1000 : 500 * 1000);
    }
    free(row);
    return NULL;
}

/* The first start (or --reset-admin-password) sets the admin password: FOLIO_ADMIN_PASSWORD
 * (admin_password[_file]), or a generated one, printed once on stderr and kept in
 * DATA/admin-password (0600) until a password is set explicitly. */
static int admin_bootstrap(struct foliod *d, const char *given, int reset) {
    char hash[256], file[PATH_MAX + 32];
    snprintf(file, sizeof file, "%s/admin-password", d->cfg.data_dir);
    if (!reset && store_admin_get(d->store, hash, sizeof hash) == 0) return 0;
    const int explicit_pw = given && *given;
    char pw[64];
    if (!explicit_pw) {
        char key[AUTH_KEY_LEN + 1], unused[AUTH_HASH_HEX];
        int rc = auth_key_new(key, unused);
        if (rc) return rc;
        snprintf(pw, sizeof pw, "%.20s", key + 6);
        memset(key, 0, sizeof key);
    }
    int rc = auth_password_hash(explicit_pw ? given : pw, hash, sizeof hash);
    if (!rc) rc = store_admin_set(d->store, hash);
    if (!rc && explicit_pw) {
        if (unlink(file) != 0 && errno != ENOENT)
            fprintf(stderr, "foliod: warning: cannot remove %s: %s\n", file, strerror(errno));
    } else if (!rc) {
        /* O_EXCL after the unlink: never write through a link someone left there. */
        unlink(file);
        int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        const size_t n = strlen(pw);
        const int saved = fd >= 0 && write(fd, pw, n) == (ssize_t)n && write(fd, "\n", 1) == 1;
        if (fd >= 0) close(fd);
        if (!saved) fprintf(stderr, "foliod: warning: cannot write %s: %s\n", file, strerror(errno));
        fprintf(stderr, "foliod: the admin password is %s (%s%s; log in at /admin/ and keep it)\n", pw,
                saved ? "also in " : "shown once", saved ? file : "");
    }
    memset(pw, 0, sizeof pw);
    return rc;
}

/* --model DIR: registered under its directory's name when new, loaded, made `default`. */
static int start_model(struct foliod *d, const char *dir, int first) {
    char real[PATH_MAX];
    if (!realpath(dir, real)) return folio_err(FOLIO_EINVAL, "--model %s: %s", dir, strerror(errno));
    if (strlen(real) >= sizeof ((struct store_model *)0)->path)
        return folio_err(FOLIO_EINVAL, "--model %s: the path is too long", dir);
    struct store_model m = {0};
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", real);
    const char *name = basename(tmp);
    if (validate_model_name(name)) {
        char why[400];
        snprintf(why, sizeof why, "%s", folio_last_error());
        return folio_err(FOLIO_EINVAL, "--model %s: the directory's name becomes the model's: %s", dir, why);
    }
    int rc = store_model_find(d->store, name, &m);
    if (rc == FOLIO_ENOTFOUND) {
        memset(&m, 0, sizeof m);
        snprintf(m.name, sizeof m.name, "%s", name);
        snprintf(m.source, sizeof m.source, "local");
        memcpy(m.path, real, strlen(real) + 1);
        snprintf(m.state, sizeof m.state, "registered");
        if ((rc = store_model_add(d->store, &m))) return rc;
        store_event_add(d->store, "info", "model.added", m.id, "registered %s (%s) from --model", m.name, m.path);
    } else if (rc) {
        return rc;
    }
    if ((rc = supervisor_load(d->sup, m.id))) return rc;
    if (first) foliod_set_default_model(d, m.id);
    return 0;
}

int main(int argc, char **argv) {
    /* Request bodies of up to 16 MiB come and go: above 128 KiB they are mmap'd, so freeing
     * one gives it back to the OS, and few arenas keep the threads' free lists from pinning
     * memory (four 15 MiB bodies once left foliod at 2.5 GB RSS). */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_ARENA_MAX, 4);
    struct settings s = {0};
    struct foliod d = {0};
    struct front *front = NULL;
    foliod_init(&d);
    int rc = parse_flags(argc, argv, &s);
    if (rc) goto out;
    s.models_from_flags = s.num_models > 0;
    const char *conf = s.v[key_index("config")] ? s.v[key_index("config")] : getenv("FOLIO_CONFIG");
    if ((rc = read_conf(&s, conf ? conf : "/etc/folio/foliod.conf", conf != NULL))) goto out;
    for (int i = 0; i < NKEYS; i++)
        if (env_names[i] && getenv(env_names[i])) set_once(&s, i, getenv(env_names[i]), SRC_ENV);
    s.conf_path = conf ? conf : "/etc/folio/foliod.conf";
    if ((rc = resolve_secret(&s, "api_key", "FOLIO_API_KEY")) ||
        (rc = resolve_secret(&s, "admin_token", "FOLIO_ADMIN_TOKEN")) || (rc = resolve_secret(&s, "hf_token", "HF_TOKEN")) ||
        (rc = resolve_secret(&s, "admin_password", "FOLIO_ADMIN_PASSWORD")) || (rc = check_secret_lengths(&s)))
        goto out;

    char exe[PATH_MAX] = ".", exe_dir[PATH_MAX], db_dir[PATH_MAX + 16], ui_dir[PATH_MAX + 16], engine[PATH_MAX + 16];
    ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (el > 0) exe[el] = '\0';
    snprintf(exe_dir, sizeof exe_dir, "%s", dirname(exe));
    beside(exe_dir, "db", "schema.sql", "/usr/share/folio/db", db_dir, sizeof db_dir);
    beside(exe_dir, "admin-ui", "index.html", "/usr/share/folio/admin-ui", ui_dir, sizeof ui_dir);
    snprintf(engine, sizeof engine, "%s/folio-engine", exe_dir);
    if (access(engine, X_OK) != 0) snprintf(engine, sizeof engine, "/usr/bin/folio-engine");

#define V(name, dflt) (s.v[key_index(name)] ? s.v[key_index(name)] : (dflt))
    d.cfg.host = V("host", "127.0.0.1");
    d.cfg.port = atoi(V("port", "8000"));
    d.cfg.data_dir = V("data_dir", "/var/lib/folio");
    d.cfg.engine_bin = V("engine_bin", engine);
    d.cfg.db_dir = V("db_dir", db_dir);
    d.cfg.admin_ui_dir = V("admin_ui_dir", ui_dir);
    d.cfg.api_key = V("api_key", NULL);
    d.cfg.admin_token = V("admin_token", NULL);
    d.cfg.threads = atoi(V("threads", "256"));
    const int max_body_mib = atoi(V("max_body", "16"));
    d.cfg.max_body = (size_t)max_body_mib << 20;
    d.cfg.header_timeout = atoi(V("header_timeout", "20"));
    d.cfg.max_conns_per_client = atoi(V("max_connections_per_client", "128"));
    d.cfg.server_names = V("server_name", NULL);
    d.cfg.hf_endpoint = V("hf_endpoint", "https://huggingface.co");
    d.cfg.hf_token = V("hf_token", NULL);
    const char *admin_pw = V("admin_password", NULL);
    const char *ttl_s = V("responses_ttl", "2592000"), *resp_mib_s = V("responses_max_mib", "1024");
#undef V
    char *end = NULL;
    const long long ttl = strtoll(ttl_s, &end, 10);
    if (!*ttl_s || *end || ttl < 0 || ttl > 10LL * 366 * 86400) {
        rc = folio_err(FOLIO_EINVAL, "--responses-ttl must be 0 (store nothing) to 316224000 seconds (10 years)");
        goto out;
    }
    const long long resp_mib = strtoll(resp_mib_s, &end, 10);
    if (!*resp_mib_s || *end || resp_mib < 1 || resp_mib > (1LL << 20)) {
        rc = folio_err(FOLIO_EINVAL, "--responses-max-mib must be 1-1048576 MiB");
        goto out;
    }
    d.cfg.responses_ttl = ttl;
    d.cfg.responses_max_bytes = (int64_t)resp_mib << 20;
    if (max_body_mib < 1 || max_body_mib > 1024) {
        rc = folio_err(FOLIO_EINVAL, "--max-body must be 1-1024 MiB");
        goto out;
    }
    if (d.cfg.header_timeout < 1 || d.cfg.header_timeout > 3600) {
        rc = folio_err(FOLIO_EINVAL, "--header-timeout must be 1-3600 seconds");
        goto out;
    }
    if (d.cfg.max_conns_per_client < 0) {
        rc = folio_err(FOLIO_EINVAL, "--max-connections-per-client must be 0 (no cap) or more");
        goto out;
    }
    if (d.cfg.port < 0 || d.cfg.port > 65535) {
        rc = folio_err(FOLIO_EINVAL, "--port must be in [0, 65535]");
        goto out;
    }
    if (mkdir(d.cfg.data_dir, 0750) != 0 && errno != EEXIST) {
        rc = folio_err(FOLIO_EIO, "cannot create the data dir %s: %s", d.cfg.data_dir, strerror(errno));
        goto out;
    }
    char logs[PATH_MAX + 32];
    snprintf(logs, sizeof logs, "%s/logs", d.cfg.data_dir);
    if ((rc = foliod_open(&d))) goto out;
    if ((rc = admin_bootstrap(&d, admin_pw, s.reset_admin_password))) goto out;
    if (s.reset_admin_password) {
        fprintf(stderr, "foliod: the admin password is reset%s\n", admin_pw && *admin_pw ? " to FOLIO_ADMIN_PASSWORD" : "");
        goto out;
    }
    struct gpu_info gi[GPU_MAX];
    d.gpus = gpu_query(gi, GPU_MAX, NULL);

    /* SIGTERM and SIGINT are taken by sigwait below; every other thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct supervisor_params sp = supervisor_default_params();
    sp.engine_bin = d.cfg.engine_bin;
    sp.log_dir = logs;
    char templates[PATH_MAX + 32];
    snprintf(templates, sizeof templates, "%s/templates", d.cfg.data_dir);
    sp.template_dir = templates;
    sp.store = d.store;
    sp.gpus = d.gpus;
    sp.engine_connections = (d.cfg.threads > 0 ? d.cfg.threads : 256) + 16; /* + health, metrics, status */
    sp.on_change = on_change;
    sp.ud = &d;
    if ((rc = supervisor_create(&sp, &d.sup))) goto out;
    char models_dir[PATH_MAX + 32];
    snprintf(models_dir, sizeof models_dir, "%s/models", d.cfg.data_dir);
    const struct pull_params pp = {.store = d.store, .models_dir = models_dir, .endpoint = d.cfg.hf_endpoint,
                                   .env_token = d.cfg.hf_token, .stall_s = 30, .max_attempts = 6, .parallel = 4,
                                   .on_change = on_change, .on_done = on_pulled, .ud = &d};
    if ((rc = hub_global_init()) || (rc = pull_create(&pp, &d.pulls))) goto out;
    if ((rc = front_start(&d, &front))) goto out;
    pull_resume_all(d.pulls);
    struct bar_ctx bar = {.d = &d};
    for (int i = 0; i < s.num_models; i++) {
        if (hub_ref(s.models[i])) rc = start_hub_model(&d, s.models[i], i == 0, &bar.ids[bar.n++]);
        else rc = start_model(&d, s.models[i], i == 0);
        if (rc) goto out;
    }
    fprintf(stderr, "foliod %s: listening on http://%s:%d (data %s, engine %s)\n", FOLIO_VERSION, d.cfg.host,
            front_port(front), d.cfg.data_dir, d.cfg.engine_bin);
    char ready[PATH_MAX + 128];
    snprintf(ready, sizeof ready, "READY=1\nSTATUS=listening on %s:%d", d.cfg.host, front_port(front));
    if (sdnotify(ready)) fprintf(stderr, "foliod: %s\n", folio_last_error());
    pthread_t bar_thread;
    const int bar_running = bar.n > 0 && pthread_create(&bar_thread, NULL, progress_bar, &bar) == 0;
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "foliod: %s: stopping engines\n", strsignal(sig));
    sdnotify("STOPPING=1\nSTATUS=stopping engines");
    foliod_stop(&d);
    if (bar_running) pthread_join(bar_thread, NULL);
out:
    if (rc) fprintf(stderr, "foliod: error: %s\n", folio_last_error());
    /* Engines first: each drains its requests (their relays then end), bounded by the stop
     * timeout; event streams end at once. Then the HTTP server, whose handlers are done. */
    foliod_stop(&d);
    pull_shutdown(d.pulls); /* running pulls stop where they are, resumed at the next start */
    supervisor_shutdown(d.sup);
    front_stop(front);
    pull_free(d.pulls); /* after the HTTP handlers, which may still query it */
    supervisor_free(d.sup);
    foliod_close(&d); /* the audit writes the failed logins still pending */
    for (int i = 0; i < NKEYS; i++) free(s.v[i]);
    for (int i = 0; i < 16; i++) free(s.owned[i]);
    if (!rc) fprintf(stderr, "foliod: stopped\n");
    return rc ? 1 : 0;
}
