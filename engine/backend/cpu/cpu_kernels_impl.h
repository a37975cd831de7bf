/* cpu_kernels_impl.h: the kernel bodies, included by cpu_kernels.c once per ISA with
 * V/VL/V_* primitives and KFN() naming defined. Not a public header. */

/* Loads one vector of weights starting at element k of a row, widened to fp32. */
#define LOADW_F32(p, k) V_LOAD_F32((const float *)(p) + (k))
#define LOADW_BF16(p, k) V_LOAD_BF16((const uint16_t *)(p) + (k))
#define LOADW_F16(p, k) V_LOAD_F16((const uint16_t *)(p) + (k))
#define SCALW_F32(p, k) (((const float *)(p))[k])
#define SCALW_BF16(p, k) folio_bf16_to_f32(((const uint16_t *)(p))[k])
#define SCALW_F16(p, k) folio_f16_to_f32(((const uint16_t *)(p))[k])
/* Element i of a KV cache of dtype KVT (F32, BF16 or FP8) widened to fp32: a vector from i
 * on, or one. FP8 comes out times 2^-8 (V_LOAD_FP8); attention scales that back once. */
#define KV_VLOAD(KVT, p, i)                                                                         \
    ((KVT) == FOLIO_BF16  ? V_LOAD_BF16((const uint16_t *)(p) + (i))                                \
     : (KVT) == FOLIO_FP8 ? V_LOAD_FP8((const uint8_t *)(p) + (i))                                  \
                          : V_LOAD_F32((const float *)(p) + (i)))
#define KV_SLOAD(KVT, p, i)                                                                         \
    ((KVT) == FOLIO_BF16  ? folio_bf16_to_f32(((const uint16_t *)(p))[i])                           \
     : (KVT) == FOLIO_FP8 ? folio_widen(p, FOLIO_FP8, i) * (1.0f / 256.0f)                          \
                          : ((const float *)(p))[i])
#define LOADW_FP8(p, k) V_LOAD_FP8((const uint8_t *)(p) + (k))
#define SCALW_FP8(p, k) (quant_e4m3_to_f32(((const uint8_t *)(p))[k]) * (1.0f / 256.0f))

/* The GEMM microkernel computes a 4-row x RT-token tile: each weight vector loaded (and
 * widened) once feeds RT FMAs, which is what makes prefill compute-bound rather than
 * weight-bandwidth-bound. For decode (T=1) it degenerates to 4 independent dot products
 * streaming the weights, which is the memory roofline case. */
