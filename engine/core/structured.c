/* structured: specs to compiled grammars, cached per engine. See structured.h. */
#include "core/structured.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "grammar/gbnf.h"
#include "grammar/gram_matcher.h"
#include "grammar/gram_regex.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"
#include "text/tokenizer.h"

struct structured {
    struct structured_cache *cache;
    uint64_t hash;
    enum structured_kind kind;
    int strict, num_choices;
    char *text;                 /* [len] the spec, to tell hash collisions apart */
    size_t len;
    struct gram_compiled *compiled;
    int refs;                   /* under cache->mu: requests using it, plus 1 while cached */
    int cached;
    size_t bytes;               /* gram_compiled_bytes */
    unsigned long long last_used;
};

/* Compiles that may run at once: each may hold up to GRAM_MAX_COMPILED_BYTES while it works,
 * so this bounds what a burst of new schemas can cost. */
#define STRUCTURED_COMPILES 2

struct structured_cache {
    pthread_mutex_t mu;
    pthread_cond_t slot_cv;     /* a compile slot came free */
    int compiling;              /* under mu: compiles running */
    size_t bytes, max_bytes;    /* under mu: compiled bytes of the cached entries, and the budget */
    const struct tokenizer *tok;
    int32_t *stop_ids;
    int num_stop;
    struct gram_vocab *vocab;   /* built on first use, under mu */
    struct structured **e;      /* [max] */
    int n, max;
    unsigned long long clock;
};

struct structured_cache *structured_cache_create(const struct tokenizer *tok, const int32_t *stop_ids,
                                                 int num_stop, int max_entries, size_t max_bytes) {
    struct structured_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->max = max_entries > 0 ? max_entries : 1;
    c->max_bytes = max_bytes;
    c->e = calloc((size_t)c->max, sizeof *c->e);
    c->stop_ids = malloc(sizeof(int32_t) * (size_t)(num_stop > 0 ? num_stop : 1));
    if (!c->e || !c->stop_ids) {
        free(c->e);
        free(c->stop_ids);
        free(c);
        return NULL;
    }
    if (num_stop > 0) memcpy(c->stop_ids, stop_ids, sizeof(int32_t) * (size_t)num_stop);
    c->num_stop = num_stop;
    c->tok = tok;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->slot_cv, NULL);
    return c;
}

static void entry_free(struct structured *g) {
    if (!g) return;
    gram_compiled_free(g->compiled);
    free(g->text);
    free(g);
}

void structured_cache_free(struct structured_cache *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) {
        /* A request still holding one keeps it alive; it is freed on its release. */
        c->e[i]->cached = 0;
        c->e[i]->cache = NULL;
        if (--c->e[i]->refs == 0) entry_free(c->e[i]);
    }
    gram_vocab_free(c->vocab);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->slot_cv);
    free(c->e);
    free(c->stop_ids);
    free(c);
}

/* Every token's bytes, once per engine (under c->mu). */
/* A compile's threads: the machine's cores, up to STRUCTURED_COMPILE_THREADS, since a request
 * waits on its compile. FOLIO_COMPILE_THREADS sets it (benchmarks compare 1 with the default). */
#define STRUCTURED_COMPILE_THREADS 4
int structured_compile_threads(void) {
    const char *e = getenv("FOLIO_COMPILE_THREADS");
    long n = e && *e ? strtol(e, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    if (!(e && *e) && n > STRUCTURED_COMPILE_THREADS) n = STRUCTURED_COMPILE_THREADS;
    return n < 1 ? 1 : n > GRAM_MAX_COMPILE_THREADS ? GRAM_MAX_COMPILE_THREADS : (int)n;
}

static int build_vocab(struct structured_cache *c) {
    if (c->vocab) return 0;
    const int V = tokenizer_vocab_size(c->tok);
    const size_t cap = tokenizer_max_token_bytes(c->tok);
    int rc = 0;
    uint8_t **bytes = calloc((size_t)V, sizeof *bytes);
    uint32_t *lens = calloc((size_t)V, sizeof *lens);
    uint8_t *buf = malloc(cap);
    if (!bytes || !lens || !buf) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory building the grammar vocabulary");
        goto out;
    }
    for (int i = 0; i < V; i++) {
        int n = tok_token_bytes(c->tok, i, buf, cap);
        if (n < 0) {
            rc = folio_err(FOLIO_EINVAL, "token %d: its bytes do not fit %zu", i, cap);
            goto out;
        }
        lens[i] = (uint32_t)n;
        if (n == 0) continue;
        bytes[i] = malloc((size_t)n);
        if (!bytes[i]) {
            rc = folio_err(FOLIO_ENOMEM, "out of memory building the grammar vocabulary");
            goto out;
        }
        memcpy(bytes[i], buf, (size_t)n);
    }
    c->vocab = gram_vocab_create(V, (const uint8_t *const *)bytes, lens, c->stop_ids, c->num_stop);
    if (!c->vocab) rc = folio_err(FOLIO_ENOMEM, "out of memory building the grammar vocabulary");
    else gram_vocab_set_compile_threads(c->vocab, structured_compile_threads());
out:
    if (bytes)
        for (int i = 0; i < V; i++) free(bytes[i]);
    free(bytes);
    free(lens);
    free(buf);
    return rc;
}

