/* Grammar tests: the builder and its checks (undefined rules, left recursion through nullable
 * prefixes, limits), UTF-8 code point ranges against an independent encoder, the reference
 * recognizer on hand-written languages, printing and hashing. The matcher's tests follow in
 * test_gram_matcher.c. */
#include "base/util.h"
#include "grammar/grammar.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int M(const struct grammar *g, const char *s) {
    return grammar_matches(g, (const uint8_t *)s, strlen(s));
}

/* root ::= body, finished; NULL (with the error checked by the caller) on failure */
static struct grammar *finish(struct grammar_builder *b, grammar_expr body) {
    int root = grammar_rule_declare(b, "root");
    grammar_rule_define(b, root, body);
    struct grammar *g = NULL;
    int rc = grammar_builder_finish(b, root, &g);
    grammar_builder_free(b);
    return rc ? NULL : g;
}

TEST(grammar_literal_alt_repeat) {
    struct grammar_builder *b = grammar_builder_create();
    grammar_expr ab = grammar_literal(b, "ab", 2);
    grammar_expr c = grammar_literal(b, "c", 1);
    grammar_expr e = grammar_seq2(b, grammar_repeat(b, ab, 1, 3), grammar_repeat(b, c, 0, 1));
    struct grammar *g = finish(b, e);
    CHECK(g != NULL);
    if (!g) return;
    CHECK(M(g, "ab"));
    CHECK(M(g, "abc"));
    CHECK(M(g, "ababab"));
    CHECK(M(g, "abababc"));
    CHECK(!M(g, ""));
    CHECK(!M(g, "abababab"));
    CHECK(!M(g, "abcc"));
    CHECK(!M(g, "a"));
    char *p = grammar_print(g);
    CHECK_STR(p, "root ::= (\"ab\"){1,3} \"c\"?\n");
    free(p);
    grammar_free(g);
}

TEST(grammar_empty_and_dead) {
    struct grammar_builder *b = grammar_builder_create();
    grammar_expr dead = grammar_alt(b, NULL, 0);
    grammar_expr e = grammar_alt2(b, grammar_seq2(b, grammar_literal(b, "x", 1), dead),
                                  grammar_seq(b, NULL, 0));
    struct grammar *g = finish(b, e);
    CHECK(g != NULL);
    if (!g) return;
    CHECK(M(g, ""));
    CHECK(!M(g, "x"));
    grammar_free(g);
}

TEST(grammar_nullable_loops) {
    /* (a?)* and (a?){2,5}: nullable bodies under unbounded and bounded repetition */
    struct grammar_builder *b = grammar_builder_create();
    grammar_expr a = grammar_repeat(b, grammar_literal(b, "a", 1), 0, 1);
    grammar_expr e = grammar_seq2(b, grammar_repeat(b, a, 0, -1), grammar_literal(b, "b", 1));
    struct grammar *g = finish(b, e);
    CHECK(g && M(g, "b") && M(g, "aaab") && !M(g, "aaa"));
    grammar_free(g);
    b = grammar_builder_create();
    a = grammar_repeat(b, grammar_literal(b, "a", 1), 0, 1);
    g = finish(b, grammar_repeat(b, a, 2, 5));
    CHECK(g && M(g, "") && M(g, "aaaaa") && !M(g, "aaaaaa"));
    grammar_free(g);
}

TEST(grammar_recursive_rules) {
    /* balanced parentheses: p ::= ("(" p ")")*  */
    struct grammar_builder *b = grammar_builder_create();
    int p = grammar_rule_declare(b, "p");
    grammar_expr items[3] = {grammar_literal(b, "(", 1), grammar_ref(b, p), grammar_literal(b, ")", 1)};
    grammar_rule_define(b, p, grammar_repeat(b, grammar_seq(b, items, 3), 0, -1));
    struct grammar *g = finish(b, grammar_ref(b, p));
    CHECK(g != NULL);
    if (!g) return;
    CHECK(M(g, ""));
    CHECK(M(g, "()"));
    CHECK(M(g, "(()())()"));
    CHECK(!M(g, "(()"));
    CHECK(!M(g, ")("));
    char *s = grammar_print(g);
    CHECK_STR(s, "root ::= p\np ::= (\"(\" p \")\")*\n");
    free(s);
    grammar_free(g);
}

