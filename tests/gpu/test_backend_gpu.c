/* gpu-tests cases for the conversion and sampling kernels (cast_f32, argmax_rows) and for the
 * CUDA backend's own slots (engine/backend/cuda/backend_cuda.c): matmul through cuBLAS in fp32, bf16 and
 * f16 against the CPU backend's matmul on the same weights, bias rows, several products
 * sharing one narrowed input, the backend argmax, reserve and mem_info.
 *
 * Tolerances: fp32 products match to 1e-5 relative (pedantic cuBLAS, the CPU's fp32 sums);
 * 16-bit products round the activations to the weights' type on the GPU while the CPU keeps
 * them in fp32, so they are held to 1e-2 of the output's scale (max |cpu|), the bf16
 * bound. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_test.h"

static cudaError_t up(void *dst, const void *src, size_t bytes) {
    return cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
}
static cudaError_t down(void *dst, const void *src, size_t bytes) {
    return cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
}

static void test_cast(cudaStream_t st, enum folio_dtype dt, size_t n) {
    char name[96], detail[256] = "";
    snprintf(name, sizeof name, "cast_f32 -> %s n=%zu", folio_dtype_name(dt), n);
    float *h_x = malloc(sizeof(float) * n), *d_x = NULL; /* [n] */
    uint16_t *h_out = malloc(2 * (n + 64)), *d_out = NULL; /* [n] + a guard of 64 */
    if (!h_x || !h_out) {
        snprintf(detail, sizeof detail, "out of host memory");
        goto out;
    }
    fill(h_x, n, -4.0f, 4.0f);
    /* The edges of both formats: overflow to inf, ties to even, subnormals, signed zero. */
    const float edges[] = {70000.0f, -70000.0f, 65520.0f, 1.0f + 1.0f / 256.0f, 1.0f + 3.0f / 256.0f,
                           1e-6f,    -3e-8f,    0.0f,     -0.0f,                 3.3895e38f,
                           INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0] && i < n; i++) h_x[i] = edges[i];
    CK(dev_alloc(&d_x, n, 0));
    CK(up(d_x, h_x, sizeof(float) * n));
    CK(cudaMalloc((void **)&d_out, 2 * (n + 64)));
    CK(cudaMemset(d_out, 0xff, 2 * (n + 64)));
    CK(cast_f32(d_x, d_out, (enum kernel_dtype)dt, n, st));
    CK(cudaStreamSynchronize(st));
    CK(down(h_out, d_out, 2 * (n + 64)));
    for (size_t i = 0; i < n && !detail[0]; i++) {
        const uint16_t want = dt == FOLIO_BF16 ? folio_f32_to_bf16(h_x[i]) : folio_f32_to_f16(h_x[i]);
        if (h_out[i] != want)
            snprintf(detail, sizeof detail, "[%zu] %.9g: gpu 0x%04x host 0x%04x", i, (double)h_x[i], h_out[i], want);
    }
    for (size_t i = n; i < n + 64 && !detail[0]; i++)
        if (h_out[i] != 0xffff) snprintf(detail, sizeof detail, "write past the end at %zu", i);
out:
    cudaFree(d_x);
    cudaFree(d_out);
    free(h_x);
    free(h_out);
    report(name, detail[0] ? detail : NULL, -1.0);
}

/* The CPU sampler's rule: lowest index of the largest value, NaN never, 0 when nothing. */
static int32_t host_argmax(const float *x, int n) {
    int32_t best = -1;
    for (int i = 0; i < n; i++)
        if (best < 0 ? !isnan(x[i]) : x[i] > x[best]) best = i;
    return best < 0 ? 0 : best;
}

/* Rows of random small integers (many ties), one all NaN, one all -inf, one with +inf and
 * NaNs, one whose maximum is the last element. */
static void fill_logits(float *h, int n, int vocab) {
    for (int r = 0; r < n; r++) {
        float *row = h + (size_t)r * vocab;
        for (int i = 0; i < vocab; i++) row[i] = (float)irand(16) - 8.0f;
        switch (r % 6) {
        case 1:
            for (int i = 0; i < vocab; i++) row[i] = NAN;
            break;
        case 2:
            for (int i = 0; i < vocab; i++) row[i] = -INFINITY;
            break;
        case 3:
            row[irand(vocab)] = NAN;
            row[vocab / 2] = INFINITY;
            row[0] = NAN;
            break;
        case 4: row[vocab - 1] = 100.0f; break;
        default: break;
        }
    }
}

