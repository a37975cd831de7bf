/* cpu_qkernels_impl.h: the integer GEMM bodies over base/quant.h's blocks, included by
 * cpu_qkernels.c once per instruction set with QKFN() naming and DPBUSD() defined:
 * DPBUSD(acc, u, s) adds to the eight int32 lanes of acc the sums of four adjacent products
 * of unsigned bytes u and signed bytes s (vpdpbusd with VNNI; vpmaddubsw + vpmaddwd on
 * AVX2). Not a public header.
 *
 * Tiles of 4 rows x 2 tokens (prefill, batched decode) or 4 rows x 1 token (decode): each
 * block's weights are loaded and unpacked once for the tile's tokens. Per block, each (row,
 * token) pair's dot product is an exact int32 and one FMA folds it into fp32 with the two
 * scales, so a row's result depends only on its own blocks and token: a row computed alone
 * equals the row in a batch, bit for bit. In decode every weight byte is read once: int8
 * reads 34 bytes per 32 weights, int4 18 (20 with a zero point), against 64 for bf16. On two
 * AVX-512 cores int8 decode stays on the memory stream; int4 is within 1.5x of it (more
 * arithmetic per byte), which the 512-bit one-token Q4 tile narrows. */

/* The 32 nibbles of a Q4/Q4Z block in K order, as unsigned bytes (0..15). */
static inline __m256i QKFN(unpack4)(const uint8_t *n) {
    const __m128i v = _mm_loadu_si128((const __m128i *)n), m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

/* Q8 and Q4: each (row, token) pair's block dot product is an exact int32 (its eight lanes
 * summed in integers), and one FMA per pair and block folds it into fp32 with the two scales:
 * acc = fma(float(isum), d_w * d_x, acc), blocks in order. A pair's result therefore does
 * not depend on the tile that computed it: the two-token tile (eight pairs to a register)
 * and the one-token tiles (four pairs) give the same bits, and the float work is one FMA per
 * eight pairs rather than per pair. */

/* Lane i of the result: the sum of p[i]'s eight lanes (integers: any order is exact). */
static inline __m256i QKFN(isum8)(const __m256i *p) {
    const __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
    const __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20), _mm256_permute2x128_si256(h0, h1, 0x31));
}

static inline __m128i QKFN(isum4)(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
    const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* The f16 scales of block b of four rows wr (Q8 or Q4Z blocks), as fp32. */
#define DW4(wr, b)                                                                                                  \
    _mm_cvtph_ps(_mm_setr_epi16((short)(wr)[0][b].d, (short)(wr)[1][b].d, (short)(wr)[2][b].d, (short)(wr)[3][b].d, \
                                0, 0, 0, 0))

/* Stores a tile's pair sums: lane r * 4 + j is row j, token r. */
static inline void QKFN(store_pairs)(const float *sums, int rt, int nrows, float *out, int ldo, const float *bias) {
    for (int r = 0; r < rt; r++)
        for (int j = 0; j < nrows; j++) out[(size_t)r * ldo + j] = sums[r * 4 + j] + (bias ? bias[j] : 0.0f);
}

/* Folds a block's pair sums p[r * 4 + j] (token r, row j; nt tokens) into acc: acc[h] holds
 * tokens 2h and 2h + 1, a lane per pair, and takes fma(float(isum), d_w * d_x, acc). dw: the
 * four rows' scales, twice. */
static inline __attribute__((always_inline)) void QKFN(fold_pairs)(__m256 *acc, const __m256i *p, __m256 dw,
                                                                     const struct quant_x8 *x, int nb, int b,
                                                                     const int nt) {
    _Pragma("GCC unroll 2") for (int h = 0; h < nt / 2; h++) {
        const struct quant_x8 *x0 = x + (size_t)(2 * h) * nb + b, *x1 = x0 + nb;
        const __m256 sc = _mm256_mul_ps(dw, _mm256_set_m128(_mm_set1_ps(x1->d), _mm_set1_ps(x0->d)));
        acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(QKFN(isum8)(p + 8 * h)), sc, acc[h]);
    }
}

