/* api_tools: what a chat answer holds besides text: tool calls and reasoning. One api_out per
 * choice chains the model's reasoning parser (reasoning.h) into its tool-call parser
 * (tool_parser.h) and keeps what they found, whole (for a JSON answer and /v1/responses) and
 * as the delta of the latest piece (for a stream). api_tools_spec turns a request's tools and
 * tool_choice into the grammar that enforces them (core/structured.h's frame), and wraps any
 * structured output after a reasoning block.
 *
 * Memory: per choice, the parsers' hold-back (at most API_OUT_MAX_HOLD bytes each) and the
 * calls' names and arguments; the whole content and reasoning only when asked to keep them (a
 * JSON answer holds them anyway; /v1/responses repeats them in its done events); a stream's
 * delta buffers hold one piece. */
#ifndef FOLIO_API_TOOLS_H
#define FOLIO_API_TOOLS_H

#include <stddef.h>

#include "base/sbuf.h"
#include "server/api_request.h"

struct api;

#define API_OUT_MAX_HOLD ((size_t)64 << 10)
#define API_OUT_MAX_CALLS 256 /* calls one choice may make; later ones stay text */

struct api_call {
    char id[40];            /* "call_" + 24 hex, or 9 letters and digits (Mistral) */
    struct sbuf name, args; /* whole */
    size_t args_sent;       /* streamed: the bytes of args already in an earlier delta */
};

struct api_out {
    struct reasoning_parser *rp; /* NULL: no reasoning format */
    struct tool_parser *tp;      /* NULL: calls are not parsed */
    struct sbuf content, reasoning;          /* whole (only with keep) */
    int keep;                                /* keep the whole text: a JSON answer, or /v1/responses */
    struct sbuf d_content, d_reasoning;      /* this piece's */
    struct api_call *calls;
    int num_calls, cap_calls;
    int d_first_call;            /* calls from this index were touched in this piece (num_calls: none) */
    int d_new_call;              /* calls from this index began in this piece */
    int reasoning_tokens;
    int short_ids;               /* call ids of 9 letters and digits: Mistral's templates refuse others */
    int failed;                  /* out of memory */
};

/* The choice's parsers for this request: the model's formats (a->tool_format and
 * a->reasoning_format), calls parsed unless tool_choice is none or there are no tools.
 * think_open: api_chat_prompt's (1: the prompt opened a reasoning block, -1: it closed one, so
 * the grammars leave reasoning out). 0 or FOLIO_ENOMEM. */
int api_out_init(struct api_out *o, const struct api *a, const struct api_request *r, int think_open, int keep);
void api_out_free(struct api_out *o);
/* The next piece of output text, of `tokens` tokens; final on the last. The delta buffers are
 * reset first. -1 when out of memory. */
int api_out_feed(struct api_out *o, const char *s, size_t n, int tokens, int final);

/* The structured-output spec the request runs under, into *spec (its text and frame are
 * malloc'd into *owned_text and *owned_frame; free them after the grammar is compiled): the
 * request's own (r->structured) wrapped after a reasoning block, or its tools' grammar for
 * tool_choice required or a named function, or auto (free text, then calls). *spec kind NONE
 * when nothing constrains the output. 0, or FOLIO_EINVAL with err (param "tools"). */
int api_tools_spec(const struct api *a, const struct api_request *r, int think_open, struct structured_spec *spec,
                   char **owned_text, char **owned_frame, struct api_error *err);

/* A random id: prefix + `bytes` (<= 16) random bytes in hex. */
void api_random_id(char *out, size_t cap, const char *prefix, int bytes);

#endif
