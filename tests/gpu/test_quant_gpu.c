/* gpu-tests cases for quantized weights on the CUDA backend (kernels/quant.cu through
 * backend_cuda.c's load_quant and matmul): Q8, Q4, Q4Z (zero points other than 8, with and
 * without GPTQ's column order) and FP8 (per-row scales), loaded through backend_load_quant on
 * the CPU and CUDA backends, products at T = 1 and 3 (qgemv), 8 (its largest batch), 9 and 64
 * (dequantized slices and cuBLAS's bf16 GEMM), in-features that are not a multiple of 32 and
 * an unaligned input (qgemv's gathered copy), several products sharing an input with different
 * column orders and a bf16 weight among them, slices of a weight larger than the scratch,
 * bias rows, the route through backend_load_weight (quantized on the host), and CUDA graphs.
 *
 * The reference is the product with the weight dequantized in fp32 by quant_dequant_row
 * (base/quant.h) and fp32 activations, summed in double. Tolerances, as max |err| / max |ref|
 * over the output (scaled_error):
 *   - the GPU, T <= QGEMV_MAX_T: 1e-4 (qgemv dequantizes exactly and sums in fp32);
 *   - the GPU, larger T: 1e-2 (its GEMM rounds the weight and the activations to bf16, the
 *     bound the bf16 products of test_backend_gpu.c meet), FP8 included;
 *   - the CPU: 3e-2 for Q8/Q4/Q4Z (it quantizes the activations to int8 per block of 32,
 *     which costs up to 1e-2 on these shapes, measured over 30 seeds at K = 64..200; a wrong
 *     weight costs ~1), 1e-4 for FP8 (fp32 activations).
 * `gpu-tests --bench` adds the decode GEMV table (gpu_bench_quant): GB/s of the bytes each
 * format reads against the device's memcpy. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/quant.h"
#include "gpu_test.h"

/* A quantized [N, K] weight in quant.h's layout on the host, and its fp32 dequantization. */
struct qsrc {
    enum folio_dtype dt;
    int N, K;
    uint8_t *data;  /* N rows of quant_row_bytes(dt, K) bytes */
    float *scale;   /* [N] (FP8) or NULL */
    int32_t *perm;  /* [K] or NULL */
    float *deq;     /* [N, K]: quant_dequant_row of each row */
};

static void qsrc_free(struct qsrc *q) {
    free(q->data);
    free(q->scale);
    free(q->perm);
    free(q->deq);
    memset(q, 0, sizeof *q);
}

/* Q8/Q4: random rows through quant_row. Q4Z: random nibbles, f16 scales and zero points 0..15
 * (the first block's is 3, never only 8), the padding nibbles equal to z (weight 0). FP8:
 * every byte but NaN's (subnormals, both signs, up to +-448) and per-row scales. BF16 (for
 * the mixed products): random rows rounded to bf16, stored as bf16. */