static void test_argmax_rows(cudaStream_t st, int n, int vocab) {
    char name[96], detail[256] = "";
    snprintf(name, sizeof name, "argmax_rows n=%d vocab=%d", n, vocab);
    float *h = malloc(sizeof(float) * (size_t)n * vocab), *d = NULL; /* [n, vocab] */
    int32_t *ids = malloc(sizeof(int32_t) * (n + 16)), *d_ids = NULL;  /* [n] + guard */
    if (!h || !ids) {
        snprintf(detail, sizeof detail, "out of host memory");
        goto out;
    }
    fill_logits(h, n, vocab);
    CK(dev_alloc(&d, (size_t)n * vocab, 0));
    CK(up(d, h, sizeof(float) * (size_t)n * vocab));
    CK(dev_alloc_i32(&d_ids, (size_t)n, 16));
    CK(argmax_rows(d, n, vocab, d_ids, st));
    CK(cudaStreamSynchronize(st));
    CK(down(ids, d_ids, sizeof(int32_t) * n));
    for (int r = 0; r < n && !detail[0]; r++) {
        const int32_t want = host_argmax(h + (size_t)r * vocab, vocab);
        if (ids[r] != want) snprintf(detail, sizeof detail, "row %d: gpu %d host %d", r, ids[r], want);
    }
    if (!detail[0]) check_guard("ids", (const float *)d_ids, (size_t)n, 16, detail, sizeof detail);
out:
    cudaFree(d);
    cudaFree(d_ids);
    free(h);
    free(ids);
    report(name, detail[0] ? detail : NULL, -1.0);
}

/* n_mm products of one x [T, K]: W_i [N_i, K] (N_i = N + 17 i, odd sizes on purpose), with a
 * bias on the first when asked. */
static void test_matmul(struct backend *cpu, struct backend *gpu, enum folio_dtype dt, int T, int K, int N,
                        int n_mm, int with_bias) {
    char name[128], detail[256] = "";
    snprintf(name, sizeof name, "backend matmul %s T=%d K=%d N=%d x%d%s", folio_dtype_name(dt), T, K, N, n_mm,
             with_bias ? " +bias" : "");
    double err = 0.0;
    struct backend_weight wc[3] = {{0}}, wg[3] = {{0}};
    float *src[3] = {0}, *h_out[3] = {0}, *g_out[3] = {0}, *d_out[3] = {0};
    float *h_x = malloc(sizeof(float) * (size_t)T * K), *h_bias = malloc(sizeof(float) * (N + 64));
    float *d_x = NULL, *d_bias = NULL;
    const float ws = 1.0f / sqrtf((float)K);
    if (!h_x || !h_bias) {
        snprintf(detail, sizeof detail, "out of host memory");
        goto out;
    }
    fill(h_x, (size_t)T * K, -1.0f, 1.0f);
    fill(h_bias, (size_t)N, -0.5f, 0.5f);
    const struct backend_reserve_args r = {.max_tokens = T, .max_cols = K, .num_heads = 8, .num_kv_heads = 2, .head_dim = 64};
    if (gpu->iface->reserve(gpu, &r)) {
        snprintf(detail, sizeof detail, "reserve: %s", folio_last_error());
        goto out;
    }
    struct backend_matmul_args mc[3], mg[3];
    for (int i = 0; i < n_mm; i++) {
        const int Ni = N + 17 * i;
        if (!(src[i] = malloc(sizeof(float) * (size_t)Ni * K)) || !(h_out[i] = malloc(sizeof(float) * (size_t)T * Ni)) ||
            !(g_out[i] = malloc(sizeof(float) * (size_t)T * Ni))) {
            snprintf(detail, sizeof detail, "out of host memory");
            goto out;
        }
        fill(src[i], (size_t)Ni * K, -ws, ws);
        if (cpu->iface->load_weight(cpu, src[i], FOLIO_F32, Ni, K, dt, &wc[i]) ||
            gpu->iface->load_weight(gpu, src[i], FOLIO_F32, Ni, K, dt, &wg[i])) {
            snprintf(detail, sizeof detail, "load_weight: %s", folio_last_error());
            goto out;
        }
        if (wg[i].dtype != dt) {
            snprintf(detail, sizeof detail, "the GPU weight is %s, not %s", folio_dtype_name(wg[i].dtype),
                     folio_dtype_name(dt));
            goto out;
        }
        CK(dev_alloc(&d_out[i], (size_t)T * Ni, (size_t)Ni));
        mc[i] = (struct backend_matmul_args){&wc[i], with_bias && i == 0 ? h_bias : NULL, h_out[i]};
        mg[i] = (struct backend_matmul_args){&wg[i], NULL, d_out[i]};
    }
    CK(dev_alloc(&d_x, (size_t)T * K, 0));
    CK(up(d_x, h_x, sizeof(float) * (size_t)T * K));
    if (with_bias) {
        CK(dev_alloc(&d_bias, (size_t)N, 0));
        CK(up(d_bias, h_bias, sizeof(float) * N));
        mg[0].bias = d_bias;
    }
    cpu->iface->matmul(cpu, h_x, T, mc, n_mm);
    gpu->iface->matmul(gpu, d_x, T, mg, n_mm);
    if (gpu->iface->sync(gpu)) {
        snprintf(detail, sizeof detail, "sync: %s", folio_last_error());
        goto out;
    }
    for (int i = 0; i < n_mm && !detail[0]; i++) {
        const int Ni = N + 17 * i;
        const size_t no = (size_t)T * Ni;
        CK(down(g_out[i], d_out[i], sizeof(float) * no));
        if (dt == FOLIO_F32) {
            if (compare("out", g_out[i], h_out[i], no, &err, detail, sizeof detail)) break;
        } else {
            size_t at = 0;
            const double e = scaled_error(g_out[i], h_out[i], no, &at);
            if (e > err || isnan(e)) err = e;
            if (!(e <= 1e-2))
                snprintf(detail, sizeof detail, "product %d [%zu]: gpu %.6g cpu %.6g (err %.3g of scale > 1e-2)", i,
                         at, (double)g_out[i][at], (double)h_out[i][at], e);
        }
        if (!detail[0]) check_guard("out", d_out[i], no, (size_t)Ni, detail, sizeof detail);
    }
out:
    for (int i = 0; i < 3; i++) {
        if (wc[i].owned || wc[i].data) cpu->iface->free_weight(cpu, &wc[i]);
        if (wg[i].owned) gpu->iface->free_weight(gpu, &wg[i]);
        cudaFree(d_out[i]);
        free(src[i]);
        free(h_out[i]);
        free(g_out[i]);
    }
    cudaFree(d_x);
    cudaFree(d_bias);
    free(h_x);
    free(h_bias);
    report(name, detail[0] ? detail : NULL, err);
}

