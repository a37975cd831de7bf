/* libFuzzer target: the OpenAI request parser. Byte 0 picks the endpoint (completions, chat,
 * tokenize, detokenize: its low 2 bits) and the limits (bit 2: tiny ones, so that every limit's
 * branch is reached by small inputs; else the defaults); the rest is the body. A parsed request
 * must hold what the parser promises (prompts for completions, messages for chat, consistent
 * sampling arrays, every limit kept), and every path must free what it allocated. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/api_request.h"
#include "base/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const enum api_kind kind = (enum api_kind)(data[0] % 4);
    const struct api_limits tiny = {.max_stop_bytes = 6, .max_stop_token_ids = 2, .max_logit_bias = 2,
                                    .max_num_seqs = 3, .max_json_values = 24, .max_logprob_entries = 40};
    const struct api_limits lim = data[0] & 4 ? tiny : api_default_limits();
    struct api_request r;
    struct api_error err;
    if (api_request_parse(kind, (const char *)data + 1, size - 1, data[0] & 4 ? &tiny : NULL, &r, &err) != 0) {
        assert(err.status >= 400 && err.status < 600 && err.message[0]);
        /* Too many values is the only 413, and it is decided before parsing. */
        assert(err.status != 413 || (folio_json_count_values((const char *)data + 1, size - 1, lim.max_json_values) >
                                         lim.max_json_values &&
                                     !err.param[0]));
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
