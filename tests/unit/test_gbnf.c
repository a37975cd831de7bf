/* GBNF and Lark front-end tests: llama.cpp's sample grammars (json, arithmetic, list, chess,
 * japanese, c) and the grammar its README shows for a JSON schema, each built and then checked
 * with grammar_matches on sentences and non-sentences; every syntax rule (escapes, classes,
 * repetition forms, comments, where newlines may go); the Lark subset vLLM users send (the
 * SQL example from vLLM's docs, common terminals, %ignore, /regex/); and the errors: each
 * names its line:column, and what we refuse is refused by name. */
#include "grammar/gbnf.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

static struct grammar *build_at(int line, const char *text, int lark) {
    struct grammar *g = (struct grammar *)1;
    int rc = lark ? gbnf_compile_lark(text, strlen(text), &g) : gbnf_compile(text, strlen(text), &g);
    if (rc || !g) {
        test_fail(__FILE__, line, "compile failed (%d): %s", rc, folio_last_error());
        return NULL;
    }
    return g;
}
#define BUILD(text) build_at(__LINE__, text, 0)
#define BUILD_LARK(text) build_at(__LINE__, text, 1)

static int matches(const struct grammar *g, const char *s) {
    return g && grammar_matches(g, (const uint8_t *)s, strlen(s));
}
#define YES(g, s) do { if (!matches(g, s)) test_fail(__FILE__, __LINE__, "should match: \"%s\"", s); } while (0)
#define NO(g, s) do { if (g && matches(g, s)) test_fail(__FILE__, __LINE__, "should not match: \"%s\"", s); } while (0)

/* The compile fails with rc, and the message holds each of the NULL-terminated needles. */
static void fails_at(int line, const char *text, size_t n, int lark, int want_rc, const char *n1, const char *n2) {
    struct grammar *g = (struct grammar *)1;
    int rc = lark ? gbnf_compile_lark(text, n, &g) : gbnf_compile(text, n, &g);
    if (rc == 0) {
        test_fail(__FILE__, line, "compile should fail: %.80s", text);
        grammar_free(g);
        return;
    }
    if (g != NULL) test_fail(__FILE__, line, "*out not NULL after an error");
    if (want_rc && rc != want_rc) test_fail(__FILE__, line, "rc %d, want %d (%s)", rc, want_rc, folio_last_error());
    const char *msg = folio_last_error();
    if (n1 && !strstr(msg, n1)) test_fail(__FILE__, line, "message \"%s\" lacks \"%s\"", msg, n1);
    if (n2 && !strstr(msg, n2)) test_fail(__FILE__, line, "message \"%s\" lacks \"%s\"", msg, n2);
}
#define FAILS(text, rc, n1, n2) fails_at(__LINE__, text, strlen(text), 0, rc, n1, n2)
#define FAILS_LARK(text, rc, n1, n2) fails_at(__LINE__, text, strlen(text), 1, rc, n1, n2)

/* ---- llama.cpp's sample grammars ---- */

static const char JSON_GBNF[] =
    "# Grammar for subset of JSON - doesn't support full string or number syntax\n"
    "\n"
    "root  ::= object\n"
    "value ::= object | array | string | number | boolean\n"
    "\n"
    "object ::=\n"
    "  \"{\" ws (\n"
    "            string \":\" ws value\n"
    "    (\",\" ws string \":\" ws value)*\n"
    "  )? \"}\"\n"
    "\n"
    "array  ::=\n"
    "  \"[\" ws (\n"
    "            value\n"
    "    (\",\" ws value)*\n"
    "  )? \"]\"\n"
    "\n"
    "string  ::=\n"
    "  \"\\\"\" (\n"
    "    [\\x20\\x21\\x23-\\x5b\\x5d-\\U0010FFFF] | # any code point except \" (\\x22) and \\ (\\x5c)\n"
    "    \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F]) # escapes\n"
    "  )* \"\\\"\"\n"
    "\n"
    "# Only plain integers currently\n"
    "number  ::= \"-\"? [0-9]+ ws\n"
    "boolean ::= (\"true\" | \"false\") ws\n"
    "\n"
    "# Optional space: by convention, applied in this grammar after literal chars when allowed\n"
    "ws ::= ([ \\t\\n] ws)?\n";

TEST(gbnf_sample_json) {
    struct grammar *g = BUILD(JSON_GBNF);
    YES(g, "{}");
    YES(g, "{\"a\":1}");
    YES(g, "{\"a\": -12, \"b\": [true, false, \"x\\u00e9\\n\", {}], \"c\": \"caf\xc3\xa9 \xf0\x9f\x98\x80\"}");
    YES(g, "{\n  \"k\": [ ]}");
    NO(g, "[1]");            /* root is an object */
    NO(g, "{\"a\" 1}");
    NO(g, "{\"a\":1,}");
    NO(g, "{\"a\":\"\\q\"}"); /* not an escape */
    NO(g, "{\"a\":\"\x01\"}"); /* control character */
    NO(g, "{\"a\":1");
    NO(g, "");
    grammar_free(g);
}

