/* cpu_qkernels_impl.h: the integer GEMM bodies over base/quant.h's blocks, included by
 * cpu_qkernels.c once per instruction set with QKFN() naming and DPBUSD() defined:
 * DPBUSD(acc, u, s) adds to the eight int32 lanes of acc the sums of four adjacent products
 * of unsigned bytes u and signed bytes s (vpdpbusd with VNNI; vpmaddubsw + vpmaddwd on
 * AVX2). Not a public header.
 *
 * A 4-row x QRT-token tile: each block's weights are loaded and unpacked once and serve
 * QRT tokens. Per block, the int8 dot products are exact in int32 and one FMA folds them into
 * fp32 lanes with the block's two scales, so a row's result depends only on its own blocks
 * and tokens: a row computed alone equals the row in a batch, bit for bit. In decode (T = 1)
 * every weight byte is read once: int8 reads 34 bytes per 32 weights, int4 18 (or 20 with a
 * zero point), against 64 for bf16, and the arithmetic per byte (about one vector op per 8)
 * stays under the memory stream on two cores. */

static inline float QKFN(f16)(uint16_t h) { return _cvtsh_ss(h); }

/* The 32 nibbles of a Q4/Q4Z block in K order, as unsigned bytes (0..15). */
static inline __m256i QKFN(unpack4)(const uint8_t *n) {
    const __m128i v = _mm_loadu_si128((const __m128i *)n), m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

static inline float QKFN(hsum)(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define QRT 2

/* Q8: signed weights, so the unsigned operand is |w| and the signed one x with w's sign. */
static inline __attribute__((always_inline)) void QKFN(tile_q8)(const struct quant_x8 *x, const int rt, int nb,
                                                                  const struct quant_q8 *w, int nrows, float *out,
                                                                  int ldo, const float *bias) {
    __m256 acc[4][QRT];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)
        _Pragma("GCC unroll 2") for (int r = 0; r < QRT; r++) acc[j][r] = _mm256_setzero_ps();
    const struct quant_q8 *wr[4];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) wr[j] = w + (size_t)(j < nrows ? j : 0) * nb;
    for (int b = 0; b < nb; b++) {
        __m256i u[4], wv[4];
        float dw[4];
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
            _mm_prefetch((const char *)(wr[j] + b) + QPREFETCH_BYTES, _MM_HINT_T1);
            wv[j] = _mm256_loadu_si256((const __m256i *)wr[j][b].q);
            u[j] = _mm256_abs_epi8(wv[j]);
            dw[j] = QKFN(f16)(wr[j][b].d);
        }
        _Pragma("GCC unroll 2") for (int r = 0; r < QRT; r++) {
            if (r >= rt) break;
            const struct quant_x8 *xb = x + (size_t)r * nb + b;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)xb->q);
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
                const __m256i p = DPBUSD(_mm256_setzero_si256(), u[j], _mm256_sign_epi8(xv, wv[j]));
                acc[j][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw[j] * xb->d), acc[j][r]);
            }
        }
    }
    /* every lane reduced with constant indices, so that acc stays in registers */
    float sums[4][QRT];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)
        _Pragma("GCC unroll 2") for (int r = 0; r < QRT; r++) sums[j][r] = QKFN(hsum)(acc[j][r]);
    for (int r = 0; r < rt; r++)
        for (int j = 0; j < nrows; j++) out[(size_t)r * ldo + j] = sums[j][r] + (bias ? bias[j] : 0.0f);
}

/* Q4 (in the CPU's four-row layout, struct cpu_q4x4): the zero point 8 comes off in the
 * integers: each lane starts from -8 times its four activations (one vpdpbusd per token
 * block, shared by every row), so a lane ends holding sum (n - 8) x exactly and one FMA per
 * block does the rest. QKFN(tile1_q4) (VNNI) computes the same lanes four rows to a 512-bit
 * register and must stay in step with this. */
static inline __m256i QKFN(minus8x)(__m256i xv) {
    return _mm256_sub_epi32(_mm256_setzero_si256(), DPBUSD(_mm256_setzero_si256(), _mm256_set1_epi8(8), xv));
}

