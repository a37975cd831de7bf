/* libFuzzer target for the tool-call and reasoning parsers: every format parses the input in
 * one piece and cut into pieces the input decides (and one byte at a time, when short); the
 * events, adjacent CONTENT and adjacent CALL_ARGS of one call joined, must be the same. Also
 * the API's promises: no empty event, calls numbered 0, 1, ... with their arguments after
 * them, tool_parser_num_calls agreeing, and, when no call was found, the content being the
 * input byte for byte. The reasoning parser (each format, opened by the prompt or not) must
 * give the same joined reasoning and content for either cutting.
 *
 * Input: byte 0 = max_hold choice (low 2 bits) | tools given (bit 2) | seed of the cutting
 * (high 5 bits); the rest is the model output.
 *
 * Build and run (from the repo root): tests/fuzz/run.sh builds it against the engine; by hand,
 *   clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Iengine \
 *     $(pkg-config --cflags libcjson) tests/fuzz/fuzz_tool_parser.c engine/server/tool_parser.c \
 *     engine/server/reasoning.c engine/base/sbuf.c engine/base/util.c $(pkg-config --libs libcjson) \
 *     -o build/fuzz_tool_parser
 *   build/fuzz_tool_parser -max_total_time=60 -dict=tests/fuzz/fuzz_tool_parser.dict */
#include "server/reasoning.h"
#include "server/tool_parser.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/sbuf.h"

