/* backend: the device a model runs on, as a vtable of memory management and the ops of a
 * Llama-family forward pass (in the style of ggml's ggml_backend_i). model.c drives a forward
 * through these slots only, so the CPU backend (backend_cpu.c) and the CUDA backend run the
 * same code path, and the CPU backend doubles as the CUDA backend's test oracle.
 *
 * All pointers passed to ops are device pointers returned by alloc (or weights from
 * load_weight). Activations are fp32; weights keep their dtype. Ops may run asynchronously;
 * download and sync wait for them. */
#ifndef FOLIO_BACKEND_H
#define FOLIO_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

/* Opaque: implementers see its vtable in backend_impl.h. */
struct backend;

/* A weight matrix resident on the backend: [rows, cols] row-major (HF Linear layout, so that
 * y = x W^T reads W rows contiguously). Quantized weights (base/quant.h) hold rows of blocks,
 * FP8 ones a scale per row, and GPTQ's act-order ones a column order. */
struct backend_weight {
    enum folio_dtype dtype;
    const void *data;
    int64_t rows, cols;
    const float *scale;  /* FP8: [rows] per-row scales (device memory); else NULL */
    const int32_t *perm; /* [cols]: input column k of the stored rows is x[perm[k]]; NULL = identity */
    void *owned;         /* backend allocation to release, or NULL when borrowed (CPU: the mmap) */
    void *owned_aux;     /* the backend's allocation of scale and perm, or NULL */
};

/* A quantized weight as the model loader hands it over, in host memory: rows of
 * quant_row_bytes(dtype, cols) bytes (FP8: rows x cols e4m3 bytes and scale[rows]). */
struct backend_quant_src {
    enum folio_dtype dtype; /* FOLIO_Q8, FOLIO_Q4, FOLIO_Q4Z or FOLIO_FP8 */
    const void *data;
    int64_t rows, cols;
    const float *scale;     /* FP8: [rows]; else NULL */
    const int32_t *perm;    /* [cols] or NULL (see backend_weight) */
    int borrow;             /* data outlives the weight (an mmap): a host backend may keep the pointer */
};

/* One of several products sharing an input: out[T, w->rows] = x[T, w->cols] W^T + bias. */
struct backend_matmul_args {
    const struct backend_weight *w;
    const float *bias; /* [w->rows] or NULL */
    float *out;        /* [T, w->rows] */
};

/* Attention over the paged KV cache for a flattened batch. Token t belongs to sequence
 * seq_idx[t], sits at positions[t], and attends to positions [max(0, pos - window + 1), pos]
 * of its sequence, found through block_tables. Its own K/V must already be cached. The
 * caches hold kv_dtype elements (backend_supports_kv_dtype); an FP8 (e4m3) element x stands
 * for x * k_scale in K and x * v_scale in V (vLLM's per-layer scales). */
struct backend_attention_args {
    const float *q;              /* [T, num_heads, head_dim] */
    const void *k_cache;         /* [num_blocks, num_kv_heads, block_size, head_dim] of kv_dtype */
    const void *v_cache;         /* [num_blocks, num_kv_heads, block_size, head_dim] of kv_dtype */
    enum folio_dtype kv_dtype;   /* FOLIO_F32 (0, the default), FOLIO_BF16 or FOLIO_FP8 */
    float k_scale, v_scale;      /* FP8 only */
    const int32_t *block_tables; /* [num_seqs, max_blocks_per_seq] */
    const int32_t *seq_idx;      /* [T] */
    const int32_t *positions;    /* [T] */
    float *out;                  /* [T, num_heads, head_dim] */
    int num_tokens, num_heads, num_kv_heads, head_dim;
    int block_size, max_blocks_per_seq;
    int sliding_window;          /* 0 = unlimited */
    float scale;                 /* on q.k: 1/sqrt(head_dim), or Gemma's query_pre_attn_scalar^-1/2 */
    float softcap;               /* > 0: scores become softcap * tanh(score / softcap) (Gemma 2) */
    int max_context;             /* host-known bound on positions[t] + 1 (sizes split-K); 0 = none */
};

/* The largest batch the backend will see, announced once at load (after the weights) so that
 * it can allocate its own scratch then rather than in the step loop. */
struct backend_reserve_args {
    int max_tokens;                       /* rows of any matmul input */
    int64_t max_cols;                     /* widest matmul input (K) */
    int num_heads, num_kv_heads, head_dim; /* attention's shape */
    /* Mixture of experts (0 when the model has none): the (token, expert) pairs of a batch
     * (max_tokens * top_k), and the experts' shape, for backend_moe's own buffers. */
    int moe_pairs, moe_hidden, moe_inter, moe_experts;
};

