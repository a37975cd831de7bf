/* engine: the serving core. It owns the model, the tokenizer, the paged KV cache, the
 * scheduler and the sampler, and runs the step loop: schedule, one forward pass over the
 * flattened batch, sample, detokenize, stop checks, and hand each request its outputs.
 *
 * Threads: any number of threads submit, read, abort and release requests; one engine thread
 * (engine_start) runs the steps. Without engine_start, the caller drives the steps itself
 * with engine_step (tests and offline benchmarks do, for determinism).
 *
 * Memory: a request's buffers are allocated in engine_submit, on the caller's thread; the step
 * loop allocates nothing. Each sample streams through a bounded buffer; a sample whose reader
 * falls behind is paused (not scheduled) until the reader catches up, so a slow client costs
 * memory it was already granted and nothing more. */
#ifndef FOLIO_ENGINE_H
#define FOLIO_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "model/config.h"
#include "core/sampler.h"

struct engine;
struct engine_req;
struct tokenizer;
struct structured;

struct engine_params {
    const char *model;          /* checkpoint directory */
    const char *dtype;          /* "auto" (default), float32, float16, bfloat16 */
    const char *kv_cache_dtype; /* "auto" (default: float32 for float32 weights, else bfloat16),
                                 * bfloat16, float32, fp8 (config_kv_dtype) */
    const char *quantization;   /* at load: NULL/"none" (default), "int8", "int4", "fp8" */
    const char *device;         /* "auto" (default: cuda when built with it and a GPU is
                                 * present, else cpu), "cpu", "cuda" */
    int threads;                /* CPU threads; 0 = all */
    int block_size;             /* tokens per KV block (16) */
    int max_num_seqs;           /* sequences in one batch (256) */
    int max_num_batched_tokens; /* tokens in one batch (2048): the prefill chunk */
    int max_model_len;          /* 0: the model's max_position_embeddings */
    double kv_cache_space;      /* GiB of KV cache on CPU (4); never more than max_num_seqs
                                 * full-length sequences need */
    double gpu_memory_utilization; /* this engine's share of the GPU's memory (0.9), as vLLM:
                                    * weights, activations and KV cache all come out of it */
    int num_blocks;             /* > 0: exactly this many KV blocks (overrides the space) */
    int enable_prefix_caching;  /* 1 */
    int enforce_eager;          /* 1: no CUDA graphs (vLLM's --enforce-eager) */
    uint64_t seed;              /* seeds the seeds of unseeded requests; 0 = from the clock */
    int max_waiting;            /* > 0: engine_submit refuses (FOLIO_EBUSY) once this many
                                 * requests wait; 0 = no limit, as vLLM */
};

struct engine_params engine_default_params(void);

/* Loads the model and tokenizer and allocates everything. Fails with a message that says what
 * would fit when the KV cache cannot hold one max_model_len sequence. Free with engine_free. */
int engine_create(const struct engine_params *p, struct engine **out);
/* Stops the engine thread, finishes every request as aborted and frees the engine. Requests
 * not yet released stay readable (they report the abort) until engine_release. */
void engine_free(struct engine *e);

/* Starts the engine thread. */
int engine_start(struct engine *e);
/* Runs one step on the calling thread (only when the engine thread is not started). Returns
 * the number of sequences scheduled (0: nothing to do) or a negative code. */
int engine_step(struct engine *e);

const struct model_config *engine_model_config(const struct engine *e);
const struct tokenizer *engine_tokenizer(const struct engine *e);
int engine_max_model_len(const struct engine *e);
int engine_num_blocks(const struct engine *e);
int engine_block_size(const struct engine *e);
/* Sequences the engine runs at once (--max-num-seqs): a request's prompts x n must fit. */
int engine_max_num_seqs(const struct engine *e);
/* One line on what runs where: architecture, layers, weight dtype and size, backend, KV
 * cache. */
void engine_describe(const struct engine *e, char *buf, size_t cap);
/* Where the engine's memory goes, for /stats, /metrics and the console's GPU bar. */
struct engine_memory {
    const char *device;         /* "cpu" or "cuda" */
    size_t weights;             /* resident weight bytes */
    const char *weights_dtype;  /* the layers' matrices: "bfloat16", "int8", "int4", "int4_zp", "float8_e4m3", ... */
    const char *quantization;   /* "none", "int8"/"int4"/"fp8" (at load), or the checkpoint's quant_method */
    size_t kv_cache;            /* the KV pool */
    const char *kv_dtype;       /* its elements' dtype: "float32", "bfloat16", "float8_e4m3" */
    size_t activations;         /* activation scratch and the backend's workspaces */
    size_t other;               /* GPU: what else the profiling pass saw allocated (library
                                 * workspaces); 0 on the CPU */
    size_t device_total, device_free; /* GPU, free as of the call; 0 on the CPU */
    double utilization;         /* GPU: --gpu-memory-utilization; 0 on the CPU */
};
void engine_memory(const struct engine *e, struct engine_memory *out);

