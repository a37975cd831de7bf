/* json_validate: the value-level JSON Schema validator that filters finite domains (enum/const
 * beside keywords the grammar cannot express). Hand-written cases per keyword, then every
 * instance of the MaskBench corpus (JSONSchemaBench's labels, made by a reference validator):
 * wherever the validator decides, it must agree with the label. */
#include "test.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdlib.h>

#include "base/util.h"
#include "grammar/json_schema.h"
#include "grammar/json_validate.h"

/* 1/0/negative for instance text against schema text */
static int validate(const char *schema, const char *instance) {
    cJSON *s = cJSON_Parse(schema), *x = cJSON_Parse(instance);
    int rc = FOLIO_EINVAL;
    if (s && x) {
        struct json_validate_doc doc = {.root = s};
        long budget = 100000;
        rc = json_validate(&doc, s, x, &budget);
    }
    cJSON_Delete(s);
    cJSON_Delete(x);
    return rc;
}

TEST(json_validate_keywords) {
    CHECK_EQ_INT(validate("{\"type\":\"integer\"}", "3"), 1);
    CHECK_EQ_INT(validate("{\"type\":\"integer\"}", "3.5"), 0);
    CHECK_EQ_INT(validate("{\"type\":[\"string\",\"null\"]}", "null"), 1);
    CHECK_EQ_INT(validate("{\"minimum\":2,\"exclusiveMaximum\":5}", "5"), 0);
    CHECK_EQ_INT(validate("{\"minimum\":2,\"exclusiveMinimum\":true}", "2"), 0); /* draft 4 */
    CHECK_EQ_INT(validate("{\"multipleOf\":0.5}", "2.5"), 1);
    CHECK_EQ_INT(validate("{\"multipleOf\":3}", "7"), 0);
    CHECK_EQ_INT(validate("{\"maxLength\":2}", "\"\xc3\xa9\xc3\xa9\""), 1); /* code points, not bytes */
    CHECK_EQ_INT(validate("{\"pattern\":\"^a+$\"}", "\"aab\""), 0);
    CHECK_EQ_INT(validate("{\"pattern\":\"b\"}", "\"aab\""), 1); /* a search, not a full match */
    CHECK_EQ_INT(validate("{\"prefixItems\":[{\"type\":\"string\"}],\"items\":{\"type\":\"integer\"}}", "[\"a\",1,2]"), 1);
    CHECK_EQ_INT(validate("{\"items\":[{\"type\":\"string\"}],\"additionalItems\":false}", "[\"a\",1]"), 0);
    CHECK_EQ_INT(validate("{\"uniqueItems\":true}", "[1,{\"a\":1,\"b\":2},{\"b\":2,\"a\":1}]"), 0);
    CHECK_EQ_INT(validate("{\"contains\":{\"const\":2},\"maxContains\":1}", "[2,2]"), 0);
    CHECK_EQ_INT(validate("{\"required\":[\"a\"],\"properties\":{\"a\":{\"type\":\"string\"}}}", "{\"a\":1}"), 0);
    CHECK_EQ_INT(validate("{\"patternProperties\":{\"^x-\":{\"type\":\"string\"}},\"additionalProperties\":false}", "{\"x-a\":\"s\"}"), 1);
    CHECK_EQ_INT(validate("{\"patternProperties\":{\"^x-\":{\"type\":\"string\"}},\"additionalProperties\":false}", "{\"y\":\"s\"}"), 0);
    CHECK_EQ_INT(validate("{\"propertyNames\":{\"maxLength\":1}}", "{\"ab\":1}"), 0);
    CHECK_EQ_INT(validate("{\"dependencies\":{\"a\":[\"b\"]}}", "{\"a\":1}"), 0);
    CHECK_EQ_INT(validate("{\"dependentSchemas\":{\"a\":{\"required\":[\"c\"]}}}", "{\"a\":1,\"c\":2}"), 1);
    CHECK_EQ_INT(validate("{\"not\":{\"type\":\"string\"}}", "1"), 1);
    CHECK_EQ_INT(validate("{\"oneOf\":[{\"type\":\"integer\"},{\"minimum\":0}]}", "1"), 0);
    CHECK_EQ_INT(validate("{\"if\":{\"const\":1},\"then\":{\"maximum\":0}}", "1"), 0);
    CHECK_EQ_INT(validate("{\"if\":{\"const\":1},\"then\":{\"maximum\":0}}", "2"), 1);
    CHECK_EQ_INT(validate("{\"$defs\":{\"p\":{\"minimum\":0}},\"$ref\":\"#/$defs/p\",\"maximum\":3}", "5"), 0);
    CHECK_EQ_INT(validate("{\"enum\":[{\"a\":1,\"b\":[1,2]}]}", "{\"b\":[1,2],\"a\":1}"), 1); /* key order is not equality */
    CHECK_EQ_INT(validate("false", "1"), 0);
    /* undecided, never guessed */
    CHECK_EQ_INT(validate("{\"unevaluatedProperties\":false}", "{}"), FOLIO_EUNSUP);
    CHECK_EQ_INT(validate("{\"$ref\":\"other.json\"}", "{}"), FOLIO_EUNSUP);
    /* a self-reference with nothing consumed stops at the depth bound */
    CHECK_EQ_INT(validate("{\"$ref\":\"#\"}", "{}"), FOLIO_EUNSUP);
}

