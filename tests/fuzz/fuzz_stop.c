/* libFuzzer target for the stop-string filter: the input gives the stop strings, the text and
 * how it is cut into deltas; the streamed output must equal the one-shot rule (earliest match
 * in the whole text, lowest index at one place, truncated there), each push must fit in
 * stop_max_output (buffers are allocated to exactly that size, so ASan sees an overrun), and
 * nothing may come out after a match.
 *
 * Input: byte 0 = number of stop strings (low 3 bits, mod 5) | include_stop_str_in_output
 * (bit 3) | seed for the delta lengths (high 4 bits); then that many NUL-terminated stop
 * strings; the rest is the text.
 *
 * Build and run (from the repo root):
 *   clang -g -O1 -std=c11 -fsanitize=fuzzer,address,undefined -Iengine tests/fuzz/fuzz_stop.c \
 *     engine/stop.c -o build/fuzz_stop
 *   build/fuzz_stop -max_total_time=60 */
#include "stop.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STOPS 4

/* The one-shot rule by brute force: the matched index (or -1) and the output length. */
static int one_shot(const uint8_t *t, size_t n, const char *const *stops, int ns, int include,
                    size_t *out_n) {
    for (size_t j = 0; j < n; j++)
        for (int k = 0; k < ns; k++) {
            size_t l = strlen(stops[k]);
            if (l > 0 && l <= n - j && memcmp(t + j, stops[k], l) == 0) {
                *out_n = j + (include ? l : 0);
                return k;
            }
        }
    *out_n = n;
    return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int ns = (data[0] & 7) % (MAX_STOPS + 1), include = (data[0] >> 3) & 1;
    uint32_t rng = 0x9E3779B9u ^ (uint32_t)(data[0] >> 4) ^ (uint32_t)size * 2654435761u;
    const char *stops[MAX_STOPS];
    size_t p = 1;
    for (int k = 0; k < ns; k++) {
        const uint8_t *z = p < size ? memchr(data + p, 0, size - p) : NULL;
        if (!z) {
            ns = k;
            break;
        }
        stops[k] = (const char *)data + p;
        p = (size_t)(z - data) + 1;
    }
    const uint8_t *text = data + p;
    size_t n = size - p;

    size_t want_n;
    int want_k = one_shot(text, n, stops, ns, include, &want_n);

    struct stop *s = stop_create(stops, ns, include);
    if (!s) return 0;
    uint8_t *acc = malloc(n + 1);
    if (!acc) abort();
    size_t acc_n = 0;
    int r = -1;
    for (size_t a = 0; a <= n;) {
        /* mostly short deltas, sometimes empty ones, now and then a long one */
        rng = rng * 1664525u + 1013904223u;
        uint32_t x = rng >> 8;
        size_t len = x % 16 == 0 ? x % 1024 : x % 6;
        if (len > n - a) len = n - a;
        size_t cap = stop_max_output(s, len), got = (size_t)-1;
        char *out = malloc(cap ? cap : 1);
        if (!out) abort();
        int was = r;
        r = stop_push(s, (const char *)text + a, len, out, cap, &got);
        if (got > cap || acc_n + got > n) abort();
        if (was >= 0 && (r != was || got != 0)) abort();
        if (r != stop_matched(s)) abort();
        memcpy(acc + acc_n, out, got);
        acc_n += got;
        free(out);
        if (acc_n > want_n || memcmp(acc, text, acc_n) != 0) abort();
        a += len;
        if (a == n && len == 0) break;
    }
    size_t cap = stop_max_output(s, 0), got = (size_t)-1;
    char *out = malloc(cap ? cap : 1);
    if (!out) abort();
    stop_flush(s, out, cap, &got);
    if (got > cap || acc_n + got > n) abort();
    memcpy(acc + acc_n, out, got);
    acc_n += got;
    free(out);
    if (stop_matched(s) != want_k || acc_n != want_n || memcmp(acc, text, acc_n) != 0) abort();
    for (int k = 0; k < ns; k++)
        if (strcmp(stop_string(s, k), stops[k]) != 0) abort();
    free(acc);
    stop_free(s);
    return 0;
}
