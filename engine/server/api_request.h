/* api_request: OpenAI and vLLM request bodies parsed into C structs at the HTTP edge, so that
 * no JSON goes past it (except a chat request's messages, which the chat template reads).
 * Types and ranges are checked here, with OpenAI-shaped errors that name the parameter.
 *
 * What one request can cost, with the limits below at their defaults. B = --max-request-body
 * (16 MiB), V = --max-json-values (1e6), S = --max-num-seqs (256) bounds prompts x n, K =
 * --max-stop-bytes (16384), L = max_model_len, D = the most text one token step adds (the
 * detokenizer's max delta: ~1 KB for stories260K), X = 2D + 64 + the longest stop string
 * (<= K) and C = 4X (a stream's text buffer, text_cap):
 *   parsing, transient:    B (body) + ~80 V (cJSON tree) + B (its strings)       <= ~112 MB
 *   the parsed request:    B (prompt text) + 4 V (token ids) + K                 <= ~20 MB
 *   tokenizing, transient: 4 bytes per token of text prompts, before L is checked <= 4 B
 *   prompt tokens kept:    8 bytes per prompt token (HTTP and engine copies)     <= 8 S L
 *   per prompt (<= S):     5 K + 24 per stop string (the one shared stop set)
 *                          + 2X + C + 11 KB (step scratch, the reader's copies)  <= ~200 KB
 *   per sequence (<= S):   4 L (tokens) + L/4 (block table of 16-token blocks)
 *                          + 8D (detokenizer) + C (stream text) + 11 KB (stream ids
 *                          and logprobs) + 4 per stop string + the longest one   <= 4.25 L + ~110 KB
 *   engine side in all:    <= S (12.25 L + 310 KB) = ~3.1 KB x L + 80 MB; ~105 MB at L = 8192.
 * A non-streaming answer is built whole on top of that (a stream holds one event at a time),
 * for up to S x max_tokens tokens, with E = --max-logprob-entries (262144):
 *   its text:              ~6 bytes per byte of text (collected, copied into the cJSON tree,
 *                          printed): measured ~12 per token of ~2 bytes, ~40 at 7  <= ~6 D x S x L
 *   with logprobs:         choices x max_tokens x (1 + alternatives) <= E entries, checked before
 *                          anything runs (max_tokens left out: the context the prompt leaves);
 *                          the cJSON tree of each entry, its JSON and the collected sampler
 *                          logprobs: ~160 bytes (completions) to ~700 (chat) with 20 alternatives,
 *                          ~780 to ~1070 with none                        <= ~1.1 KB x E = ~280 MB
 * Structured output, with G = --max-grammar-bytes (256 KiB):
 *   the spec:              its text, G (and its cJSON tree while parsing, as above)
 *   compiling, transient:  on the HTTP thread, at most 2 at once engine-wide (the others wait):
 *                          the grammar builder (<= GRAMMAR_MAX_NODES nodes, ~24 MB) and the
 *                          compiled grammar (<= GRAM_MAX_COMPILED_BYTES, 256 MiB, refused past it)
 *   kept for reuse:        compiled grammars <= 64 and <= 256 MiB together (least recently used
 *                          leave first); the vocabulary's trie and its shared token-set cache
 *                          (<= GRAM_VOCAB_CACHE_MAX_BYTES, 512 MiB), once per engine
 *   per sequence (<= S):   one matcher, GRAM_MATCHER_NODES stack nodes: ~0.25 MB
 *   per step:              one mask of V/8 bytes per sampling thread (preallocated), and with a
 *                          GPU one per sequence slot, S x V/8 (4.8 MB at V = 152k, S = 256)
 * Tools (chat) and /v1/responses:
 *   the tools:             at most API_MAX_TOOLS (256), G as compact JSON all together (checked
 *                          before the grammar is built); their tree stays in the template's
 *                          variables while the request runs
 *   their grammar:         a structured-output spec as above (one call's JSON Schema, or the
 *                          XML form's, plus a frame of its texts: ~2 G), compiled and cached
 *   per sequence (<= S):   the reasoning and tool-call parsers (api_tools.h), each holding back
 *                          at most 64 KiB, and the answer's calls: <= 256 calls, whose names and
 *                          arguments are the output's own text (a stream keeps it until its
 *                          end too, to know each call's arguments), ~2 x the output
 *   /v1/responses:         its body becomes a chat body (~1 B more, freed before it runs)
 * Before these limits a 1 MB body (8 prompts, n = 8, 16 stop strings of 64 KB) cost ~600 MB:
 * each of its 64 samples copied every stop string with an 8-byte KMP entry per byte. */
