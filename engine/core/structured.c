/* structured: specs to compiled grammars, cached per engine. See structured.h. */
#include "core/structured.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

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
    int strict, tight_ws, num_choices;
    char *text;                 /* [len + frame_len] the spec and its frame, to tell hash collisions apart */
    size_t len, frame_len;
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

/* The cache key is the spec's text followed by its frame's, with the frame's length. */
static uint64_t spec_hash(const struct structured_spec *s) {
    uint64_t h = 1469598103934665603ull;
    const unsigned char head[3] = {(unsigned char)s->kind, (unsigned char)((s->strict != 0) | (s->tight_ws != 0) << 1), 0x5a};
    for (size_t i = 0; i < sizeof head; i++) h = (h ^ head[i]) * 1099511628211ull;
    for (size_t i = 0; i < s->len; i++) h = (h ^ (unsigned char)s->text[i]) * 1099511628211ull;
    for (size_t i = 0; s->frame && i < s->frame_len; i++) h = (h ^ (unsigned char)s->frame[i]) * 1099511628211ull;
    return h ^ (uint64_t)(s->frame ? s->frame_len + 1 : 0);
}

static int same_spec(const struct structured *g, const struct structured_spec *s, uint64_t h) {
    const size_t fl = s->frame ? s->frame_len : 0;
    return g->hash == h && g->kind == s->kind && g->strict == (s->strict != 0) && g->tight_ws == (s->tight_ws != 0) &&
           g->len == s->len &&
           g->frame_len == fl && g->num_choices == s->num_choices && memcmp(g->text, s->text, s->len) == 0 &&
           (fl == 0 || memcmp(g->text + g->len, s->frame, fl) == 0);
}

