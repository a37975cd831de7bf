/* libFuzzer target for the chat-template interpreter: the input is template source, optionally
 * followed by a NUL byte and a JSON context; without a valid JSON object, a fixed context with
 * a system and a user message (and the usual variables) is used. Parse and render must never
 * crash, leak or hang: the render limits (steps, nesting, output size) turn every runaway
 * template into an error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template/chat_template.h"

static const char *FIXED_CONTEXT =
    "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
    "{\"role\":\"user\",\"content\":\"Hi \\u00e9 \\ud83d\\ude00 <think>x</think>\"},"
    "{\"role\":\"assistant\",\"content\":\"ok\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]}],"
    "\"add_generation_prompt\":true,\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"enable_thinking\":false,"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}],"
    "\"xs\":[3,1,2],\"d\":{\"b\":1,\"a\":2.5,\"1\":null}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t tlen = nul ? (size_t)(nul - data) : size;
    cJSON *ctx = NULL;
    if (nul) {
        size_t clen = size - tlen - 1;
        ctx = cJSON_ParseWithLength((const char *)nul + 1, clen);
        if (ctx && !cJSON_IsObject(ctx)) {
            cJSON_Delete(ctx);
            ctx = NULL;
        }
    }
    if (!ctx) ctx = cJSON_Parse(FIXED_CONTEXT);
    struct chat_template *t = NULL;
    if (chat_template_create((const char *)data, tlen, &t) == 0) {
        char *out = NULL;
        size_t len = 0;
        if (chat_template_render(t, ctx, &out, &len) == 0) {
            if (strlen(out) > len) abort(); /* the length covers the whole NUL-terminated text */
            free(out);
        }
        chat_template_free(t);
    }
    cJSON_Delete(ctx);
    return 0;
}
