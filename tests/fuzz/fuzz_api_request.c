/* libFuzzer target: the OpenAI request parser. Byte 0 picks the endpoint (completions, chat,
 * tokenize, detokenize: its low 2 bits) and the limits (bit 2: tiny ones, so that every limit's
 * branch is reached by small inputs; else the defaults); the rest is the body. A parsed request
 * must hold what the parser promises (prompts for completions, messages for chat, consistent
 * sampling arrays, every limit kept, tools bounded and a named tool_choice among them), and
 * every path must free what it allocated. Bit 3 sends the body to /v1/responses' translation
 * instead. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/api_request.h"
#include "server/api_responses.h"
#include "base/util.h"

/* The same body as a /v1/responses request (bit 3 of byte 0): translated into a chat request,
 * which must then hold what the chat parser promises. */
static void responses(const uint8_t *data, size_t size, const struct api_limits *lim) {
    struct api_request r;
    struct api_resp m;
    struct api_error err;
    if (api_resp_parse((const char *)data + 1, size - 1, lim, data[0] & 16 ? "1" : NULL, NULL, &r, &m, &err) != 0) {
        assert(err.status >= 400 && err.status < 600 && err.message[0]);
        return;
    }
    assert(r.kind == API_CHAT && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(r.chat_ctx, "messages")));
    assert(!strncmp(m.id, "resp_", 5));
    cJSON *o = api_resp_object(&m, "completed", NULL, NULL, NULL);
    assert(o);
    cJSON_Delete(o);
    api_resp_free(&m);
    api_request_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] & 8) {
        const struct api_limits small = {.max_json_values = 64, .max_grammar_bytes = 200};
        responses(data, size, data[0] & 4 ? &small : NULL);
        return 0;
    }
    const enum api_kind kind = (enum api_kind)(data[0] % 4);
    const struct api_limits tiny = {.max_stop_bytes = 6, .max_stop_token_ids = 2, .max_logit_bias = 2,
                                    .max_num_seqs = 3, .max_json_values = 24, .max_logprob_entries = 40,
                                    .max_grammar_bytes = 64};
    const struct api_limits lim = data[0] & 4 ? tiny : api_default_limits();
    struct api_request r;
    struct api_error err;
    if (api_request_parse(kind, (const char *)data + 1, size - 1, data[0] & 4 ? &tiny : NULL, &r, &err) != 0) {
        assert(err.status >= 400 && err.status < 600 && err.message[0]);
        /* Too many values is the only 413: the body's, decided before parsing, or with a tool
         * call's arguments (JSON in a string) counted too. */
        assert(err.status != 413 || (err.param[0] ? !strcmp(err.param, "messages")
                                                  : folio_json_count_values((const char *)data + 1, size - 1,
                                                                            lim.max_json_values) > lim.max_json_values));
        return 0;
    }
    assert(folio_json_count_values((const char *)data + 1, size - 1, lim.max_json_values) <= lim.max_json_values);
    size_t stop_bytes = 0;
    for (int i = 0; i < r.sp.num_stop; i++) stop_bytes += strlen(r.sp.stop[i]);
    assert(stop_bytes <= lim.max_stop_bytes);
    assert(r.sp.num_stop_token_ids <= lim.max_stop_token_ids);
    assert(r.sp.num_logit_bias <= lim.max_logit_bias);
    if (kind == API_COMPLETIONS) assert((long long)r.num_prompts * r.sp.n <= lim.max_num_seqs);
    if (kind == API_CHAT) assert(r.sp.n <= lim.max_num_seqs);
    /* A non-streaming answer with logprobs, where max_tokens is known (chat may leave it to the
     * context, checked later), holds at most the entries allowed. */
    if (r.logprobs >= 0 && !r.stream && r.sp.max_tokens > 0)
        assert((long long)(kind == API_CHAT ? 1 : r.num_prompts) * r.sp.n * r.sp.max_tokens * (1 + r.logprobs) <=
               lim.max_logprob_entries);
    switch (kind) {
    case API_COMPLETIONS:
        assert(r.num_prompts >= 1 && r.num_prompts <= API_MAX_PROMPTS);
        for (int i = 0; i < r.num_prompts; i++)
            assert((r.prompts[i].text != NULL) != (r.prompts[i].ids != NULL || r.prompts[i].num_ids > 0));
        break;
    case API_CHAT:
        assert(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(r.chat_ctx, "messages")));
        /* tools: bounded, and a named choice names one of them */
        assert(r.num_tools <= API_MAX_TOOLS && r.tools_bytes <= lim.max_grammar_bytes);
        assert((r.tools != NULL) == (r.num_tools > 0));
        if (r.tool_choice == API_TOOLS_NAMED || r.tool_choice == API_TOOLS_REQUIRED) assert(r.num_tools > 0);
        if (r.tool_choice == API_TOOLS_NAMED) {
            int found = 0;
            for (const cJSON *t = r.tools->child; t; t = t->next)
                found |= !strcmp(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name")->valuestring,
                                 r.tool_name);
            assert(found);
        }
        break;
    default: break;
    }
    assert(r.sp.num_stop >= 0 && r.sp.num_stop <= API_MAX_STOPS && (r.sp.num_stop == 0 || r.sp.stop));
    for (int i = 0; i < r.sp.num_stop; i++) assert(r.sp.stop[i] && r.sp.stop[i][0]);
    assert(r.logprobs >= -1 && r.logprobs <= SAMPLER_MAX_LOGPROBS);
    assert(r.sp.n >= 1);
    sampler_check_params(&r.sp, 1000);
    api_request_free(&r);
    return 0;
}
