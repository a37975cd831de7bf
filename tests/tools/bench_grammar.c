/* bench_grammar: compile time and per-token mask time of the grammar matcher on JSON grammars.
 *
 *   bench_grammar [tokenizer.json] [-n schemas] [-check permille] [-kinds 16 value kinds]
 *
 * With a Hugging Face tokenizer.json (byte-level BPE: the GPT-2 byte-to-unicode table is
 * mapped back to bytes; special added tokens have no bytes) its vocabulary is used, else a
 * synthetic 128k one. For each of n object schemas (different keys and value kinds, sharing
 * the JSON string and number rules, as json_schema.c's output does) it times gram_compile,
 * then walks a valid document token by token (greedy longest-match segmentation), timing
 * gram_matcher_fill_mask before each token and checking the token is allowed. Prints the
 * median and max compile time and the mean and p99 mask time. -check P also checks each mask
 * against accept_token on every allowed token and P per mille of the others. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"
#include "grammar/gram_matcher.h"
#include "grammar/grammar.h"
#include "grammar_json.h"
#include "tool_util.h"

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

struct vocab {
    int n;
    uint8_t **bytes;
    uint32_t *lens;
    int32_t stop[4];
    int nstop;
};

/* GPT-2's bytes_to_unicode, inverted: code point -> byte. */
static int byte_of_cp[512];
static void init_bytemap(void) {
    int n = 0;
    for (int i = 0; i < 512; i++) byte_of_cp[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        if (printable) byte_of_cp[b] = b;
        else byte_of_cp[256 + n++] = b;
    }
}

static int decode_piece(const char *s, uint8_t *out) {
    int n = 0;
    const uint8_t *p = (const uint8_t *)s;
    while (*p) {
        uint32_t cp;
        if (*p < 0x80) cp = *p++;
        else if ((*p & 0xE0) == 0xC0) { cp = (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3F); p += 2; }
        else if ((*p & 0xF0) == 0xE0) { cp = (uint32_t)(p[0] & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F); p += 3; }
        else { cp = 0xFFFF; p += 4; }
        if (cp >= 512 || byte_of_cp[cp] < 0) return -1;
        out[n++] = (uint8_t)byte_of_cp[cp];
    }
    return n;
}

static int load_vocab(const char *path, struct vocab *v) {
    char *text = NULL;
    size_t len = 0;
    if (folio_read_file(path, &text, &len)) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return folio_err(FOLIO_EINVAL, "%s: bad JSON", path);
    cJSON *vocab = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "model"), "vocab");
    cJSON *added = cJSON_GetObjectItem(root, "added_tokens");
    int max_id = -1;
    cJSON *it;
    cJSON_ArrayForEach(it, vocab) if (it->valueint > max_id) max_id = it->valueint;
    cJSON_ArrayForEach(it, added) {
        int id = cJSON_GetObjectItem(it, "id")->valueint;
        if (id > max_id) max_id = id;
    }
    v->n = max_id + 1;
    v->bytes = calloc((size_t)v->n, sizeof *v->bytes);
    v->lens = calloc((size_t)v->n, sizeof *v->lens);
    uint8_t buf[1024];
    cJSON_ArrayForEach(it, vocab) {
        int n = decode_piece(it->string, buf);
        if (n < 0) n = 0;
        v->bytes[it->valueint] = malloc((size_t)n + 1);
        memcpy(v->bytes[it->valueint], buf, (size_t)n);
        v->lens[it->valueint] = (uint32_t)n;
    }
    cJSON_ArrayForEach(it, added) {
        int id = cJSON_GetObjectItem(it, "id")->valueint;
        const char *content = cJSON_GetObjectItem(it, "content")->valuestring;
        if (cJSON_IsTrue(cJSON_GetObjectItem(it, "special"))) {
            free(v->bytes[id]);
            v->bytes[id] = malloc(1);
            v->lens[id] = 0;
            if (v->nstop < 4 && (!strcmp(content, "<|eot_id|>") || !strcmp(content, "<|end_of_text|>") ||
                                 !strcmp(content, "<|im_end|>") || !strcmp(content, "<|endoftext|>")))
                v->stop[v->nstop++] = id;
        }
    }
    for (int i = 0; i < v->n; i++)
        if (!v->bytes[i]) v->bytes[i] = malloc(1);
    cJSON_Delete(root);
    return 0;
}

/* 128k tokens shaped like a BPE vocabulary: words with and without a leading space, JSON
 * punctuation runs, digits, whitespace runs and raw UTF-8 bytes. */
