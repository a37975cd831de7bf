/* JSON grammars written with the grammar builder, for the grammar tests and bench_grammar until
 * they can use json_schema.c: any JSON value (response_format json_object's shape), and an
 * object with fixed keys in order, the form a JSON schema with required properties takes.
 * Whitespace between tokens is bounded as json_schema.h promises. */
#ifndef FOLIO_TEST_GRAMMAR_JSON_H
#define FOLIO_TEST_GRAMMAR_JSON_H

#include <stdio.h>
#include <string.h>

#include "grammar/grammar.h"

static grammar_expr gj_lit(struct grammar_builder *b, const char *s) { return grammar_literal(b, s, strlen(s)); }

/* ws ::= [ \t\n\r]{0,max_ws} */
static grammar_expr gj_ws(struct grammar_builder *b, int max_ws) {
    uint32_t set[8] = {0};
    set[0] = 1u << '\t' | 1u << '\n' | 1u << '\r';
    set[1] = 1u << (' ' - 32);
    return grammar_repeat(b, grammar_bytes(b, set), 0, max_ws);
}

/* The shared JSON rules: string, number, value (with objects and arrays). */
struct gj_rules {
    int string, number, value, ws;
    grammar_expr ch; /* one string character, escapes included */
};

static struct gj_rules gj_define(struct grammar_builder *b, int max_ws) {
    struct gj_rules r;
    r.ws = grammar_rule_declare(b, "ws");
    grammar_rule_define(b, r.ws, gj_ws(b, max_ws));
    grammar_expr ws = grammar_ref(b, r.ws);
    /* string ::= "\"" ( [^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\"" */
    static const uint32_t plain[][2] = {{0, 0x1F}, {'"', '"'}, {'\\', '\\'}};
    uint32_t esc[8] = {0}, hex[8] = {0};
    for (const char *p = "\"\\/bfnrt"; *p; p++) esc[(uint8_t)*p >> 5] |= 1u << (*p & 31);
    for (const char *p = "0123456789abcdefABCDEF"; *p; p++) hex[(uint8_t)*p >> 5] |= 1u << (*p & 31);
    grammar_expr u = grammar_seq2(b, gj_lit(b, "u"), grammar_repeat(b, grammar_bytes(b, hex), 4, 4));
    grammar_expr ch = grammar_alt2(b, grammar_codepoints(b, plain, 3, 1),
                                   grammar_seq2(b, gj_lit(b, "\\"), grammar_alt2(b, grammar_bytes(b, esc), u)));
    r.ch = ch;
    r.string = grammar_rule_declare(b, "string");
    grammar_expr sit[3] = {gj_lit(b, "\""), grammar_repeat(b, ch, 0, -1), gj_lit(b, "\"")};
    grammar_rule_define(b, r.string, grammar_seq(b, sit, 3));
    /* number ::= "-"? ("0" | [1-9][0-9]*) ("." [0-9]+)? ([eE] [-+]? [0-9]+)? */
    grammar_expr digit = grammar_byte_range(b, '0', '9');
    grammar_expr intp = grammar_alt2(b, gj_lit(b, "0"), grammar_seq2(b, grammar_byte_range(b, '1', '9'),
                                                                  grammar_repeat(b, digit, 0, -1)));
    grammar_expr frac = grammar_repeat(b, grammar_seq2(b, gj_lit(b, "."), grammar_repeat(b, digit, 1, -1)), 0, 1);
    uint32_t e_set[8] = {0}, sign[8] = {0};
    e_set['e' >> 5] |= 1u << ('e' & 31);
    e_set['E' >> 5] |= 1u << ('E' & 31);
    sign['-' >> 5] |= 1u << ('-' & 31);
    sign['+' >> 5] |= 1u << ('+' & 31);
    grammar_expr eit[3] = {grammar_bytes(b, e_set), grammar_repeat(b, grammar_bytes(b, sign), 0, 1),
                           grammar_repeat(b, digit, 1, -1)};
    grammar_expr expo = grammar_repeat(b, grammar_seq(b, eit, 3), 0, 1);
    grammar_expr nit[4] = {grammar_repeat(b, gj_lit(b, "-"), 0, 1), intp, frac, expo};
    r.number = grammar_rule_declare(b, "number");
    grammar_rule_define(b, r.number, grammar_seq(b, nit, 4));
    /* value, object, array */
    r.value = grammar_rule_declare(b, "value");
    int obj = grammar_rule_declare(b, "object"), arr = grammar_rule_declare(b, "array");
    grammar_expr val = grammar_ref(b, r.value);
    grammar_expr member_it[5] = {ws, grammar_ref(b, r.string), ws, gj_lit(b, ":"), ws};
    grammar_expr member = grammar_seq2(b, grammar_seq(b, member_it, 5), grammar_seq2(b, val, ws));
    grammar_expr members = grammar_seq2(b, member, grammar_repeat(b, grammar_seq2(b, gj_lit(b, ","), member), 0, -1));
    grammar_expr oit[3] = {gj_lit(b, "{"), grammar_alt2(b, members, ws), gj_lit(b, "}")};
    grammar_rule_define(b, obj, grammar_seq(b, oit, 3));
    grammar_expr elem = grammar_seq(b, (grammar_expr[]){ws, val, ws}, 3);
    grammar_expr elems = grammar_seq2(b, elem, grammar_repeat(b, grammar_seq2(b, gj_lit(b, ","), elem), 0, -1));
    grammar_expr ait[3] = {gj_lit(b, "["), grammar_alt2(b, elems, ws), gj_lit(b, "]")};
    grammar_rule_define(b, arr, grammar_seq(b, ait, 3));
    grammar_expr alts[7] = {grammar_ref(b, obj), grammar_ref(b, arr), grammar_ref(b, r.string),
                            grammar_ref(b, r.number), gj_lit(b, "true"), gj_lit(b, "false"), gj_lit(b, "null")};
    grammar_rule_define(b, r.value, grammar_alt(b, alts, 7));
    return r;
}