TEST(gbnf_sample_arithmetic) {
    struct grammar *g = BUILD(
        "root  ::= (expr \"=\" ws term \"\\n\")+\n"
        "expr  ::= term ([-+*/] term)*\n"
        "term  ::= ident | num | \"(\" ws expr \")\" ws\n"
        "ident ::= [a-z] [a-z0-9_]* ws\n"
        "num   ::= [0-9]+ ws\n"
        "ws    ::= [ \\t\\n]*\n");
    YES(g, "1+2=3\n");
    YES(g, "(a_1 *b) /4 = x\n10-2=8\n");
    NO(g, "(a * b)=1\n"); /* no space after an operator */
    NO(g, "1+=3\n");
    NO(g, "1+2=3");
    NO(g, "A=1\n");
    grammar_free(g);
}

TEST(gbnf_sample_list) {
    struct grammar *g = BUILD(
        "root ::= item+\n"
        "\n"
        "# Excludes various line break characters\n"
        "item ::= \"- \" [^\\r\\n\\x0b\\x0c\\x85\\u2028\\u2029]+ \"\\n\"\n");
    YES(g, "- milk\n- eggs \xe2\x82\xac\n");
    NO(g, "- milk");
    NO(g, "- \n");
    NO(g, "- a\rb\n");
    NO(g, "- a\xe2\x80\xa8" "b\n"); /* U+2028 */
    NO(g, "- a\xc2\x85" "b\n");     /* U+0085 */
    YES(g, "- a\xc2\x84" "b\n");    /* U+0084 is fine */
    grammar_free(g);
}

TEST(gbnf_sample_chess) {
    /* the README's multi-line form of chess.gbnf's root rule, then the file's other rules */
    struct grammar *g = BUILD(
        "# `root` specifies the pattern for the overall output\n"
        "root ::= (\n"
        "    # it must start with the characters \"1. \" followed by a sequence\n"
        "    # of characters that match the `move` rule, followed by a space, followed\n"
        "    # by another move, and then a newline\n"
        "    \"1. \" move \" \" move \"\\n\"\n"
        "\n"
        "    # it's followed by one or more subsequent moves, numbered with one or two digits\n"
        "    ([1-9] [0-9]? \". \" move \" \" move \"\\n\")+\n"
        ")\n"
        "\n"
        "# `move` is an abstract representation, which can be a pawn, nonpawn, or castle.\n"
        "# The `[+#]?` denotes the possibility of checking or mate signs after moves\n"
        "move    ::= (pawn | nonpawn | castle) [+#]?\n"
        "nonpawn ::= [NBKQR] [a-h]? [1-8]? \"x\"? [a-h] [1-8]\n"
        "pawn    ::= ([a-h] \"x\")? [a-h] [1-8] (\"=\" [NBKQR])?\n"
        "castle  ::= \"O-O\" \"-O\"?\n");
    YES(g, "1. e4 e5\n2. Nf3 Nc6\n");
    YES(g, "1. d4 d5\n2. c4 dxc4\n3. O-O-O e8=Q#\n");
    NO(g, "1. e4 e5\n");      /* at least one more move pair */
    NO(g, "1. e9 e5\n2. a3 a6\n");
    grammar_free(g);
}

TEST(gbnf_sample_japanese) {
    struct grammar *g = BUILD(
        "# A probably incorrect grammar for Japanese\n"
        "root        ::= jp-char+ ([ \\t\\n] jp-char+)*\n"
        "jp-char     ::= hiragana | katakana | punctuation | cjk\n"
        "hiragana    ::= [\xe3\x81\x81-\xe3\x82\x9f]\n"   /* [ぁ-ゟ] */
        "katakana    ::= [\xe3\x82\xa1-\xe3\x83\xbf]\n"   /* [ァ-ヿ] */
        "punctuation ::= [\xe3\x80\x81-\xe3\x80\xbe]\n"   /* [、-〾] */
        "cjk         ::= [\xe4\xb8\x80-\xe9\xbf\xbf]\n"); /* [一-鿿] */
    YES(g, "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf"); /* こんにちは */
    YES(g, "\xe3\x81\x93\xe3\x82\x93 \xe4\xb8\x96\xe7\x95\x8c\xe3\x80\x82");  /* こん 世界。 */
    YES(g, "\xe3\x82\xab\xe3\x82\xbf\xe3\x82\xab\xe3\x83\x8a");             /* カタカナ */
    NO(g, "hello");
    NO(g, "\xe3\x81\x93 ");
    NO(g, "\xe3\x81");                                                      /* truncated */
    grammar_free(g);
}

