/* Stop-string filter tests: hand-picked cases for each rule (hold-back, release, spanning
 * deltas, earliest match, same-place ties, UTF-8), and a randomized check that any cutting of
 * a text into deltas gives the one-shot result (earliest match in the whole text, truncated),
 * released as early as the rule allows. */
#include "text/stop.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../tools/utf8_check.h"

#define NSTOPS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* One push with the smallest buffer the API allows, allocated to that exact size so that ASan
 * sees an overrun; the output goes to got as a string. */
static int push_n(struct stop *s, const char *d, size_t n, char *got) {
    size_t cap = stop_max_output(s, n), m = (size_t)-1;
    char *out = malloc(cap ? cap : 1);
    int r = stop_push(s, d, n, out, cap, &m);
    CHECK(m <= cap);
    if (m > cap) m = 0;
    memcpy(got, out, m);
    got[m] = '\0';
    free(out);
    return r;
}

static int push(struct stop *s, const char *d, char *got) { return push_n(s, d, strlen(d), got); }

static void flush(struct stop *s, char *got) {
    size_t cap = stop_max_output(s, 0), m = (size_t)-1;
    char *out = malloc(cap ? cap : 1);
    stop_flush(s, out, cap, &m);
    CHECK(m <= cap);
    if (m > cap) m = 0;
    memcpy(got, out, m);
    got[m] = '\0';
    free(out);
}

TEST(stop_single_delta_match) {
    const char *stops[] = {"END"};
    struct stop *s = stop_create(stops, 1, 0);
    char got[256];
    CHECK_EQ_INT(stop_matched(s), -1);
    CHECK_EQ_INT(push(s, "helloENDworld", got), 0);
    CHECK_STR(got, "hello");
    CHECK_EQ_INT(stop_matched(s), 0);
    CHECK_STR(stop_string(s, 0), "END");
    CHECK(stop_string(s, 1) == NULL);
    CHECK(stop_string(s, -1) == NULL);
    /* after a match: same index, no output, and flush releases nothing */
    CHECK_EQ_INT(push(s, "more END", got), 0);
    CHECK_STR(got, "");
    flush(s, got);
    CHECK_STR(got, "");
    CHECK_EQ_INT(stop_matched(s), 0);
    stop_free(s);
    stop_free(NULL);
}

TEST(stop_span_two_deltas) {
    const char *stops[] = {"END"};
    struct stop *s = stop_create(stops, 1, 0);
    char got[256];
    CHECK_EQ_INT(push(s, "hel", got), -1);
    CHECK_STR(got, "hel");
    CHECK_EQ_INT(push(s, "loE", got), -1);
    CHECK_STR(got, "lo");
    CHECK_EQ_INT(push(s, "ND more", got), 0);
    CHECK_STR(got, "");
    stop_free(s);
}

TEST(stop_span_many_deltas) {
    const char *stops[] = {"STOP"};
    struct stop *s = stop_create(stops, 1, 0);
    char got[256];
    CHECK_EQ_INT(push(s, "xS", got), -1);
    CHECK_STR(got, "x");
    CHECK_EQ_INT(push(s, "T", got), -1);
    CHECK_STR(got, "");
    CHECK_EQ_INT(push(s, "", got), -1);
    CHECK_STR(got, "");
    CHECK_EQ_INT(push(s, "O", got), -1);
    CHECK_STR(got, "");
    CHECK_EQ_INT(push(s, "P!", got), 0);
    CHECK_STR(got, "");
    stop_free(s);

    /* one byte at a time, with text before the stop string */
    s = stop_create(stops, 1, 1);
    char acc[256] = "";
    const char *text = "ab STOSTOP cd";
    int r = -1;
    for (size_t i = 0; text[i] && r < 0; i++) {
        r = push_n(s, text + i, 1, got);
        strcat(acc, got);
    }
    CHECK_EQ_INT(r, 0);
    CHECK_STR(acc, "ab STOSTOP");
    stop_free(s);
}

