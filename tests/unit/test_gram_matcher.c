/* Matcher tests. The mask is checked exhaustively against accept_token (every token of small
 * vocabularies, at every position of random walks, with rollbacks and forks), and
 * accept_bytes/accepting against the reference recognizer grammar_matches, on hand-written
 * grammars (JSON, nesting, UTF-8) and on random ones. */
#include "base/util.h"
#include "grammar/gram_matcher.h"
#include "grammar/grammar.h"
#include "test.h"
#include "../tools/grammar_json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 1;
static uint32_t rnd(void) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}

/* A vocabulary: ids 0 and 1 are EOS and a special token (no bytes), then the given
 * strings, then random strings over the alphabet. */
struct tvocab {
    int n;
    uint8_t *bytes[4096];
    uint32_t lens[4096];
    struct gram_vocab *v;
};

static void tvocab_make(struct tvocab *tv, const char *const *fixed, int nfixed, const char *alphabet,
                        int nrandom, int maxlen) {
    memset(tv, 0, sizeof *tv);
    tv->bytes[0] = (uint8_t *)strdup("");
    tv->bytes[1] = (uint8_t *)strdup("");
    tv->n = 2;
    for (int i = 0; i < nfixed; i++) {
        tv->bytes[tv->n] = (uint8_t *)strdup(fixed[i]);
        tv->lens[tv->n++] = (uint32_t)strlen(fixed[i]);
    }
    size_t na = strlen(alphabet);
    for (size_t i = 0; i < na; i++) { /* every single byte of the alphabet */
        tv->bytes[tv->n] = malloc(1);
        tv->bytes[tv->n][0] = (uint8_t)alphabet[i];
        tv->lens[tv->n++] = 1;
    }
    for (int i = 0; i < nrandom && tv->n < 4096; i++) {
        int l = 1 + (int)(rnd() % (uint32_t)maxlen);
        tv->bytes[tv->n] = malloc((size_t)l);
        for (int j = 0; j < l; j++) tv->bytes[tv->n][j] = (uint8_t)alphabet[rnd() % na];
        tv->lens[tv->n++] = (uint32_t)l;
    }
    int32_t stop = 0;
    tv->v = gram_vocab_create(tv->n, (const uint8_t *const *)tv->bytes, tv->lens, &stop, 1);
    /* compiles on one, two or three threads in turn: the masks must not tell them apart */
    static int made;
    if (tv->v) gram_vocab_set_compile_threads(tv->v, 1 + made++ % 3);
}

static void tvocab_free(struct tvocab *tv) {
    gram_vocab_free(tv->v);
    for (int i = 0; i < tv->n; i++) free(tv->bytes[i]);
}

/* The mask against accept_token on a fork, for every token. Returns the number of allowed
 * tokens, -1 after a mismatch (reported). */
static int check_mask(struct gram_matcher *m, struct gram_matcher *fork, const struct tvocab *tv,
                      const char *what) {
    uint32_t mask[128 + 1];
    mask[gram_mask_words(tv->v)] = 0xdeadbeef;
    gram_matcher_fill_mask(m, mask);
    CHECK(mask[gram_mask_words(tv->v)] == 0xdeadbeef);
    int allowed = 0;
    for (int t = 0; t < tv->n; t++) {
        gram_matcher_copy(fork, m);
        folio_err(0, "-");
        int ok = gram_matcher_accept_token(fork, t) == 0;
        int bit = mask[t >> 5] >> (t & 31) & 1;
        /* the mask's precomputed sets do not see the matcher's limits: a token it offers may
         * still be refused when the parse outgrows them, with a message saying so */
        if (bit && !ok && strstr(folio_last_error(), "GRAM_MAX_STACKS")) return 0;
        if (ok != bit) {
            test_fail(__FILE__, __LINE__, "%s: token %d '%.*s' mask %d accept %d", what, t, (int)tv->lens[t],
                      (const char *)tv->bytes[t], bit, ok);
            return -1;
        }
        allowed += ok;
    }
    for (int t = tv->n; t < gram_mask_words(tv->v) * 32; t++) CHECK(!(mask[t >> 5] >> (t & 31) & 1));
    return allowed;
}