/* RoPE over q and k in place. Each head's first rot_dim dimensions rotate (rotate-half
 * pairs (i, i + rot_dim/2)); the rest pass through (Phi-3's partial_rotary_factor). */
struct backend_rope_args {
    float *q;                  /* [T, q_stride] holding nh heads of head_dim */
    float *k;                  /* [T, k_stride] holding nkv heads of head_dim */
    int q_stride, k_stride;
    const int32_t *positions;  /* [T] */
    const float *inv_freq;     /* [rot_dim / 2], or [2, rot_dim / 2] when long_sel is set */
    const int32_t *long_sel;   /* [T] 0/1: the inv_freq row of each token (LongRoPE), or NULL */
    int T, nh, nkv, head_dim, rot_dim;
    float mscale;              /* scales the rotated dimensions (LongRoPE's attention factor); 1 = none */
};

/* Activations of a gated MLP: act(gate) * up. */
enum backend_act { BACKEND_ACT_SILU, BACKEND_ACT_GELU_TANH };

/* A sparse MoE block (Mixtral, Qwen3-MoE): each token's router logits go through a softmax,
 * its top_k experts are kept (their weights renormalized to sum 1 when norm_topk_prob), and
 * out[t] = sum_j w[t, j] * down_e(act(gate_e x[t]) * up_e x[t]) over its experts e. The
 * experts' matrices are stacked: expert e's gate is rows [e * inter, (e + 1) * inter) of
 * gate. The tokens routed to one expert are computed together, so a batch reads each
 * active expert's weights once and never an idle expert's. */
struct backend_moe_args {
    const float *x;                     /* [T, hidden] */
    const float *router_logits;         /* [T, num_experts] */
    const struct backend_weight *gate;  /* [num_experts * inter, hidden] */
    const struct backend_weight *up;    /* [num_experts * inter, hidden] */
    const struct backend_weight *down;  /* [num_experts * hidden, inter] */
    float *out;                         /* [T, hidden] */
    int T, hidden, inter, num_experts, top_k;
    int norm_topk_prob;
    enum backend_act act;
};

/* Device memory as the backend sees it. */
struct backend_mem {
    size_t total, free; /* the device's, now */
    size_t reserved;    /* the backend's own scratch (reserve), in bytes */
};

/* The ops, in the order a forward pass uses them. Each forwards to the backend's slot
 * (backend_impl.h); the optional ones say so. */
const char *backend_name(const struct backend *b); /* "cpu", "cuda" */
/* Device memory, zeroed. Only at load time: the step loop never allocates. */
void *backend_alloc(struct backend *b, size_t nbytes);
void backend_release(struct backend *b, void *p);
int backend_upload(struct backend *b, void *dst, const void *src, size_t n);
int backend_download(struct backend *b, void *dst, const void *src, size_t n);
/* Makes a [rows, cols] host matrix of src_dtype resident as `dtype` (converting if they
 * differ). The host memory may be an mmap that outlives the weight (CPU borrows it). */
int backend_load_weight(struct backend *b, const void *src, enum folio_dtype src_dtype, int64_t rows, int64_t cols,
                        enum folio_dtype dtype, struct backend_weight *out);
/* A quantized weight (scale and perm are always copied). Backends without a slot get
 * FOLIO_EUNSUP. backend_load_weight also takes dtype FOLIO_Q8, FOLIO_Q4 or FOLIO_FP8 for a
 * float src: it quantizes on the host (base/quant.h) and loads the result through this. */
int backend_load_quant(struct backend *b, const struct backend_quant_src *src, struct backend_weight *out);
void backend_free_weight(struct backend *b, struct backend_weight *w);
/* out[t] = table[tokens[t]] widened to fp32. tokens: [n]; out: [n, table->cols] */
void backend_embed(struct backend *b, const struct backend_weight *table, const int32_t *tokens, int n, float *out);
/* residual[r] += delta[r] (when delta != NULL); out[r] = rmsnorm(residual[r]) * w.
 * residual, delta, out: [rows, dim]; w: [dim] */
void backend_add_rms_norm(struct backend *b, float *residual, const float *delta, const float *w, float *out, int rows,
                          int dim, float eps);