TEST(gbnf_sample_c) {
    struct grammar *g = BUILD(
        "root ::= (declaration)*\n"
        "\n"
        "declaration ::= dataType identifier \"(\" parameter? \")\" \"{\" statement* \"}\"\n"
        "\n"
        "dataType  ::= \"int\" ws | \"float\" ws | \"char\" ws\n"
        "identifier ::= [a-zA-Z_] [a-zA-Z_0-9]*\n"
        "\n"
        "parameter ::= dataType identifier\n"
        "\n"
        "statement ::=\n"
        "    ( dataType identifier ws \"=\" ws expression \";\" ) |\n"
        "    ( identifier ws \"=\" ws expression \";\" ) |\n"
        "    ( identifier ws \"(\" argList? \")\" \";\" ) |\n"
        "    ( \"return\" ws expression \";\" ) |\n"
        "    ( \"while\" \"(\" condition \")\" \"{\" statement* \"}\" ) |\n"
        "    ( \"for\" \"(\" forInit \";\" ws condition \";\" ws forUpdate \")\" \"{\" statement* \"}\" ) |\n"
        "    ( \"if\" \"(\" condition \")\" \"{\" statement* \"}\" (\"else\" \"{\" statement* \"}\")? ) |\n"
        "    ( singleLineComment ) |\n"
        "    ( multiLineComment )\n"
        "\n"
        "forInit ::= dataType identifier ws \"=\" ws expression | identifier ws \"=\" ws expression\n"
        "forUpdate ::= identifier ws \"=\" ws expression\n"
        "\n"
        "condition ::= expression relationOperator expression\n"
        "relationOperator ::= (\"<=\" | \"<\" | \"==\" | \"!=\" | \">=\" | \">\")\n"
        "\n"
        "expression ::= term ((\"+\" | \"-\") term)*\n"
        "term ::= factor((\"*\" | \"/\") factor)*\n"
        "\n"
        "factor ::= identifier | number | unaryTerm | funcCall | parenExpression\n"
        "unaryTerm ::= \"-\" factor\n"
        "funcCall ::= identifier \"(\" argList? \")\"\n"
        "parenExpression ::= \"(\" ws expression ws \")\"\n"
        "\n"
        "argList ::= expression (\",\" ws expression)*\n"
        "\n"
        "number ::= [0-9]+\n"
        "\n"
        "singleLineComment ::= \"//\" [^\\n]* \"\\n\"\n"
        "multiLineComment ::= \"/*\" ( [^*] | (\"*\" [^/]) )* \"*/\"\n"
        "\n"
        "ws ::= ([ \\t\\n]+)\n");
    YES(g, "");
    YES(g, "int main(){return 0;}");
    YES(g, "int f(int x){while(x>0){x = x-1;}return x*2;}float g(){// hi\n/* c */return f(3);}");
    NO(g, "int main(){return 0}");
    NO(g, "main(){}");
    grammar_free(g);
}

/* The grammar llama.cpp's README shows for a JSON schema: {m,n} counts, an empty alternative. */
TEST(gbnf_readme_schema_grammar) {
    struct grammar *g = BUILD(
        "char ::= [^\"\\\\\\x7F\\x00-\\x1F] | [\\\\] ([\"\\\\bfnrt] | \"u\" [0-9a-fA-F]{4})\n"
        "item ::= \"{\" space item-name-kv \",\" space item-age-kv \"}\" space\n"
        "item-age ::= ([0-9] | ([1-8] [0-9] | [9] [0-9]) | \"1\" ([0-4] [0-9] | [5] \"0\")) space\n"
        "item-age-kv ::= \"\\\"age\\\"\" space \":\" space item-age\n"
        "item-name ::= \"\\\"\" char{1,100} \"\\\"\" space\n"
        "item-name-kv ::= \"\\\"name\\\"\" space \":\" space item-name\n"
        "root ::= \"[\" space item (\",\" space item){1,3} \"]\" space\n"
        "space ::= | \" \" | \"\\n\" [ \\t]{0,20}\n");
    YES(g, "[{\"name\":\"a\",\"age\":1},{\"name\": \"b\\u0041\", \"age\": 150}]");
    YES(g, "[{\"name\":\"a\",\"age\":1},{\"name\":\"b\",\"age\":2},{\"name\":\"c\",\"age\":3},{\"name\":\"d\",\"age\":99}]");
    NO(g, "[{\"name\":\"a\",\"age\":1}]");                       /* {1,3} more */
    NO(g, "[{\"name\":\"\",\"age\":1},{\"name\":\"b\",\"age\":2}]"); /* char{1,100} */
    NO(g, "[{\"name\":\"a\",\"age\":151},{\"name\":\"b\",\"age\":2}]");
    grammar_free(g);
}

/* ---- GBNF syntax ---- */

