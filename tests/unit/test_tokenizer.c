/* Tokenizer unit tests: the shared real tokenizers (stories260K, Llama-2) with known ids, the
 * error paths, and small synthetic tokenizer.json files for features the real ones do not use
 * (Split behaviors, Metaspace, lstrip/rstrip, ignore_merges, fuse_unk, merge pairs). The
 * exhaustive comparison with Hugging Face lives in tests/tokenizer/. */
#include "test.h"
#include "text/tokenizer.h"
#include "base/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct tokenizer *load_model_tok(const char *sub) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", test_models_dir(), sub);
    struct tokenizer *tok = NULL;
    int rc = tokenizer_load(dir, &tok);
    if (rc) test_fail(__FILE__, __LINE__, "tokenizer_load(%s): %s", dir, folio_last_error());
    return tok;
}

static int encode_eq(const struct tokenizer *tok, const char *text, int add_special,
                     const int32_t *want, int n_want) {
    int32_t *ids = NULL;
    int n = 0;
    if (tokenizer_encode(tok, text, strlen(text), add_special, &ids, &n)) {
        fprintf(stderr, "    encode(%s): %s\n", text, folio_last_error());
        return 0;
    }
    int ok = n == n_want && (n == 0 || memcmp(ids, want, (size_t)n * sizeof *ids) == 0);
    if (!ok) {
        fprintf(stderr, "    encode(\"%s\") = [", text);
        for (int i = 0; i < n; i++) fprintf(stderr, i ? ",%d" : "%d", ids[i]);
        fprintf(stderr, "]\n");
    }
    free(ids);
    return ok;
}

static char *decode(const struct tokenizer *tok, const int32_t *ids, int n, int skip) {
    char *text = NULL;
    size_t len;
    if (tok_decode(tok, ids, n, skip, &text, &len)) return NULL;
    return text;
}

#define IDS(...) ((const int32_t[]){__VA_ARGS__}), (int)(sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

TEST(tok_stories260k_known_ids) {
    struct tokenizer *tok = load_model_tok("stories260K");
    if (!tok) return;
    CHECK(encode_eq(tok, "Once upon a time", 1, IDS(1, 403, 407, 261, 378)));
    CHECK(encode_eq(tok, "Once upon a time", 0, IDS(403, 407, 261, 378)));
    char *s = decode(tok, IDS(1, 403, 407, 261, 378), 0);
    CHECK_STR(s, "<s> Once upon a time"); /* HF: Strip only removes the text's first space */
    free(s);
    s = decode(tok, IDS(1, 403, 407, 261, 378), 1);
    CHECK_STR(s, "Once upon a time");
    free(s);
    CHECK_EQ_INT(tokenizer_vocab_size(tok), 512);
    CHECK_EQ_INT(tokenizer_bos_id(tok), 1);
    CHECK_EQ_INT(tokenizer_eos_id(tok), 2);
    CHECK(tokenizer_is_special(tok, 1));
    CHECK(tokenizer_is_special(tok, 2));
    CHECK(!tokenizer_is_special(tok, 403));
    CHECK(!tokenizer_is_special(tok, -1));
    CHECK_EQ_INT(tokenizer_token_to_id(tok, "<s>"), 1);
    CHECK_EQ_INT(tokenizer_token_to_id(tok, "\xE2\x96\x81Once"), 403);
    CHECK_EQ_INT(tokenizer_token_to_id(tok, "no such piece"), -1);
    CHECK_STR(tokenizer_id_to_piece(tok, 403), "\xE2\x96\x81Once");
    CHECK(tokenizer_id_to_piece(tok, 512) == NULL);
    CHECK(tokenizer_id_to_piece(tok, -1) == NULL);
    tokenizer_free(tok);
}

TEST(tok_llama2_bytes_and_specials) {
    struct tokenizer *tok = load_model_tok("tokenizers/llama2");
    if (!tok) return;
    CHECK_EQ_INT(tokenizer_vocab_size(tok), 32000);
    CHECK(encode_eq(tok, "Hello world", 1, IDS(1, 15043, 3186)));
    /* emoji: not in the vocabulary, so byte fallback */
    CHECK(encode_eq(tok, "\xF0\x9F\x98\x80", 0, IDS(29871, 243, 162, 155, 131)));
    /* special tokens in the text; Prepend("▁") applies to each section (HF's legacy Llama) */
    CHECK(encode_eq(tok, "<s>x</s>", 1, IDS(1, 1, 921, 2)));
    CHECK(encode_eq(tok, "", 1, IDS(1)));
    CHECK(encode_eq(tok, "", 0, (const int32_t *)NULL, 0));
    char *s = decode(tok, IDS(29871, 243, 162, 155, 131), 0);
    CHECK_STR(s, "\xF0\x9F\x98\x80");
    free(s);
    /* an incomplete byte run is one U+FFFD (maximal subpart), as TextDecoder does */
    s = decode(tok, IDS(231, 187), 0);
    CHECK_STR(s, "\xEF\xBF\xBD");
    free(s);
    s = decode(tok, IDS(231, 263), 0); /* <0xE4> then "▁a" */
    CHECK_STR(s, "\xEF\xBF\xBD a");
    free(s);
    s = decode(tok, IDS(1, 15043, 2, 3186), 1);
    CHECK_STR(s, "Hello world");
    free(s);
    s = decode(tok, IDS(1, 15043, 99999, 3186), 0); /* out-of-range ids are skipped */
    CHECK_STR(s, "<s> Hello world");
    free(s);
    tokenizer_free(tok);
}

