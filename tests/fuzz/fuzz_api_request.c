/* libFuzzer target: the OpenAI request parser. Byte 0 picks the endpoint (completions, chat,
 * tokenize, detokenize); the rest is the body. A parsed request must hold what the parser
 * promises (prompts for completions, messages for chat, consistent sampling arrays), and
 * every path must free what it allocated. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const enum api_kind kind = (enum api_kind)(data[0] % 4);
    struct api_request r;
    struct api_error err;
    if (api_request_parse(kind, (const char *)data + 1, size - 1, &r, &err) != 0) {
        assert(err.status >= 400 && err.status < 600 && err.message[0]);
        return 0;
    }
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