TEST(grammar_errors) {
    struct grammar_builder *b = grammar_builder_create();
    int x = grammar_rule_declare(b, "x");
    struct grammar *g = finish(b, grammar_ref(b, x));
    CHECK(g == NULL);
    CHECK(strstr(folio_last_error(), "'x' is undefined") != NULL);

    /* direct left recursion */
    b = grammar_builder_create();
    int e = grammar_rule_declare(b, "expr");
    grammar_rule_define(b, e, grammar_alt2(b, grammar_seq2(b, grammar_ref(b, e), grammar_literal(b, "+", 1)),
                                           grammar_literal(b, "1", 1)));
    g = finish(b, grammar_ref(b, e));
    CHECK(g == NULL);
    CHECK(strstr(folio_last_error(), "left-recursive") != NULL);

    /* through a nullable prefix and another rule: a ::= ws b "x"; b ::= "y"? a? */
    b = grammar_builder_create();
    int ra = grammar_rule_declare(b, "a"), rb = grammar_rule_declare(b, "b");
    grammar_expr ws = grammar_repeat(b, grammar_literal(b, " ", 1), 0, -1);
    grammar_expr it[3] = {ws, grammar_ref(b, rb), grammar_literal(b, "x", 1)};
    grammar_rule_define(b, ra, grammar_seq(b, it, 3));
    grammar_rule_define(b, rb, grammar_seq2(b, grammar_repeat(b, grammar_literal(b, "y", 1), 0, 1),
                                            grammar_repeat(b, grammar_ref(b, ra), 0, 1)));
    g = finish(b, grammar_ref(b, ra));
    CHECK(g == NULL);
    CHECK(strstr(folio_last_error(), "left-recursive") != NULL);

    /* right recursion is fine */
    b = grammar_builder_create();
    int r = grammar_rule_declare(b, "r");
    grammar_rule_define(b, r, grammar_alt2(b, grammar_seq2(b, grammar_literal(b, "a", 1), grammar_ref(b, r)),
                                           grammar_empty(b)));
    g = finish(b, grammar_ref(b, r));
    CHECK(g && M(g, "aaa") && M(g, ""));
    grammar_free(g);

    /* bad repeat bounds, defined twice, GRAMMAR_NONE propagation */
    b = grammar_builder_create();
    CHECK_EQ_INT(grammar_repeat(b, grammar_empty(b), 0, GRAMMAR_MAX_REPEAT + 1), GRAMMAR_NONE);
    CHECK(strstr(folio_last_error(), "GRAMMAR_MAX_REPEAT") != NULL);
    CHECK_EQ_INT(grammar_seq2(b, GRAMMAR_NONE, grammar_empty(b)), GRAMMAR_NONE);
    g = finish(b, grammar_empty(b));
    CHECK(g == NULL);
    CHECK(strstr(folio_last_error(), "GRAMMAR_MAX_REPEAT") != NULL);
    b = grammar_builder_create();
    r = grammar_rule_declare(b, "r");
    CHECK_EQ_INT(grammar_rule_define(b, r, grammar_empty(b)), r);
    CHECK_EQ_INT(grammar_rule_define(b, r, grammar_empty(b)), GRAMMAR_NONE);
    grammar_builder_free(b);

    /* nesting limit */
    b = grammar_builder_create();
    grammar_expr d = grammar_literal(b, "a", 1);
    for (int i = 0; i < GRAMMAR_MAX_DEPTH + 2; i++) d = grammar_repeat(b, d, 0, 1);
    g = finish(b, d);
    CHECK(g == NULL);
    CHECK(strstr(folio_last_error(), "GRAMMAR_MAX_DEPTH") != NULL);
    /* long flat chains are not nesting */
    b = grammar_builder_create();
    d = grammar_empty(b);
    for (int i = 0; i < 5000; i++) d = grammar_seq2(b, d, grammar_literal(b, "ab", 2));
    g = finish(b, d);
    CHECK(g != NULL);
    grammar_free(g);
}