/* fold_pairs less each pair's zero-point share z_j * sum(q_x) (Q4Z); z: the rows' zeros, twice. */
static inline __attribute__((always_inline)) void QKFN(fold_pairs_z)(__m256 *acc, const __m256i *p, __m256 dw,
                                                                       __m256i z, const struct quant_x8 *x, int nb,
                                                                       int b, const int nt) {
    _Pragma("GCC unroll 2") for (int h = 0; h < nt / 2; h++) {
        const struct quant_x8 *x0 = x + (size_t)(2 * h) * nb + b, *x1 = x0 + nb;
        const __m256i zq = _mm256_mullo_epi32(z, _mm256_set_m128i(_mm_set1_epi32(x1->qsum), _mm_set1_epi32(x0->qsum)));
        const __m256 sc = _mm256_mul_ps(dw, _mm256_set_m128(_mm_set1_ps(x1->d), _mm_set1_ps(x0->d)));
        acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(QKFN(isum8)(p + 8 * h), zq)), sc, acc[h]);
    }
}

static inline void QKFN(store_tile)(const __m256 *acc, int nt, int nrows, float *out, int ldo, const float *bias) {
    float sums[16];
    for (int h = 0; h < nt / 2; h++) _mm256_storeu_ps(sums + 8 * h, acc[h]);
    QKFN(store_pairs)(sums, nt, nrows, out, ldo, bias);
}

/* Q8: signed weights against signed activations, while vpdpbusd wants one side unsigned.
 * With VNNI, x + 128 is that side and 128 sum(w), computed once per row and block, starts the
 * lanes below zero; vpmaddubsw's int16 pairs would saturate on (x + 128) w, so AVX2 takes |w|
 * against x with w's sign instead. Both give every lane's integer exactly. */
#ifdef QK_ZMM /* aux: -128 sum(w) in each lane */
#define Q8_ROW(wv) \
    _mm256_sub_epi32(_mm256_setzero_si256(), DPBUSD(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80), wv))
#define Q8_X(xv) _mm256_xor_si256(xv, _mm256_set1_epi8((char)0x80))
#define Q8_DOT(aux, wv, xs) DPBUSD(aux, xs, wv)
#else /* aux: |w| */
#define Q8_ROW(wv) _mm256_abs_epi8(wv)
#define Q8_X(xv) (xv)
#define Q8_DOT(aux, wv, xs) DPBUSD(_mm256_setzero_si256(), aux, _mm256_sign_epi8(xs, wv))
#endif

/* Q8, nt tokens (2 or 4). */
static inline __attribute__((always_inline)) void QKFN(tile_q8)(const struct quant_x8 *x, const int nt, int nb,
                                                                  const struct quant_q8 *w, int nrows, float *out,
                                                                  int ldo, const float *bias) {
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    const struct quant_q8 *wr[4];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) wr[j] = w + (size_t)(j < nrows ? j : 0) * nb;
    for (int b = 0; b < nb; b++) {
        __m256i aux[4], wv[4], p[16];
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
            _mm_prefetch((const char *)(wr[j] + b) + QPREFETCH_BYTES, _MM_HINT_T1);
            wv[j] = _mm256_loadu_si256((const __m256i *)wr[j][b].q);
            aux[j] = Q8_ROW(wv[j]);
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < nt; r++) {
            const __m256i xs = Q8_X(_mm256_loadu_si256((const __m256i *)x[(size_t)r * nb + b].q));
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) p[r * 4 + j] = Q8_DOT(aux[j], wv[j], xs);
        }
        const __m128 dw = DW4(wr, b);
        QKFN(fold_pairs)(acc, p, _mm256_set_m128(dw, dw), x, nb, b, nt);
    }
    QKFN(store_tile)(acc, nt, nrows, out, ldo, bias);
}

/* Q8, one token. */
static inline __attribute__((always_inline)) void QKFN(tile1_q8)(const struct quant_x8 *x, int nb,
                                                                   const struct quant_q8 *w, int nrows, float *out,
                                                                   const float *bias) {
    __m128 acc = _mm_setzero_ps();
    const struct quant_q8 *wr[4];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) wr[j] = w + (size_t)(j < nrows ? j : 0) * nb;
    for (int b = 0; b < nb; b++) {
        const __m256i xs = Q8_X(_mm256_loadu_si256((const __m256i *)x[b].q));
        __m256i p[4];
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
            _mm_prefetch((const char *)(wr[j] + b) + QPREFETCH_BYTES, _MM_HINT_T1);
            const __m256i wv = _mm256_loadu_si256((const __m256i *)wr[j][b].q);
            p[j] = Q8_DOT(Q8_ROW(wv), wv, xs);
        }
        const __m128 sc = _mm_mul_ps(DW4(wr, b), _mm_set1_ps(x[b].d));
        acc = _mm_fmadd_ps(_mm_cvtepi32_ps(QKFN(isum4)(p[0], p[1], p[2], p[3])), sc, acc);
    }
    float sums[4];
    _mm_storeu_ps(sums, acc);
    QKFN(store_pairs)(sums, 1, nrows, out, 0, bias);
}

