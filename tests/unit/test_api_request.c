/* The OpenAI request parser (api_request.c) and the Prometheus text (metrics.c). */
#include <stdlib.h>

#include "server/api_request.h"
#include "core/engine.h"
#include "core/metrics.h"
#include "test.h"
#include "base/util.h"

static int parse(enum api_kind k, const char *body, struct api_request *r, struct api_error *e) {
    return api_request_parse(k, body, strlen(body), NULL, r, e);
}

TEST(api_completions_prompt_forms) {
    struct api_request r;
    struct api_error e;
    CHECK_EQ_INT(parse(API_COMPLETIONS, "{\"prompt\":\"Once upon\"}", &r, &e), 0);
    CHECK_EQ_INT(r.num_prompts, 1);
    CHECK_STR(r.prompts[0].text, "Once upon");
    CHECK_EQ_INT(r.sp.max_tokens, 16); /* OpenAI's completions default */
    CHECK_EQ_INT(r.add_special_tokens, 1);
    CHECK_EQ_INT(r.logprobs, -1);
    api_request_free(&r);
    CHECK_EQ_INT(parse(API_COMPLETIONS, "{\"prompt\":[1,403,407]}", &r, &e), 0);
    CHECK_EQ_INT(r.num_prompts, 1);
    CHECK_EQ_INT(r.prompts[0].num_ids, 3);
    CHECK_EQ_INT(r.prompts[0].ids[1], 403);
    api_request_free(&r);
    CHECK_EQ_INT(parse(API_COMPLETIONS, "{\"prompt\":[\"a\",[5,6],\"b\"]}", &r, &e), 0);
    CHECK_EQ_INT(r.num_prompts, 3);
    CHECK_STR(r.prompts[2].text, "b");
    CHECK_EQ_INT(r.prompts[1].ids[1], 6);
    api_request_free(&r);
    CHECK_EQ_INT(parse(API_COMPLETIONS, "{\"prompt\":[[1],[2,3]]}", &r, &e), 0);
    CHECK_EQ_INT(r.num_prompts, 2);
    api_request_free(&r);
}

TEST(api_sampling_fields) {
    struct api_request r;
    struct api_error e;
    const char *body = "{\"prompt\":\"x\",\"max_tokens\":7.0,\"temperature\":0.5,\"top_p\":0.9,\"top_k\":40,"
                       "\"min_p\":0.1,\"n\":3,\"seed\":-1,\"stop\":[\"a\",\"bc\"],\"stop_token_ids\":[2],"
                       "\"logit_bias\":{\"5\":-100,\"7\":2.5},\"logprobs\":3,\"ignore_eos\":true,"
                       "\"min_tokens\":2,\"priority\":-4,\"user\":\"u\",\"stream\":true,"
                       "\"stream_options\":{\"include_usage\":true},\"echo\":false}";
    CHECK_EQ_INT(parse(API_COMPLETIONS, body, &r, &e), 0);
    CHECK_EQ_INT(r.sp.max_tokens, 7);
    CHECK_NEAR(r.sp.temperature, 0.5, 1e-6);
    CHECK_EQ_INT(r.sp.top_k, 40);
    CHECK_EQ_INT(r.sp.n, 3);
    CHECK(r.sp.has_seed && r.sp.seed == UINT64_MAX);
    CHECK_EQ_INT(r.sp.num_stop, 2);
    CHECK_STR(r.sp.stop[1], "bc");
    CHECK_EQ_INT(r.sp.num_stop_token_ids, 1);
    CHECK_EQ_INT(r.sp.num_logit_bias, 2);
    CHECK_EQ_INT(r.sp.logit_bias[1].token, 7);
    CHECK_EQ_INT(r.logprobs, 3);
    CHECK(r.sp.ignore_eos && r.stream && r.include_usage);
    CHECK_EQ_INT(r.priority, -4);
    CHECK(r.set & API_SET_TEMPERATURE);
    CHECK(!(r.set & API_SET_REPETITION));
    api_request_free(&r);
}