/* The grammar of a schema with a finite domain is its values that validate: a `not` (or an if,
 * or a dependency) beside an enum compiles, and exactly the right values are accepted. */
static int accepts(const char *schema, const char *text) {
    struct grammar *g = NULL;
    int rc = json_schema_compile(schema, strlen(schema), NULL, &g);
    if (rc) return rc;
    rc = grammar_matches(g, (const uint8_t *)text, strlen(text));
    grammar_free(g);
    return rc;
}

TEST(json_schema_finite_domain_filtered) {
    const char *s = "{\"allOf\":[{\"enum\":[\"a\",\"b\",\"c\"]},{\"not\":{\"enum\":[\"b\"]}}]}";
    CHECK_EQ_INT(accepts(s, "\"a\""), 1);
    CHECK_EQ_INT(accepts(s, "\"b\""), 0);
    CHECK_EQ_INT(accepts(s, "\"c\""), 1);
    const char *o = "{\"allOf\":[{\"enum\":[{\"foo\":1},{\"foo\":1,\"bar\":2}]},{\"not\":{\"required\":[\"bar\"]}}]}";
    CHECK_EQ_INT(accepts(o, "{\"foo\":1}"), 1);
    CHECK_EQ_INT(accepts(o, "{\"foo\":1,\"bar\":2}"), 0);
    /* an enum beside minLength: the short value is out (it used to pass) */
    const char *l = "{\"type\":\"string\",\"enum\":[\"ab\",\"abcd\"],\"minLength\":3}";
    CHECK_EQ_INT(accepts(l, "\"ab\""), 0);
    CHECK_EQ_INT(accepts(l, "\"abcd\""), 1);
    /* a multi-key object value (this once overflowed the literal's buffer) */
    const char *m = "{\"const\":{\"a\":1,\"b\":2,\"c\":3},\"not\":{\"maxProperties\":1}}";
    CHECK_EQ_INT(accepts(m, "{\"a\":1,\"b\":2,\"c\":3}"), 1);
    /* draft 7: an enum beside $ref does not apply, so it is not the domain either */
    const char *d7 = "{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"definitions\":{\"i\":{\"type\":\"integer\"}},"
                     "\"$ref\":\"#/definitions/i\",\"enum\":[1],\"minimum\":5}";
    CHECK_EQ_INT(accepts(d7, "2"), 1);
    /* nothing valid: a grammar with no sentence, not an error */
    CHECK_EQ_INT(accepts("{\"allOf\":[{\"const\":1},{\"not\":{\"const\":1}}]}", "1"), 0);
    /* an undecidable `not` still refuses, naming the keyword */
    CHECK_EQ_INT(accepts("{\"type\":\"string\",\"not\":{\"pattern\":\"a\"}}", "\"b\""), FOLIO_EUNSUP);
    CHECK(strstr(folio_last_error(), "'not'") != NULL);
}

/* As an attacker would: many enum values against a long pattern spend the compile's validation
 * budget and are refused, in bounded time, not checked for seconds. */
TEST(json_schema_finite_domain_budget) {
    size_t cap = 1 << 20, n = 0;
    char *s = malloc(cap);
    n += (size_t)snprintf(s + n, cap - n, "{\"type\":\"string\",\"pattern\":\"");
    for (int i = 0; i < 2000; i++) n += (size_t)snprintf(s + n, cap - n, "(a|b)?");
    n += (size_t)snprintf(s + n, cap - n, "z\",\"enum\":[");
    for (int i = 0; i < 5000; i++) n += (size_t)snprintf(s + n, cap - n, "%s\"%0200d\"", i ? "," : "", i);
    n += (size_t)snprintf(s + n, cap - n, "]}");
    struct grammar *g = NULL;
    double t0 = folio_now();
    int rc = json_schema_compile(s, n, NULL, &g);
    double dt = folio_now() - t0;
    CHECK_EQ_INT(rc, FOLIO_EUNSUP);
    CHECK(strstr(folio_last_error(), "too costly") != NULL);
    CHECK(dt < 10.0); /* a bound, not a timing: unbounded, this is many minutes */
    grammar_free(g);
    free(s);
}