TEST(stop_holdback_release) {
    const char *stops[] = {"abc"};
    struct stop *s = stop_create(stops, 1, 0);
    char got[256];
    CHECK_EQ_INT(push(s, "xab", got), -1);
    CHECK_STR(got, "x");
    CHECK_EQ_INT(push(s, "d", got), -1); /* the partial match fails: all of it goes */
    CHECK_STR(got, "abd");
    CHECK_EQ_INT(push(s, "a", got), -1);
    CHECK_STR(got, "");
    flush(s, got);
    CHECK_STR(got, "a");
    CHECK_EQ_INT(stop_matched(s), -1);
    stop_free(s);

    /* the partial match fails but the new text starts another one */
    s = stop_create(stops, 1, 0);
    CHECK_EQ_INT(push(s, "ab", got), -1);
    CHECK_STR(got, "");
    CHECK_EQ_INT(push(s, "a", got), -1);
    CHECK_STR(got, "ab");
    CHECK_EQ_INT(push(s, "bc!", got), 0);
    CHECK_STR(got, "");
    stop_free(s);

    /* a later delta completes a stop string that began in held text: the held text before
     * the match start goes out, the match does not */
    const char *stops2[] = {"abcd"};
    s = stop_create(stops2, 1, 0);
    CHECK_EQ_INT(push(s, "xxab", got), -1);
    CHECK_STR(got, "xx");
    CHECK_EQ_INT(push(s, "abcd", got), 0);
    CHECK_STR(got, "ab");
    stop_free(s);
    s = stop_create(stops2, 1, 1);
    CHECK_EQ_INT(push(s, "xxab", got), -1);
    CHECK_STR(got, "xx");
    CHECK_EQ_INT(push(s, "abc", got), -1);
    CHECK_STR(got, "ab");
    CHECK_EQ_INT(push(s, "de", got), 0);
    CHECK_STR(got, "abcd");
    stop_free(s);
}

TEST(stop_include_in_output) {
    const char *stops[] = {"END"};
    struct stop *s = stop_create(stops, 1, 1);
    char got[256];
    CHECK_EQ_INT(push(s, "helloEN", got), -1);
    CHECK_STR(got, "hello");
    CHECK_EQ_INT(push(s, "Dworld", got), 0);
    CHECK_STR(got, "END");
    CHECK_EQ_INT(push(s, "x", got), 0);
    CHECK_STR(got, "");
    stop_free(s);

    s = stop_create(stops, 1, 1);
    CHECK_EQ_INT(push(s, "aENDbEND", got), 0);
    CHECK_STR(got, "aEND");
    stop_free(s);
}

TEST(stop_earliest_match_wins) {
    const char *stops[] = {"world", "lo"};
    struct stop *s = stop_create(stops, 2, 0);
    char got[256];
    CHECK_EQ_INT(push(s, "hello world", got), 1);
    CHECK_STR(got, "hel");
    stop_free(s);

    /* the later-listed string occurs earlier across deltas */
    const char *stops2[] = {"xyz", "b"};
    s = stop_create(stops2, 2, 0);
    CHECK_EQ_INT(push(s, "ax", got), -1);
    CHECK_STR(got, "a");
    CHECK_EQ_INT(push(s, "bxyz", got), 1);
    CHECK_STR(got, "x");
    stop_free(s);
}

TEST(stop_same_place_lowest_index) {
    char got[256];
    /* the lower index is the shorter string: final at once */
    const char *a[] = {"a", "ab"};
    struct stop *s = stop_create(a, 2, 1);
    CHECK_EQ_INT(push(s, "za", got), 0);
    CHECK_STR(got, "za");
    stop_free(s);

    /* the lower index is longer and still open: wait for it */
    const char *b[] = {"ab", "a"};
    s = stop_create(b, 2, 1);
    CHECK_EQ_INT(push(s, "za", got), -1);
    CHECK_STR(got, "z");
    CHECK_EQ_INT(push(s, "b", got), 0);
    CHECK_STR(got, "ab");
    stop_free(s);
    s = stop_create(b, 2, 1);
    CHECK_EQ_INT(push(s, "za", got), -1);
    CHECK_EQ_INT(push(s, "c", got), 1);
    CHECK_STR(got, "a");
    stop_free(s);
    s = stop_create(b, 2, 0);
    CHECK_EQ_INT(push(s, "zab", got), 0);
    CHECK_STR(got, "z");
    stop_free(s);

    /* duplicates: the first copy wins */
    const char *c[] = {"x", "END", "END"};
    s = stop_create(c, 3, 0);
    CHECK_EQ_INT(push(s, "1EN", got), -1);
    CHECK_EQ_INT(push(s, "D", got), 1);
    stop_free(s);
}

