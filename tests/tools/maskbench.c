/* maskbench: the structured-output engine on MaskBench (JSONSchemaBench), through the fast path
 * the server uses: every schema compiled for a real tokenizer's vocabulary, every test instance
 * serialized as a model would emit it (compact JSON, keys in the schema's order), tokenized, and fed token by token through
 * a matcher, with the token mask computed before each token, as the step loop does.
 *
 *   maskbench TOKENIZER_DIR SCHEMA_DIR [--limit N] [--every K] [--quiet] [--compile-only]
 * MASKBENCH_TIMES=1 prints each supported schema's compile time.
 * --every K takes every Kth schema (in name order, so every source is sampled).
 *
 * Correctness, for each supported schema: every valid instance's tokens must each be in the
 * mask and accepted, and EOS must be allowed at the end; an invalid instance must be refused
 * somewhere (a token out of the mask, or no EOS at the end). The mask must agree with
 * accept_token on every instance token (a token the mask allows is accepted, and the other
 * way round). Speed: the mask's time per token (mean, p50, p99, max) and the compile time per
 * schema (median, p90, max), measured here.
 *
 * Prints a table, then one line "maskbench: key=value ..." that tests/structured/run.sh reads.
 * Exit 1 when a valid instance of a supported schema is refused or the mask disagrees with
 * accept_token; else 0. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "core/structured.h"
#include "grammar/gram_matcher.h"
#include "text/tokenizer.h"
#include "json_order.h"

struct dvec {
    double *v;
    size_t n, cap;
};

static int dvec_push(struct dvec *d, double x) {
    if (d->n == d->cap) {
        size_t c = d->cap ? d->cap * 2 : 1024;
        double *v = realloc(d->v, c * sizeof *v);
        if (!v) return -1;
        d->v = v;
        d->cap = c;
    }
    d->v[d->n++] = x;
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double quantile(struct dvec *d, double q) {
    if (!d->n) return 0;
    size_t i = (size_t)(q * (double)(d->n - 1) + 0.5);
    return d->v[i < d->n ? i : d->n - 1];
}

static double mean(const struct dvec *d) {
    double s = 0;
    for (size_t i = 0; i < d->n; i++) s += d->v[i];
    return d->n ? s / (double)d->n : 0;
}

/* Unsupported-feature histogram, keyed by the quoted keyword in the error message. */
#define MAX_REASONS 64
static struct {
    char key[64];
    int n;
} reasons[MAX_REASONS];
static int num_reasons;

static void count_reason(const char *msg) {
    char key[64] = "other";
    const char *q = strchr(msg, '\'');
    if (q) {
        const char *e = strchr(q + 1, '\'');
        if (e && e - q - 1 < (long)sizeof key) snprintf(key, sizeof key, "%.*s", (int)(e - q - 1), q + 1);
    }
    for (int i = 0; i < num_reasons; i++)
        if (strcmp(reasons[i].key, key) == 0) {
            reasons[i].n++;
            return;
        }
    if (num_reasons < MAX_REASONS) {
        snprintf(reasons[num_reasons].key, sizeof reasons[num_reasons].key, "%s", key);
        reasons[num_reasons++].n = 1;
    }
}

struct totals {
    int files, supported, valid, valid_ok, invalid, invalid_refused, disagree;
};

/* Feeds one instance; returns 1 when the whole text was accepted with EOS allowed at its end,
 * 0 when refused. *disagree counts tokens where the mask and accept_token differ. */
static int run_instance(struct gram_matcher *m, const struct tokenizer *tok, uint32_t *mask, int32_t eos,
                        const char *text, struct dvec *mask_t, int *disagree) {
    int32_t *ids = NULL;
    int n = 0, ok = 1;
    if (tokenizer_encode(tok, text, strlen(text), 0, &ids, &n)) return 0;
    gram_matcher_reset(m);
    for (int i = 0; i < n && ok; i++) {
        const double t0 = folio_now();
        gram_matcher_fill_mask(m, mask);
        dvec_push(mask_t, folio_now() - t0);
        const int allowed = (mask[ids[i] >> 5] >> (ids[i] & 31)) & 1;
        const int accepted = gram_matcher_accept_token(m, ids[i]) == 0;
        if (allowed != accepted) (*disagree)++;
        ok = accepted;
    }
    if (ok) {
        gram_matcher_fill_mask(m, mask);
        const int eos_ok = eos >= 0 && ((mask[eos >> 5] >> (eos & 31)) & 1);
        if (eos_ok != gram_matcher_accepting(m)) (*disagree)++;
        ok = gram_matcher_accepting(m);
    }
    free(ids);
    return ok;
}