/* The spec's grammar, from the front end its kind names. */
static int spec_grammar(const struct structured_spec *s, struct grammar **out) {
    switch (s->kind) {
    case STRUCTURED_JSON: {
        struct json_schema_params p = json_schema_default_params();
        p.strict = s->strict;
        if (s->tight_ws) p.whitespace = JSON_SCHEMA_WS_TIGHT;
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

/* ---- frames: the text around a spec's sentences (structured.h) ---- */

static const char *frame_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static grammar_expr lit(struct grammar_builder *b, const char *s) { return grammar_literal(b, s, strlen(s)); }

/* Whitespace between a frame's texts: a bounded run, as json_schema allows between tokens, or
 * (tight) one space or a line break and its indent. */
static grammar_expr frame_ws(struct grammar_builder *b, int tight) {
    if (tight) return json_schema_tight_ws(b);
    uint32_t set[8] = {0};
    for (const char *c = " \t\r\n"; *c; c++) set[(uint8_t)*c >> 5] |= 1u << ((uint8_t)*c & 31);
    return grammar_repeat(b, grammar_bytes(b, set), 0, JSON_SCHEMA_MAX_WS);
}

/* The calls: open CALL (sep CALL){0,max-1} close, CALL = begin ws inner ws end; with a trigger
 * (tool_choice auto), free text that never spells it, then optionally the calls (whose first
 * begin is the trigger); with start, either the calls or text whose first byte is not the
 * first byte of open/begin (or whitespace). */
static grammar_expr frame_calls(struct grammar_builder *b, const cJSON *calls, grammar_expr inner) {
    const char *open = frame_str(calls, "open"), *close = frame_str(calls, "close");
    const char *begin = frame_str(calls, "begin"), *end = frame_str(calls, "end"), *sep = frame_str(calls, "sep");
    const cJSON *mx = cJSON_GetObjectItemCaseSensitive(calls, "max");
    const int max = cJSON_IsNumber(mx) && mx->valuedouble >= 1 && mx->valuedouble <= 1024 ? (int)mx->valuedouble : 0;
    /* "ws": false keeps the call's text exact (the XML form has no JSON between its tags) */
    grammar_expr ws = cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(calls, "ws")) ? grammar_empty(b) : frame_ws(b, 1);
    grammar_expr call_items[5] = {lit(b, begin), ws, inner, ws, lit(b, end)};
    grammar_expr call = grammar_seq(b, call_items, 5);
    grammar_expr more = grammar_repeat(b, grammar_seq2(b, lit(b, sep), call), 0, max ? max - 1 : -1);
    /* the calls end the output: nothing may follow the last (the model's EOS) */
    grammar_expr all_items[4] = {lit(b, open), call, more, lit(b, close)};
    grammar_expr all = grammar_seq(b, all_items, 4);
    const char *trigger = frame_str(calls, "trigger");
    if (*trigger) {
        /* The trigger opens the calls: open (or, without one, the first begin) starts with it. */
        return grammar_seq2(b, grammar_text_without(b, trigger, strlen(trigger)), grammar_repeat(b, all, 0, 1));
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(calls, "start"))) {
        /* the first byte of open, else begin, else the call's JSON object */
        const uint8_t first = (uint8_t)(*open ? open[0] : *begin ? begin[0] : '{');
        uint32_t set[8];
        memset(set, 0xff, sizeof set);
        set[first >> 5] &= ~(1u << (first & 31));
        for (const char *c = " \t\r\n"; *c; c++) set[(uint8_t)*c >> 5] &= ~(1u << ((uint8_t)*c & 31));
        uint32_t any[8];
        memset(any, 0xff, sizeof any);
        grammar_expr text = grammar_seq2(b, grammar_bytes(b, set), grammar_repeat(b, grammar_bytes(b, any), 0, -1));
        return grammar_seq2(b, ws, grammar_alt2(b, all, grammar_repeat(b, text, 0, 1)));
    }
    return all; /* forced: the output is the calls, from its first byte */
}

/* One XML parameter's value: free text up to its closing tag, or, where the tool's schema types
 * it (number, boolean, object, ...), the JSON that schema accepts. */
static grammar_expr xml_value(struct grammar_builder *b, const cJSON *schema) {
    static const char close[] = "\n</parameter>";
    if (!cJSON_IsObject(schema)) return grammar_text_without(b, close, sizeof close - 1);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(schema, "type");
    if (cJSON_IsString(type) && !strcmp(type->valuestring, "string")) {
        /* Text as written (no quotes): the schema's enum, pattern or length bounds where it
         * has them, else anything up to the closing tag. */
        const cJSON *en = cJSON_GetObjectItemCaseSensitive(schema, "enum");
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(schema, "pattern");
        const cJSON *mn = cJSON_GetObjectItemCaseSensitive(schema, "minLength");
        const cJSON *mx = cJSON_GetObjectItemCaseSensitive(schema, "maxLength");
        if (cJSON_IsArray(en)) {
            grammar_expr alts = grammar_alt(b, NULL, 0);
            const cJSON *v;
            cJSON_ArrayForEach(v, en) if (cJSON_IsString(v)) alts = grammar_alt2(b, alts, lit(b, v->valuestring));
            return alts;
        }
        if (cJSON_IsString(pat)) {
            struct grammar *g = NULL;
            grammar_expr e = gram_regex_compile(pat->valuestring, strlen(pat->valuestring), &g) == 0
                                 ? grammar_embed(b, g) : grammar_fail(b, folio_last_error());
            grammar_free(g);
            return e;
        }
        if (cJSON_IsNumber(mx) || cJSON_IsNumber(mn)) {
            /* a character other than a newline or '<', so that the closing tag cannot start inside */
            static const uint32_t not_nl_lt[2][2] = {{'\n', '\n'}, {'<', '<'}};
            const int lo = cJSON_IsNumber(mn) && mn->valuedouble > 0 ? (int)mn->valuedouble : 0;
            const int hi = cJSON_IsNumber(mx) && mx->valuedouble < GRAMMAR_MAX_REPEAT ? (int)mx->valuedouble : -1;
            return grammar_repeat(b, grammar_codepoints(b, not_nl_lt, 2, 1), lo > GRAMMAR_MAX_REPEAT ? GRAMMAR_MAX_REPEAT : lo,
                                  hi >= 0 && hi < lo ? lo : hi);
        }
        return grammar_text_without(b, close, sizeof close - 1);
    }
    char *text = cJSON_PrintUnformatted(schema);
    struct grammar *g = NULL;
    grammar_expr e = GRAMMAR_NONE;
    struct json_schema_params p = json_schema_default_params();
    p.whitespace = 0;
    if (text && json_schema_compile(text, strlen(text), &p, &g) == 0) e = grammar_embed(b, g);
    else grammar_fail(b, folio_last_error());
    grammar_free(g);
    free(text);
    return e;
}

/* The XML form of Qwen3-Coder's calls, one alternative a tool ("xml": [{"name", "params":
 * [{"name", "required", "schema"}]}]): <function=NAME>\n, then each parameter in the schema's
 * order (optional ones optional) as <parameter=P>\nVALUE\n</parameter>\n, then </function>. */
static grammar_expr xml_calls(struct grammar_builder *b, const cJSON *tools) {
    const int n = cJSON_GetArraySize(tools);
    if (n < 1) return grammar_alt(b, NULL, 0);
    grammar_expr *alts = malloc(sizeof *alts * (size_t)n);
    if (!alts) return grammar_fail(b, "out of memory");
    int k = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        char head[256];
        snprintf(head, sizeof head, "<function=%.200s>\n", frame_str(t, "name"));
        grammar_expr call = lit(b, head);
        const cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(t, "params")) {
            char open[256];
            snprintf(open, sizeof open, "<parameter=%.200s>\n", frame_str(p, "name"));
            grammar_expr items[3] = {lit(b, open), xml_value(b, cJSON_GetObjectItemCaseSensitive(p, "schema")),
                                     lit(b, "\n</parameter>\n")};
            grammar_expr one = grammar_seq(b, items, 3);
            if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "required"))) one = grammar_repeat(b, one, 0, 1);
            call = grammar_seq2(b, call, one);
        }
        alts[k++] = grammar_seq2(b, call, lit(b, "</function>"));
    }
    grammar_expr e = grammar_alt(b, alts, k);
    free(alts);
    return e;
}