#undef Q8_ROW
#undef Q8_X
#undef Q8_DOT

/* Q4 (in the CPU's four-row layout, struct cpu_q4x4): the zero point 8 comes off in the
 * integers, each lane starting from -8 times its four activations (one vpdpbusd per token
 * block, shared by every row), so the lanes sum to sum (n - 8) x exactly. */
static inline __m256i QKFN(minus8x)(__m256i xv) {
    return _mm256_sub_epi32(_mm256_setzero_si256(), DPBUSD(_mm256_setzero_si256(), _mm256_set1_epi8(8), xv));
}

static inline __attribute__((always_inline)) void QKFN(tile_q4)(const struct quant_x8 *x, const int nt, int nb,
                                                                  const struct cpu_q4x4 *w, int nrows, float *out,
                                                                  int ldo, const float *bias) {
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int b = 0; b < nb; b++) {
        const struct cpu_q4x4 *g = w + b;
        _mm_prefetch((const char *)g + QPREFETCH_BYTES, _MM_HINT_T1);
        _mm_prefetch((const char *)g + QPREFETCH_BYTES + 64, _MM_HINT_T1);
        __m256i u[4], p[16];
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) u[j] = QKFN(unpack4)(g->n[j]);
        _Pragma("GCC unroll 4") for (int r = 0; r < nt; r++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)x[(size_t)r * nb + b].q), m8 = QKFN(minus8x)(xv);
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) p[r * 4 + j] = DPBUSD(m8, u[j], xv);
        }
        const __m128 dw = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)g->d));
        QKFN(fold_pairs)(acc, p, _mm256_set_m128(dw, dw), x, nb, b, nt);
    }
    QKFN(store_tile)(acc, nt, nrows, out, ldo, bias);
}

#ifdef QK_ZMM
/* Q4, one token, AVX-512: a group's four rows in one 512-bit register (quarter j = row j),
 * so a block's unpacking and dot products take a quarter of the instructions per row, which
 * keeps int4 decode on the memory stream rather than on the ALUs. */
static inline __attribute__((always_inline)) void QKFN(tile1_q4)(const struct quant_x8 *x, int nb,
                                                                   const struct cpu_q4x4 *w, int nrows, float *out,
                                                                   const float *bias) {
    __m128 acc = _mm_setzero_ps();
    const __m512i m15 = _mm512_set1_epi8(15), eight = _mm512_set1_epi8(8), zero = _mm512_setzero_si512();
    const __m512i first = _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12);
    for (int b = 0; b < nb; b++) {
        const struct cpu_q4x4 *g = w + b;
        _mm_prefetch((const char *)g + QPREFETCH_BYTES, _MM_HINT_T1);
        _mm_prefetch((const char *)g + QPREFETCH_BYTES + 64, _MM_HINT_T1);
        const __m512i xlo = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)x[b].q));
        const __m512i xhi = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(x[b].q + 16)));
        /* -8 sum x over both halves, then the nibbles' products on top */
        __m512i t = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, eight, xlo), eight, xhi));
        const __m512i v = _mm512_loadu_si512(g->n);
        t = _mm512_dpbusd_epi32(t, _mm512_and_si512(v, m15), xlo);
        t = _mm512_dpbusd_epi32(t, _mm512_and_si512(_mm512_srli_epi16(v, 4), m15), xhi);
        /* each quarter's four lanes summed into its lane 0, then lanes 0, 4, 8, 12 */
        t = _mm512_add_epi32(t, _mm512_shuffle_epi32(t, _MM_PERM_BADC));
        t = _mm512_add_epi32(t, _mm512_shuffle_epi32(t, _MM_PERM_CDAB));
        const __m128i isum = _mm512_castsi512_si128(_mm512_permutexvar_epi32(first, t));
        const __m128 sc = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)g->d)), _mm_set1_ps(x[b].d));
        acc = _mm_fmadd_ps(_mm_cvtepi32_ps(isum), sc, acc);
    }
    float sums[4];
    _mm_storeu_ps(sums, acc);
    QKFN(store_pairs)(sums, 1, nrows, out, 0, bias);
}
#else
/* Q4, one token, 256-bit: two rows to a register ([row a | row b] nibbles), x's halves
 * repeated. */