static int qsrc_make(struct qsrc *q, enum folio_dtype dt, int N, int K, int with_perm) {
    memset(q, 0, sizeof *q);
    q->dt = dt;
    q->N = N;
    q->K = K;
    const size_t rb = dt == FOLIO_BF16 ? 2 * (size_t)K : quant_row_bytes(dt, K);
    const float ws = 1.0f / sqrtf((float)K);
    float *row = malloc(sizeof(float) * (size_t)K);
    q->data = calloc((size_t)N, rb);
    q->deq = malloc(sizeof(float) * (size_t)N * K);
    if (dt == FOLIO_FP8) q->scale = malloc(sizeof(float) * (size_t)N);
    if (with_perm) q->perm = malloc(sizeof(int32_t) * (size_t)K);
    if (!row || !q->data || !q->deq || (dt == FOLIO_FP8 && !q->scale) || (with_perm && !q->perm)) {
        free(row);
        qsrc_free(q);
        return -1;
    }
    for (int r = 0; r < N; r++) {
        uint8_t *dst = q->data + (size_t)r * rb;
        float *deq = q->deq + (size_t)r * K;
        const float rs = ws * urand(0.25f, 2.0f); /* rows of different magnitudes */
        fill(row, (size_t)K, -rs, rs);
        switch (dt) {
        case FOLIO_Q8:
        case FOLIO_Q4: quant_row(dt, row, K, dst); break;
        case FOLIO_Q4Z:
            for (int b = 0; b < (int)quant_blocks(K); b++) {
                struct quant_q4z blk = {0};
                blk.d = folio_f32_to_f16(rs / 8.0f * urand(0.5f, 1.5f));
                blk.z = (uint8_t)(r == 0 && b == 0 ? 3 : irand(16));
                for (int i = 0; i < QUANT_BLOCK; i++) {
                    const int nib = b * QUANT_BLOCK + i < K ? irand(16) : blk.z;
                    blk.n[i % 16] |= (uint8_t)(i < 16 ? nib : nib << 4);
                }
                memcpy(dst + (size_t)b * sizeof blk, &blk, sizeof blk);
            }
            break;
        case FOLIO_FP8:
            q->scale[r] = rs / 448.0f * urand(0.5f, 2.0f);
            for (int k = 0; k < K; k++) {
                uint8_t v = (uint8_t)irand(256);
                if ((v & 0x7F) == 0x7F) v ^= 1; /* e4m3fn's NaN */
                dst[k] = v;
            }
            break;
        default: /* FOLIO_BF16 */
            for (int k = 0; k < K; k++) {
                const uint16_t h = folio_f32_to_bf16(row[k]);
                memcpy(dst + 2 * (size_t)k, &h, 2);
                deq[k] = folio_bf16_to_f32(h);
            }
            break;
        }
        if (dt != FOLIO_BF16) quant_dequant_row(dt, dst, K, q->scale ? q->scale[r] : 1.0f, deq);
    }
    free(row);
    if (q->perm) { /* Fisher-Yates */
        for (int k = 0; k < K; k++) q->perm[k] = k;
        for (int k = K - 1; k > 0; k--) {
            const int j = irand(k + 1);
            const int32_t t = q->perm[k];
            q->perm[k] = q->perm[j];
            q->perm[j] = t;
        }
    }
    return 0;
}

static int qsrc_load(struct backend *b, const struct qsrc *q, struct backend_weight *w) {
    if (q->dt == FOLIO_BF16) return backend_load_weight(b, q->data, FOLIO_BF16, q->N, q->K, FOLIO_BF16, w);
    const struct backend_quant_src s = {.dtype = q->dt, .data = q->data, .rows = q->N, .cols = q->K,
                                        .scale = q->scale, .perm = q->perm};
    return backend_load_quant(b, &s, w);
}

/* ref[t, n] = sum_k deq[n, k] * x[t, perm[k]] (+ bias[n]), in double. */
static void reference(const struct qsrc *q, const float *x, int T, const float *bias, float *ref) {
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * q->K;
        for (int n = 0; n < q->N; n++) {
            const float *w = q->deq + (size_t)n * q->K;
            double s = bias ? bias[n] : 0.0;
            for (int k = 0; k < q->K; k++) s += (double)w[k] * xt[q->perm ? q->perm[k] : k];
            ref[(size_t)t * q->N + n] = (float)s;
        }
    }
}

/* bf16 weights (in the mixed products) take cuBLAS, on bf16 activations, past GEMV_MAX_T. */
static double gpu_tol(enum folio_dtype dt, int T) { return T <= (dt == FOLIO_BF16 ? GEMV_MAX_T : QGEMV_MAX_T) ? 1e-4 : 1e-2; }
static double cpu_tol(enum folio_dtype dt) { return dt == FOLIO_FP8 || dt == FOLIO_BF16 ? 1e-4 : 3e-2; }

#define MAX_MM 3

/* n products of one x [T, K] on both backends: weights dts[i] of [N + 17 i, K] (perms[i]: a
 * column order of its own), a bias on the first when asked, x at an unaligned address on the
 * GPU when asked. */
