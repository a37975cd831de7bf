/* engine: see engine.h. This file creates and frees the engine and runs the step loop on the
 * engine thread; engine_request.c is a request's side. Shared state and the locking rules:
 * engine_internal.h. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "base/quant.h"
#include "text/detok.h"
#include "core/batch.h"
#include "core/engine_internal.h"
#include "core/kv_cache.h"
#include "core/mem_plan.h"
#include "core/metrics.h"
#include "model/model.h"
#include "core/sampler.h"
#include "text/stop.h"
#include "base/threadpool.h"
#include "text/tokenizer.h"
#include "base/util.h"
#include "core/structured.h"
#include "grammar/gram_matcher.h"

struct engine_params engine_default_params(void) {
    return (struct engine_params){
        .dtype = "auto",
        .kv_cache_dtype = "auto",
        .block_size = 16,
        .max_num_seqs = 256,
        .max_num_batched_tokens = 2048,
        .kv_cache_space = 4.0,
        .gpu_memory_utilization = 0.9,
        .enable_prefix_caching = 1,
    };
}

const char *engine_finish_name(enum engine_finish f) {
    switch (f) {
    case ENGINE_FINISH_STOP: return "stop";
    case ENGINE_FINISH_LENGTH: return "length";
    case ENGINE_FINISH_ABORT: return "abort";
    default: return NULL;
    }
}

const struct model_config *engine_model_config(const struct engine *e) { return e->cfg; }
const struct tokenizer *engine_tokenizer(const struct engine *e) { return e->tok; }
int engine_max_model_len(const struct engine *e) { return e->max_model_len; }
int engine_num_blocks(const struct engine *e) { return e->num_blocks; }
int engine_block_size(const struct engine *e) { return e->bs; }

static void *mask_main(void *arg);

static const char *engine_backend_name(const struct engine *e) {
#ifdef FOLIO_CUDA
    if (e->on_gpu) return backend_cuda_name(e->b);
#endif
    return backend_cpu_isa(e->b);
}

void engine_describe(const struct engine *e, char *buf, size_t cap) {
    char graphs[64] = "", experts[64] = "", local[96] = "";
    int largest = 0;
    if (model_num_graphs(e->m, &largest) > 0) snprintf(graphs, sizeof graphs, ", CUDA graphs up to batch %d", largest);
    if (e->cfg->num_experts)
        snprintf(experts, sizeof experts, ", %d of %d experts a token", e->cfg->num_experts_per_tok,
                 e->cfg->num_experts);
    if (e->kv_local)
        snprintf(local, sizeof local, " (+ %d for the sliding layers' %d-token windows)", e->num_local_blocks,
                 e->cfg->sliding_window);
    /* The MiB are what one decode token reads: a MoE's active experts, not all of them. */
    snprintf(buf, cap,
             "(%s, %d layers%s, %s weights, %.1f MiB a token), %s backend %s, %d KV blocks of %d tokens%s in %s, "
             "max_model_len %d%s%s%s%s",
             e->cfg->arch_name, e->cfg->num_layers, experts, folio_dtype_name(model_matrix_dtype(e->m)),
             (double)model_weight_bytes(e->m) / (1 << 20), e->on_gpu ? "cuda" : "cpu", engine_backend_name(e),
             e->num_blocks, e->bs, local, folio_dtype_name(e->kv_dtype),
             e->max_model_len, e->p.enable_prefix_caching ? ", prefix caching" : "", graphs,
             e->notice[0] ? "; " : "",
             e->notice);
}

void engine_memory(const struct engine *e, struct engine_memory *out) {
    *out = e->mem;
    struct backend_mem bm;
    if (e->on_gpu && backend_mem_info(e->b, &bm) == 0) out->device_free = bm.free;
}

/* ---- creation ---- */

/* Sizes the pool and settles max_model_len before the model loads (the length sizes the
 * block tables). The pool is the requested space, capped at what max_num_seqs full-length
 * sequences can use. It must hold one full-length sequence: when the length was not given,
 * it is lowered to what fits (vLLM would refuse to start); when it was, the error says the
 * largest length that would fit. */
/* A split cache (config_kv_split): block_bytes becomes a block of the full layers, and
 * local_bytes a block of the sliding ones, whose pool can use at most *local_max blocks. */
static void split_blocks(struct engine *e, const struct model_config *c, int len, size_t *block_bytes,
                         size_t *local_bytes, int *local_max) {
    const int bs = e->p.block_size;
    *block_bytes = config_kv_block_bytes(c, bs, e->kv_dtype);
    *local_bytes = 0;
    *local_max = 0;
    if (!config_kv_split(c)) return;
    *block_bytes = config_kv_block_bytes_layers(c, bs, 0, e->kv_dtype);
    *local_bytes = config_kv_block_bytes_layers(c, bs, 1, e->kv_dtype);
    *local_max = config_kv_local_blocks(c, bs, e->p.max_num_seqs, e->p.max_num_batched_tokens, len);
}