struct engine_request {
    const int32_t *prompt;      /* [num_prompt] token ids (copied) */
    int num_prompt;
    struct sampling_params params; /* (copied, strings included) */
    int priority;               /* lower runs first (vLLM's priority scheduling); 0 */
    struct structured *structured; /* the output's grammar (engine_structured), or NULL; the
                                    * request takes its own reference */
};

/* Compiles a structured-output spec (a JSON Schema, regex, choice or grammar) for this engine's
 * vocabulary, or finds it compiled; on the caller's thread. *out is the caller's reference
 * (structured_release). Counts the request and its compile time in the metrics. Errors name
 * what is wrong or unsupported (FOLIO_EINVAL, FOLIO_EUNSUP). */
struct structured_spec;
int engine_structured(struct engine *e, const struct structured_spec *spec, struct structured **out);

/* Validates and queues a request. Errors (FOLIO_EINVAL, message in folio_last_error()) use
 * the OpenAI API's wording: a prompt plus max_tokens beyond max_model_len, a bad parameter, a
 * request that could never fit the whole KV cache. FOLIO_EBUSY: the waiting queue is full
 * (max_waiting). The handle must be released with engine_release. */
int engine_submit(struct engine *e, const struct engine_request *r, struct engine_req **out);

/* Asks the engine to stop the request; its blocks return to the pool at the next step and its
 * samples finish with ENGINE_FINISH_ABORT. Idempotent; thread-safe. */
void engine_abort(struct engine_req *h);
/* Drops the caller's handle (aborting the request if it is still running). */
void engine_release(struct engine_req *h);

enum engine_finish { ENGINE_FINISH_NONE, ENGINE_FINISH_STOP, ENGINE_FINISH_LENGTH, ENGINE_FINISH_ABORT };
const char *engine_finish_name(enum engine_finish f); /* "stop", "length", "abort", NULL */

/* What one read returns: everything one sample produced since the last read of it. Pointers
 * stay valid until the next engine_read or engine_release of the handle. */
struct engine_output {
    int index;                                 /* which sample, 0 .. n-1 */
    int num_tokens;
    const int32_t *token_ids;                  /* [num_tokens] */
    const struct sampler_logprobs *logprobs;   /* [num_tokens], or NULL without logprobs */
    const char *text;                          /* the text delta (NUL-terminated) */
    size_t text_len;
    enum engine_finish finish;                 /* set on the sample's last output */
    int32_t stop_token;                        /* the stop_token_ids entry that ended it, else -1 */
    const char *stop_str;                      /* the stop string that ended it, else NULL */
    const char *error;                         /* an engine failure ended it, else NULL */
    int num_prompt_tokens;
    int num_cached_tokens;                     /* prompt tokens served from the prefix cache */
    int num_output_tokens;                     /* this sample's tokens so far */
    /* folio_now() times, measured on the engine thread: submission, this sample's first
     * token (0 before it), its finish (0 before it). */
    double arrival_time, first_token_time, finish_time;
};

enum { ENGINE_READ_TIMEOUT = 0, ENGINE_READ_OUTPUT = 1, ENGINE_READ_DONE = 2 };

/* Waits up to timeout_ms (< 0: forever) for output of any sample. Returns ENGINE_READ_OUTPUT
 * with *out filled, ENGINE_READ_TIMEOUT, or ENGINE_READ_DONE once every sample has finished
 * and its outputs have been read. */
int engine_read(struct engine_req *h, struct engine_output *out, int timeout_ms);

struct engine_stats {
    int num_running;            /* sequences scheduled in the running set */
    int num_waiting;            /* sequences queued, preempted ones included */
    int num_preempted_waiting;  /* of the waiting, those preempted */
    long long num_preemptions;
    int num_requests;           /* requests not finished */
    int kv_blocks, kv_used, kv_cached, kv_free, block_size;
    int kv_touched;             /* blocks ever written (kv_cache_stats.touched) */
    int kv_local_blocks, kv_local_used; /* the sliding layers' pool of a split cache (0, 0 without) */
    double kv_usage;            /* used / total */
    long long kv_allocated_slots, kv_stored_tokens; /* now */
    double waste;               /* now: 1 - stored / allocated slots */
    long long prefix_queries, prefix_hits;
    long long cow_copies;
    long long prompt_tokens;    /* computed (prefilled) prompt tokens, recomputation included */
    long long generation_tokens;
    long long requests_finished;
    long long steps;
    double forward_seconds;     /* engine thread time in forward passes, cumulative */
    double sample_seconds;      /* ... in sampling, detokenizing and stop checks */
    double gen_tokens_per_s;    /* over the last second or so of steps; 0 when idle */
    long long greedy_device_steps; /* steps whose argmax ran on the device (no logits moved) */
    long long graph_steps;      /* steps replayed from a CUDA graph */
    int cuda_graphs;            /* graphs recorded at load (0: eager) */
};

void engine_get_stats(struct engine *e, struct engine_stats *out);

/* The latency histograms and finish counters (metrics.h), recorded on the engine thread;
 * owned by the engine. */
struct metrics *engine_metrics(struct engine *e);

#endif
