/* cpu_kernels: the few CPU loops where the time goes (weight GEMMs, paged attention blocks,
 * RMSNorm), written once over a small vector abstraction and compiled three times: AVX-512,
 * AVX2+FMA and portable C. cpu_kernels_get() picks the widest the CPU supports at run time,
 * so one binary runs everywhere. Everything accumulates in fp32; bf16/f16 weights are widened
 * in registers, so weights stay in their storage dtype in memory. */
#ifndef FOLIO_CPU_KERNELS_H
#define FOLIO_CPU_KERNELS_H

#include <stddef.h>

#include "base/util.h"

struct cpu_kernels {
    const char *isa; /* "avx512", "avx2" or "scalar" */
    /* out[t, n] = bias[n] + sum_k x[t, k] * w[n, k] for t < T and n0 <= n < n1.
     * x: [T, K] fp32 (row stride K); w: [N, K] in dtype; out: [T, ldo]; bias: [N] or NULL. */
    void (*gemm[3])(const float *x, int T, int K, const void *w, int n0, int n1, float *out, int ldo,
                    const float *bias);
    float (*dot)(const float *a, const float *b, int n);
    float (*sumsq)(const float *x, int n);
    /* One KV block of paged attention for g query heads sharing a KV head, folded into a
     * running softmax. q: [g, hd] pre-scaled; k, v: [n, hd]; m, l: [g]; acc: [g, hd];
     * s: [g, n] scratch. */
    void (*attn_block)(const float *q, int g, const float *k, const float *v, int n, int hd, float *m, float *l,
                       float *acc, float *s);
    /* out[i] = silu(gate[i]) * up[i] for i < n; out may alias gate. */
    void (*silu_mul)(const float *gate, const float *up, float *out, size_t n);
};

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