static int size_kv(struct engine *e, const struct model_config *c, int *max_len, int *num_blocks) {
    const double gib = 1024.0 * 1024.0 * 1024.0;
    const int bs = e->p.block_size;
    int len = e->p.max_model_len > 0 ? e->p.max_model_len : c->max_position_embeddings;
    if (len > c->max_position_embeddings)
        return folio_err(FOLIO_EINVAL, "--max-model-len %d exceeds the model's max_position_embeddings %d", len,
                         c->max_position_embeddings);
    size_t block_bytes, local_bytes;
    int local_max;
    split_blocks(e, c, len, &block_bytes, &local_bytes, &local_max);
    long long nb;
    e->num_local_blocks = local_max; /* with --num-blocks, as many as it can use */
    if (e->p.num_blocks > 0) {
        nb = e->p.num_blocks;
    } else {
        if (!(e->p.kv_cache_space > 0))
            return folio_err(FOLIO_EINVAL, "--kv-cache-space must be a positive number of GiB");
        nb = (long long)(e->p.kv_cache_space * gib / (double)block_bytes);
        if (local_bytes)
            mem_plan_split(e->p.kv_cache_space * gib, block_bytes, local_bytes, local_max, &nb, &e->num_local_blocks);
    }
    if (nb * bs < len && e->p.max_model_len <= 0 && nb > 0) {
        len = (int)(nb * bs);
        snprintf(e->notice, sizeof e->notice,
                 "max_model_len lowered from %d to %d to fit the KV cache (%.4f GiB); set --max-model-len or "
                 "--kv-cache-space to choose",
                 c->max_position_embeddings, len, (double)nb * block_bytes / gib);
    }
    const long long need = (len + bs - 1) / bs;
    if (nb < need)
        return folio_err(FOLIO_EINVAL,
                         "the KV cache (%lld blocks of %d tokens, %.4f GiB) cannot hold one sequence of "
                         "max_model_len %d tokens, which needs %lld blocks (%.4f GiB); the largest max_model_len "
                         "that fits is %lld: lower --max-model-len or raise --kv-cache-space%s",
                         nb, bs, (double)nb * block_bytes / gib, len, need, (double)need * block_bytes / gib,
                         nb * bs,
                         e->kv_dtype == FOLIO_F32    ? ", or use --kv-cache-dtype bfloat16 (twice the tokens)"
                         : e->kv_dtype == FOLIO_BF16 ? ", or use --kv-cache-dtype fp8 (twice the tokens)"
                                                     : "");
    if (e->p.num_blocks <= 0 && nb > (long long)e->p.max_num_seqs * need) nb = (long long)e->p.max_num_seqs * need;
    if (nb > INT_MAX / bs) nb = INT_MAX / bs;
    *max_len = len;
    *num_blocks = (int)nb;
    return 0;
}

/* --device: the GPU when asked, or by default when this build has CUDA and a GPU is there. */
static int create_backend(struct engine *e) {
    const char *dev = e->p.device ? e->p.device : "auto";
    if (strcmp(dev, "auto") != 0 && strcmp(dev, "cpu") != 0 && strcmp(dev, "cuda") != 0)
        return folio_err(FOLIO_EINVAL, "--device must be auto, cpu or cuda, not '%s'", dev);
#ifdef FOLIO_CUDA
    if (!strcmp(dev, "cuda") || (!strcmp(dev, "auto") && backend_cuda_available())) {
        e->on_gpu = 1;
        return backend_cuda_create(0, &e->b);
    }
#else
    if (!strcmp(dev, "cuda"))
        return folio_err(FOLIO_EUNSUP, "this folio-engine was built without CUDA (build it with make CUDA=1)");
#endif
    return backend_cpu_create(&(struct backend_cpu_params){.n_threads = e->p.threads}, &e->b);
}

/* GPU, before loading: the requested length is valid, this engine's share of the device is
 * free, and the weights fit in it (mem_plan.h). */
static int plan_gpu(struct engine *e, const struct model_config *c, struct model_params *mp, struct mem_plan *plan) {
    const int len = e->p.max_model_len > 0 ? e->p.max_model_len : c->max_position_embeddings;
    if (len > c->max_position_embeddings)
        return folio_err(FOLIO_EINVAL, "--max-model-len %d exceeds the model's max_position_embeddings %d", len,
                         c->max_position_embeddings);
    struct backend_mem bm;
    int rc = backend_mem_info(e->b, &bm);
    if (rc) return rc;
    const enum folio_dtype dt = mp->dtype_auto ? c->torch_dtype : mp->dtype;
    size_t block_bytes, local_bytes;
    int local_max;
    split_blocks(e, c, len, &block_bytes, &local_bytes, &local_max);
    e->num_local_blocks = local_max;
    *plan = (struct mem_plan){
        .total = bm.total, .free = bm.free, .utilization = e->p.gpu_memory_utilization,
        .weight_bytes = config_weight_bytes(c, mp->quantization ? mp->quantization : dt),
        .dtype = folio_dtype_name(config_matrix_dtype(c, mp->quantization ? mp->quantization : dt)),
        .block_bytes = block_bytes, .kv_dtype = folio_dtype_name(e->kv_dtype), .local_block_bytes = local_bytes,
        .local_blocks_max = local_max, .block_size = e->p.block_size,
        .max_model_len = len, .len_given = e->p.max_model_len > 0, .max_num_seqs = e->p.max_num_seqs};
    mp->max_model_len = len;
    return mem_plan_check(plan);
}

/* GPU, after loading: a profiling pass at the largest batch, then what is left of the share
 * becomes KV blocks (or exactly --num-blocks). Everything the engine allocated so far counts:
 * the free memory's drop since plan_gpu measured it. */