static void test_qmatmul(struct backend *cpu, struct backend *gpu, int n, const enum folio_dtype *dts,
                         const int *perms, int T, int K, int N, int with_bias, int unaligned) {
    char name[192], detail[320] = "";
    int len = snprintf(name, sizeof name, "quant matmul T=%d K=%d N=%d", T, K, N);
    for (int i = 0; i < n; i++)
        len += snprintf(name + len, sizeof name - (size_t)len, " %s%s", folio_dtype_name(dts[i]), perms[i] ? "+perm" : "");
    snprintf(name + len, sizeof name - (size_t)len, "%s%s", with_bias ? " +bias" : "", unaligned ? " x unaligned" : "");
    double err = 0.0;
    struct qsrc q[MAX_MM] = {{0}};
    struct backend_weight wc[MAX_MM] = {{0}}, wg[MAX_MM] = {{0}};
    float *h_out[MAX_MM] = {0}, *g_out[MAX_MM] = {0}, *ref[MAX_MM] = {0}, *d_out[MAX_MM] = {0};
    float *h_x = malloc(sizeof(float) * (size_t)T * K), *h_bias = malloc(sizeof(float) * (size_t)N);
    float *d_x = NULL, *d_bias = NULL;
    struct backend_matmul_args mc[MAX_MM], mg[MAX_MM];
    if (!h_x || !h_bias) {
        snprintf(detail, sizeof detail, "out of host memory");
        goto out;
    }
    fill(h_x, (size_t)T * K, -1.0f, 1.0f);
    fill(h_bias, (size_t)N, -0.5f, 0.5f);
    for (int i = 0; i < n; i++) {
        const int Ni = N + 17 * i;
        if (qsrc_make(&q[i], dts[i], Ni, K, perms[i]) || !(h_out[i] = malloc(sizeof(float) * (size_t)T * Ni)) ||
            !(g_out[i] = malloc(sizeof(float) * (size_t)T * Ni)) || !(ref[i] = malloc(sizeof(float) * (size_t)T * Ni))) {
            snprintf(detail, sizeof detail, "out of host memory");
            goto out;
        }
        if (qsrc_load(cpu, &q[i], &wc[i])) {
            snprintf(detail, sizeof detail, "cpu load: %s", folio_last_error());
            goto out;
        }
        if (qsrc_load(gpu, &q[i], &wg[i])) {
            snprintf(detail, sizeof detail, "cuda load: %s", folio_last_error());
            goto out;
        }
        CK(dev_alloc(&d_out[i], (size_t)T * Ni, (size_t)Ni));
        const float *b = with_bias && i == 0 ? h_bias : NULL;
        reference(&q[i], h_x, T, b, ref[i]);
        mc[i] = (struct backend_matmul_args){&wc[i], b, h_out[i]};
        mg[i] = (struct backend_matmul_args){&wg[i], NULL, d_out[i]};
    }
    /* After the weights, as model.c does (the CPU sizes its quantized input then). */
    const struct backend_reserve_args r = {.max_tokens = T, .max_cols = K, .num_heads = 8, .num_kv_heads = 2,
                                           .head_dim = 64};
    if (backend_reserve(gpu, &r) || backend_reserve(cpu, &r)) {
        snprintf(detail, sizeof detail, "reserve: %s", folio_last_error());
        goto out;
    }
    CK(dev_alloc(&d_x, (size_t)T * K + 1, 0));
    CK(cudaMemcpy(d_x + (unaligned ? 1 : 0), h_x, sizeof(float) * (size_t)T * K, cudaMemcpyHostToDevice));
    if (with_bias) {
        CK(dev_alloc(&d_bias, (size_t)N, 0));
        CK(cudaMemcpy(d_bias, h_bias, sizeof(float) * (size_t)N, cudaMemcpyHostToDevice));
        mg[0].bias = d_bias;
    }
    backend_matmul(cpu, h_x, T, mc, n);
    backend_matmul(gpu, d_x + (unaligned ? 1 : 0), T, mg, n);
    if (backend_sync(gpu) || backend_sync(cpu)) {
        snprintf(detail, sizeof detail, "sync: %s", folio_last_error());
        goto out;
    }
    for (int i = 0; i < n && !detail[0]; i++) {
        const size_t no = (size_t)T * (size_t)(N + 17 * i);
        size_t at = 0, cat = 0;
        CK(cudaMemcpy(g_out[i], d_out[i], sizeof(float) * no, cudaMemcpyDeviceToHost));
        const double eg = scaled_error(g_out[i], ref[i], no, &at), ec = scaled_error(h_out[i], ref[i], no, &cat);
        if (eg > err || isnan(eg)) err = eg;
        if (!(eg <= gpu_tol(dts[i], T)))
            snprintf(detail, sizeof detail, "product %d (%s) [%zu]: cuda %.7g ref %.7g (err %.3g of scale > %.0e)", i,
                     folio_dtype_name(dts[i]), at, (double)g_out[i][at], (double)ref[i][at], eg, gpu_tol(dts[i], T));
        else if (!(ec <= cpu_tol(dts[i])))
            snprintf(detail, sizeof detail, "product %d (%s) [%zu]: cpu %.7g ref %.7g (err %.3g of scale > %.0e)", i,
                     folio_dtype_name(dts[i]), cat, (double)h_out[i][cat], (double)ref[i][cat], ec,
                     cpu_tol(dts[i]));
        if (!detail[0]) check_guard("out", d_out[i], no, (size_t)(N + 17 * i), detail, sizeof detail);
    }
out:
    for (int i = 0; i < MAX_MM; i++) {
        if (wc[i].owned || wc[i].data) backend_free_weight(cpu, &wc[i]);
        if (wg[i].owned) backend_free_weight(gpu, &wg[i]);
        cudaFree(d_out[i]);
        free(h_out[i]);
        free(g_out[i]);
        free(ref[i]);
        qsrc_free(&q[i]);
    }
    cudaFree(d_x);
    cudaFree(d_bias);
    free(h_x);
    free(h_bias);
    report(name, detail[0] ? detail : NULL, err);
}