static uint64_t spec_hash(const struct structured_spec *s) {
    uint64_t h = 1469598103934665603ull;
    const unsigned char head[3] = {(unsigned char)s->kind, (unsigned char)(s->strict != 0), 0x5a};
    for (size_t i = 0; i < sizeof head; i++) h = (h ^ head[i]) * 1099511628211ull;
    for (size_t i = 0; i < s->len; i++) h = (h ^ (unsigned char)s->text[i]) * 1099511628211ull;
    return h;
}

static int same_spec(const struct structured *g, const struct structured_spec *s, uint64_t h) {
    return g->hash == h && g->kind == s->kind && g->strict == (s->strict != 0) && g->len == s->len &&
           g->num_choices == s->num_choices && memcmp(g->text, s->text, s->len) == 0;
}

/* The spec's grammar, from the front end its kind names. */
static int spec_grammar(const struct structured_spec *s, struct grammar **out) {
    switch (s->kind) {
    case STRUCTURED_JSON: {
        struct json_schema_params p = json_schema_default_params();
        p.strict = s->strict;
        return json_schema_compile(s->text, s->len, &p, out);
    }
    case STRUCTURED_REGEX:
        return gram_regex_compile(s->text, s->len, out);
    case STRUCTURED_GRAMMAR:
        return gbnf_is_gbnf(s->text, s->len) ? gbnf_compile(s->text, s->len, out)
                                             : gbnf_compile_lark(s->text, s->len, out);
    case STRUCTURED_CHOICE: {
        if (s->num_choices <= 0) return folio_err(FOLIO_EINVAL, "choice needs at least one string");
        const char **v = malloc(sizeof *v * (size_t)s->num_choices);
        size_t *n = malloc(sizeof *n * (size_t)s->num_choices);
        int rc = 0;
        if (!v || !n) {
            rc = folio_err(FOLIO_ENOMEM, "out of memory");
            goto out;
        }
        size_t off = 0;
        for (int i = 0; i < s->num_choices; i++) {
            if (off >= s->len) {
                rc = folio_err(FOLIO_EINVAL, "choice: malformed list");
                goto out;
            }
            v[i] = s->text + off;
            n[i] = strnlen(v[i], s->len - off);
            off += n[i] + 1;
        }
        rc = grammar_from_choices(v, n, s->num_choices, out);
    out:
        free(v);
        free(n);
        return rc;
    }
    case STRUCTURED_NONE:
        break;
    }
    return folio_err(FOLIO_EINVAL, "no structured-output spec");
}

/* The front ends recurse per nesting level of a schema, regex or grammar (each bounded), and the
 * compile per rule call; HTTP threads have small stacks (CivetWeb's 100 KiB, and sanitizer
 * builds use several times the frame size). So a compile runs on a thread of its own with room
 * to spare, and the caller waits for it. */
#define STRUCTURED_COMPILE_STACK ((size_t)16 << 20)

struct compile_job {
    const struct structured_spec *spec;
    struct gram_vocab *vocab;
    struct gram_compiled *out;
    int rc;
    char err[512]; /* folio_last_error is per thread: the worker's message, for the caller */
};

static void *compile_main(void *arg) {
    struct compile_job *j = arg;
    struct grammar *gr = NULL;
    j->rc = spec_grammar(j->spec, &gr);
    if (!j->rc) j->rc = gram_compile(gr, j->vocab, &j->out);
    if (j->rc) snprintf(j->err, sizeof j->err, "%s", folio_last_error());
    grammar_free(gr);
    return NULL;
}

static int compile_spec(const struct structured_spec *spec, struct gram_vocab *vocab, struct gram_compiled **out) {
    struct compile_job j = {.spec = spec, .vocab = vocab};
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, STRUCTURED_COMPILE_STACK);
    const int started = pthread_create(&t, &attr, compile_main, &j) == 0;
    pthread_attr_destroy(&attr);
    if (!started) return folio_err(FOLIO_ENOMEM, "cannot start a thread to compile the grammar");
    pthread_join(t, NULL);
    if (j.rc) return folio_err(j.rc, "%s", j.err);
    *out = j.out;
    return 0;
}