static int size_kv_gpu(struct engine *e, struct mem_plan *plan) {
    int rc;
    struct backend_mem bm;
    if ((rc = model_profile(e->m)) || (rc = backend_sync(e->b)) || (rc = backend_mem_info(e->b, &bm)))
        return rc;
    plan->non_kv_bytes = plan->free > bm.free ? plan->free - bm.free : 0;
    plan->weight_bytes = config_weight_bytes(model_config(e->m), model_matrix_dtype(e->m));
    plan->dtype = folio_dtype_name(model_matrix_dtype(e->m));
    if (e->p.num_blocks > 0) {
        const long long need = ((long long)plan->max_model_len + plan->block_size - 1) / plan->block_size;
        if (e->p.num_blocks < need)
            return folio_err(FOLIO_EINVAL,
                             "%d KV blocks of %d tokens cannot hold one sequence of max_model_len %d; the largest "
                             "max_model_len that fits is %lld",
                             e->p.num_blocks, plan->block_size, plan->max_model_len,
                             (long long)e->p.num_blocks * plan->block_size);
        e->num_blocks = e->p.num_blocks;
        return 0;
    }
    if ((rc = mem_plan_kv(plan))) return rc;
    e->num_blocks = plan->num_blocks;
    if (plan->local_block_bytes) e->num_local_blocks = plan->num_local_blocks;
    model_set_max_model_len(e->m, plan->out_max_model_len);
    snprintf(e->notice, sizeof e->notice, "%s", plan->notice);
    return 0;
}