static inline __attribute__((always_inline)) void QKFN(tile1_q4)(const struct quant_x8 *x, int nb,
                                                                   const struct cpu_q4x4 *w, int nrows, float *out,
                                                                   const float *bias) {
    __m128 acc = _mm_setzero_ps();
    const __m256i m15 = _mm256_set1_epi8(15);
    for (int b = 0; b < nb; b++) {
        const struct cpu_q4x4 *g = w + b;
        _mm_prefetch((const char *)g + QPREFETCH_BYTES, _MM_HINT_T1);
        _mm_prefetch((const char *)g + QPREFETCH_BYTES + 64, _MM_HINT_T1);
        const __m256i xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)x[b].q));
        const __m256i xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(x[b].q + 16)));
        const __m256i m8 = _mm256_add_epi32(QKFN(minus8x)(xlo), QKFN(minus8x)(xhi));
        __m256i t[2]; /* [row 2p lanes | row 2p + 1 lanes] */
        _Pragma("GCC unroll 2") for (int p = 0; p < 2; p++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)g->n[2 * p]);
            t[p] = DPBUSD(m8, _mm256_and_si256(v, m15), xlo);
            t[p] = DPBUSD(t[p], _mm256_and_si256(_mm256_srli_epi16(v, 4), m15), xhi);
        }
        /* each row's four lanes summed: [r0, r0, r2, r2 | r1, r1, r3, r3], then r0..r3 */
        __m256i c = _mm256_add_epi32(_mm256_unpacklo_epi64(t[0], t[1]), _mm256_unpackhi_epi64(t[0], t[1]));
        c = _mm256_add_epi32(c, _mm256_shuffle_epi32(c, 0xB1));
        const __m128i isum = _mm_blend_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1), 0xA);
        const __m128 sc = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)g->d)), _mm_set1_ps(x[b].d));
        acc = _mm_fmadd_ps(_mm_cvtepi32_ps(isum), sc, acc);
    }
    float sums[4];
    _mm_storeu_ps(sums, acc);
    QKFN(store_pairs)(sums, 1, nrows, out, 0, bias);
}
#endif

/* Q4Z: unsigned nibbles times x, then the zero point's share z * sum(q_x) off each pair's
 * integer sum. */
static inline __m128i QKFN(z4_q4z)(const struct quant_q4z *const *wr, int b) {
    return _mm_setr_epi32(wr[0][b].z, wr[1][b].z, wr[2][b].z, wr[3][b].z);
}

static inline __attribute__((always_inline)) void QKFN(tile_q4z)(const struct quant_x8 *x, const int nt, int nb,
                                                                   const struct quant_q4z *w, int nrows, float *out,
                                                                   int ldo, const float *bias) {
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    const struct quant_q4z *wr[4];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) wr[j] = w + (size_t)(j < nrows ? j : 0) * nb;
    for (int b = 0; b < nb; b++) {
        __m256i u[4], p[16];
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
            _mm_prefetch((const char *)(wr[j] + b) + QPREFETCH_BYTES, _MM_HINT_T1);
            u[j] = QKFN(unpack4)(wr[j][b].n);
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < nt; r++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)x[(size_t)r * nb + b].q);
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) p[r * 4 + j] = DPBUSD(_mm256_setzero_si256(), u[j], xv);
        }
        const __m128i z = QKFN(z4_q4z)(wr, b);
        const __m128 dw = DW4(wr, b);
        QKFN(fold_pairs_z)(acc, p, _mm256_set_m128(dw, dw), _mm256_set_m128i(z, z), x, nb, b, nt);
    }
    QKFN(store_tile)(acc, nt, nrows, out, ldo, bias);
}

