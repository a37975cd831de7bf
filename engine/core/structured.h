/* structured: structured output for the engine. A request's spec (a JSON Schema, a regex, a
 * choice, a grammar: parsed from the body at the HTTP edge, as plain text) becomes a grammar
 * compiled for this engine's vocabulary (grammar/), kept in a cache keyed by the spec, and each
 * of the request's samples gets a matcher over it.
 *
 * The vocabulary (every token's bytes in a trie) is built on the first structured request,
 * once per engine. Compiling runs on the caller's thread (an HTTP worker), never the engine's;
 * a compiled grammar is shared, read-only, by every sample and request that uses the same spec,
 * and lives while a reference to it does. */
#ifndef FOLIO_STRUCTURED_H
#define FOLIO_STRUCTURED_H

#include <stddef.h>
#include <stdint.h>

struct tokenizer;
struct gram_compiled;

enum structured_kind {
    STRUCTURED_NONE,
    STRUCTURED_JSON,      /* text: a JSON Schema ("{}" and {"type":"object"} included) */
    STRUCTURED_REGEX,     /* text: an ECMAScript regex, matched whole */
    STRUCTURED_CHOICE,    /* text: num_choices strings, each NUL-terminated, back to back */
    STRUCTURED_GRAMMAR,   /* text: GBNF or the EBNF/Lark subset (grammar/gbnf.h) */
};

struct structured_spec {
    enum structured_kind kind;
    const char *text;     /* [len] bytes, borrowed */
    size_t len;
    int num_choices;      /* STRUCTURED_CHOICE */
    int strict;           /* JSON: additionalProperties false unless the schema says otherwise */
    int tight_ws;         /* JSON: one space or a line break and indent between tokens (tool calls) */
    /* The text around the spec's sentences, or NULL: a JSON object (borrowed, frame_len bytes)
     * that the server builds for tool calls and reasoning models (structured.c: frame_wrap):
     *   "calls": {"open","close","begin","end","sep": strings, "max": 0 (any) or N,
     *             "trigger": a string (tool_choice auto: free text until it), "start": true
     *             (auto where a call may only open the output)}: the spec is one call's JSON
     *             (or, with "xml", unused), repeated between those texts;
     *   "think": {"start","end": strings, "open": true (the prompt opened the block)}: an
     *            optional (or, open, a mandatory) reasoning block of free text before it all. */
    const char *frame;
    size_t frame_len;
};

/* The compiled grammars of one engine. max_entries and max_bytes (gram_compiled_bytes, all
 * together): how many distinct specs stay compiled when no request uses them (least recently
 * used leave first). At most 2 compiles run at once (the others wait), so a burst of new
 * schemas costs at most 2 x GRAM_MAX_COMPILED_BYTES of compile memory. NULL on allocation
 * failure. */
struct structured_cache *structured_cache_create(const struct tokenizer *tok, const int32_t *stop_ids,
                                                 int num_stop, int max_entries, size_t max_bytes);
void structured_cache_free(struct structured_cache *c);
/* Threads one compile uses: the machine's cores, at most 4; FOLIO_COMPILE_THREADS overrides. */
int structured_compile_threads(void);

/* The compiled grammar for the spec, from the cache or compiled now; *out holds a reference
 * (structured_release). *compile_s: seconds spent compiling (0 on a hit); *hit: found cached.
 * FOLIO_EINVAL (malformed) or FOLIO_EUNSUP (a feature we do not support) with a message that
 * names it. */
struct structured;
int structured_get(struct structured_cache *c, const struct structured_spec *spec, struct structured **out,
                   double *compile_s, int *hit);
void structured_retain(struct structured *g);
void structured_release(struct structured *g);   /* NULL ok */
const struct gram_compiled *structured_compiled(const struct structured *g);
/* The grammar a spec compiles to, frame included, before any vocabulary (tests and tools check
 * its sentences with grammar_matches). Free *out with grammar_free. Errors as structured_get;
 * call it on a thread with a few MiB of stack (the front ends recurse per nesting level). */
struct grammar;
int structured_spec_grammar(const struct structured_spec *spec, struct grammar **out);
/* Index of the kind for metrics_count_structured: json 0, regex 1, choice 2, grammar 3. */
int structured_metrics_kind(enum structured_kind k);

#endif
