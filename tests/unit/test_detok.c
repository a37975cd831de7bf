/* Detokenizer unit tests: streamed deltas concatenate to tok_decode, never carry partial
 * UTF-8, and respect prompt context; over the shared SentencePiece tokenizers (byte fallback)
 * and a synthetic byte-level one (with the clean-up of spaces before punctuation). */
#include "text/detok.h"
#include "test.h"
#include "text/tokenizer.h"
#include "base/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../tools/utf8_check.h"


/* Streams ids and returns the concatenated text (malloc'd), or NULL after a failed check. */
static char *stream(const struct tokenizer *tok, const int32_t *prompt, int np, const int32_t *ids,
                    int n, int skip, size_t cap) {
    struct detok *d = detok_create(tok, prompt, np, skip);
    if (!d) return NULL;
    char *out = malloc(cap);
    size_t acc_cap = 4096, acc_n = 0;
    char *acc = malloc(acc_cap);
    int ok = out && acc;
    for (int i = 0; ok && i <= n; i++) {
        /* a full buffer may leave text queued: drain it with pushes of an out-of-range id
         * (which add nothing), or with repeated flushes at the end */
        for (int round = 0; ok; round++) {
            size_t m = 0;
            int rc = i == n ? detok_flush(d, out, cap, &m)
                            : detok_push(d, round == 0 ? ids[i] : -1, out, cap, &m);
            if (rc || out[m] != '\0' || !utf8_check((unsigned char *)out, m)) {
                test_fail(__FILE__, __LINE__, "delta %d: rc=%d, valid=%d", i, rc,
                          utf8_check((unsigned char *)out, m));
                ok = 0;
                break;
            }
            if (acc_n + m + 1 > acc_cap) {
                acc_cap = 2 * (acc_n + m + 1);
                char *a2 = realloc(acc, acc_cap);
                if (!a2) { ok = 0; break; }
                acc = a2;
            }
            memcpy(acc + acc_n, out, m);
            acc_n += m;
            if (m + 8 < cap) break;
        }
    }
    free(out);
    detok_free(d);
    if (!ok) {
        free(acc);
        return NULL;
    }
    acc[acc_n] = '\0';
    return acc;
}

static struct tokenizer *load_model_tok(const char *sub) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", test_models_dir(), sub);
    struct tokenizer *tok = NULL;
    if (tokenizer_load(dir, &tok)) test_fail(__FILE__, __LINE__, "tokenizer_load(%s): %s", dir, folio_last_error());
    return tok;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Checks n_seq random sequences built from `pool` (ids of real text, split characters) and
 * from uniformly random ids. */
static void random_streams(const struct tokenizer *tok, const int32_t *pool, int npool, int n_seq) {
    int vocab = tokenizer_vocab_size(tok);
    int32_t seq[64];
    for (int s = 0; s < n_seq; s++) {
        int n = 1 + (int)(rnd() % 60);
        for (int i = 0; i < n; i++) {
            uint32_t k = rnd() % 10;
            if (k < 6 && npool) {
                int start = (int)(rnd() % (uint32_t)npool);
                int len = 1 + (int)(rnd() % 6);
                for (int j = 0; j < len && i < n; j++) seq[i++] = pool[(start + j) % npool];
                i--;
            } else {
                seq[i] = (int32_t)(rnd() % (uint32_t)vocab);
            }
        }
        for (int skip = 0; skip <= 1; skip++) {
            char *want = NULL;
            size_t wn;
            if (tok_decode(tok, seq, n, skip, &want, &wn)) continue;
            size_t caps[] = {64, 4096};
            for (int c = 0; c < 2; c++) {
                char *got = stream(tok, NULL, 0, seq, n, skip, caps[c]);
                if (!got || strcmp(got, want) != 0) {
                    test_fail(__FILE__, __LINE__, "seq %d skip %d cap %zu: got \"%s\", want \"%s\"", s, skip,
                              caps[c], got ? got : "(null)", want);
                    free(got);
                    free(want);
                    return;
                }
                free(got);
            }
            /* with the first part as the prompt */
            int k = n / 2;
            char *pd = NULL;
            size_t pn;
            size_t wcap = tok_decode_work_size(tok, k);
            void *work = malloc(wcap + 1);
            const char *wt;
            size_t wl;
            int inc = 1;
            if (work && k > 0) tok_decode_window(tok, seq, k, TOK_DECODE_STREAM | (skip ? TOK_DECODE_SKIP_SPECIAL : 0),
                                                 work, wcap, &wt, &wl, &inc);
            free(work);
            if (k > 0 && !inc && tok_decode(tok, seq, k, skip, &pd, &pn) == 0 && pn <= wn &&
                memcmp(pd, want, pn) == 0) {
                char *got = stream(tok, seq, k, seq + k, n - k, skip, 64);
                if (!got || strcmp(got, want + pn) != 0)
                    test_fail(__FILE__, __LINE__, "seq %d with prompt: got \"%s\", want \"%s\"", s,
                              got ? got : "(null)", want + pn);
                free(got);
            }
            free(pd);
            free(want);
        }
    }
}