int engine_create(const struct engine_params *pp, struct engine **out) {
    int rc;
    struct engine *e = calloc(1, sizeof *e);
    if (!e) return folio_err(FOLIO_ENOMEM, "out of memory");
    e->p = pp ? *pp : engine_default_params();
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->stats_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->cv, &ca);
    pthread_condattr_destroy(&ca);

    if (!(e->metrics = metrics_create())) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory");
        goto fail;
    }
    if (!e->p.model) {
        rc = folio_err(FOLIO_EINVAL, "no model directory given");
        goto fail;
    }
    if (e->p.max_num_seqs < 1 || e->p.max_num_batched_tokens < 1 || e->p.block_size < 1) {
        rc = folio_err(FOLIO_EINVAL, "--max-num-seqs, --max-num-batched-tokens and --block-size must be positive");
        goto fail;
    }
    struct model_params mp = model_default_params();
    const char *dtype = e->p.dtype ? e->p.dtype : "auto";
    if (strcmp(dtype, "auto") != 0) {
        mp.dtype_auto = 0;
        if ((rc = folio_dtype_parse(dtype, &mp.dtype))) goto fail;
    }
    if ((rc = quant_parse_method(e->p.quantization, &mp.quantization))) goto fail;
    mp.block_size = e->p.block_size;
    mp.max_num_seqs = mp.max_num_logits = e->p.max_num_seqs;
    mp.max_num_batched_tokens = e->p.max_num_batched_tokens;
    struct model_config cfg;
    struct mem_plan plan = {0};
    if ((rc = config_load(e->p.model, &cfg)) || (rc = tokenizer_load(e->p.model, &e->tok)) || (rc = create_backend(e)))
        goto fail;
    /* auto follows the weights' float dtype: --dtype, else the checkpoint's. */
    if ((rc = config_kv_dtype(e->p.kv_cache_dtype, mp.dtype_auto ? cfg.torch_dtype : mp.dtype, &e->kv_dtype)))
        goto fail;
    if (!backend_supports_kv_dtype(e->b, e->kv_dtype)) {
        rc = folio_err(FOLIO_EUNSUP, "--kv-cache-dtype %s is not supported on the %s backend",
                       folio_dtype_name(e->kv_dtype), e->on_gpu ? "cuda" : "cpu");
        goto fail;
    }
    mp.kv_dtype = e->kv_dtype;
    if (e->on_gpu) {
        if ((rc = plan_gpu(e, &cfg, &mp, &plan))) goto fail;
    } else if ((rc = size_kv(e, &cfg, &mp.max_model_len, &e->num_blocks))) {
        goto fail;
    }
    if ((rc = model_load(e->p.model, &mp, e->b, &e->m))) goto fail;
    if (e->on_gpu && (rc = size_kv_gpu(e, &plan))) goto fail;
    e->cfg = model_config(e->m);
    e->V = e->cfg->vocab_size;
    e->bs = e->p.block_size;
    e->mbps = model_max_blocks_per_seq(e->m);
    e->max_model_len = model_params(e->m)->max_model_len;
    e->max_seqs = e->p.max_num_seqs;
    e->max_tokens_step = e->p.max_num_batched_tokens;
    for (int i = 0; i < e->cfg->num_eos_token_ids; i++) e->eos[e->num_eos++] = e->cfg->eos_token_ids[i];
    if (e->num_eos == 0 && tokenizer_eos_id(e->tok) >= 0) e->eos[e->num_eos++] = tokenizer_eos_id(e->tok);

    if (e->num_local_blocks) {
        rc = model_alloc_kv_split(e->m, e->num_blocks, e->num_local_blocks);
    } else {
        rc = model_alloc_kv(e->m, e->num_blocks);
    }
    if (rc) goto fail;
    if (e->on_gpu && !e->p.enforce_eager) {
        /* Graphs are a speed-up, never a requirement: a failed recording leaves the engine eager. */
        const int g = model_capture_graphs(e->m, e->max_seqs);
        if (g < 0) fprintf(stderr, "folio-engine: CUDA graphs off (%s)\n", folio_last_error());
    }
    e->mem.device = e->on_gpu ? "cuda" : "cpu";
    e->mem.weights = config_weight_bytes(e->cfg, model_matrix_dtype(e->m));
    e->mem.kv_cache = (size_t)e->num_blocks * model_kv_block_bytes(e->m);
    if (e->num_local_blocks)
        e->mem.kv_cache = (size_t)e->num_blocks * config_kv_block_bytes_layers(e->cfg, e->bs, 0, e->kv_dtype) +
                          (size_t)e->num_local_blocks * config_kv_block_bytes_layers(e->cfg, e->bs, 1, e->kv_dtype);
    e->mem.kv_dtype = folio_dtype_name(e->kv_dtype);
    e->mem.weights_dtype = folio_dtype_name(model_matrix_dtype(e->m));
    e->mem.quantization =
        e->cfg->quant.method ? e->cfg->quant.name : quant_method_name(model_params(e->m)->quantization);
    e->mem.activations = model_activation_bytes(e->m);
    if (e->on_gpu) {
        const size_t known = e->mem.weights + e->mem.activations;
        e->mem.other = plan.non_kv_bytes > known ? plan.non_kv_bytes - known : 0;
        e->mem.device_total = plan.total;
        e->mem.utilization = plan.utilization;
    }
    e->kv = kv_cache_create(&(struct kv_cache_params){e->num_blocks, e->bs, e->p.enable_prefix_caching});
    if (e->num_local_blocks &&
        !(e->kv_local = kv_cache_create(&(struct kv_cache_params){e->num_local_blocks, e->bs, e->p.enable_prefix_caching}))) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory");
        goto fail;
    }
    /* Layers that all slide keep only their window's blocks; a split keeps the sliding ones'
     * in kv_local. */
    const int all_sliding = e->cfg->sliding_window > 0 && config_num_sliding_layers(e->cfg) == e->cfg->num_layers;
    const struct scheduler_params sp = {.max_num_seqs = e->max_seqs, .max_num_batched_tokens = e->max_tokens_step,
                                        .window = all_sliding ? e->cfg->sliding_window : 0,
                                        .kv_local = e->kv_local, .local_window = e->cfg->sliding_window};
    e->sched = e->kv ? scheduler_create(&sp, e->kv) : NULL;
    e->tp = e->on_gpu ? (e->own_tp = threadpool_create(e->p.threads)) : backend_cpu_threadpool(e->b);
    if (!e->tp) {
        rc = folio_err(FOLIO_ENOMEM, "cannot start the sampling threads");
        goto fail;
    }
    e->num_samplers = threadpool_size(e->tp);
    e->samplers = calloc((size_t)e->num_samplers, sizeof *e->samplers);
    for (int i = 0; e->samplers && i < e->num_samplers; i++)
        if (!(e->samplers[i] = sampler_create(e->V))) {
            rc = folio_err(FOLIO_ENOMEM, "out of memory");
            goto fail;
        }
    const size_t S = (size_t)e->max_seqs;
    e->batch = batch_create(&(struct batch_params){.max_tokens = e->max_tokens_step, .max_seqs = e->max_seqs,
                                                    .max_logits = e->max_seqs, .max_blocks_per_seq = e->mbps,
                                                    .block_size = e->bs, .split = e->kv_local != NULL});
    e->logit_sample = malloc(S * sizeof *e->logit_sample);
    e->sampled = malloc(S * sizeof *e->sampled);
    e->sampled_lp = malloc(S * sizeof *e->sampled_lp);
    e->drop = malloc(S * sizeof *e->drop);
    e->logits = malloc(S * (size_t)e->V * sizeof(float));
    e->row = malloc((size_t)e->V * sizeof(float));
    e->mask_s = calloc(S, sizeof *e->mask_s);
    e->masks = calloc((size_t)e->num_samplers, sizeof *e->masks);
    for (int i = 0; e->masks && i < e->num_samplers; i++)
        if (!(e->masks[i] = malloc(sizeof(uint32_t) * (size_t)((e->V + 31) / 32)))) {
            rc = folio_err(FOLIO_ENOMEM, "out of memory");
            goto fail;
        }
    /* Compiled grammars kept when unused: each is its automata plus its token sets. */
    e->structured = structured_cache_create(e->tok, e->eos, e->num_eos, 64, (size_t)256 << 20);
    const char *ov = getenv("FOLIO_MASK_OVERLAP");
    e->mask_overlap = ov && *ov ? atoi(ov) != 0 : e->on_gpu;
    if (e->mask_overlap) {
        e->row_masks = malloc(S * (size_t)((e->V + 31) / 32) * sizeof(uint32_t));
        e->row_masked = calloc(S, sizeof *e->row_masked);
        pthread_mutex_init(&e->mask_mu, NULL);
        pthread_cond_init(&e->mask_cv, NULL);
        if (!e->row_masks || !e->row_masked || pthread_create(&e->mask_thread, NULL, mask_main, e) != 0) {
            pthread_mutex_destroy(&e->mask_mu);
            pthread_cond_destroy(&e->mask_cv);
            e->mask_overlap = 0;
            rc = folio_err(FOLIO_ENOMEM, "cannot start the grammar mask worker");
            goto fail;
        }
    }
    if (!e->kv || !e->sched || !e->samplers || !e->sampled || !e->sampled_lp || !e->batch || !e->logit_sample ||
        !e->drop || !e->logits || !e->row || !e->mask_s || !e->masks || !e->structured) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory");
        goto fail;
    }
    scheduler_output_init(e->sched, &e->out);
    /* The most text one detok push can produce, measured once on a throwaway detokenizer. */
    struct detok *probe = detok_create(e->tok, NULL, 0, 1);
    if (!probe) {
        rc = FOLIO_ENOMEM;
        goto fail;
    }
    e->max_delta = detok_max_delta(probe);
    detok_free(probe);
    e->seed_state = e->p.seed ? e->p.seed : (uint64_t)(folio_now() * 1e9) ^ (uint64_t)(uintptr_t)e;
    *out = e;
    return 0;