/* Drops the least recently used unreferenced entries until there is room for `need` more
 * bytes (under mu). */
static void make_room(struct structured_cache *c, size_t need) {
    while (c->n >= c->max || (c->n > 0 && c->bytes + need > c->max_bytes)) {
        int victim = -1;
        for (int i = 0; i < c->n; i++)
            if (c->e[i]->refs == 1 && (victim < 0 || c->e[i]->last_used < c->e[victim]->last_used)) victim = i;
        if (victim < 0) return;
        struct structured *g = c->e[victim];
        c->e[victim] = c->e[--c->n];
        c->bytes -= g->bytes;
        entry_free(g);
    }
}

int structured_get(struct structured_cache *c, const struct structured_spec *spec, struct structured **out,
                   double *compile_s, int *hit) {
    const uint64_t h = spec_hash(spec);
    *out = NULL;
    if (compile_s) *compile_s = 0;
    if (hit) *hit = 0;
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->n; i++)
        if (same_spec(c->e[i], spec, h)) {
            c->e[i]->refs++;
            c->e[i]->last_used = ++c->clock;
            *out = c->e[i];
            if (hit) *hit = 1;
            pthread_mutex_unlock(&c->mu);
            return 0;
        }
    rc = build_vocab(c);
    struct gram_vocab *vocab = c->vocab;
    while (!rc && c->compiling >= STRUCTURED_COMPILES) pthread_cond_wait(&c->slot_cv, &c->mu);
    if (!rc) c->compiling++;
    pthread_mutex_unlock(&c->mu);
    if (rc) return rc;

    /* Compiled outside the lock: a slow schema does not hold up the others. */
    const double t0 = folio_now();
    struct structured *g = calloc(1, sizeof *g);
    if (!g || !(g->text = malloc(spec->len + 1))) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(g->text, spec->text, spec->len);
    g->text[spec->len] = '\0';
    g->len = spec->len;
    g->hash = h;
    g->kind = spec->kind;
    g->strict = spec->strict != 0;
    g->num_choices = spec->num_choices;
    rc = compile_spec(spec, vocab, &g->compiled);
    pthread_mutex_lock(&c->mu);
    c->compiling--;
    pthread_cond_signal(&c->slot_cv);
    pthread_mutex_unlock(&c->mu);
    if (rc) goto fail;
    g->bytes = gram_compiled_bytes(g->compiled);
    if (compile_s) *compile_s = folio_now() - t0;

    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->n; i++)
        if (same_spec(c->e[i], spec, h)) { /* another thread compiled it meanwhile */
            c->e[i]->refs++;
            c->e[i]->last_used = ++c->clock;
            *out = c->e[i];
            pthread_mutex_unlock(&c->mu);
            entry_free(g);
            return 0;
        }
    g->cache = c;
    g->refs = 1;
    g->last_used = ++c->clock;
    make_room(c, g->bytes);
    if (c->n < c->max && c->bytes + g->bytes <= c->max_bytes) {
        g->cached = 1;
        g->refs++;
        c->bytes += g->bytes;
        c->e[c->n++] = g;
    } else {
        g->cache = NULL; /* every entry is in use: this one lives only as long as its request */
    }
    pthread_mutex_unlock(&c->mu);
    *out = g;
    return 0;
fail:
    entry_free(g);
    return rc;
}

void structured_retain(struct structured *g) {
    struct structured_cache *c = g->cache;
    if (c) pthread_mutex_lock(&c->mu);
    g->refs++;
    if (c) pthread_mutex_unlock(&c->mu);
}

void structured_release(struct structured *g) {
    if (!g) return;
    struct structured_cache *c = g->cache;
    if (c) pthread_mutex_lock(&c->mu);
    const int last = --g->refs == 0;
    if (c) pthread_mutex_unlock(&c->mu);
    if (last) entry_free(g);
}

const struct gram_compiled *structured_compiled(const struct structured *g) { return g->compiled; }

int structured_metrics_kind(enum structured_kind k) {
    switch (k) {
    case STRUCTURED_JSON: return 0;
    case STRUCTURED_REGEX: return 1;
    case STRUCTURED_CHOICE: return 2;
    case STRUCTURED_GRAMMAR: return 3;
    case STRUCTURED_NONE: break;
    }
    return -1;
}