static int run_file(const char *path, struct structured_cache *cache, const struct tokenizer *tok, uint32_t *mask,
                    int32_t eos, struct totals *t, struct dvec *mask_t, struct dvec *compile_t, int quiet,
                    int compile_only) {
    char *buf = NULL;
    size_t len = 0;
    if (folio_read_file(path, &buf, &len)) return 0;
    cJSON *doc = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!doc) return 0;
    t->files++;
    cJSON *schema = cJSON_GetObjectItemCaseSensitive(doc, "schema");
    cJSON *tests = cJSON_GetObjectItemCaseSensitive(doc, "tests");
    char *text = schema ? cJSON_PrintUnformatted(schema) : NULL;
    struct structured *g = NULL;
    double cs = 0;
    int hit = 0;
    struct structured_spec spec = {.kind = STRUCTURED_JSON, .text = text, .len = text ? strlen(text) : 0};
    if (!text || structured_get(cache, &spec, &g, &cs, &hit)) {
        count_reason(folio_last_error());
        if (!quiet) printf("  unsupported %s: %s\n", strrchr(path, '/') + 1, folio_last_error());
        goto out;
    }
    t->supported++;
    dvec_push(compile_t, cs);
    if (getenv("MASKBENCH_TIMES")) printf("compile %s %.3f ms\n", strrchr(path, '/') + 1, cs * 1e3);
    struct gram_matcher *m = gram_matcher_create(structured_compiled(g));
    const cJSON *tc;
    if (compile_only) tests = NULL;
    cJSON_ArrayForEach(tc, tests) {
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(tc, "data");
        const int valid = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tc, "valid"));
        char *inst = cJSON_PrintUnformatted(data);
        cJSON *ordered = json_order_reorder(schema, schema, data, 0);
        char *inst2 = ordered ? cJSON_PrintUnformatted(ordered) : NULL;
        cJSON_Delete(ordered);
        if (!inst || !inst2 || !m) {
            free(inst);
            free(inst2);
            continue;
        }
        /* The grammar writes keys in the schema's order: an instance counts as accepted when
         * it is as written or with its keys in that order (the same text when they already are). */
        int ok = run_instance(m, tok, mask, eos, inst, mask_t, &t->disagree);
        if (!ok && strcmp(inst, inst2) != 0) ok = run_instance(m, tok, mask, eos, inst2, mask_t, &t->disagree);
        free(inst2);
        if (valid) {
            t->valid++;
            t->valid_ok += ok;
            if (!ok && !quiet) printf("  REFUSED valid %s: %.200s\n", strrchr(path, '/') + 1, inst);
        } else {
            t->invalid++;
            t->invalid_refused += !ok;
        }
        free(inst);
    }
    gram_matcher_free(m);
    structured_release(g);
