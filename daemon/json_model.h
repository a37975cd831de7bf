/* json_model: finds the top-level "model" member of a JSON object without building a tree,
 * so that foliod's /v1 proxy can route (and rewrite an alias in) a 16 MiB request body in
 * one pass and no allocation; json_model_members finds other top-level members the same way
 * (/v1/responses' "input" and "previous_response_id", responses.c). The scanner is strict: the
 * whole text must be one JSON object (RFC 8259; whitespace around it allowed), strings honour
 * escapes, nesting is bounded. */
#ifndef FOLIO_JSON_MODEL_H
#define FOLIO_JSON_MODEL_H

#include <stddef.h>

#define JSON_MODEL_MAX_DEPTH 64 /* FOLIO_JSON_MAX_DEPTH: the scanner recurses on 100 KiB stacks */

enum json_model_kind {
    JSON_MODEL_ABSENT = 0, /* no "model" member; *start = the offset just after the '{' */
    JSON_MODEL_STRING,     /* [start, end) is the string literal, quotes included */
    JSON_MODEL_NULL,       /* [start, end) is `null` */
    JSON_MODEL_OTHER,      /* [start, end) is some other value (a number, an object...) */
};

/* Scans text[0..len). Returns a json_model_kind (>= 0), or FOLIO_EINVAL with a message
 * (folio_last_error) when the text is not one well-formed JSON object, nests deeper than
 * JSON_MODEL_MAX_DEPTH, or has "model" twice. Nothing is allocated. */
int json_model_find(const char *text, size_t len, size_t *start, size_t *end);

/* A top-level member to look for: name in, the rest out (start and end as for
 * json_model_find; for JSON_MODEL_OTHER text[start] tells the value's type). */
struct json_member {
    const char *name; /* at most 32 bytes */
    int kind;         /* enum json_model_kind */
    size_t start, end;
};

/* json_model_find for each of m[0..n) in one scan: 0, or FOLIO_EINVAL with a message (also
 * when one of them is given twice). */
int json_model_members(const char *text, size_t len, struct json_member *m, int n);

/* Decodes the string literal text[start..end) (quotes included, as json_model_find gives
 * it) into out (NUL-terminated, UTF-8). FOLIO_EINVAL if it does not fit in cap or holds a
 * NUL (\u0000). */
int json_model_decode(const char *text, size_t start, size_t end, char *out, size_t cap);

/* A copy of text with [start, end) replaced by the JSON string literal of name (or, for
 * JSON_MODEL_ABSENT, with "model":"name" inserted at start, a comma added when the object
 * was not empty). The caller frees *out; FOLIO_ENOMEM. */
int json_model_splice(const char *text, size_t len, int kind, size_t start, size_t end, const char *name, char **out,
                      size_t *out_len);

#endif
