/* jsonschema_check: runs JSON Schema test files (MaskBench's {description, meta, schema,
 * tests: [{description, valid, data}]}) through json_schema_compile and grammar_matches.
 *
 *   jsonschema_check DIR [--max-bytes N] [-v]
 *
 * Each schema compiles with strict 0, whitespace 1. Each valid instance must be accepted in
 * compact form and in JSON.stringify(x, null, 2) form; each invalid one rejected in both. The
 * grammar fixes the order of object keys (the schema's order, additional keys last), so an
 * instance's keys are put in that order first, as a model following the grammar writes them;
 * an instance is accepted when its as-written or its reordered form is. Numbers are printed the
 * way JSON.stringify prints them (shortest round-trip digits, positional from 1e-7 to 1e21).
 *
 * Prints: schemas supported / total, with a histogram of the refusals' keywords; valid
 * instances accepted / checked; invalid instances rejected / checked, with the misses grouped
 * by the relaxations (json_schema_compile_ex) the schema used ("none" means a bug). Instances
 * over --max-bytes (default 20000) are skipped and counted, since the reference recognizer is
 * slow on long inputs. -v lists each failure. */
#include "grammar/json_schema.h"
#include "base/sbuf.h"
#include "base/util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct hist {
    char *key[256];
    int count[256];
    int n;
};

static void hist_add(struct hist *h, const char *key) {
    for (int i = 0; i < h->n; i++)
        if (strcmp(h->key[i], key) == 0) {
            h->count[i]++;
            return;
        }
    if (h->n < 256) {
        h->key[h->n] = strdup(key);
        h->count[h->n++] = 1;
    }
}

static void hist_print(const struct hist *h, const char *title) {
    printf("%s:\n", title);
    int done[256] = {0};
    for (int k = 0; k < h->n; k++) {
        int best = -1;
        for (int i = 0; i < h->n; i++)
            if (!done[i] && (best < 0 || h->count[i] > h->count[best])) best = i;
        done[best] = 1;
        printf("  %5d  %s\n", h->count[best], h->key[best]);
    }
}

/* ---- printing ---- */

struct buf {
    char *p;
    size_t n, cap;
};

static void put(struct buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->cap + n) * 2 + 64;
        b->p = realloc(b->p, cap);
        if (!b->p) abort();
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}
static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

static void put_str(struct buf *b, const char *s) {
    puts_(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char e[8];
        switch (*p) {
        case '"': puts_(b, "\\\""); break;
        case '\\': puts_(b, "\\\\"); break;
        case '\b': puts_(b, "\\b"); break;
        case '\f': puts_(b, "\\f"); break;
        case '\n': puts_(b, "\\n"); break;
        case '\r': puts_(b, "\\r"); break;
        case '\t': puts_(b, "\\t"); break;
        default:
            if (*p < 0x20) {
                snprintf(e, sizeof(e), "\\u%04x", *p);
                puts_(b, e);
            } else {
                put(b, (const char *)p, 1);
            }
        }
    }
    puts_(b, "\"");
}

/* As JSON.stringify, and as json_schema spells its consts. */
static void put_num(struct buf *b, double d) {
    char out[64];
    json_schema_format_number(d, out, sizeof out);
    puts_(b, out);
}

static void indent(struct buf *b, int ind, int level) {
    if (!ind) return;
    puts_(b, "\n");
    for (int i = 0; i < ind * level; i++) puts_(b, " ");
}

static void print_value(struct buf *b, const cJSON *v, int ind, int level) {
    if (cJSON_IsNull(v)) puts_(b, "null");
    else if (cJSON_IsTrue(v)) puts_(b, "true");
    else if (cJSON_IsFalse(v)) puts_(b, "false");
    else if (cJSON_IsNumber(v)) put_num(b, v->valuedouble);
    else if (cJSON_IsString(v)) put_str(b, v->valuestring);
    else {
        int obj = cJSON_IsObject(v);
        puts_(b, obj ? "{" : "[");
        int any = 0;
        for (const cJSON *e = v->child; e; e = e->next) {
            if (any) puts_(b, ",");
            indent(b, ind, level + 1);
            if (obj) {
                put_str(b, e->string);
                puts_(b, ind ? ": " : ":");
            }
            print_value(b, e, ind, level + 1);
            any = 1;
        }
        if (any) indent(b, ind, level);
        puts_(b, obj ? "}" : "]");
    }
}

#include "json_order.h"

/* ---- the run ---- */

struct totals {
    int files, supported, valid_n, valid_ok, invalid_n, invalid_ok, skipped, reordered_needed;
    struct hist unsup, misses;
    double match_s;
};

static int matches(struct totals *t, const struct grammar *g, const cJSON *v, int ind) {
    struct buf b = {0};
    print_value(&b, v, ind, 0);
    clock_t t0 = clock();
    int ok = grammar_matches(g, (const uint8_t *)b.p, b.n);
    t->match_s += (double)(clock() - t0) / CLOCKS_PER_SEC;
    free(b.p);
    return ok;
}