TEST(grammar_fresh_and_hash) {
    struct grammar_builder *b = grammar_builder_create();
    int s1 = grammar_rule_fresh(b, "string"), s2 = grammar_rule_fresh(b, "string");
    CHECK(s1 != s2);
    CHECK_EQ_INT(grammar_rule_declare(b, "string_1"), s1);
    grammar_rule_define(b, s1, grammar_literal(b, "q", 1));
    grammar_rule_define(b, s2, grammar_ref(b, s1));
    struct grammar *g1 = finish(b, grammar_ref(b, s2));
    b = grammar_builder_create();
    int o = grammar_rule_declare(b, "other"), t = grammar_rule_declare(b, "third");
    grammar_rule_define(b, t, grammar_literal(b, "q", 1));
    grammar_rule_define(b, o, grammar_ref(b, t));
    struct grammar *g2 = finish(b, grammar_ref(b, o));
    b = grammar_builder_create();
    struct grammar *g3 = finish(b, grammar_literal(b, "r", 1));
    CHECK(g1 && g2 && g3);
    if (g1 && g2 && g3) {
        CHECK(grammar_hash(g1) == grammar_hash(g2));
        CHECK(grammar_hash(g1) != grammar_hash(g3));
    }
    grammar_free(g1);
    grammar_free(g2);
    grammar_free(g3);
    grammar_free(NULL);
    grammar_builder_free(NULL);
}

TEST(grammar_choices) {
    const char *s[] = {"yes", "no", "maybe", ""};
    struct grammar *g = NULL;
    CHECK_EQ_INT(grammar_from_choices(s, NULL, 3, &g), 0);
    CHECK(g && M(g, "yes") && M(g, "no") && M(g, "maybe") && !M(g, "") && !M(g, "yesno"));
    grammar_free(g);
    size_t lens[] = {2, 0};
    CHECK_EQ_INT(grammar_from_choices((const char *const[]){"a\0b", ""}, lens, 2, &g), 0);
    CHECK(g && grammar_matches(g, (const uint8_t *)"a\0", 2) && M(g, "") && !M(g, "a"));
    grammar_free(g);
    CHECK_EQ_INT(grammar_from_choices(s, NULL, 0, &g), FOLIO_EINVAL);
}

static size_t enc(uint32_t cp, uint8_t *o) {
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = (uint8_t)(0xC0 | cp >> 6); o[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12); o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18); o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F)); o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

TEST(grammar_codepoints) {
    static const uint32_t r[][2] = {{'a', 'z'}, {0x3B1, 0x3C9}, {0x7F0, 0x900}, {0xD000, 0xE100},
                                    {0xFFF0, 0x10010}, {0x1F600, 0x1F64F}, {'c', 'e'}, {0x10FFF0, 0x7FFFFFFF}};
    for (int neg = 0; neg < 2; neg++) {
        struct grammar_builder *b = grammar_builder_create();
        struct grammar *g = finish(b, grammar_codepoints(b, r, 8, neg));
        CHECK(g != NULL);
        if (!g) return;
        int bad = 0;
        for (uint32_t cp = 0; cp <= 0x10FFFF; cp += (cp < 0x11000 ? 1 : 97)) {
            int in = 0;
            for (int i = 0; i < 8; i++) in |= cp >= r[i][0] && cp <= r[i][1];
            int want = (cp >= 0xD800 && cp <= 0xDFFF) ? 0 : in != neg;
            uint8_t o[4];
            size_t n = enc(cp, o);
            if (grammar_matches(g, o, n) != want && bad++ < 5)
                test_fail(__FILE__, __LINE__, "neg %d: U+%04X got %d", neg, cp, !want);
        }
        /* the ends of the ranges (the stride above skips most of the top planes) */
        uint8_t o[4];
        CHECK(grammar_matches(g, o, enc(0x10FFFF, o)) == !neg);
        CHECK(grammar_matches(g, o, enc(0x1F600, o)) == !neg);
        CHECK(grammar_matches(g, o, enc(0x1F650, o)) == neg);
        /* never overlong forms, encoded surrogates, past U+10FFFF, or two code points */
        CHECK(!grammar_matches(g, (const uint8_t *)"\xC1\xA1", 2));
        CHECK(!grammar_matches(g, (const uint8_t *)"\xE0\x81\xA1", 3));
        CHECK(!grammar_matches(g, (const uint8_t *)"\xED\xA0\x80", 3));
        CHECK(!grammar_matches(g, (const uint8_t *)"\xF4\x90\x80\x80", 4));
        CHECK(!grammar_matches(g, (const uint8_t *)"ab", 2));
        CHECK(!grammar_matches(g, (const uint8_t *)"", 0));
        grammar_free(g);
    }
    /* negating nothing is any scalar value */
    struct grammar_builder *b = grammar_builder_create();
    struct grammar *g = finish(b, grammar_repeat(b, grammar_codepoints(b, NULL, 0, 1), 0, -1));
    CHECK(g && M(g, "h\xC3\xA9llo \xF0\x9F\x98\x80") && !M(g, "\xFF") && !M(g, "\xC3"));
    grammar_free(g);
}

