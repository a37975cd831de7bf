/* kernels: CUDA C launchers for the CUDA backend (engine/backend_cuda.c), one .cu per op
 * family, each with a CPU reference in engine/backend_cpu.c that tests compare against.
 *
 * Every launcher enqueues on `stream`, returns cudaSuccess or the launch error, never
 * allocates and never synchronizes. Shapes the kernels do not instantiate (head_dim,
 * block_size, dtype) return cudaErrorInvalidValue before launching anything.
 *
 * Status: linked into folio-engine by `make CUDA=1` through engine/backend_cuda.c; each op is
 * verified against the CPU backend by tests/gpu (make test-gpu), the engine end to end by
 * make test-gpu-engine; `make bench-gpu` reports the decode bandwidth of paged_attention and
 * of the small-batch products (gemv, qgemv). */
#ifndef FOLIO_KERNELS_H
#define FOLIO_KERNELS_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* residual[r] += delta[r] (delta may be NULL); out[r] = residual[r] * rsqrt(mean(residual[r]^2) + eps) * w.
 * residual, delta, out: [rows, dim] fp32; w: [dim] fp32. */
cudaError_t add_rms_norm(float *residual, const float *delta, const float *w, float *out, int rows, int dim,
                         float eps, cudaStream_t stream);

/* Element types of weights and embedding tables; the values equal enum folio_dtype's
 * (engine/base/util.h), which this header cannot include. */
enum kernel_dtype { KERNEL_F32 = 0, KERNEL_F16 = 1, KERNEL_BF16 = 2 };

/* Gated-MLP activations; the values equal enum backend_act's (engine/backend/backend.h).
 * GELU is the tanh approximation (gelu_pytorch_tanh). */
enum kernel_act { KERNEL_ACT_SILU = 0, KERNEL_ACT_GELU_TANH = 1 };

/* out[t, i] = act(gate[t, i]) * up[t, i]; all [T, n] fp32. out may alias gate. An act
 * other than the two fails with cudaErrorInvalidValue. */
cudaError_t glu(enum kernel_act act, const float *gate, const float *up, float *out, int T, int n,
                cudaStream_t stream);

/* x[i] *= s. x: [n] fp32. */
cudaError_t scale_f32(float *x, size_t n, float s, cudaStream_t stream);

/* x[i] = cap * tanh(x[i] / cap). x: [n] fp32 (Gemma 2's final-logit soft-capping). */
cudaError_t softcap_f32(float *x, size_t n, float cap, cudaStream_t stream);

/* out[t] = table[tokens[t]] widened to fp32. table: [rows, cols] of dtype; tokens: [n], each
 * in [0, rows); out: [n, cols] fp32. */
cudaError_t embed(const void *table, enum kernel_dtype dtype, int64_t rows, int64_t cols, const int32_t *tokens,
                  int n, float *out, cudaStream_t stream);

/* out[i] = x[i] rounded to nearest-even in dtype (KERNEL_F16 or KERNEL_BF16). x: [n] fp32;
 * out: [n] of dtype. */
cudaError_t cast_f32(const float *x, void *out, enum kernel_dtype dtype, size_t n, cudaStream_t stream);

/* out[t, n] = sum_k x[t, k] * w[n, k] for the smallest batches (T <= GEMV_MAX_T), reading the
 * weight once. w: [N, K] of dtype; x: [T, K] fp32; out: [T, N] fp32. Supported (gemv_supported)
 * for KERNEL_F16 and KERNEL_BF16 with K % 8 == 0 and w, x 16-byte aligned. Measured on an H100
 * (make bench-gpu): at T = 1 it beats cuBLAS on 3 of the 1B model's 4 shapes; at T = 4 it
 * reached 37-60% of memcpy where cuBLAS at T = 5 reached 25-100%, so only T = 1 uses it. */
#define GEMV_MAX_T 1
int gemv_supported(enum kernel_dtype dtype, int T, int K, const void *w, const float *x);
cudaError_t gemv(const void *w, enum kernel_dtype dtype, const float *x, float *out, int T, int N, int K,
                 cudaStream_t stream);