/* Each bad body is a 400 that names the parameter. */
TEST(api_errors_name_the_parameter) {
    static const struct {
        enum api_kind kind;
        const char *body, *param;
    } cases[] = {
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"max_tokens\":\"abc\"}", "max_tokens"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"max_tokens\":0}", "max_tokens"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"temperature\":\"hot\"}", "temperature"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"n\":0}", "n"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"logprobs\":50}", "logprobs"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"stop\":[1]}", "stop"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"logit_bias\":{\"a\":1}}", "logit_bias"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"logit_bias\":{\"1\":500}}", "logit_bias"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"stream_options\":{\"include_usage\":true}}", "stream_options"},
        {API_COMPLETIONS, "{\"prompt\":[]}", "prompt"},
        {API_COMPLETIONS, "{\"prompt\":[1,-2]}", "prompt"},
        {API_COMPLETIONS, "{\"prompt\":{}}", "prompt"},
        {API_COMPLETIONS, "{}", "prompt"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"suffix\":\"y\"}", "suffix"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"model\":5}", "model"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"max_tokens\":5,\"min_tokens\":9}", "min_tokens"},
        {API_CHAT, "{\"messages\":\"hi\"}", "messages"},
        {API_CHAT, "{\"messages\":[]}", "messages"},
        {API_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", "messages"},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "messages"},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", "top_logprobs"},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":30,\"logprobs\":true}",
         "top_logprobs"},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"continue_final_message\":true}",
         "continue_final_message"},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"xml\"}}",
         "response_format"},
        {API_DETOKENIZE, "{\"tokens\":\"1,2\"}", "tokens"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct api_request r;
        struct api_error e;
        if (parse(cases[i].kind, cases[i].body, &r, &e) == 0) {
            test_fail(__FILE__, __LINE__, "accepted %s", cases[i].body);
            api_request_free(&r);
            continue;
        }
        CHECK_EQ_INT(e.status, 400);
        if (strcmp(e.param, cases[i].param) != 0)
            test_fail(__FILE__, __LINE__, "%s: param '%s', want '%s' (%s)", cases[i].body, e.param, cases[i].param,
                      e.message);
        CHECK(e.message[0] != '\0');
    }
    struct api_request r;
    struct api_error e;
    CHECK(parse(API_COMPLETIONS, "{\"prompt\": ", &r, &e) != 0);
    CHECK_EQ_INT(e.status, 400);
    CHECK(parse(API_COMPLETIONS, "[1,2]", &r, &e) != 0);
}

TEST(api_chat_messages_and_kwargs) {
    struct api_request r;
    struct api_error e;
    const char *body = "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":"
                       "[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}],"
                       "\"chat_template_kwargs\":{\"enable_thinking\":false,\"messages\":1},"
                       "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"max_completion_tokens\":9,\"max_tokens\":3}";
    CHECK_EQ_INT(parse(API_CHAT, body, &r, &e), 0);
    CHECK_EQ_INT(r.add_generation_prompt, 1);
    CHECK_EQ_INT(r.add_special_tokens, 0);
    CHECK_EQ_INT(r.sp.max_tokens, 9); /* max_completion_tokens wins */
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(r.chat_ctx, "messages");
    CHECK(cJSON_IsArray(msgs)); /* the request's messages, not the kwarg */
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(msgs, 1), "content");
    CHECK(cJSON_IsString(c) && !strcmp(c->valuestring, "a\nb"));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r.chat_ctx, "enable_thinking")));
    CHECK(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(r.chat_ctx, "tools")));
    api_request_free(&r);
    /* Unset max_tokens in chat: the rest of the context. */
    CHECK_EQ_INT(parse(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":null}]}", &r, &e), 0);
    CHECK_EQ_INT(r.sp.max_tokens, -1);
    api_request_free(&r);
}