/* "bc" matches inside "abc" while "abcd", which starts earlier, is still open. */
TEST(stop_earlier_longer_candidate) {
    const char *stops[] = {"abcd", "bc"};
    char got[256];
    struct stop *s = stop_create(stops, 2, 0);
    CHECK_EQ_INT(push(s, "abc", got), -1);
    CHECK_STR(got, "");
    CHECK_EQ_INT(push(s, "d", got), 0);
    CHECK_STR(got, "");
    stop_free(s);

    s = stop_create(stops, 2, 1);
    CHECK_EQ_INT(push(s, "xabc", got), -1);
    CHECK_STR(got, "x");
    CHECK_EQ_INT(push(s, "de", got), 0);
    CHECK_STR(got, "abcd");
    stop_free(s);

    /* "abcd" fails: the pending "bc" becomes final, the text before it goes out */
    s = stop_create(stops, 2, 0);
    CHECK_EQ_INT(push(s, "abc", got), -1);
    CHECK_EQ_INT(push(s, "x", got), 1);
    CHECK_STR(got, "a");
    stop_free(s);
    s = stop_create(stops, 2, 1);
    CHECK_EQ_INT(push(s, "abc", got), -1);
    CHECK_EQ_INT(push(s, "xyz", got), 1);
    CHECK_STR(got, "abc");
    stop_free(s);
    s = stop_create(stops, 2, 0);
    CHECK_EQ_INT(push(s, "abcx", got), 1);
    CHECK_STR(got, "a");
    stop_free(s);

    /* in one delta, "abx": "bc" never matches, the held "ab" goes out */
    s = stop_create(stops, 2, 0);
    CHECK_EQ_INT(push(s, "abx", got), -1);
    CHECK_STR(got, "abx");
    stop_free(s);

    /* the stream ends while "abcd" is open: "bc" is the earliest match of the whole text */
    s = stop_create(stops, 2, 0);
    CHECK_EQ_INT(push(s, "zabc", got), -1);
    CHECK_STR(got, "z");
    flush(s, got);
    CHECK_STR(got, "a");
    CHECK_EQ_INT(stop_matched(s), 1);
    CHECK_EQ_INT(push(s, "d", got), 1);
    CHECK_STR(got, "");
    stop_free(s);

    /* a complete match in the middle of a delta waits for an open earlier candidate that the
     * same delta then settles */
    const char *stops3[] = {"abcde", "c"};
    s = stop_create(stops3, 2, 0);
    CHECK_EQ_INT(push(s, "ab", got), -1);
    CHECK_EQ_INT(push(s, "cdX", got), 1);
    CHECK_STR(got, "ab");
    stop_free(s);
}

