/* scheduler: continuous batching over the paged KV cache (vLLM v1's scheduler).
 *
 * Every sequence is a list of tokens (prompt, then outputs) of which the first num_computed
 * have K/V in the cache. Each step the scheduler hands out a token budget: running sequences
 * first, in order, each getting its uncomputed tokens (one for a decode, a chunk for a prompt
 * that did not fit in one step); then waiting sequences, in order, while the budget, the
 * sequence limit and the pool allow. Prefill and decode are the same operation, so a long
 * prompt is chunked across steps and a preempted sequence is simply recomputed.
 *
 * Order is (priority, arrival): a lower priority value runs first, then first come first
 * served. When a running sequence cannot get a block, the last sequence in that order is
 * preempted by recompute: its blocks are freed and it returns to the waiting queue with its
 * tokens, to be prefilled again later (its cached prefix, if any, is reused).
 *
 * Sequences are caller structs linked into intrusive lists: nothing here allocates after
 * scheduler_create. Not thread-safe: the engine thread owns it. */
#ifndef FOLIO_SCHEDULER_H
#define FOLIO_SCHEDULER_H

#include <stdint.h>

#include "core/kv_cache.h"

enum scheduler_state { SCHED_NEW, SCHED_WAITING, SCHED_RUNNING, SCHED_DONE };

struct scheduler_seq {
    struct kv_seq kv;
    struct kv_seq kv_local; /* in the sliding layers' cache, when there is one (see scheduler_params) */
    const int32_t *tokens;  /* [num_tokens] prompt then outputs (caller storage) */
    int num_tokens;
    int num_prompt;
    int priority;           /* lower runs first */
    uint64_t arrival;       /* ties in priority: lower first */
    int seats;              /* max_num_seqs places this sequence stands for (n before a fork) */
    int paused;             /* set by the caller: skip this sequence this step */
    int num_cached;         /* prompt tokens found in the prefix cache at first admission */
    int admitted;           /* has been admitted once (num_cached is final) */
    int num_preemptions;
    enum scheduler_state state;
    struct scheduler_seq *prev, *next; /* in the waiting or running list */
};

/* A model whose layers all slide over a window (Mistral) keeps only the window's blocks in
 * its one cache; one that mixes sliding and full layers (Gemma 2/3) keeps its sliding layers
 * in a second cache, kv_local, where each sequence holds only the window's blocks. */
struct scheduler_params {
    int max_num_seqs;
    int max_num_batched_tokens;
    int window;                /* > 0: the layers of kv all slide over this many tokens */
    struct kv_cache *kv_local; /* NULL, or the sliding layers' cache (must outlive the scheduler) */
    int local_window;          /* kv_local's window */
};

/* One step's work: seqs[i] computes tokens [num_computed, num_computed + num_new[i]). */
struct scheduler_output {
    int num_seqs;
    int num_tokens;
    struct scheduler_seq **seqs; /* [max_num_seqs] */
    int *num_new;            /* [max_num_seqs] */
    int32_t *copies;         /* [max_num_seqs, 2] (src, dst) blocks to copy before the step */
    int num_copies;
    int32_t *copies_local;   /* [max_num_seqs, 2] the same in kv_local */
    int num_copies_local;
    int num_preempted;       /* sequences preempted by this step */
};

struct sched;

/* NULL on allocation failure. The kv cache must outlive the scheduler. */
struct sched *scheduler_create(const struct scheduler_params *p, struct kv_cache *kv);
void scheduler_free(struct sched *s);

/* Queues a new sequence (tokens, num_tokens, num_prompt, priority, arrival, seats set; kv
 * initialized with kv_seq_init). */
void scheduler_add(struct sched *s, struct scheduler_seq *q);
/* Takes q out of whichever list holds it and releases its blocks; q ends SCHED_DONE. */
void scheduler_finish(struct sched *s, struct scheduler_seq *q);
/* child (kv initialized; tokens, priority etc. set) shares the running parent's blocks and
 * runs right after it, taking one of the parent's seats. */
void scheduler_fork(struct sched *s, struct scheduler_seq *parent, struct scheduler_seq *child);

/* Plans the next step into out (whose arrays scheduler_create sized; see scheduler_output_arrays).
 * Reserves the blocks the step writes. Returns the number of scheduled sequences. */
int scheduler_schedule(struct sched *s, struct scheduler_output *out);
/* After the forward pass: the scheduled tokens are computed. */
void scheduler_commit(struct sched *s, const struct scheduler_output *out);

/* Points out's arrays at storage owned by s. */
void scheduler_output_init(struct sched *s, struct scheduler_output *out);

int scheduler_num_running(const struct sched *s);   /* sequences */
int scheduler_num_waiting(const struct sched *s);
long long scheduler_num_preemptions(const struct sched *s);
int scheduler_num_preempted_waiting(const struct sched *s); /* of the waiting, those preempted */

#endif