/* g wrapped in the frame: [think block] then g, or the calls built around g (g may be NULL when
 * the frame's calls are XML). */
static int frame_wrap(const char *frame, size_t len, struct grammar **g) {
    cJSON *f = cJSON_ParseWithLength(frame, len);
    struct grammar_builder *b = grammar_builder_create();
    int rc = 0;
    if (!f || !cJSON_IsObject(f) || !b) {
        rc = f && b ? folio_err(FOLIO_EINVAL, "structured output: malformed frame") : folio_err(FOLIO_ENOMEM, "out of memory");
        goto out;
    }
    int root = grammar_rule_declare(b, "framed");
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(f, "calls");
    const cJSON *xml = cJSON_IsObject(calls) ? cJSON_GetObjectItemCaseSensitive(calls, "xml") : NULL;
    if (!*g && !cJSON_IsArray(xml)) {
        rc = folio_err(FOLIO_EINVAL, "structured output: a frame without a spec needs XML calls");
        goto out;
    }
    grammar_expr body = cJSON_IsArray(xml) ? xml_calls(b, xml) : grammar_embed(b, *g);
    if (cJSON_IsObject(calls)) body = frame_calls(b, calls, body);
    const cJSON *think = cJSON_GetObjectItemCaseSensitive(f, "think");
    if (cJSON_IsObject(think)) {
        const char *start = frame_str(think, "start"), *end = frame_str(think, "end");
        grammar_expr block_items[3] = {grammar_text_without(b, end, strlen(end)), lit(b, end), frame_ws(b, 0)};
        grammar_expr block = grammar_seq(b, block_items, 3);
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(think, "open")))
            block = grammar_repeat(b, grammar_seq2(b, lit(b, start), block), 0, 1);
        body = grammar_seq2(b, block, body);
    }
    if (grammar_rule_define(b, root, body) < 0) {
        rc = FOLIO_EINVAL;
        goto out;
    }
    struct grammar *wrapped = NULL;
    if ((rc = grammar_builder_finish(b, root, &wrapped))) goto out;
    grammar_free(*g);
    *g = wrapped;
out:
    grammar_builder_free(b);
    cJSON_Delete(f);
    return rc;
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

int structured_spec_grammar(const struct structured_spec *spec, struct grammar **out) {
    struct grammar *gr = NULL;
    *out = NULL;
    /* a frame alone (XML tool calls) builds the whole grammar */
    int rc = spec->kind == STRUCTURED_NONE && spec->frame ? 0 : spec_grammar(spec, &gr);
    if (!rc && spec->frame) rc = frame_wrap(spec->frame, spec->frame_len, &gr);
    if (rc) grammar_free(gr);
    else *out = gr;
    return rc;
}

static void *compile_main(void *arg) {
    struct compile_job *j = arg;
    struct grammar *gr = NULL;
    j->rc = structured_spec_grammar(j->spec, &gr);
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
    if (!g || !(g->text = malloc(spec->len + (spec->frame ? spec->frame_len : 0) + 1))) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(g->text, spec->text, spec->len);
    if (spec->frame) memcpy(g->text + spec->len, spec->frame, spec->frame_len);
    g->len = spec->len;
    g->frame_len = spec->frame ? spec->frame_len : 0;
    g->text[g->len + g->frame_len] = '\0';
    g->hash = h;
    g->kind = spec->kind;
    g->strict = spec->strict != 0;
    g->tight_ws = spec->tight_ws != 0;
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