TEST(gbnf_escapes_and_classes) {
    struct grammar *g = BUILD("root ::= \"a\\n\\r\\t\\\\\\\"\\x41\\u00e9\\U0001F600\" [\\]\\[-] [^a-z\\x00] .\n");
    YES(g, "a\n\r\t\\\"A\xc3\xa9\xf0\x9f\x98\x80]Q\xe2\x82\xac");
    YES(g, "a\n\r\t\\\"A\xc3\xa9\xf0\x9f\x98\x80[\n\n");
    YES(g, "a\n\r\t\\\"A\xc3\xa9\xf0\x9f\x98\x80-!\xf0\x9f\x98\x80");
    NO(g, "a\n\r\t\\\"A\xc3\xa9\xf0\x9f\x98\x80]qx");   /* [^a-z] */
    NO(g, "a\n\r\t\\\"A\xc3\xa9\xf0\x9f\x98\x80]Q");    /* . needs a character */
    NO(g, "a\n\r\t\\\"A\xc3\xa9\xf0\x9f\x98\x80]QXY");  /* . is one character */
    grammar_free(g);

    /* raw UTF-8 in literals and ranges; `-` last in a class is literal; [^] is any char */
    g = BUILD("root ::= \"\xc3\xa9t\xc3\xa9\" [a-] [\xce\xb1-\xcf\x89]+ [^]\n");
    YES(g, "\xc3\xa9t\xc3\xa9-\xce\xb1\xce\xb2\xcf\x89\xe4\xb8\x80");
    YES(g, "\xc3\xa9t\xc3\xa9" "a\xce\xbb\n");
    NO(g, "\xc3\xa9t\xc3\xa9" "b\xce\xbb\n");
    NO(g, "\xc3\xa9t\xc3\xa9" "a\xcf\x8a\n"); /* U+03CA past omega */
    grammar_free(g);

    /* an empty class matches nothing, an empty literal matches "" */
    g = BUILD("root ::= \"\" \"x\" | []\n");
    YES(g, "x");
    NO(g, "");
    grammar_free(g);
}

TEST(gbnf_repetition) {
    struct grammar *g = BUILD("root ::= \"a\"{3} \"b\"{2,} \"c\"{1,2} \"d\"{,2} \"e\"{ 0 , 1 } (\"f\" \"g\")* \"h\"+ \"i\"?\n");
    YES(g, "aaabbchh");
    YES(g, "aaabbbbbccddefgfghhi");
    NO(g, "aabbch");
    NO(g, "aaabch");
    NO(g, "aaabbccchh");
    NO(g, "aaabbcdddh");
    NO(g, "aaabbceeh");
    NO(g, "aaabbcfh");
    NO(g, "aaabbc");
    grammar_free(g);
    /* stacked * + ? fold into one repeat (exact: (x?)+ is x*), through parentheses too */
    g = BUILD("root ::= ((\"a\"?)+)* \"b\"+? \"c\"{1} (\"d\"+)+\n");
    YES(g, "cd");
    YES(g, "aaabbcdd");
    NO(g, "aaabbdd");
    char *txt = g ? grammar_print(g) : NULL;
    CHECK(txt && strstr(txt, "(") == NULL && strstr(txt, "**") == NULL && strstr(txt, "+?") == NULL);
    if (txt && strstr(txt, "(")) test_fail(__FILE__, __LINE__, "printed: %s", txt);
    free(txt);
    grammar_free(g);
    g = BUILD("root ::= [0-9]{0}  \"x\"{0,0} \"y\"\n");
    YES(g, "y");
    NO(g, "0y");
    grammar_free(g);
}

TEST(gbnf_newlines_and_comments) {
    /* a newline after `|` continues the rule; a `|` opening the next line does too; newlines
     * inside parentheses; comments anywhere a space may go; CRLF line ends; no final newline */
    struct grammar *g = BUILD(
        "# leading comment\r\n"
        "\r\n"
        "root ::= # the start\r\n"
        "  greeting ( # group\r\n"
        "    \" \" name\r\n"
        "  )* |\r\n"
        "  \"bye\"\r\n"
        "  | \"ciao\"   # trailing\r\n"
        "greeting ::= \"hi\" | \"hello\"\n"
        "name::=[A-Z][a-z]*\n"
        "  \n"
        "unused_rule-2 ::= \"z\"");
    YES(g, "hi");
    YES(g, "hello Bob Al");
    YES(g, "bye");
    YES(g, "ciao");
    NO(g, "hi bob");
    NO(g, "z");
    grammar_free(g);

    /* empty alternatives (llama.cpp's `space ::= | " "`) and an empty rule */
    g = BUILD("root ::= \"<\" space \">\" nothing\nspace ::= | \" \" | \"\\n\"\nnothing ::=\n");
    YES(g, "<>");
    YES(g, "< >");
    YES(g, "<\n>");
    NO(g, "<  >");
    grammar_free(g);

    /* recursion (right and nested) is fine */
    g = BUILD("root ::= paren\nparen ::= \"(\" paren* \")\"\n");
    YES(g, "()");
    YES(g, "(()(()))");
    NO(g, "(()");
    grammar_free(g);

    /* xgrammar-style names with underscores (vLLM's docs example) */
    g = BUILD(
        "root ::= select_statement\n"
        "select_statement ::= \"SELECT \" column \" from \" table \" where \" condition\n"
        "column ::= \"col_1 \" | \"col_2 \"\n"
        "table ::= \"table_1 \" | \"table_2 \"\n"
        "condition ::= column \"= \" number\n"
        "number ::= \"1 \" | \"2 \"\n");
    YES(g, "SELECT col_1  from table_2  where col_2 = 1 ");
    NO(g, "SELECT col_3  from table_2  where col_2 = 1 ");
    grammar_free(g);
}