out:
    free(text);
    cJSON_Delete(doc);
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }
static int is_json(const struct dirent *d) {
    size_t n = strlen(d->d_name);
    return n > 5 && strcmp(d->d_name + n - 5, ".json") == 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: maskbench TOKENIZER_DIR SCHEMA_DIR [--limit N] [--every K] [--quiet] [--compile-only]\n");
        return 2;
    }
    int limit = 1 << 30, quiet = 0, every = 1, compile_only = 0;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) limit = atoi(argv[++i]);
        else if (strcmp(argv[i], "--every") == 0 && i + 1 < argc) every = atoi(argv[++i]) > 0 ? atoi(argv[i]) : 1;
        else if (strcmp(argv[i], "--quiet") == 0) quiet = 1;
        else if (strcmp(argv[i], "--compile-only") == 0) compile_only = 1;
    }
    struct tokenizer *tok = NULL;
    if (tokenizer_load(argv[1], &tok)) {
        fprintf(stderr, "maskbench: %s\n", folio_last_error());
        return 2;
    }
    const int32_t eos = tokenizer_eos_id(tok);
    const int V = tokenizer_vocab_size(tok);
    struct structured_cache *cache = structured_cache_create(tok, &eos, eos >= 0, 1, (size_t)256 << 20);
    uint32_t *mask = malloc(sizeof(uint32_t) * (size_t)((V + 31) / 32));
    struct dirent **ents = NULL;
    const int ne = scandir(argv[2], &ents, is_json, by_name);
    if (!cache || !mask || ne < 0) {
        fprintf(stderr, "maskbench: cannot start (%s)\n", ne < 0 ? "no schema directory" : "out of memory");
        return 2;
    }
    struct totals t = {0};
    struct dvec mask_t = {0}, compile_t = {0};
    /* The vocabulary is built on the first compile; time it apart from the schemas'. */
    const double v0 = folio_now();
    struct structured *warm = NULL;
    struct structured_spec any = {.kind = STRUCTURED_JSON, .text = "{}", .len = 2};
    if (structured_get(cache, &any, &warm, NULL, NULL)) {
        fprintf(stderr, "maskbench: %s\n", folio_last_error());
        return 2;
    }
    structured_release(warm);
    const double vocab_s = folio_now() - v0;
    for (int i = 0, taken = 0; i < ne && taken < limit; i++) {
        if (i % every) continue;
        taken++;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[2], ents[i]->d_name);
        run_file(path, cache, tok, mask, eos, &t, &mask_t, &compile_t, quiet, compile_only);
    }
    for (int i = 0; i < ne; i++) free(ents[i]);
    free(ents);
    qsort(mask_t.v, mask_t.n, sizeof *mask_t.v, cmp_double);
    qsort(compile_t.v, compile_t.n, sizeof *compile_t.v, cmp_double);

    printf("\nMaskBench with %s (vocabulary %d; built in %.1f ms)\n", argv[1], V, vocab_s * 1e3);
    printf("| | |\n|---|---|\n");
    printf("| schemas supported | %d of %d (%.1f%%) |\n", t.supported, t.files,
           t.files ? 100.0 * t.supported / t.files : 0);
    printf("| valid instances accepted | %d of %d |\n", t.valid_ok, t.valid);
    printf("| invalid instances refused | %d of %d |\n", t.invalid_refused, t.invalid);
    printf("| mask / accept disagreements | %d |\n", t.disagree);
    printf("| mask per token: mean, p50, p99, max | %.1f, %.1f, %.1f, %.1f us (%zu masks) |\n", mean(&mask_t) * 1e6,
           quantile(&mask_t, 0.5) * 1e6, quantile(&mask_t, 0.99) * 1e6, mask_t.n ? mask_t.v[mask_t.n - 1] * 1e6 : 0,
           mask_t.n);
    printf("| compile per schema (%d threads): median, p90, max | %.2f, %.2f, %.2f ms |\n",
           structured_compile_threads(), quantile(&compile_t, 0.5) * 1e3, quantile(&compile_t, 0.9) * 1e3,
           compile_t.n ? compile_t.v[compile_t.n - 1] * 1e3 : 0);
    printf("| published anchor: llama.cpp GBNF (MaskBench, 150k vocabulary) | ~6000 us per token |\n");
    if (num_reasons) {
        printf("unsupported, by keyword:");
        for (int i = 0; i < num_reasons; i++) printf(" %s %d;", reasons[i].key, reasons[i].n);
        printf("\n");
    }
    printf("maskbench: files=%d supported=%d valid=%d valid_ok=%d invalid=%d invalid_refused=%d disagree=%d "
           "mask_mean_us=%.1f mask_p50_us=%.1f mask_p99_us=%.1f mask_max_us=%.1f compile_median_ms=%.2f\n",
           t.files, t.supported, t.valid, t.valid_ok, t.invalid, t.invalid_refused, t.disagree,
           mean(&mask_t) * 1e6, quantile(&mask_t, 0.5) * 1e6, quantile(&mask_t, 0.99) * 1e6,
           mask_t.n ? mask_t.v[mask_t.n - 1] * 1e6 : 0, quantile(&compile_t, 0.5) * 1e3);
    free(mask_t.v);
    free(compile_t.v);
    free(mask);
    structured_cache_free(cache);
    tokenizer_free(tok);
    return t.valid_ok != t.valid || t.disagree ? 1 : 0;
}
