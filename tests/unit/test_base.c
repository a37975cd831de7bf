/* engine/base's small shared modules on their own: the arena, the string buffer and the UTF-8
 * decoder that the tokenizer, the chat template and foliod now share. The suites above them
 * (tokenizer corpus, chat templates) test them through their users; these pin the contracts
 * the headers promise, so that a change to one module fails here first. The ill-formed UTF-8
 * cases are the WHATWG "maximal subpart" examples, which TextDecoder follows. */
#include "test.h"

#include <cjson/cJSON.h>
#include "base/arena.h"
#include "base/sbuf.h"
#include "base/utf8.h"

#include <stdint.h>
#include <string.h>

TEST(base_arena) {
    struct arena a = {.block_size = 64};
    unsigned char *p = arena_alloc(&a, 24);
    CHECK(p != NULL);
    int zero = 1;
    for (int i = 0; i < 24; i++) zero &= p[i] == 0;
    CHECK(zero);
    char *s = arena_dup(&a, "abcdef", 3); /* unaligned, NUL after n bytes */
    CHECK_STR(s, "abc");
    void *q = arena_alloc(&a, 8);
    CHECK(((uintptr_t)q & 15) == 0);
    /* Larger than a block: a block of its own; earlier pointers stay valid. */
    unsigned char *big = arena_alloc(&a, 1000);
    CHECK(big != NULL);
    memset(big, 0xAB, 1000);
    CHECK_STR(s, "abc");
    CHECK(p[0] == 0 && p[23] == 0);
    /* Many blocks' worth, then freed at once, then reused. */
    for (int i = 0; i < 1000; i++) CHECK(arena_alloc(&a, 40) != NULL);
    arena_free(&a);
    CHECK(a.head == NULL && a.block_size == 64);
    CHECK_STR(arena_dup(&a, "again", 5), "again");
    arena_free(&a);
}

TEST(base_sbuf) {
    struct sbuf b = {0};
    CHECK(b.p == NULL);
    CHECK_EQ_INT(sbuf_put(&b, "", 0), 0); /* putting nothing still makes p a string */
    CHECK(b.p != NULL && b.n == 0 && b.p[0] == '\0');
    for (int i = 0; i < 1000; i++) CHECK_EQ_INT(sbuf_puts(&b, "xy"), 0);
    CHECK_EQ_INT((long)b.n, 2000);
    CHECK(b.p[2000] == '\0' && b.cap > 2000);
    CHECK_EQ_INT(sbuf_reserve(&b, 5000), 0);
    CHECK(b.cap >= b.n + 5001 && b.n == 2000);
    b.n = 0; /* reuse: the memory stays, the NUL follows the next put */
    CHECK_EQ_INT(sbuf_put(&b, "hello", 3), 0);
    CHECK_STR(b.p, "hel");
    sbuf_free(&b);
    CHECK(b.p == NULL && b.n == 0 && b.cap == 0);
}

/* One decode: the length it returns, the code point or the bytes one U+FFFD replaces. */
static void decode_case(const char *s, size_t n, size_t want_len, uint32_t want_cp, size_t want_bad, int want_trunc) {
    uint32_t cp = 0xDEADBEEF;
    size_t bad = 99;
    bool trunc = false;
    size_t len = utf8_decode(s, n, &cp, &bad, &trunc);
    CHECK_EQ_INT((long)len, (long)want_len);
    if (want_len) {
        CHECK_EQ_INT((long)cp, (long)want_cp);
    } else {
        CHECK_EQ_INT((long)cp, 0xDEADBEEF);
        CHECK_EQ_INT((long)bad, (long)want_bad);
        CHECK_EQ_INT(trunc, want_trunc);
    }
}

