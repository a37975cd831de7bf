/* gram_regex tests: each construct of the supported ECMAScript subset against strings it must
 * and must not match (grammar_matches as the judge), the anchoring rules of unanchored patterns,
 * JSON-string mode's escapes and length folding, and the refusals (backreferences, lookaround,
 * \b) with their error codes. */
#include "grammar/gram_regex.h"
#include "base/util.h"
#include "test.h"

#include <stdint.h>
#include <string.h>

static struct grammar *re_grammar(const char *re, int unanchored, int json, int min_len, int max_len, int *exact) {
    struct grammar_builder *b = grammar_builder_create();
    struct grammar *g = NULL;
    grammar_expr e;
    int ex = 1;
    int rc = json ? gram_regex_json_expr(b, re, strlen(re), unanchored, min_len, max_len, &e, &ex)
                  : gram_regex_expr(b, re, strlen(re), unanchored, &e);
    if (exact) *exact = ex;
    if (rc == 0) {
        int root = grammar_rule_declare(b, "root");
        grammar_rule_define(b, root, e);
        if (grammar_builder_finish(b, root, &g)) g = NULL;
    }
    grammar_builder_free(b);
    return g;
}

static int m(const struct grammar *g, const char *s) { return g && grammar_matches(g, (const uint8_t *)s, strlen(s)); }

