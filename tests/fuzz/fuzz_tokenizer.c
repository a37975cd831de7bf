/* libFuzzer target for the tokenizer and the detokenizer: arbitrary bytes go to tokenizer_encode
 * (invalid UTF-8 must be a clean error), the resulting ids round-trip through tok_decode, and
 * the input read as token ids streams through a detok whose deltas must concatenate to
 * tok_decode and stay valid UTF-8. The tokenizer comes from FOLIO_FUZZ_TOKENIZER (a directory
 * with tokenizer.json), default ../shared/models/tokenizers/llama2.
 *
 * Build and run (from the repo root):
 *   clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Iengine \
 *     $(pkg-config --cflags libcjson libpcre2-8 libutf8proc) tests/fuzz/fuzz_tokenizer.c \
 *     engine/text/*.c engine/base/*.c \
 *     $(pkg-config --libs libcjson libpcre2-8 libutf8proc) -lcivetweb -lm -lpthread -o build/fuzz_tokenizer
 *   FOLIO_FUZZ_TOKENIZER=../shared/models/tokenizers/llama2 build/fuzz_tokenizer -max_total_time=60 */
#include "text/detok.h"
#include "text/tokenizer.h"
#include "base/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *dir = getenv("FOLIO_FUZZ_TOKENIZER");
    if (!dir) dir = "../shared/models/tokenizers/llama2";
    if (tokenizer_load(dir, &tok)) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", folio_last_error());
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int32_t *ids = NULL;
    int n = 0;
    if (tokenizer_encode(tok, (const char *)data, size, 1, &ids, &n) == 0) {
        char *text = NULL;
        size_t len;
        if (tok_decode(tok, ids, n, 0, &text, &len) != 0) abort();
        free(text);
    }
    free(ids);

    /* the input as token ids */
    int m = (int)(size / 2);
    int32_t *seq = malloc(sizeof *seq * (size_t)(m + 1));
    if (!seq) return 0;
    int vs = tokenizer_vocab_size(tok);
    for (int i = 0; i < m; i++) seq[i] = (int32_t)((data[2 * i] | (data[2 * i + 1] << 8)) % (vs + 8)) - 4;
    char *want = NULL;
    size_t wn;
    if (tok_decode(tok, seq, m, 1, &want, &wn) != 0) abort();
    struct detok *d = detok_create(tok, NULL, 0, 1);
    if (!d) abort();
    size_t cap = detok_max_delta(d);
    char *out = malloc(cap);
    char *acc = malloc(wn + cap + 1);
    size_t acc_n = 0, got;
    for (int i = 0; i <= m; i++) {
        int rc = i < m ? detok_push(d, seq[i], out, cap, &got) : detok_flush(d, out, cap, &got);
        if (rc || acc_n + got > wn) abort();
        memcpy(acc + acc_n, out, got);
        acc_n += got;
    }
    if (acc_n != wn || memcmp(acc, want, wn) != 0) abort();
    free(acc);
    free(out);
    free(want);
    free(seq);
    detok_free(d);
    return 0;
}