static inline __attribute__((always_inline)) void QKFN(tile_q4)(const struct quant_x8 *x, const int rt, int nb,
                                                                  const struct cpu_q4x4 *w, int nrows, float *out,
                                                                  int ldo, const float *bias) {
    __m256 acc[4][QRT];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)
        _Pragma("GCC unroll 2") for (int r = 0; r < QRT; r++) acc[j][r] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const struct cpu_q4x4 *g = w + b;
        _mm_prefetch((const char *)g + QPREFETCH_BYTES, _MM_HINT_T1);
        _mm_prefetch((const char *)g + QPREFETCH_BYTES + 64, _MM_HINT_T1);
        __m256i u[4];
        float dw[4];
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
            u[j] = QKFN(unpack4)(g->n[j]);
            dw[j] = QKFN(f16)(g->d[j]);
        }
        _Pragma("GCC unroll 2") for (int r = 0; r < QRT; r++) {
            if (r >= rt) break;
            const struct quant_x8 *xb = x + (size_t)r * nb + b;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)xb->q), m8 = QKFN(minus8x)(xv);
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
                const __m256i p = DPBUSD(m8, u[j], xv);
                acc[j][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw[j] * xb->d), acc[j][r]);
            }
        }
    }
    float sums[4][QRT];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)
        _Pragma("GCC unroll 2") for (int r = 0; r < QRT; r++) sums[j][r] = QKFN(hsum)(acc[j][r]);
    for (int r = 0; r < rt; r++)
        for (int j = 0; j < nrows; j++) out[(size_t)r * ldo + j] = sums[j][r] + (bias ? bias[j] : 0.0f);
}

#ifdef QK_ZMM
/* Q4 at T = 1 with AVX-512: a group's four rows in one 512-bit register, so a block's
 * unpacking, dot products and scaling cost a quarter of tile_q4's instructions per row, which
 * keeps int4 decode on the memory stream rather than on the ALUs. The lanes are tile_q4's:
 * quarter j of lo holds row j's elements 0-15 (its lanes 0-3 there), quarter j of hi its
 * elements 16-31 (lanes 4-7), against x's halves repeated four times; each row's eight lanes
 * go back into tile_q4's order before the same horizontal sum, so the result is the same bits. */
static inline __attribute__((always_inline)) void QKFN(tile1_q4)(const struct quant_x8 *x, int nb,
                                                                   const struct cpu_q4x4 *w, int nrows, float *out,
                                                                   const float *bias) {
    __m512 acc_lo = _mm512_setzero_ps(), acc_hi = _mm512_setzero_ps();
    const __m512i m15 = _mm512_set1_epi8(15), eight = _mm512_set1_epi8(8);
    const __m512i sidx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    for (int b = 0; b < nb; b++) {
        const struct cpu_q4x4 *g = w + b;
        _mm_prefetch((const char *)g + QPREFETCH_BYTES, _MM_HINT_T1);
        _mm_prefetch((const char *)g + QPREFETCH_BYTES + 64, _MM_HINT_T1);
        const struct quant_x8 *xb = x + b;
        const __m512i xlo = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)xb->q));
        const __m512i xhi = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(xb->q + 16)));
        const __m512i zero = _mm512_setzero_si512();
        const __m512i m8lo = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, eight, xlo));
        const __m512i m8hi = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, eight, xhi));
        const __m512i v = _mm512_loadu_si512(g->n);
        const __m512i lo = _mm512_and_si512(v, m15), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m15);
        const __m128 s4 = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)g->d)), _mm_set1_ps(xb->d));
        const __m512 sc = _mm512_permutexvar_ps(sidx, _mm512_castps128_ps512(s4));
        acc_lo = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(m8lo, lo, xlo)), sc, acc_lo);
        acc_hi = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(m8hi, hi, xhi)), sc, acc_hi);
    }
    float sums[4];
    sums[0] = QKFN(hsum)(_mm256_set_m128(_mm512_extractf32x4_ps(acc_hi, 0), _mm512_extractf32x4_ps(acc_lo, 0)));
    sums[1] = QKFN(hsum)(_mm256_set_m128(_mm512_extractf32x4_ps(acc_hi, 1), _mm512_extractf32x4_ps(acc_lo, 1)));
    sums[2] = QKFN(hsum)(_mm256_set_m128(_mm512_extractf32x4_ps(acc_hi, 2), _mm512_extractf32x4_ps(acc_lo, 2)));
    sums[3] = QKFN(hsum)(_mm256_set_m128(_mm512_extractf32x4_ps(acc_hi, 3), _mm512_extractf32x4_ps(acc_lo, 3)));
    for (int j = 0; j < nrows; j++) out[j] = sums[j] + (bias ? bias[j] : 0.0f);
}
#else
/* Q4 at T = 1 with 256-bit registers: two rows to a register ([row a lo | row b lo], then
 * their hi halves), against x's halves repeated twice; tile_q4's lanes and horizontal sum, so
 * the same bits, in about half of its instructions per row. */