/* every string of yes matches the anchored regex, none of no */
static void expect(const char *re, const char *const *yes, const char *const *no) {
    struct grammar *g = re_grammar(re, 0, 0, 0, -1, NULL);
    if (!g) test_fail(__FILE__, __LINE__, "regex /%s/ failed: %s", re, folio_last_error());
    for (; yes && *yes; yes++)
        if (!m(g, *yes)) test_fail(__FILE__, __LINE__, "/%s/ should match \"%s\"", re, *yes);
    for (; no && *no; no++)
        if (m(g, *no)) test_fail(__FILE__, __LINE__, "/%s/ should not match \"%s\"", re, *no);
    grammar_free(g);
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

TEST(gram_regex_basics) {
    expect("abc", L("abc"), L("ab", "abcd", ""));
    expect("a|bc|", L("a", "bc", ""), L("b", "abc"));
    expect("a*b+c?", L("b", "aabbb", "bc", "abc"), L("", "ac", "abcc"));
    expect("a{2}b{1,3}c{2,}", L("aabcc", "aabbbccc"), L("abcc", "aabbbbcc", "aabc"));
    expect("(ab)+(?:cd)?", L("ab", "abab", "ababcd"), L("", "abc", "cd"));
    expect("(?<year>\\d{4})-x", L("2024-x"), L("202-x"));
    expect("a+?b*?", L("a", "aab"), L("b"));
    expect("x{", L("x{"), L("x"));
}

TEST(gram_regex_classes) {
    expect("[a-c]+", L("abcabc"), L("d", ""));
    expect("[^a-c]", L("d", "\xc3\xa9", "\n"), L("a", "b"));
    expect("\\d\\w\\s", L("1a ", "9_\t"), L("a1 ", "11x"));
    expect("\\D\\W\\S", L("a!x"), L("1!x", "a_x", "a! "));
    expect("[\\d.-]+", L("1.5-2"), L("a"));
    expect("[-a]", L("-", "a"), L("b"));
    expect("[a-]", L("-", "a"), L("b"));
    expect(".", L("a", "\xe2\x82\xac", "\xf0\x9f\x98\x80"), L("\n", "\r", "", "ab"));
    expect("[\\u00e9\\x41]", L("\xc3\xa9", "A"), L("e"));
    expect("\\u{1F600}", L("\xf0\x9f\x98\x80"), L("x"));
    expect("\\.\\/\\$\\^\\(\\)", L("./$^()"), L("x/$^()"));
    expect("[\\b]", L("\b"), L("b"));
    expect("\\t\\n\\r\\f\\v", L("\t\n\r\f\v"), L("x"));
    expect("a\\0?", L("a"), L("a0"));
    expect("[]", NULL, L("", "a"));
}

TEST(gram_regex_anchors) {
    /* unanchored: .* around what is not anchored, per top-level branch */
    struct grammar *g = re_grammar("^ab|cd$", 1, 0, 0, -1, NULL);
    CHECK(g != NULL);
    CHECK(m(g, "abxx"));
    CHECK(m(g, "xxcd"));
    CHECK(!m(g, "xab"));
    CHECK(!m(g, "cdx"));
    grammar_free(g);
    g = re_grammar("(^[^5]*$)|7", 1, 0, 0, -1, NULL);
    CHECK(g != NULL);
    CHECK(m(g, "1234"));
    CHECK(m(g, "x7y5"));
    CHECK(!m(g, "5"));
    grammar_free(g);
    g = re_grammar("b", 1, 0, 0, -1, NULL);
    CHECK(m(g, "abc") && m(g, "b") && !m(g, "ac"));
    grammar_free(g);
    g = re_grammar("", 1, 0, 0, -1, NULL);
    CHECK(m(g, "") && m(g, "anything"));
    grammar_free(g);
    expect("^a$", L("a"), L("ab"));
}

TEST(gram_regex_refusals) {
    static const struct { const char *re; int rc; } cases[] = {
        {"(a)\\1", FOLIO_EUNSUP}, {"a(?=b)", FOLIO_EUNSUP}, {"a(?!b)", FOLIO_EUNSUP},
        {"(?<=a)b", FOLIO_EUNSUP}, {"\\bword", FOLIO_EUNSUP}, {"a^b", FOLIO_EUNSUP},
        {"a$b", FOLIO_EUNSUP}, {"(?i)a", FOLIO_EUNSUP}, {"\\p{L}", FOLIO_EUNSUP},
        {"(a", FOLIO_EINVAL}, {"a)", FOLIO_EINVAL}, {"*a", FOLIO_EINVAL}, {"[a", FOLIO_EINVAL},
        {"[z-a]", FOLIO_EINVAL}, {"a{3,2}", FOLIO_EINVAL}, {"a**", FOLIO_EINVAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct grammar_builder *b = grammar_builder_create();
        grammar_expr e;
        int rc = gram_regex_expr(b, cases[i].re, strlen(cases[i].re), 0, &e);
        if (rc != cases[i].rc) test_fail(__FILE__, __LINE__, "/%s/: rc %d, want %d", cases[i].re, rc, cases[i].rc);
        CHECK(strstr(folio_last_error(), "offset") || strstr(folio_last_error(), "regex"));
        grammar_builder_free(b);
    }
    struct grammar *g = NULL;
    CHECK_EQ_INT(gram_regex_compile("(a)\\1", 5, &g), FOLIO_EUNSUP);
    CHECK(strstr(folio_last_error(), "backreference") != NULL);
    CHECK_EQ_INT(gram_regex_compile("ab+", 3, &g), 0);
    CHECK(m(g, "abbb") && !m(g, "a"));
    grammar_free(g);
}

TEST(gram_regex_json_mode) {
    /* the body of a JSON string: escapes accepted where the decoded character matches */
    struct grammar *g = re_grammar("^a.b$", 0, 1, 0, -1, NULL);
    CHECK(g != NULL);
    CHECK(m(g, "axb"));
    CHECK(m(g, "a\\\"b"));   /* a"b */
    CHECK(m(g, "a\\\\b"));   /* a\b */
    CHECK(m(g, "a\\/b"));    /* a/b */
    CHECK(m(g, "a\\tb"));
    CHECK(m(g, "a\\u0001b"));
    CHECK(m(g, "a\\u001Fb"));
    CHECK(!m(g, "a\"b"));    /* a raw quote ends the string */
    CHECK(!m(g, "a\\nb"));   /* . excludes \n */
    CHECK(!m(g, "a\tb"));    /* raw control characters are not JSON */
    grammar_free(g);
    /* length folded into a single-run pattern */
    int exact = 0;
    g = re_grammar("^[a-z][a-z0-9]*$", 0, 1, 3, 5, &exact);
    CHECK(exact == 1);
    CHECK(m(g, "abc") && m(g, "a1234"));
    CHECK(!m(g, "ab") && !m(g, "a12345") && !m(g, "1ab"));
    grammar_free(g);
    g = re_grammar("^(a|bb)+$", 0, 1, 0, 3, &exact);
    CHECK(exact == 0); /* not a single run: the caller reports the length as not enforced */
    grammar_free(g);
    g = re_grammar("^ab$", 0, 1, 3, -1, &exact);
    CHECK(exact == 1 && g && !m(g, "ab"));
    grammar_free(g);
}