/* Random walks: at each step the mask must equal accept_token's verdicts; pick an allowed
 * token, sometimes roll back; accepting must agree with grammar_matches on the text so far. */
static void walk(const struct grammar *g, const struct tvocab *tv, int walks, int steps, const char *what) {
    struct gram_compiled *c = NULL;
    int rc = gram_compile(g, tv->v, &c);
    if (rc == FOLIO_EINVAL && strstr(folio_last_error(), "matches no string")) {
        /* random grammars may have an empty language: then nothing matches */
        for (int i = 0; i < 20; i++) {
            uint8_t s[4];
            size_t n = rnd() % 4;
            for (size_t j = 0; j < n; j++) s[j] = tv->bytes[2 + rnd() % (uint32_t)(tv->n - 2)][0];
            CHECK(!grammar_matches(g, s, n));
        }
        return;
    }
    CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "%s: %s\n", what, folio_last_error());
        return;
    }
    struct gram_matcher *m = gram_matcher_create(c), *fork = gram_matcher_create(c);
    uint8_t text[4096];
    size_t lens[GRAM_MAX_ROLLBACK + 64];
    for (int w = 0; w < walks; w++) {
        gram_matcher_reset(m);
        size_t n = 0;
        int ntok = 0;
        for (int step = 0; step < steps; step++) {
            CHECK_EQ_INT(gram_matcher_accepting(m), grammar_matches(g, text, n));
            int allowed = check_mask(m, fork, tv, what);
            if (allowed <= 0) break;
            uint32_t mask[129];
            gram_matcher_fill_mask(m, mask);
            int pick = (int)(rnd() % (uint32_t)allowed), t = 0;
            for (;; t++)
                if (mask[t >> 5] >> (t & 31) & 1 && pick-- == 0) break;
            if (t == 0) break; /* EOS: the walk is over */
            if (n + tv->lens[t] > sizeof text) break;
            CHECK_EQ_INT(gram_matcher_accept_token(m, t), 0);
            memcpy(text + n, tv->bytes[t], tv->lens[t]);
            if (ntok < (int)(sizeof lens / sizeof *lens)) lens[ntok] = n;
            n += tv->lens[t];
            ntok++;
            if (ntok >= 3 && rnd() % 5 == 0) { /* roll back up to 3 tokens */
                int k = 1 + (int)(rnd() % 3);
                if (k > GRAM_MAX_ROLLBACK) k = GRAM_MAX_ROLLBACK;
                if (ntok < (int)(sizeof lens / sizeof *lens) && gram_matcher_rollback(m, k) == 0) {
                    ntok -= k;
                    n = lens[ntok];
                }
            }
        }
        /* accept_bytes agrees with the reference on the text and on a mutated copy */
        gram_matcher_reset(m);
        int okb = gram_matcher_accept_bytes(m, text, n) == 0;
        CHECK(okb);
        CHECK_EQ_INT(okb && gram_matcher_accepting(m), grammar_matches(g, text, n));
        if (n) {
            text[rnd() % n] = (uint8_t)tv->bytes[2 + rnd() % (uint32_t)(tv->n - 2)][0];
            gram_matcher_reset(m);
            okb = gram_matcher_accept_bytes(m, text, n) == 0;
            if (grammar_matches(g, text, n)) CHECK(okb && gram_matcher_accepting(m));
            if (okb && gram_matcher_accepting(m)) CHECK(grammar_matches(g, text, n));
        }
    }
    gram_matcher_free(m);
    gram_matcher_free(fork);
    gram_compiled_free(c);
}