/* Quantized weight types (engine/base/quant.h); the values equal enum folio_dtype's. A type
 * of its own rather than more kernel_dtype values, which the float kernels switch over. */
enum kernel_qdtype { KERNEL_QFP8 = 3, KERNEL_Q8 = 5, KERNEL_Q4 = 6, KERNEL_Q4Z = 7 };

/* The CUDA backend's private layout of a quantized [N, K] weight (backend_cuda.c repacks
 * quant.h's interleaved blocks into it at load), one allocation of three arrays, each
 * starting 256-byte aligned, over nb = ceil(K / 32) blocks of 32 weights per row:
 *   q: [N, nb * QWEIGHT_QBYTES(dt)] bytes: Q8 int8 values; Q4/Q4Z a block's 16 nibble bytes
 *      exactly as in quant.h (low nibbles the block's first 16 weights); FP8 the e4m3 bytes
 *   d: [N, nb] f16 block scales (Q8, Q4, Q4Z)
 *   z: [N, nb] u8 zero points (Q4Z)
 * Padding weights past K are zero. Rows of q are whole 16-byte vectors, so the kernels read
 * them with aligned 16-byte loads, which the 34/18/20-byte blocks of quant.h do not allow.
 * FP8's per-row fp32 scales live beside it (struct backend_weight's scale). */
#define QWEIGHT_QBYTES(dt) ((dt) == KERNEL_Q4 || (dt) == KERNEL_Q4Z ? 16 : 32)
struct qweight_layout {
    size_t q, d, z; /* byte offsets of the arrays (d, z: 0 when absent) */
    size_t bytes;   /* of the whole allocation */
};
static inline size_t qweight_align(size_t n) { return (n + 255) & ~(size_t)255; }
static inline struct qweight_layout qweight_layout(enum kernel_qdtype dt, int64_t N, int64_t K) {
    const size_t nb = (size_t)((K + 31) / 32), blocks = (size_t)N * nb;
    struct qweight_layout l = {0, 0, 0, qweight_align(blocks * QWEIGHT_QBYTES(dt))};
    if (dt != KERNEL_QFP8) {
        l.d = l.bytes;
        l.bytes = qweight_align(l.d + 2 * blocks);
    }
    if (dt == KERNEL_Q4Z) {
        l.z = l.bytes;
        l.bytes = qweight_align(l.z + blocks);
    }
    return l;
}

/* out[t, n] = sum_k x[t, k] * W[n, k] for batches of up to QGEMV_MAX_T rows, W dequantized
 * in registers as it streams by (each weight byte read once), fp32 activations and fp32
 * sums: the same products as the fp32 dequantized weight, up to summation order.
 * w: a qweight_layout allocation of dt; scale: [N] (FP8; else ignored); x: [T, ldx] fp32,
 * 16-byte aligned, ldx % 4 == 0 and ldx >= ceil(K / 32) * 32 (qgather_x makes such a copy,
 * zero past K, of any x); out: [T, N] fp32. cudaErrorInvalidValue (nothing launched) for
 * another dt, T outside [1, QGEMV_MAX_T], or an x that breaks those rules. See quant.cu
 * for the bound it hits. */
#define QGEMV_MAX_T 8
cudaError_t qgemv(const void *w, enum kernel_qdtype dt, const float *scale, const float *x, int ldx, float *out,
                  int T, int N, int K, cudaStream_t stream);

/* out[t, k] = x[t, perm[k]] (perm NULL: x[t, k]) for k < K and 0 for K <= k < ldo, in
 * out_dtype (KERNEL_F32, or KERNEL_BF16 / KERNEL_F16 rounded to nearest even): GPTQ's
 * act-order column permutation and the padding qgemv reads, or the narrowed input of the
 * dequantized GEMM, in one pass. x: [T, K] fp32; perm: [K] in [0, K); out: [T, ldo]. */
cudaError_t qgather_x(const float *x, const int32_t *perm, int T, int K, void *out, enum kernel_dtype out_dtype,
                      int ldo, cudaStream_t stream);

/* out[r, k] = W[n0 + r, k] as bf16 (rounded to nearest even from the fp32 dequantized
 * value) for r < rows, k < K: a slice of the weight for cuBLAS's bf16 GEMM (larger
 * batches). w, dt, scale as for qgemv; out: [rows, K] bf16. */