static inline __attribute__((always_inline)) void QKFN(tile1_q4)(const struct quant_x8 *x, int nb,
                                                                   const struct cpu_q4x4 *w, int nrows, float *out,
                                                                   const float *bias) {
    __m256 acc_lo[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 acc_hi[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    const __m256i m15 = _mm256_set1_epi8(15);
    const __m256i pidx[2] = {_mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1), _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3)};
    for (int b = 0; b < nb; b++) {
        const struct cpu_q4x4 *g = w + b;
        _mm_prefetch((const char *)g + QPREFETCH_BYTES, _MM_HINT_T1);
        _mm_prefetch((const char *)g + QPREFETCH_BYTES + 64, _MM_HINT_T1);
        const struct quant_x8 *xb = x + b;
        const __m256i xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)xb->q));
        const __m256i xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xb->q + 16)));
        const __m256i m8lo = QKFN(minus8x)(xlo), m8hi = QKFN(minus8x)(xhi);
        const __m128 s4 = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)g->d)), _mm_set1_ps(xb->d));
        const __m256 s8 = _mm256_castps128_ps256(s4);
        _Pragma("GCC unroll 2") for (int p = 0; p < 2; p++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)g->n[2 * p]);
            const __m256i lo = _mm256_and_si256(v, m15), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m15);
            const __m256 sc = _mm256_permutevar8x32_ps(s8, pidx[p]);
            acc_lo[p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DPBUSD(m8lo, lo, xlo)), sc, acc_lo[p]);
            acc_hi[p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DPBUSD(m8hi, hi, xhi)), sc, acc_hi[p]);
        }
    }
    float sums[4];
    _Pragma("GCC unroll 2") for (int p = 0; p < 2; p++) {
        sums[2 * p] = QKFN(hsum)(_mm256_permute2f128_ps(acc_lo[p], acc_hi[p], 0x20));
        sums[2 * p + 1] = QKFN(hsum)(_mm256_permute2f128_ps(acc_lo[p], acc_hi[p], 0x31));
    }
    for (int j = 0; j < nrows; j++) out[j] = sums[j] + (bias ? bias[j] : 0.0f);
}
#endif

/* Q4Z: unsigned nibbles n times x, then the zero point's share d_w * z * d_x * sum(q_x) (the
 * activation block's s) comes off once per block, in fp32. */
