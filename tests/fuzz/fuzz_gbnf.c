/* libFuzzer target for the GBNF and Lark front ends (grammar/gbnf.c): the input is grammar
 * text, compiled as GBNF, as Lark and as whichever gbnf_is_gbnf picks. A compile returns 0
 * with a grammar or an error with none (and a message); a grammar that builds is printed,
 * hashed, and run with grammar_matches on the empty string and on a short tail of the input.
 * grammar_matches is a reference recognizer whose time grows with the text length to the
 * power of the nesting of repeats, so the tail is matched only when the input has few
 * repetition operators. ASan/LSan catch leaks on the
 * error paths; the nesting bound keeps deep inputs off the stack.
 *
 * Build and run (from the repo root; run.sh builds it with the rest):
 *   clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Iengine \
 *     tests/fuzz/fuzz_gbnf.c engine/grammar/gbnf.c engine/grammar/grammar.c \
 *     engine/grammar/gram_regex.c engine/base/util.c engine/base/sbuf.c -o build/fuzz_gbnf
 *   build/fuzz_gbnf -max_total_time=60 -dict=tests/fuzz/fuzz_gbnf.dict */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "grammar/gbnf.h"

#define TAIL 16
#define MAX_REPEAT_OPS 6

static void one(const uint8_t *data, size_t size, int lark) {
    struct grammar *g = (struct grammar *)&g;
    int rc = lark ? gbnf_compile_lark((const char *)data, size, &g) : gbnf_compile((const char *)data, size, &g);
    if (rc) {
        if (rc > 0 || g != NULL || !folio_last_error()[0]) abort();
        return;
    }
    if (!g) abort();
    size_t ops = 0;
    for (size_t i = 0; i < size; i++) ops += data[i] == '*' || data[i] == '+' || data[i] == '?' ||
                                             data[i] == '{' || data[i] == '~' || data[i] == '[';
    if (ops <= MAX_REPEAT_OPS) {
        size_t t = size < TAIL ? size : TAIL;
        (void)grammar_matches(g, data + size - t, t);
    }
    (void)grammar_matches(g, data, 0);
    (void)grammar_hash(g);
    free(grammar_print(g));
    grammar_free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int is = gbnf_is_gbnf((const char *)data, size);
    if (is != 0 && is != 1) abort();
    one(data, size, 0);
    one(data, size, 1);
    return 0;
}
