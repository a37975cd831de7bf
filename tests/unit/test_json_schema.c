/* json_schema tests: per keyword, JSON texts the compiled grammar must accept and reject
 * (grammar_matches as the judge), whitespace modes, $ref recursion, allOf merging, and the
 * refusals with their messages and pointers. The MaskBench corpus runs through
 * tests/tools/jsonschema_check. */
#include "grammar/json_schema.h"
#include "base/util.h"
#include "test.h"

#include <stdint.h>
#include <string.h>

static struct grammar *compile(const char *schema, int strict, int ws) {
    struct json_schema_params p = json_schema_default_params();
    p.strict = strict;
    p.whitespace = ws;
    struct grammar *g = NULL;
    if (json_schema_compile(schema, strlen(schema), &p, &g)) {
        test_fail(__FILE__, __LINE__, "schema %s: %s", schema, folio_last_error());
        return NULL;
    }
    return g;
}

static int m(const struct grammar *g, const char *s) { return g && grammar_matches(g, (const uint8_t *)s, strlen(s)); }

static void expect(const char *schema, const char *const *yes, const char *const *no) {
    struct grammar *g = compile(schema, 0, 1);
    for (; g && yes && *yes; yes++)
        if (!m(g, *yes)) test_fail(__FILE__, __LINE__, "%s should accept %s", schema, *yes);
    for (; g && no && *no; no++)
        if (m(g, *no)) test_fail(__FILE__, __LINE__, "%s should reject %s", schema, *no);
    grammar_free(g);
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static void expect_refused(const char *schema, int code, const char *msg_part) {
    struct json_schema_params p = json_schema_default_params();
    struct grammar *g = NULL;
    int rc = json_schema_compile(schema, strlen(schema), &p, &g);
    if (rc != code) test_fail(__FILE__, __LINE__, "%s: rc %d, want %d", schema, rc, code);
    if (!strstr(folio_last_error(), msg_part))
        test_fail(__FILE__, __LINE__, "%s: message \"%s\" lacks \"%s\"", schema, folio_last_error(), msg_part);
    CHECK(g == NULL);
    grammar_free(g);
}

TEST(json_schema_any_and_scalars) {
    expect("{}", L("1", "\"x\"", "null", "[1,{\"a\":[]}]", "{ \"a\" : true }", "-0.5e+3"), L("", "nul", "01", "{a:1}", "[1,]"));
    expect("true", L("{}"), L("x"));
    expect("false", NULL, L("{}", "1", "null"));
    expect("{\"type\":\"string\"}", L("\"\"", "\"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\"", "\"\\u00e9\\uD83D\\uDE00\"", "\"\xc3\xa9\""),
           L("\"\\x\"", "\"a\nb\"", "\"\\uD800\"", "1"));
    expect("{\"type\":\"integer\"}", L("0", "-7", "123"), L("01", "1.5", "\"1\"", "-"));
    expect("{\"type\":\"number\"}", L("0", "-1.25", "1e5", "2E-3"), L(".5", "1.", "+1"));
    expect("{\"type\":[\"boolean\",\"null\"]}", L("true", "false", "null"), L("0"));
    expect("{\"type\":\"string\",\"nullable\":true}", L("null", "\"a\""), L("1"));
}

TEST(json_schema_strings) {
    expect("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", L("\"ab\"", "\"\xc3\xa9\xc3\xa9\xc3\xa9\"", "\"a\\nb\"", "\"\\uD83D\\uDE00x\""),
           L("\"a\"", "\"abcd\"", "\"\xc3\xa9\""));
    expect("{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}\\\\d+$\"}", L("\"AB12\""), L("\"AB\"", "\"ab12\"", "\"xAB12\""));
    expect("{\"type\":\"string\",\"pattern\":\"b\"}", L("\"abc\"", "\"b\""), L("\"ac\""));
    expect("{\"type\":\"string\",\"pattern\":\"^[a-z]+$\",\"maxLength\":3}", L("\"abc\""), L("\"abcd\"", "\"\""));
    expect("{\"type\":\"string\",\"format\":\"date\"}", L("\"2024-02-29\"", "\"2023-12-31\""), L("\"2024-02-30\"", "\"2024-04-31\"", "\"24-01-01\""));
    expect("{\"type\":\"string\",\"format\":\"date-time\"}", L("\"2024-01-02T03:04:05Z\"", "\"2024-01-02T03:04:05.123+05:30\""),
           L("\"2024-01-02 03:04:05\"", "\"2024-01-02T25:00:00Z\""));
    expect("{\"type\":\"string\",\"format\":\"time\"}", L("\"12:00:00Z\""), L("\"12:00\""));
    expect("{\"type\":\"string\",\"format\":\"email\"}", L("\"a.b+c@example.com\""), L("\"a@\"", "\"@b.com\"", "\"a b@c.com\""));
    expect("{\"type\":\"string\",\"format\":\"uuid\"}", L("\"123e4567-e89b-12d3-a456-426614174000\""), L("\"123e4567\""));
    expect("{\"type\":\"string\",\"format\":\"ipv4\"}", L("\"192.168.0.1\""), L("\"256.1.1.1\"", "\"1.2.3\""));
    expect("{\"type\":\"string\",\"format\":\"uri\"}", L("\"https://example.com/a?b=c#d\"", "\"https:\\/\\/x.org\""), L("\"not a uri\"", "\"/rel\""));
    expect("{\"type\":\"string\",\"format\":\"hostname\"}", L("\"a-b.example.com\""), L("\"-a.com\""));
    expect("{\"type\":\"string\",\"format\":\"no-such-format\"}", L("\"anything\""), L("1"));
}

TEST(json_schema_numbers) {
    expect("{\"type\":\"integer\",\"minimum\":-5,\"maximum\":120}", L("-5", "0", "-0", "9", "99", "120"), L("-6", "121", "1000", "-10"));
    expect("{\"type\":\"integer\",\"exclusiveMinimum\":0}", L("1", "12345678901"), L("0", "-1"));
    expect("{\"type\":\"integer\",\"minimum\":0,\"exclusiveMinimum\":true}", L("1"), L("0"));
    expect("{\"type\":\"integer\",\"maximum\":-10}", L("-10", "-11", "-1000"), L("-9", "0", "5"));
    expect("{\"type\":\"integer\",\"minimum\":1.5,\"maximum\":3.5}", L("2", "3"), L("1", "4"));
    expect("{\"type\":\"number\",\"minimum\":0}", L("0", "0.5", "12.25"), L("-0.5", "-1"));
    expect("{\"type\":\"number\",\"exclusiveMinimum\":0}", L("0.001", "3"), L("0", "0.0", "-2"));
    expect("{\"type\":\"number\",\"minimum\":-90,\"maximum\":90}", L("-90", "-89.5", "0", "90", "90.000", "45.25"),
           L("-90.5", "90.01", "91", "-100"));
    expect("{\"type\":\"number\",\"minimum\":1,\"exclusiveMaximum\":5}", L("1", "4.999"), L("5", "0.99", "5.0"));
    expect("{\"type\":\"integer\",\"multipleOf\":1}", L("3"), L("3.5"));
}

TEST(json_schema_objects) {
    const char *s = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"}},"
                    "\"required\":[\"b\"]}";
    expect(s, L("{\"b\":\"x\"}", "{\"a\":1,\"b\":\"x\"}", "{\"a\":1,\"b\":\"x\",\"c\":[1]}", "{\"b\":\"x\",\"zz\":null}"),
           L("{}", "{\"a\":1}", "{\"b\":\"x\",\"a\":1}", /* order is the schema's */ "{\"b\":1}",
             "{\"b\":\"x\",\"a\":\"dup\"}", /* an extra key may not reuse a listed name */ "{\"b\":\"x\",}"));
    const char *closed = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"additionalProperties\":false}";
    expect(closed, L("{}", "{\"a\":1}"), L("{\"a\":1,\"b\":2}", "{\"b\":2}"));
    /* strict: additionalProperties defaults to false */
    struct grammar *g = compile("{\"type\":\"object\",\"properties\":{\"a\":{}}}", 1, 0);
    CHECK(m(g, "{\"a\":1}"));
    CHECK(!m(g, "{\"a\":1,\"b\":2}"));
    CHECK(!m(g, "{ \"a\":1}")); /* whitespace 0: compact only */
    grammar_free(g);
    expect("{\"type\":\"object\",\"additionalProperties\":{\"type\":\"number\"}}", L("{}", "{\"x\":1,\"y\":2.5}"), L("{\"x\":\"s\"}"));
    expect("{\"type\":\"object\",\"required\":[\"k\"]}", L("{\"k\":1}", "{\"k\":1,\"j\":2}"), L("{\"j\":2}"));
    expect("{\"type\":\"object\",\"properties\":{\"a\":{},\"b\":{},\"c\":{}},\"additionalProperties\":false,\"minProperties\":2,\"maxProperties\":2}",
           L("{\"a\":1,\"b\":2}", "{\"b\":1,\"c\":2}"), L("{\"a\":1}", "{\"a\":1,\"b\":2,\"c\":3}"));
    /* patternProperties: closed additionalProperties, or one catch-all pattern */
    expect("{\"type\":\"object\",\"patternProperties\":{\"^x-\":{\"type\":\"integer\"}},\"additionalProperties\":false}",
           L("{}", "{\"x-a\":1,\"x-b\":2}"), L("{\"y\":1}", "{\"x-a\":\"s\"}"));
    expect("{\"type\":\"object\",\"patternProperties\":{\".*\":{\"type\":\"string\"}}}", L("{\"a\":\"s\"}"), L("{\"a\":1}"));
    /* a listed name under a constraining pattern would need both schemas: refused */
    expect_refused("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"}},\"patternProperties\":{\".*\":{\"type\":\"string\"}}}",
                   FOLIO_EUNSUP, "'patternProperties'");
    expect("{\"type\":\"object\",\"minProperties\":1}", L("{\"x\":1}"), L("{}"));
    /* pretty printing (JSON.stringify(x, null, 2)) */
    expect(s, L("{\n  \"a\": 1,\n  \"b\": \"x\"\n}", " {\"b\" :\"x\" } "), NULL);
    expect("{\"const\":{\"k\":[1,\"a/b\",null]}}", L("{\"k\":[1,\"a/b\",null]}", "{ \"k\": [ 1, \"a\\/b\", null ] }"), L("{\"k\":[1]}"));
    expect("{\"enum\":[\"x\",2,true,null]}", L("\"x\"", "2", "true", "null"), L("\"y\"", "false"));
    expect("{\"type\":\"string\",\"enum\":[\"x\",2]}", L("\"x\""), L("2"));
}