TEST(api_metrics_text_and_quantiles) {
    struct metrics *m = metrics_create();
    CHECK(m != NULL);
    if (!m) return;
    for (int i = 0; i < 100; i++) metrics_observe(m, METRICS_TTFT, 0.015); /* bucket (0.01, 0.02] */
    metrics_observe(m, METRICS_TTFT, 100.0);
    metrics_count_finish(m, METRICS_STOP);
    metrics_count_finish(m, METRICS_ABORT);
    struct metrics_hist_snapshot s;
    metrics_hist(m, METRICS_TTFT, &s);
    CHECK_EQ_INT(s.count, 101);
    const double p50 = metrics_quantile(&s, 0.5);
    CHECK(p50 > 0.01 && p50 <= 0.02);
    CHECK(metrics_quantile(&s, 1.0) >= 80.0);
    struct engine_stats st = {.num_running = 3, .num_waiting = 2, .kv_usage = 0.25, .prompt_tokens = 11};
    char buf[32768];
    const struct engine_memory mem = {.device = "cuda", .weights = 2471000000, .kv_cache = 1 << 30,
                                      .activations = 123456, .device_total = 85899345920, .device_free = 1 << 20,
                                      .utilization = 0.45};
    size_t n = metrics_prometheus(m, &st, &mem, "my\"model", buf, sizeof buf);
    CHECK(n < sizeof buf);
    CHECK(strstr(buf, "folio:memory_weights_bytes{model_name=\"my\\\"model\"} 2471000000\n") != NULL);
    CHECK(strstr(buf, "folio:memory_kv_cache_bytes{model_name=\"my\\\"model\"} 1073741824\n") != NULL);
    CHECK(strstr(buf, "folio:memory_activation_bytes{model_name=\"my\\\"model\"} 123456\n") != NULL);
    CHECK(strstr(buf, "folio:gpu_memory_total_bytes{model_name=\"my\\\"model\"} 85899345920\n") != NULL);
    CHECK(strstr(buf, "folio:gpu_memory_utilization{model_name=\"my\\\"model\"} 0.45") != NULL);
    /* A CPU engine has no GPU lines. */
    const struct engine_memory cpu_mem = {.device = "cpu", .weights = 1000};
    char cbuf[32768];
    CHECK(metrics_prometheus(m, &st, &cpu_mem, "x", cbuf, sizeof cbuf) < sizeof cbuf);
    CHECK(strstr(cbuf, "folio:memory_weights_bytes{model_name=\"x\"} 1000\n") != NULL);
    CHECK(strstr(cbuf, "gpu_memory") == NULL);
    CHECK(strstr(buf, "folio:num_requests_running{model_name=\"my\\\"model\"} 3\n") != NULL);
    CHECK(strstr(buf, "folio:num_requests_waiting{model_name=\"my\\\"model\"} 2\n") != NULL);
    CHECK(strstr(buf, "folio:prompt_tokens_total{model_name=\"my\\\"model\"} 11\n") != NULL);
    CHECK(strstr(buf, "finished_reason=\"abort\"} 1\n") != NULL);
    CHECK(strstr(buf, "folio:time_to_first_token_seconds_bucket{model_name=\"my\\\"model\",le=\"0.02\"} 100\n") != NULL);
    CHECK(strstr(buf, "folio:time_to_first_token_seconds_count{model_name=\"my\\\"model\"} 101\n") != NULL);
    CHECK(strstr(buf, "# TYPE folio:e2e_request_latency_seconds histogram\n") != NULL);
    /* Truncation reports the length it needed, like snprintf. */
    char small[64];
    CHECK_EQ_INT(metrics_prometheus(m, &st, &mem, "my\"model", small, sizeof small), n);
    metrics_free(m);
}

/* --- per-request limits ---------------------------------------------------------------------- */

static int parse_lim(enum api_kind k, const char *body, const struct api_limits *lim, struct api_request *r,
                     struct api_error *e) {
    int rc = api_request_parse(k, body, strlen(body), lim, r, e);
    if (rc == 0) api_request_free(r);
    return rc;
}

/* A body of one JSON string per stop string, `len` bytes each. */
static char *stops_body(int count, size_t len) {
    char *b = malloc((size_t)count * (len + 3) + 64), *w = b;
    if (!b) return NULL;
    w += sprintf(w, "{\"prompt\":\"x\",\"stop\":[");
    for (int i = 0; i < count; i++) {
        if (i) *w++ = ',';
        *w++ = '"';
        memset(w, 'a' + i % 26, len);
        w += len;
        *w++ = '"';
    }
    strcpy(w, "]}");
    return b;
}

TEST(api_limits_defaults) {
    struct api_limits d = api_default_limits();
    CHECK_EQ_INT(d.max_stop_bytes, 16384);
    CHECK_EQ_INT(d.max_stop_token_ids, 1024);
    CHECK_EQ_INT(d.max_logit_bias, 1024);
    CHECK_EQ_INT(d.max_num_seqs, 256);
    CHECK_EQ_INT(d.max_json_values, 1000000);
    CHECK_EQ_INT(d.max_logprob_entries, 262144);
    /* zeros read as the defaults: 16 x 1024 stop bytes pass, one more byte does not */
    struct api_limits zero = {0};
    struct api_request r;
    struct api_error e;
    char *b = stops_body(16, 1024);
    CHECK_EQ_INT(parse_lim(API_COMPLETIONS, b, &zero, &r, &e), 0);
    free(b);
    b = stops_body(16, 1024);
    b[strlen(b) - 3] = '\0'; /* drop the last stop's closing quote and the list's end ... */
    strcat(b, "a\"]}");      /* ... and make it one byte longer */
    CHECK(parse_lim(API_COMPLETIONS, b, NULL, &r, &e) != 0);
    CHECK_EQ_INT(e.status, 400);
    CHECK_STR(e.param, "stop");
    CHECK_STR(e.message, "the stop strings add up to 16385 bytes; at most 16384 (--max-stop-bytes)");
    free(b);
}

