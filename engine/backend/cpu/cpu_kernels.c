/* cpu_kernels: see cpu_kernels.h. Each ISA block below defines the vector primitives and
 * includes the shared bodies under a target pragma, so no file needs global -mavx flags. */
#include "backend/cpu/cpu_kernels.h"

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Weight rows widened to fp32 for a batched GEMM (see DEFINE_GEMM): 64K floats, so at least
 * four rows of K <= 16384; longer rows keep widening in registers. Per thread, since every
 * pool thread runs GEMM tasks. Allocated on a thread's first batched GEMM (the first forward
 * pass) rather than held in static TLS: 256 KiB of TLS would land in every thread of the
 * process, HTTP workers included, and overflow stacks that libraries size tightly. */
#define GEMM_PANEL_FLOATS 65536
static pthread_key_t panel_key;
static pthread_once_t panel_once = PTHREAD_ONCE_INIT;

static void panel_key_init(void) { pthread_key_create(&panel_key, free); }

/* NULL when out of memory: the GEMM then widens in registers instead. */
static float *gemm_panel_get(void) {
    pthread_once(&panel_once, panel_key_init);
    float *p = pthread_getspecific(panel_key);
    if (!p && (p = aligned_alloc(64, sizeof(float) * GEMM_PANEL_FLOATS))) pthread_setspecific(panel_key, p);
    return p;
}

/* A row of zero attention weights for the missing heads of a group (see attn_block). */
static const float attn_zero_scores[ATTN_BLOCK_MAX];

/* Software prefetch distance for weight streams (see the GEMM microkernel). */
#define PREFETCH_BYTES 32768

/* ---- AVX-512 (16 fp32 lanes; 32 registers hold a 4x4 accumulator tile) ---- */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")
#endif
/* The horizontal sums of 16 vectors at once, by a transpose-and-add tree (15 shuffle-add
 * steps instead of 16 separate reductions): lane i of the result is the sum of v[i]. Each sum
 * adds only its own vector's lanes, in a fixed order, so it does not depend on the other 15. */
static inline __m512 reduce16_avx512(const __m512 *v) {
    __m512 u[4];
    for (int r = 0; r < 4; r++) {
        const __m512 *x = v + 4 * r;
        __m512 t01 = _mm512_add_ps(_mm512_unpacklo_ps(x[0], x[1]), _mm512_unpackhi_ps(x[0], x[1]));
        __m512 t23 = _mm512_add_ps(_mm512_unpacklo_ps(x[2], x[3]), _mm512_unpackhi_ps(x[2], x[3]));
        __m512d a = _mm512_castps_pd(t01), b = _mm512_castps_pd(t23);
        u[r] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    __m512 w0 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88), _mm512_shuffle_f32x4(u[0], u[1], 0xDD));
    __m512 w1 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88), _mm512_shuffle_f32x4(u[2], u[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w0, w1, 0x88), _mm512_shuffle_f32x4(w0, w1, 0xDD));
}

/* The 16 sums of a 4x4 GEMM tile: sums[r * 4 + j] = sum(acc[j][r]). A third of the FMAs'
 * time at K = 576 went to separate reductions before. */
static inline void reduce_tile_avx512(__m512 acc[4][4], float *sums) {
    __m512 v[16];
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 4; j++) v[r * 4 + j] = acc[j][r];
    _mm512_storeu_ps(sums, reduce16_avx512(v));
}
#define REDUCE_TILE(acc, sums) reduce_tile_avx512(acc, sums)
#define REDUCE_VL(v) reduce16_avx512(v)
#define V __m512
#define VL 16
#define GEMM_RT 4
#define V_ZERO() _mm512_setzero_ps()
#define V_SET1(a) _mm512_set1_ps(a)
#define V_LOAD_F32(p) _mm512_loadu_ps(p)
#define V_LOAD_BF16(p) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define V_LOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_ADD(a, b) _mm512_add_ps(a, b)
#define V_STORE(p, v) _mm512_storeu_ps(p, v)
#define V_REDUCE(a) _mm512_reduce_add_ps(a)
#define V_MUL(a, b) _mm512_mul_ps(a, b)
#define V_SUB(a, b) _mm512_sub_ps(a, b)
#define V_DIV(a, b) _mm512_div_ps(a, b)
#define V_MAX(a, b) _mm512_max_ps(a, b)
#define V_REDUCE_MAX(a) _mm512_reduce_max_ps(a)
#define V_MIN(a, b) _mm512_min_ps(a, b)
#define V_ROUND(a) _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define V_LDEXP(y, n) _mm512_scalef_ps(y, n)
#define KFN(name) name##_avx512
#define PREFETCH_AHEAD(p) _mm_prefetch((const char *)(p) + PREFETCH_BYTES, _MM_HINT_T1)
#define KFN_ISA "avx512"
/* e4m3 bytes to the f16 with the same sign, exponent and mantissa bits: value * 2^-8 */
#define FP8_TO_F16(u16) \
    _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(u16, _mm256_set1_epi16(0x80)), 8), \
                    _mm256_slli_epi16(_mm256_and_si256(u16, _mm256_set1_epi16(0x7F)), 7))