TEST(detok_stories260k_generation) {
    struct tokenizer *tok = load_model_tok("stories260K");
    if (!tok) return;
    const int32_t prompt[] = {1, 403, 407, 261, 378};
    const int32_t gen[] = {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396,
                           267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385,
                           328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426};
    char *got = stream(tok, prompt, 5, gen, 40, 1, 64);
    CHECK_STR(got, ", there was a little girl named Lily. She loved to play outside in the park. "
                   "One day, she saw a big, red ball.");
    free(got);
    /* without a prompt, the first token starts the text (its space is stripped) */
    got = stream(tok, NULL, 0, prompt + 1, 4, 1, 64);
    CHECK_STR(got, "Once upon a time");
    free(got);
    tokenizer_free(tok);
}

TEST(detok_llama2_random_with_byte_fallback) {
    struct tokenizer *tok = load_model_tok("tokenizers/llama2");
    if (!tok) return;
    const char *text = "Hello \xF0\x9F\x98\x80 world \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x91\xA8\xE2\x80\x8D"
                       "\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 caf\xC3\xA9 \xF0\x9F\x87\xAF\xF0\x9F\x87\xB5 "
                       "<s> done </s>  x \xEA\xB0\x81 \xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87";
    int32_t *pool = NULL;
    int np = 0;
    CHECK_EQ_INT(tokenizer_encode(tok, text, strlen(text), 1, &pool, &np), 0);
    /* the whole text streams back exactly */
    char *want = NULL;
    size_t wn;
    CHECK_EQ_INT(tok_decode(tok, pool, np, 0, &want, &wn), 0);
    char *got = stream(tok, NULL, 0, pool, np, 0, 64);
    CHECK(got && want && strcmp(got, want) == 0);
    free(got);
    free(want);
    random_streams(tok, pool, np, 300);
    free(pool);
    tokenizer_free(tok);
}

/* A byte-level tokenizer: the 256 byte characters, a few merges, one special token, and the
 * default clean_up_tokenization_spaces (true). */