static void test_backend_argmax_and_mem(struct backend *gpu, int n, int vocab) {
    char name[96], detail[256] = "";
    snprintf(name, sizeof name, "backend argmax n=%d vocab=%d, reserve, mem_info", n, vocab);
    float *h = malloc(sizeof(float) * (size_t)n * vocab), *d = NULL;
    int32_t *ids = malloc(sizeof(int32_t) * n);
    struct backend_mem mem = {0};
    if (!h || !ids) {
        snprintf(detail, sizeof detail, "out of host memory");
        goto out;
    }
    const struct backend_reserve_args r = {.max_tokens = n, .max_cols = 64, .num_heads = 32, .num_kv_heads = 8, .head_dim = 128};
    if (gpu->iface->reserve(gpu, &r) || gpu->iface->mem_info(gpu, &mem)) {
        snprintf(detail, sizeof detail, "%s", folio_last_error());
        goto out;
    }
    if (!(mem.total > 0 && mem.free <= mem.total && mem.reserved >= (size_t)n * 8)) {
        snprintf(detail, sizeof detail, "mem_info: total %zu free %zu reserved %zu", mem.total, mem.free, mem.reserved);
        goto out;
    }
    fill_logits(h, n, vocab);
    CK(dev_alloc(&d, (size_t)n * vocab, 0));
    CK(up(d, h, sizeof(float) * (size_t)n * vocab));
    if (gpu->iface->argmax(gpu, d, n, vocab, ids)) {
        snprintf(detail, sizeof detail, "argmax: %s", folio_last_error());
        goto out;
    }
    for (int i = 0; i < n && !detail[0]; i++)
        if (ids[i] != host_argmax(h + (size_t)i * vocab, vocab))
            snprintf(detail, sizeof detail, "row %d: gpu %d host %d", i, ids[i], host_argmax(h + (size_t)i * vocab, vocab));
    /* More rows than reserved: refused, not overrun. */
    if (!detail[0] && gpu->iface->argmax(gpu, d, n + 1, vocab / 2, ids) == 0)
        snprintf(detail, sizeof detail, "argmax of %d rows past the reserve of %d was not refused", n + 1, n);
out:
    cudaFree(d);
    free(h);
    free(ids);
    report(name, detail[0] ? detail : NULL, -1.0);
}