TEST(json_schema_arrays) {
    expect("{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":1,\"maxItems\":3}", L("[1]", "[1,2,3]", "[ 1 , 2 ]"),
           L("[]", "[1,2,3,4]", "[\"a\"]"));
    expect("{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\"},{\"type\":\"integer\"}],\"items\":false}",
           L("[]", "[\"a\"]", "[\"a\",1]"), L("[1]", "[\"a\",1,2]"));
    expect("{\"type\":\"array\",\"items\":[{\"type\":\"string\"}],\"additionalItems\":{\"type\":\"boolean\"},\"minItems\":2}",
           L("[\"a\",true]", "[\"a\",true,false]"), L("[\"a\"]", "[\"a\",1]"));
    expect("{\"type\":\"array\",\"uniqueItems\":true}", L("[1,1]"), NULL); /* a deliberate relaxation */
    expect("{\"type\":\"array\",\"maxItems\":0}", L("[]"), L("[1]"));
}

TEST(json_schema_combinators) {
    expect("{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"string\",\"maxLength\":1}]}", L("1", "\"a\""), L("\"ab\"", "null"));
    expect("{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"null\"}]}", L("1", "null"), L("\"a\""));
    expect("{\"allOf\":[{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"]},"
           "{\"properties\":{\"b\":{\"type\":\"string\"}},\"required\":[\"b\"]}]}",
           L("{\"a\":1,\"b\":\"x\"}"), L("{\"a\":1}", "{\"b\":\"x\"}"));
    expect("{\"allOf\":[{\"type\":\"integer\",\"minimum\":0},{\"maximum\":9}]}", L("0", "9"), L("10", "-1"));
    expect("{\"type\":\"object\",\"properties\":{\"t\":{\"type\":\"string\"}},\"anyOf\":[{\"required\":[\"t\"]},{\"required\":[\"u\"]}]}",
           L("{\"t\":\"x\"}", "{\"u\":1}"), L("{}"));
    /* recursion through $ref and $defs, "#" included */
    const char *tree = "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
                       "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\"],"
                       "\"additionalProperties\":false}},\"$ref\":\"#/$defs/node\"}";
    expect(tree, L("{\"v\":1}", "{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[]},{\"v\":3}]}"), L("{\"v\":1,\"kids\":[{}]}"));
    expect("{\"type\":[\"array\",\"integer\"],\"items\":{\"$ref\":\"#\"}}", L("1", "[1,[2,[]]]"), L("[\"a\"]"));
    expect("{\"definitions\":{\"a~b\":{\"type\":\"integer\"}},\"properties\":{\"x\":{\"$ref\":\"#/definitions/a~0b\"}},\"type\":\"object\"}",
           L("{\"x\":1}"), L("{\"x\":\"s\"}"));
    /* draft 7: siblings of $ref are ignored; 2020-12: they apply */
    expect("{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"definitions\":{\"i\":{\"type\":\"integer\"}},\"$ref\":\"#/definitions/i\",\"maximum\":3}",
           L("5"), NULL);
    expect("{\"$defs\":{\"i\":{\"type\":\"integer\"}},\"$ref\":\"#/$defs/i\",\"maximum\":3}", L("3"), L("5"));
    /* annotations are ignored */
    expect("{\"title\":\"t\",\"description\":\"d\",\"examples\":[1],\"default\":2,\"$comment\":\"c\",\"readOnly\":true,\"deprecated\":false,\"type\":\"integer\"}",
           L("1"), L("\"a\""));
}

