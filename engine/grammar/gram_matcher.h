/* gram_matcher: enforces a grammar on generated tokens, one matcher per constrained sequence.
 *
 * struct gram_vocab is the model's vocabulary as byte strings, arranged in a trie; one per
 * engine, shared by every matcher and thread. struct gram_compiled is a grammar prepared for one
 * vocabulary: the grammar's rules as byte automata plus, for each automaton state, the tokens
 * that state accepts or rejects on its own (the context-independent tokens, as xgrammar calls
 * them), so that a mask only walks the few tokens whose fate depends on the stack. Compiling
 * happens on the request's HTTP thread; the step loop only reads it.
 *
 * A matcher holds a parse position: a set of pushdown stacks over the compiled automata, and a
 * history of the last GRAM_MAX_ROLLBACK tokens' positions for gram_matcher_rollback. All of its
 * memory is allocated in gram_matcher_create: accepting tokens and filling masks never
 * allocate. A parse that would need more stacks or depth than it was given is refused as if
 * the token were not allowed (FOLIO_EINVAL), never grown.
 *
 * Masks are bitsets over token ids: bit (id & 31) of mask[id >> 5]. EOS (the vocab's stop ids)
 * is allowed exactly when the grammar has reached an accepting position; a token with no bytes
 * (a special or control token) is never allowed otherwise. */
#ifndef FOLIO_GRAM_MATCHER_H
#define FOLIO_GRAM_MATCHER_H

#include <stddef.h>
#include <stdint.h>

#include "grammar/grammar.h"

#define GRAM_MAX_ROLLBACK 16

/* Limits. A grammar whose automata would exceed them is refused by gram_compile with
 * FOLIO_EINVAL; a parse that would exceed the matcher's is refused token by token. */
#define GRAM_MAX_NFA_STATES (1 << 16)   /* per rule, before determinizing */
#define GRAM_MAX_DFA_STATES 16384       /* per rule */
/* NFA states gathered into subsets while determinizing one rule (about 0.3 s): what bounds a
 * rule whose DFA stays under the state limit but whose subsets are huge, as (.*a.{3}){30} */
#define GRAM_MAX_DFA_WORK   (1 << 24)
#define GRAM_MAX_STATES     (1 << 16)   /* all rules of one grammar */
#define GRAM_MAX_COMPILED_BYTES ((size_t)256 << 20) /* automata and sets not in the shared cache */
#define GRAM_MAX_STACKS     256         /* stacks (parse alternatives) at one position */
#define GRAM_MAX_DEPTH      1024        /* frames on one stack (nesting of rule calls) */
#define GRAM_MATCHER_NODES  8192        /* stack nodes one matcher holds, history included */
#define GRAM_COMPILE_NODES  (1 << 16)   /* stack nodes of the per-state precompute */
/* Trie steps one gram_compile may spend walking the vocabulary for its states' token sets, all
 * its threads together (about half a second of one core): a grammar with thousands of wide
 * states (a string with a maxLength in the thousands is one such state per character) is
 * refused rather than tying up the machine. */
#define GRAM_MAX_COMPILE_STEPS (1 << 27)

struct gram_vocab;
struct gram_compiled;
struct gram_matcher;

/* bytes[i] / lens[i]: token i's bytes as the detokenizer would emit them (byte-level BPE
 * mapped back to bytes, SentencePiece's U+2581 as a space, <0xNN> as that byte); lens[i] = 0
 * for special and control tokens. stop_ids: the tokens that end a sequence (EOS); a stop id
 * is EOS only, never matched by its bytes. Copies what it needs. NULL on allocation failure. */
struct gram_vocab *gram_vocab_create(int vocab_size, const uint8_t *const *bytes,
                                     const uint32_t *lens, const int32_t *stop_ids,
                                     int num_stop);
void gram_vocab_free(struct gram_vocab *v);
int gram_vocab_size(const struct gram_vocab *v);
/* Words of a mask: (vocab_size + 31) / 32. */
int gram_mask_words(const struct gram_vocab *v);
/* Threads one gram_compile may use for its states' token sets (1, the default, to
 * GRAM_MAX_COMPILE_THREADS); set before the vocabulary is shared. */
#define GRAM_MAX_COMPILE_THREADS 16
void gram_vocab_set_compile_threads(struct gram_vocab *v, int n);

/* Prepares g for v. Thread-safe (v's shared caches are locked). Free with gram_compiled_free;
 * a compiled grammar must outlive its matchers. FOLIO_EINVAL with a message for a grammar that
 * matches nothing or exceeds a GRAM_MAX_* limit. The first grammar to use a rule shape pays
 * for walking the vocabulary from its states (a JSON string: ~10-30 ms at 128k tokens); later
 * grammars with the same rule reuse the sets, so front ends should give each string, number
 * or bounded-length string its own rule (grammar_rule_fresh) rather than inlining it. */
int gram_compile(const struct grammar *g, struct gram_vocab *v, struct gram_compiled **out);
void gram_compiled_free(struct gram_compiled *c);
/* Bytes the compiled grammar holds (its automata and precomputed token sets), for limits and
 * /metrics. */
size_t gram_compiled_bytes(const struct gram_compiled *c);

/* A matcher at the grammar's start. NULL on allocation failure. */
struct gram_matcher *gram_matcher_create(const struct gram_compiled *c);
void gram_matcher_free(struct gram_matcher *m);
void gram_matcher_reset(struct gram_matcher *m);
/* dst takes src's position and history (both from the same compiled grammar): n > 1 forks. */
void gram_matcher_copy(struct gram_matcher *dst, const struct gram_matcher *src);

/* Advances by one token. 0, or FOLIO_EINVAL when the grammar does not allow it (the position
 * is then unchanged). A stop id is allowed when gram_matcher_accepting, and then terminates
 * the matcher. */
int gram_matcher_accept_token(struct gram_matcher *m, int32_t token);
/* Advances by raw bytes (not counted as a token for rollback: they join the current position,
 * so a later rollback(k) returns to the position k tokens back, before them). 0 or
 * FOLIO_EINVAL (unchanged). */
int gram_matcher_accept_bytes(struct gram_matcher *m, const uint8_t *s, size_t n);
/* Undoes the last k accepted tokens (k <= the tokens accepted since the last reset, and
 * <= GRAM_MAX_ROLLBACK). 0 or FOLIO_EINVAL. */
int gram_matcher_rollback(struct gram_matcher *m, int k);

/* The grammar is complete here: EOS is allowed. */
int gram_matcher_accepting(const struct gram_matcher *m);
/* Nothing but EOS can follow (the grammar is complete and cannot be extended), or EOS was
 * accepted: the sample should end with finish_reason "stop". */
int gram_matcher_done(const struct gram_matcher *m);

/* Writes the allowed tokens into mask[gram_mask_words]. After EOS was accepted only the stop
 * ids are set. Never allocates. */
void gram_matcher_fill_mask(struct gram_matcher *m, uint32_t *mask);

#endif