cudaError_t qdequant_bf16(const void *w, enum kernel_qdtype dt, const float *scale, int N, int K, int n0, int rows,
                          void *out, cudaStream_t stream);

/* ids[r] = the index of row r's largest logit: the lowest on ties, NaN never, 0 when the row
 * has nothing comparable (the CPU sampler's greedy rule). logits: [n, vocab] fp32; ids: [n]. */
cudaError_t argmax_rows(const float *logits, int n, int vocab, int32_t *ids, cudaStream_t stream);

/* out[i] = x[idx[i]]. x: [*, dim] fp32; idx: [n]; out: [n, dim] fp32. */
cudaError_t gather_rows(const float *x, const int32_t *idx, int n, int dim, float *out, cudaStream_t stream);

/* The fields of struct backend_rope_args (engine/backend/backend.h). */
struct rope_params {
    float *q;                 /* [T, q_stride] holding nh heads of head_dim */
    float *k;                 /* [T, k_stride] holding nkv heads of head_dim */
    int q_stride, k_stride;
    const int32_t *positions; /* [T] */
    const float *inv_freq;    /* [rot_dim / 2], or [2, rot_dim / 2] when long_sel is set */
    const int32_t *long_sel;  /* [T] 0/1: the inv_freq row of each token (LongRoPE), or NULL */
    int T, nh, nkv, head_dim, rot_dim;
    float mscale;             /* multiplies the rotated dimensions' cos and sin; 1 = none */
};

/* Rotate-half RoPE in place over the first rot_dim dimensions of each head (pairs
 * (i, i + rot_dim / 2)); the rest pass through. Angles positions[t] * inv_freq[i] are
 * computed in double like the CPU backend. head_dim in {8, 16, 32, 64, 80, 96, 128, 256};
 * rot_dim even, in [2, head_dim]. */
cudaError_t rope(const struct rope_params *p, cudaStream_t stream);

/* Element types of the KV cache; the values equal enum folio_dtype's. FP8 is e4m3 (OCP,
 * finite, max 448) holding x / scale with the layer's k_scale or v_scale (vLLM's fp8 cache). */
enum kernel_kv_dtype { KERNEL_KV_F32 = 0, KERNEL_KV_BF16 = 2, KERNEL_KV_FP8 = 3 };

/* Writes token t's K/V to slot_mapping[t] (-1 = skip), rounded to nearest even in kv_dtype
 * (FP8: k / k_scale and v / v_scale, saturating at +-448), bit for bit as the CPU backend.
 * k, v: [T, stride] fp32 holding [nkv, head_dim]; slot_mapping: [T]; k_cache, v_cache:
 * [num_blocks, nkv, block_size, head_dim] of kv_dtype, aligned to 4 elements. head_dim as
 * for rope. */
cudaError_t reshape_and_cache(const float *k, const float *v, int stride, const int32_t *slot_mapping, void *k_cache,
                              void *v_cache, enum kernel_kv_dtype kv_dtype, float k_scale, float v_scale, int T,
                              int nkv, int head_dim, int block_size, cudaStream_t stream);

/* Copy-on-write of KV blocks: for each pair (src, dst) of pairs [n, 2], block dst of each of
 * the num_caches caches (back to back in pool, cache_bytes apart, each [num_blocks,
 * block_bytes]) becomes a copy of block src; bytes, so any KV dtype. The pairs run in
 * parallel, so no dst may also appear as a src (the block manager's copies go to fresh
 * blocks). */
cudaError_t copy_blocks(void *pool, int num_caches, size_t cache_bytes, size_t block_bytes, const int32_t *pairs,
                        int n, cudaStream_t stream);

/* paged_attention's most splits of one token's context (split-K, see attention.cu). */
#define PAGED_ATTENTION_MAX_SPLITS 64

/* The fields of struct backend_attention (engine/backend.h), plus what only the host knows. Token t
 * of sequence seq_idx[t] at positions[t] attends to positions
 * [max(0, pos - sliding_window + 1), pos] of its sequence through block_tables. */