fail:
    engine_free(e);
    return rc;
}

/* ---- the step loop (engine thread) ---- */

static void live_unlink(struct engine *e, struct engine_req *r) {
    if (r->prev) r->prev->next = r->next;
    else e->live_head = r->next;
    if (r->next) r->next->prev = r->prev;
    else e->live_tail = r->prev;
    r->prev = r->next = NULL;
    e->num_live--;
}

/* The engine lets go of a request whose samples have all finished. */
static void drop_request(struct engine *e, struct engine_req *r) {
    live_unlink(e, r);
    e->finished++;
    int aborted = 0;
    for (int i = 0; i < r->n; i++) aborted |= r->samples[i].finish == ENGINE_FINISH_ABORT;
    if (!aborted) metrics_observe(e->metrics, METRICS_E2E, folio_now() - r->t_arrival);
    pthread_mutex_lock(&r->mu);
    r->engine_gone = 1;
    pthread_mutex_unlock(&r->mu);
    engine_req_unref(r);
}

static void finish_sample(struct engine *e, struct sample *s, int32_t id, const struct sampler_logprobs *lp,
                          const char *text, size_t n, enum engine_finish why, const char *error) {
    if (s->seq.state == SCHED_WAITING || s->seq.state == SCHED_RUNNING) scheduler_finish(e->sched, &s->seq);
    s->done = 1;
    s->req->num_done++;
    engine_emit(s, id, lp, text, n, why, error);
}

static void abort_request(struct engine *e, struct engine_req *r, const char *error) {
    for (int i = 0; i < r->n; i++)
        if (!r->samples[i].done) finish_sample(e, &r->samples[i], -1, NULL, "", 0, ENGINE_FINISH_ABORT, error);
    drop_request(e, r);
}

static void intake(struct engine *e) {
    pthread_mutex_lock(&e->mu);
    struct engine_req *head = e->in_head;
    e->in_head = e->in_tail = NULL;
    e->num_incoming = 0;
    pthread_mutex_unlock(&e->mu);
    for (struct engine_req *r = head, *next; r; r = next) {
        next = r->next;
        r->prev = e->live_tail;
        r->next = NULL;
        if (e->live_tail) e->live_tail->next = r;
        else e->live_head = r;
        e->live_tail = r;
        e->num_live++;
        scheduler_add(e->sched, &r->samples[0].seq);
    }
    if (atomic_exchange(&e->aborts, 0) > 0) {
        for (struct engine_req *r = e->live_head, *next; r; r = next) {
            next = r->next;
            if (atomic_load(&r->abort)) abort_request(e, r, NULL);
        }
    }
}

/* Pauses the samples whose readers have fallen behind, and resumes the others. */
static void update_paused(struct engine *e) {
    for (struct engine_req *r = e->live_head; r; r = r->next) {
        pthread_mutex_lock(&r->mu);
        for (int i = 0; i < r->n; i++) {
            struct sample *s = &r->samples[i];
            s->seq.paused = !s->done && !engine_has_room(s);
            if (s->seq.paused) r->stalled = 1;
        }
        pthread_mutex_unlock(&r->mu);
    }
}

static int is_eos(const struct engine *e, int32_t id) {
    for (int i = 0; i < e->num_eos; i++)
        if (e->eos[i] == id) return 1;
    return 0;
}

