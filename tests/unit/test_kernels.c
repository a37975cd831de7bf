/* The vector CPU kernels against the portable C variant, and the ops against direct formulas,
 * on random inputs with awkward sizes (K not a multiple of the vector width, row counts not a
 * multiple of the 4-row tile, token counts not a multiple of the token tile). */
#include <stdlib.h>

#include "backend/cpu/cpu_kernels.h"
#include "base/quant.h"
#include "test.h"
#include "base/threadpool.h"

static unsigned rng_state = 12345;
static float frand(void) {
    rng_state = rng_state * 1103515245u + 12345u;
    return (float)((rng_state >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void check_gemm(const struct cpu_kernels *k, enum folio_dtype dt, int T, int N, int K, int with_bias) {
    float *x = malloc(sizeof(float) * T * K), *wf = malloc(sizeof(float) * N * K), *bias = malloc(sizeof(float) * N);
    uint16_t *wh = malloc(2 * (size_t)N * K);
    float *out = malloc(sizeof(float) * T * (N + 3)), *ref = malloc(sizeof(float) * T * N);
    for (int i = 0; i < T * K; i++) x[i] = frand();
    for (int i = 0; i < N; i++) bias[i] = frand();
    for (int i = 0; i < N * K; i++) {
        float f = frand();
        if (dt == FOLIO_BF16) {
            wh[i] = folio_f32_to_bf16(f);
            f = folio_bf16_to_f32(wh[i]);
        } else if (dt == FOLIO_F16) {
            wh[i] = folio_f32_to_f16(f);
            f = folio_f16_to_f32(wh[i]);
        }
        wf[i] = f;
    }
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            double s = with_bias ? bias[n] : 0;
            for (int kk = 0; kk < K; kk++) s += (double)x[t * K + kk] * wf[n * K + kk];
            ref[t * N + n] = (float)s;
        }
    const void *w = dt == FOLIO_F32 ? (const void *)wf : (const void *)wh;
    for (int i = 0; i < T * (N + 3); i++) out[i] = -999.0f;
    /* Two calls on disjoint row ranges, into an output with a wider row stride. */
    k->gemm[dt](x, T, K, w, 0, N / 2, out, N + 3, with_bias ? bias : NULL);
    k->gemm[dt](x, T, K, w, N / 2, N, out, N + 3, with_bias ? bias : NULL);
    double max_err = 0;
    for (int t = 0; t < T; t++) {
        for (int n = 0; n < N; n++) {
            double e = fabs(out[t * (N + 3) + n] - ref[t * N + n]);
            if (e > max_err) max_err = e;
        }
        for (int n = N; n < N + 3; n++) CHECK(out[t * (N + 3) + n] == -999.0f); /* no overrun */
    }
    if (max_err > 1e-4 * K) test_fail(__FILE__, __LINE__, "%s gemm dt=%d T=%d N=%d K=%d: max err %g", k->isa, dt, T, N, K, max_err);
    free(x);
    free(wf);
    free(bias);
    free(wh);
    free(out);
    free(ref);
}

TEST(kernels_gemm_all_isas_dtypes_shapes) {
    const char *isas[] = {"scalar", "avx2", "avx512"};
    const int shapes[][3] = {{1, 7, 172}, {1, 64, 64}, {3, 9, 33}, {4, 16, 8}, {5, 13, 100}, {9, 6, 257}, {2, 1, 15}};
    for (int i = 0; i < 3; i++) {
        const struct cpu_kernels *k = cpu_kernels_by_isa(isas[i]);
        if (!k) continue; /* this CPU lacks it */
        for (int dt = 0; dt < 3; dt++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                check_gemm(k, (enum folio_dtype)dt, shapes[s][0], shapes[s][1], shapes[s][2], (int)(s & 1));
    }
}

/* Batch invariance starts here: a token's row must come out bit-identical whether it is
 * multiplied alone (decode: widening in registers) or inside a batch (prefill: widened panels,
 * any position in a token tile). */
TEST(kernels_gemm_bit_identical_alone_and_batched) {
    const char *isas[] = {"scalar", "avx2", "avx512"};
    enum { T = 11, N = 37, K = 203 };
    static float x[T * K], batched[T * N], alone[N];
    static uint16_t w[N * K];
    for (int i = 0; i < T * K; i++) x[i] = frand();
    for (int i = 0; i < N * K; i++) w[i] = folio_f32_to_bf16(frand());
    for (int i = 0; i < 3; i++) {
        const struct cpu_kernels *k = cpu_kernels_by_isa(isas[i]);
        if (!k) continue;
        for (int dt = FOLIO_F16; dt <= FOLIO_BF16; dt++) {
            k->gemm[dt](x, T, K, w, 0, N, batched, N, NULL);
            int differ = 0;
            for (int t = 0; t < T; t++) {
                k->gemm[dt](x + (size_t)t * K, 1, K, w, 0, N, alone, N, NULL);
                differ += memcmp(alone, batched + (size_t)t * N, sizeof alone) != 0;
            }
            if (differ) test_fail(__FILE__, __LINE__, "%s dtype %d: %d of %d rows differ", k->isa, dt, differ, T);
        }
    }
}

/* attn_block folded over several blocks equals softmax attention computed in double, for
 * each KV cache dtype: the reference reads the K/V values the kernel sees (rounded to bf16,
 * or e4m3 * 2^-8 with q times 2^8, as the CPU backend calls it). */
TEST(kernels_attn_block_all_isas) {
    const char *isas[] = {"scalar", "avx2", "avx512"};
    const enum folio_dtype kvs[] = {FOLIO_F32, FOLIO_BF16, FOLIO_FP8};
    const int shapes[][3] = {{1, 8, 5}, {3, 64, 16}, {2, 100, 33}, {4, 16, 70}}; /* g, hd, keys */
    for (int i = 0; i < 3; i++) {
        const struct cpu_kernels *k = cpu_kernels_by_isa(isas[i]);
        if (!k) continue;
        for (size_t c = 0; c < sizeof shapes / sizeof shapes[0] * 3; c++) {
            const enum folio_dtype kvt = kvs[c / (sizeof shapes / sizeof shapes[0])];
            const int *shape = shapes[c % (sizeof shapes / sizeof shapes[0])];
            const int g = shape[0], hd = shape[1], n = shape[2], bs = 16;
            const size_t es = folio_dtype_size(kvt);
            const float qmul = kvt == FOLIO_FP8 ? 256.0f : 1.0f;
            float *q = malloc(sizeof(float) * g * hd), *kk = malloc(sizeof(float) * n * hd),
                  *v = malloc(sizeof(float) * n * hd), *acc = calloc((size_t)g * hd, sizeof(float)),
                  *sc = malloc(sizeof(float) * g * bs), m[4], l[4];
            char *kc = malloc(es * n * hd), *vc = malloc(es * n * hd);
            for (int j = 0; j < g * hd; j++) q[j] = 2 * frand() * qmul;
            for (int j = 0; j < n * hd; j++) {
                const float x = 2 * frand(), y = frand();
                if (kvt == FOLIO_BF16) {
                    ((uint16_t *)kc)[j] = folio_f32_to_bf16(x);
                    ((uint16_t *)vc)[j] = folio_f32_to_bf16(y);
                } else if (kvt == FOLIO_FP8) {
                    ((uint8_t *)kc)[j] = quant_f32_to_e4m3(x);
                    ((uint8_t *)vc)[j] = quant_f32_to_e4m3(y);
                } else {
                    ((float *)kc)[j] = x;
                    ((float *)vc)[j] = y;
                }
                kk[j] = folio_widen(kc, kvt, j) / qmul;
                v[j] = folio_widen(vc, kvt, j) / qmul;
            }
            for (int j = 0; j < g; j++) {
                m[j] = -INFINITY;
                l[j] = 0;
            }
            for (int b0 = 0; b0 < n; b0 += bs)
                k->attn_block[kvt](q, g, kc + (size_t)b0 * hd * es, vc + (size_t)b0 * hd * es,
                                   n - b0 < bs ? n - b0 : bs, hd, 0.0f, m, l, acc, sc);
            double max_err = 0;
            for (int j = 0; j < g; j++) {
                double s[80], mx = -1e300, z = 0;
                for (int r = 0; r < n; r++) {
                    s[r] = 0;
                    for (int d = 0; d < hd; d++) s[r] += (double)q[j * hd + d] * kk[r * hd + d];
                    if (s[r] > mx) mx = s[r];
                }
                for (int r = 0; r < n; r++) z += exp(s[r] - mx);
                for (int d = 0; d < hd; d++) {
                    double o = 0;
                    for (int r = 0; r < n; r++) o += exp(s[r] - mx) / z * v[r * hd + d];
                    double e = fabs(acc[j * hd + d] / l[j] - o) * qmul;
                    if (e > max_err) max_err = e;
                }
            }
            if (max_err > 1e-5)
                test_fail(__FILE__, __LINE__, "%s attn_block %s g=%d hd=%d n=%d: max err %g", k->isa,
                          folio_dtype_name(kvt), g, hd, n, max_err);
            free(q);
            free(kk);
            free(v);
            free(kc);
            free(vc);
            free(acc);
            free(sc);
        }
    }
}

TEST(kernels_silu_mul_all_isas) {
    const char *isas[] = {"scalar", "avx2", "avx512"};
    float g[103], u[103], out[103];
    for (int i = 0; i < 103; i++) {
        g[i] = 12 * frand(); /* the exp's range well beyond softmax's */
        u[i] = frand();
    }
    for (int i = 0; i < 3; i++) {
        const struct cpu_kernels *k = cpu_kernels_by_isa(isas[i]);
        if (!k) continue;
        for (int n = 1; n <= 103; n += 17) {
            k->silu_mul(g, u, out, (size_t)n);
            double max_err = 0;
            for (int j = 0; j < n; j++) {
                double ref = g[j] / (1.0 + exp(-(double)g[j])) * u[j], e = fabs(out[j] - ref) / (fabs(ref) + 1e-6);
                if (e > max_err) max_err = e;
            }
            if (max_err > 1e-5) test_fail(__FILE__, __LINE__, "%s silu_mul n=%d: rel err %g", k->isa, n, max_err);
        }
    }
}

TEST(kernels_dot) {
    const char *isas[] = {"scalar", "avx2", "avx512"};
    float a[103], b[103];
    for (int i = 0; i < 103; i++) {
        a[i] = frand();
        b[i] = frand();
    }
    for (int i = 0; i < 3; i++) {
        const struct cpu_kernels *k = cpu_kernels_by_isa(isas[i]);
        if (!k) continue;
        for (int n = 0; n <= 103; n += 17) {
            double ref = 0;
            for (int j = 0; j < n; j++) ref += (double)a[j] * b[j];
            CHECK_NEAR(k->dot(a, b, n), ref, 1e-4);
        }
    }
}

TEST(kernels_half_conversions) {
    /* Round-to-nearest-even and the special values, both formats. */
    CHECK_EQ_INT(folio_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(folio_f32_to_bf16(1.00390625f), 0x3f80);  /* tie -> even */
    CHECK_EQ_INT(folio_f32_to_bf16(1.01171875f), 0x3f82);  /* tie -> even (up) */
    CHECK(folio_bf16_to_f32(folio_f32_to_bf16(NAN)) != folio_bf16_to_f32(folio_f32_to_bf16(NAN)));
    CHECK_EQ_INT(folio_f32_to_f16(1.0f), 0x3c00);
    CHECK_EQ_INT(folio_f32_to_f16(65504.0f), 0x7bff);
    CHECK_EQ_INT(folio_f32_to_f16(1e6f), 0x7c00);
    CHECK_EQ_INT(folio_f32_to_f16(5.960464477539063e-08f), 0x0001); /* smallest subnormal */
    CHECK_NEAR(folio_f16_to_f32(0x0001), 5.960464477539063e-08, 1e-20);
    CHECK_NEAR(folio_f16_to_f32(0xc000), -2.0, 0);
    for (int i = 0; i < 0x7c00; i += 7) CHECK_EQ_INT(folio_f32_to_f16(folio_f16_to_f32((uint16_t)i)), i);
}

struct count_job {
    int *hits;
};
static void count_task(void *p, int task, int thread) { __atomic_fetch_add(&((struct count_job *)p)->hits[task], 1, __ATOMIC_RELAXED); }

TEST(threadpool_runs_each_task_once) {
    struct threadpool *tp = threadpool_create(3);
    CHECK(tp != NULL);
    if (!tp) return;
    int hits[1000];
    for (int round = 0; round < 200; round++) {
        int n = 1 + (round * 37) % 1000;
        memset(hits, 0, sizeof hits);
        struct count_job j = {hits};
        threadpool_run(tp, n, count_task, &j);
        for (int i = 0; i < n; i++)
            if (hits[i] != 1) {
                test_fail(__FILE__, __LINE__, "round %d task %d ran %d times", round, i, hits[i]);
                round = 200;
                break;
            }
    }
    threadpool_free(tp);
}