#define V_LOAD_FP8(p) _mm512_cvtph_ps(FP8_TO_F16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(p)))))
#define KFN_Q(name) name##_avx2 /* replaced by the VNNI ones where the CPU has them (cpu_kernels_get) */
#define KFN_QX cpu_quantize_x8_avx2
#define KFN_ISA_Q "avx2"
#include "backend/cpu/cpu_kernels_impl.h"
#include "backend/cpu/cpu_kernels_undef.h"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

/* ---- AVX2 + FMA (8 lanes; 16 registers: a 4x2 accumulator tile) ---- */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
/* reduce16_avx512 for 8 lanes: lane i of the result is the sum of v[i]. */
static inline __m256 reduce8_avx2(const __m256 *v) {
    __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}
/* y * 2^n for integral n in [-126, 127], through the exponent bits (AVX2 has no scalef). */
static inline __m256 ldexp_avx2(__m256 y, __m256 n) {
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}
#define REDUCE_TILE(acc, sums)                                                               \
    for (int r_ = 0; r_ < GEMM_RT; r_++)                                                     \
        for (int j_ = 0; j_ < 4; j_++) (sums)[r_ * 4 + j_] = V_REDUCE((acc)[j_][r_])
#define REDUCE_VL(v) reduce8_avx2(v)
#define V __m256
#define VL 8
#define GEMM_RT 2
#define V_ZERO() _mm256_setzero_ps()
#define V_SET1(a) _mm256_set1_ps(a)
#define V_LOAD_F32(p) _mm256_loadu_ps(p)
#define V_LOAD_BF16(p) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define V_LOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define V_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_ADD(a, b) _mm256_add_ps(a, b)
#define V_STORE(p, v) _mm256_storeu_ps(p, v)
#define V_REDUCE(a) hsum256(a)
#define V_MUL(a, b) _mm256_mul_ps(a, b)
#define V_SUB(a, b) _mm256_sub_ps(a, b)
#define V_DIV(a, b) _mm256_div_ps(a, b)
#define V_MAX(a, b) _mm256_max_ps(a, b)
#define V_REDUCE_MAX(a) hmax256(a)
#define V_MIN(a, b) _mm256_min_ps(a, b)
#define V_ROUND(a) _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define V_LDEXP(y, n) ldexp_avx2(y, n)
#define KFN(name) name##_avx2
#define PREFETCH_AHEAD(p) _mm_prefetch((const char *)(p) + PREFETCH_BYTES, _MM_HINT_T1)
#define KFN_ISA "avx2"
#define FP8_TO_F16(u16) \
    _mm_or_si128(_mm_slli_epi16(_mm_and_si128(u16, _mm_set1_epi16(0x80)), 8), \
                 _mm_slli_epi16(_mm_and_si128(u16, _mm_set1_epi16(0x7F)), 7))
#define V_LOAD_FP8(p) _mm256_cvtph_ps(FP8_TO_F16(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(p)))))
#define KFN_Q(name) name##_avx2
#define KFN_QX cpu_quantize_x8_avx2
#define KFN_ISA_Q "avx2"
#include "backend/cpu/cpu_kernels_impl.h"
#include "backend/cpu/cpu_kernels_undef.h"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

/* ---- portable C (1 "lane"): the reference the vector variants are tested against ---- */
#define REDUCE_TILE(acc, sums)                                                               \
    for (int r_ = 0; r_ < GEMM_RT; r_++)                                                     \
        for (int j_ = 0; j_ < 4; j_++) (sums)[r_ * 4 + j_] = V_REDUCE((acc)[j_][r_])