TEST(stop_utf8) {
    char got[256];
    const char *stops[] = {"。"};
    struct stop *s = stop_create(stops, 1, 0);
    CHECK_EQ_INT(push(s, "你好", got), -1);
    CHECK_STR(got, "你好");
    CHECK_EQ_INT(push(s, "。", got), 0);
    CHECK_STR(got, "");
    stop_free(s);

    const char *stops2[] = {"。再见"};
    s = stop_create(stops2, 1, 1);
    CHECK_EQ_INT(push(s, "你好", got), -1);
    CHECK_STR(got, "你好");
    CHECK_EQ_INT(push(s, "。", got), -1);
    CHECK_STR(got, "");
    CHECK_EQ_INT(push(s, "再", got), -1);
    CHECK_STR(got, "");
    CHECK_EQ_INT(push(s, "见!", got), 0);
    CHECK_STR(got, "。再见");
    stop_free(s);

    /* an emoji that shares three bytes with the stop string is released whole */
    const char *stops3[] = {"😀!"};
    s = stop_create(stops3, 1, 0);
    CHECK_EQ_INT(push(s, "a", got), -1);
    CHECK_STR(got, "a");
    CHECK_EQ_INT(push(s, "😁", got), -1);
    CHECK_STR(got, "😁");
    CHECK_EQ_INT(push(s, "😀", got), -1);
    CHECK_STR(got, "");
    CHECK_EQ_INT(push(s, "?", got), -1);
    CHECK_STR(got, "😀?");
    CHECK_EQ_INT(push(s, "😀", got), -1);
    CHECK_EQ_INT(push(s, "!", got), 0);
    CHECK_STR(got, "");
    stop_free(s);
}

TEST(stop_pass_through) {
    char got[256];
    struct stop *s = stop_create(NULL, 0, 0);
    CHECK(s != NULL);
    CHECK_EQ_INT(stop_max_output(s, 7), 7);
    CHECK_EQ_INT(push(s, "anything at all", got), -1);
    CHECK_STR(got, "anything at all");
    flush(s, got);
    CHECK_STR(got, "");
    CHECK_EQ_INT(stop_matched(s), -1);
    stop_free(s);

    /* empty stop strings are ignored, but keep their index */
    const char *stops[] = {"", "", "b"};
    s = stop_create(stops, 3, 0);
    CHECK_EQ_INT(stop_max_output(s, 7), 7);
    CHECK_STR(stop_string(s, 0), "");
    CHECK_EQ_INT(push(s, "aa", got), -1);
    CHECK_STR(got, "aa");
    CHECK_EQ_INT(push(s, "ab", got), 2);
    CHECK_STR(got, "a");
    stop_free(s);
}

TEST(stop_flush) {
    const char *stops[] = {"abc", "zz"};
    char got[256];
    struct stop *s = stop_create(stops, 2, 0);
    CHECK_EQ_INT(stop_max_output(s, 5), 7);
    flush(s, got);
    CHECK_STR(got, "");
    CHECK_EQ_INT(push(s, "xyab", got), -1);
    CHECK_STR(got, "xy");
    flush(s, got);
    CHECK_STR(got, "ab");
    CHECK_EQ_INT(stop_matched(s), -1);
    flush(s, got);
    CHECK_STR(got, "");
    stop_free(s);
}

TEST(stop_whole_text) {
    const char *stops[] = {"hello"};
    char got[256];
    struct stop *s = stop_create(stops, 1, 0);
    CHECK_EQ_INT(push(s, "hello", got), 0);
    CHECK_STR(got, "");
    stop_free(s);
    s = stop_create(stops, 1, 1);
    CHECK_EQ_INT(push(s, "he", got), -1);
    CHECK_STR(got, "");
    CHECK_EQ_INT(push(s, "llo", got), 0);
    CHECK_STR(got, "hello");
    stop_free(s);
}

TEST(stop_self_similar) {
    const char *stops[] = {"aab"};
    char got[256];
    struct stop *s = stop_create(stops, 1, 0);
    CHECK_EQ_INT(push(s, "a", got), -1);
    CHECK_STR(got, "");
    CHECK_EQ_INT(push(s, "a", got), -1);
    CHECK_STR(got, "");
    CHECK_EQ_INT(push(s, "a", got), -1);
    CHECK_STR(got, "a"); /* "aaa": only the last "aa" can still start "aab" */
    CHECK_EQ_INT(push(s, "b", got), 0);
    CHECK_STR(got, "");
    stop_free(s);

    s = stop_create(stops, 1, 1);
    CHECK_EQ_INT(push(s, "aaab", got), 0);
    CHECK_STR(got, "aaab");
    stop_free(s);

    const char *stops2[] = {"abac"};
    s = stop_create(stops2, 1, 0);
    CHECK_EQ_INT(push(s, "aba", got), -1);
    CHECK_STR(got, "");
    CHECK_EQ_INT(push(s, "bac", got), 0);
    CHECK_STR(got, "ab");
    stop_free(s);
}

