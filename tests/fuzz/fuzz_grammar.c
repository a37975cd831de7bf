/* libFuzzer target for the grammar layer: the input describes a small grammar (up to 4 rules
 * of literals, byte ranges, code point ranges, refs, seq, alt, repeat) and then a script of
 * matcher operations over a fixed small vocabulary. Checked: the builder and finish never
 * crash (left recursion and bad bounds are clean errors); after compiling, every mask equals
 * accept_token's verdict on every token (but for tokens refused for outgrowing the matcher's
 * limits, which say so); accepting agrees with grammar_matches on the text
 * accepted so far; rollback returns to earlier texts; accept_bytes agrees with the reference.
 *
 * Build and run (from the repo root):
 *   clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Iengine \
 *     tests/fuzz/fuzz_grammar.c engine/grammar/grammar.c engine/grammar/gram_*.c \
 *     engine/base/util.c engine/base/sbuf.c -lm -lpthread -o build/fuzz_grammar
 *   build/fuzz_grammar -max_total_time=60 */
#include "base/util.h"
#include "grammar/gram_matcher.h"
#include "grammar/grammar.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* token 0 is EOS, 1 a special token; the rest are byte strings over a small alphabet with
 * UTF-8 pieces, so that code point ranges and split characters get exercised */
static const char *const vocab_text[] = {"", "", "a", "b", "(", ")", "ab", "((", "))", "a(", ")b", "(a)",
                                         "aab", "\xC3\xA9", "\xC3", "\xA9", "\xC3\xA9(", "b\xC3", "\xE2\x82\xAC",
                                         "\xE2", "\x82\xAC", "ba", "bb", "()", "a)", "\xF0\x9F\x98\x80", "(b"};
#define NV ((int)(sizeof vocab_text / sizeof *vocab_text))
static struct gram_vocab *vocab;
static uint32_t vlens[NV];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    for (int i = 0; i < NV; i++) vlens[i] = (uint32_t)strlen(vocab_text[i]);
    int32_t stop = 0;
    vocab = gram_vocab_create(NV, (const uint8_t *const *)vocab_text, vlens, &stop, 1);
    if (!vocab) abort();
    gram_vocab_set_compile_threads(vocab, 2); /* the compile's helper thread is fuzzed too */
    return 0;
}

struct in {
    const uint8_t *p;
    size_t n, i;
};
static int next(struct in *in) { return in->i < in->n ? in->p[in->i++] : 0; }

static grammar_expr expr(struct grammar_builder *b, struct in *in, const int *rules, int nr, int depth) {
    int op = next(in) % (depth >= 4 ? 3 : 9);
    switch (op) {
    case 0: {
        static const char alpha[] = "ab()\xC3\xA9";
        char s[3] = {alpha[next(in) % 6], alpha[next(in) % 6], 0};
        return grammar_literal(b, s, 1 + (size_t)(next(in) & 1));
    }
    case 1: return grammar_byte_range(b, (uint8_t)next(in), (uint8_t)next(in));
    case 2: return grammar_ref(b, rules[next(in) % nr]);
    case 3:
    case 4: {
        grammar_expr it[3];
        int n = next(in) % 4;
        for (int i = 0; i < n; i++) it[i] = expr(b, in, rules, nr, depth + 1);
        return op == 3 ? grammar_seq(b, it, n) : grammar_alt(b, it, n);
    }
    case 5: {
        int min = next(in) % 4, max = next(in) % 5;
        return grammar_repeat(b, expr(b, in, rules, nr, depth + 1), min, max == 4 ? -1 : max);
    }
    case 6: return grammar_empty(b);
    case 7: {
        uint32_t r[2][2];
        int n = 1 + next(in) % 2;
        for (int i = 0; i < n; i++) {
            r[i][0] = (uint32_t)next(in) << 8 | (uint32_t)next(in);
            r[i][1] = r[i][0] + (uint32_t)next(in) * 64;
        }
        return grammar_codepoints(b, (const uint32_t(*)[2])r, n, next(in) & 1);
    }
    default: return grammar_repeat(b, expr(b, in, rules, nr, depth + 1), 0, -1);
    }
}

/* A token refused for outgrowing the matcher's limits (the mask cannot see them). */
static int limit_refusal(void) { return strstr(folio_last_error(), "GRAM_MAX_STACKS") != NULL; }

