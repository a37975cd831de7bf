/* grammar: a context-free grammar over bytes, the one form every structured-output front end
 * produces (JSON Schema, regex, GBNF, Lark, choice) and the matcher consumes.
 *
 * A builder holds a pool of expression nodes and a table of named rules. Expressions are
 * values (an index into the pool), built bottom-up and shared freely: a node may appear under
 * any number of parents. A rule's body is one expression; rules refer to each other by id, and
 * a rule may be referenced before it is defined (recursion). grammar_builder_finish() checks
 * the rules (all defined, none left-recursive), and freezes them into a struct grammar.
 *
 * Terminals are byte sets: the grammar is over UTF-8 bytes, so "any character except quote"
 * is written with grammar_codepoints(), which expands code point ranges into byte sequences.
 *
 * Errors: a builder call that fails returns GRAMMAR_NONE and records a message (folio_err);
 * calls given GRAMMAR_NONE return GRAMMAR_NONE, so a front end may check once at the end.
 * Limits (GRAMMAR_MAX_*) bound what one request can cost: a grammar that would exceed them is
 * refused with FOLIO_EINVAL and a message naming the limit. */
#ifndef FOLIO_GRAMMAR_H
#define FOLIO_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>

#define GRAMMAR_NONE (-1)
#define GRAMMAR_MAX_NODES   (1 << 20)  /* expression nodes in one builder */
#define GRAMMAR_MAX_RULES   (1 << 16)
#define GRAMMAR_MAX_REPEAT  10000      /* {min,max} bounds; larger bounds are an error */
/* Nesting of expressions inside one another (rules reset it): the passes over a grammar
 * recurse per level on threads with small stacks (CivetWeb's 100 KiB). seq and alt splice
 * nested seqs and alts, so only real nesting counts. */
#define GRAMMAR_MAX_DEPTH   256

typedef int32_t grammar_expr;

struct grammar_builder;
struct grammar;

struct grammar_builder *grammar_builder_create(void); /* NULL on allocation failure */
void grammar_builder_free(struct grammar_builder *b);  /* NULL is fine */

/* Terminals. A byte set is 256 bits: bit (c & 31) of set[c >> 5] is byte c. */
grammar_expr grammar_empty(struct grammar_builder *b);                 /* matches "" */
grammar_expr grammar_bytes(struct grammar_builder *b, const uint32_t set[8]);
grammar_expr grammar_byte_range(struct grammar_builder *b, uint8_t lo, uint8_t hi);
grammar_expr grammar_literal(struct grammar_builder *b, const char *s, size_t n);
/* One UTF-8 encoded code point in the union of [lo, hi] ranges (inclusive, sorted or not,
 * overlapping or not), or, with negate, any scalar value (U+0000..U+10FFFF, surrogates
 * excluded) outside them. */
grammar_expr grammar_codepoints(struct grammar_builder *b, const uint32_t (*ranges)[2], int n,
                                int negate);

/* Combinators. seq of 0 items is empty; alt of 0 items matches nothing (a dead branch). */
grammar_expr grammar_seq(struct grammar_builder *b, const grammar_expr *items, int n);
grammar_expr grammar_alt(struct grammar_builder *b, const grammar_expr *items, int n);
grammar_expr grammar_seq2(struct grammar_builder *b, grammar_expr a, grammar_expr c);
grammar_expr grammar_alt2(struct grammar_builder *b, grammar_expr a, grammar_expr c);
/* e repeated min..max times; max = -1 is unbounded. opt = repeat(e, 0, 1). */
grammar_expr grammar_repeat(struct grammar_builder *b, grammar_expr e, int min, int max);

/* Rules. declare returns the id of the rule with that name, creating it (undefined) the first
 * time; define sets its body once. ref is an expression that matches the rule. */
int grammar_rule_declare(struct grammar_builder *b, const char *name);
int grammar_rule_define(struct grammar_builder *b, int rule, grammar_expr body);
grammar_expr grammar_ref(struct grammar_builder *b, int rule);
/* A fresh rule with a unique name built from prefix ("string_3"), for front ends. */
int grammar_rule_fresh(struct grammar_builder *b, const char *prefix);

/* Freezes the rules reachable from root into *out. FOLIO_EINVAL with a message for an
 * undefined rule, a left-recursive one ("rule 'expr' is left-recursive"), or a limit. The
 * builder may be freed afterwards. Free *out with grammar_free. */
int grammar_builder_finish(struct grammar_builder *b, int root, struct grammar **out);

/* Composition. embed copies a frozen grammar's rules into the builder (under fresh names) and
 * returns an expression matching its sentences, so that one grammar can be wrapped in text of
 * another (a tool call's JSON inside its tags, anything after a reasoning block).
 * text_without matches every byte string that does not contain t (m bytes, 1..256) anywhere:
 * free text up to a trigger. t's first byte must not recur in it (true of "<tool_call>",
 * "</think>", "[TOOL_CALLS]"), else GRAMMAR_NONE with a message. */
grammar_expr grammar_embed(struct grammar_builder *b, const struct grammar *g);
/* Marks the builder failed with this message (a front end's own error, such as a nested
 * compile's): finish reports it. Returns GRAMMAR_NONE. */
grammar_expr grammar_fail(struct grammar_builder *b, const char *msg);
grammar_expr grammar_text_without(struct grammar_builder *b, const char *t, size_t m);

/* vLLM's guided_choice: a grammar whose sentences are exactly the n strings s[i] (lens[i]
 * bytes each; NULL lens means NUL-terminated). n >= 1. FOLIO_EINVAL for n < 1. */
int grammar_from_choices(const char *const *s, const size_t *lens, int n, struct grammar **out);

void grammar_free(struct grammar *g);
/* A hash of the grammar's structure (not its rule names), for caches. */
uint64_t grammar_hash(const struct grammar *g);
/* Whether the byte string is a complete sentence of the grammar (a slow reference check for
 * tests and fuzzing; the matcher is the fast path). */
int grammar_matches(const struct grammar *g, const uint8_t *s, size_t n);
/* The grammar in GBNF-like text, for debugging and error messages. Caller frees. */
char *grammar_print(const struct grammar *g);

#endif
