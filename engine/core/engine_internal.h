/* engine_internal.h: the engine's shared state, for its two files only: engine.c (creation
 * and the step loop, on the engine thread) and engine_request.c (a request's side: submission,
 * its output stream, abort and release, on the callers' threads). Not a public header.
 *
 * Locks: e->mu guards the submission queue, the kick counter and the stop flag; each request's
 * r->mu guards its samples' pending output. The engine thread never holds e->mu while it takes
 * a request's lock, so a reader may take e->mu under r->mu (to wake the engine). */
#ifndef FOLIO_ENGINE_INTERNAL_H
#define FOLIO_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "core/scheduler.h"

struct backend;
struct model;
struct tokenizer;
struct kv_cache;
struct batch;
struct sched;
struct threadpool;
struct sampler;
struct detok;
struct stop;
struct stop_set;
struct gram_matcher;
struct structured_cache;

/* Tokens a sample's stream holds before its reader must drain it; one step adds at most one. */
#define STREAM_TOKENS 64

struct sample {
    struct scheduler_seq seq;
    struct engine_req *req;
    int index;
    int32_t *tokens;      /* [num_prompt + max_tokens] prompt, then outputs */
    int32_t *blocks;      /* [max_blocks_per_seq] */
    int32_t *blocks_local; /* [max_blocks_per_seq] in the sliding layers' cache, or NULL */
    struct detok *dt;
    struct stop *stop;    /* NULL without stop strings; reads req->stop_set */
    struct gram_matcher *gm; /* the grammar's position, or NULL without structured output */
    int num_output;
    int done;             /* engine side: finished, output recorded */
    int out_count;        /* num_output as of the last emit, under req->mu */

    /* Pending output, under req->mu. */
    int32_t *p_ids;                  /* [STREAM_TOKENS] */
    struct sampler_logprobs *p_lps;  /* [STREAM_TOKENS], NULL without logprobs */
    char *p_text;                    /* [req->text_cap] */
    int p_n;
    size_t p_text_n;
    enum engine_finish finish;
    int32_t stop_token;
    int stop_idx;
    const char *error;
    int finish_read;                 /* the reader has seen the finish */
    double t_first, t_finish, t_last; /* t_last: the latest token, for inter-token latency */
};

struct engine_req {
    struct engine *e;
    atomic_int refs;
    atomic_int abort;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int engine_gone;       /* under mu: the engine dropped its reference */
    int stalled;           /* under mu: a sample was paused for want of stream room */
    int n, num_prompt, max_tokens, priority;
    int32_t *prompt;       /* [num_prompt] */
    struct sampling_params sp; /* its pointers lead into the copies below */
    struct stop_set *stop_set; /* NULL without stop strings; its samples' stop streams share it */
    const char **stops;    /* [sp.num_stop] the strings, inside stop_set */
    int32_t *stop_ids;
    struct sampler_logit_bias *bias;
    struct structured *structured; /* a reference, or NULL */
    uint64_t seed;
    double t_arrival;
    int forked, num_done, dropping;
    int num_cached;        /* under mu */
    char error[256];       /* under mu: why the engine failed the request */
    size_t text_cap, step_text;
    char *tmp;             /* [step_text] engine-side text scratch */
    char *tmp2;            /* [step_text] */
    struct sample *samples; /* [n] */
    struct engine_req *prev, *next;

    /* Reader side. */
    int32_t *r_ids;
    struct sampler_logprobs *r_lps;
    char *r_text;
    int cursor;
};

struct engine {
    struct engine_params p;
    struct backend *b;
    struct model *m;
    struct tokenizer *tok;
    struct kv_cache *kv;
    struct kv_cache *kv_local;   /* the sliding layers' cache (config_kv_split), or NULL */
    int num_local_blocks;
    enum folio_dtype kv_dtype;   /* --kv-cache-dtype resolved (config_kv_dtype) */
    struct sched *sched;
    struct threadpool *tp;       /* the CPU backend's (borrowed), else own_tp */
    struct threadpool *own_tp;   /* sampling threads when the model runs on a GPU */
    int on_gpu;
    struct sampler **samplers;   /* [threadpool_size] one per thread */
    int num_samplers;
    const struct model_config *cfg;
    int V, bs, mbps, max_model_len, num_blocks, max_seqs, max_tokens_step;
    int32_t eos[CONFIG_MAX_EOS + 1];
    int num_eos;
    size_t max_delta;
    char notice[256];     /* what engine_create adjusted, for engine_describe */
    long long greedy_device_steps;
    struct engine_memory mem;    /* settled in engine_create (device_free is re-read) */

    /* The batch. */
    struct batch *batch;
    struct sample **logit_sample;                  /* [max_seqs] the sample of each logits row */
    int32_t *sampled;                              /* [max_seqs] the token drawn from each row */
    struct sampler_logprobs *sampled_lp;           /* [max_seqs] */
    struct engine_req **drop;                      /* [max_seqs] */
    int num_drop;
    float *logits;                                 /* [max_seqs, V] */
    float *row;                                    /* [V] */
    uint32_t **masks;                              /* [num_samplers][mask words] grammar masks */
    double *mask_s;                                /* [max_seqs] each row's mask time, 0 if none */
    struct structured_cache *structured;           /* compiled grammars */
    /* Masks ahead of the forward pass (a GPU's, or FOLIO_MASK_OVERLAP=1): a worker fills each
     * constrained row's mask into row_masks while the device computes the logits. */
    int mask_overlap;
    uint32_t *row_masks;                           /* [max_seqs][mask words], or NULL */
    int *row_masked;                               /* [max_seqs] row_masks[i] holds row i's mask */
    pthread_t mask_thread;
    pthread_mutex_t mask_mu;
    pthread_cond_t mask_cv;
    int mask_job, mask_busy, mask_stop;            /* under mask_mu: rows to fill, running, quit */
    struct scheduler_output out;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct engine_req *in_head, *in_tail; /* under mu */
    long kicks;                           /* under mu */
    int stopping, started;                /* under mu */
    uint64_t seed_state, arrivals;        /* under mu */
    atomic_int aborts;
    pthread_t thread;

    struct engine_req *live_head, *live_tail; /* engine thread only */
    int num_live;

    struct metrics *metrics;
    int num_incoming;                     /* under mu: submitted, not yet taken in */

    pthread_mutex_t stats_mu;
    struct engine_stats stats; /* under stats_mu */
    long long prompt_tokens, gen_tokens, finished, steps;
    double forward_s, sample_s;
    double win_t0;
    double last_step_t; /* under stats_mu */
    long long win_gen0;
    double tps;
};

/* engine_request.c */
void engine_req_unref(struct engine_req *r); /* the last reference frees the request */
/* Records one token (id < 0: none) with its text and, when finish is set, the sample's end. */
void engine_emit(struct sample *s, int32_t id, const struct sampler_logprobs *lp, const char *text, size_t n,
                 enum engine_finish finish, const char *error);
/* Whether the sample's stream can take one more step's output (under req->mu). */
int engine_has_room(const struct sample *s);

#endif