/* Detokenizes the token (unless hidden), runs the stop-string filter, and records the output. */
static void accept_token(struct engine *e, struct sample *s, int32_t id, const struct sampler_logprobs *lp) {
    struct engine_req *r = s->req;
    const struct sampling_params *sp = &r->sp;
    int grammar_done = 0;
    if (s->gm) {
        /* The mask allowed nothing the sampler could draw (min_tokens held back the EOS that
         * alone completes the grammar): the grammar ends the sample here. */
        if (gram_matcher_accept_token(s->gm, id) != 0) {
            finish_sample(e, s, -1, NULL, "", 0, ENGINE_FINISH_STOP, NULL);
            return;
        }
        grammar_done = gram_matcher_done(s->gm);
    }
    s->tokens[s->seq.num_tokens++] = id;
    s->num_output++;
    e->gen_tokens++;

    enum engine_finish why = ENGINE_FINISH_NONE;
    int hide = 0, checks = s->num_output >= sp->min_tokens;
    if (checks && !sp->ignore_eos && is_eos(e, id)) {
        why = ENGINE_FINISH_STOP;
        hide = !sp->include_stop_str_in_output;
    }
    for (int i = 0; checks && why == ENGINE_FINISH_NONE && i < sp->num_stop_token_ids; i++)
        if (sp->stop_token_ids[i] == id) {
            why = ENGINE_FINISH_STOP;
            s->stop_token = id;
            hide = !sp->include_stop_str_in_output;
        }
    /* A complete grammar that nothing can extend ends the sample as EOS would, keeping the
     * token (it is part of the output). */
    if (why == ENGINE_FINISH_NONE && grammar_done) why = ENGINE_FINISH_STOP;
    if (why == ENGINE_FINISH_NONE && s->num_output >= r->max_tokens) why = ENGINE_FINISH_LENGTH;

    size_t n = 0, dn = 0;
    char *text = r->tmp2;
    if (!hide) detok_push(s->dt, id, r->tmp, r->step_text, &dn);
    /* At the end, whatever the detokenizer still holds (clean-up context, a cut character). */
    if (why != ENGINE_FINISH_NONE) {
        size_t fn;
        do {
            detok_flush(s->dt, r->tmp + dn, r->step_text - dn, &fn);
            dn += fn;
        } while (fn > 0 && dn < r->step_text);
    }
    if (s->stop && checks) {
        int m = stop_push(s->stop, r->tmp, dn, text, r->step_text, &n);
        if (m >= 0) {
            why = ENGINE_FINISH_STOP;
            s->stop_idx = m;
        } else if (why != ENGINE_FINISH_NONE) {
            size_t fn;
            stop_flush(s->stop, text + n, r->step_text - n, &fn);
            n += fn;
            /* A match that only the end of the text settles ("bc" of stops "abcd", "bc"). */
            if (stop_matched(s->stop) >= 0) {
                why = ENGINE_FINISH_STOP;
                s->stop_idx = stop_matched(s->stop);
            }
        }
    } else {
        text = r->tmp;
        n = dn;
    }
    if (why == ENGINE_FINISH_NONE) engine_emit(s, id, lp, text, n, why, NULL);
    else finish_sample(e, s, id, lp, text, n, why, NULL);
}

/* mask: the drawing thread's [mask words] scratch, or the row's mask already filled (ready);
 * *mask_s: the time the grammar mask took. */
static int32_t draw(struct engine *e, struct sampler *smp, struct sample *s, float *logits,
                    struct sampler_logprobs *lp, uint32_t *mask, int ready, double *mask_s) {
    struct engine_req *r = s->req;
    struct sampler_seq sq = {
        .prompt = r->prompt, .num_prompt = r->num_prompt, .output = s->tokens + r->num_prompt,
        .num_output = s->num_output, .sample_index = s->index, .seed = r->seed, .eos_ids = e->eos,
        .num_eos = e->num_eos};
    if (s->gm && ready) {
        sq.allowed = mask;
    } else if (s->gm) {
        const double t0 = folio_now();
        gram_matcher_fill_mask(s->gm, mask);
        *mask_s = folio_now() - t0;
        sq.allowed = mask;
    }
    return sampler_sample(smp, logits, &r->sp, &sq, r->sp.logprobs >= 0 ? lp : NULL);
}

static uint32_t *row_mask(struct engine *e, int i) {
    return e->row_masks + (size_t)i * (size_t)((e->V + 31) / 32);
}

/* The mask worker: fills the constrained rows' masks of the step in flight while the engine
 * thread runs the forward pass (the matchers are not touched until it has waited). */
static void mask_row_task(void *ctx, int i, int thread) {
    struct engine *e = ctx;
    struct sample *s = e->logit_sample[i];
    if (!s->gm || (s->req->n > 1 && !s->req->forked)) return; /* the fork fills its own */
    const double t0 = folio_now();
    gram_matcher_fill_mask(s->gm, row_mask(e, i));
    e->mask_s[i] = folio_now() - t0;
    e->row_masked[i] = 1;
}

static void *mask_main(void *arg) {
    struct engine *e = arg;
    pthread_mutex_lock(&e->mask_mu);
    for (;;) {
        while (!e->mask_stop && e->mask_job == 0) pthread_cond_wait(&e->mask_cv, &e->mask_mu);
        if (e->mask_stop) break;
        const int L = e->mask_job;
        pthread_mutex_unlock(&e->mask_mu);
        /* On a GPU the sampling pool is idle during the forward pass; on the CPU (a test
         * setting) the backend's pool is busy, so the rows go one by one here. */
        if (e->own_tp) threadpool_run(e->own_tp, L, mask_row_task, e);
        else
            for (int i = 0; i < L; i++) mask_row_task(e, i, 0);
        pthread_mutex_lock(&e->mask_mu);
        e->mask_job = 0;
        e->mask_busy = 0;
        pthread_cond_broadcast(&e->mask_cv);
    }
    pthread_mutex_unlock(&e->mask_mu);
    return NULL;
}

static void mask_post(struct engine *e, int L) {
    pthread_mutex_lock(&e->mask_mu);
    e->mask_job = L;
    e->mask_busy = 1;
    pthread_cond_broadcast(&e->mask_cv);
    pthread_mutex_unlock(&e->mask_mu);
}

static void mask_wait(struct engine *e) {
    pthread_mutex_lock(&e->mask_mu);
    while (e->mask_busy) pthread_cond_wait(&e->mask_cv, &e->mask_mu);
    pthread_mutex_unlock(&e->mask_mu);
}

/* Sampling reads only its sample and writes only its row's results, so rows are drawn in
 * parallel on the backend's threads; everything that touches shared state comes after. */
static void draw_task(void *ctx, int i, int thread) {
    struct engine *e = ctx;
    struct sample *s = e->logit_sample[i];
    if (s->req->n > 1 && !s->req->forked) return; /* the fork draws all n (fork_and_sample) */
    const int ready = e->row_masked && e->row_masked[i];
    e->sampled[i] = draw(e, e->samplers[thread], s, e->logits + (size_t)i * e->V, &e->sampled_lp[i],
                         ready ? row_mask(e, i) : e->masks[thread], ready, &e->mask_s[i]);
}