/* n products of one input x: [T, K], all computed in one parallel launch. */
void backend_matmul(struct backend *b, const float *x, int T, const struct backend_matmul_args *mm, int n);
void backend_rope(struct backend *b, const struct backend_rope_args *a);
/* Writes token t's K/V to slot_mapping[t] (-1 = skip), rounded to nearest-even in kv_dtype
 * (FP8: k / k_scale and v / v_scale, saturating at +-448, as vLLM). k, v: [T, stride] holding
 * [nkv, head_dim]; caches: [num_blocks, nkv, block_size, head_dim] of kv_dtype */
void backend_reshape_and_cache(struct backend *b, const float *k, const float *v, int stride,
                               const int32_t *slot_mapping, void *k_cache, void *v_cache, enum folio_dtype kv_dtype,
                               float k_scale, float v_scale, int T, int nkv, int head_dim, int block_size);
void backend_attention(struct backend *b, const struct backend_attention_args *p);
/* out[t, i] = act(gate[t, i]) * up[t, i]. All [T, n]; out may alias gate. GELU is the tanh
 * approximation (gelu_pytorch_tanh, Gemma's GeGLU). */
void backend_glu(struct backend *b, enum backend_act act, const float *gate, const float *up, float *out, int T,
                 int n);
/* x[i] *= s. x: [n] */
void backend_scale(struct backend *b, float *x, size_t n, float s);
/* x[i] = cap * tanh(x[i] / cap). x: [n] (Gemma 2's final-logit soft-capping) */
void backend_softcap(struct backend *b, float *x, size_t n, float cap);
void backend_moe(struct backend *b, const struct backend_moe_args *a);
/* Copy-on-write of KV blocks: for each (src, dst) pair, block dst of every cache becomes a
 * copy of block src. The num_caches caches lie back to back in pool, cache_bytes apart, each
 * [num_blocks, block_bytes] (bytes, so that any KV dtype copies alike). pairs: [n, 2] */
void backend_copy_blocks(struct backend *b, void *pool, int num_caches, size_t cache_bytes, size_t block_bytes,
                         const int32_t *pairs, int n);
/* out[i] = x[idx[i]]. x: [*, dim]; idx: [n]; out: [n, dim] */
void backend_gather_rows(struct backend *b, const float *x, const int32_t *idx, int n, int dim, float *out);
int backend_sync(struct backend *b);

/* Whether KV caches of dtype dt work here: FOLIO_F32 and FOLIO_BF16 everywhere, FOLIO_FP8
 * on CUDA only. */
int backend_supports_kv_dtype(const struct backend *b, enum folio_dtype dt);

/* Optional: */
/* Announces the largest batch (0 where the backend needs no scratch of its own). */
int backend_reserve(struct backend *b, const struct backend_reserve_args *r);
/* FOLIO_EUNSUP (no message recorded) where the backend cannot say: the CPU. */
int backend_mem_info(struct backend *b, struct backend_mem *out);
/* ids[r] = argmax_i logits[r, i], the lowest index on ties. logits: [n, vocab]; ids: [n]
 * host memory. Only the ids cross to the host. FOLIO_EUNSUP without a device argmax. */
int backend_has_argmax(const struct backend *b);
int backend_argmax(struct backend *b, const float *logits, int n, int vocab, int32_t *ids);
/* Recording: the ops enqueued between graph_begin and graph_end (which must neither sync nor
 * allocate) become a graph that graph_launch replays with one call, on the same buffers and
 * shapes. graph_end returns it in *graph; graph_free drops it. */
int backend_has_graphs(const struct backend *b);
int backend_graph_begin(struct backend *b);
int backend_graph_end(struct backend *b, void **graph);
int backend_graph_launch(struct backend *b, void *graph);
void backend_graph_free(struct backend *b, void *graph);
void backend_free(struct backend *b);

struct backend_cpu_params {
    int n_threads; /* <= 0: all online CPUs */
};

/* The CPU backend (threads + AVX-512/AVX2 kernels). Free with backend_free. */
int backend_cpu_create(const struct backend_cpu_params *p, struct backend **out);
/* The CPU backend's thread pool, so that host work between forward passes (sampling) runs on
 * the same threads rather than competing with them. */
struct threadpool *backend_cpu_threadpool(const struct backend *b);
/* Name of the CPU kernel variant in use ("avx512", "avx2", "scalar"). */
const char *backend_cpu_isa(const struct backend *b);

/* The CUDA backend (kernels/ + cuBLAS), only in builds made with CUDA=1 (FOLIO_CUDA). Free
 * with backend_free. */
int backend_cuda_create(int device, struct backend **out);
int backend_cuda_available(void);
/* "cuda:0 NVIDIA H200 (sm_90, 139.8 GiB)" */
const char *backend_cuda_name(const struct backend *b);

#endif
