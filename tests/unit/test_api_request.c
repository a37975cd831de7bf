/* The OpenAI request parser (api_request.c) and the Prometheus text (metrics.c). */
#include <stdlib.h>

#include "api_request.h"
#include "engine.h"
#include "metrics.h"
#include "test.h"
#include "util.h"

static int parse(enum api_kind k, const char *body, struct api_request *r, struct api_error *e) {
    return api_request_parse(k, body, strlen(body), r, e);
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
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_object\"}}",
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
                       "\"tools\":[{\"type\":\"function\"}],\"max_completion_tokens\":9,\"max_tokens\":3}";
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