TEST(grammar_print_escapes) {
    struct grammar_builder *b = grammar_builder_create();
    uint32_t set[8] = {0};
    set['"' >> 5] |= 1u << ('"' & 31);
    set['\n' >> 5] |= 1u << ('\n' & 31);
    for (int c = '0'; c <= '9'; c++) set[c >> 5] |= 1u << (c & 31);
    grammar_expr it[3] = {grammar_literal(b, "\"q\"\n", 4), grammar_bytes(b, set), grammar_byte_range(b, 0x80, 0xFF)};
    struct grammar *g = finish(b, grammar_seq(b, it, 3));
    char *p = g ? grammar_print(g) : NULL;
    CHECK_STR(p, "root ::= \"\\\"q\\\"\\n\" [\\n\"0-9] [\\x80-\\xFF]\n");
    free(p);
    grammar_free(g);
}

/* text_without(t) against strstr over every string up to length 6 of an alphabet that holds
 * t's bytes and others: the grammar matches exactly the strings that do not contain t. */
static void check_without(const char *t, const char *alphabet, int maxlen) {
    struct grammar_builder *b = grammar_builder_create();
    struct grammar *g = finish(b, grammar_text_without(b, t, strlen(t)));
    CHECK(g != NULL);
    if (!g) return;
    const int k = (int)strlen(alphabet);
    char s[16];
    int wrong = 0;
    for (int len = 0; len <= maxlen; len++) {
        long total = 1;
        for (int i = 0; i < len; i++) total *= k;
        for (long x = 0; x < total; x++) {
            long y = x;
            for (int i = 0; i < len; i++, y /= k) s[i] = alphabet[y % k];
            s[len] = '\0';
            if (M(g, s) != (strstr(s, t) == NULL) && wrong++ < 5) test_fail(__FILE__, __LINE__, "'%s' without '%s': %d", s, t, M(g, s));
        }
    }
    grammar_free(g);
}

TEST(grammar_text_without) {
    check_without("<ab>", "<ab>x", 6);
    check_without("</t>", "</t>", 6);
    check_without("<", "<a", 5);
    check_without("[T]", "[T]]", 6);
    /* a trigger whose first byte recurs is refused, with a message */
    struct grammar_builder *b = grammar_builder_create();
    CHECK(grammar_text_without(b, "abab", 4) == GRAMMAR_NONE);
    int root = grammar_rule_declare(b, "root");
    grammar_rule_define(b, root, grammar_empty(b));
    struct grammar *g = NULL;
    CHECK(grammar_builder_finish(b, root, &g) == FOLIO_EINVAL);
    CHECK(strstr(folio_last_error(), "repeats its first byte") != NULL);
    grammar_builder_free(b);
}

/* A recursive grammar (balanced brackets) embedded twice between literals: its rules are
 * copied under fresh names, its root matched where the embedding stands. */
TEST(grammar_embed) {
    struct grammar_builder *b = grammar_builder_create();
    int r = grammar_rule_declare(b, "root");
    grammar_rule_define(b, r, grammar_repeat(b, grammar_seq(b, (grammar_expr[]){grammar_literal(b, "(", 1),
                        grammar_ref(b, r), grammar_literal(b, ")", 1)}, 3), 0, -1));
    struct grammar *inner = NULL;
    CHECK(grammar_builder_finish(b, r, &inner) == 0);
    grammar_builder_free(b);
    if (!inner) return;
    b = grammar_builder_create();
    grammar_expr e = grammar_seq(b, (grammar_expr[]){grammar_literal(b, "x", 1), grammar_embed(b, inner),
                                 grammar_literal(b, "y", 1), grammar_embed(b, inner)}, 4);
    struct grammar *g = finish(b, e);
    grammar_free(inner);
    CHECK(g != NULL);
    if (!g) return;
    CHECK(M(g, "xy"));
    CHECK(M(g, "x(()())y()"));
    CHECK(M(g, "x((()))y(())()"));
    CHECK(!M(g, "x(()y"));
    CHECK(!M(g, "x()y)("));
    CHECK(!M(g, "()y"));
    grammar_free(g);
}