void gpu_tests_backend(struct backend *cpu, cudaStream_t st) {
    test_cast(st, FOLIO_BF16, 1000);
    test_cast(st, FOLIO_F16, 1000);
    test_cast(st, FOLIO_BF16, (size_t)65535 * 256 + 999); /* past one grid: the stride loop wraps */
    test_argmax_rows(st, 1, 7);
    test_argmax_rows(st, 12, 1000);
    test_argmax_rows(st, 64, 32000);
    test_argmax_rows(st, 7, 128256);
    struct backend *gpu = NULL;
    if (backend_cuda_create(0, &gpu)) {
        report("backend_cuda_create", folio_last_error(), -1.0);
        return;
    }
    static const enum folio_dtype dts[] = {FOLIO_F32, FOLIO_BF16, FOLIO_F16};
    for (int i = 0; i < 3; i++) {
        test_matmul(cpu, gpu, dts[i], 1, 64, 96, 1, 0);
        test_matmul(cpu, gpu, dts[i], 7, 576, 1536, 3, 1);
        test_matmul(cpu, gpu, dts[i], 256, 2048, 512, 2, 1);
        /* The small-batch kernel (gemv, T <= GEMV_MAX_T), the batches just past it, and K it
         * does not take (cuBLAS for all of those). */
        for (int T = 1; T <= 4; T++) test_matmul(cpu, gpu, dts[i], T, 2048, 700, 3, T == 2);
        test_matmul(cpu, gpu, dts[i], 3, 8192 + 8, 64, 1, 0);
        test_matmul(cpu, gpu, dts[i], 2, 100, 333, 1, 1);
    }
    test_matmul(cpu, gpu, FOLIO_BF16, 300, 8192, 2048, 1, 0); /* Llama-3.2-1B's down_proj shape */
    test_backend_argmax_and_mem(gpu, 48, 128256);
    backend_free(gpu);
}

/* ---- gpu-tests --bench: small-batch products (the weight streamed once) against memcpy ---- */

int gpu_bench_matmul(double copy_gbs) {
    static const struct {
        const char *label;
        int N, K;
    } shapes[] = {
        {"q / o_proj 2048x2048", 2048, 2048},
        {"gate / up_proj 8192x2048", 8192, 2048},
        {"down_proj 2048x8192", 2048, 8192},
        {"lm_head 128256x2048", 128256, 2048},
    };
    static const int Ts[] = {1, 2, 5}; /* 2 and 5: past GEMV_MAX_T, so cuBLAS GemmEx */
    struct backend *gpu = NULL;
    int rc = 1;
    if (backend_cuda_create(0, &gpu)) {
        fprintf(stderr, "bench: %s\n", folio_last_error());
        return 1;
    }
    const struct backend_reserve_args r = {.max_tokens = 8, .max_cols = 8192, .num_heads = 8, .num_kv_heads = 2, .head_dim = 64};
    if (gpu->iface->reserve(gpu, &r)) goto out;
    printf("\n%-44s %4s %10s %10s %7s  (bf16 weights, fp32 activations; GB/s of weight read)\n", "product", "T",
           "path", "us/iter", "GB/s");
    rc = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int N = shapes[s].N, K = shapes[s].K;
        const size_t nw = (size_t)N * K;
        uint16_t *h_w = malloc(2 * nw);
        float *d_x = NULL, *d_out = NULL;
        struct backend_weight w = {0};
        if (!h_w) {
            rc = 1;
            break;
        }
        for (size_t i = 0; i < nw; i++) h_w[i] = folio_f32_to_bf16((float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f);
        int ok = gpu->iface->load_weight(gpu, h_w, FOLIO_BF16, N, K, FOLIO_BF16, &w) == 0 &&
                 cudaMalloc((void **)&d_x, sizeof(float) * 8 * (size_t)K) == cudaSuccess &&
                 cudaMemset(d_x, 0, sizeof(float) * 8 * (size_t)K) == cudaSuccess &&
                 cudaMalloc((void **)&d_out, sizeof(float) * 8 * (size_t)N) == cudaSuccess;
        free(h_w);
        for (size_t t = 0; ok && t < sizeof Ts / sizeof Ts[0]; t++) {
            const int T = Ts[t], reps = 50;
            const struct backend_matmul_args mm = {&w, NULL, d_out};
            for (int i = 0; i < 3; i++) gpu->iface->matmul(gpu, d_x, T, &mm, 1);
            gpu->iface->sync(gpu);
            const double t0 = folio_now();
            for (int i = 0; i < reps; i++) gpu->iface->matmul(gpu, d_x, T, &mm, 1);
            if (gpu->iface->sync(gpu)) {
                ok = 0;
                break;
            }
            const double us = (folio_now() - t0) * 1e6 / reps, gbs = 2.0 * (double)nw / (us * 1e-6) / 1e9;
            printf("%-44s %4d %10s %10.1f %7.0f  (%.0f%% of memcpy)\n", shapes[s].label, T,
                   gemv_supported(KERNEL_BF16, T, K, w.data, d_x) ? "gemv" : "cublas", us, gbs, 100.0 * gbs / copy_gbs);
        }
        if (!ok) {
            printf("%-44s failed: %s\n", shapes[s].label, folio_last_error());
            rc = 1;
        }
        if (w.owned) gpu->iface->free_weight(gpu, &w);
        cudaFree(d_x);
        cudaFree(d_out);
    }
out:
    backend_free(gpu);
    return rc;
}
