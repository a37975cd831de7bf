/* The grammars of tool choices and reasoning models (core/structured.c's frames, built by the
 * server's api_tools.c), checked sentence by sentence with the reference recognizer: tool_choice
 * required in each format (hermes, llama3_json, mistral, Qwen3-Coder's XML), auto's lazy form
 * (free text, then only valid calls once the trigger appears), and the reasoning block before
 * any of them. */
#include "base/util.h"
#include "core/structured.h"
#include "grammar/grammar.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One call's JSON for two tools, as api_tools.c writes it for hermes. */
static const char CALL[] =
    "{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"get_weather\"},\"arguments\":{\"type\":\"object\","
    "\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":5}},\"required\":[\"city\"],\"additionalProperties\":false}},"
    "\"required\":[\"name\",\"arguments\"],\"additionalProperties\":false},{\"type\":\"object\",\"properties\":{\"name\":{\"const\":"
    "\"get_time\"},\"arguments\":{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}},\"required\":[\"name\","
    "\"arguments\"],\"additionalProperties\":false}]}";

static struct grammar *framed(enum structured_kind kind, const char *text, const char *frame) {
    struct structured_spec s = {.kind = kind, .text = text, .len = strlen(text), .frame = frame, .frame_len = strlen(frame)};
    struct grammar *g = NULL;
    int rc = structured_spec_grammar(&s, &g);
    if (rc) test_fail(__FILE__, __LINE__, "frame %s: %s", frame, folio_last_error());
    return g;
}

static int M(const struct grammar *g, const char *s) { return grammar_matches(g, (const uint8_t *)s, strlen(s)); }

TEST(tool_grammar_hermes_required) {
    struct grammar *g = framed(STRUCTURED_JSON, CALL, "{\"calls\":{\"begin\":\"<tool_call>\\n\",\"end\":\"\\n</tool_call>\",\"sep\":\"\\n\"}}");
    if (!g) return;
    const char *one = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    CHECK(M(g, one));
    CHECK(M(g, "<tool_call>\n{\"name\":\"get_time\",\"arguments\":{}}\n</tool_call>\n<tool_call>\n{\"name\":\"get_time\",\"arguments\":{}}\n</tool_call>"));
    CHECK(!M(g, ""));                                                  /* required: at least one */
    CHECK(!M(g, "hello"));                                             /* no text */
    CHECK(!M(g, "<tool_call>\n{\"name\":\"nope\",\"arguments\":{}}\n</tool_call>"));           /* unknown tool */
    CHECK(!M(g, "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Parisian\"}}\n</tool_call>")); /* maxLength */
    CHECK(!M(g, "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{}}\n</tool_call>"));    /* required city */
    grammar_free(g);
    /* one call at most (parallel_tool_calls false, or a named function) */
    g = framed(STRUCTURED_JSON, CALL, "{\"calls\":{\"begin\":\"<tool_call>\\n\",\"end\":\"\\n</tool_call>\",\"sep\":\"\\n\",\"max\":1}}");
    if (!g) return;
    CHECK(M(g, one));
    CHECK(!M(g, "<tool_call>\n{\"name\":\"get_time\",\"arguments\":{}}\n</tool_call>\n<tool_call>\n{\"name\":\"get_time\",\"arguments\":{}}\n</tool_call>"));
    grammar_free(g);
}

TEST(tool_grammar_hermes_auto) {
    struct grammar *g = framed(STRUCTURED_JSON, CALL,
                               "{\"calls\":{\"begin\":\"<tool_call>\\n\",\"end\":\"\\n</tool_call>\",\"sep\":\"\\n\",\"trigger\":\"<tool_call>\"}}");
    if (!g) return;
    CHECK(M(g, ""));
    CHECK(M(g, "Any text at all, <tool_ even a broken tag"));
    CHECK(M(g, "Let me check.\n<tool_call>\n{\"name\":\"get_time\",\"arguments\":{}}\n</tool_call>"));
    CHECK(!M(g, "Let me check.\n<tool_call>\n{\"name\":\"get_time\",\"arguments\":{\"x\":1}}\n</tool_call>"));
    CHECK(!M(g, "<tool_call>hello</tool_call>"));                      /* the trigger commits to a call */
    CHECK(!M(g, "<tool_call>\n{\"name\":\"get_time\",\"arguments\":{}}\n</tool_call> and text after")); /* calls end it */
    grammar_free(g);
}