TEST(stop_long_deltas) {
    const char *stops[] = {"<|end|>", "\n\n"};
    struct stop *s = stop_create(stops, 2, 0);
    size_t n = 100000;
    char *text = malloc(n + 1);
    char *got = malloc(n + 16);
    for (size_t i = 0; i < n; i++) text[i] = (char)('a' + i % 26);
    memcpy(text + n - 4, "<|e", 3);
    text[n - 1] = '\0';
    n -= 1;
    CHECK_EQ_INT(push_n(s, text, n, got), -1);
    CHECK(strlen(got) == n - 3 && memcmp(got, text, n - 3) == 0);
    memcpy(text, "nd|>\n", 5);
    CHECK_EQ_INT(push_n(s, text, n, got), 0);
    CHECK_STR(got, "");
    CHECK_EQ_INT(stop_matched(s), 0);
    stop_free(s);
    free(text);
    free(got);
}

/* --- randomized: streaming equals the one-shot rule ---------------------------------------- */

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

struct rcase {
    const char *stops[5];
    char stop_buf[5][32];
    int ns, include;
    char text[256];
    size_t n;
    size_t cut[64]; /* delta boundaries, at unit boundaries: cut[0] = 0 ... cut[nd] = n */
    int nd;
};

static int matches_at(const struct rcase *c, size_t j, int k) {
    size_t l = strlen(c->stops[k]);
    return l > 0 && j + l <= c->n && memcmp(c->text + j, c->stops[k], l) == 0;
}

/* Whether stop k can still start at j in the text t[0:i]: t[j:i] is a proper prefix of it. */
static int open_at(const struct rcase *c, size_t i, size_t j, int k) {
    size_t l = strlen(c->stops[k]);
    return i - j < l && memcmp(c->text + j, c->stops[k], i - j) == 0;
}

/* The earliest match (lowest index at one place) within t[0:i]; -1 if none. */
static int best_in(const struct rcase *c, size_t i, size_t *at) {
    for (size_t j = 0; j < i; j++)
        for (int k = 0; k < c->ns; k++)
            if (matches_at(c, j, k) && j + strlen(c->stops[k]) <= i) {
                *at = j;
                return k;
            }
    return -1;
}

/* After t[0:i], with no final match: how much may be out (the earliest open start). */
static size_t releasable(const struct rcase *c, size_t i) {
    for (size_t j = 0; j < i; j++)
        for (int k = 0; k < c->ns; k++)
            if (open_at(c, i, j, k)) return j;
    return i;
}

/* Whether the best match within t[0:i] is final: nothing open beats it. */
static int final_at(const struct rcase *c, size_t i, int *k_out, size_t *at_out) {
    size_t at;
    int k = best_in(c, i, &at);
    if (k < 0) return 0;
    for (size_t j = 0; j <= at; j++)
        for (int k2 = 0; k2 < c->ns; k2++)
            if ((j < at || k2 < k) && open_at(c, i, j, k2)) return 0;
    *k_out = k;
    *at_out = at;
    return 1;
}

static void gen_case(struct rcase *c, const char *const *units, int nunits) {
    int alpha = 2 + (int)(rnd() % (uint32_t)(nunits - 1));
    c->ns = (int)(rnd() % 5);
    c->include = (int)(rnd() % 2);
    for (int k = 0; k < c->ns; k++) {
        int len = (int)(rnd() % 5); /* 0: an empty (ignored) stop string */
        c->stop_buf[k][0] = '\0';
        for (int u = 0; u < len; u++) strcat(c->stop_buf[k], units[rnd() % (uint32_t)alpha]);
        c->stops[k] = c->stop_buf[k];
    }
    int nu = (int)(rnd() % 30);
    c->n = 0;
    c->nd = 0;
    c->cut[0] = 0;
    for (int u = 0; u < nu; u++) {
        const char *x = units[rnd() % (uint32_t)alpha];
        memcpy(c->text + c->n, x, strlen(x));
        c->n += strlen(x);
        /* cut after this unit, or leave an empty delta here, now and then */
        if (c->nd < 60 && rnd() % 3 == 0) c->cut[++c->nd] = c->n;
        if (c->nd < 60 && rnd() % 16 == 0) c->cut[++c->nd] = c->n;
    }
    c->text[c->n] = '\0';
    c->cut[++c->nd] = c->n;
}