TEST(api_limits_each_names_its_param) {
    struct api_limits lim = {.max_stop_bytes = 10, .max_stop_token_ids = 3, .max_logit_bias = 2, .max_num_seqs = 8,
                             .max_json_values = 40};
    static const struct {
        enum api_kind kind;
        const char *body; /* NULL param: accepted */
        const char *param, *message;
        int status;
    } cases[] = {
        /* at each limit: accepted */
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"stop\":[\"abcde\",\"fghij\"]}", NULL, NULL, 0},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"stop_token_ids\":[1,2,3]}", NULL, NULL, 0},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"logit_bias\":{\"1\":1,\"2\":2}}", NULL, NULL, 0},
        {API_COMPLETIONS, "{\"prompt\":[\"a\",\"b\"],\"n\":4}", NULL, NULL, 0},
        {API_COMPLETIONS, "{\"prompt\":[1,2,3,4,5,6,7,8,9],\"n\":8}", NULL, NULL, 0},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":8}", NULL, NULL, 0},
        /* one over: a 400 that names the parameter and the flag */
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"stop\":[\"abcde\",\"fghijk\"]}", "stop",
         "the stop strings add up to 11 bytes; at most 10 (--max-stop-bytes)", 400},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"stop\":\"abcdefghijk\"}", "stop",
         "the stop strings add up to 11 bytes; at most 10 (--max-stop-bytes)", 400},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"stop_token_ids\":[1,2,3,4]}", "stop_token_ids",
         "stop_token_ids has 4 ids; at most 3 (--max-stop-token-ids)", 400},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop_token_ids\":[1,2,3,4]}",
         "stop_token_ids", "stop_token_ids has 4 ids; at most 3 (--max-stop-token-ids)", 400},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"logit_bias\":{\"1\":1,\"2\":2,\"3\":3}}", "logit_bias",
         "logit_bias has 3 entries; at most 2 (--max-logit-bias)", 400},
        {API_COMPLETIONS, "{\"prompt\":[\"a\",\"b\",\"c\"],\"n\":3}", "n",
         "3 prompts x n=3 is 9 sequences, but this engine runs at most 8 at once (--max-num-seqs)", 400},
        {API_COMPLETIONS, "{\"prompt\":[[1],[2]],\"n\":5}", "n",
         "2 prompts x n=5 is 10 sequences, but this engine runs at most 8 at once (--max-num-seqs)", 400},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":9}", "n",
         "1 prompt x n=9 is 9 sequences, but this engine runs at most 8 at once (--max-num-seqs)", 400},
        /* 41 values: the object, "prompt", its list and 38 ids */
        {API_COMPLETIONS,
         "{\"prompt\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,"
         "36,37,38]}",
         "", "the request body holds more than 40 JSON values (--max-json-values)", 413},
        {API_TOKENIZE,
         "{\"prompt\":\"x\",\"a\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,"
         "32,33,34,35,36]}",
         "", "the request body holds more than 40 JSON values (--max-json-values)", 413},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct api_request r;
        struct api_error e;
        int rc = parse_lim(cases[i].kind, cases[i].body, &lim, &r, &e);
        if (!cases[i].param) {
            if (rc) test_fail(__FILE__, __LINE__, "rejected %s: %s", cases[i].body, e.message);
            continue;
        }
        if (!rc) {
            test_fail(__FILE__, __LINE__, "accepted %s", cases[i].body);
            continue;
        }
        CHECK_EQ_INT(e.status, cases[i].status);
        CHECK_STR(e.param, cases[i].param);
        CHECK_STR(e.message, cases[i].message);
    }
    /* 37 ids make 40 values: at the limit */
    struct api_request r;
    struct api_error e;
    CHECK_EQ_INT(parse_lim(API_COMPLETIONS,
                           "{\"prompt\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,"
                           "29,30,31,32,33,34,35,36,37]}",
                           &lim, &r, &e),
                 0);
}