static void test_one(struct backend *cpu, struct backend *gpu, enum folio_dtype dt, int perm, int T, int K, int N) {
    test_qmatmul(cpu, gpu, 1, &dt, &perm, T, K, N, 0, 0);
}

/* backend_load_weight of a float matrix as Q8, Q4 or FP8 (quantized on the host, then
 * load_quant) on both backends: the GPU's products against the CPU's on the same bytes. */
static void test_load_weight_route(struct backend *cpu, struct backend *gpu, enum folio_dtype dt, int T, int K,
                                   int N) {
    char name[128], detail[256] = "";
    snprintf(name, sizeof name, "quant load_weight f32 -> %s, matmul T=%d K=%d N=%d vs the CPU", folio_dtype_name(dt),
             T, K, N);
    double err = 0.0;
    struct backend_weight wc = {0}, wg = {0};
    float *src = malloc(sizeof(float) * (size_t)N * K), *h_x = malloc(sizeof(float) * (size_t)T * K);
    float *h_out = malloc(sizeof(float) * (size_t)T * N), *g_out = malloc(sizeof(float) * (size_t)T * N);
    float *d_x = NULL, *d_out = NULL;
    if (!src || !h_x || !h_out || !g_out) {
        snprintf(detail, sizeof detail, "out of host memory");
        goto out;
    }
    fill(src, (size_t)N * K, -0.1f, 0.1f);
    fill(h_x, (size_t)T * K, -1.0f, 1.0f);
    const struct backend_reserve_args r = {.max_tokens = T, .max_cols = K, .num_heads = 8, .num_kv_heads = 2,
                                           .head_dim = 64};
    if (backend_load_weight(cpu, src, FOLIO_F32, N, K, dt, &wc) || backend_load_weight(gpu, src, FOLIO_F32, N, K, dt, &wg) ||
        backend_reserve(gpu, &r) || backend_reserve(cpu, &r)) {
        snprintf(detail, sizeof detail, "%s", folio_last_error());
        goto out;
    }
    if (wg.dtype != dt || wc.dtype != dt) {
        snprintf(detail, sizeof detail, "loaded as %s (cuda) / %s (cpu)", folio_dtype_name(wg.dtype),
                 folio_dtype_name(wc.dtype));
        goto out;
    }
    CK(dev_alloc(&d_x, (size_t)T * K, 0));
    CK(dev_alloc(&d_out, (size_t)T * N, (size_t)N));
    CK(cudaMemcpy(d_x, h_x, sizeof(float) * (size_t)T * K, cudaMemcpyHostToDevice));
    backend_matmul(cpu, h_x, T, &(struct backend_matmul_args){&wc, NULL, h_out}, 1);
    backend_matmul(gpu, d_x, T, &(struct backend_matmul_args){&wg, NULL, d_out}, 1);
    if (backend_sync(gpu) || backend_sync(cpu)) {
        snprintf(detail, sizeof detail, "sync: %s", folio_last_error());
        goto out;
    }
    CK(cudaMemcpy(g_out, d_out, sizeof(float) * (size_t)T * N, cudaMemcpyDeviceToHost));
    size_t at = 0;
    err = scaled_error(g_out, h_out, (size_t)T * N, &at);
    const double tol = dt == FOLIO_FP8 && T <= QGEMV_MAX_T ? 1e-4 : 3e-2; /* as cpu_tol, bf16 GEMM */
    if (!(err <= tol))
        snprintf(detail, sizeof detail, "[%zu]: cuda %.7g cpu %.7g (err %.3g of scale > %.0e)", at, (double)g_out[at],
                 (double)h_out[at], err, tol);
    else
        check_guard("out", d_out, (size_t)T * N, (size_t)N, detail, sizeof detail);
out:
    if (wc.owned || wc.data) backend_free_weight(cpu, &wc);
    if (wg.owned) backend_free_weight(gpu, &wg);
    cudaFree(d_x);
    cudaFree(d_out);
    free(src);
    free(h_x);
    free(h_out);
    free(g_out);
    report(name, detail[0] ? detail : NULL, err);
}