static void check_mask(struct gram_matcher *m, struct gram_matcher *fork) {
    uint32_t mask[2] = {0, 0xdeadbeef};
    gram_matcher_fill_mask(m, mask);
    if (mask[1] != 0xdeadbeef) abort();
    for (int t = 0; t < NV; t++) {
        gram_matcher_copy(fork, m);
        folio_err(0, "-");
        int ok = gram_matcher_accept_token(fork, t) == 0;
        if (!ok && (mask[0] >> t & 1) && limit_refusal()) continue;
        if (ok != (int)(mask[0] >> t & 1)) {
            fprintf(stderr, "token %d: mask %u accept %d\n", t, mask[0] >> t & 1, ok);
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct in in = {data, size, 0};
    struct grammar_builder *b = grammar_builder_create();
    struct grammar *g = NULL;
    struct gram_compiled *c = NULL;
    struct gram_matcher *m = NULL, *fork = NULL;
    if (!b) return 0;
    int nr = 1 + next(&in) % 4, rules[4];
    char name[8];
    for (int r = 0; r < nr; r++) {
        snprintf(name, sizeof name, "r%d", r);
        rules[r] = grammar_rule_declare(b, name);
    }
    for (int r = 0; r < nr; r++) grammar_rule_define(b, rules[r], expr(b, &in, rules, nr, 0));
    if (grammar_builder_finish(b, rules[0], &g)) goto out;
    free(grammar_print(g));
    if (gram_compile(g, vocab, &c)) goto out;
    m = gram_matcher_create(c);
    fork = gram_matcher_create(c);
    if (!m || !fork) goto out;
    uint8_t text[512];
    size_t n = 0, at[GRAM_MAX_ROLLBACK + 1];
    int ntok = 0; /* tokens since the last reset, capped at what rollback can undo */
    while (in.i < in.n) {
        int op = next(&in) % 5;
        if (op == 0) {
            check_mask(m, fork);
        } else if (op == 1) { /* accept an allowed token */
            uint32_t mask[1];
            gram_matcher_fill_mask(m, mask);
            int allowed = __builtin_popcount(mask[0]);
            if (!allowed) break;
            int pick = next(&in) % allowed, t = 0;
            for (;; t++)
                if (mask[0] >> t & 1 && pick-- == 0) break;
            folio_err(0, "-");
            if (gram_matcher_accept_token(m, t)) {
                if (limit_refusal()) break;
                abort();
            }
            if (t == 0) { /* EOS: done; nothing else is allowed */
                if (!gram_matcher_done(m)) abort();
                break;
            }
            if (n + vlens[t] > sizeof text) break;
            if (ntok == GRAM_MAX_ROLLBACK) {
                memmove(at, at + 1, (GRAM_MAX_ROLLBACK - 1) * sizeof *at);
                ntok--;
            }
            at[ntok++] = n;
            memcpy(text + n, vocab_text[t], vlens[t]);
            n += vlens[t];
            if (gram_matcher_accepting(m) != grammar_matches(g, text, n)) abort();
        } else if (op == 2) { /* roll back */
            int k = next(&in) % 4;
            int rc = gram_matcher_rollback(m, k);
            if ((rc == 0) != (k <= ntok)) abort();
            if (rc == 0 && k) {
                ntok -= k;
                n = at[ntok];
            }
            if (gram_matcher_accepting(m) != grammar_matches(g, text, n)) abort();
        } else if (op == 3) { /* raw bytes on a fork: agree with the reference */
            int k = next(&in) % 4;
            uint8_t extra[4];
            for (int i = 0; i < k; i++) extra[i] = (uint8_t)"ab()\xC3\xA9"[next(&in) % 6];
            gram_matcher_copy(fork, m);
            int ok = gram_matcher_accept_bytes(fork, extra, (size_t)k) == 0;
            if (n + (size_t)k <= sizeof text) {
                memcpy(text + n, extra, (size_t)k);
                int full = grammar_matches(g, text, n + (size_t)k);
                if (full && !(ok && gram_matcher_accepting(fork))) abort();
                if (ok && gram_matcher_accepting(fork) && !full) abort();
            }
        } else {
            gram_matcher_reset(m);
            n = 0;
            ntok = 0;
            if (gram_matcher_accepting(m) != grammar_matches(g, text, 0)) abort();
        }
    }
out:
    gram_matcher_free(m);
    gram_matcher_free(fork);
    gram_compiled_free(c);
    grammar_free(g);
    grammar_builder_free(b);
    return 0;
}