/* A non-streaming answer with logprobs is built whole: choices x max_tokens x (1 + alternatives)
 * entries at most, checked at parse time when max_tokens is known and, when it is not (chat),
 * by api_generate through api_check_logprob_entries once the prompt's length is. */
TEST(api_limits_logprob_entries) {
    const struct api_limits lim = {.max_logprob_entries = 1000};
#define MSG_C(k) "this request could return " k " logprob entries (n x max_tokens x (1 + logprobs)); at most 1000 " \
                 "(--max-logprob-entries): lower max_tokens, n or logprobs, or set stream=true"
    static const struct {
        enum api_kind kind;
        const char *body, *message; /* NULL message: accepted */
    } cases[] = {
        /* 2 prompts x n=2 x 50 x (1 + 4) = 1000: at the limit */
        {API_COMPLETIONS, "{\"prompt\":[\"a\",\"b\"],\"n\":2,\"max_tokens\":50,\"logprobs\":4}", NULL},
        {API_COMPLETIONS, "{\"prompt\":[\"a\",\"b\"],\"n\":2,\"max_tokens\":51,\"logprobs\":4}",
         "this request could return 1020 logprob entries (prompts x n x max_tokens x (1 + logprobs)); at most 1000 "
         "(--max-logprob-entries): lower max_tokens, n or logprobs, or set stream=true"},
        /* a stream holds one event at a time; without logprobs there is nothing to count */
        {API_COMPLETIONS, "{\"prompt\":[\"a\",\"b\"],\"n\":2,\"max_tokens\":51,\"logprobs\":4,\"stream\":true}", NULL},
        {API_COMPLETIONS, "{\"prompt\":[\"a\",\"b\"],\"n\":2,\"max_tokens\":100000}", NULL},
        /* max_tokens left out is completions' 16: 4 x 16 x 21 */
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"n\":4,\"logprobs\":20}", MSG_C("1344")},
        {API_COMPLETIONS, "{\"prompt\":[[1,2]],\"max_tokens\":1000,\"logprobs\":0}", NULL},
        {API_COMPLETIONS, "{\"prompt\":[[1,2]],\"max_tokens\":1001,\"logprobs\":0}", MSG_C("1001")},
        /* chat: n=2 x 100 x (1 + 4) = 1000 */
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2,\"max_tokens\":100,"
                   "\"logprobs\":true,\"top_logprobs\":4}", NULL},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2,\"max_completion_tokens\":100,"
                   "\"logprobs\":true,\"top_logprobs\":5}",
         "this request could return 1200 logprob entries (n x max_tokens x (1 + top_logprobs)); at most 1000 "
         "(--max-logprob-entries): lower max_tokens, n or top_logprobs, or set stream=true"},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1001,\"logprobs\":true}",
         "this request could return 1001 logprob entries (n x max_tokens x (1 + top_logprobs)); at most 1000 "
         "(--max-logprob-entries): lower max_tokens, n or top_logprobs, or set stream=true"},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1001,\"logprobs\":true,"
                   "\"stream\":true}", NULL},
        /* chat without max_tokens: the rest of the context, unknown until the prompt is built */
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":8,\"logprobs\":true,\"top_logprobs\":20}",
         NULL},
    };