/* The products recorded in a CUDA graph (no sync, no allocation inside matmul) and replayed
 * must equal the eager ones bit for bit: qgemv at T = 2 and the dequantized GEMM at T = 24,
 * with a column order. */
static void test_qgraph(struct backend *gpu, int T) {
    char name[96], detail[256] = "";
    snprintf(name, sizeof name, "quant matmul in a CUDA graph T=%d equals eager", T);
    const int K = 256, N = 300;
    struct qsrc q[2] = {{0}};
    struct backend_weight w[2] = {{0}};
    float *d_x = NULL, *d_out[2] = {0}, *eager[2] = {0}, *replay[2] = {0};
    float *h_x = malloc(sizeof(float) * (size_t)T * K);
    void *graph = NULL;
    const struct backend_reserve_args r = {.max_tokens = T, .max_cols = K, .num_heads = 8, .num_kv_heads = 2,
                                           .head_dim = 64};
    if (!h_x || qsrc_make(&q[0], FOLIO_Q4Z, N, K, 1) || qsrc_make(&q[1], FOLIO_Q8, N, K, 0)) {
        snprintf(detail, sizeof detail, "out of host memory");
        goto out;
    }
    fill(h_x, (size_t)T * K, -1.0f, 1.0f);
    if (qsrc_load(gpu, &q[0], &w[0]) || qsrc_load(gpu, &q[1], &w[1]) || backend_reserve(gpu, &r)) {
        snprintf(detail, sizeof detail, "%s", folio_last_error());
        goto out;
    }
    CK(dev_alloc(&d_x, (size_t)T * K, 0));
    CK(cudaMemcpy(d_x, h_x, sizeof(float) * (size_t)T * K, cudaMemcpyHostToDevice));
    struct backend_matmul_args mm[2];
    for (int i = 0; i < 2; i++) {
        CK(dev_alloc(&d_out[i], (size_t)T * N, 0));
        if (!(eager[i] = malloc(sizeof(float) * (size_t)T * N)) || !(replay[i] = malloc(sizeof(float) * (size_t)T * N))) {
            snprintf(detail, sizeof detail, "out of host memory");
            goto out;
        }
        mm[i] = (struct backend_matmul_args){&w[i], NULL, d_out[i]};
    }
    backend_matmul(gpu, d_x, T, mm, 2);
    if (backend_sync(gpu)) {
        snprintf(detail, sizeof detail, "eager: %s", folio_last_error());
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        CK(cudaMemcpy(eager[i], d_out[i], sizeof(float) * (size_t)T * N, cudaMemcpyDeviceToHost));
        CK(cudaMemset(d_out[i], 0, sizeof(float) * (size_t)T * N));
    }
    if (backend_graph_begin(gpu)) {
        snprintf(detail, sizeof detail, "graph_begin: %s", folio_last_error());
        goto out;
    }
    backend_matmul(gpu, d_x, T, mm, 2);
    if (backend_graph_end(gpu, &graph) || backend_graph_launch(gpu, graph) || backend_sync(gpu)) {
        snprintf(detail, sizeof detail, "graph: %s", folio_last_error());
        goto out;
    }
    for (int i = 0; i < 2 && !detail[0]; i++) {
        CK(cudaMemcpy(replay[i], d_out[i], sizeof(float) * (size_t)T * N, cudaMemcpyDeviceToHost));
        if (memcmp(eager[i], replay[i], sizeof(float) * (size_t)T * N) != 0)
            snprintf(detail, sizeof detail, "product %d: the replay differs from the eager run", i);
    }
out:
    if (graph) backend_graph_free(gpu, graph);
    for (int i = 0; i < 2; i++) {
        if (w[i].owned) backend_free_weight(gpu, &w[i]);
        qsrc_free(&q[i]);
        cudaFree(d_out[i]);
        free(eager[i]);
        free(replay[i]);
    }
    cudaFree(d_x);
    free(h_x);
    report(name, detail[0] ? detail : NULL, -1.0);
}