TEST(gram_matcher_json_walks) {
    static const char *fixed[] = {"{\"", "\":", "\",", "\"}", "\": \"", "\", \"", "true", "false", "null",
                                  "[\"", "\"]", "},", "}]", "\\u00", "\\n", " {", "\n  ", "1.5e", "\xC3\xA9",
                                  "\xF0\x9F\x98", "\x80", "a\"b", "12", "\"a\":1}", "  ", "\"\"", "{}", "[]"};
    struct tvocab tv;
    rng_state = 7;
    tvocab_make(&tv, fixed, (int)(sizeof fixed / sizeof *fixed), "{}[]\":, \nabe01-.\\u", 300, 4);
    CHECK(tv.v != NULL);
    struct grammar *g = gj_any(3);
    CHECK(g != NULL);
    if (g && tv.v) walk(g, &tv, 12, 40, "json");
    grammar_free(g);
    static const char *keys[] = {"name", "age", "tags", "ok", "color"};
    g = gj_object(5, keys, "snabe", 2);
    CHECK(g != NULL);
    if (g && tv.v) walk(g, &tv, 12, 40, "object");
    grammar_free(g);
    tvocab_free(&tv);
}

TEST(gram_matcher_basics) {
    /* root ::= "ab" | "abc" ; EOS, done, rollback, accept_bytes, copy */
    static const char *fixed[] = {"a", "b", "c", "ab", "abc", "bc", "x"};
    struct tvocab tv;
    tvocab_make(&tv, fixed, 7, "a", 0, 1);
    const char *ch[] = {"ab", "abc"};
    struct grammar *g = NULL;
    CHECK_EQ_INT(grammar_from_choices(ch, NULL, 2, &g), 0);
    struct gram_compiled *c = NULL;
    CHECK_EQ_INT(gram_compile(g, tv.v, &c), 0);
    CHECK(gram_compiled_bytes(c) > 0);
    struct gram_matcher *m = gram_matcher_create(c);
    CHECK(!gram_matcher_accepting(m) && !gram_matcher_done(m));
    CHECK_EQ_INT(gram_matcher_accept_token(m, 0), FOLIO_EINVAL); /* EOS too early */
    CHECK_EQ_INT(gram_matcher_accept_token(m, 1), FOLIO_EINVAL); /* special token */
    CHECK_EQ_INT(gram_matcher_accept_token(m, 999), FOLIO_EINVAL);
    CHECK_EQ_INT(gram_matcher_accept_token(m, 5), 0); /* "ab" */
    CHECK(gram_matcher_accepting(m) && !gram_matcher_done(m));
    CHECK_EQ_INT(gram_matcher_accept_token(m, 4), 0); /* "c" */
    CHECK(gram_matcher_accepting(m) && gram_matcher_done(m));
    CHECK_EQ_INT(gram_matcher_accept_token(m, 4), FOLIO_EINVAL);
    CHECK_EQ_INT(gram_matcher_rollback(m, 3), FOLIO_EINVAL);
    CHECK_EQ_INT(gram_matcher_rollback(m, 1), 0);
    CHECK(gram_matcher_accepting(m) && !gram_matcher_done(m));
    CHECK_EQ_INT(gram_matcher_accept_token(m, 0), 0); /* EOS */
    CHECK(gram_matcher_done(m));
    CHECK_EQ_INT(gram_matcher_accept_token(m, 4), FOLIO_EINVAL);
    uint32_t mask[1];
    gram_matcher_fill_mask(m, mask);
    CHECK_EQ_INT(mask[0], 1); /* only EOS after the end */
    CHECK_EQ_INT(gram_matcher_rollback(m, 2), 0);
    gram_matcher_fill_mask(m, mask);
    CHECK_EQ_INT(mask[0], 1u << 2 | 1u << 5 | 1u << 6 | 1u << 9); /* a, ab, abc, a */
    CHECK_EQ_INT(gram_matcher_accept_bytes(m, (const uint8_t *)"ab", 2), 0);
    CHECK_EQ_INT(gram_matcher_accept_bytes(m, (const uint8_t *)"x", 1), FOLIO_EINVAL);
    CHECK(gram_matcher_accepting(m));
    struct gram_matcher *f = gram_matcher_create(c);
    gram_matcher_copy(f, m);
    CHECK(gram_matcher_accepting(f));
    CHECK_EQ_INT(gram_matcher_accept_token(f, 4), 0);
    CHECK(gram_matcher_done(f) && !gram_matcher_done(m));
    gram_matcher_free(f);
    gram_matcher_free(m);
    gram_matcher_free(NULL);
    gram_compiled_free(c);
    gram_compiled_free(NULL);
    grammar_free(g);
    tvocab_free(&tv);
    gram_vocab_free(NULL);
}

