/* libFuzzer target for the JSON Schema front end (grammar/json_schema.c), which reads schemas
 * straight from request bodies: any input must compile or fail with a message, within the
 * limits, without a crash, a leak or a sanitizer report; and a compiled grammar must answer
 * the reference recognizer on an instance.
 *
 * Input: byte 0 = strict (bit 0) | whitespace (bit 1); then the schema text; optionally a NUL
 * and an instance to check with grammar_matches (a few hundred bytes at most: the reference
 * recognizer is slow by design). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    struct json_schema_params p = json_schema_default_params();
    p.strict = data[0] & 1;
    p.whitespace = (data[0] >> 1) & 1;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    const uint8_t *nul = memchr(text, 0, n);
    const size_t schema_n = nul ? (size_t)(nul - (const uint8_t *)text) : n;
    struct grammar *g = NULL;
    if (json_schema_compile(text, schema_n, &p, &g) == 0) {
        if (nul) {
            const uint8_t *inst = nul + 1;
            size_t in = n - schema_n - 1;
            if (in > 256) in = 256;
            (void)grammar_matches(g, inst, in);
        }
        grammar_free(g);
    } else if (!folio_last_error()[0]) {
        abort(); /* a refusal must say why */
    }
    return 0;
}