TEST(gbnf_errors) {
    FAILS("root ::= foo\n", FOLIO_EINVAL, "line 1:10", "undefined rule 'foo'");
    FAILS("root ::= \"a\"\n\nx ::= \"b\" y\n", FOLIO_EINVAL, "line 3:11", "'y'");
    FAILS("rot ::= \"a\"\n", FOLIO_EINVAL, "'root'", NULL);
    FAILS("", FOLIO_EINVAL, "'root'", NULL);
    FAILS("# only a comment\n", FOLIO_EINVAL, "'root'", NULL);
    FAILS("root ::= (\"a\" \"b\"\n", FOLIO_EINVAL, "line 1:10", "unclosed '('");
    FAILS("root ::= \"a\")\n", FOLIO_EINVAL, "line 1:13", "')'");
    FAILS("root ::= \"abc\n", FOLIO_EINVAL, "line 1:10", "unterminated string");
    FAILS("root ::= [abc\n", FOLIO_EINVAL, "line 1:10", "unterminated character class");
    FAILS("root ::= \"a\\q\"\n", FOLIO_EINVAL, "line 1:12", "unknown escape '\\q'");
    FAILS("root ::= \"\\x4\"\n", FOLIO_EINVAL, "line 1:11", "hex digits");
    FAILS("root ::= \"\\uD800\"\n", FOLIO_EINVAL, "line 1:11", "scalar");
    FAILS("root ::= \"\\U00110000\"\n", FOLIO_EINVAL, "line 1:11", "scalar");
    FAILS("root ::= [z-a]\n", FOLIO_EINVAL, "line 1:11", "out of order");
    FAILS("root ::= \"a\"{3,2}\n", FOLIO_EINVAL, "line 1:13", "below minimum");
    FAILS("root ::= \"a\"{2\n", FOLIO_EINVAL, "line 1:13", "'}'");
    FAILS("root ::= \"a\"{x}\n", FOLIO_EINVAL, "line 1:14", "number");
    FAILS("root ::= \"a\"{99999999999999999999}\n", FOLIO_EINVAL, "line 1:14", "repetition count");
    FAILS("root ::= \"a\"\nroot ::= \"b\"\n", FOLIO_EINVAL, "line 2:1", "already defined (line 1:1)");
    FAILS("root \"a\"\n", FOLIO_EINVAL, "line 1:6", "'::='");
    FAILS("root ::= \"a\"\n  \"b\"\n", FOLIO_EINVAL, "line 2:3", "rule name");
    FAILS("root ::= \"a\" x ::= \"b\"\n", FOLIO_EINVAL, "line 1:16", "':'");
    FAILS("root ::= <think>\n", FOLIO_EUNSUP, "line 1:10", "token");
    FAILS("root ::= 'a'\n", FOLIO_EINVAL, "line 1:10", "'''");
    FAILS("root ::= \"a\" \xff\n", FOLIO_EINVAL, "line 1:14", "0xff");
    FAILS("root ::= \"a\xff\"\n", FOLIO_EINVAL, "line 1:12", "UTF-8");
    FAILS("root ::= [\xc3]\n", FOLIO_EINVAL, "line 1:11", "UTF-8");
    FAILS("root ::= \"\xed\xa0\x80\"\n", FOLIO_EINVAL, "line 1:11", "UTF-8"); /* a surrogate */
    /* left recursion, with the line of the rule grammar.c names */
    FAILS("root ::= expr\nexpr ::= expr \"+\" term | term\nterm ::= [0-9]\n", FOLIO_EINVAL, "left-recursive", "line 2:1");
    /* a NUL byte is just an unexpected byte, not the end of the text */
    const char nul[] = "root ::= \"a\" \0 \"b\"\n";
    fails_at(__LINE__, nul, sizeof nul - 1, 0, FOLIO_EINVAL, "line 1:14", "0x00");
    /* but inside a literal it is a character */
    struct grammar *g = NULL;
    const char nul2[] = "root ::= \"a\0b\"\n";
    CHECK_EQ_INT(gbnf_compile(nul2, sizeof nul2 - 1, &g), 0);
    CHECK(g && grammar_matches(g, (const uint8_t *)"a\0b", 3));
    grammar_free(g);
    /* column counts characters, not bytes */
    FAILS("root ::= \"\xc3\xa9\xc3\xa9\" )\n", FOLIO_EINVAL, "line 1:15", NULL);
}