/* Streams the case and checks each push against the rule; returns 0 on the first failure. */
static int run_case(const struct rcase *c) {
    struct stop *s = stop_create(c->stops, c->ns, c->include);
    if (!s) return 0;
    char acc[512], got[512];
    size_t acc_n = 0;
    int ok = 1, want_k = -1;
    size_t want_at = 0;
    for (int d = 0; d < c->nd && ok; d++) {
        size_t a = c->cut[d], b = c->cut[d + 1];
        int was = want_k;
        if (want_k < 0)
            for (size_t i = a + 1; i <= b && want_k < 0; i++) final_at(c, i, &want_k, &want_at);
        int r = push_n(s, c->text + a, b - a, got);
        size_t m = strlen(got);
        ok = utf8_check((const unsigned char *)got, m);
        memcpy(acc + acc_n, got, m);
        acc_n += m;
        if (r != want_k || stop_matched(s) != want_k) ok = 0;
        if (was >= 0 && m != 0) ok = 0;
        size_t want_n = want_k >= 0 ? want_at + (c->include ? strlen(c->stops[want_k]) : 0)
                                    : releasable(c, b);
        if (acc_n != want_n || memcmp(acc, c->text, acc_n) != 0) ok = 0;
    }
    flush(s, got);
    memcpy(acc + acc_n, got, strlen(got));
    acc_n += strlen(got);
    /* the one-shot rule over the whole text */
    size_t at = c->n;
    int k = best_in(c, c->n, &at);
    size_t want_n = k >= 0 ? at + (c->include ? strlen(c->stops[k]) : 0) : c->n;
    if (stop_matched(s) != k || acc_n != want_n || memcmp(acc, c->text, acc_n) != 0) ok = 0;
    if (!ok) {
        acc[acc_n] = '\0';
        test_fail(__FILE__, __LINE__, "text \"%s\" (%d deltas), %d stops, include %d: got \"%s\" "
                  "index %d, want index %d", c->text, c->nd, c->ns, c->include, acc,
                  stop_matched(s), k);
        for (int i = 0; i < c->ns; i++) fprintf(stderr, "      stop %d: \"%s\"\n", i, c->stops[i]);
        for (int d = 0; d < c->nd; d++) fprintf(stderr, "      cut %zu\n", c->cut[d + 1]);
    }
    stop_free(s);
    return ok;
}

TEST(stop_random_ascii_matches_one_shot) {
    static const char *const units[] = {"a", "b", "c"};
    struct rcase c;
    for (int i = 0; i < 100000; i++) {
        gen_case(&c, units, 3);
        if (!run_case(&c)) return;
    }
}

TEST(stop_random_utf8_matches_one_shot) {
    /* the two emoji share their first three bytes; é and ß share none */
    static const char *const units[] = {"😀", "a", "😁", "é", "ß"};
    struct rcase c;
    for (int i = 0; i < 50000; i++) {
        gen_case(&c, units, 5);
        if (!run_case(&c)) return;
    }
}

/* --- one set, several streams ---------------------------------------------------------------- */