static const char TOOLS[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"},\"exact\":{\"type\":\"boolean\"},"
    "\"opts\":{\"type\":\"object\"},\"n\":{\"type\":[\"number\",\"null\"]},\"any\":{},"
    "\"maybe\":{\"anyOf\":[{\"type\":\"array\"},{\"type\":\"null\"}]}}}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"f\"}},{\"name\":\"g\"}]";

struct item {
    int kind, index;
    struct sbuf text;
};

struct rec {
    struct item *it;
    int n, cap, ncalls;
};

static void rec_free(struct rec *r) {
    for (int i = 0; i < r->n; i++) sbuf_free(&r->it[i].text);
    free(r->it);
    memset(r, 0, sizeof *r);
}

static int cb(void *ud, const struct tool_event *ev) {
    struct rec *r = ud;
    if (ev->len == 0 || !ev->text) abort();
    if (ev->kind == TOOL_EV_CALL_BEGIN) {
        if (ev->index != r->ncalls++) abort();
    } else if (ev->kind == TOOL_EV_CALL_ARGS) {
        if (ev->index != r->ncalls - 1) abort();
    } else if (ev->kind != TOOL_EV_CONTENT || ev->index != -1) {
        abort();
    }
    struct item *last = r->n ? &r->it[r->n - 1] : NULL;
    if (!last || ev->kind == TOOL_EV_CALL_BEGIN || last->kind != (int)ev->kind || last->index != ev->index) {
        if (r->n == r->cap) {
            r->cap = r->cap ? 2 * r->cap : 16;
            r->it = realloc(r->it, (size_t)r->cap * sizeof *r->it);
            if (!r->it) abort();
        }
        last = &r->it[r->n++];
        *last = (struct item){.kind = (int)ev->kind, .index = ev->index};
    }
    if (sbuf_put(&last->text, ev->text, ev->len)) abort();
    return 0;
}

static int rec_same(const struct rec *a, const struct rec *b) {
    if (a->n != b->n || a->ncalls != b->ncalls) return 0;
    for (int i = 0; i < a->n; i++)
        if (a->it[i].kind != b->it[i].kind || a->it[i].index != b->it[i].index || a->it[i].text.n != b->it[i].text.n ||
            (a->it[i].text.n && memcmp(a->it[i].text.p, b->it[i].text.p, a->it[i].text.n) != 0))
            return 0;
    return 1;
}

/* Cuts from a seeded generator: mostly short pieces, some empty, now and then a long one.
 * step 0: one piece; step 1: one byte at a time. */
static void run(enum tool_format f, const cJSON *tools, size_t max_hold, const char *s, size_t n, int mode,
                uint32_t seed, struct rec *r) {
    struct tool_parser *p = tool_parser_create(f, tools, max_hold);
    if (!p) abort();
    size_t at = 0;
    while (mode && at < n) {
        size_t len = 1;
        if (mode == 2) {
            seed = seed * 1664525u + 1013904223u;
            uint32_t x = seed >> 8;
            len = x % 16 == 0 ? x % 200 : x % 7;
        }
        if (len > n - at) len = n - at;
        if (tool_parser_feed(p, s + at, len, 0, cb, r)) abort();
        at += len;
    }
    if (tool_parser_feed(p, s + at, n - at, 1, cb, r)) abort();
    if (tool_parser_num_calls(p) != r->ncalls) abort();
    tool_parser_free(p);
}

struct rrec {
    struct sbuf r, c;
};

static int rcb(void *ud, const struct reasoning_event *ev) {
    struct rrec *x = ud;
    if (ev->len == 0) abort();
    if (sbuf_put(ev->kind == REASONING_EV_REASONING ? &x->r : &x->c, ev->text, ev->len)) abort();
    return 0;
}

static void rrun(enum reasoning_format f, int inside, const char *s, size_t n, int cut, uint32_t seed, struct rrec *x) {
    struct reasoning_parser *p = reasoning_parser_create(f, inside);
    if (!p) abort();
    sbuf_put(&x->r, "", 0);
    sbuf_put(&x->c, "", 0);
    size_t at = 0;
    while (cut && at < n) {
        seed = seed * 1664525u + 1013904223u;
        size_t len = (seed >> 8) % 6;
        if (len > n - at) len = n - at;
        if (reasoning_parser_feed(p, s + at, len, 0, rcb, x)) abort();
        at += len;
    }
    if (reasoning_parser_feed(p, s + at, n - at, 1, rcb, x)) abort();
    reasoning_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static cJSON *tools;
    if (!tools && !(tools = cJSON_Parse(TOOLS))) abort();
    if (size < 1) return 0;
    static const size_t holds[] = {64, 100, 300, 4096};
    size_t max_hold = holds[data[0] & 3];
    const cJSON *t = (data[0] & 4) ? tools : NULL;
    uint32_t seed = 0x9E3779B9u ^ (uint32_t)(data[0] >> 3) ^ (uint32_t)size * 2654435761u;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;

    for (int f = TOOL_FORMAT_NONE; f <= TOOL_FORMAT_QWEN3_CODER; f++) {
        struct rec one = {0}, other = {0};
        run((enum tool_format)f, t, max_hold, s, n, 0, seed, &one);
        if (one.ncalls == 0) { /* no call: every byte is content, in order */
            size_t k = 0;
            for (int i = 0; i < one.n; i++) {
                if (one.it[i].kind != TOOL_EV_CONTENT || k + one.it[i].text.n > n ||
                    memcmp(one.it[i].text.p, s + k, one.it[i].text.n) != 0)
                    abort();
                k += one.it[i].text.n;
            }
            if (k != n) abort();
        }
        run((enum tool_format)f, t, max_hold, s, n, 2, seed, &other);
        if (!rec_same(&one, &other)) abort();
        rec_free(&other);
        if (n <= 512) {
            run((enum tool_format)f, t, max_hold, s, n, 1, seed, &other);
            if (!rec_same(&one, &other)) abort();
            rec_free(&other);
        }
        rec_free(&one);
    }

    for (int f = REASONING_NONE; f <= REASONING_DEEPSEEK_R1; f++)
        for (int inside = 0; inside <= 1; inside++) {
            struct rrec a = {0}, b = {0};
            rrun((enum reasoning_format)f, inside, s, n, 0, seed, &a);
            rrun((enum reasoning_format)f, inside, s, n, 1, seed, &b);
            if (a.r.n != b.r.n || a.c.n != b.c.n || memcmp(a.r.p, b.r.p, a.r.n) != 0 || memcmp(a.c.p, b.c.p, a.c.n) != 0)
                abort();
            if (f == REASONING_NONE && (a.r.n != 0 || a.c.n != n || memcmp(a.c.p, s, n) != 0)) abort();
            sbuf_free(&a.r);
            sbuf_free(&a.c);
            sbuf_free(&b.r);
            sbuf_free(&b.c);
        }
    return 0;
}
