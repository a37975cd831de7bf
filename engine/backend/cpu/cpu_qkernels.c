/* cpu_qkernels: see cpu_qkernels.h. The SIMD bodies are cpu_qkernels_impl.h, compiled once
 * for AVX2 and once for AVX-512 VNNI under target pragmas. */
#include "backend/cpu/cpu_qkernels.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* How far ahead of each of a tile's four rows to prefetch: a task's rows are contiguous, so
 * this reaches a few rows ahead in one stream. */
#define QPREFETCH_BYTES 32768

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#define QKFN(name) name##_avx2
#define DPBUSD(acc, u, s) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
#include "backend/cpu/cpu_qkernels_impl.h"
#undef QKFN
#undef DPBUSD

/* A block's 32 floats to int8 exactly as quant_row_x8 does: amax, q = RNE(x * (127 / amax))
 * (vcvtps2dq rounds to nearest even, like nearbyintf), packed in K order. */
static void quantize_block_avx2(const float *v, struct quant_x8 *dst) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 x[4], m = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        x[i] = _mm256_loadu_ps(v + 8 * i);
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, x[i]));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float amax = _mm_cvtss_f32(h);
    const __m256 id = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    __m256i q[4];
    for (int i = 0; i < 4; i++) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(x[i], id));
    /* sum(q) before packing, in int32 */
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
    const int sum = _mm_cvtsi128_si32(s4);
    /* packs interleave 128-bit lanes; the final permute puts the 32 bytes back in order */
    const __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
    const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    _mm256_storeu_si256((__m256i *)dst->q, _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    dst->d = amax / 127.0f;
    dst->qsum = sum;
}

void cpu_quantize_x8_avx2(const float *x, const int32_t *perm, int K, struct quant_x8 *dst) {
    const int nb = (int)quant_blocks(K);
    for (int b = 0; b < nb; b++) {
        const int k0 = b * QUANT_BLOCK;
        if (!perm && k0 + QUANT_BLOCK <= K) {
            quantize_block_avx2(x + k0, dst + b);
            continue;
        }
        float v[QUANT_BLOCK] = {0};
        for (int i = 0; i < QUANT_BLOCK && k0 + i < K; i++) v[i] = x[perm ? perm[k0 + i] : k0 + i];
        quantize_block_avx2(v, dst + b);
    }
}
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

/* AVX-VNNI (the VEX vpdpbusd of Alder Lake and Zen 5 CPUs without AVX-512): the AVX2 bodies
 * with the one-instruction dot product. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avxvnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avxvnni")
#endif
#define QKFN(name) name##_avxvnni
#define DPBUSD(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)
#include "backend/cpu/cpu_qkernels_impl.h"
#undef QKFN
#undef DPBUSD
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni")
#endif
#define QKFN(name) name##_vnni
#define DPBUSD(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#define QK_ZMM 1
#include "backend/cpu/cpu_qkernels_impl.h"
#undef QK_ZMM
#undef QKFN
#undef DPBUSD
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

/* ---- portable C: the reference the SIMD variants are tested against ---- */
static int nib(const uint8_t *n, int i) { return i < 16 ? n[i] & 15 : n[i - 16] >> 4; }

#define DEFINE_SCALAR(SUFFIX, BLK, WQ, ZERO)                                                                      \
    void cpu_gemm_##SUFFIX##_scalar(const struct quant_x8 *x, int T, int K, const void *wv, int n0, int n1,          \
                                float *out, int ldo, const float *bias) {                                        \
        const int nb = (int)quant_blocks(K);                                                                     \
        for (int n = n0; n < n1; n++) {                                                                          \
            const BLK *w = (const BLK *)wv + (size_t)n * nb;                                                     \
            for (int t = 0; t < T; t++) {                                                                        \
                const struct quant_x8 *xt = x + (size_t)t * nb;                                                  \
                float acc = 0.0f;                                                                                \
                for (int b = 0; b < nb; b++) {                                                                   \
                    int32_t isum = 0;                                                                            \
                    for (int i = 0; i < QUANT_BLOCK; i++) isum += (WQ) * xt[b].q[i];                             \
                    const float dw = folio_f16_to_f32(w[b].d);                                                   \
                    isum -= (int32_t)(ZERO) * xt[b].qsum;                                                        \
                    acc += dw * xt[b].d * (float)isum;                                                           \
                }                                                                                                \
                out[(size_t)t * ldo + n] = acc + (bias ? bias[n] : 0.0f);                                        \
            }                                                                                                    \
        }                                                                                                        \
    }
DEFINE_SCALAR(q8, struct quant_q8, w[b].q[i], 0)
DEFINE_SCALAR(q4z, struct quant_q4z, nib(w[b].n, i), w[b].z)
#undef DEFINE_SCALAR

void cpu_gemm_q4_scalar(const struct quant_x8 *x, int T, int K, const void *wv, int n0, int n1, float *out, int ldo,
                        const float *bias) {
    const int nb = (int)quant_blocks(K);
    for (int n = n0; n < n1; n++) {
        const struct cpu_q4x4 *g = (const struct cpu_q4x4 *)wv + (size_t)(n / 4) * nb;
        const int j = n % 4;
        for (int t = 0; t < T; t++) {
            const struct quant_x8 *xt = x + (size_t)t * nb;
            float acc = 0.0f;
            for (int b = 0; b < nb; b++) {
                int32_t isum = 0;
                for (int i = 0; i < QUANT_BLOCK; i++) isum += (nib(g[b].n[j], i) - 8) * xt[b].q[i];
                acc += folio_f16_to_f32(g[b].d[j]) * xt[b].d * (float)isum;
            }
            out[(size_t)t * ldo + n] = acc + (bias ? bias[n] : 0.0f);
        }
    }
}

size_t cpu_q4x4_bytes(int64_t rows, int64_t K) {
    return (size_t)((rows + 3) / 4) * (size_t)quant_blocks(K) * sizeof(struct cpu_q4x4);
}

void cpu_q4x4_pack(const struct quant_q4 *src, int64_t rows, int64_t K, struct cpu_q4x4 *dst) {
    const int64_t nb = quant_blocks(K);
    for (int64_t g = 0; g < (rows + 3) / 4; g++)
        for (int64_t b = 0; b < nb; b++) {
            struct cpu_q4x4 *o = dst + g * nb + b;
            for (int j = 0; j < 4; j++) {
                const int64_t r = 4 * g + j;
                if (r < rows) {
                    o->d[j] = src[r * nb + b].d;
                    memcpy(o->n[j], src[r * nb + b].n, sizeof o->n[j]);
                } else { /* padding: zero weights */
                    o->d[j] = 0;
                    memset(o->n[j], 0x88, sizeof o->n[j]);
                }
            }
        }
}
