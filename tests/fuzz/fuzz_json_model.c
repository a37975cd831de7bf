/* libFuzzer target for foliod's /v1 "model" scanner (daemon/json_model.c): arbitrary bytes as
 * a request body. When the scan accepts, the span must lie inside the input and be the kind
 * it says; the alias rewrite (json_model_splice) must give a body that scans again, with the
 * new name as its one top-level "model"; and where cJSON also reads the body as an object,
 * its "model" member must be of the same kind. */
#include <assert.h>
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    size_t start = 0, end = 0;
    int kind = json_model_find(text, size, &start, &end);
    if (kind < 0) return 0;
    assert(kind <= JSON_MODEL_OTHER);
    assert(start <= end && end <= size);
    char name[256];
    if (kind == JSON_MODEL_STRING) {
        assert(end - start >= 2 && text[start] == '"' && text[end - 1] == '"');
        json_model_decode(text, start, end, name, sizeof name);
    } else if (kind == JSON_MODEL_NULL) {
        assert(end - start == 4 && !memcmp(text + start, "null", 4));
    } else if (kind == JSON_MODEL_ABSENT) {
        assert(start == end && start > 0 && text[start - 1] == '{');
    }
    /* cJSON agrees on the member's kind where it parses the body (it is laxer elsewhere). */
    cJSON *j = cJSON_ParseWithLength(text, size);
    if (j && cJSON_IsObject(j) && !memchr(text, '\0', size)) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "model");
        if (kind == JSON_MODEL_ABSENT) assert(!m);
        if (kind == JSON_MODEL_STRING) assert(cJSON_IsString(m));
        if (kind == JSON_MODEL_NULL) assert(cJSON_IsNull(m));
    }
    cJSON_Delete(j);
    if (kind == JSON_MODEL_OTHER) return 0;
    static const char *const names[] = {"stories260K", "org/name:rev", "a\"b\\c\n"};
    const char *nm = names[size % 3];
    char *out = NULL;
    size_t out_len = 0;
    if (json_model_splice(text, size, kind, start, end, nm, &out, &out_len)) return 0;
    size_t s2 = 0, e2 = 0;
    int k2 = json_model_find(out, out_len, &s2, &e2);
    assert(k2 == JSON_MODEL_STRING);
    char back[256];
    assert(json_model_decode(out, s2, e2, back, sizeof back) == 0 && !strcmp(back, nm));
    free(out);
    return 0;
}