/* `not` where the negation is a schema; property dependencies as variants */
TEST(json_schema_not_and_dependencies) {
    expect("{\"type\":\"object\",\"not\":{\"required\":[\"a\",\"b\"]}}", L("{}", "{\"a\":1}", "{\"b\":1}"),
           L("{\"a\":1,\"b\":2}"));
    expect("{\"not\":{\"anyOf\":[{\"required\":[\"a\"]},{\"required\":[\"b\"]}]}}", L("{}", "{\"c\":1}", "1"),
           L("{\"a\":1}", "{\"b\":1}"));
    expect("{\"not\":{\"type\":[\"string\",\"object\"]}}", L("1", "null", "[]"), L("\"s\"", "{}"));
    expect("{\"not\":{\"not\":{\"type\":\"integer\",\"minimum\":0}}}", L("0", "7"), L("-1", "\"a\""));
    expect("{\"type\":\"string\",\"not\":{\"enum\":[\"logs\",\"log\"]}}", L("\"lo\"", "\"logsx\"", "\"\""),
           L("\"logs\"", "\"log\""));
    expect("{\"$defs\":{\"car\":{\"required\":[\"wheels\"]}},\"type\":\"object\",\"not\":{\"$ref\":\"#/$defs/car\"}}",
           L("{\"x\":1}"), L("{\"wheels\":4}"));
    const char *dep = "{\"type\":\"object\",\"properties\":{\"a\":{},\"b\":{},\"c\":{}},\"additionalProperties\":false,"
                      "\"dependencies\":{\"a\":[\"b\"],\"c\":[\"a\",\"b\"]}}";
    expect(dep, L("{}", "{\"b\":1}", "{\"a\":1,\"b\":2}", "{\"a\":1,\"b\":2,\"c\":3}"),
           L("{\"a\":1}", "{\"a\":1,\"c\":3}", "{\"b\":1,\"c\":3}"));
    /* an open object: the trigger may not sneak in as an additional property either */
    expect("{\"dependentRequired\":{\"a\":[\"b\"]}}", L("{\"x\":1}", "{\"a\":1,\"b\":2}", "3"), L("{\"a\":1}", "{\"x\":1,\"a\":2}"));
    expect("{\"type\":\"object\",\"dependencies\":{}}", L("{}", "{\"a\":1}"), L("1"));
}