static void synth_vocab(struct vocab *v) {
    v->n = 128000;
    v->bytes = calloc((size_t)v->n, sizeof *v->bytes);
    v->lens = calloc((size_t)v->n, sizeof *v->lens);
    uint64_t r = 42;
    static const char *punct[] = {"\"", "\":", "\",", "\"}", "{\"", "[\"", "\"]", "},", "}", "{", "[", "]", ",",
                                  ":", " \"", "\": \"", "\", \"", "\":\"", "\n", "  ", "    ", "\n  ", "\n    ",
                                  "\"\n", "},\n", "null", "true", "false", ".", "-", "\\n", "\\\"", "\\u"};
    int np = (int)(sizeof punct / sizeof *punct);
    for (int i = 0; i < v->n; i++) {
        uint8_t buf[32];
        int n = 0;
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t x = (uint32_t)(r >> 33);
        if (i < 256) {
            buf[n++] = (uint8_t)i;
        } else if (i < 256 + np) {
            n = (int)strlen(punct[i - 256]);
            memcpy(buf, punct[i - 256], (size_t)n);
        } else if (x % 20 == 0) { /* punctuation combos */
            int k = 2 + (int)(x / 20 % 3);
            for (int j = 0; j < k; j++) buf[n++] = (uint8_t)"\"{}[],: \n"[(x >> (j * 3)) % 9];
        } else if (x % 20 == 1) { /* digits */
            int k = 1 + (int)(x / 20 % 3);
            for (int j = 0; j < k; j++) buf[n++] = (uint8_t)('0' + (x >> (j * 4)) % 10);
        } else { /* words */
            if (x & 1) buf[n++] = ' ';
            int k = 2 + (int)(x / 7 % 9);
            for (int j = 0; j < k; j++) {
                r = r * 6364136223846793005ULL + 1442695040888963407ULL;
                buf[n++] = (uint8_t)('a' + (r >> 40) % 26);
            }
            if (x % 13 == 0) buf[n++] = '"';
        }
        v->bytes[i] = malloc((size_t)n + 1);
        memcpy(v->bytes[i], buf, (size_t)n);
        v->lens[i] = (uint32_t)n;
    }
    v->bytes[v->n - 1][0] = 0;
    v->lens[v->n - 1] = 0; /* EOS */
    v->stop[0] = v->n - 1;
    v->nstop = 1;
}