TEST(tool_grammar_llama3_and_mistral) {
    static const char LCALL[] =
        "{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"f\"},\"parameters\":{\"type\":\"object\",\"properties\":"
        "{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"],\"additionalProperties\":false}},\"required\":[\"name\",\"parameters\"],"
        "\"additionalProperties\":false}";
    /* llama3_json auto: a call may only open the output; text that starts otherwise is free */
    struct grammar *g = framed(STRUCTURED_JSON, LCALL, "{\"calls\":{\"sep\":\"; \",\"start\":true}}");
    if (!g) return;
    CHECK(M(g, "{\"name\":\"f\",\"parameters\":{\"a\":1}}"));
    CHECK(M(g, "{\"name\":\"f\",\"parameters\":{\"a\":1}}; {\"name\":\"f\",\"parameters\":{\"a\":2}}"));
    CHECK(M(g, "Hello {not json"));
    CHECK(M(g, ""));
    CHECK(!M(g, "{\"a\":1}"));                                         /* plain JSON is not a call: refused */
    grammar_free(g);
    /* mistral required: [TOOL_CALLS] then a JSON list of calls */
    g = framed(STRUCTURED_JSON, LCALL, "{\"calls\":{\"open\":\"[TOOL_CALLS][\",\"close\":\"]\",\"sep\":\", \"}}");
    if (!g) return;
    CHECK(M(g, "[TOOL_CALLS][{\"name\":\"f\",\"parameters\":{\"a\":1}}]"));
    CHECK(M(g, "[TOOL_CALLS][{\"name\":\"f\",\"parameters\":{\"a\":1}}, {\"name\":\"f\",\"parameters\":{\"a\":3}}]"));
    CHECK(!M(g, "[TOOL_CALLS][]"));
    CHECK(!M(g, "[{\"name\":\"f\",\"parameters\":{\"a\":1}}]"));
    grammar_free(g);
}

TEST(tool_grammar_qwen3_coder_xml) {
    const char *frame =
        "{\"calls\":{\"begin\":\"<tool_call>\\n\",\"end\":\"\\n</tool_call>\",\"sep\":\"\\n\",\"ws\":false,\"max\":1,\"xml\":["
        "{\"name\":\"get_weather\",\"params\":[{\"name\":\"city\",\"required\":true,\"schema\":{\"type\":\"string\",\"maxLength\":6}},"
        "{\"name\":\"days\",\"required\":false,\"schema\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":7}},"
        "{\"name\":\"note\",\"required\":false}]}]}}";
    struct grammar *g = framed(STRUCTURED_NONE, "", frame);
    if (!g) return;
    CHECK(M(g, "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"));
    CHECK(M(g, "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n"
               "<parameter=note>\nany text\nover lines\n</parameter>\n</function>\n</tool_call>"));
    CHECK(!M(g, "<tool_call>\n<function=get_weather>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>")); /* city */
    CHECK(!M(g, "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n9\n</parameter>\n</function>\n</tool_call>"));
    CHECK(!M(g, "<tool_call>\n<function=get_weather>\n<parameter=city>\nLongParis\n</parameter>\n</function>\n</tool_call>"));
    grammar_free(g);
}

TEST(tool_grammar_reasoning_block) {
    static const char SCHEMA[] = "{\"type\":\"integer\",\"minimum\":0,\"maximum\":9}";
    /* the prompt opened the block: reasoning (any text without the end tag), the tag, then the spec */
    struct grammar *g = framed(STRUCTURED_JSON, SCHEMA, "{\"think\":{\"start\":\"<think>\",\"end\":\"</think>\",\"open\":true}}");
    if (!g) return;
    CHECK(M(g, "I should say 7.</think>\n\n7"));
    CHECK(M(g, "</think>7"));
    CHECK(!M(g, "7"));
    CHECK(!M(g, "thinking</think>\n\n12"));
    grammar_free(g);
    /* optional block (Qwen3's hybrid thinking), before calls */
    g = framed(STRUCTURED_JSON, CALL, "{\"calls\":{\"begin\":\"<tool_call>\\n\",\"end\":\"\\n</tool_call>\",\"sep\":\"\\n\"},"
                                      "\"think\":{\"start\":\"<think>\",\"end\":\"</think>\"}}");
    if (!g) return;
    CHECK(M(g, "<tool_call>\n{\"name\":\"get_time\",\"arguments\":{}}\n</tool_call>"));
    CHECK(M(g, "<think>\nthe time, so get_time</think>\n\n<tool_call>\n{\"name\":\"get_time\",\"arguments\":{}}\n</tool_call>"));
    CHECK(!M(g, "<think>no end<tool_call>\n{\"name\":\"get_time\",\"arguments\":{}}\n</tool_call>"));
    grammar_free(g);
}
