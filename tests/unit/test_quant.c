/* Quantized weights: the formats' scalar conversions (base/quant.h) against direct formulas,
 * and the CPU's integer and FP8 GEMMs (every ISA this CPU has) against the dequantized
 * weights times the quantized activations in double: the integer kernels must be exact up to
 * fp32 summation, so the tolerance is fp32's, not quantization's. Shapes are awkward on
 * purpose: K not a multiple of 32 (172, 33), rows not a multiple of the 4-row tile, odd T. */
#include <stdlib.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "base/quant.h"
#include "test.h"

static unsigned qrng = 777;
static float qrand(void) {
    qrng = qrng * 1103515245u + 12345u;
    return (float)((qrng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

TEST(quant_e4m3_round_trip_and_rounding) {
    /* every finite code decodes and re-encodes to itself */
    for (int b = 0; b < 256; b++) {
        if ((b & 0x7F) == 0x7F) continue; /* NaN */
        const float f = quant_e4m3_to_f32((uint8_t)b);
        if (quant_f32_to_e4m3(f) != (uint8_t)b && !(f == 0.0f && (b & 0x7F) == 0))
            test_fail(__FILE__, __LINE__, "code 0x%02x -> %g -> 0x%02x", b, f, quant_f32_to_e4m3(f));
    }
    CHECK(quant_e4m3_to_f32(0x7E) == 448.0f);
    CHECK(quant_e4m3_to_f32(0x01) == 0.001953125f); /* 2^-9, the smallest subnormal */
    CHECK(quant_e4m3_to_f32(0x38) == 1.0f);
    CHECK(quant_e4m3_to_f32(0xB8) == -1.0f);
    CHECK(quant_f32_to_e4m3(1000.0f) == 0x7E); /* saturates */
    CHECK(quant_f32_to_e4m3(1.0625f) == 0x38); /* halfway between 1 and 1.125: to even */
    CHECK(quant_f32_to_e4m3(1.1875f) == 0x3A); /* halfway between 1.125 and 1.25: to even (1.25) */
    CHECK(quant_f32_to_e4m3(-0.0f) == 0x80);
    CHECK(quant_f32_to_e4m3(INFINITY) == 0x7E && quant_f32_to_e4m3(-INFINITY) == 0xFE);
    CHECK(quant_f32_to_e4m3(NAN) == 0x7F);
    /* against brute force: the nearest of all 253 finite codes' values, ties to the even code,
     * over random magnitudes from 2^-12 to 2^10 and every midpoint between neighbours */
    float vals[4000];
    int nv = 0;
    for (int i = 0; i < 3000; i++) vals[nv++] = ldexpf(0.5f + 0.5f * fabsf(qrand()), (int)(qrng >> 8) % 22 - 11) *
                                                (i & 1 ? -1.0f : 1.0f);
    for (int b = 0; b < 0x7E && nv < 4000; b++)
        vals[nv++] = 0.5f * (quant_e4m3_to_f32((uint8_t)b) + quant_e4m3_to_f32((uint8_t)(b + 1)));
    int bad = 0;
    for (int i = 0; i < nv; i++) {
        const float a = fabsf(vals[i]);
        int best = 0;
        for (int c = 1; c <= 0x7E; c++) {
            const float dc = fabsf(quant_e4m3_to_f32((uint8_t)c) - a), db = fabsf(quant_e4m3_to_f32((uint8_t)best) - a);
            if (dc < db || (dc == db && (c & 1) == 0)) best = c;
        }
        if (a >= 448.0f) best = 0x7E;
        const uint8_t want = (uint8_t)(best | (signbit(vals[i]) ? 0x80 : 0));
        bad += quant_f32_to_e4m3(vals[i]) != want;
    }
    CHECK_EQ_INT(bad, 0);
}

TEST(quant_rows_dequantize_within_half_a_step) {
    enum { K = 172 };
    float x[K], back[K];
    for (int i = 0; i < K; i++) x[i] = 3.0f * qrand();
    x[5] = 0.0f;
    const enum folio_dtype dts[] = {FOLIO_Q8, FOLIO_Q4};
    for (int d = 0; d < 2; d++) {
        char buf[quant_blocks(K) * 34];
        quant_row(dts[d], x, K, buf);
        quant_dequant_row(dts[d], buf, K, 1.0f, back);
        for (int b = 0; b < (int)quant_blocks(K); b++) {
            float amax = 0;
            for (int i = b * 32; i < K && i < b * 32 + 32; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
            const float step = dts[d] == FOLIO_Q8 ? amax / 127 : amax / 8;
            /* int4 maps the extreme to -8: the other sign reaches only +7 steps, so values
             * there may round down by up to a whole step */
            for (int i = b * 32; i < K && i < b * 32 + 32; i++)
                if (fabsf(back[i] - x[i]) > (dts[d] == FOLIO_Q4 && fabsf(x[i]) > 6.5f * step ? 1.0f : 0.5f) * step * 1.01f + 1e-6f)
                    test_fail(__FILE__, __LINE__, "%s x[%d] = %g back %g (step %g)", folio_dtype_name(dts[d]), i, x[i],
                              back[i], step);
        }
        /* the padding of the last block is exactly zero weight */
        const size_t rb = quant_row_bytes(dts[d], K);
        CHECK_EQ_INT(rb, quant_blocks(K) * (dts[d] == FOLIO_Q8 ? 34 : 18));
    }
    CHECK_EQ_INT(quant_row_bytes(FOLIO_Q4Z, 64), 40);
    CHECK_EQ_INT(quant_row_bytes(FOLIO_FP8, 100), 100);
}

/* The SIMD activation quantizer is quant_row_x8 bit for bit, with and without a column order. */
TEST(quant_x8_simd_equals_reference) {
    enum { K = 203 };
    float x[K];
    int32_t perm[K];
    for (int i = 0; i < K; i++) {
        x[i] = 5.0f * qrand();
        perm[i] = (i * 37) % K;
    }
    for (int i = 40; i < 72; i++) x[i] = 0.0f; /* a block of zeros */
    const char *isas[] = {"avx2", "avx512"};
    for (int i = 0; i < 2; i++) {
        const struct cpu_kernels *k = cpu_kernels_by_isa(isas[i]);
        if (!k) continue;
        for (int p = 0; p < 2; p++) {
            struct quant_x8 a[quant_blocks(K)], b[quant_blocks(K)];
            quant_row_x8(x, p ? perm : NULL, K, a);
            k->quantize_x8(x, p ? perm : NULL, K, b);
            CHECK(memcmp(a, b, sizeof a) == 0);
        }
    }
}

/* A random [N, K] weight in dt (Q8/Q4 quantized from floats; Q4Z with random zero points),
 * with its exact fp32 values in wf. */
static void *make_weight(enum folio_dtype dt, int N, int K, float *wf) {
    const size_t rb = quant_row_bytes(dt, K);
    uint8_t *w = calloc((size_t)N, rb);
    float *row = malloc(sizeof(float) * K);
    for (int n = 0; n < N; n++) {
        uint8_t *dst = w + (size_t)n * rb;
        if (dt == FOLIO_Q4Z) {
            struct quant_q4z *blk = (struct quant_q4z *)dst;
            for (int b = 0; b < (int)quant_blocks(K); b++) {
                blk[b].d = folio_f32_to_f16(0.01f + 0.05f * fabsf(qrand()));
                blk[b].z = (uint8_t)(qrng % 16);
                for (int i = 0; i < 32; i++) {
                    const int nb = (int)((qrng = qrng * 1103515245u + 12345u) >> 16) & 15;
                    const int v = b * 32 + i < K ? nb : blk[b].z; /* padding: zero weight */
                    blk[b].n[i % 16] |= (uint8_t)(i < 16 ? v : v << 4);
                }
            }
        } else {
            for (int k = 0; k < K; k++) row[k] = qrand();
            quant_row(dt, row, K, dst);
        }
        quant_dequant_row(dt, dst, K, 1.0f, wf + (size_t)n * K);
    }
    free(row);
    return w;
}

/* The layout the CPU kernels read: Q4 in four-row groups (cpu_qkernels.h), the rest as is. */
static void *kernel_layout(enum folio_dtype dt, void *w, int N, int K) {
    if (dt != FOLIO_Q4) return w;
    void *g = malloc(cpu_q4x4_bytes(N, K));
    cpu_q4x4_pack(w, N, K, g);
    free(w);
    return g;
}

static void check_qgemm(const struct cpu_kernels *k, enum folio_dtype dt, int T, int N, int K, int with_bias) {
    float *x = malloc(sizeof(float) * T * K), *wf = malloc(sizeof(float) * N * K), *bias = malloc(sizeof(float) * N);
    float *out = malloc(sizeof(float) * T * (N + 3)), *xd = malloc(sizeof(float) * K);
    double *ref = malloc(sizeof(double) * T * N), *mag = malloc(sizeof(double) * T * N);
    const int nb = (int)quant_blocks(K);
    struct quant_x8 *xq = malloc(sizeof(struct quant_x8) * T * nb);
    for (int i = 0; i < T * K; i++) x[i] = qrand();
    for (int i = 0; i < N; i++) bias[i] = qrand();
    void *w = kernel_layout(dt, make_weight(dt, N, K, wf), N, K);
    for (int t = 0; t < T; t++) {
        quant_row_x8(x + (size_t)t * K, NULL, K, xq + (size_t)t * nb);
        for (int kk = 0; kk < K; kk++) xd[kk] = xq[t * nb + kk / 32].d * xq[t * nb + kk / 32].q[kk % 32];
        for (int n = 0; n < N; n++) {
            double s = with_bias ? bias[n] : 0, m = 0;
            for (int kk = 0; kk < K; kk++) {
                s += (double)xd[kk] * wf[(size_t)n * K + kk];
                m += fabs((double)xd[kk] * wf[(size_t)n * K + kk]);
            }
            ref[t * N + n] = s;
            mag[t * N + n] = m;
        }
    }
    for (int i = 0; i < T * (N + 3); i++) out[i] = -999.0f;
    /* two calls on row ranges split at a multiple of 4, as the backend's tasks are */
    k->gemm_q[dt](xq, T, K, w, 0, (N / 2) & ~3, out, N + 3, with_bias ? bias : NULL);
    k->gemm_q[dt](xq, T, K, w, (N / 2) & ~3, N, out, N + 3, with_bias ? bias : NULL);
    for (int t = 0; t < T; t++) {
        for (int n = 0; n < N; n++) {
            const double e = fabs(out[t * (N + 3) + n] - ref[t * N + n]);
            if (e > 1e-5 * (mag[t * N + n] + 1))
                test_fail(__FILE__, __LINE__, "%s %s T=%d N=%d K=%d [%d,%d]: %g vs %g", k->qisa, folio_dtype_name(dt),
                          T, N, K, t, n, out[t * (N + 3) + n], ref[t * N + n]);
        }
        for (int n = N; n < N + 3; n++) CHECK(out[t * (N + 3) + n] == -999.0f);
    }
    free(w);
    free(x);
    free(wf);
    free(bias);
    free(out);
    free(xd);
    free(ref);
    free(mag);
    free(xq);
}

TEST(quant_int_gemm_all_isas_formats_shapes) {
    const char *isas[] = {"scalar", "avx2", "avx512"};
    const enum folio_dtype dts[] = {FOLIO_Q8, FOLIO_Q4, FOLIO_Q4Z};
    const int shapes[][3] = {{1, 7, 172}, {1, 64, 64}, {3, 9, 33}, {4, 16, 32}, {5, 13, 100}, {9, 6, 257}, {2, 1, 15}};
    for (int i = 0; i < 3; i++) {
        const struct cpu_kernels *k = cpu_kernels_by_isa(isas[i]);
        if (!k) continue;
        for (int d = 0; d < 3; d++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                check_qgemm(k, dts[d], shapes[s][0], shapes[s][1], shapes[s][2], (int)(s & 1));
    }
}

/* Batch invariance for the integer and FP8 GEMMs: a token alone equals it inside a batch. */
TEST(quant_gemm_bit_identical_alone_and_batched) {
    const char *isas[] = {"scalar", "avx2", "avx512"};
    enum { T = 11, N = 37, K = 203 };
    const int nb = (int)quant_blocks(K);
    static float x[T * K], wf[N * K], batched[T * N], alone[N], scale[N];
    static struct quant_x8 xq[T * 7];
    static uint8_t f8[N * K];
    for (int i = 0; i < T * K; i++) x[i] = qrand();
    for (int i = 0; i < N * K; i++) f8[i] = quant_f32_to_e4m3(300.0f * qrand());
    for (int i = 0; i < N; i++) scale[i] = 0.001f * (1 + i);
    for (int t = 0; t < T; t++) quant_row_x8(x + (size_t)t * K, NULL, K, xq + (size_t)t * nb);
    const enum folio_dtype dts[] = {FOLIO_Q8, FOLIO_Q4, FOLIO_Q4Z};
    for (int i = 0; i < 3; i++) {
        const struct cpu_kernels *k = cpu_kernels_by_isa(isas[i]);
        if (!k) continue;
        for (int d = 0; d < 3; d++) {
            void *w = kernel_layout(dts[d], make_weight(dts[d], N, K, wf), N, K);
            k->gemm_q[dts[d]](xq, T, K, w, 0, N, batched, N, NULL);
            int differ = 0;
            for (int t = 0; t < T; t++) {
                k->gemm_q[dts[d]](xq + (size_t)t * nb, 1, K, w, 0, N, alone, N, NULL);
                differ += memcmp(alone, batched + (size_t)t * N, sizeof alone) != 0;
            }
            if (differ) test_fail(__FILE__, __LINE__, "%s %s: %d of %d rows differ", k->qisa, folio_dtype_name(dts[d]), differ, T);
            free(w);
        }
        k->gemm_fp8(x, T, K, f8, scale, 0, N, batched, N, NULL);
        int differ = 0;
        for (int t = 0; t < T; t++) {
            k->gemm_fp8(x + (size_t)t * K, 1, K, f8, scale, 0, N, alone, N, NULL);
            differ += memcmp(alone, batched + (size_t)t * N, sizeof alone) != 0;
        }
        if (differ) test_fail(__FILE__, __LINE__, "%s fp8: %d of %d rows differ", k->isa, differ, T);
    }
}

/* FP8 weights use fp32 activations, so they match the dequantized product to fp32 precision. */
TEST(quant_fp8_gemm_all_isas) {
    const char *isas[] = {"scalar", "avx2", "avx512"};
    enum { T = 5, N = 13, K = 172 };
    static float x[T * K], out[T * N], scale[N], bias[N];
    static uint8_t w[N * K];
    for (int i = 0; i < T * K; i++) x[i] = qrand();
    for (int i = 0; i < N * K; i++) w[i] = (uint8_t)((i * 97 + 13) & 0xFF);
    for (int i = 0; i < N * K; i++)
        if ((w[i] & 0x7F) == 0x7F) w[i] = 0x10; /* no NaN codes */
    for (int i = 0; i < N; i++) {
        scale[i] = 0.002f * (i + 1);
        bias[i] = qrand();
    }
    for (int i = 0; i < 3; i++) {
        const struct cpu_kernels *k = cpu_kernels_by_isa(isas[i]);
        if (!k) continue;
        k->gemm_fp8(x, T, K, w, scale, 0, N, out, N, bias);
        for (int t = 0; t < T; t++)
            for (int n = 0; n < N; n++) {
                double s = bias[n], m = 0;
                for (int kk = 0; kk < K; kk++) {
                    const double p = (double)x[t * K + kk] * quant_e4m3_to_f32(w[n * K + kk]) * scale[n];
                    s += p;
                    m += fabs(p);
                }
                if (fabs(out[t * N + n] - s) > 1e-5 * (m + 1))
                    test_fail(__FILE__, __LINE__, "%s fp8 [%d,%d]: %g vs %g", k->isa, t, n, out[t * N + n], s);
            }
    }
}

/* Through the backend: quantization at load, a column order (GPTQ act-order), fused products
 * with different orders, against the dequantized weights. */
TEST(quant_backend_matmul_perm_and_load) {
    enum { T = 3, N = 10, K = 96 };
    struct backend *b = NULL;
    CHECK_EQ_INT(backend_cpu_create(&(struct backend_cpu_params){2}, &b), 0);
    if (!b) return;
    static float x[T * K], wsrc[N * K], back[K], o1[T * N], o2[T * N], o3[T * N];
    static int32_t perm[K];
    for (int i = 0; i < T * K; i++) x[i] = qrand();
    for (int i = 0; i < N * K; i++) wsrc[i] = qrand();
    for (int i = 0; i < K; i++) perm[i] = (i * 35 + 7) % K;
    struct backend_weight wq8, wq4, wperm, wfp8;
    CHECK_EQ_INT(backend_load_weight(b, wsrc, FOLIO_F32, N, K, FOLIO_Q8, &wq8), 0);
    CHECK_EQ_INT(backend_load_weight(b, wsrc, FOLIO_F32, N, K, FOLIO_Q4, &wq4), 0);
    CHECK_EQ_INT(backend_load_weight(b, wsrc, FOLIO_F32, N, K, FOLIO_FP8, &wfp8), 0);
    CHECK(wq8.dtype == FOLIO_Q8 && wfp8.scale != NULL);
    /* wperm stores column k as the original column perm[k]: its product with x must equal
     * the unpermuted Q8 weight's */
    size_t rb = quant_row_bytes(FOLIO_Q8, K);
    uint8_t *pq = malloc(rb * N);
    for (int n = 0; n < N; n++) {
        float row[K];
        for (int k = 0; k < K; k++) row[k] = wsrc[n * K + perm[k]];
        quant_row(FOLIO_Q8, row, K, pq + rb * n);
    }
    CHECK_EQ_INT(backend_load_quant(b, &(struct backend_quant_src){FOLIO_Q8, pq, N, K, NULL, perm, 0}, &wperm), 0);
    free(pq);
    const struct backend_reserve_args r = {.max_tokens = 8, .max_cols = K};
    CHECK_EQ_INT(backend_reserve(b, &r), 0);
    const struct backend_matmul_args mm[3] = {{&wq4, NULL, o1}, {&wperm, NULL, o2}, {&wfp8, NULL, o3}};
    backend_matmul(b, x, T, mm, 3);
    backend_sync(b);
    const struct backend_weight *ws[3] = {&wq4, &wperm, &wfp8};
    const float *outs[3] = {o1, o2, o3};
    for (int m = 0; m < 3; m++) {
        for (int n = 0; n < N; n++) {
            /* the dequantized row, back in the original column order */
            float row[K];
            if (ws[m]->dtype == FOLIO_Q4) { /* the backend keeps its own layout: requantize the source row */
                uint8_t blk[quant_blocks(K) * sizeof(struct quant_q4)];
                quant_row(FOLIO_Q4, wsrc + n * K, K, blk);
                quant_dequant_row(FOLIO_Q4, blk, K, 1.0f, back);
            } else {
                quant_dequant_row(ws[m]->dtype, (const uint8_t *)ws[m]->data + quant_row_bytes(ws[m]->dtype, K) * n,
                                  K, ws[m]->scale ? ws[m]->scale[n] : 1.0f, back);
            }
            for (int k = 0; k < K; k++) row[ws[m]->perm ? ws[m]->perm[k] : k] = back[k];
            for (int t = 0; t < T; t++) {
                double s = 0, mag = 0;
                for (int k = 0; k < K; k++) {
                    s += (double)x[t * K + k] * row[k];
                    mag += fabs((double)x[t * K + k] * row[k]);
                }
                /* int8 activations: 1/254 of each block's largest |x| at most, per element */
                const double tol = m == 2 ? 1e-5 * (mag + 1) : 0.01 * mag + 1e-4;
                if (fabs(outs[m][t * N + n] - s) > tol)
                    test_fail(__FILE__, __LINE__, "%s [%d,%d]: %g vs %g", folio_dtype_name(ws[m]->dtype), t, n,
                              outs[m][t * N + n], s);
            }
        }
    }
    /* reserve before the first integer weight is loaded: the weight still gets its buffer */
    struct backend *b2 = NULL;
    struct backend_weight w2;
    static float o4[T * N], o5[T * N];
    CHECK_EQ_INT(backend_cpu_create(&(struct backend_cpu_params){1}, &b2), 0);
    CHECK_EQ_INT(backend_reserve(b2, &r), 0);
    CHECK_EQ_INT(backend_load_weight(b2, wsrc, FOLIO_F32, N, K, FOLIO_Q8, &w2), 0);
    for (int i = 0; i < T * N; i++) o4[i] = o5[i] = NAN;
    backend_matmul(b2, x, T, &(struct backend_matmul_args){&w2, NULL, o4}, 1);
    backend_matmul(b, x, T, &(struct backend_matmul_args){&wq8, NULL, o5}, 1);
    CHECK(memcmp(o4, o5, sizeof o4) == 0);
    backend_free_weight(b2, &w2);
    backend_free(b2);
    backend_free_weight(b, &wq8);
    backend_free_weight(b, &wq4);
    backend_free_weight(b, &wperm);
    backend_free_weight(b, &wfp8);
    backend_free(b);
}

/* ---- checkpoints' packings (model/quant_load.c), from the formats' definitions ---- */
#include "model/config.h"
#include "model/quant_load.h"

/* AWQ packs output columns 8j + {0, 2, 4, 6, 1, 3, 5, 7} into nibbles 0..7 of word j; a
 * repack that read the nibbles in column order would get these weights wrong. */
TEST(quant_awq_repack_interleave_and_zeros) {
    enum { IN = 64, OUT = 16, GS = 32, G = IN / GS };
    static const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    static int q[IN][OUT], z[G][OUT];
    static int32_t qweight[IN][OUT / 8], qzeros[G][OUT / 8];
    static uint16_t scales[G][OUT];
    for (int k = 0; k < IN; k++)
        for (int o = 0; o < OUT; o++) q[k][o] = (k * 7 + o * 3) % 16;
    for (int g = 0; g < G; g++)
        for (int o = 0; o < OUT; o++) {
            z[g][o] = (g * 5 + o) % 16;
            scales[g][o] = folio_f32_to_f16(0.01f * (1 + o + g));
        }
    for (int k = 0; k < IN; k++)
        for (int j = 0; j < OUT / 8; j++) {
            uint32_t wq = 0;
            for (int i = 0; i < 8; i++) wq |= (uint32_t)q[k][8 * j + order[i]] << (4 * i);
            qweight[k][j] = (int32_t)wq;
        }
    for (int g = 0; g < G; g++)
        for (int j = 0; j < OUT / 8; j++) {
            uint32_t wz = 0;
            for (int i = 0; i < 8; i++) wz |= (uint32_t)z[g][8 * j + order[i]] << (4 * i);
            qzeros[g][j] = (int32_t)wz;
        }
    static struct quant_q4z blocks[OUT * (IN / 32)];
    CHECK_EQ_INT(quant_repack_awq(&qweight[0][0], &qzeros[0][0], &scales[0][0], IN, OUT, GS, blocks), 0);
    float row[IN];
    int bad = 0;
    for (int o = 0; o < OUT; o++) {
        quant_dequant_row(FOLIO_Q4Z, blocks + o * (IN / 32), IN, 1.0f, row);
        for (int k = 0; k < IN; k++)
            bad += row[k] != (float)(q[k][o] - z[k / GS][o]) * folio_f16_to_f32(scales[k / GS][o]);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(quant_repack_awq(&qweight[0][0], &qzeros[0][0], &scales[0][0], IN, OUT, 48, blocks) < 0);
}

/* GPTQ packs input rows 8r..8r+7 into word r of each column, zeros sequentially, and a v1
 * checkpoint stores each zero minus one; act-order groups come back as a column order. */
TEST(quant_gptq_repack_zero_offset_and_act_order) {
    enum { IN = 64, OUT = 8, GS = 32, G = IN / GS };
    static int q[IN][OUT], z[G][OUT], gidx[IN];
    static int32_t qweight[IN / 8][OUT], qzeros[G][OUT / 8], perm[IN];
    static uint16_t scales[G][OUT];
    for (int k = 0; k < IN; k++) {
        gidx[k] = (k * 5 % IN) < 32 ? 1 : 0; /* act-order: groups interleaved over the columns */
        for (int o = 0; o < OUT; o++) q[k][o] = (k * 11 + o * 5) % 16;
    }
    for (int g = 0; g < G; g++)
        for (int o = 0; o < OUT; o++) {
            z[g][o] = 1 + (g * 3 + o) % 15; /* 1..15: stored as 0..14 in v1 */
            scales[g][o] = folio_f32_to_f16(0.02f * (1 + o) + 0.5f * g);
        }
    for (int r = 0; r < IN / 8; r++)
        for (int o = 0; o < OUT; o++) {
            uint32_t wq = 0;
            for (int i = 0; i < 8; i++) wq |= (uint32_t)q[8 * r + i][o] << (4 * i);
            qweight[r][o] = (int32_t)wq;
        }
    for (int v2 = 0; v2 < 2; v2++) {
        for (int g = 0; g < G; g++) {
            uint32_t wz = 0;
            for (int i = 0; i < 8; i++) wz |= (uint32_t)(z[g][i] - (v2 ? 0 : 1)) << (4 * i);
            qzeros[g][0] = (int32_t)wz;
        }
        static struct quant_q4z blocks[OUT * (IN / 32)];
        int has_perm = -1;
        CHECK_EQ_INT(quant_repack_gptq(&qweight[0][0], &qzeros[0][0], &scales[0][0], gidx, IN, OUT, GS, G, v2, blocks,
                                       perm, &has_perm),
                     0);
        CHECK_EQ_INT(has_perm, 1);
        float row[IN];
        int bad = 0;
        for (int o = 0; o < OUT; o++) {
            quant_dequant_row(FOLIO_Q4Z, blocks + o * (IN / 32), IN, 1.0f, row);
            for (int k = 0; k < IN; k++) { /* stored column k is input column perm[k] */
                const int c = perm[k], g = gidx[c];
                bad += row[k] != (float)(q[c][o] - z[g][o]) * folio_f16_to_f32(scales[g][o]);
            }
        }
        if (bad) test_fail(__FILE__, __LINE__, "gptq v%d: %d weights differ", v2 + 1, bad);
    }
    /* without g_idx, groups are contiguous and no column order is needed */
    int has_perm = -1;
    static struct quant_q4z blocks[OUT * (IN / 32)];
    CHECK_EQ_INT(quant_repack_gptq(&qweight[0][0], &qzeros[0][0], &scales[0][0], NULL, IN, OUT, GS, G, 0, blocks, perm,
                                   &has_perm),
                 0);
    CHECK_EQ_INT(has_perm, 0);
    /* a g_idx naming a group that does not exist is refused */
    gidx[3] = G;
    CHECK(quant_repack_gptq(&qweight[0][0], &qzeros[0][0], &scales[0][0], gidx, IN, OUT, GS, G, 0, blocks, perm,
                            &has_perm) < 0);
}

static const char *qbase =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":128,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":8,\"num_key_value_heads\":4,\"vocab_size\":512,"
    "\"max_position_embeddings\":512,\"rms_norm_eps\":1e-05,\"torch_dtype\":\"float16\",\"quantization_config\":";

static int parse_q(const char *qc, struct model_config *c) {
    char json[1024];
    snprintf(json, sizeof json, "%s%s}", qbase, qc);
    return config_parse(json, c);
}

TEST(quant_config_detection_and_refusals) {
    struct model_config c;
    CHECK_EQ_INT(parse_q("{\"quant_method\":\"awq\",\"bits\":4,\"group_size\":128,\"zero_point\":true,\"version\":\"gemm\"}", &c), 0);
    CHECK(c.quant.method == QUANT_AWQ && c.quant.group_size == 128 && !c.quant.sym);
    CHECK_EQ_INT(config_matrix_dtype(&c, FOLIO_F16), FOLIO_Q4Z);
    CHECK_EQ_INT(parse_q("{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":-1,\"desc_act\":true,\"sym\":false}", &c), 0);
    CHECK(c.quant.method == QUANT_GPTQ && c.quant.desc_act && !c.quant.sym && !c.quant.gptq_v2);
    CHECK_EQ_INT(parse_q("{\"quant_method\":\"fp8\",\"activation_scheme\":\"dynamic\"}", &c), 0);
    CHECK_EQ_INT(config_matrix_dtype(&c, FOLIO_BF16), FOLIO_FP8);
    CHECK_EQ_INT(parse_q("{\"quant_method\":\"compressed-tensors\",\"format\":\"float-quantized\",\"config_groups\":"
                         "{\"group_0\":{\"targets\":[\"Linear\"],\"weights\":{\"num_bits\":8,\"type\":\"float\","
                         "\"strategy\":\"channel\"}}}}", &c), 0);
    CHECK(c.quant.method == QUANT_FP8 && c.quant.fp8_channel);
    /* refused, naming the method and the supported list */
    CHECK(parse_q("{\"quant_method\":\"bitsandbytes\",\"load_in_4bit\":true}", &c) < 0);
    CHECK(strstr(folio_last_error(), "bitsandbytes") && strstr(folio_last_error(), "awq"));
    CHECK(parse_q("{\"quant_method\":\"gptq\",\"bits\":8,\"group_size\":128}", &c) < 0);
    CHECK(parse_q("{\"quant_method\":\"awq\",\"bits\":4,\"group_size\":100}", &c) < 0);
    CHECK(parse_q("{\"quant_method\":\"fp8\",\"weight_block_size\":[128,128]}", &c) < 0);
    CHECK(parse_q("{\"quant_method\":\"compressed-tensors\",\"config_groups\":{\"group_0\":{\"weights\":"
                  "{\"num_bits\":4,\"type\":\"int\",\"strategy\":\"group\"}}}}", &c) < 0);
    CHECK(parse_q("{\"quant_method\":\"compressed-tensors\",\"format\":\"pack-quantized\",\"config_groups\":"
                  "{\"group_0\":{\"weights\":{\"num_bits\":8,\"type\":\"float\",\"strategy\":\"tensor\"}}}}", &c) < 0);
    CHECK(parse_q("[1]", &c) < 0);
    /* the fit estimate counts quantized bytes: int4 matrices take well under a third of f16 */
    CHECK_EQ_INT(parse_q("null", &c), 0);
    CHECK(config_weight_bytes(&c, FOLIO_Q8) < config_weight_bytes(&c, FOLIO_F16));
    CHECK(config_active_weight_bytes(&c, FOLIO_Q4) * 3 < config_active_weight_bytes(&c, FOLIO_F16));
}