#define DEFINE_QTILE4(SUFFIX, BLK, ZERO)                                                                           \
    static inline __attribute__((always_inline)) void QKFN(tile_##SUFFIX)(                                         \
        const struct quant_x8 *x, const int rt, int nb, const BLK *w, int nrows, float *out, int ldo,              \
        const float *bias) {                                                                                       \
        __m256 acc[4][QRT];                                                                                        \
        float corr[4][QRT] = {{0}};                                                                                \
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)                                                        \
            _Pragma("GCC unroll 2") for (int r = 0; r < QRT; r++) acc[j][r] = _mm256_setzero_ps();                 \
        const BLK *wr[4];                                                                                          \
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) wr[j] = w + (size_t)(j < nrows ? j : 0) * nb;          \
        for (int b = 0; b < nb; b++) {                                                                             \
            __m256i u[4];                                                                                          \
            float dw[4], dz[4];                                                                                    \
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {                                                  \
                _mm_prefetch((const char *)(wr[j] + b) + QPREFETCH_BYTES, _MM_HINT_T1);                            \
                u[j] = QKFN(unpack4)(wr[j][b].n);                                                                  \
                dw[j] = QKFN(f16)(wr[j][b].d);                                                                     \
                dz[j] = dw[j] * (float)(ZERO);                                                                     \
            }                                                                                                      \
            _Pragma("GCC unroll 2") for (int r = 0; r < QRT; r++) {                                                \
                if (r >= rt) break;                                                                                \
                const struct quant_x8 *xb = x + (size_t)r * nb + b;                                                \
                const __m256i xv = _mm256_loadu_si256((const __m256i *)xb->q);                                     \
                _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {                                              \
                    const __m256i p = DPBUSD(_mm256_setzero_si256(), u[j], xv);                                    \
                    acc[j][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw[j] * xb->d), acc[j][r]);  \
                    corr[j][r] += dz[j] * xb->s;                                                                   \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
        float sums[4][QRT];                                                                                        \
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)                                                        \
            _Pragma("GCC unroll 2") for (int r = 0; r < QRT; r++) sums[j][r] = QKFN(hsum)(acc[j][r]) - corr[j][r]; \
        for (int r = 0; r < rt; r++)                                                                               \
            for (int j = 0; j < nrows; j++) out[(size_t)r * ldo + j] = sums[j][r] + (bias ? bias[j] : 0.0f);       \
    }
DEFINE_QTILE4(q4z, struct quant_q4z, wr[j][b].z)
#undef DEFINE_QTILE4

/* A single token through Q4's row-packed tile; 0 = take the generic tile. */
#define QK_TILE1(SUFFIX, ...) QK_TILE1_##SUFFIX(__VA_ARGS__)
#define QK_TILE1_q4(...) (QKFN(tile1_q4)(__VA_ARGS__), 1)
#define QK_TILE1_q8(...) 0
#define QK_TILE1_q4z(...) 0

/* RPU: rows per unit of storage (4 for Q4's four-row groups), so row n starts at unit n / RPU. */
#define DEFINE_QGEMM(SUFFIX, BLK, RPU)                                                                               \
    void QKFN(cpu_gemm_##SUFFIX)(const struct quant_x8 *x, int T, int K, const void *wv, int n0, int n1, float *out, \
                             int ldo, const float *bias) {                                                           \
        const int nb = (int)quant_blocks(K);                                                                         \
        const BLK *w = wv;                                                                                           \
        for (int n = n0; n < n1; n += 4) {                                                                           \
            const int nrows = n1 - n < 4 ? n1 - n : 4;                                                               \
            int t = 0;                                                                                               \
            for (; t + QRT <= T; t += QRT) /* a constant token count, so the tile unrolls into registers */          \
                QKFN(tile_##SUFFIX)(x + (size_t)t * nb, QRT, nb, w + (size_t)(n / RPU) * nb, nrows,                  \
                                    out + (size_t)t * ldo + n, ldo, bias ? bias + n : NULL);                         \
            if (t < T && !QK_TILE1(SUFFIX, x + (size_t)t * nb, nb, w + (size_t)(n / RPU) * nb, nrows,                \
                                   out + (size_t)t * ldo + n, bias ? bias + n : NULL))                               \
                QKFN(tile_##SUFFIX)(x + (size_t)t * nb, 1, nb, w + (size_t)(n / RPU) * nb, nrows,                    \
                                    out + (size_t)t * ldo + n, ldo, bias ? bias + n : NULL);                         \
        }                                                                                                            \
    }
DEFINE_QGEMM(q8, struct quant_q8, 1)
DEFINE_QGEMM(q4, struct cpu_q4x4, 4)
DEFINE_QGEMM(q4z, struct quant_q4z, 1)
#undef DEFINE_QGEMM
#undef QK_TILE1
#undef QK_TILE1_q8
#undef QK_TILE1_q4z
#undef QK_TILE1_q4
#undef QRT