TEST(stop_set_basics) {
    const char *stops[] = {"abc", "", "xy"};
    struct stop_set *set = stop_set_create(stops, 3, 0);
    CHECK(set != NULL);
    if (!set) return;
    CHECK_EQ_INT(stop_set_count(set), 3);
    CHECK_EQ_INT(stop_set_max_len(set), 3);
    CHECK_STR(stop_set_string(set, 0), "abc");
    CHECK_STR(stop_set_string(set, 1), "");
    CHECK(stop_set_string(set, 3) == NULL && stop_set_string(set, -1) == NULL);
    /* one block: the strings and 4-byte failure tables, not 8 bytes per byte */
    size_t bytes = stop_set_bytes(set);
    CHECK(bytes >= (3 + 1 + 0 + 1 + 2 + 1) * 5 && bytes < 256);
    struct stop *a = stop_open(set), *b = stop_open(set);
    CHECK(a && b);
    char got[64];
    /* the streams' strings are the set's, not copies */
    CHECK(stop_string(a, 2) == stop_set_string(set, 2) && stop_string(b, 0) == stop_set_string(set, 0));
    CHECK_EQ_INT(stop_max_output(a, 5), 7);
    CHECK_EQ_INT(push(a, "zzab", got), -1);
    CHECK_STR(got, "zz");
    CHECK_EQ_INT(push(b, "qqx", got), -1); /* b's state is its own */
    CHECK_STR(got, "qq");
    CHECK_EQ_INT(push(a, "c!", got), 0);
    CHECK_STR(got, "");
    CHECK_EQ_INT(push(b, "ab", got), -1);
    CHECK_STR(got, "x");
    CHECK_EQ_INT(push(b, "y", got), -1); /* "aby": neither can start in it any more */
    CHECK_STR(got, "aby");
    CHECK_EQ_INT(push(b, "a", got), -1);
    CHECK_STR(got, "");
    flush(b, got);
    CHECK_STR(got, "a");
    CHECK_EQ_INT(stop_matched(a), 0);
    CHECK_EQ_INT(stop_matched(b), -1);
    stop_free(a);
    stop_free(b);
    stop_set_free(set);
    stop_set_free(NULL);
    /* an empty set passes text through */
    set = stop_set_create(NULL, 0, 1);
    CHECK(set != NULL);
    a = set ? stop_open(set) : NULL;
    if (a) {
        CHECK_EQ_INT(push(a, "hello", got), -1);
        CHECK_STR(got, "hello");
    }
    stop_free(a);
    stop_set_free(set);
}

/* Several streams over one set, pushed in turn, each give what a stream with its own set gives
 * for the same deltas: the shared part holds no per-stream state. */
TEST(stop_shared_set_matches_separate) {
    static const char *const units[] = {"a", "b", "c"};
    enum { STREAMS = 4 };
    struct rcase c[STREAMS];
    for (int iter = 0; iter < 20000; iter++) {
        for (int k = 0; k < STREAMS; k++) gen_case(&c[k], units, 3);
        struct stop_set *set = stop_set_create(c[0].stops, c[0].ns, c[0].include);
        struct stop *shared[STREAMS], *own[STREAMS];
        for (int k = 0; k < STREAMS; k++) {
            shared[k] = set ? stop_open(set) : NULL;
            own[k] = stop_create(c[0].stops, c[0].ns, c[0].include);
        }
        char got_s[512], got_o[512];
        int ok = set != NULL;
        /* round-robin: delta d of every stream, then delta d + 1 */
        for (int d = 0; d < 64 && ok; d++)
            for (int k = 0; k < STREAMS && ok; k++) {
                if (!shared[k] || !own[k]) {
                    ok = 0;
                    break;
                }
                if (d >= c[k].nd) continue;
                const char *t = c[k].text + c[k].cut[d];
                size_t len = c[k].cut[d + 1] - c[k].cut[d];
                int rs = push_n(shared[k], t, len, got_s), ro = push_n(own[k], t, len, got_o);
                if (rs != ro || strcmp(got_s, got_o) != 0) ok = 0;
            }
        for (int k = 0; k < STREAMS && ok; k++) {
            flush(shared[k], got_s);
            flush(own[k], got_o);
            if (strcmp(got_s, got_o) != 0 || stop_matched(shared[k]) != stop_matched(own[k])) ok = 0;
        }
        for (int k = 0; k < STREAMS; k++) {
            stop_free(shared[k]);
            stop_free(own[k]);
        }
        stop_set_free(set);
        if (!ok) {
            test_fail(__FILE__, __LINE__, "iteration %d: a stream over the shared set differs", iter);
            return;
        }
    }
}