TEST(gram_matcher_long_parse) {
    /* many tokens through the node pool's collection, nested deep enough to need it */
    static const char *fixed[] = {"[", "]", "[[", "]]", "1", ",", "[1,"};
    struct tvocab tv;
    tvocab_make(&tv, fixed, 7, "[", 0, 1);
    struct grammar *g = gj_any(0);
    struct gram_compiled *c = NULL;
    CHECK_EQ_INT(gram_compile(g, tv.v, &c), 0);
    struct gram_matcher *m = gram_matcher_create(c);
    int depth = 0, up = 1;
    for (int i = 0; i < 20000; i++) {
        if (depth == 150 + i % 50) up = 0;
        int t = up ? 2 /* [ */ : 3 /* ] */;
        depth += up ? 1 : -1;
        if (gram_matcher_accept_token(m, t) != 0) {
            test_fail(__FILE__, __LINE__, "token %d at step %d depth %d: %s", t, i, depth, folio_last_error());
            break;
        }
        if (depth == 0) {
            CHECK(gram_matcher_accepting(m));
            gram_matcher_reset(m);
            up = 1;
        }
    }
    /* too deep: refused, not grown */
    gram_matcher_reset(m);
    int refused = 0;
    for (int i = 0; i < GRAM_MAX_DEPTH * 2 && !refused; i++) refused = gram_matcher_accept_token(m, 2) != 0;
    CHECK(refused);
    gram_matcher_free(m);
    gram_compiled_free(c);
    grammar_free(g);
    tvocab_free(&tv);
}

/* A random grammar over "ab()": up to 4 rules of nested seq/alt/repeat/ref. */
static grammar_expr rand_expr(struct grammar_builder *b, const int *rules, int nr, int depth) {
    int k = (int)(rnd() % (depth > 2 ? 3u : 7u));
    switch (k) {
    case 0: {
        char s[3] = {"ab()"[rnd() % 4], "ab()"[rnd() % 4], 0};
        return grammar_literal(b, s, 1 + rnd() % 2);
    }
    case 1: return grammar_byte_range(b, 'a', 'b');
    case 2: return grammar_ref(b, rules[rnd() % (uint32_t)nr]);
    case 3:
    case 4: {
        grammar_expr it[3];
        int n = 2 + (int)(rnd() % 2);
        for (int i = 0; i < n; i++) it[i] = rand_expr(b, rules, nr, depth + 1);
        return k == 3 ? grammar_seq(b, it, n) : grammar_alt(b, it, n);
    }
    case 5: {
        int min = (int)(rnd() % 3), max = rnd() % 3 == 0 ? -1 : min + (int)(rnd() % 3);
        return grammar_repeat(b, rand_expr(b, rules, nr, depth + 1), min, max);
    }
    default: return grammar_empty(b);
    }
}

TEST(gram_matcher_random_grammars) {
    static const char *fixed[] = {"()", "((", "))", "ab", "a(", ")b", "(a)", "aab"};
    struct tvocab tv;
    rng_state = 99;
    tvocab_make(&tv, fixed, 8, "ab()", 40, 3);
    int tried = 0, ran = 0;
    for (int i = 0; i < 300 && ran < 120; i++) {
        struct grammar_builder *b = grammar_builder_create();
        int nr = 1 + (int)(rnd() % 4), rules[4];
        char name[16];
        for (int r = 0; r < nr; r++) {
            snprintf(name, sizeof name, "r%d", r);
            rules[r] = grammar_rule_declare(b, name);
        }
        for (int r = 0; r < nr; r++) grammar_rule_define(b, rules[r], rand_expr(b, rules, nr, 0));
        struct grammar *g = NULL;
        tried++;
        if (grammar_builder_finish(b, rules[0], &g) == 0) {
            ran++;
            char what[32];
            snprintf(what, sizeof what, "random %d", i);
            walk(g, &tv, 3, 12, what);
        }
        grammar_builder_free(b);
        grammar_free(g);
    }
    CHECK(ran > 50);
    tvocab_free(&tv);
}