TEST(base_utf8_decode) {
    decode_case("A", 1, 1, 'A', 0, 0);
    decode_case("\xC3\xA9", 2, 2, 0xE9, 0, 0);
    decode_case("\xE2\x82\xAC", 3, 3, 0x20AC, 0, 0);
    decode_case("\xF0\x9F\x98\x80", 4, 4, 0x1F600, 0, 0);
    decode_case("\xF4\x8F\xBF\xBF", 4, 4, 0x10FFFF, 0, 0);
    decode_case("\xC0\x80", 2, 0, 0, 1, 0);         /* overlong: C0 is never a lead */
    decode_case("\xE0\x80\x80", 3, 0, 0, 1, 0);     /* overlong three-byte form */
    decode_case("\xED\xA0\x80", 3, 0, 0, 1, 0);     /* a surrogate */
    decode_case("\xF4\x90\x80\x80", 4, 0, 0, 1, 0); /* past U+10FFFF */
    decode_case("\xE2\x82(", 3, 0, 0, 2, 0);        /* a maximal subpart of two bytes */
    decode_case("\xE2\x82", 2, 0, 0, 2, 1);         /* cut short by the end of the input */
    decode_case("\xF0\x9F\x98", 3, 0, 0, 3, 1);
    decode_case("\x80", 1, 0, 0, 1, 0); /* a lone continuation byte */
    char out[4];
    const uint32_t cps[] = {0x24, 0xA2, 0x20AC, 0x10348, 0x10FFFF};
    for (size_t i = 0; i < sizeof cps / sizeof cps[0]; i++) {
        size_t n = utf8_encode(cps[i], out);
        uint32_t back = 0;
        CHECK_EQ_INT((long)utf8_decode(out, n, &back, NULL, NULL), (long)n);
        CHECK_EQ_INT((long)back, (long)cps[i]);
        size_t adv = 0;
        CHECK_EQ_INT((long)utf8_cp_valid(out, &adv), (long)cps[i]);
        CHECK_EQ_INT((long)adv, (long)n);
        CHECK_EQ_INT((long)utf8_len_valid(out), (long)n);
    }
}

TEST(base_utf8_lossy) {
    CHECK(utf8_valid("h\xC3\xA9llo \xF0\x9F\x98\x80", 11));
    CHECK(!utf8_valid("\xED\xA0\x80", 3));
    CHECK(!utf8_valid("\xC3", 1));
    char out[64];
    int incomplete = 0;
    /* TextDecoder's answers: one U+FFFD per maximal subpart. */
    size_t n = utf8_lossy("a\xF1\x80\x80\xE1\x80\xC2z", 8, out, 0, &incomplete);
    CHECK(n == 11 && memcmp(out, "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz", 11) == 0);
    CHECK_EQ_INT(incomplete, 0);
    n = utf8_lossy("\xED\xA0\x80", 3, out, 0, NULL); /* a surrogate: three of them */
    CHECK(n == 9 && memcmp(out, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", 9) == 0);
    /* A stream's tail cut mid-character: kept back with omit_tail, one U+FFFD without. */
    n = utf8_lossy("ok\xF0\x9F\x98", 5, out, 1, &incomplete);
    CHECK(n == 2 && memcmp(out, "ok", 2) == 0);
    CHECK_EQ_INT(incomplete, 1);
    incomplete = 0;
    n = utf8_lossy("ok\xF0\x9F\x98", 5, out, 0, &incomplete);
    CHECK(n == 5 && memcmp(out, "ok\xEF\xBF\xBD", 5) == 0);
}

/* sbuf_put_json_string: cJSON reads back every byte string it writes (controls, quotes,
 * backslashes, UTF-8), and the short escapes stay short. */
TEST(sbuf_put_json_string) {
    struct sbuf b = {0};
    char s[64];
    for (int i = 0; i < 63; i++) s[i] = (char)(1 + (i * 37) % 127);
    s[63] = '\0';
    const char *const cases[] = {"", "plain", "q\"b\\s\n\r\t\x01\x1f", "caf\xc3\xa9 \xf0\x9f\x99\x82", s};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        b.n = 0;
        CHECK_EQ_INT(sbuf_put_json_string(&b, cases[k], strlen(cases[k])), 0);
        cJSON *j = cJSON_Parse(b.p);
        CHECK(cJSON_IsString(j) && !strcmp(j->valuestring, cases[k]));
        cJSON_Delete(j);
    }
    b.n = 0;
    sbuf_put_json_string(&b, "a\nb", 3);
    CHECK_STR(b.p, "\"a\\nb\"");
    sbuf_free(&b);
}
