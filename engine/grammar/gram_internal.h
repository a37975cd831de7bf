/* gram_internal: what the grammar layer's own files share and nobody else may use: the frozen
 * grammar's layout (grammar.c builds it, gram_compile.c reads it), the compiled automata
 * (gram_compile.c builds them, gram_matcher.c runs them) and the vocabulary trie and cache
 * (gram_vocab.c). Exported helpers still carry their file's prefix. */
#ifndef FOLIO_GRAM_INTERNAL_H
#define FOLIO_GRAM_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "grammar/gram_matcher.h"
#include "grammar/grammar.h"

/* ---- the frozen grammar (grammar.c) ------------------------------------------------------ */

enum { GRAMMAR_K_EMPTY, GRAMMAR_K_BYTES, GRAMMAR_K_SEQ, GRAMMAR_K_ALT, GRAMMAR_K_REPEAT,
       GRAMMAR_K_REF };

/* One expression. Children always have smaller indices than their parents (the builder makes
 * them bottom-up and finish keeps the order), so every pass is a loop, never a recursion
 * over a chain of unknown length. */
struct grammar_node {
    uint8_t kind;
    int32_t a; /* BYTES: set index; SEQ/ALT: first kid in kids[]; REPEAT: expr; REF: rule */
    int32_t b; /* SEQ/ALT: number of kids; REPEAT: min */
    int32_t c; /* REPEAT: max (-1 unbounded) */
};

struct grammar {
    struct grammar_node *nodes; /* [num_nodes] */
    int num_nodes;
    int32_t *kids;              /* [num_kids] */
    int num_kids;
    uint32_t (*sets)[8];        /* [num_sets] byte sets */
    int num_sets;
    int32_t *rule_body;         /* [num_rules]; rule 0 is the root */
    char **rule_name;           /* [num_rules] */
    int num_rules;
    uint8_t *nullable;          /* [num_nodes] the node matches "" */
    uint64_t hash;
};

/* ---- compiled automata (gram_compile.c) -------------------------------------------------- */

/* A state's precomputed tokens (see gram_compile.c): accepted ones as a list, a bitset or the
 * list of those not accepted; uncertain ones grouped by the bytes left once the rule ended.
 * A LIST may extend a base: another cached state's sets (a callee's, which have no base of
 * their own), all of whose accepted tokens are accepted too, so that a state entering a rule
 * with a vocabulary-sized set holds its own few tokens rather than a copy of that set. */
enum { GRAM_SET_LIST, GRAM_SET_BITS, GRAM_SET_COMPLEMENT };
struct gram_state_sets {
    int kind;
    int num;             /* ids in ids (LIST, COMPLEMENT); words in bits (BITS) */
    const int32_t *ids;  /* sorted token ids */
    const uint32_t *bits;
    const struct gram_state_sets *base; /* LIST only; NULL none; lives in the vocab's cache */
    int in_cache;        /* set by gram_vocab_cache_put: lives as long as the vocab */
    int num_suffix;      /* uncertain groups */
    const uint32_t *suf_off;  /* [num_suffix + 1] into suf_bytes */
    const uint8_t *suf_bytes;
    const uint32_t *suf_tok_off; /* [num_suffix + 1] into suf_toks */
    const uint32_t *suf_lcp;     /* [num_suffix] bytes shared with the previous suffix */
    const int32_t *suf_toks;
    size_t bytes;        /* memory it holds */
};

struct gram_compiled {
    struct gram_vocab *vocab;
    int num_rules;
    int num_states;           /* over all rules */
    int32_t *rule_start;      /* [num_rules] start state, -1 for a rule that matches nothing */
    int32_t *state_rule;      /* [num_states] */
    uint8_t *state_final;     /* [num_states] */
    uint8_t *state_bytes;     /* [num_states] has a byte transition */
    uint8_t *rule_cls;        /* [num_rules][256] byte -> class of the rule */
    int32_t *rule_ncls;       /* [num_rules] */
    int32_t *trans_off;       /* [num_states] first of the state's row in trans */
    int32_t *trans;           /* rows of [ncls] next states, -1 none */
    int32_t *call_off;        /* [num_states + 1] into call_rule / call_ret */
    int32_t *call_rule;
    int32_t *call_ret;
    const struct gram_state_sets **sets; /* [num_states] NULL for a state without bytes */
    void *owned;              /* sets not in the vocab's cache, freed with the grammar */
    size_t bytes;
};