#undef MSG_C
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct api_request r;
        struct api_error e;
        int rc = parse_lim(cases[i].kind, cases[i].body, &lim, &r, &e);
        if (!cases[i].message) {
            if (rc) test_fail(__FILE__, __LINE__, "rejected %s: %s", cases[i].body, e.message);
            continue;
        }
        if (!rc) {
            test_fail(__FILE__, __LINE__, "accepted %s", cases[i].body);
            continue;
        }
        CHECK_EQ_INT(e.status, 400);
        CHECK_STR(e.param, "logprobs");
        CHECK_STR(e.message, cases[i].message);
    }
    /* The second check, as api_generate makes it: n=8 chat choices of up to 8192 - 100 tokens */
    struct api_request r;
    struct api_error e;
    const char *chat = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":8,\"logprobs\":true,\"top_logprobs\":20}";
    CHECK_EQ_INT(api_request_parse(API_CHAT, chat, strlen(chat), NULL, &r, &e), 0);
    CHECK(api_check_logprob_entries(&r, 8LL * 8092, NULL, &e) != 0);
    CHECK_EQ_INT(e.status, 400);
    CHECK_STR(e.param, "logprobs");
    CHECK_STR(e.message, "this request could return 1359456 logprob entries (n x max_tokens x (1 + top_logprobs)); at "
                         "most 262144 (--max-logprob-entries): lower max_tokens, n or top_logprobs, or set stream=true");
    CHECK_EQ_INT(api_check_logprob_entries(&r, 262144 / 21, NULL, &e), 0);
    CHECK(api_check_logprob_entries(&r, 262144 / 21 + 1, NULL, &e) != 0);
    CHECK(api_check_logprob_entries(&r, 48, &lim, &e) != 0); /* 48 x 21 = 1008 */
    CHECK_EQ_INT(api_check_logprob_entries(&r, 48, &(struct api_limits){.max_logprob_entries = 1008}, &e), 0);
    CHECK(api_check_logprob_entries(&r, 48, &(struct api_limits){.max_logprob_entries = 1007}, &e) != 0);
    r.stream = 1;
    CHECK_EQ_INT(api_check_logprob_entries(&r, 1LL << 40, NULL, &e), 0);
    r.stream = 0;
    r.logprobs = -1;
    CHECK_EQ_INT(api_check_logprob_entries(&r, 1LL << 40, NULL, &e), 0);
    api_request_free(&r);
}

/* The precheck counts values the way cJSON allocates them, skipping strings and escapes. */
TEST(api_json_count_values) {
    const char *t = "{\"a\":\"[1,2,\\\"]x,{\",\"b\":[1,2.5e3,true,null,[],{}],\"c\\\\\":-0}";
    /* object, "a", its string, "b", the list, 1, 2.5e3, true, null, [], {}, "c\\", -0 */
    CHECK_EQ_INT(folio_json_count_values(t, strlen(t), 1000), 13);
    CHECK_EQ_INT(folio_json_count_values(t, strlen(t), 5), 6); /* stops once past the limit */
    CHECK_EQ_INT(folio_json_count_values("", 0, 10), 0);
    CHECK_EQ_INT(folio_json_count_values(" [ 1 , 2 ] ", 11, 10), 3);
    CHECK_EQ_INT(folio_json_count_values("\"abc", 4, 10), 1); /* unterminated: the parser rejects it */
    /* a long prompt of token ids passes the default limit; a body of a million ones does not */
    const int n = 131072;
    char *b = malloc((size_t)n * 7 + 64), *w = b;
    w += sprintf(w, "{\"prompt\":[");
    for (int i = 0; i < n; i++) w += sprintf(w, i ? ",%d" : "%d", 3 + i % 500);
    strcpy(w, "],\"max_tokens\":1}");
    struct api_request r;
    struct api_error e;
    CHECK_EQ_INT(api_request_parse(API_COMPLETIONS, b, strlen(b), NULL, &r, &e), 0);
    CHECK_EQ_INT(r.prompts[0].num_ids, n);
    api_request_free(&r);
    free(b);
    const int m = 1000000;
    b = malloc((size_t)m * 2 + 64);
    w = b + sprintf(b, "{\"prompt\":[");
    for (int i = 0; i < m; i++) {
        *w++ = '1';
        *w++ = ',';
    }
    strcpy(w - 1, "]}");
    CHECK(api_request_parse(API_COMPLETIONS, b, strlen(b), NULL, &r, &e) != 0);
    CHECK_EQ_INT(e.status, 413);
    CHECK_STR(e.message, "the request body holds more than 1000000 JSON values (--max-json-values)");
    free(b);
}

/* Structured output's fields, each spelling into one spec: OpenAI's response_format, vLLM's
 * structured_outputs and the older guided_* fields. */
