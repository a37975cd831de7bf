/* cpu_kernels_impl.h: the kernel bodies, included by cpu_kernels.c once per ISA with
 * V/VL/V_* primitives and KFN() naming defined. Not a public header. */

/* Loads one vector of weights starting at element k of a row, widened to fp32. */
#define LOADW_F32(p, k) V_LOAD_F32((const float *)(p) + (k))
#define LOADW_BF16(p, k) V_LOAD_BF16((const uint16_t *)(p) + (k))
#define LOADW_F16(p, k) V_LOAD_F16((const uint16_t *)(p) + (k))
#define SCALW_F32(p, k) (((const float *)(p))[k])
#define SCALW_BF16(p, k) folio_bf16_to_f32(((const uint16_t *)(p))[k])
#define SCALW_F16(p, k) folio_f16_to_f32(((const uint16_t *)(p))[k])

/* The GEMM microkernel computes a 4-row x RT-token tile: each weight vector loaded (and
 * widened) once feeds RT FMAs, which is what makes prefill compute-bound rather than
 * weight-bandwidth-bound. For decode (T=1) it degenerates to 4 independent dot products
 * streaming the weights, which is the memory roofline case. */
#define DEFINE_GEMM(SUFFIX, ELT, LOADW, SCALW)                                                        \
    static void KFN(gemm_tile_##SUFFIX)(const float *x, int RT, int K, const ELT *w, float *out,       \
                                        int ldo, int nrows, const float *bias) {                       \
        V acc[4][GEMM_RT];                                                                             \
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)                                            \
            _Pragma("GCC unroll 8") for (int r = 0; r < GEMM_RT; r++) acc[j][r] = V_ZERO();            \
        const ELT *w0 = w, *w1 = w + (nrows > 1 ? K : 0), *w2 = w + (nrows > 2 ? 2 * K : 0),           \
                  *w3 = w + (nrows > 3 ? 3 * (size_t)K : 0);                                            \
        int k = 0;                                                                                     \
        for (; k + VL <= K; k += VL) {                                                                 \
            /* Rows are short (a few KB), so the hardware prefetcher never ramps up on them;     \
             * fetching ~32 KB ahead into L2 keeps enough misses in flight to approach the       \
             * streaming bandwidth in decode, where every weight is read exactly once. */        \
            PREFETCH_AHEAD(w0 + k);                                                                    \
            PREFETCH_AHEAD(w1 + k);                                                                    \
            PREFETCH_AHEAD(w2 + k);                                                                    \
            PREFETCH_AHEAD(w3 + k);                                                                    \
            V a0 = LOADW(w0, k), a1 = LOADW(w1, k), a2 = LOADW(w2, k), a3 = LOADW(w3, k);              \
            _Pragma("GCC unroll 8") for (int r = 0; r < GEMM_RT; r++) {                                \
                if (r < RT) {                                                                          \
                    V xv = V_LOAD_F32(x + (size_t)r * K + k);                                          \
                    acc[0][r] = V_FMA(a0, xv, acc[0][r]);                                              \
                    acc[1][r] = V_FMA(a1, xv, acc[1][r]);                                              \
                    acc[2][r] = V_FMA(a2, xv, acc[2][r]);                                              \
                    acc[3][r] = V_FMA(a3, xv, acc[3][r]);                                              \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
        const ELT *wr[4] = {w0, w1, w2, w3};                                                           \
        for (int r = 0; r < RT; r++) {                                                                 \
            for (int j = 0; j < nrows; j++) {                                                          \
                float s = V_REDUCE(acc[j][r]);                                                         \
                for (int kk = k; kk < K; kk++) s += SCALW(wr[j], kk) * x[(size_t)r * K + kk];          \
                out[(size_t)r * ldo + j] = s + (bias ? bias[j] : 0.0f);                                \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
    static void KFN(gemm_##SUFFIX)(const float *x, int T, int K, const void *wv, int n0, int n1,       \
                                   float *out, int ldo, const float *bias) {                           \
        const ELT *w = wv;                                                                             \
        for (int n = n0; n < n1; n += 4) {                                                             \
            int nrows = n1 - n < 4 ? n1 - n : 4;                                                       \
            for (int t = 0; t < T; t += GEMM_RT) {                                                     \
                int rt = T - t < GEMM_RT ? T - t : GEMM_RT;                                            \
                KFN(gemm_tile_##SUFFIX)(x + (size_t)t * K, rt, K, w + (size_t)n * K,                   \
                                        out + (size_t)t * ldo + n, ldo, nrows, bias ? bias + n : NULL); \
            }                                                                                          \
        }                                                                                              \
    }

DEFINE_GEMM(f32, float, LOADW_F32, SCALW_F32)
DEFINE_GEMM(bf16, uint16_t, LOADW_BF16, SCALW_BF16)
DEFINE_GEMM(f16, uint16_t, LOADW_F16, SCALW_F16)

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

static void KFN(axpy)(float *y, float a, const float *x, int n) {
    V av = V_SET1(a);
    int i = 0;
    for (; i + VL <= n; i += VL) V_STORE(y + i, V_FMA(av, V_LOAD_F32(x + i), V_LOAD_F32(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static float KFN(sumsq)(const float *x, int n) { return KFN(dot)(x, x, n); }

static const struct cpu_kernels KFN(kernels) = {
    .isa = KFN_ISA,
    .gemm = {[FOLIO_F32] = KFN(gemm_f32), [FOLIO_F16] = KFN(gemm_f16), [FOLIO_BF16] = KFN(gemm_bf16)},
    .dot = KFN(dot),
    .axpy = KFN(axpy),
    .sumsq = KFN(sumsq),
};