/* The prompt of an n > 1 request is computed once; its samples then share its blocks. */
static void fork_and_sample(struct engine *e, struct engine_req *r, const float *logits) {
    r->forked = 1;
    for (int i = 1; i < r->n; i++) {
        struct sample *c = &r->samples[i];
        c->seq.arrival = r->samples[0].seq.arrival;
        scheduler_fork(e->sched, &r->samples[0].seq, &c->seq);
    }
    for (int i = 0; i < r->n; i++) {
        struct sampler_logprobs lp;
        memcpy(e->row, logits, sizeof(float) * (size_t)e->V);
        double mask_s;
        int32_t id = draw(e, e->samplers[0], &r->samples[i], e->row, &lp, e->masks[0], 0, &mask_s);
        if (r->samples[i].gm) metrics_observe(e->metrics, METRICS_GRAMMAR_MASK, mask_s);
        accept_token(e, &r->samples[i], id, r->sp.logprobs >= 0 ? &lp : NULL);
    }
}

static void publish_stats(struct engine *e) {
    struct kv_cache_stats ks;
    kv_cache_get_stats(e->kv, &ks);
    double now = folio_now();
    if (e->win_t0 == 0) e->win_t0 = now;
    if (now - e->win_t0 >= 1.0) {
        e->tps = (double)(e->gen_tokens - e->win_gen0) / (now - e->win_t0);
        e->win_t0 = now;
        e->win_gen0 = e->gen_tokens;
    }
    struct kv_cache_stats ls = {0};
    if (e->kv_local) kv_cache_get_stats(e->kv_local, &ls);
    pthread_mutex_lock(&e->stats_mu);
    e->last_step_t = now;
    e->stats = (struct engine_stats){
        .num_running = scheduler_num_running(e->sched),
        .num_waiting = scheduler_num_waiting(e->sched),
        .num_preempted_waiting = scheduler_num_preempted_waiting(e->sched),
        .num_preemptions = scheduler_num_preemptions(e->sched),
        .num_requests = e->num_live,
        .kv_blocks = ks.num_blocks,
        .kv_used = ks.used,
        .kv_cached = ks.cached,
        .kv_free = ks.free,
        .kv_touched = ks.touched,
        .kv_local_blocks = ls.num_blocks,
        .kv_local_used = ls.used,
        .block_size = e->bs,
        .kv_usage = (double)ks.used / ks.num_blocks,
        .kv_allocated_slots = ks.allocated_slots,
        .kv_stored_tokens = ks.stored_tokens,
        .waste = ks.allocated_slots ? 1.0 - (double)ks.stored_tokens / (double)ks.allocated_slots : 0.0,
        .prefix_queries = ks.prefix_queries,
        .prefix_hits = ks.prefix_hits,
        .cow_copies = ks.cow_copies,
        .prompt_tokens = e->prompt_tokens,
        .generation_tokens = e->gen_tokens,
        .requests_finished = e->finished,
        .steps = e->steps,
        .forward_seconds = e->forward_s,
        .sample_seconds = e->sample_s,
        .gen_tokens_per_s = e->tps,
        .greedy_device_steps = e->greedy_device_steps,
        .graph_steps = model_graph_replays(e->m),
        .cuda_graphs = model_num_graphs(e->m, NULL),
    };
    pthread_mutex_unlock(&e->stats_mu);
}

struct metrics *engine_metrics(struct engine *e) { return e->metrics; }

void engine_get_stats(struct engine *e, struct engine_stats *out) {
    pthread_mutex_lock(&e->stats_mu);
    *out = e->stats;
    if (folio_now() - e->last_step_t > 2.0) out->gen_tokens_per_s = 0; /* idle */
    pthread_mutex_unlock(&e->stats_mu);
}

static void fail_all(struct engine *e, const char *why) {
    while (e->live_head) abort_request(e, e->live_head, why);
}