/* Weights the CUDA backend must refuse, with an error and nothing loaded. */
static void test_qrefusals(struct backend *gpu) {
    char detail[256] = "";
    uint8_t bytes[4 * 64] = {0};
    int32_t perm[64];
    for (int k = 0; k < 64; k++) perm[k] = k;
    perm[5] = 64; /* out of range */
    const struct backend_quant_src bad[] = {
        {.dtype = FOLIO_FP8, .data = bytes, .rows = 2, .cols = 64},                     /* no scales */
        {.dtype = FOLIO_Q4Z, .data = bytes, .rows = 2, .cols = 64, .perm = perm},       /* bad perm */
        {.dtype = FOLIO_BF16, .data = bytes, .rows = 2, .cols = 64},                    /* not quantized */
        {.dtype = FOLIO_Q8, .data = bytes, .rows = 0, .cols = 64},                      /* no rows */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0] && !detail[0]; i++) {
        struct backend_weight w = {0};
        if (backend_load_quant(gpu, &bad[i], &w) == 0) {
            snprintf(detail, sizeof detail, "case %zu was loaded", i);
            backend_free_weight(gpu, &w);
        } else if (w.owned || w.owned_aux || w.data) {
            snprintf(detail, sizeof detail, "case %zu: refused but left a weight behind", i);
        }
    }
    report("quant load_quant refuses FP8 without scales, a column out of range, bf16, 0 rows", detail[0] ? detail : NULL,
           -1.0);
}