static void unsup_key(const char *msg, char *key, size_t n) {
    const char *k = strstr(msg, "keyword '");
    if (k) {
        k += 9;
        const char *e = strchr(k, '\'');
        snprintf(key, n, "%.*s", e ? (int)(e - k) : 20, k);
        const char *colon = strstr(e ? e : k, ": ");
        if (colon && strncmp(key, "$ref", 4) == 0) snprintf(key + strlen(key), n - strlen(key), " (%.40s)", colon + 2);
        return;
    }
    snprintf(key, n, "%.60s", msg);
}

static void run_file(struct totals *t, const char *path, const char *name, size_t max_bytes, int verbose) {
    char *text = NULL;
    size_t len;
    if (folio_read_file(path, &text, &len)) {
        fprintf(stderr, "%s: %s\n", name, folio_last_error());
        return;
    }
    cJSON *doc = cJSON_ParseWithLength(text, len);
    free(text);
    if (!doc) {
        fprintf(stderr, "%s: not JSON\n", name);
        return;
    }
    t->files++;
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(doc, "schema");
    char *stext = cJSON_PrintUnformatted(schema);
    struct json_schema_params p = {.strict = 0, .whitespace = 1};
    struct grammar *g = NULL;
    unsigned relaxed = 0;
    int rc = json_schema_compile_ex(stext, strlen(stext), &p, &g, &relaxed);
    free(stext);
    if (rc) {
        char key[128];
        unsup_key(folio_last_error(), key, sizeof(key));
        hist_add(&t->unsup, rc == FOLIO_EUNSUP ? key : "(EINVAL) other");
        if (verbose) printf("REFUSED %s: %s\n", name, folio_last_error());
        cJSON_Delete(doc);
        return;
    }
    t->supported++;
    const cJSON *tests = cJSON_GetObjectItemCaseSensitive(doc, "tests");
    int ti = 0;
    for (const cJSON *tc = tests ? tests->child : NULL; tc; tc = tc->next, ti++) {
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(tc, "data");
        int valid = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tc, "valid"));
        struct buf sz = {0};
        print_value(&sz, data, 0, 0);
        size_t n = sz.n;
        free(sz.p);
        if (n > max_bytes) {
            t->skipped++;
            continue;
        }
        cJSON *re = json_order_reorder(schema, schema, data, 0);
        int as_is = matches(t, g, data, 0) && matches(t, g, data, 2);
        int reord = as_is || (matches(t, g, re, 0) && matches(t, g, re, 2));
        if (valid) {
            t->valid_n++;
            if (reord) t->valid_ok++;
            if (!as_is && reord) t->reordered_needed++;
            if (!reord && verbose) {
                struct buf b = {0};
                print_value(&b, re, 0, 0);
                printf("VALID-REJECTED %s #%d: %.300s\n", name, ti, b.p);
                free(b.p);
            }
        } else {
            int any = matches(t, g, data, 0) || matches(t, g, re, 0) || matches(t, g, data, 2) || matches(t, g, re, 2);
            t->invalid_n++;
            if (!any) {
                t->invalid_ok++;
            } else {
                char key[512] = "";
                for (unsigned bit = 0; bit < JSON_SCHEMA_RELAX_COUNT; bit++)
                    if (relaxed & (1u << bit))
                        snprintf(key + strlen(key), sizeof(key) - strlen(key), "%s%s", *key ? ", " : "",
                                 json_schema_relaxation_name(1u << bit));
                hist_add(&t->misses, *key ? key : "none (unexplained)");
                if (verbose) {
                    struct buf b = {0};
                    print_value(&b, data, 0, 0);
                    printf("INVALID-ACCEPTED %s #%d [%s]: %.300s\n", name, ti, *key ? key : "none", b.p);
                    free(b.p);
                }
            }
        }
        cJSON_Delete(re);
    }
    grammar_free(g);
    cJSON_Delete(doc);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    const char *dir = NULL;
    size_t max_bytes = 20000;
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) verbose = 1;
        else if (strcmp(argv[i], "--max-bytes") == 0 && i + 1 < argc) max_bytes = (size_t)atol(argv[++i]);
        else dir = argv[i];
    }
    if (!dir) {
        fprintf(stderr, "usage: jsonschema_check DIR [--max-bytes N] [-v]\n");
        return 2;
    }
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return 1;
    }
    char **names = NULL;
    int n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json") != 0) continue;
        if (n == cap) names = realloc(names, (size_t)(cap = cap ? cap * 2 : 256) * sizeof(*names));
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof(*names), cmp_str);
    struct totals t = {0};
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        run_file(&t, path, names[i], max_bytes, verbose);
        free(names[i]);
    }
    free(names);
    printf("schemas supported: %d / %d (%.1f%%)\n", t.supported, t.files, 100.0 * t.supported / (t.files ? t.files : 1));
    printf("valid accepted:    %d / %d (%.2f%%; %d needed keys in schema order)\n", t.valid_ok, t.valid_n,
           100.0 * t.valid_ok / (t.valid_n ? t.valid_n : 1), t.reordered_needed);
    printf("invalid rejected:  %d / %d (%.2f%%)\n", t.invalid_ok, t.invalid_n, 100.0 * t.invalid_ok / (t.invalid_n ? t.invalid_n : 1));
    printf("instances skipped (over %zu bytes): %d; grammar_matches time %.1f s\n", max_bytes, t.skipped, t.match_s);
    hist_print(&t.unsup, "refused schemas by keyword");
    hist_print(&t.misses, "invalid instances accepted, by the schema's relaxations");
    return 0;
}