TEST(json_schema_refusals) {
    expect_refused("{\"type\":\"object\",\"properties\":{\"tags\":{\"patternProperties\":{\"x\":{\"type\":\"integer\"}}}}}", FOLIO_EUNSUP,
                   "unsupported JSON Schema keyword 'patternProperties' at /properties/tags");
    expect_refused("{\"type\":\"string\",\"not\":{\"pattern\":\"a\"}}", FOLIO_EUNSUP, "'not' at /not");
    expect_refused("{\"type\":\"array\",\"contains\":{}}", FOLIO_EUNSUP, "'contains'");
    expect_refused("{\"if\":{},\"then\":{}}", FOLIO_EUNSUP, "'if'");
    expect_refused("{\"propertyNames\":{}}", FOLIO_EUNSUP, "'propertyNames'");
    expect_refused("{\"dependencies\":{\"a\":{\"required\":[\"b\"]}}}", FOLIO_EUNSUP, "'dependencies'");
    expect_refused("{\"dependentRequired\":{\"a\":[\"b\"],\"c\":[\"d\"],\"e\":[\"f\"],\"g\":[\"h\"]}}", FOLIO_EUNSUP,
                   "'dependentRequired'");
    expect_refused("{\"type\":\"number\",\"multipleOf\":0.5}", FOLIO_EUNSUP, "'multipleOf'");
    expect_refused("{\"$ref\":\"other.json#/a\"}", FOLIO_EUNSUP, "remote reference");
    expect_refused("{\"$ref\":\"#/definitions/missing\"}", FOLIO_EINVAL, "does not resolve");
    expect_refused("{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", FOLIO_EUNSUP, "backreference");
    expect_refused("{\"type\":\"strin\"}", FOLIO_EINVAL, "'type'");
    expect_refused("{\"type\":", FOLIO_EINVAL, "not valid JSON");
    expect_refused("{\"allOf\":[{\"properties\":{\"a\":{}},\"additionalProperties\":false},{\"properties\":{\"b\":{}}}]}",
                   FOLIO_EUNSUP, "'allOf'");
    /* nesting beyond JSON_SCHEMA_MAX_DEPTH is refused before cJSON recurses */
    char deep[8 * JSON_SCHEMA_MAX_DEPTH + 64];
    size_t n = 0;
    for (int i = 0; i <= JSON_SCHEMA_MAX_DEPTH; i++) n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{\"a\":");
    deep[n++] = '1';
    for (int i = 0; i <= JSON_SCHEMA_MAX_DEPTH; i++) deep[n++] = '}';
    deep[n] = '\0';
    expect_refused(deep, FOLIO_EINVAL, "deeper");
}

TEST(json_schema_relaxations_reported) {
    struct json_schema_params p = json_schema_default_params();
    struct grammar *g = NULL;
    unsigned relaxed = 0;
    const char *s = "{\"oneOf\":[{\"type\":\"array\",\"uniqueItems\":true},{\"type\":\"number\",\"minimum\":0.5}]}";
    CHECK_EQ_INT(json_schema_compile_ex(s, strlen(s), &p, &g, &relaxed), 0);
    CHECK(relaxed & JSON_SCHEMA_RELAX_ONEOF);
    CHECK(relaxed & JSON_SCHEMA_RELAX_UNIQUE_ITEMS);
    CHECK(relaxed & JSON_SCHEMA_RELAX_NUMBER_BOUNDS);
    CHECK_STR(json_schema_relaxation_name(JSON_SCHEMA_RELAX_ONEOF), "oneOf as anyOf");
    grammar_free(g);
}