/* Nesting is bounded: deep parentheses are an error, not a stack overflow; long flat inputs
 * are fine. */
TEST(gbnf_limits) {
    size_t depth = 100000;
    char *s = malloc(depth * 2 + 64);
    size_t k = (size_t)sprintf(s, "root ::= ");
    for (size_t i = 0; i < depth; i++) s[k++] = '(';
    s[k++] = '"';
    s[k++] = 'a';
    s[k++] = '"';
    for (size_t i = 0; i < depth; i++) s[k++] = ')';
    s[k] = '\0';
    fails_at(__LINE__, s, k, 0, FOLIO_EINVAL, "nested deeper", NULL);
    fails_at(__LINE__, s, k, 1, 0, NULL, NULL); /* Lark: no start rule line, but no crash */
    /* 60 levels is fine */
    k = (size_t)sprintf(s, "root ::= ");
    for (int i = 0; i < 60; i++) s[k++] = '(';
    k += (size_t)sprintf(s + k, "\"a\"");
    for (int i = 0; i < 60; i++) s[k++] = ')';
    s[k] = '\0';
    struct grammar *g = BUILD(s);
    YES(g, "a");
    grammar_free(g);
    /* many alternatives and a long sequence, in one rule */
    k = (size_t)sprintf(s, "root ::= \"x\"");
    for (int i = 0; i < 20000; i++) k += (size_t)sprintf(s + k, " | \"%d\"", i);
    s[k++] = '\n';
    s[k] = '\0';
    g = BUILD(s);
    YES(g, "19999");
    YES(g, "x");
    NO(g, "20000");
    grammar_free(g);
    free(s);
    /* an unterminated comment-like or string input of any length is one error */
    FAILS("root ::= \"", FOLIO_EINVAL, "unterminated", NULL);
    FAILS("root ::= [", FOLIO_EINVAL, "unterminated", NULL);
    FAILS("root ::= \"\\", FOLIO_EINVAL, "unterminated", NULL);
    FAILS("root ::= (", FOLIO_EINVAL, "unclosed", NULL);
    FAILS("root ::= \"a\"{", FOLIO_EINVAL, "number", NULL);
    FAILS("root", FOLIO_EINVAL, "'::='", NULL);
}

TEST(gbnf_is_gbnf) {
    const char *gb[] = {
        "root ::= \"a\"",
        "# comment: with colon\nroot ::= x\nx ::= \"b\"",
        "  root::=\"a\"",
        "select_statement ::= \"a\"\nroot ::= select_statement",
    };
    const char *lk[] = {
        "start: \"a\"",
        "?start: expr\n",
        "// comment\n%import common.WS\nstart: WS",
        "!start: \"a\" \"::=\"",
        "NAME: /[a-z]+/\nstart: NAME",
        "",
    };
    for (size_t i = 0; i < sizeof gb / sizeof *gb; i++) CHECK_EQ_INT(gbnf_is_gbnf(gb[i], strlen(gb[i])), 1);
    for (size_t i = 0; i < sizeof lk / sizeof *lk; i++) CHECK_EQ_INT(gbnf_is_gbnf(lk[i], strlen(lk[i])), 0);
    CHECK_EQ_INT(gbnf_is_gbnf(NULL, 0), 0);
}

/* ---- Lark ---- */

TEST(lark_vllm_sql_example) {
    /* vLLM's structured-outputs docs example */
    struct grammar *g = BUILD_LARK(
        "?start: select_statement\n"
        "\n"
        "?select_statement: \"SELECT \" column_list \" FROM \" table_name\n"
        "\n"
        "?column_list: column_name (\",\" column_name)*\n"
        "\n"
        "?table_name: identifier\n"
        "\n"
        "?column_name: identifier\n"
        "\n"
        "?identifier: /[a-zA-Z_][a-zA-Z0-9_]*/\n");
    YES(g, "SELECT a,b_2 FROM t");
    YES(g, "SELECT x FROM _y");
    NO(g, "SELECT FROM t");
    NO(g, "SELECT 1a FROM t");
    NO(g, "select a FROM t");
    grammar_free(g);
}