/* Counted runs, as a string's maxLength makes them: a run of rule calls and a run of bytes,
 * each longer than the vocabulary's longest token, so that most counts share their token sets
 * (gram_compile's future classes) while the last ones differ: the masks must stay exact at
 * every count, the end included. */
TEST(gram_matcher_counted_runs) {
    static const char *fixed[] = {"\"", "ab\"", "b\"c", "\"c", "abab", "bbbbb"};
    struct tvocab tv;
    rng_state = 7;
    tvocab_make(&tv, fixed, 6, "abc\"", 60, 5);
    for (int variant = 0; variant < 2; variant++) {
        struct grammar_builder *b = grammar_builder_create();
        int root = grammar_rule_declare(b, "root"), ch = grammar_rule_declare(b, "ch");
        grammar_rule_define(b, ch, grammar_byte_range(b, 'a', 'b'));
        grammar_expr one = variant ? grammar_byte_range(b, 'a', 'b') : grammar_ref(b, ch);
        grammar_expr q = grammar_literal(b, "\"", 1);
        grammar_rule_define(b, root, grammar_seq(b, (grammar_expr[]){q, grammar_repeat(b, one, 2, 45), q,
                                                                     grammar_repeat(b, grammar_literal(b, "c", 1), 0, 1)}, 4));
        struct grammar *g = NULL;
        CHECK_EQ_INT(grammar_builder_finish(b, root, &g), 0);
        const char *what = variant ? "counted bytes" : "counted calls";
        walk(g, &tv, 6, 60, what);
        /* and every count in turn, to the end: the quote, then "a" (id 8) 45 times, the mask
         * checked at each; "abab" and "bbbbb" must leave the mask as the end comes near */
        struct gram_compiled *c = NULL;
        CHECK_EQ_INT(gram_compile(g, tv.v, &c), 0);
        struct gram_matcher *m = c ? gram_matcher_create(c) : NULL, *fork = c ? gram_matcher_create(c) : NULL;
        if (m && fork) {
            CHECK_EQ_INT(gram_matcher_accept_token(m, 2), 0);
            for (int i = 0; i < 45; i++) {
                if (check_mask(m, fork, &tv, what) < 0) break;
                CHECK_EQ_INT(gram_matcher_accept_token(m, 8), 0);
            }
            CHECK(gram_matcher_accept_token(m, 8) != 0); /* a 46th is one too many */
        }
        gram_matcher_free(m);
        gram_matcher_free(fork);
        gram_compiled_free(c);
        grammar_builder_free(b);
        grammar_free(g);
    }
    tvocab_free(&tv);
}

TEST(gram_matcher_utf8_and_shared_cache) {
    /* two grammars sharing a string rule compile against one vocab (the second reuses the
     * first's cached sets), and UTF-8 tokens that split code points work */
    static const char *fixed[] = {"\"", "\xC3", "\xA9", "\xC3\xA9", "\xE2\x82\xAC", "\xE2\x82", "\xAC\"",
                                  "\xF0\x9F\x98\x80", "\xED\xA0\x80", "x\"", "\"x", "\\\"", "\\u00e9"};
    struct tvocab tv;
    tvocab_make(&tv, fixed, 13, "\"x\\u0e9", 20, 3);
    static const char *k1[] = {"a"}, *k2[] = {"b"};
    struct grammar *g1 = gj_object(1, k1, "s", 1), *g2 = gj_object(1, k2, "s", 1);
    walk(g1, &tv, 6, 30, "utf8 a");
    walk(g2, &tv, 6, 30, "utf8 b");
    grammar_free(g1);
    grammar_free(g2);
    tvocab_free(&tv);
}

