/* json_validate: whether one JSON value validates against a JSON Schema, decided on the value.
 *
 * The grammar compiler (json_schema.c) cannot express every keyword: `not`, `if`, `dependencies`
 * with schemas and the like constrain a value by what it is not. But where a schema's values
 * form a finite set (an enum or const beside such keywords, as in allOf [{enum}, {not ...}]),
 * the exact answer is that set filtered by validation, which this module decides.
 *
 * It implements draft 4 to 2020-12's assertions: type, enum, const, the numeric, string, array
 * and object keywords, anyOf/oneOf/allOf/not, if/then/else, dependencies (both forms),
 * dependentRequired, dependentSchemas, propertyNames, contains, and local $ref; the formats of
 * json_format_regex (others are annotations, as the spec's default). unevaluatedProperties/Items, $dynamicRef and $recursiveRef
 * are not decided: FOLIO_EUNSUP, and the caller falls back.
 *
 * The work is bounded: each call spends from *budget (one unit per schema visited, and for a
 * regex its length times the string's), and $ref chains and nesting stop at JSON_VALIDATE_MAX_DEPTH; running out is
 * FOLIO_EUNSUP too, so a hostile schema costs at most the budget. */
#ifndef FOLIO_JSON_VALIDATE_H
#define FOLIO_JSON_VALIDATE_H

#include <cjson/cJSON.h>

#define JSON_VALIDATE_MAX_DEPTH 128
#define JSON_VALIDATE_MAX_PATTERN_INPUT 1024 /* bytes of a string a regex is run on */

struct json_validate_doc {
    const cJSON *root;   /* the schema document, for $ref */
    const char *root_id; /* its $id/id (may be NULL): refs may spell the document's own URI */
    int ref_alone;       /* drafts 3-7: keywords beside $ref are ignored */
};

/* 1: instance validates against schema (a subschema of doc->root); 0: it does not;
 * FOLIO_EUNSUP (with a message) when it cannot be decided here or the budget ran out (then
 * *budget is 0);
 * FOLIO_EINVAL for a malformed schema. */
int json_validate(const struct json_validate_doc *doc, const cJSON *schema, const cJSON *instance,
                  long *budget);

/* The anchored regex of a string format we enforce (date-time, date, time, email, uuid, uri,
 * ipv4, hostname, ...), or NULL for a format that is only an annotation. */
const char *json_format_regex(const char *name);

/* The target of a local $ref in doc ("#", "#/$defs/a", the root's own $id plus a fragment), or
 * NULL with *err FOLIO_EUNSUP (remote or anchor reference) or FOLIO_EINVAL (dangling). Sets no
 * message: callers word it with their location. */
const cJSON *json_ref_target(const struct json_validate_doc *doc, const char *ref, int *err);

#endif