/* The other rewrites as an attacker would size them: an enum checked against itself (quadratic
 * unbudgeted), and a `not` through a $ref to a wide anyOf of $refs (multiplied out unbudgeted)
 * are refused at once. */
TEST(json_schema_rewrite_budgets) {
    size_t cap = 1 << 20, n = 0;
    char *s = malloc(cap);
    n += (size_t)snprintf(s + n, cap - n, "{\"not\":{\"const\":-1},\"enum\":[");
    for (int i = 0; i < 20000; i++) n += (size_t)snprintf(s + n, cap - n, "%s%d", i ? "," : "", i);
    n += (size_t)snprintf(s + n, cap - n, "]}");
    struct grammar *g = NULL;
    CHECK_EQ_INT(json_schema_compile(s, n, NULL, &g), FOLIO_EUNSUP);
    CHECK(strstr(folio_last_error(), "too costly") != NULL);
    n = 0;
    n += (size_t)snprintf(s + n, cap - n, "{\"$defs\":{\"a\":{\"anyOf\":[");
    for (int i = 0; i < 500; i++) n += (size_t)snprintf(s + n, cap - n, "%s{\"$ref\":\"#/$defs/b\"}", i ? "," : "");
    n += (size_t)snprintf(s + n, cap - n, "]},\"b\":{\"anyOf\":[");
    for (int i = 0; i < 500; i++) n += (size_t)snprintf(s + n, cap - n, "%s{\"required\":[\"k%d\"]}", i ? "," : "", i);
    n += (size_t)snprintf(s + n, cap - n, "]}},\"type\":\"object\",\"not\":{\"$ref\":\"#/$defs/a\"}}");
    CHECK_EQ_INT(json_schema_compile(s, n, NULL, &g), FOLIO_EUNSUP);
    CHECK(strstr(folio_last_error(), "too large") != NULL);
    CHECK(g == NULL);
    free(s);
}

/* Every labelled instance of the corpus: where the validator decides, it agrees, but for the
 * differences it has by design (each listed with why). */
static const struct {
    const char *file, *why;
} known[] = {
    /* draft 4's integer excludes 12345.0; cJSON keeps the value, not how it was written */
    {"Github_trivial---o14485.json", "draft 4 integer lexeme"},
    /* format "regex": a format we do not know is an annotation, as in the grammar */
    {"Github_easy---o66309.json", "unknown format"},
};

static int known_difference(const char *file) {
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(file, known[i].file) == 0) return 1;
    return 0;
}

TEST(json_validate_maskbench_labels) {
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/../jsonschema", test_models_dir());
    DIR *d = opendir(dir);
    if (!d) {
        test_fail(__FILE__, __LINE__, "no MaskBench corpus at %s", dir);
        return;
    }
    int instances = 0, decided = 0, agree = 0, excused = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json") != 0) continue;
        char path[8192], *text = NULL;
        size_t n = 0;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (folio_read_file(path, &text, &n)) continue;
        cJSON *doc = cJSON_ParseWithLength(text, n);
        free(text);
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(doc, "schema");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(schema, "$id");
        if (!cJSON_IsString(id)) id = cJSON_GetObjectItemCaseSensitive(schema, "id");
        const cJSON *sv = cJSON_GetObjectItemCaseSensitive(schema, "$schema");
        struct json_validate_doc vd = {.root = schema, .root_id = cJSON_IsString(id) ? id->valuestring : NULL,
                                       .ref_alone = cJSON_IsString(sv) && strstr(sv->valuestring, "draft-0") != NULL};
        const cJSON *tests = cJSON_GetObjectItemCaseSensitive(doc, "tests");
        for (const cJSON *tc = tests ? tests->child : NULL; tc; tc = tc->next) {
            long budget = 1L << 20;
            int want = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tc, "valid"));
            int got = json_validate(&vd, schema, cJSON_GetObjectItemCaseSensitive(tc, "data"), &budget);
            instances++;
            if (got < 0) continue;
            decided++;
            if (got == want) agree++;
            else if (known_difference(e->d_name)) excused++;
            else test_fail(__FILE__, __LINE__, "%s: validator says %d, label %d", e->d_name, got, want);
        }
        cJSON_Delete(doc);
    }
    closedir(d);
    printf("  json_validate on MaskBench: %d instances, %d decided, %d agree with the labels, %d known differences\n",
           instances, decided, agree, excused);
    CHECK(excused <= 3);
    CHECK(instances > 5000);
    CHECK(decided > instances * 9 / 10);
}