/* Any JSON value, surrounded by whitespace. NULL on failure (folio_last_error says why). */
static struct grammar *gj_any(int max_ws) {
    struct grammar_builder *b = grammar_builder_create();
    struct gj_rules r = gj_define(b, max_ws);
    int root = grammar_rule_declare(b, "root");
    grammar_expr it[3] = {grammar_ref(b, r.ws), grammar_ref(b, r.value), grammar_ref(b, r.ws)};
    grammar_rule_define(b, root, grammar_seq(b, it, 3));
    struct grammar *g = NULL;
    grammar_builder_finish(b, root, &g);
    grammar_builder_free(b);
    return g;
}

/* An object with the given keys, all required, in order; kinds: 's' string, 'n' number,
 * 'b' boolean, 'a' array of strings, 'v' any value, 'e' an enum of three strings, 'm' a string
 * of at most 32 characters. */
static struct grammar *gj_object(int n, const char *const *keys, const char *kinds, int max_ws) {
    struct grammar_builder *b = grammar_builder_create();
    struct gj_rules r = gj_define(b, max_ws);
    grammar_expr ws = grammar_ref(b, r.ws);
    grammar_expr items[256];
    int k = 0, defined_m = 0;
    items[k++] = gj_lit(b, "{");
    for (int i = 0; i < n && k < 240; i++) {
        char key[256];
        snprintf(key, sizeof key, "\"%s\"", keys[i]);
        items[k++] = ws;
        if (i) {
            items[k++] = gj_lit(b, ",");
            items[k++] = ws;
        }
        items[k++] = gj_lit(b, key);
        items[k++] = ws;
        items[k++] = gj_lit(b, ":");
        items[k++] = ws;
        grammar_expr v;
        switch (kinds[i]) {
        case 's': v = grammar_ref(b, r.string); break;
        case 'n': v = grammar_ref(b, r.number); break;
        case 'b': v = grammar_alt2(b, gj_lit(b, "true"), gj_lit(b, "false")); break;
        case 'a': {
            grammar_expr s = grammar_ref(b, r.string);
            grammar_expr more = grammar_repeat(b, grammar_seq(b, (grammar_expr[]){ws, gj_lit(b, ","), ws, s}, 4), 0, -1);
            grammar_expr body = grammar_alt2(b, grammar_seq2(b, s, more), grammar_empty(b));
            v = grammar_seq(b, (grammar_expr[]){gj_lit(b, "["), ws, body, ws, gj_lit(b, "]")}, 5);
            break;
        }
        case 'm': { /* a string of at most 32 characters (maxLength), as its own rule so that
                     * its token sets are shared by every field and schema that uses it */
            int sr = grammar_rule_declare(b, "string_max32");
            if (!defined_m) {
                grammar_rule_define(b, sr, grammar_seq(b, (grammar_expr[]){gj_lit(b, "\""), grammar_repeat(b, r.ch, 0, 32), gj_lit(b, "\"")}, 3));
                defined_m = 1;
            }
            v = grammar_ref(b, sr);
            break;
        }
        case 'e':
            v = grammar_alt(b, (grammar_expr[]){gj_lit(b, "\"red\""), gj_lit(b, "\"green\""), gj_lit(b, "\"blue\"")}, 3);
            break;
        default: v = grammar_ref(b, r.value); break;
        }
        items[k++] = v;
    }
    items[k++] = ws;
    items[k++] = gj_lit(b, "}");
    int root = grammar_rule_declare(b, "root");
    grammar_rule_define(b, root, grammar_seq(b, items, k));
    struct grammar *g = NULL;
    grammar_builder_finish(b, root, &g);
    grammar_builder_free(b);
    return g;
}

#endif
