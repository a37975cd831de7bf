/* api_request: OpenAI and vLLM request bodies parsed into C structs at the HTTP edge, so that
 * no JSON goes past it (except a chat request's messages, which the chat template reads).
 * Types and ranges are checked here, with OpenAI-shaped errors that name the parameter. */
#ifndef FOLIO_API_REQUEST_H
#define FOLIO_API_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "sampler.h"

enum api_kind { API_COMPLETIONS, API_CHAT, API_TOKENIZE, API_DETOKENIZE };

struct api_error {
    int status;         /* HTTP status: 400, 404, ... */
    char param[64];     /* the offending parameter, or "" */
    char message[1024];
};

/* One completions prompt: text, or token ids. */
struct api_prompt {
    char *text;         /* NULL for ids */
    size_t text_len;
    int32_t *ids;       /* [num_ids] */
    int num_ids;
};

/* Which sampling fields the body set, so that generation_config.json fills the others. */
enum {
    API_SET_TEMPERATURE = 1, API_SET_TOP_P = 2, API_SET_TOP_K = 4, API_SET_REPETITION = 8,
    API_SET_MAX_TOKENS = 16, API_SET_MIN_P = 32,
};

#define API_MAX_PROMPTS 256
#define API_MAX_STOPS 64

struct api_request {
    enum api_kind kind;
    char *model;                    /* NULL: whatever this server serves */
    struct api_prompt *prompts;     /* [num_prompts] completions; tokenize with a prompt */
    int num_prompts;
    /* Chat (and tokenize with messages): the chat template's variables: messages (text parts
     * joined into strings), tools, documents and chat_template_kwargs, merged. The caller
     * adds bos_token, eos_token and add_generation_prompt. */
    cJSON *chat_ctx;
    int add_generation_prompt;      /* chat: 1 */
    int continue_final_message;     /* 0 */
    int add_special_tokens;         /* completions 1, chat 0 */
    int echo;                       /* completions */
    int stream, include_usage;
    int logprobs;                   /* -1: none; else how many alternatives (0..20) */
    int return_token_strs;          /* tokenize */
    int priority;
    int32_t *tokens;                /* detokenize: [num_tokens] */
    int num_tokens;
    unsigned set;                   /* API_SET_* */
    struct sampling_params sp;      /* its pointers lead into the owned arrays below */
    char **stops;                   /* [sp.num_stop] */
    int32_t *stop_ids;
    struct sampler_logit_bias *bias;
};

/* Parses a body of the given kind. 0, or FOLIO_EINVAL with *err filled (status 400). On
 * success free the request with api_request_free; on failure nothing needs freeing. */
int api_request_parse(enum api_kind kind, const char *body, size_t len, struct api_request *out,
                      struct api_error *err);
void api_request_free(struct api_request *r);

/* Fills err and returns FOLIO_EINVAL (status: HTTP code; param may be NULL). */
int api_error_set(struct api_error *err, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