static inline __attribute__((always_inline)) void QKFN(tile1_q4z)(const struct quant_x8 *x, int nb,
                                                                    const struct quant_q4z *w, int nrows, float *out,
                                                                    const float *bias) {
    __m128 acc = _mm_setzero_ps();
    const struct quant_q4z *wr[4];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) wr[j] = w + (size_t)(j < nrows ? j : 0) * nb;
    for (int b = 0; b < nb; b++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)x[b].q);
        __m256i p[4];
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
            _mm_prefetch((const char *)(wr[j] + b) + QPREFETCH_BYTES, _MM_HINT_T1);
            p[j] = DPBUSD(_mm256_setzero_si256(), QKFN(unpack4)(wr[j][b].n), xv);
        }
        const __m128i zq = _mm_mullo_epi32(QKFN(z4_q4z)(wr, b), _mm_set1_epi32(x[b].qsum));
        const __m128 sc = _mm_mul_ps(DW4(wr, b), _mm_set1_ps(x[b].d));
        acc = _mm_fmadd_ps(_mm_cvtepi32_ps(_mm_sub_epi32(QKFN(isum4)(p[0], p[1], p[2], p[3]), zq)), sc, acc);
    }
    float sums[4];
    _mm_storeu_ps(sums, acc);
    QKFN(store_pairs)(sums, 1, nrows, out, 0, bias);
}

/* Tiles of four or two tokens (tile_), or one (tile1_). */
#define QK_TILE2(SUFFIX, x, nt, nb, w, nrows, out, ldo, bias) QKFN(tile_##SUFFIX)(x, nt, nb, w, nrows, out, ldo, bias)
#define QK_TILE1(SUFFIX, x, nb, w, nrows, out, ldo, bias) QK_TILE1_##SUFFIX(x, nb, w, nrows, out, ldo, bias)
#define QK_TILE1_q8(x, nb, w, nrows, out, ldo, bias) QKFN(tile1_q8)(x, nb, w, nrows, out, bias)
#define QK_TILE1_q4(x, nb, w, nrows, out, ldo, bias) QKFN(tile1_q4)(x, nb, w, nrows, out, bias)
#define QK_TILE1_q4z(x, nb, w, nrows, out, ldo, bias) QKFN(tile1_q4z)(x, nb, w, nrows, out, bias)

/* RPU: rows per unit of storage (4 for Q4's four-row groups), so row n starts at unit n / RPU. */
#define DEFINE_QGEMM(SUFFIX, BLK, RPU)                                                                          \
    void QKFN(cpu_gemm_##SUFFIX)(const struct quant_x8 *x, int T, int K, const void *wv, int n0, int n1,        \
                                 float *out, int ldo, const float *bias) {                                      \
        const int nb = (int)quant_blocks(K);                                                                    \
        const BLK *w = wv;                                                                                      \
        for (int n = n0; n < n1; n += 4) {                                                                      \
            const int nrows = n1 - n < 4 ? n1 - n : 4;                                                          \
            const BLK *wn = w + (size_t)(n / RPU) * nb;                                                         \
            int t = 0;                                                                                          \
            for (; t + 4 <= T; t += 4)                                                                          \
                QK_TILE2(SUFFIX, x + (size_t)t * nb, 4, nb, wn, nrows, out + (size_t)t * ldo + n, ldo,          \
                         bias ? bias + n : NULL);                                                               \
            for (; t + 2 <= T; t += 2)                                                                          \
                QK_TILE2(SUFFIX, x + (size_t)t * nb, 2, nb, wn, nrows, out + (size_t)t * ldo + n, ldo,          \
                         bias ? bias + n : NULL);                                                               \
            if (t < T)                                                                                          \
                QK_TILE1(SUFFIX, x + (size_t)t * nb, nb, wn, nrows, out + (size_t)t * ldo + n, ldo,             \
                         bias ? bias + n : NULL);                                                               \
        }                                                                                                       \
    }
DEFINE_QGEMM(q8, struct quant_q8, 1)
DEFINE_QGEMM(q4, struct cpu_q4x4, 4)
DEFINE_QGEMM(q4z, struct quant_q4z, 1)
#undef DEFINE_QGEMM
#undef QK_TILE1
#undef DW4
#undef QK_TILE1_q8
#undef QK_TILE1_q4z
#undef QK_TILE1_q4
#undef QK_TILE2