TEST(gram_matcher_limits) {
    static const char *fixed[] = {"a", "b", "c", "abc"};
    struct tvocab tv;
    tvocab_make(&tv, fixed, 4, "a", 0, 1);
    /* a counted repeat whose automaton exceeds GRAM_MAX_DFA_STATES: refused at compile */
    struct grammar_builder *b = grammar_builder_create();
    int root = grammar_rule_declare(b, "root");
    grammar_rule_define(b, root, grammar_repeat(b, grammar_literal(b, "abc", 3), 0, GRAM_MAX_DFA_STATES / 2));
    struct grammar *g = NULL;
    CHECK_EQ_INT(grammar_builder_finish(b, root, &g), 0);
    grammar_builder_free(b);
    struct gram_compiled *c = NULL;
    CHECK_EQ_INT(gram_compile(g, tv.v, &c), FOLIO_EINVAL);
    CHECK(strstr(folio_last_error(), "GRAM_MAX_DFA_STATES") != NULL);
    CHECK(c == NULL);
    grammar_free(g);

    /* ambiguity across rules doubles the stacks per "a": r ::= p | q | "" ; p ::= "a" r "b" ;
     * q ::= "a" r "c". Past GRAM_MAX_STACKS the token is refused and the position kept. */
    b = grammar_builder_create();
    int r = grammar_rule_declare(b, "r"), p = grammar_rule_declare(b, "p"), q = grammar_rule_declare(b, "q");
    grammar_rule_define(b, r, grammar_alt(b, (grammar_expr[]){grammar_ref(b, p), grammar_ref(b, q), grammar_empty(b)}, 3));
    grammar_rule_define(b, p, grammar_seq(b, (grammar_expr[]){grammar_literal(b, "a", 1), grammar_ref(b, r), grammar_literal(b, "b", 1)}, 3));
    grammar_rule_define(b, q, grammar_seq(b, (grammar_expr[]){grammar_literal(b, "a", 1), grammar_ref(b, r), grammar_literal(b, "c", 1)}, 3));
    CHECK_EQ_INT(grammar_builder_finish(b, r, &g), 0);
    grammar_builder_free(b);
    CHECK_EQ_INT(gram_compile(g, tv.v, &c), 0);
    struct gram_matcher *m = gram_matcher_create(c);
    int i = 0;
    while (i < 40 && gram_matcher_accept_token(m, 2) == 0) i++;
    if (!(i >= 5 && i < 40)) test_fail(__FILE__, __LINE__, "refused after %d tokens", i);
    /* the refused token left the position as it was: closing brackets still work */
    uint32_t mask[1];
    gram_matcher_fill_mask(m, mask);
    CHECK(mask[0] >> 3 & 1 && mask[0] >> 4 & 1); /* b, c */
    CHECK_EQ_INT(gram_matcher_accept_token(m, 3), 0);
    gram_matcher_free(m);
    gram_compiled_free(c);
    grammar_free(g);
    tvocab_free(&tv);
}

#include <pthread.h>

struct compile_job {
    struct gram_vocab *v;
    int seed, ok;
};

static void *compile_thread(void *arg) {
    struct compile_job *j = arg;
    j->ok = 1;
    for (int k = 0; k < 6; k++) {
        static const char *names[] = {"a", "bb", "name", "x", "y", "zz"};
        const char *keys[3] = {names[(j->seed + k) % 6], names[(j->seed + 2 * k + 1) % 6], names[(k + 3) % 6]};
        struct grammar *g = gj_object(3, keys, k % 2 ? "sna" : "vbe", 1);
        struct gram_compiled *c = NULL;
        if (!g || gram_compile(g, j->v, &c)) j->ok = 0;
        struct gram_matcher *m = c ? gram_matcher_create(c) : NULL;
        uint32_t mask[128];
        if (m) gram_matcher_fill_mask(m, mask);
        if (m && !(mask[0] & 1u << 2)) j->ok = 0; /* "{" (token 2) starts every object */
        gram_matcher_free(m);
        gram_compiled_free(c);
        grammar_free(g);
    }
    return NULL;
}

TEST(gram_compile_threads) {
    static const char *fixed[] = {"{", "}", "\"", ":", ",", "\"a\"", "\"name\":", "true", "1"};
    struct tvocab tv;
    rng_state = 5;
    tvocab_make(&tv, fixed, 9, "{}\":, abnxyz01", 500, 5);
    /* fixed[0] is token 2 */
    pthread_t th[4];
    struct compile_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct compile_job){.v = tv.v, .seed = i};
        pthread_create(&th[i], NULL, compile_thread, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].ok);
    }
    tvocab_free(&tv);
}