/* Greedy longest-match segmentation of text (every byte is some token in both vocabularies). */
static int segment(const struct vocab *v, const uint8_t *text, size_t n, int32_t *out, int max) {
    int k = 0;
    size_t i = 0;
    while (i < n && k < max) {
        int best = -1;
        uint32_t bl = 0;
        for (int t = 0; t < v->n; t++)
            if (v->lens[t] > bl && v->lens[t] <= n - i && memcmp(v->bytes[t], text + i, v->lens[t]) == 0)
                best = t, bl = v->lens[t];
        if (best < 0) return -1;
        out[k++] = best;
        i += bl;
    }
    return k;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int nschemas = 20, check = 0;
    const char *kinds_all = "snsabesnnssnnavs";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-check") && i + 1 < argc) {
            if (parse_int("-check", argv[++i], 0, &check)) {
                fprintf(stderr, "%s\n", folio_last_error());
                return 2;
            }
        } else if (!strcmp(argv[i], "-kinds") && i + 1 < argc && strlen(argv[i + 1]) == 16) {
            kinds_all = argv[++i];
        } else if (!strcmp(argv[i], "-n") && i + 1 < argc) {
            if (parse_int("-n", argv[++i], 1, &nschemas)) {
                fprintf(stderr, "%s\n", folio_last_error());
                return 2;
            }
        } else {
            path = argv[i];
        }
    }
    init_bytemap();
    struct vocab voc = {0};
    if (path) {
        if (load_vocab(path, &voc)) {
            fprintf(stderr, "%s\n", folio_last_error());
            return 1;
        }
    } else {
        synth_vocab(&voc);
    }
    double t0 = now_us();
    struct gram_vocab *gv = gram_vocab_create(voc.n, (const uint8_t *const *)voc.bytes, voc.lens, voc.stop, voc.nstop);
    printf("vocab: %d tokens (%s), trie built in %.1f ms\n", voc.n, path ? path : "synthetic", (now_us() - t0) / 1e3);
    static const char *names[] = {"name", "age", "email", "tags", "active", "color", "id", "address", "score",
                                  "title", "description", "created_at", "count", "items", "owner", "status"};
    double *compile_ms = calloc((size_t)nschemas + 1, sizeof *compile_ms);
    double *mask_us = malloc(sizeof *mask_us * 200000);
    size_t nmask = 0;
    int words = gram_mask_words(gv), bad = 0;
    uint32_t *mask = malloc((size_t)words * 4);
    int32_t *toks = malloc(sizeof *toks * 8192);
    for (int s = 0; s < nschemas + 1; s++) {
        /* schema s: a rotating window of keys and kinds; s == nschemas: any JSON value */
        const char *keys[8];
        char kinds[9];
        int nk = 3 + s % 6;
        for (int i = 0; i < nk; i++) {
            keys[i] = names[(s * 3 + i) % 16];
            kinds[i] = kinds_all[(s + i * 5) % 16];
        }
        kinds[nk] = 0;
        struct grammar *g = s < nschemas ? gj_object(nk, keys, kinds, 4) : gj_any(4);
        if (!g) {
            fprintf(stderr, "grammar: %s\n", folio_last_error());
            return 1;
        }
        struct gram_compiled *c = NULL;
        t0 = now_us();
        if (gram_compile(g, gv, &c)) {
            fprintf(stderr, "compile: %s\n", folio_last_error());
            return 1;
        }
        double ms = (now_us() - t0) / 1e3;
        if (s < nschemas) compile_ms[s] = ms;
        if (s == 0 || s == nschemas)
            printf("compile %s: %.2f ms (%zu KiB)\n", s == 0 ? "first schema (cold cache)" : "any-JSON",
                   ms, gram_compiled_bytes(c) / 1024);
        /* a document for it */
        char doc[4096];
        size_t dn = 0;
        if (s < nschemas) {
            dn += (size_t)snprintf(doc + dn, sizeof doc - dn, "{");
            for (int i = 0; i < nk; i++) {
                dn += (size_t)snprintf(doc + dn, sizeof doc - dn, "%s\n  \"%s\": ", i ? "," : "", keys[i]);
                switch (kinds[i]) {
                case 's': dn += (size_t)snprintf(doc + dn, sizeof doc - dn, "\"The quick brown fox, caf\xC3\xA9 \\\"%d\\\"\"", s); break;
                case 'n': dn += (size_t)snprintf(doc + dn, sizeof doc - dn, "%d.25", 1000 + s); break;
                case 'b': dn += (size_t)snprintf(doc + dn, sizeof doc - dn, "true"); break;
                case 'a': dn += (size_t)snprintf(doc + dn, sizeof doc - dn, "[\"alpha\", \"beta\", \"gamma delta\"]"); break;
                case 'e': dn += (size_t)snprintf(doc + dn, sizeof doc - dn, "\"green\""); break;
                case 'm': dn += (size_t)snprintf(doc + dn, sizeof doc - dn, "\"short text %d\"", s); break;
                default: dn += (size_t)snprintf(doc + dn, sizeof doc - dn, "{\"x\": [1, 2, {\"y\": null}], \"z\": \"w\"}"); break;
                }
            }
            dn += (size_t)snprintf(doc + dn, sizeof doc - dn, "\n}");
        } else {
            dn = (size_t)snprintf(doc, sizeof doc, "[{\"a\": 1, \"b\": [true, false, null, \"s\\n\"]}, -2.5e3, \"x\"]");
        }
        int nt = segment(&voc, (const uint8_t *)doc, dn, toks, 8192);
        struct gram_matcher *m = gram_matcher_create(c), *fork = gram_matcher_create(c);
        for (int i = 0; i <= nt; i++) {
            double a = now_us();
            gram_matcher_fill_mask(m, mask);
            double us = now_us() - a;
            if (nmask < 200000) mask_us[nmask++] = us;
            if (check) { /* the mask against accept_token: every allowed token and a sample */
                for (int k = 0; k < voc.n; k++) {
                    int bit = mask[k >> 5] >> (k & 31) & 1;
                    if (!bit && (uint32_t)(k * 2654435761u) % 1000 >= (uint32_t)check) continue;
                    gram_matcher_copy(fork, m);
                    int ok = gram_matcher_accept_token(fork, k) == 0;
                    if (ok != bit) {
                        fprintf(stderr, "schema %d step %d: token %d ('%.*s') mask %d accept %d\n", s, i, k,
                                (int)voc.lens[k], (const char *)voc.bytes[k], bit, ok);
                        bad++;
                    }
                }
            }
            if (i == nt) {
                for (int k = 0; k < voc.nstop; k++)
                    if (!(mask[voc.stop[k] >> 5] >> (voc.stop[k] & 31) & 1)) bad++;
                break;
            }
            if (!(mask[toks[i] >> 5] >> (toks[i] & 31) & 1) || gram_matcher_accept_token(m, toks[i])) {
                fprintf(stderr, "schema %d: token %d ('%.*s') at %d refused\n", s, toks[i], (int)voc.lens[toks[i]],
                        (const char *)voc.bytes[toks[i]], i);
                bad++;
                break;
            }
        }
        gram_matcher_free(m);
        gram_matcher_free(fork);
        gram_compiled_free(c);
        grammar_free(g);
    }
    qsort(compile_ms, (size_t)nschemas, sizeof *compile_ms, cmp_d);
    double sum = 0;
    for (size_t i = 0; i < nmask; i++) sum += mask_us[i];
    qsort(mask_us, nmask, sizeof *mask_us, cmp_d);
    printf("compile over %d schemas: median %.2f ms, max %.2f ms\n", nschemas, compile_ms[nschemas / 2],
           compile_ms[nschemas - 1]);
    printf("mask over %zu tokens: mean %.1f us, p50 %.1f us, p99 %.1f us, max %.1f us\n", nmask, sum / (double)nmask,
           mask_us[nmask / 2], mask_us[nmask * 99 / 100], mask_us[nmask - 1]);
    printf("%s\n", bad ? "FAILED: a valid token was refused" : "ok");
    for (int i = 0; i < voc.n; i++) free(voc.bytes[i]);
    free(voc.bytes);
    free(voc.lens);
    free(mask);
    free(toks);
    free(mask_us);
    free(compile_ms);
    gram_vocab_free(gv);
    return bad ? 1 : 0;
}