TEST(lark_syntax) {
    struct grammar *g = BUILD_LARK(
        "// a comment\n"
        "# another (lark.lark allows both)\n"
        "start: greeting [\" \" name] punct~1..3 _end\n"
        "!?greeting: \"hi\" # hash comment\n"
        "        | \"hello\"\n"
        "    | \"hey\" \"!\"? \n"
        "name: CAP LOWER+\n"
        "CAP: \"A\"..\"Z\"\n"
        "LOWER: \"a\"..\"z\" // letters\n"
        "punct: (\".\" | \"!\"\n"
        "        | \"?\")\n"
        "_end: \"\\n\" ~ 2 | DIGIT~2\n"
        "%import common.DIGIT\n");
    YES(g, "hi.\n\n");
    YES(g, "hello Bob!?!42");
    YES(g, "hey! Al...\n\n");
    NO(g, "hi....\n\n");
    NO(g, "hi bob.\n\n");
    NO(g, "hi.\n");
    NO(g, "hey!! A.\n\n");
    grammar_free(g);
}

TEST(lark_common_terminals) {
    struct grammar *g = BUILD_LARK(
        "%import common.WS\n"
        "%import common (WS_INLINE, NUMBER, INT, SIGNED_NUMBER, ESCAPED_STRING)\n"
        "%import common (CNAME, LETTER, DIGIT, WORD, NEWLINE, HEXDIGIT, DECIMAL, FLOAT, SIGNED_INT)\n"
        "%import common.LCASE_LETTER\n"
        "%import common.UCASE_LETTER -> UP\n"
        "start: \"ws\" WS | \"wsi\" WS_INLINE | \"num\" NUMBER | \"int\" INT | \"snum\" SIGNED_NUMBER\n"
        "     | \"str\" ESCAPED_STRING | \"cname\" CNAME | \"letter\" LETTER | \"digit\" DIGIT\n"
        "     | \"word\" WORD | \"nl\" NEWLINE | \"hex\" HEXDIGIT | \"dec\" DECIMAL | \"float\" FLOAT\n"
        "     | \"sint\" SIGNED_INT | \"lc\" LCASE_LETTER | \"up\" UP\n");
    YES(g, "ws \t\r\n\f");
    NO(g, "ws");
    YES(g, "wsi \t ");
    NO(g, "wsi \n");
    YES(g, "num12");
    YES(g, "num1.5e-3");
    YES(g, "num.5");
    YES(g, "num5.");
    YES(g, "num1E+9");
    NO(g, "num-1");
    NO(g, "num1e");
    YES(g, "int007");
    NO(g, "int1.0");
    YES(g, "snum-2.5");
    YES(g, "snum+3");
    YES(g, "str\"\"");
    YES(g, "str\"a \\\" b\\\\\"");
    YES(g, "str\"caf\xc3\xa9\"");
    NO(g, "str\"a\\\"");
    NO(g, "str\"a\nb\"");
    YES(g, "cname_x9");
    NO(g, "cname9x");
    YES(g, "letterQ");
    NO(g, "letter1");
    YES(g, "digit7");
    YES(g, "wordHello");
    NO(g, "wordHi there");
    YES(g, "nl\r\n\n");
    NO(g, "nl\r");
    YES(g, "hexF");
    NO(g, "hexg");
    YES(g, "dec1.");
    NO(g, "dec1");
    YES(g, "float1e5");
    NO(g, "float1");
    YES(g, "sint-0");
    YES(g, "lcz");
    NO(g, "lcZ");
    YES(g, "upZ");
    grammar_free(g);
    FAILS_LARK("%import common.FOO\nstart: FOO\n", FOLIO_EUNSUP, "line 1:16", "common.FOO");
    FAILS_LARK("%import mylib.WS\nstart: WS\n", FOLIO_EUNSUP, "line 1:9", "common");
}

TEST(lark_ignore) {
    /* a JSON-ish grammar with whitespace ignored between terminals */
    struct grammar *g = BUILD_LARK(
        "?start: value\n"
        "?value: object\n"
        "      | array\n"
        "      | ESCAPED_STRING\n"
        "      | SIGNED_NUMBER\n"
        "      | \"true\" | \"false\" | \"null\"\n"
        "array  : \"[\" [value (\",\" value)*] \"]\"\n"
        "object : \"{\" [pair (\",\" pair)*] \"}\"\n"
        "pair   : ESCAPED_STRING \":\" value\n"
        "%import common.ESCAPED_STRING\n"
        "%import common.SIGNED_NUMBER\n"
        "%import common.WS\n"
        "%ignore WS\n");
    YES(g, "{\"a\":[1,2,{\"b\":null}]}");
    YES(g, "  { \"a\" :\n [ 1 , -2.5e3 ,\ttrue ] }  \n");
    YES(g, "[]");
    YES(g, "[ ]");
    NO(g, "[1 2]");
    NO(g, "{\"a\" 1}");
    NO(g, "t rue"); /* not inside a terminal */
    NO(g, "\"a b\"x");
    grammar_free(g);

    /* two %ignore lines, one a literal; ignored items before the first terminal too */
    g = BUILD_LARK(
        "start: \"a\" b\n"
        "b: \"b\"+\n"
        "%ignore \" \"\n"
        "%ignore COMMENT\n"
        "COMMENT: \"#\" /[^\\n]*/ \"\\n\"\n");
    YES(g, "ab");
    YES(g, " a b b ");
    YES(g, "a # note\nbb");
    NO(g, "a c b");
    NO(g, "a # note b");
    grammar_free(g);
}