struct paged_attention_params {
    const float *q;              /* [num_tokens, num_heads, head_dim] */
    const void *k_cache;         /* [num_blocks, num_kv_heads, block_size, head_dim] of kv_dtype */
    const void *v_cache;         /* [num_blocks, num_kv_heads, block_size, head_dim] of kv_dtype */
    enum kernel_kv_dtype kv_dtype; /* KERNEL_KV_F32 (0) by default */
    float k_scale, v_scale;      /* FP8: an element stands for e4m3 * scale; ignored otherwise */
    const int32_t *block_tables; /* [num_seqs, max_blocks_per_seq] */
    const int32_t *seq_idx;      /* [num_tokens] */
    const int32_t *positions;    /* [num_tokens] */
    float *out;                  /* [num_tokens, num_heads, head_dim] */
    int num_tokens, num_heads, num_kv_heads, head_dim;
    int block_size, max_blocks_per_seq;
    int sliding_window; /* 0 = unlimited */
    float scale;        /* on q.k: 1/sqrt(head_dim), or Gemma's query_pre_attn_scalar^-1/2 */
    float softcap;      /* > 0: each scaled score becomes softcap * tanh(score / softcap) (Gemma 2) */
    /* Host side only: */
    int max_context;        /* bound on positions[t] + 1 over the batch; 0: max_blocks_per_seq * block_size */
    int max_splits;         /* 0 = choose (up to PAGED_ATTENTION_MAX_SPLITS); 1 = never split */
    void *workspace;        /* split-K partials, or NULL (then no split) */
    size_t workspace_bytes; /* fewer splits run when a batch's partials do not fit */
};

/* Attention for a flattened batch of decodes and prefill chunks. head_dim in
 * {8, 16, 32, 64, 80, 96, 128, 256}; any block_size (a power of two is faster); num_heads a
 * multiple of num_kv_heads. */
cudaError_t paged_attention(const struct paged_attention_params *p, cudaStream_t stream);

/* How many parts paged_attention(p) splits each context into on the current device (1: no
 * split-K), for logs and tests. */
int paged_attention_splits(const struct paged_attention_params *p);

/* Workspace bytes that let every batch of up to max_num_tokens tokens split as much as
 * paged_attention would choose on the current device (0 when no such batch splits). The host
 * allocates it once at load. */
size_t paged_attention_workspace_size(int max_num_tokens, int num_heads, int num_kv_heads, int head_dim);

/* A sparse MoE block (backend_moe's contract in engine/backend/backend.h): per token a
 * softmax over the router logits, the top_k experts (highest first, the lower id on a tie),
 * renormalized when norm_topk_prob, and out[t] = sum_j w[t, j] * down_e(act(gate_e x[t]) *
 * up_e x[t]). Tokens are grouped by expert on the device, so each active expert's weights
 * are read once per pass and an idle expert's never (see moe.cu). No host sync and no
 * allocation: it can be captured in a CUDA graph. */
struct moe_params {
    const float *x;             /* [T, hidden] */
    const float *router_logits; /* [T, num_experts] */
    const void *gate;           /* [num_experts * inter, hidden] of dtype */
    const void *up;             /* [num_experts * inter, hidden] of dtype */
    const void *down;           /* [num_experts * hidden, inter] of dtype */
    enum kernel_dtype dtype;
    float *out;                 /* [T, hidden]; may alias x (a pass writes its rows after reading them) */
    int T, hidden, inter, num_experts, top_k, norm_topk_prob;
    enum kernel_act act;
    void *workspace;            /* moe_workspace_size(max_pairs, hidden, inter, num_experts) bytes */
    int max_pairs;              /* (token, expert) pairs the workspace holds: larger batches run
                                 * max_pairs / top_k tokens at a time */
};

/* Workspace bytes for passes of up to max_pairs (token, expert) pairs of this shape. */
size_t moe_workspace_size(int max_pairs, int hidden, int inter, int num_experts);

/* Enqueues the whole block. cudaErrorInvalidValue (nothing launched) for a bad act or
 * dtype, non-positive sizes, top_k > num_experts, or max_pairs < top_k. */
cudaError_t moe(const struct moe_params *p, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
