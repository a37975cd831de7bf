/* api_responses: OpenAI's Responses API (POST /v1/responses) over the chat path. A body is
 * translated into a chat request (instructions and input items into messages, flat function
 * tools into chat tools, text.format into response_format, max_output_tokens into
 * max_tokens), which api_request_parse then checks like any other; the answer is written back
 * as a response object with reasoning, message and function_call output items, or streamed as
 * the response.* events.
 *
 * folio-engine is stateless: previous_response_id is refused with a 400. foliod stores
 * responses and expands previous_response_id into the input before it forwards a body; it
 * says so with the headers X-Folio-Store (the response will be stored: "store" reads true)
 * and X-Folio-Previous-Response-Id (echoed in the response object).
 *
 * Memory: the translated chat body is built from the request's own tree (at most the body's
 * size again, and its cJSON tree while it is parsed, as api_request.h counts), then freed
 * before generation starts; a stream keeps one open item's state. */
#ifndef FOLIO_API_RESPONSES_H
#define FOLIO_API_RESPONSES_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "server/api_request.h"
#include "server/api_tools.h"

struct api_resp {
    char id[48];               /* "resp_" + hex */
    long long created_at;
    const char *model;         /* borrowed: the served name */
    cJSON *echo;               /* the request fields the response object repeats (instructions, tools,
                                * tool_choice, text, reasoning, metadata, temperature, top_p,
                                * max_output_tokens, parallel_tool_calls); owned */
    int store;                 /* reported: foliod stores it */
    char previous_id[72];      /* from foliod's header, or "" */
};

/* The response's output items, in the order a stream opened them. */
enum { API_ITEM_REASONING, API_ITEM_MESSAGE, API_ITEM_CALL };
struct api_resp_item {
    int kind;
    int call;                  /* API_ITEM_CALL: the call's index */
    size_t start, end;         /* MESSAGE: its text in out->content; REASONING: in out->reasoning */
    char id[48];
    int open;
};

/* One streamed response: the events written so far and the items they opened. */
struct api_resp_stream {
    int seq;
    /* each call, a message before each call and after the last, one reasoning block: the most
     * items an answer can open, so that none is ever dropped (~40 KB a stream) */
    struct api_resp_item items[2 * API_OUT_MAX_CALLS + 2];
    int num_items;
};

/* Writes one event (type, data: the event's JSON object, deleted here); -1 when the client is
 * gone. */
typedef int (*api_resp_emit_fn)(void *ud, const char *type, cJSON *data);

/* Parses a /v1/responses body into a chat request *r (free with api_request_free) and the
 * response's metadata *m (free with api_resp_free). store_header / prev_header: foliod's
 * X-Folio-Store and X-Folio-Previous-Response-Id headers, or NULL. 0, or FOLIO_EINVAL with err. */
int api_resp_parse(const char *body, size_t len, const struct api_limits *lim, const char *store_header,
                   const char *prev_header, struct api_request *r, struct api_resp *m, struct api_error *err);
void api_resp_free(struct api_resp *m);

/* Token counts for the usage object. */
struct api_resp_usage {
    long long input, cached, output, reasoning;
};

/* The response object: status "completed", "incomplete" (max_output_tokens) or "in_progress";
 * items NULL builds the output in the canonical order (reasoning, message, calls). */
cJSON *api_resp_object(const struct api_resp *m, const char *status, const struct api_out *out,
                       const struct api_resp_stream *items, const struct api_resp_usage *usage);

/* Streaming: created and in_progress; then each piece's events; then the items' done events
 * and completed (or incomplete). */
int api_resp_stream_start(struct api_resp_stream *st, const struct api_resp *m, api_resp_emit_fn emit, void *ud);
int api_resp_stream_piece(struct api_resp_stream *st, const struct api_out *out, api_resp_emit_fn emit, void *ud);
int api_resp_stream_end(struct api_resp_stream *st, const struct api_resp *m, const struct api_out *out,
                        const char *status, const struct api_resp_usage *usage, api_resp_emit_fn emit, void *ud);

#endif