TEST(tok_llama2_long_input_roundtrip_and_speed) {
    struct tokenizer *tok = load_model_tok("tokenizers/llama2");
    if (!tok) return;
    /* SentencePiece-style BPE runs over the whole section as one word: 10 KB must be fast */
    size_t cap = 12000, n = 0;
    char *text = malloc(cap + 64);
    const char *parts[] = {"The quick brown fox ", "jumps over the lazy dog. ", "\xE4\xBD\xA0\xE5\xA5\xBD ",
                           "\xF0\x9F\x98\x80 ", "  spaces\tand\nlines ", "1234567890 "};
    for (int i = 0; n < 10000; i++) {
        size_t l = strlen(parts[i % 6]);
        memcpy(text + n, parts[i % 6], l);
        n += l;
    }
    text[n] = '\0';
    int32_t *ids = NULL;
    int nids = 0;
    double t0 = folio_now();
    CHECK_EQ_INT(tokenizer_encode(tok, text, n, 0, &ids, &nids), 0);
    double dt = folio_now() - t0;
    CHECK(nids > 1000);
    CHECK(dt < 1.0); /* typically ~2 ms; generous for sanitizer builds */
    char *back = decode(tok, ids, nids, 0);
    CHECK(back && strcmp(back, text) == 0);
    free(back);
    free(ids);
    free(text);
    tokenizer_free(tok);
}

static const char *write_tok(const char *name, const char *json, const char *config) {
    static char dir[1024];
    char path[1100];
    snprintf(dir, sizeof dir, "%s/%s", test_tmp_dir(), name);
    snprintf(path, sizeof path, "mkdir -p '%s'", dir);
    if (system(path) != 0) return dir;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(json, f);
        fclose(f);
    }
    if (config) {
        snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
        f = fopen(path, "w");
        if (f) {
            fputs(config, f);
            fclose(f);
        }
    }
    return dir;
}