/* ---- the stack machine (gram_matcher.c), shared by the matcher and the precompute -------- */

/* Persistent stack nodes: (state, parent) hash-consed in a fixed pool, so equal stacks are
 * equal ids and a set of stacks is a set of ints. parent GRAM_BOTTOM ends a stack. */
#define GRAM_BOTTOM (-1)
struct gram_node {
    int32_t state;
    int32_t parent;
    int32_t next;  /* hash chain, or free list */
    int32_t depth;
};
struct gram_machine {
    const struct gram_compiled *c;
    struct gram_node *nodes; /* [cap] */
    int32_t cap, used, free_head, num_free;
    int32_t *buckets;        /* [nbuckets] */
    int32_t nbuckets;
    int32_t mask;            /* buckets in use - 1: grows with the live nodes, so that a small
                              * walk's table stays in L1/L2 instead of spanning nbuckets */
    uint32_t *stamp;         /* [cap] visit marks */
    uint32_t gen;
    int32_t *work;           /* [cap] closure work list */
    int overflow;            /* a limit was hit in the last operation */
};
int gram_machine_init(struct gram_machine *m, const struct gram_compiled *c, int32_t cap);
void gram_machine_release(struct gram_machine *m);
/* Forgets every node (the precompute walks one state at a time). */
void gram_machine_clear(struct gram_machine *m);
int32_t gram_machine_node(struct gram_machine *m, int32_t state, int32_t parent);
/* Closes raw configurations under rule calls and returns: writes the configurations that can
 * take a byte to tops (at most max_tops) and sets *popped when the bottom frame ended.
 * Returns the number of tops, or -1 on overflow (m->overflow set). */
int gram_machine_closure(struct gram_machine *m, const int32_t *raw, int nraw, int32_t *tops,
                         int max_tops, int *popped);
/* One byte from tops: writes the raw successors (same frames, next state). */
int gram_machine_step(struct gram_machine *m, const int32_t *tops, int ntops, uint8_t byte,
                      int32_t *raw, int max_raw);
/* mask |= s's accepted tokens (its base's too); words = (vocab_size + 31) / 32. */
void gram_sets_or_accepted(const struct gram_state_sets *s, uint32_t *mask, int words, int vocab_size);

/* ---- vocabulary (gram_vocab.c) ----------------------------------------------------------- */

/* The trie in DFS preorder: node k has its byte, its depth (the root, k = 0, has depth 0),
 * the token ending there (-1 none) and end[k], the first node after its subtree. */
struct gram_vocab {
    int vocab_size;
    uint8_t **bytes;
    uint32_t *lens;
    uint8_t *is_stop;        /* [vocab_size] */
    int32_t *stop_ids;
    int num_stop;
    int32_t num_trie;
    uint8_t *trie_byte;
    int32_t *trie_depth;
    int32_t *trie_tok;       /* first token at the node, -1 none */
    int32_t *trie_tok_next;  /* [vocab_size] the next token with the same bytes, -1 none */
    int32_t *trie_end;
    uint32_t max_len;
    int compile_threads;     /* gram_vocab_set_compile_threads; 1 by default */
    pthread_mutex_t lock;
    struct gram_cache_entry **cache; /* open hash by key */
    size_t cache_cap, cache_count, cache_bytes;
};
/* The cache of precomputed state sets, keyed by a 128-bit structural hash. Entries live until
 * the vocab is freed. Lookup returns NULL when absent; insert takes ownership of s (which must
 * be one malloc block) and returns the cached copy (which may be an earlier one), or NULL
 * when the cache is full (the caller keeps s). */
const struct gram_state_sets *gram_vocab_cache_get(struct gram_vocab *v, uint64_t k0, uint64_t k1);
const struct gram_state_sets *gram_vocab_cache_put(struct gram_vocab *v, uint64_t k0, uint64_t k1,
                                                   struct gram_state_sets *s);

#endif