void gpu_tests_quant(struct backend *cpu, cudaStream_t st) {
    (void)st;
    struct backend *gpu = NULL;
    if (backend_cuda_create(0, &gpu)) {
        report("backend_cuda_create (quant)", folio_last_error(), -1.0);
        return;
    }
    static const enum folio_dtype dts[] = {FOLIO_Q8, FOLIO_Q4, FOLIO_Q4Z, FOLIO_FP8};
    static const int Ts[] = {1, 3, 8, 9, 64};
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
        for (size_t t = 0; t < sizeof Ts / sizeof Ts[0]; t++) {
            test_one(cpu, gpu, dts[d], 0, Ts[t], 2048, 333);
            test_one(cpu, gpu, dts[d], 0, Ts[t], 172, 96); /* stories260K's MLP: K % 32 != 0 */
        }
        test_one(cpu, gpu, dts[d], 0, 1, 64, 1000);
        test_one(cpu, gpu, dts[d], 0, 2, 100, 7);
    }
    for (size_t t = 0; t < sizeof Ts / sizeof Ts[0]; t++) {
        test_one(cpu, gpu, FOLIO_Q4Z, 1, Ts[t], 1024, 300); /* GPTQ act-order */
        test_one(cpu, gpu, FOLIO_Q4Z, 1, Ts[t], 200, 65);
    }
    /* Products sharing x: column orders that change between them, a bf16 weight among them
     * (its narrowed x has no column order), a bias on the first. */
    static const enum folio_dtype mix1[] = {FOLIO_Q4Z, FOLIO_BF16, FOLIO_Q8};
    static const int perm1[] = {1, 0, 0};
    static const enum folio_dtype mix2[] = {FOLIO_Q4Z, FOLIO_Q4Z, FOLIO_FP8};
    static const int perm2[] = {1, 1, 0};
    static const int mixT[] = {1, 4, 16, 64};
    for (size_t t = 0; t < sizeof mixT / sizeof mixT[0]; t++) {
        test_qmatmul(cpu, gpu, 3, mix1, perm1, mixT[t], 512, 256, 1, 0);
        test_qmatmul(cpu, gpu, 3, mix2, perm2, mixT[t], 512, 256, 1, 0);
    }
    /* x at an address that is not 16-byte aligned: qgemv's gathered copy. */
    static const enum folio_dtype q8 = FOLIO_Q8, q4 = FOLIO_Q4;
    static const int noperm = 0;
    test_qmatmul(cpu, gpu, 1, &q8, &noperm, 1, 256, 128, 0, 1);
    test_qmatmul(cpu, gpu, 1, &q4, &noperm, 5, 256, 128, 1, 1);
    /* More rows than one dequantized slice (8M weights): the GEMM runs slice by slice. */
    test_one(cpu, gpu, FOLIO_Q4, 0, 16, 2048, 4500);
    test_one(cpu, gpu, FOLIO_FP8, 0, 16, 4096, 2200);
    /* Quantized on the host from a float matrix, then loaded. */
    static const enum folio_dtype routed[] = {FOLIO_Q8, FOLIO_Q4, FOLIO_FP8};
    for (size_t d = 0; d < 3; d++) {
        test_load_weight_route(cpu, gpu, routed[d], 1, 576, 1536);
        test_load_weight_route(cpu, gpu, routed[d], 64, 172, 288);
    }
    test_qgraph(gpu, 2);
    test_qgraph(gpu, 24);
    test_qrefusals(gpu);
    backend_free(gpu);
}

/* ---- gpu-tests --bench: decode products with quantized weights against memcpy ---- */

/* Bytes a product reads from the weight in the CUDA layout: values, f16 scales, zero points
 * (FP8: the row scales). */
static double weight_bytes(enum folio_dtype dt, int N, int K) {
    const double blocks = (double)N * (double)quant_blocks(K);
    switch (dt) {
    case FOLIO_Q8: return blocks * 34.0;
    case FOLIO_Q4: return blocks * 18.0;
    case FOLIO_Q4Z: return blocks * 19.0;
    default: return blocks * 32.0 + 4.0 * N; /* FOLIO_FP8 */
    }
}