TEST(tok_errors_are_clean) {
    struct tokenizer *tok = (struct tokenizer *)1;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/does-not-exist", test_tmp_dir());
    CHECK_EQ_INT(tokenizer_load(dir, &tok), FOLIO_EIO);
    CHECK(tok == NULL);
    CHECK(strstr(folio_last_error(), "tokenizer.json") != NULL);

    CHECK_EQ_INT(tokenizer_load(write_tok("bad-json", "{\"model\": {", NULL), &tok), FOLIO_EINVAL);
    CHECK(tok == NULL);
    CHECK_EQ_INT(tokenizer_load(write_tok("not-object", "[1, 2]", NULL), &tok), FOLIO_EINVAL);
    CHECK_EQ_INT(tokenizer_load(write_tok("no-model", "{\"version\": \"1.0\"}", NULL), &tok), FOLIO_EINVAL);
    CHECK_EQ_INT(tokenizer_load(write_tok("wordpiece", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", NULL), &tok),
                 FOLIO_EUNSUP);
    CHECK(strstr(folio_last_error(), "WordPiece") != NULL);
    CHECK_EQ_INT(tokenizer_load(write_tok("unigram", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", NULL), &tok),
                 FOLIO_EUNSUP);
    CHECK_EQ_INT(tokenizer_load(write_tok("bad-norm",
                                    "{\"normalizer\": {\"type\": \"BertNormalizer\"}, \"model\": {\"type\": "
                                    "\"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", NULL), &tok),
                 FOLIO_EUNSUP);
    CHECK(strstr(folio_last_error(), "BertNormalizer") != NULL);
    CHECK_EQ_INT(tokenizer_load(write_tok("bad-pre",
                                    "{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"type\": "
                                    "\"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", NULL), &tok),
                 FOLIO_EUNSUP);
    CHECK(strstr(folio_last_error(), "Whitespace") != NULL);
    CHECK_EQ_INT(tokenizer_load(write_tok("bad-dec",
                                    "{\"decoder\": {\"type\": \"WordPiece\"}, \"model\": {\"type\": "
                                    "\"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", NULL), &tok),
                 FOLIO_EUNSUP);
    CHECK_EQ_INT(tokenizer_load(write_tok("bad-merge",
                                    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [5]}}", NULL),
                          &tok),
                 FOLIO_EINVAL);
    CHECK_EQ_INT(tokenizer_load(write_tok("bad-regex",
                                    "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, "
                                    "\"behavior\": \"Isolated\"}, \"model\": {\"type\": \"BPE\", \"vocab\": "
                                    "{\"a\": 0}, \"merges\": []}}", NULL), &tok),
                 FOLIO_EUNSUP);
    CHECK(tok == NULL);
    tokenizer_free(NULL);

    /* bad input to a good tokenizer */
    struct tokenizer *st = load_model_tok("stories260K");
    if (!st) return;
    int32_t *ids = NULL;
    int n = 0;
    CHECK_EQ_INT(tokenizer_encode(st, "\xC3\x28", 2, 1, &ids, &n), FOLIO_EINVAL);
    CHECK_EQ_INT(tokenizer_encode(st, "\xED\xA0\x80", 3, 1, &ids, &n), FOLIO_EINVAL); /* surrogate */
    CHECK(ids == NULL);
    CHECK_EQ_INT(tokenizer_encode(st, "a\0b", 3, 0, &ids, &n), 0); /* NUL is text like any other */
    free(ids);
    tokenizer_free(st);
}

/* A tiny BPE over single characters; {PRE} and {EXTRA} are spliced in. */
static const char *tiny(char *buf, size_t cap, const char *pre, const char *model_extra,
                        const char *added, const char *vocab, const char *merges) {
    snprintf(buf, cap,
             "{\"added_tokens\": [%s], \"normalizer\": null, \"pre_tokenizer\": %s, "
             "\"post_processor\": null, \"decoder\": {\"type\": \"Fuse\"}, "
             "\"model\": {\"type\": \"BPE\", %s \"vocab\": {%s}, \"merges\": [%s]}}",
             added, pre, model_extra, vocab, merges);
    return buf;
}

TEST(tok_bpe_rules) {
    char json[4096];
    struct tokenizer *tok = NULL;
    /* ranks decide, ties go left; merges as pairs; unknown characters fuse into one unk */
    int rc = tokenizer_load(write_tok("bpe1", tiny(json, sizeof json, "null", "\"unk_token\": \"<unk>\", \"fuse_unk\": true,", "",
                                             "\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"bc\":4,\"abc\":5,\"<unk>\":6,\"aa\":7",
                                             "[\"b\",\"c\"], \"a b\", \"a bc\", \"a a\""), NULL), &tok);
    CHECK_EQ_INT(rc, 0);
    if (tok) {
        CHECK(encode_eq(tok, "abc", 0, IDS(5)));  /* b c (rank 0) first, then a bc */
        CHECK(encode_eq(tok, "aaa", 0, IDS(7, 0))); /* leftmost of equal pairs */
        CHECK(encode_eq(tok, "xyab", 0, IDS(6, 3)));
        CHECK(encode_eq(tok, "x\xC3\xA9z", 0, IDS(6)));
        tokenizer_free(tok);
        tok = NULL;
    }
    /* ignore_merges: a pre-token that is itself in the vocabulary skips BPE */
    const char *v2 = "\"a\":0,\"b\":1,\"c\":2,\"abc\":3";
    rc = tokenizer_load(write_tok("bpe2", tiny(json, sizeof json, "null", "\"ignore_merges\": true,", "", v2, ""), NULL), &tok);
    CHECK_EQ_INT(rc, 0);
    if (tok) {
        CHECK(encode_eq(tok, "abc", 0, IDS(3)));
        CHECK(encode_eq(tok, "abca", 0, IDS(0, 1, 2, 0)));
        tokenizer_free(tok);
        tok = NULL;
    }
    rc = tokenizer_load(write_tok("bpe3", tiny(json, sizeof json, "null", "", "", v2, ""), NULL), &tok);
    CHECK_EQ_INT(rc, 0);
    if (tok) {
        CHECK(encode_eq(tok, "abc", 0, IDS(0, 1, 2)));
        /* no unk token and no byte fallback: unknown characters vanish, as in the JS port */
        CHECK(encode_eq(tok, "azb", 0, IDS(0, 1)));
        tokenizer_free(tok);
    }
}

TEST(tok_split_behaviors) {
    char json[4096], pre[512];
    const char *vocab = "\"a\":0,\"b\":1,\"-\":2,\"a-\":3,\"-b\":4,\"--\":5";
    const char *merges = "\"a -\", \"- b\", \"- -\"";
    struct {
        const char *behavior;
        int invert;
        const char *text;
        int32_t want[8];
        int n;
    } cases[] = {
        {"Isolated", 0, "a-b", {0, 2, 1}, 3},
        {"Removed", 0, "a-b", {0, 1}, 2},
        {"MergedWithPrevious", 0, "a-b", {3, 1}, 2},
        {"MergedWithNext", 0, "a-b", {0, 4}, 2},
        {"Contiguous", 0, "a--b", {0, 5, 1}, 3},
        {"Isolated", 1, "a-b", {0, 2, 1}, 3},
        {"Removed", 1, "a-b", {2}, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(pre, sizeof pre,
                 "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                 "{\"%s\": \"-\"}, \"behavior\": \"%s\", \"invert\": %s}]}",
                 i % 2 ? "Regex" : "String", cases[i].behavior, cases[i].invert ? "true" : "false");
        struct tokenizer *tok = NULL;
        char name[32];
        snprintf(name, sizeof name, "split%zu", i);
        int rc = tokenizer_load(write_tok(name, tiny(json, sizeof json, pre, "", "", vocab, merges), NULL), &tok);
        CHECK_EQ_INT(rc, 0);
        if (!tok) continue;
        if (!encode_eq(tok, cases[i].text, 0, cases[i].want, cases[i].n))
            test_fail(__FILE__, __LINE__, "Split %s invert=%d", cases[i].behavior, cases[i].invert);
        tokenizer_free(tok);
    }
}

TEST(tok_added_token_strip_and_metaspace) {
    char json[4096];
    struct tokenizer *tok = NULL;
    const char *added =
        "{\"id\": 3, \"content\": \"<m>\", \"special\": true, \"lstrip\": true, \"rstrip\": true, \"normalized\": false},"
        "{\"id\": 4, \"content\": \"<k>\", \"special\": false, \"normalized\": false}";
    int rc = tokenizer_load(write_tok("strip", tiny(json, sizeof json, "null", "", added, "\"a\":0,\" \":1,\"b\":2", ""), NULL),
                      &tok);
    CHECK_EQ_INT(rc, 0);
    if (tok) {
        CHECK(encode_eq(tok, "a  <m>  a", 0, IDS(0, 3, 0)));
        CHECK(encode_eq(tok, "a <k> a", 0, IDS(0, 1, 4, 1, 0)));
        CHECK(encode_eq(tok, "<k><m>b", 0, IDS(4, 3, 2)));
        char *s = decode(tok, IDS(0, 3, 4, 2), 1); /* <m> is special, <k> is not */
        CHECK_STR(s, "a<k>b");
        free(s);
        tokenizer_free(tok);
        tok = NULL;
    }
    /* Metaspace pre-tokenizer and decoder (Mistral-style tokenizer.json) */
    snprintf(json, sizeof json,
             "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Metaspace\", "
             "\"replacement\": \"\\u2581\", \"prepend_scheme\": \"always\", \"split\": true}, "
             "\"post_processor\": null, \"decoder\": {\"type\": \"Metaspace\", \"replacement\": \"\\u2581\", "
             "\"prepend_scheme\": \"always\", \"split\": true}, \"model\": {\"type\": \"BPE\", \"vocab\": "
             "{\"\\u2581\": 0, \"a\": 1, \"\\u2581a\": 2, \"b\": 3, \"\\u2581b\": 4}, \"merges\": "
             "[\"\\u2581 a\", \"\\u2581 b\"]}}");
    rc = tokenizer_load(write_tok("metaspace", json, "{\"add_bos_token\": false}"), &tok);
    CHECK_EQ_INT(rc, 0);
    if (tok) {
        CHECK(encode_eq(tok, "a b", 0, IDS(2, 4)));
        CHECK(encode_eq(tok, "ab", 0, IDS(2, 3)));
        char *s = decode(tok, IDS(2, 4, 3), 0);
        CHECK_STR(s, "a bb");
        free(s);
        tokenizer_free(tok);
    }
}

TEST(tok_config_bos_without_post_processor) {
    char json[4096];
    struct tokenizer *tok = NULL;
    const char *added = "{\"id\": 5, \"content\": \"<s>\", \"special\": true, \"normalized\": false},"
                        "{\"id\": 6, \"content\": \"</s>\", \"special\": true, \"normalized\": false}";
    int rc = tokenizer_load(write_tok("cfgbos", tiny(json, sizeof json, "null", "", added, "\"a\":0", ""),
                                "{\"add_bos_token\": true, \"add_eos_token\": true, \"bos_token\": "
                                "{\"content\": \"<s>\"}, \"eos_token\": \"</s>\"}"),
                      &tok);
    CHECK_EQ_INT(rc, 0);
    if (tok) {
        CHECK_EQ_INT(tokenizer_bos_id(tok), 5);
        CHECK_EQ_INT(tokenizer_eos_id(tok), 6);
        CHECK(encode_eq(tok, "a", 1, IDS(5, 0, 6)));
        CHECK(encode_eq(tok, "a", 0, IDS(0)));
        tokenizer_free(tok);
    }
}
