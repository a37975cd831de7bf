/* gbnf: grammars in llama.cpp's GBNF and in the EBNF/Lark subset vLLM accepts, to a grammar.
 *
 * GBNF: rules `name ::= expr`, the start rule `root`; literals "...", classes [...] and [^...],
 * ., groups, | alternation, * + ? and {m}, {m,}, {m,n}; # comments.
 * Lark subset: rules `name: expr` with alternatives on `|` (continuation lines too), the
 * start rule `start`; terminals `NAME: expr` (upper case) as rules; "literal", /regex/ terminals
 * (gram_regex), ( ) [optional] ? * + and ~ n / ~ n..m; %import common.X for the common
 * terminals (WS, WS_INLINE, NUMBER, INT, SIGNED_NUMBER, ESCAPED_STRING, CNAME, LETTER, DIGIT,
 * WORD, NEWLINE); %ignore T lets T appear between any two terminals of the rules. "..."i and
 * templates, priorities and aliases (->) are refused with their line.
 *
 * Errors name the line and column. Left recursion is refused (grammar_builder_finish). */
#ifndef FOLIO_GBNF_H
#define FOLIO_GBNF_H

#include <stddef.h>

#include "grammar/grammar.h"

int gbnf_compile(const char *text, size_t n, struct grammar **out);
/* Lark/EBNF as vLLM's `grammar` (xgrammar's EBNF and the Lark subset guidance accepts). */
int gbnf_compile_lark(const char *text, size_t n, struct grammar **out);
/* Detects which of the two a text is: 1 for GBNF (`::=` rules), 0 for Lark (`name:` rules). */
int gbnf_is_gbnf(const char *text, size_t n);

#endif
