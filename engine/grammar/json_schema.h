/* json_schema: JSON Schema (draft 2020-12 and the earlier drafts clients send) to a grammar
 * whose sentences are exactly the JSON texts that validate, for the keywords we support.
 *
 * Supported: type (with unions), properties, required, additionalProperties (bool or schema),
 * items, prefixItems (and draft-7 array items), enum, const, anyOf, oneOf (as anyOf), allOf
 * where it can be merged, $ref to local pointers and $defs/definitions (recursion included),
 * string minLength/maxLength/pattern (ECMA regex subset, gram_regex)/format (date-time, date,
 * time, email, uuid, uri, ipv4, ...), minItems/maxItems, integer and number minimum/maximum
 * (exclusive too, as digit-level ranges where feasible), patternProperties (see json_schema.c
 * for the shapes), property dependencies (dependencies with name lists, dependentRequired: up
 * to 3 triggers), and `not` where its negation is a schema (not required, not type, not
 * anyOf/allOf/not/$ref, not enum beside type string). A schema whose values come from a finite
 * enum or const (at its top or in an allOf member) may use any keyword json_validate decides:
 * the grammar is the values that validate. Annotations (title, description, examples, default,
 * $comment, ...) are ignored, as validators do.
 *
 * Output form: properties in the schema's order, required ones always present, optional ones
 * each optional; between tokens a bounded run of whitespace (JSON_SCHEMA_MAX_WS bytes), so a
 * model cannot pad forever.
 *
 * A keyword we do not support, or a combination we cannot express, is an error naming the
 * keyword and its JSON pointer ("unsupported JSON Schema keyword 'not' at
 * /properties/tags/not"), never silently ignored. */
#ifndef FOLIO_JSON_SCHEMA_H
#define FOLIO_JSON_SCHEMA_H

#include <stddef.h>

#include "grammar/grammar.h"

#define JSON_SCHEMA_MAX_WS 40      /* whitespace bytes between two JSON tokens */
#define JSON_SCHEMA_WS_TIGHT 2
#define JSON_SCHEMA_TIGHT_INDENT 20
#define JSON_SCHEMA_MAX_BYTES (1 << 20)
#define JSON_SCHEMA_MAX_DEPTH 64   /* nesting of the schema document itself */

struct json_schema_params {
    /* OpenAI strict mode: additionalProperties defaults to false (the spec's default is true). */
    int strict;
    /* Between tokens: a bounded run of whitespace (1), none (0, compact JSON), or
     * JSON_SCHEMA_WS_TIGHT: one space, or a line break and an indent of up to
     * JSON_SCHEMA_TIGHT_INDENT spaces or tabs (llama.cpp's rule; tool calls use it, so that a
     * weak model cannot spend its tokens on padding). */
    int whitespace;
};
struct json_schema_params json_schema_default_params(void); /* strict 0, whitespace 1 */

/* Compiles the schema text (a JSON document) into *out. FOLIO_EINVAL with a message for
 * malformed JSON or an invalid schema, FOLIO_EUNSUP with the keyword and its pointer for an
 * unsupported feature. `{}` and `true` accept any JSON value; `{"type":"object"}` is
 * response_format json_object. */
int json_schema_compile(const char *schema, size_t len, const struct json_schema_params *p,
                        struct grammar **out);

/* Relaxations: features a schema used that the grammar accepts without enforcing (see
 * json_schema.c's opening comment). */
enum {
    JSON_SCHEMA_RELAX_ONEOF = 1 << 0,               /* oneOf compiled as anyOf */
    JSON_SCHEMA_RELAX_UNIQUE_ITEMS = 1 << 1,        /* uniqueItems not enforced */
    JSON_SCHEMA_RELAX_NUMBER_BOUNDS = 1 << 2,       /* number (non-integer) bounds other than >= 0, > 0 */
    JSON_SCHEMA_RELAX_LENGTH_WITH_PATTERN = 1 << 3, /* min/maxLength beside a complex pattern/format */
    JSON_SCHEMA_RELAX_UNKNOWN_FORMAT = 1 << 4,      /* a format we do not know: an annotation */
    JSON_SCHEMA_RELAX_FORMAT_WITH_PATTERN = 1 << 5, /* format and pattern together: pattern only */
    JSON_SCHEMA_RELAX_LONG_MAXLENGTH = 1 << 6,      /* maxLength above GRAMMAR_MAX_REPEAT */
    JSON_SCHEMA_RELAX_PATTERN_PROPERTIES = 1 << 7,  /* a key under two patterns: one schema */
    JSON_SCHEMA_RELAX_COUNT = 8
};
/* json_schema_compile, also reporting in *relaxed (may be NULL) the JSON_SCHEMA_RELAX_* bits
 * of the relaxations the schema used. */
int json_schema_compile_ex(const char *schema, size_t len, const struct json_schema_params *p,
                           struct grammar **out, unsigned *relaxed);
/* A short name for one JSON_SCHEMA_RELAX_* bit (static string). */
const char *json_schema_relaxation_name(unsigned bit);

/* JSON_SCHEMA_WS_TIGHT's whitespace as an expression of b (for text around JSON, such as a
 * tool call's tags). */
grammar_expr json_schema_tight_ws(struct grammar_builder *b);

/* A number as JSON.stringify writes it (and as the grammar spells enum and const numbers): the
 * shortest digits that round-trip, positional from 1e-7 to 1e21, an exponent outside. Returns
 * the length; buf needs 40 bytes. */
int json_schema_format_number(double d, char *buf, size_t n);

#endif
