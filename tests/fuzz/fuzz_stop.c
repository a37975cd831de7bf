/* libFuzzer target for the stop-string filter: the input gives the stop strings, the text and
 * how it is cut into deltas; the streamed output must equal the one-shot rule (earliest match
 * in the whole text, lowest index at one place, truncated there), each push must fit in
 * stop_max_output (buffers are allocated to exactly that size, so ASan sees an overrun), and
 * nothing may come out after a match. The text runs through a stream with its own set
 * (stop_create), then through several streams over one shared set (stop_set_create +
 * stop_open), pushed in turn with different cuts, as a request's samples are: each must
 * give the one-shot result on its own.
 *
 * Input: byte 0 = number of stop strings (low 3 bits, mod 5) | include_stop_str_in_output
 * (bit 3) | seed for the delta lengths (high 4 bits); then that many NUL-terminated stop
 * strings; the rest is the text.
 *
 * Build and run (from the repo root):
 *   clang -g -O1 -std=c11 -fsanitize=fuzzer,address,undefined -Iengine tests/fuzz/fuzz_stop.c \
 *     engine/text/stop.c -o build/fuzz_stop
 *   build/fuzz_stop -max_total_time=60 */
#include "text/stop.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STOPS 4
#define STREAMS 3

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

/* One stream over the text, cut by its own generator. */
struct run {
    struct stop *s;
    uint32_t rng;
    size_t a;      /* text consumed */
    uint8_t *acc;  /* [n] output so far */
    size_t acc_n;
    int r, done;
};

/* Pushes the run's next delta (the last push is an empty one at the end of the text). */
static void step(struct run *u, const uint8_t *text, size_t n, size_t want_n) {
    /* mostly short deltas, sometimes empty ones, now and then a long one */
    u->rng = u->rng * 1664525u + 1013904223u;
    uint32_t x = u->rng >> 8;
    size_t len = x % 16 == 0 ? x % 1024 : x % 6;
    if (len > n - u->a) len = n - u->a;
    size_t cap = stop_max_output(u->s, len), got = (size_t)-1;
    char *out = malloc(cap ? cap : 1);
    if (!out) abort();
    int was = u->r;
    u->r = stop_push(u->s, (const char *)text + u->a, len, out, cap, &got);
    if (got > cap || u->acc_n + got > n) abort();
    if (was >= 0 && (u->r != was || got != 0)) abort();
    if (u->r != stop_matched(u->s)) abort();
    memcpy(u->acc + u->acc_n, out, got);
    u->acc_n += got;
    free(out);
    if (u->acc_n > want_n || memcmp(u->acc, text, u->acc_n) != 0) abort();
    u->a += len;
    if (u->a == n && len == 0) u->done = 1;
}

/* The end of the stream: flush, then the whole output against the one-shot rule. */
static void finish_run(struct run *u, const uint8_t *text, size_t n, int want_k, size_t want_n,
                       const char *const *stops, int ns) {
    size_t cap = stop_max_output(u->s, 0), got = (size_t)-1;
    char *out = malloc(cap ? cap : 1);
    if (!out) abort();
    stop_flush(u->s, out, cap, &got);
    if (got > cap || u->acc_n + got > n) abort();
    memcpy(u->acc + u->acc_n, out, got);
    u->acc_n += got;
    free(out);
    if (stop_matched(u->s) != want_k || u->acc_n != want_n || memcmp(u->acc, text, u->acc_n) != 0) abort();
    for (int k = 0; k < ns; k++)
        if (strcmp(stop_string(u->s, k), stops[k]) != 0) abort();
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

    /* A stream with a set of its own. */
    struct run one = {.s = stop_create(stops, ns, include), .rng = rng, .acc = malloc(n + 1), .r = -1};
    if (!one.s || !one.acc) abort();
    while (!one.done) step(&one, text, n, want_n);
    finish_run(&one, text, n, want_k, want_n, stops, ns);
    stop_free(one.s);
    free(one.acc);

    /* Several streams over one set, pushed in turn, each cut differently. */
    struct stop_set *set = stop_set_create(stops, ns, include);
    if (!set) abort();
    struct run u[STREAMS];
    for (int k = 0; k < STREAMS; k++) {
        u[k] = (struct run){.s = stop_open(set), .rng = rng ^ (0x85EBCA6Bu * (uint32_t)(k + 1)), .acc = malloc(n + 1),
                            .r = -1};
        if (!u[k].s || !u[k].acc) abort();
    }
    for (int left = STREAMS; left > 0;) {
        left = 0;
        for (int k = 0; k < STREAMS; k++)
            if (!u[k].done) {
                step(&u[k], text, n, want_n);
                left += !u[k].done;
            }
    }
    for (int k = 0; k < STREAMS; k++) {
        finish_run(&u[k], text, n, want_k, want_n, stops, ns);
        if (stop_string(u[k].s, 0) != stop_set_string(set, 0)) abort(); /* shared, not copied */
        stop_free(u[k].s);
        free(u[k].acc);
    }
    stop_set_free(set);
    return 0;
}