#define REDUCE_VL(v) ((v)[0])
#define V float
#define VL 1
#define GEMM_RT 1
#define V_ZERO() 0.0f
#define V_SET1(a) (a)
#define V_LOAD_F32(p) (*(const float *)(p))
#define V_LOAD_BF16(p) folio_bf16_to_f32(*(const uint16_t *)(p))
#define V_LOAD_F16(p) folio_f16_to_f32(*(const uint16_t *)(p))
#define V_FMA(a, b, c) ((a) * (b) + (c))
#define V_ADD(a, b) ((a) + (b))
#define V_STORE(p, v) (*(p) = (v))
#define V_REDUCE(a) (a)
#define V_MUL(a, b) ((a) * (b))
#define V_SUB(a, b) ((a) - (b))
#define V_DIV(a, b) ((a) / (b))
#define V_MAX(a, b) fmaxf(a, b)
#define V_REDUCE_MAX(a) (a)
#define V_MIN(a, b) fminf(a, b)
#define V_ROUND(a) nearbyintf(a)
#define V_LDEXP(y, n) ldexpf(y, (int)(n))
#define KFN(name) name##_scalar
#define PREFETCH_AHEAD(p) ((void)(p))
#define KFN_ISA "scalar"
#define V_LOAD_FP8(p) (quant_e4m3_to_f32(*(const uint8_t *)(p)) * (1.0f / 256.0f))
#define KFN_Q(name) name##_scalar
#define KFN_QX quant_row_x8
#define KFN_ISA_Q "scalar"
#include "backend/cpu/cpu_kernels_impl.h"

/* A float table with the integer GEMMs of a vpdpbusd variant. */
static void with_dpbusd(struct cpu_kernels *dst, const struct cpu_kernels *src, const char *qisa, cpu_gemm_q_fn q8,
                        cpu_gemm_q_fn q4, cpu_gemm_q_fn q4z) {
    *dst = *src;
    dst->qisa = qisa;
    dst->gemm_q[FOLIO_Q8] = q8;
    dst->gemm_q[FOLIO_Q4] = q4;
    dst->gemm_q[FOLIO_Q4Z] = q4z;
}

/* AVX-512 VNNI's table, and AVX2's with AVX-VNNI (Alder Lake, Zen 5), built once. */
static struct cpu_kernels kernels_avx512_vnni, kernels_avx2_vnni;
static pthread_once_t vnni_once = PTHREAD_ONCE_INIT, avxvnni_once = PTHREAD_ONCE_INIT;

static void vnni_init(void) {
    with_dpbusd(&kernels_avx512_vnni, &kernels_avx512, "avx512-vnni", cpu_gemm_q8_vnni, cpu_gemm_q4_vnni,
                cpu_gemm_q4z_vnni);
}

static void avxvnni_init(void) {
    with_dpbusd(&kernels_avx2_vnni, &kernels_avx2, "avx-vnni", cpu_gemm_q8_avxvnni, cpu_gemm_q4_avxvnni,
                cpu_gemm_q4z_avxvnni);
}

/* CPUID leaf 7 subleaf 1, EAX bit 4 (not every compiler's __builtin_cpu_supports knows it). */
static int has_avxvnni(void) {
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 4 & 1);
}

const struct cpu_kernels *cpu_kernels_by_isa(const char *isa) {
    __builtin_cpu_init();
    if (strcmp(isa, "avx512") == 0) {
        if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw")) return NULL;
        if (!__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq") ||
            !__builtin_cpu_supports("avx512vnni"))
            return &kernels_avx512;
        pthread_once(&vnni_once, vnni_init);
        return &kernels_avx512_vnni;
    }
    if (strcmp(isa, "avx2") == 0) {
        if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return NULL;
        if (!has_avxvnni()) return &kernels_avx2;
        pthread_once(&avxvnni_once, avxvnni_init);
        return &kernels_avx2_vnni;
    }
    if (strcmp(isa, "scalar") == 0) return &kernels_scalar;
    return NULL;
}

const struct cpu_kernels *cpu_kernels_get(void) {
    const char *want = getenv("FOLIO_CPU_ISA");
    const struct cpu_kernels *k = want && *want ? cpu_kernels_by_isa(want) : NULL;
    if (k) return k;
    if ((k = cpu_kernels_by_isa("avx512"))) return k;
    if ((k = cpu_kernels_by_isa("avx2"))) return k;
    return &kernels_scalar;
}