#ifndef FOLIO_API_REQUEST_H
#define FOLIO_API_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/sampler.h"
#include "core/structured.h"

enum api_kind { API_COMPLETIONS, API_CHAT, API_TOKENIZE, API_DETOKENIZE };

/* tool_choice: "auto" (the default: calls are parsed out of the output), "none" (tools are
 * shown to the template, nothing is parsed), "required" (one call or more, enforced by a
 * grammar), or a named function (exactly that one). */
enum api_tool_choice { API_TOOLS_AUTO, API_TOOLS_NONE, API_TOOLS_REQUIRED, API_TOOLS_NAMED };
#define API_MAX_TOOLS 256
#define API_MAX_TOOL_NAME 64

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

/* Per-request limits, checked while parsing so that a body's cost is bounded before the
 * engine allocates for it. Each is a folio-engine flag; 0 in a field means its default. */
struct api_limits {
    size_t max_stop_bytes;     /* --max-stop-bytes: the stop strings' bytes, all together (16384) */
    int max_stop_token_ids;    /* --max-stop-token-ids (1024) */
    int max_logit_bias;        /* --max-logit-bias: entries (1024) */
    int max_num_seqs;          /* --max-num-seqs: prompts x n, what the engine runs at once (256) */
    long long max_json_values; /* --max-json-values: values in the body, counted before it is
                                * parsed (1000000); over it is a 413 */
    long long max_logprob_entries; /* --max-logprob-entries: the logprobs (each sampled token's and
                                    * its alternatives') a non-streaming answer could hold, all
                                    * choices together (262144); a stream is not limited */
    size_t max_grammar_bytes;  /* --max-grammar-bytes: a structured-output spec (a JSON Schema as
                                * compact JSON, a regex, a grammar, the choices together) (262144) */
};

struct api_limits api_default_limits(void);

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
    /* Structured output (response_format, structured_outputs, guided_*): kind NONE without;
     * its text points into structured_text (owned). structured_param names the field. */
    struct structured_spec structured;
    char *structured_text;
    char structured_param[32];
    /* Tools (chat): the template reads them from chat_ctx ("tools", borrowed here); these say
     * what the output may hold. */
    const cJSON *tools;             /* [num_tools] validated OpenAI function tools, or NULL */
    int num_tools;
    enum api_tool_choice tool_choice;
    char *tool_name;                /* API_TOOLS_NAMED: the function */
    int parallel_tool_calls;        /* 1 */
    size_t tools_bytes;             /* the tools as compact JSON: bounded by --max-grammar-bytes */
};

/* Parses a body of the given kind under the limits (NULL: api_default_limits()). 0, or
 * FOLIO_EINVAL with *err filled (status 400, or 413 for too many JSON values). On success
 * free the request with api_request_free; on failure nothing needs freeing. */
int api_request_parse(enum api_kind kind, const char *body, size_t len, const struct api_limits *limits,
                      struct api_request *out, struct api_error *err);
void api_request_free(struct api_request *r);

/* For a non-streaming request with logprobs, whose answer holds them all until it is sent:
 * FOLIO_EINVAL with a 400 (param "logprobs") when `tokens`, the most output tokens its choices
 * can produce all together, times 1 + the alternatives asked for is over
 * limits->max_logprob_entries (NULL or 0: the default); else 0. The parser calls it when
 * max_tokens is known; api_generate again once the prompts' lengths are (max_tokens left out
 * is the rest of the context). */
int api_check_logprob_entries(const struct api_request *r, long long tokens, const struct api_limits *limits,
                              struct api_error *err);

/* Fills err and returns FOLIO_EINVAL (status: HTTP code; param may be NULL). */
int api_error_set(struct api_error *err, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