int gpu_bench_quant(double copy_gbs) {
    static const struct {
        const char *label;
        int N, K;
    } shapes[] = {
        {"q / o_proj 2048x2048", 2048, 2048},
        {"gate / up_proj 8192x2048", 8192, 2048},
        {"down_proj 2048x8192", 2048, 8192},
        {"lm_head 128256x2048", 128256, 2048},
    };
    static const enum folio_dtype dts[] = {FOLIO_Q8, FOLIO_Q4, FOLIO_Q4Z, FOLIO_FP8};
    static const int Ts[] = {1, 4, 8, 16, 64}; /* 16, 64: bf16 slices through cuBLAS */
    struct backend *gpu = NULL;
    int rc = 1;
    if (backend_cuda_create(0, &gpu)) {
        fprintf(stderr, "bench: %s\n", folio_last_error());
        return 1;
    }
    const struct backend_reserve_args r = {.max_tokens = 64, .max_cols = 8192, .num_heads = 8, .num_kv_heads = 2,
                                           .head_dim = 64};
    if (backend_reserve(gpu, &r)) goto out;
    printf("\n%-30s %-11s %3s %8s %10s %7s  (quantized weights, fp32 activations; GB/s of the weight's bytes)\n",
           "product", "dtype", "T", "path", "us/iter", "GB/s");
    rc = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
            const enum folio_dtype dt = dts[d];
            const int N = shapes[s].N, K = shapes[s].K;
            const size_t rb = quant_row_bytes(dt, K), nb = (size_t)quant_blocks(K);
            uint8_t *h = malloc(rb * (size_t)N);
            float *scale = dt == FOLIO_FP8 ? malloc(sizeof(float) * (size_t)N) : NULL;
            float *d_x = NULL, *d_out = NULL;
            struct backend_weight w = {0};
            int ok = h && (dt != FOLIO_FP8 || scale);
            /* Timing only: any bytes do, but finite scales (0.004 in f16), zero point 8 and no
             * FP8 NaN keep the arithmetic ordinary. */
            uint64_t st = 0x9e3779b97f4a7c15ull;
            for (size_t i = 0; ok && i < rb * (size_t)N; i++) {
                st ^= st << 13;
                st ^= st >> 7;
                st ^= st << 17;
                h[i] = (uint8_t)st;
                if (dt == FOLIO_FP8 && (h[i] & 0x7F) == 0x7F) h[i] ^= 1;
            }
            if (ok && dt != FOLIO_FP8) {
                const size_t bs = rb / nb;
                for (size_t b = 0; b < nb * (size_t)N; b++) {
                    h[b * bs] = 0x1C;
                    h[b * bs + 1] = 0x1C;
                    if (dt == FOLIO_Q4Z) h[b * bs + 2] = 8;
                }
            }
            for (int n = 0; ok && scale && n < N; n++) scale[n] = 1e-3f;
            const struct backend_quant_src src = {.dtype = dt, .data = h, .rows = N, .cols = K, .scale = scale};
            ok = ok && backend_load_quant(gpu, &src, &w) == 0 &&
                 cudaMalloc((void **)&d_x, sizeof(float) * 64 * (size_t)K) == cudaSuccess &&
                 cudaMemset(d_x, 0, sizeof(float) * 64 * (size_t)K) == cudaSuccess &&
                 cudaMalloc((void **)&d_out, sizeof(float) * 64 * (size_t)N) == cudaSuccess;
            free(h);
            free(scale);
            for (size_t t = 0; ok && t < sizeof Ts / sizeof Ts[0]; t++) {
                const int T = Ts[t], reps = 50;
                const struct backend_matmul_args mm = {&w, NULL, d_out};
                for (int i = 0; i < 3; i++) backend_matmul(gpu, d_x, T, &mm, 1);
                backend_sync(gpu);
                const double t0 = folio_now();
                for (int i = 0; i < reps; i++) backend_matmul(gpu, d_x, T, &mm, 1);
                if (backend_sync(gpu)) {
                    ok = 0;
                    break;
                }
                const double us = (folio_now() - t0) * 1e6 / reps, gbs = weight_bytes(dt, N, K) / (us * 1e-6) / 1e9;
                printf("%-30s %-11s %3d %8s %10.1f %7.0f  (%.0f%% of memcpy)\n", shapes[s].label, folio_dtype_name(dt),
                       T, T <= QGEMV_MAX_T ? "qgemv" : "deq+gemm", us, gbs, 100.0 * gbs / copy_gbs);
            }
            if (!ok) {
                printf("%-30s %-11s failed: %s\n", shapes[s].label, folio_dtype_name(dt), folio_last_error());
                rc = 1;
            }
            if (w.owned) backend_free_weight(gpu, &w);
            cudaFree(d_x);
            cudaFree(d_out);
        }
    }
out:
    backend_free(gpu);
    return rc;
}