TEST(lark_regex) {
    struct grammar *g = BUILD_LARK(
        "start: NAME \"=\" VALUE\n"
        "NAME: /[a-z_]\\w*/\n"
        "VALUE: /\\d+(\\.\\d+)?/ | /\"[^\"]*\"/ | /a\\/b/\n");
    YES(g, "x=1");
    YES(g, "foo_1=3.14");
    YES(g, "s=\"hi there\"");
    YES(g, "p=a/b");
    NO(g, "1x=1");
    NO(g, "x=1.");
    grammar_free(g);
    FAILS_LARK("start: /a/i\n", FOLIO_EUNSUP, "line 1:11", "flags");
    FAILS_LARK("start: /abc\n", FOLIO_EINVAL, "line 1:8", "unterminated");
    FAILS_LARK("start: /a(?=b)/\n", 0, "line 1:8", "regex");
}

TEST(lark_refusals) {
    FAILS_LARK("start: \"a\"i\n", FOLIO_EUNSUP, "line 1:11", "case-insensitive");
    FAILS_LARK("start: x{\"a\"}\n_x{p}: p\n", FOLIO_EUNSUP, "line 1:8", "templates");
    FAILS_LARK("start: \"a\"\n_sep{x, sep}: x (sep x)*\n", FOLIO_EUNSUP, "line 2:1", "templates");
    FAILS_LARK("start: a\na.2: \"a\"\n", FOLIO_EUNSUP, "line 2:1", "priorities");
    FAILS_LARK("start: A\nA.2: \"a\"\n", FOLIO_EUNSUP, "line 2:1", "priorities");
    FAILS_LARK("start: \"a\" -> alias\n", FOLIO_EUNSUP, "line 1:12", "aliases");
    FAILS_LARK("start: \"a\"\n  | \"b\" -> two\n", FOLIO_EUNSUP, "line 2:9", "aliases");
    FAILS_LARK("%declare X\nstart: X\n", FOLIO_EUNSUP, "line 1:1", "%declare");
    FAILS_LARK("start: \"a\"\n%override start: \"b\"\n", FOLIO_EUNSUP, "line 2:1", "%override");
    FAILS_LARK("start: \"a\"\n%extend start: \"b\"\n", FOLIO_EUNSUP, "line 2:1", "%extend");
    FAILS_LARK("start: \"a\"\n%bogus\n", FOLIO_EINVAL, "line 2:1", "unknown directive");
}

TEST(lark_errors) {
    FAILS_LARK("start: a\n", FOLIO_EINVAL, "line 1:8", "undefined rule 'a'");
    FAILS_LARK("begin: \"a\"\n", FOLIO_EINVAL, "'start'", NULL);
    FAILS_LARK("start: \"a\"\nstart: \"b\"\n", FOLIO_EINVAL, "line 2:1", "already defined");
    FAILS_LARK("start \"a\"\n", FOLIO_EINVAL, "line 1:7", "':'");
    FAILS_LARK("start: (\"a\"\n", FOLIO_EINVAL, "line 1:8", "unclosed '('");
    FAILS_LARK("start: [\"a\"\n", FOLIO_EINVAL, "line 1:8", "unclosed '['");
    FAILS_LARK("start: \"a\n\"\n", FOLIO_EINVAL, "line 1:8", "unterminated");
    FAILS_LARK("start: Abc\n", FOLIO_EINVAL, "line 1:8", "mixes");
    FAILS_LARK("start: A\nA: b\nb: \"x\"\n", FOLIO_EINVAL, "line 2:4", "cannot refer to the rule 'b'");
    FAILS_LARK("start: \"a\" ~ 3..2\n", FOLIO_EINVAL, "line 1:12", "below minimum");
    FAILS_LARK("start: \"ab\"..\"z\"\n", FOLIO_EINVAL, "line 1:8", "one-character");
    FAILS_LARK("start: \"a\" . \"b\"\n", FOLIO_EINVAL, "line 1:12", "'.'");
    /* left recursion, common in Lark grammars written for an LALR parser */
    FAILS_LARK("start: sum\nsum: sum \"+\" NUM | NUM\nNUM: \"0\"..\"9\"\n", FOLIO_EINVAL, "left-recursive", "line 2:1");
    /* an ignored item may not be a rule */
    FAILS_LARK("start: \"a\"\nsp: \" \"\n%ignore sp\n", FOLIO_EINVAL, "line 3:9", "rule 'sp'");
}