static struct tokenizer *byte_level_tok(void) {
    static const char *merges[] = {"\\u0120 t", "h e", "\\u0120t he", "\\u0120 '", "' s", "\\u0120 .",
                                   "\\u00e4 \\u00bd", "\\u00e4\\u00bd \\u0142", "n '", "n' t"};
    size_t cap = 64 * 1024, n = 0;
    char *json = malloc(cap);
    if (!json) return NULL;
    n += (size_t)snprintf(json + n, cap - n,
                          "{\"added_tokens\": [{\"id\": 300, \"content\": \"<|end|>\", \"special\": true, "
                          "\"normalized\": false}], \"normalizer\": null, \"pre_tokenizer\": {\"type\": "
                          "\"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}, "
                          "\"post_processor\": null, \"decoder\": {\"type\": \"ByteLevel\"}, \"model\": "
                          "{\"type\": \"BPE\", \"vocab\": {");
    int bs[256], nb = 0, extra = 0;
    for (int b = 0; b < 256; b++)
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) bs[nb++] = b;
    int cp[256];
    for (int b = 0; b < 256; b++) cp[b] = -1;
    for (int i = 0; i < nb; i++) cp[bs[i]] = bs[i];
    for (int b = 0; b < 256; b++)
        if (cp[b] < 0) cp[b] = 256 + extra++;
    for (int b = 0; b < 256; b++) n += (size_t)snprintf(json + n, cap - n, "\"\\u%04x\": %d,", cp[b], b);
    const char *more[] = {"\\u0120t", "he", "\\u0120the", "\\u0120'", "'s", "\\u0120.", "\\u00e4\\u00bd",
                          "\\u00e4\\u00bd\\u0142", "n'", "n't"};
    for (int i = 0; i < 10; i++) n += (size_t)snprintf(json + n, cap - n, "%s\"%s\": %d", i ? "," : "", more[i], 256 + i);
    n += (size_t)snprintf(json + n, cap - n, "}, \"merges\": [");
    for (int i = 0; i < 10; i++) n += (size_t)snprintf(json + n, cap - n, "%s\"%s\"", i ? "," : "", merges[i]);
    snprintf(json + n, cap - n, "]}}");
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/bytelevel", test_tmp_dir());
    snprintf(path, sizeof path, "mkdir -p '%s'", dir);
    struct tokenizer *tok = NULL;
    if (system(path) == 0) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        FILE *f = fopen(path, "w");
        if (f) {
            fputs(json, f);
            fclose(f);
            if (tokenizer_load(dir, &tok)) test_fail(__FILE__, __LINE__, "byte-level load: %s", folio_last_error());
        }
    }
    free(json);
    return tok;
}

TEST(detok_byte_level_and_cleanup) {
    struct tokenizer *tok = byte_level_tok();
    if (!tok) return;
    CHECK(tok_cleans_up_spaces(tok));
    const char *text = "the cat 's hat . It isn 't , is it ? \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80<|end|> ok ' s";
    int32_t *ids = NULL;
    int n = 0;
    CHECK_EQ_INT(tokenizer_encode(tok, text, strlen(text), 0, &ids, &n), 0);
    char *want = NULL;
    size_t wn;
    CHECK_EQ_INT(tok_decode(tok, ids, n, 0, &want, &wn), 0);
    CHECK_STR(want, "the cat's hat. It isn 't, is it? \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80<|end|> ok's");
    char *got = stream(tok, NULL, 0, ids, n, 0, 64);
    CHECK(got && strcmp(got, want) == 0);
    free(got);
    free(want);
    random_streams(tok, ids, n, 400);
    free(ids);
    tokenizer_free(tok);
}

TEST(detok_bad_arguments) {
    struct tokenizer *tok = load_model_tok("stories260K");
    if (!tok) return;
    struct detok *d = detok_create(tok, NULL, 0, 0);
    CHECK(d != NULL);
    if (d) {
        char out[64];
        size_t n;
        CHECK(detok_push(d, 403, out, 16, &n) < 0);      /* cap below 64 */
        CHECK_EQ_INT(detok_push(d, 99999, out, sizeof out, &n), 0); /* out of range: nothing */
        CHECK_EQ_INT(n, 0);
        CHECK_EQ_INT(detok_push(d, 403, out, sizeof out, &n), 0);
        CHECK_STR(out, "Once");
        CHECK(detok_max_delta(d) >= 64);
        CHECK_EQ_INT(detok_flush(d, out, sizeof out, &n), 0);
        CHECK_EQ_INT(n, 0);
        CHECK(detok_push(d, 403, out, sizeof out, &n) < 0); /* after flush */
        detok_free(d);
    }
    detok_free(NULL);
    tokenizer_free(tok);
}