TEST(api_structured_output_fields) {
    struct api_request r;
    struct api_error e;
    CHECK_EQ_INT(parse(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"text\"}}", &r, &e), 0);
    CHECK_EQ_INT(r.structured.kind, STRUCTURED_NONE);
    api_request_free(&r);
    CHECK_EQ_INT(parse(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_object\"}}", &r, &e), 0);
    CHECK_EQ_INT(r.structured.kind, STRUCTURED_JSON);
    CHECK_STR(r.structured.text, "{\"type\":\"object\"}");
    CHECK_STR(r.structured_param, "response_format");
    api_request_free(&r);
    CHECK_EQ_INT(parse(API_CHAT,
                       "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\","
                       "\"strict\":true,\"schema\":{\"type\":\"integer\", \"minimum\": 3}}}}",
                       &r, &e),
                 0);
    CHECK_EQ_INT(r.structured.kind, STRUCTURED_JSON);
    CHECK_EQ_INT(r.structured.strict, 1);
    CHECK_STR(r.structured.text, "{\"type\":\"integer\",\"minimum\":3}");
    api_request_free(&r);
    /* No schema: any JSON value. */
    CHECK_EQ_INT(parse(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\"}}}",
                       &r, &e),
                 0);
    CHECK_STR(r.structured.text, "{}");
    api_request_free(&r);
    CHECK_EQ_INT(parse(API_COMPLETIONS, "{\"prompt\":\"a\",\"structured_outputs\":{\"choice\":[\"yes\",\"no\"]}}", &r, &e), 0);
    CHECK_EQ_INT(r.structured.kind, STRUCTURED_CHOICE);
    CHECK_EQ_INT(r.structured.num_choices, 2);
    CHECK_EQ_INT((int)r.structured.len, 7);
    CHECK(memcmp(r.structured.text, "yes\0no\0", 7) == 0);
    CHECK_STR(r.structured_param, "structured_outputs.choice");
    api_request_free(&r);
    CHECK_EQ_INT(parse(API_COMPLETIONS, "{\"prompt\":\"a\",\"guided_regex\":\"[0-9]+\"}", &r, &e), 0);
    CHECK_EQ_INT(r.structured.kind, STRUCTURED_REGEX);
    CHECK_STR(r.structured.text, "[0-9]+");
    api_request_free(&r);
    CHECK_EQ_INT(parse(API_COMPLETIONS, "{\"prompt\":\"a\",\"guided_grammar\":\"root ::= \\\"a\\\"\"}", &r, &e), 0);
    CHECK_EQ_INT(r.structured.kind, STRUCTURED_GRAMMAR);
    api_request_free(&r);
    /* A schema given as a string, as vLLM also takes it. */
    CHECK_EQ_INT(parse(API_COMPLETIONS, "{\"prompt\":\"a\",\"guided_json\":\"{\\\"type\\\":\\\"string\\\"}\"}", &r, &e), 0);
    CHECK_EQ_INT(r.structured.kind, STRUCTURED_JSON);
    CHECK_STR(r.structured.text, "{\"type\":\"string\"}");
    api_request_free(&r);

    static const struct {
        const char *body, *param, *needle;
    } bad[] = {
        {"{\"prompt\":\"a\",\"guided_regex\":\"a\",\"guided_choice\":[\"a\"]}", "guided_choice", "only one"},
        {"{\"prompt\":\"a\",\"response_format\":{\"type\":\"json_object\"},\"structured_outputs\":{\"regex\":\"a\"}}",
         "structured_outputs.regex", "only one"},
        {"{\"prompt\":\"a\",\"response_format\":{\"type\":\"yaml\"}}", "response_format", "yaml"},
        {"{\"prompt\":\"a\",\"response_format\":\"json\"}", "response_format", "type"},
        {"{\"prompt\":\"a\",\"response_format\":{\"type\":\"json_schema\"}}", "response_format", "json_schema object"},
        {"{\"prompt\":\"a\",\"guided_choice\":[]}", "guided_choice", "non-empty"},
        {"{\"prompt\":\"a\",\"guided_choice\":[1]}", "guided_choice", "strings"},
        {"{\"prompt\":\"a\",\"guided_regex\":\"\"}", "guided_regex", "empty"},
        {"{\"prompt\":\"a\",\"guided_json\":[1]}", "guided_json", "JSON Schema"},
        {"{\"prompt\":\"a\",\"structured_outputs\":{\"structural_tag\":\"x\"}}", "structured_outputs", "structural_tag"},
        {"{\"prompt\":\"a\",\"structured_outputs\":[]}", "structured_outputs", "object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = parse(API_COMPLETIONS, bad[i].body, &r, &e);
        CHECK(rc != 0);
        if (rc == 0) {
            api_request_free(&r);
            continue;
        }
        CHECK_EQ_INT(e.status, 400);
        CHECK_STR(e.param, bad[i].param);
        if (!strstr(e.message, bad[i].needle)) test_fail(__FILE__, __LINE__, "%s: %s", bad[i].body, e.message);
    }
    /* --max-grammar-bytes holds before anything compiles. */
    struct api_limits lim = api_default_limits();
    lim.max_grammar_bytes = 8;
    const char *body = "{\"prompt\":\"a\",\"guided_regex\":\"abcdefghij\"}";
    CHECK(api_request_parse(API_COMPLETIONS, body, strlen(body), &lim, &r, &e) != 0);
    CHECK(strstr(e.message, "--max-grammar-bytes") != NULL);
}

/* Tools: tool_choice's forms, content null read as "", call arguments parsed into objects for
 * the template, and the checks that name the field. */
TEST(api_chat_tools) {
    struct api_request r;
    struct api_error e;
    const char *tools = "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\"}}},"
                        "{\"type\":\"function\",\"function\":{\"name\":\"t.x-1\"}}]";
    char body[1024];
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"w\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":"
             "[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"P\\\"}\"}}]},"
             "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"21\"}],%s,\"tool_choice\":{\"type\":\"function\","
             "\"function\":{\"name\":\"t.x-1\"}},\"parallel_tool_calls\":false}", tools);
    CHECK_EQ_INT(parse(API_CHAT, body, &r, &e), 0);
    CHECK_EQ_INT(r.num_tools, 2);
    CHECK_EQ_INT(r.tool_choice, API_TOOLS_NAMED);
    CHECK_STR(r.tool_name, "t.x-1");
    CHECK_EQ_INT(r.parallel_tool_calls, 0);
    const cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r.chat_ctx, "messages"), 1);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
    CHECK(cJSON_IsString(content) && !content->valuestring[0]);
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(a, "tool_calls"), 0), "function"), "arguments");
    CHECK(cJSON_IsObject(args) && !strcmp(cJSON_GetObjectItemCaseSensitive(args, "city")->valuestring, "P"));
    api_request_free(&r);
    static const char *const choices[][2] = {{"\"none\"", "0"}, {"\"auto\"", "1"}, {"\"required\"", "2"}};
    for (int i = 0; i < 3; i++) {
        snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}],%s,\"tool_choice\":%s}", tools, choices[i][0]);
        CHECK_EQ_INT(parse(API_CHAT, body, &r, &e), 0);
        CHECK_EQ_INT(r.tool_choice, i == 0 ? API_TOOLS_NONE : i == 1 ? API_TOOLS_AUTO : API_TOOLS_REQUIRED);
        CHECK_EQ_INT(r.parallel_tool_calls, 1);
        api_request_free(&r);
    }
    static const char *const bad[][2] = {
        {"\"tools\":[{\"type\":\"function\",\"function\":{}}]", "tools[0].function.name"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"\"}}]", "tools[0].function.name"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"array\"}}}]", "tools[0].function.parameters"},
        {"\"tools\":[{\"type\":\"code_interpreter\"}]", "tools[0]"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"g\"}}", "tool_choice"},
        {"\"tool_choice\":\"required\"", "tool_choice"},
        {"\"tools\":{}", "tools"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}],%s}", bad[i][0]);
        CHECK(parse(API_CHAT, body, &r, &e) != 0);
        CHECK_EQ_INT(e.status, 400);
        CHECK_STR(e.param, bad[i][1]);
    }
    /* the tools' size counts against --max-grammar-bytes */
    const struct api_limits small = {.max_grammar_bytes = 40};
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}],%s}", tools);
    CHECK(api_request_parse(API_CHAT, body, strlen(body), &small, &r, &e) != 0);
    CHECK_STR(e.param, "tools");
}

/* A call's arguments are JSON inside a string: one value to the body's count, but parsed for
 * the template they would build their own tree. They draw on what --max-json-values leaves. */
TEST(api_chat_tool_arguments_budget) {
    struct api_request r;
    struct api_error e;
    char args[512] = "[";
    for (int i = 0; i < 100; i++) strcat(args, i ? ",1" : "1");
    strcat(args, "]");
    char body[1024];
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
             "\"function\":{\"name\":\"f\",\"arguments\":\"%s\"}}]}]}", args);
    const struct api_limits small = {.max_json_values = 60};
    CHECK(api_request_parse(API_CHAT, body, strlen(body), &small, &r, &e) != 0);
    CHECK_EQ_INT(e.status, 413);
    CHECK_STR(e.param, "messages");
    const struct api_limits room = {.max_json_values = 200};
    CHECK_EQ_INT(api_request_parse(API_CHAT, body, strlen(body), &room, &r, &e), 0);
    api_request_free(&r);
}
