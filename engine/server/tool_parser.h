/* tool_parser: turns a model's raw output into content and tool calls, incrementally, for the
 * families whose call syntax vLLM's --tool-call-parser names: hermes (Qwen2.5/Qwen3),
 * llama3_json (Llama 3.1-3.3), mistral (both the v0.3 JSON array and the [ARGS] form) and
 * qwen3_coder (Qwen3-Coder's XML).
 *
 * The HTTP layer streams what comes out: text that cannot start a call leaves at once, a call's
 * name as soon as its header is read, its arguments piece by piece. Only text that may still
 * start a call is held back, and never more than max_hold bytes. Any cutting of the output into
 * pieces gives the same events once adjacent CONTENT and adjacent CALL_ARGS of one call are
 * joined (tests/unit/test_tool_parser.c and tests/fuzz/fuzz_tool_parser.c hold it to that).
 * Output that looks like a call but is not one is content: the parser never fails on what the
 * model wrote, only on allocation. Whitespace between and after calls, and their closing tags,
 * are not content; text before, between or after calls is. */
#ifndef FOLIO_TOOL_PARSER_H
#define FOLIO_TOOL_PARSER_H

#include <stddef.h>
#include <cjson/cJSON.h>

enum tool_format {
    TOOL_FORMAT_NONE = 0,
    TOOL_FORMAT_HERMES,
    TOOL_FORMAT_LLAMA3_JSON,
    TOOL_FORMAT_MISTRAL,
    TOOL_FORMAT_QWEN3_CODER,
};

/* vLLM's --tool-call-parser names: "hermes", "llama3_json", "mistral", "qwen3_coder" (and
 * "none"). -1 for an unknown name. */
int tool_format_from_name(const char *name);
/* "hermes", ...; "none" for TOOL_FORMAT_NONE or an unknown value. Static storage. */
const char *tool_format_name(enum tool_format f);
/* The format a chat template's source implies, or TOOL_FORMAT_NONE, from the markers its
 * assistant turns write: qwen3_coder when it has "<function=" and "<parameter="; hermes when
 * it has "<tool_call>"; mistral when "[TOOL_CALLS]"; llama3_json when "<|python_tag|>" or
 * "<|start_header_id|>" together with "tools" or "parameters". NULL gives NONE. */
enum tool_format tool_format_detect(const char *template_src);

enum tool_event_kind { TOOL_EV_CONTENT, TOOL_EV_CALL_BEGIN, TOOL_EV_CALL_ARGS };
struct tool_event {
    enum tool_event_kind kind;
    int index;        /* CALL_*: the call's index in this output, 0, 1, ...; CONTENT: -1 */
    const char *text; /* CONTENT: text; CALL_BEGIN: the function name; CALL_ARGS: arguments
                       * text. Not NUL-terminated; valid only during the callback. */
    size_t len;       /* >= 1 */
};
/* Return nonzero from the callback to stop (the feed returns that value). */
typedef int (*tool_event_fn)(void *ud, const struct tool_event *ev);

struct tool_parser;

/* tools: the request's OpenAI `tools` array (NULL, or anything but an array: no list). The
 * parser keeps its own copy. qwen3_coder types its parameter values from each function's
 * JSON schema (tools[].function.parameters.properties[name].type); every format treats a call
 * to a name that is not among the tools as plain content when a list is given. max_hold: the
 * most bytes held back at once (raised to 64 if smaller); past it held text is released as
 * content, a candidate call is given up as content, and a qwen3_coder value still waiting for
 * its type is streamed as a string. NULL on allocation failure. Free with tool_parser_free. */
struct tool_parser *tool_parser_create(enum tool_format f, const cJSON *tools, size_t max_hold);
void tool_parser_free(struct tool_parser *p); /* NULL ok */

/* Feeds the next piece of output (any chunking; UTF-8 may be split anywhere, and is passed
 * through byte for byte). Events come out through fn in order. final=1 on the last piece (n
 * may be 0): what is still held is flushed; text that only might have started a call becomes
 * content, and a call cut off inside its arguments stays a call with the arguments streamed so
 * far. Returns 0, the callback's nonzero value, or FOLIO_ENOMEM; after a nonzero return the
 * parser is spent and every later feed returns the same value. */
int tool_parser_feed(struct tool_parser *p, const char *s, size_t n, int final, tool_event_fn fn, void *ud);
/* The calls begun so far (CALL_BEGIN events). */
int tool_parser_num_calls(const struct tool_parser *p);

#endif
