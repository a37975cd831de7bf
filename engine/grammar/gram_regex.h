/* gram_regex: a regular expression (the ECMAScript subset JSON Schema's `pattern` and vLLM's
 * `regex` use) as a grammar expression over UTF-8 bytes.
 *
 * Supported: literals and escapes (\n \t \r \f \v \0 \xHH \uHHHH \u{...} \/ and escaped
 * punctuation), ., classes [...] with ranges and negation, \d \w \s \D \W \S, groups (...),
 * (?:...), named groups (?<n>...), alternation |, quantifiers * + ? {n} {n,} {n,m} (lazy forms
 * accepted: they match the same strings), ^ and $ at the ends. Not supported, each an error
 * naming it: backreferences, lookahead and lookbehind, \b, flags.
 *
 * The match is of the whole string. A JSON Schema `pattern` is unanchored by the spec; the
 * caller wraps it (.* on each side) unless it starts with ^ or ends with $ (see unanchored). */
#ifndef FOLIO_GRAM_REGEX_H
#define FOLIO_GRAM_REGEX_H

#include <stddef.h>
#include <stdint.h>

#include "grammar/grammar.h"

/* Builds the expression for re[0..n) in b. With unanchored, a pattern without ^ (or $) may be
 * preceded (or followed) by any characters. 0, or FOLIO_EINVAL / FOLIO_EUNSUP with a message
 * naming the construct and its offset. */
int gram_regex_expr(struct grammar_builder *b, const char *re, size_t n, int unanchored,
                    grammar_expr *out);
/* The same, matched against the decoded body of a JSON string literal (for JSON Schema's
 * `pattern` and `format`): each code point is accepted raw where JSON allows it, or as its short
 * escape (\" \\ \/ \b \f \n \r \t), or, for a control character, as \u00XX. min_len/max_len
 * (code points; 0 and -1 for none) are folded into the regex when its shape allows it exactly
 * (anchored, one branch, at most one variable-length run of single characters): then
 * *length_exact is 1; otherwise the length is not enforced and *length_exact is 0. */
int gram_regex_json_expr(struct grammar_builder *b, const char *re, size_t n, int unanchored,
                         int min_len, int max_len, grammar_expr *out, int *length_exact);
/* One code point of the union of ranges (sorted, disjoint, no surrogates), written as in a JSON
 * string body (raw, or escaped as above). */
grammar_expr gram_regex_json_class(struct grammar_builder *b, const uint32_t (*ranges)[2], int n);
/* A whole grammar that matches the regex (vLLM's structured_outputs.regex). */
int gram_regex_compile(const char *re, size_t n, struct grammar **out);
/* Whether the regex finds a match anywhere in s[0..len) (JSON Schema's `pattern` semantics,
 * on the decoded string): 1, 0, or FOLIO_EINVAL / FOLIO_EUNSUP for the regex. Compiles the
 * regex on each call: for checking a few names or values, not for a hot loop. */
int gram_regex_search(const char *re, size_t n, const char *s, size_t len);

#endif