int engine_step(struct engine *e) {
    intake(e);
    update_paused(e);
    struct scheduler_output *o = &e->out;
    int ns = scheduler_schedule(e->sched, o);
    if (ns == 0) {
        publish_stats(e);
        return 0;
    }
    int rc = 0, L = 0;
    batch_clear(e->batch);
    for (int i = 0; i < ns && !rc; i++) {
        struct scheduler_seq *q = o->seqs[i];
        const int start = q->kv.num_computed, end = start + o->num_new[i];
        /* A sequence whose prompt is all computed by this step samples from its last token. */
        const int last = end == q->num_tokens;
        if (start < q->num_prompt) e->prompt_tokens += (end < q->num_prompt ? end : q->num_prompt) - start;
        rc = batch_add(e->batch, &q->kv, e->kv_local ? &q->kv_local : NULL, q->tokens, start, end - start,
                       q->num_prompt, last ? BATCH_LOGITS_LAST : BATCH_LOGITS_NONE);
        if (last) e->logit_sample[L++] = (struct sample *)q; /* seq is the sample's first member */
    }
    struct model_batch batch;
    batch_finish(e->batch, o->copies, o->num_copies, &batch);
    batch.num_copies_local = o->num_copies_local;
    batch.block_copies_local = o->copies_local;
    /* When every row is plain greedy, the device takes the argmax and only ids come back. */
    int device_argmax = L > 0 && model_has_device_argmax(e->m);
    for (int i = 0; i < L && device_argmax; i++) {
        const struct sample *s = e->logit_sample[i];
        device_argmax = s->req->n == 1 && !s->gm && sampler_is_plain_greedy(&s->req->sp, s->num_output);
    }
    /* Constrained rows' masks depend only on their matchers: fill them during the forward pass. */
    int masking = 0;
    if (e->mask_overlap && !device_argmax)
        for (int i = 0; i < L && !masking; i++) masking = e->logit_sample[i]->gm != NULL;
    if (e->row_masked)
        for (int i = 0; i < L; i++) e->row_masked[i] = 0;
    if (masking) mask_post(e, L);
    const double t0 = folio_now();
    if (!rc) rc = device_argmax ? model_forward_argmax(e->m, &batch, e->sampled) : model_forward(e->m, &batch, e->logits);
    if (masking) mask_wait(e);
    const double t1 = folio_now();
    e->forward_s += t1 - t0;
    if (rc) {
        /* The batch is built from checked requests, so this is an engine bug or a device
         * failure: fail every request loudly rather than serve wrong tokens. */
        char msg[256];
        snprintf(msg, sizeof msg, "engine failure: %s", folio_last_error());
        fail_all(e, msg);
        publish_stats(e);
        return rc;
    }
    scheduler_commit(e->sched, o);
    if (device_argmax) e->greedy_device_steps++;
    else if (L > 1) threadpool_run(e->tp, L, draw_task, e);
    else if (L == 1) draw_task(e, 0, 0);
    for (int i = 0; i < L; i++) {
        struct sample *s = e->logit_sample[i];
        struct engine_req *r = s->req;
        if (r->n > 1 && !r->forked) {
            fork_and_sample(e, r, e->logits + (size_t)i * e->V);
            continue;
        }
        if (s->gm) metrics_observe(e->metrics, METRICS_GRAMMAR_MASK, e->mask_s[i]);
        accept_token(e, s, e->sampled[i], r->sp.logprobs >= 0 ? &e->sampled_lp[i] : NULL);
    }
    /* Requests whose samples have all finished leave the live list (after every sample of
     * this step has been handled: dropping may free them). */
    for (int i = 0; i < L; i++) {
        struct engine_req *r = e->logit_sample[i]->req;
        if (r->num_done == r->n && !r->dropping) {
            r->dropping = 1;
            e->drop[e->num_drop++] = r;
        }
    }
    for (int i = 0; i < e->num_drop; i++) drop_request(e, e->drop[i]);
    e->num_drop = 0;
    e->sample_s += folio_now() - t1;
    e->steps++;
    publish_stats(e);
    return ns;
}

static void *engine_main(void *arg) {
    struct engine *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!e->stopping) {
        long seen = e->kicks;
        pthread_mutex_unlock(&e->mu);
        int n = engine_step(e);
        pthread_mutex_lock(&e->mu);
        /* Idle (or every sequence paused): sleep until a submit, abort or read changes that. */
        if (n <= 0)
            while (!e->stopping && e->kicks == seen) pthread_cond_wait(&e->cv, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

int engine_start(struct engine *e) {
    pthread_mutex_lock(&e->mu);
    int rc = 0;
    if (!e->started) {
        if (pthread_create(&e->thread, NULL, engine_main, e) != 0) rc = folio_err(FOLIO_ENOMEM, "cannot start the engine thread");
        else e->started = 1;
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

void engine_free(struct engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    pthread_cond_signal(&e->cv);
    int started = e->started;
    pthread_mutex_unlock(&e->mu);
    if (started) pthread_join(e->thread, NULL);
    if (e->sched) {
        intake(e);
        fail_all(e, "the engine shut down");
    }
    scheduler_free(e->sched);
    kv_cache_free(e->kv);
    kv_cache_free(e->kv_local);
    for (int i = 0; e->samplers && i < e->num_samplers; i++) sampler_free(e->samplers[i]);
    free(e->samplers);
    free(e->sampled);
    free(e->sampled_lp);
    model_free(e->m);
    backend_free(e->b);
    threadpool_free(e->own_tp);
    tokenizer_free(e->tok);
    batch_free(e->batch);
    free(e->logit_sample);
    free(e->drop);
    free(e->logits);
    free(e->row);
    if (e->mask_overlap) {
        pthread_mutex_lock(&e->mask_mu);
        e->mask_stop = 1;
        pthread_cond_broadcast(&e->mask_cv);
        pthread_mutex_unlock(&e->mask_mu);
        pthread_join(e->mask_thread, NULL);
        pthread_mutex_destroy(&e->mask_mu);
        pthread_cond_destroy(&e->mask_cv);
    }
    free(e->row_masks);
    free(e->row_masked);
    for (int i = 0; e->masks && i < e->num_samplers; i++) free(e->masks[i]);
    free(e->masks);
    free(e->mask_s);
    structured_cache_free(e->structured);
    metrics_free(e->metrics);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->stats_mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

int engine_structured(struct engine *e, const struct structured_spec *spec, struct structured **out) {
    double compile_s = 0;
    int hit = 0;
    int rc = structured_get(e->structured, spec, out, &compile_s, &hit);
    if (rc) return rc;
    metrics_count_structured(e->metrics, structured_metrics_kind(spec->kind), hit);
    metrics_observe(e->metrics, METRICS_GRAMMAR_COMPILE, compile_s);
    return 0;
}
