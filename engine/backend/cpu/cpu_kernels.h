/* cpu_kernels: the few CPU loops where the time goes (weight GEMMs, paged attention blocks,
 * RMSNorm), written once over a small vector abstraction and compiled three times: AVX-512,
 * AVX2+FMA and portable C. cpu_kernels_get() picks the widest the CPU supports at run time,
 * so one binary runs everywhere. Everything accumulates in fp32; bf16/f16 weights are widened
 * in registers, so weights stay in their storage dtype in memory. */
#ifndef FOLIO_CPU_KERNELS_H
#define FOLIO_CPU_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/cpu/cpu_qkernels.h"
#include "base/util.h"

struct cpu_kernels {
    const char *isa;  /* "avx512", "avx2" or "scalar" */
    const char *qisa; /* the integer GEMMs': "avx512-vnni", "avx2" or "scalar" */
    /* out[t, n] = bias[n] + sum_k x[t, k] * w[n, k] for t < T and n0 <= n < n1.
     * x: [T, K] fp32 (row stride K); w: [N, K] in dtype; out: [T, ldo]; bias: [N] or NULL. */
    void (*gemm[3])(const float *x, int T, int K, const void *w, int n0, int n1, float *out, int ldo,
                    const float *bias);
    /* FP8 (e4m3) weights: gemm's contract, with w's row scales scale: [N]. */
    void (*gemm_fp8)(const float *x, int T, int K, const void *w, const float *scale, int n0, int n1, float *out,
                     int ldo, const float *bias);
    /* Q8, Q4 and Q4Z weights, on activations quantized by quantize_x8 (cpu_qkernels.h). */
    cpu_gemm_q_fn gemm_q[FOLIO_NDTYPES];
    void (*quantize_x8)(const float *x, const int32_t *perm, int K, struct quant_x8 *dst);
    float (*dot)(const float *a, const float *b, int n);
    float (*sumsq)(const float *x, int n);
    /* One KV block of paged attention for g query heads sharing a KV head, folded into a
     * running softmax, indexed by the KV cache's dtype (F32, BF16, FP8; FP8 elements count as
     * e4m3 * 2^-8, which the caller folds into its scales). q: [g, hd] pre-scaled; k, v:
     * [n, hd]; m, l: [g]; acc: [g, hd]; s: [g, n] scratch. softcap > 0 caps each score at
     * softcap * tanh(score / softcap). */
    void (*attn_block[FOLIO_FP8 + 1])(const float *q, int g, const void *k, const void *v, int n, int hd,
                                      float softcap, float *m, float *l, float *acc, float *s);
    /* out[i] = silu(gate[i]) * up[i] for i < n; out may alias gate. */
    void (*silu_mul)(const float *gate, const float *up, float *out, size_t n);
};

/* gelu_pytorch_tanh, Gemma's GeGLU activation. Scalar: one tanhf per element of the MLP's
 * hidden width, against the GEMMs' hidden_size multiply-adds per element. */
static inline float cpu_gelu_tanh(float x) {
    const float c = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

/* Weight rows per GEMM task for `rows` rows over `threads` threads: contiguous runs, about four
 * per thread, a multiple of the 4-row tile, at least 16. In decode every weight byte is read
 * once, and a thread streams well only through long runs: with 16-row tasks claimed in turn,
 * two threads read a cold 3 MiB matrix at 12 GB/s where one thread alone reads it at 26 GB/s;
 * with a quarter of a thread's share per task they reach 24 GB/s, and four tasks a thread
 * still balance a thread the machine descheduled for a while. A row's result does not depend
 * on the split. */
static inline int cpu_rows_per_task(int64_t rows, int threads) {
    int64_t r = (rows + 4 * (int64_t)threads - 1) / (4 * (int64_t)threads);
    r = (r + 3) & ~(int64_t)3;
    return r < 16 ? 16 : r > (1 << 30) ? (1 << 30) : (int)r;
}

/* attn_block's bounds: query heads at once (one KV head's group, or a slice of it), head_dim
 * and keys per block (the model loader enforces the last two). */
#define ATTN_HEADS_MAX 64
#define ATTN_HEAD_DIM_MAX 1024
#define ATTN_BLOCK_MAX 1024

/* The best kernels for this CPU; FOLIO_CPU_ISA=avx512|avx2|scalar overrides (for tests). */
const struct cpu_kernels *cpu_kernels_get(void);
/* A specific variant, or NULL when the CPU lacks it. */
const struct cpu_kernels *cpu_kernels_by_isa(const char *isa);

#endif