#define DEFINE_TILE(SUFFIX, ELT, LOADW, SCALW, PREFETCH)                                              \
    static void KFN(gemm_tile_##SUFFIX)(const float *x, int RT, int K, const ELT *w, float *out,      \
                                        int ldo, int nrows, const float *bias, const float *sc) {     \
        V acc[4][GEMM_RT];                                                                            \
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)                                           \
            _Pragma("GCC unroll 8") for (int r = 0; r < GEMM_RT; r++) acc[j][r] = V_ZERO();           \
        const ELT *w0 = w, *w1 = w + (nrows > 1 ? K : 0), *w2 = w + (nrows > 2 ? 2 * K : 0),          \
                  *w3 = w + (nrows > 3 ? 3 * (size_t)K : 0);                                          \
        int k = 0;                                                                                    \
        for (; k + VL <= K; k += VL) {                                                                \
            /* Rows are short (a few KB), so the hardware prefetcher never ramps up on them;          \
             * fetching ~32 KB ahead into L2 keeps enough misses in flight to approach the            \
             * streaming bandwidth in decode, where every weight is read exactly once. */             \
            if (PREFETCH) {                                                                           \
                PREFETCH_AHEAD(w0 + k);                                                               \
                PREFETCH_AHEAD(w1 + k);                                                               \
                PREFETCH_AHEAD(w2 + k);                                                               \
                PREFETCH_AHEAD(w3 + k);                                                               \
            }                                                                                         \
            V a0 = LOADW(w0, k), a1 = LOADW(w1, k), a2 = LOADW(w2, k), a3 = LOADW(w3, k);             \
            _Pragma("GCC unroll 8") for (int r = 0; r < GEMM_RT; r++) {                               \
                if (r < RT) {                                                                         \
                    V xv = V_LOAD_F32(x + (size_t)r * K + k);                                         \
                    acc[0][r] = V_FMA(a0, xv, acc[0][r]);                                             \
                    acc[1][r] = V_FMA(a1, xv, acc[1][r]);                                             \
                    acc[2][r] = V_FMA(a2, xv, acc[2][r]);                                             \
                    acc[3][r] = V_FMA(a3, xv, acc[3][r]);                                             \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
        const ELT *wr[4] = {w0, w1, w2, w3};                                                          \
        float sums[4 * GEMM_RT]; /* [token][row] */                                                   \
        REDUCE_TILE(acc, sums);                                                                       \
        for (int r = 0; r < RT; r++) {                                                                \
            for (int j = 0; j < nrows; j++) {                                                         \
                float s = sums[r * 4 + j];                                                            \
                for (int kk = k; kk < K; kk++) s += SCALW(wr[j], kk) * x[(size_t)r * K + kk];         \
                /* sc: FP8 row scales, times the 2^8 its widening leaves out */                       \
                out[(size_t)r * ldo + j] = (sc ? s * (sc[j] * 256.0f) : s) + (bias ? bias[j] : 0.0f); \
            }                                                                                         \
        }                                                                                             \
    }

#define DEFINE_GEMM(SUFFIX, ELT, LOADW, SCALW, PANEL)                                                     \
    DEFINE_TILE(SUFFIX, ELT, LOADW, SCALW, 1)                                                             \
    static void KFN(gemm_s_##SUFFIX)(const float *x, int T, int K, const void *wv, int n0, int n1,        \
                                   float *out, int ldo, const float *bias, const float *sc) {             \
        const ELT *w = wv;                                                                                \
        /* Several token tiles reuse these rows: widen up to a panel of them to fp32 once, so the         \
         * tiles run pure loads and FMAs, and sweep every row of the panel for one token tile             \
         * while it is in L1. Widening is exact and each sum keeps its order, so the results              \
         * are bit-identical to the in-register path that decode takes. */                                \
        const int panel_rows = K <= GEMM_PANEL_FLOATS / 4 ? (GEMM_PANEL_FLOATS / K) & ~3 : 0;             \
        float *gemm_panel = PANEL && T > GEMM_RT && panel_rows >= 4 ? gemm_panel_get() : NULL;            \
        if (gemm_panel) {                                                                                 \
            for (int p0 = n0; p0 < n1; p0 += panel_rows) {                                                \
                const int p1 = n1 - p0 < panel_rows ? n1 : p0 + panel_rows;                               \
                for (int j = 0; j < p1 - p0; j++) {                                                       \
                    const ELT *wj = w + (size_t)(p0 + j) * K;                                             \
                    float *dst = gemm_panel + (size_t)j * K;                                              \
                    int k = 0;                                                                            \
                    for (; k + VL <= K; k += VL) V_STORE(dst + k, LOADW(wj, k));                          \
                    for (; k < K; k++) dst[k] = SCALW(wj, k);                                             \
                }                                                                                         \
                for (int t = 0; t < T; t += GEMM_RT) {                                                    \
                    const int rt = T - t < GEMM_RT ? T - t : GEMM_RT;                                     \
                    for (int n = p0; n < p1; n += 4)                                                      \
                        KFN(gemm_tile_panel)(x + (size_t)t * K, rt, K, gemm_panel + (size_t)(n - p0) * K, \
                                           out + (size_t)t * ldo + n, ldo, p1 - n < 4 ? p1 - n : 4,       \
                                           bias ? bias + n : NULL, sc ? sc + n : NULL);                   \
                }                                                                                         \
            }                                                                                             \
            return;                                                                                       \
        }                                                                                                 \
        for (int n = n0; n < n1; n += 4) {                                                                \
            const int nrows = n1 - n < 4 ? n1 - n : 4;                                                    \
            for (int t = 0; t < T; t += GEMM_RT) {                                                        \
                const int rt = T - t < GEMM_RT ? T - t : GEMM_RT;                                         \
                KFN(gemm_tile_##SUFFIX)(x + (size_t)t * K, rt, K, w + (size_t)n * K,                      \
                                        out + (size_t)t * ldo + n, ldo, nrows, bias ? bias + n : NULL,    \
                                        sc ? sc + n : NULL);                                              \
            }                                                                                             \
        }                                                                                                 \
    }

/* The panel is in L1/L2 already: no prefetch, which would only take load slots. */
DEFINE_TILE(panel, float, LOADW_F32, SCALW_F32, 0)
DEFINE_GEMM(f32, float, LOADW_F32, SCALW_F32, 0)
DEFINE_GEMM(bf16, uint16_t, LOADW_BF16, SCALW_BF16, 1)
DEFINE_GEMM(f16, uint16_t, LOADW_F16, SCALW_F16, 1)
/* FP8 widens through f16 (e4m3 is f16 with 4 exponent bits and 3 mantissa bits), which gives
 * the value times 2^-8 exactly, subnormals included; the row scale puts the 2^8 back. */
DEFINE_GEMM(fp8, uint8_t, LOADW_FP8, SCALW_FP8, 1)

#define DEFINE_GEMM_ENTRY(SUFFIX)                                                                            \
    static void KFN(gemm_##SUFFIX)(const float *x, int T, int K, const void *wv, int n0, int n1, float *out, \
                                   int ldo, const float *bias) {                                             \
        KFN(gemm_s_##SUFFIX)(x, T, K, wv, n0, n1, out, ldo, bias, NULL);                                     \
    }
DEFINE_GEMM_ENTRY(f32)
DEFINE_GEMM_ENTRY(bf16)
DEFINE_GEMM_ENTRY(f16)
#undef DEFINE_GEMM_ENTRY

static void KFN(gemm_fp8)(const float *x, int T, int K, const void *w, const float *scale, int n0, int n1,
                          float *out, int ldo, const float *bias) {
    KFN(gemm_s_fp8)(x, T, K, w, n0, n1, out, ldo, bias, scale);
}

static float KFN(dot)(const float *a, const float *b, int n) {
    V acc0 = V_ZERO(), acc1 = V_ZERO();
    int i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        acc0 = V_FMA(V_LOAD_F32(a + i), V_LOAD_F32(b + i), acc0);
        acc1 = V_FMA(V_LOAD_F32(a + i + VL), V_LOAD_F32(b + i + VL), acc1);
    }
    for (; i + VL <= n; i += VL) acc0 = V_FMA(V_LOAD_F32(a + i), V_LOAD_F32(b + i), acc0);
    float s = V_REDUCE(V_ADD(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* e^x for the softmax weights (x <= 0): Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, a
 * degree-7 Taylor polynomial for e^r (relative error ~1e-7), then y * 2^n. Inputs below -87
 * give ~1e-38 rather than 0, which no softmax sum can tell apart. */
static inline V KFN(vexp)(V x) {
    x = V_MIN(V_MAX(x, V_SET1(-87.0f)), V_SET1(88.0f));
    V n = V_ROUND(V_MUL(x, V_SET1(1.44269504089f)));
    V r = V_FMA(n, V_SET1(-0.693145751953125f), x);
    r = V_FMA(n, V_SET1(-1.428606765330187e-06f), r);
    V y = V_SET1(1.0f / 5040);
    y = V_FMA(y, r, V_SET1(1.0f / 720));
    y = V_FMA(y, r, V_SET1(1.0f / 120));
    y = V_FMA(y, r, V_SET1(1.0f / 24));
    y = V_FMA(y, r, V_SET1(1.0f / 6));
    y = V_FMA(y, r, V_SET1(0.5f));
    y = V_FMA(y, r, V_SET1(1.0f));
    y = V_FMA(y, r, V_SET1(1.0f));
    return V_LDEXP(y, n);
}

/* One KV block of attention for the g query heads that share a KV head (GQA), folded into a
 * running (online) softmax: each K and V row is read once for all g heads, the scores of a
 * block are exponentiated a vector at a time, and nothing is called per key. For short
 * head_dim the time goes to the per-score horizontal sums; the block's rows stay in L1.
 * q: [g, hd] pre-scaled by 1/sqrt(hd); k, v: [n, hd]; m, l: [g] running max and sum (m starts
 * at -inf, l at 0); acc: [g, hd] running unnormalized output; s: [g, n] scratch. */
static inline __attribute__((always_inline)) void KFN(attn_block_kv)(const float *q, int g, const void *k,
                                                                     const void *v, int n, int hd, float softcap,
                                                                     float *m, float *l, float *acc, float *s,
                                                                     const enum folio_dtype kvt) {
    /* Scores, VL keys at a time: VL dot products accumulate side by side and one reduction
     * tree turns them into a vector of VL scores (a single horizontal sum per score would
     * cost more than its FMAs at head_dim 64). */
    for (int j = 0; j < g; j++) {
        const float *qj = q + (size_t)j * hd;
        float *sj = s + (size_t)j * n;
        int i = 0;
        for (; i + VL <= n; i += VL) {
            V a[VL];
            _Pragma("GCC unroll 16") for (int r = 0; r < VL; r++) a[r] = V_ZERO();
            int d = 0;
            for (; d + VL <= hd; d += VL) {
                const V qv = V_LOAD_F32(qj + d);
                _Pragma("GCC unroll 16") for (int r = 0; r < VL; r++)
                    a[r] = V_FMA(qv, KV_VLOAD(kvt, k, (size_t)(i + r) * hd + d), a[r]);
            }
            V sv = REDUCE_VL(a);
            if (d < hd) {
                float t[VL];
                for (int r = 0; r < VL; r++) {
                    t[r] = 0.0f;
                    for (int dd = d; dd < hd; dd++) t[r] += qj[dd] * KV_SLOAD(kvt, k, (size_t)(i + r) * hd + dd);
                }
                sv = V_ADD(sv, V_LOAD_F32(t));
            }
            V_STORE(sj + i, sv);
        }
        for (; i < n; i++) {
            float x = 0.0f;
            for (int dd = 0; dd < hd; dd++) x += qj[dd] * KV_SLOAD(kvt, k, (size_t)i * hd + dd);
            sj[i] = x;
        }
    }
    if (softcap > 0.0f) /* Gemma 2: rare and never the bottleneck, so plain tanhf */
        for (int i = 0; i < g * n; i++) s[i] = softcap * tanhf(s[i] / softcap);
    float corr[ATTN_HEADS_MAX];
    for (int j = 0; j < g; j++) {
        /* Max, exp and sum a vector at a time: scalar loops here cost more than the dots. */
        float *sj = s + (size_t)j * n;
        int i = 0;
        V vm = V_SET1(m[j]);
        for (; i + VL <= n; i += VL) vm = V_MAX(vm, V_LOAD_F32(sj + i));
        float mb = V_REDUCE_MAX(vm);
        for (; i < n; i++)
            if (sj[i] > mb) mb = sj[i];
        corr[j] = expf(m[j] - mb); /* exp(-inf) = 0 on the first block */
        const V vmb = V_SET1(mb);
        V vs = V_ZERO();
        for (i = 0; i + VL <= n; i += VL) {
            const V e = KFN(vexp)(V_SUB(V_LOAD_F32(sj + i), vmb));
            V_STORE(sj + i, e);
            vs = V_ADD(vs, e);
        }
        float sum = V_REDUCE(vs);
        for (; i < n; i++) {
            sj[i] = expf(sj[i] - mb);
            sum += sj[i];
        }
        l[j] = l[j] * corr[j] + sum;
        m[j] = mb;
    }
    /* acc += P V, four heads at a time, so that each V row loaded serves all four. The four
     * accumulators are plain variables, so they stay in registers; a group of fewer than four
     * heads borrows a zero score row and a scratch output for the missing ones. */
    float spare[ATTN_HEAD_DIM_MAX];
    for (int h0 = 0; h0 < g; h0 += 4) {
        const int gc = g - h0 < 4 ? g - h0 : 4;
        const float *p[4];
        float *c[4], kc[4];
        for (int j = 0; j < 4; j++) {
            p[j] = j < gc ? s + (size_t)(h0 + j) * n : attn_zero_scores;
            c[j] = j < gc ? acc + (size_t)(h0 + j) * hd : spare;
            kc[j] = j < gc ? corr[h0 + j] : 0.0f;
        }
        if (gc < 4) memset(spare, 0, sizeof(float) * (size_t)hd);
        int d = 0;
        for (; d + VL <= hd; d += VL) {
            V a0 = V_MUL(V_LOAD_F32(c[0] + d), V_SET1(kc[0])), a1 = V_MUL(V_LOAD_F32(c[1] + d), V_SET1(kc[1]));
            V a2 = V_MUL(V_LOAD_F32(c[2] + d), V_SET1(kc[2])), a3 = V_MUL(V_LOAD_F32(c[3] + d), V_SET1(kc[3]));
            for (int r = 0; r < n; r++) {
                const V vr = KV_VLOAD(kvt, v, (size_t)r * hd + d);
                a0 = V_FMA(V_SET1(p[0][r]), vr, a0);
                a1 = V_FMA(V_SET1(p[1][r]), vr, a1);
                a2 = V_FMA(V_SET1(p[2][r]), vr, a2);
                a3 = V_FMA(V_SET1(p[3][r]), vr, a3);
            }
            V_STORE(c[0] + d, a0);
            V_STORE(c[1] + d, a1);
            V_STORE(c[2] + d, a2);
            V_STORE(c[3] + d, a3);
        }
        for (; d < hd; d++)
            for (int j = 0; j < gc; j++) {
                float a = c[j][d] * kc[j];
                for (int r = 0; r < n; r++) a += p[j][r] * KV_SLOAD(kvt, v, (size_t)r * hd + d);
                c[j][d] = a;
            }
    }
}

/* One variant per KV cache dtype, each with its loads inlined. */
static void KFN(attn_block_f32)(const float *q, int g, const void *k, const void *v, int n, int hd, float softcap,
                                float *m, float *l, float *acc, float *s) {
    KFN(attn_block_kv)(q, g, k, v, n, hd, softcap, m, l, acc, s, FOLIO_F32);
}
static void KFN(attn_block_bf16)(const float *q, int g, const void *k, const void *v, int n, int hd, float softcap,
                                 float *m, float *l, float *acc, float *s) {
    KFN(attn_block_kv)(q, g, k, v, n, hd, softcap, m, l, acc, s, FOLIO_BF16);
}
static void KFN(attn_block_fp8)(const float *q, int g, const void *k, const void *v, int n, int hd, float softcap,
                                float *m, float *l, float *acc, float *s) {
    KFN(attn_block_kv)(q, g, k, v, n, hd, softcap, m, l, acc, s, FOLIO_FP8);
}

static inline V KFN(silu_vec)(V g, V u) {
    return V_DIV(V_MUL(g, u), V_ADD(V_SET1(1.0f), KFN(vexp)(V_SUB(V_ZERO(), g))));
}

/* out = silu(gate) * up over n elements (out may alias gate), with the vector exp. The tail
 * goes through the same vector code (padded), so an element's value never depends on where
 * the batch put it. */
static void KFN(silu_mul)(const float *gate, const float *up, float *out, size_t n) {
    size_t i = 0;
    for (; i + VL <= n; i += VL) V_STORE(out + i, KFN(silu_vec)(V_LOAD_F32(gate + i), V_LOAD_F32(up + i)));
    if (i < n) {
        float g[VL] = {0}, u[VL] = {0}, o[VL];
        memcpy(g, gate + i, sizeof(float) * (n - i));
        memcpy(u, up + i, sizeof(float) * (n - i));
        V_STORE(o, KFN(silu_vec)(V_LOAD_F32(g), V_LOAD_F32(u)));
        memcpy(out + i, o, sizeof(float) * (n - i));
    }
}

static float KFN(sumsq)(const float *x, int n) { return KFN(dot)(x, x, n); }

static const struct cpu_kernels KFN(kernels) = {
    .isa = KFN_ISA,
    .qisa = KFN_ISA_Q,
    .gemm = {[FOLIO_F32] = KFN(gemm_f32), [FOLIO_F16] = KFN(gemm_f16), [FOLIO_BF16] = KFN(gemm_bf16)},
    .gemm_fp8 = KFN(gemm_fp8),
    .gemm_q = {[FOLIO_Q8] = KFN_Q(cpu_gemm_q8), [FOLIO_Q4] = KFN_Q(cpu_gemm_q4), [FOLIO_Q4Z] = KFN_Q(cpu_gemm_q4z)},
    .quantize_x8 = KFN_QX,
    .dot = KFN(dot),
    .sumsq = KFN(sumsq),
    .attn_block = {[FOLIO_F32] = KFN(attn_block_f32), [FOLIO_BF16] = KFN(attn_block_bf16),
                   [FOLIO_FP8] = KFN(attn_block_fp8)},
    .silu_mul = KFN(silu_mul),
};
