/* gpu-tests cases for the data-movement ops: embed (f32/f16/bf16 tables), gather_rows, rope
 * (partial rotary, LongRoPE's per-token inv_freq rows and mscale),
 * reshape_and_cache and copy_blocks, each against the CPU backend's vtable op on host copies.
 * Buffers the kernel writes (in place or not) are compared whole, so an element the GPU
 * should have left alone also counts, and each carries a NaN guard past its end. */
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

/* A random permutation of [0, n) into p. */
static void permute(int32_t *p, int n) {
    for (int i = 0; i < n; i++) p[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = irand(i + 1);
        int32_t x = p[i];
        p[i] = p[j];
        p[j] = x;
    }
}

static void test_embed(struct backend *cpu, cudaStream_t st, enum folio_dtype dt, int rows, int cols, int n) {
    char name[96], detail[256];
    snprintf(name, sizeof name, "embed %s rows=%d cols=%d n=%d", folio_dtype_name(dt), rows, cols, n);
    const size_t es = folio_dtype_size(dt), no = (size_t)n * cols, g = (size_t)cols;
    double err = 0.0;
    float *h_src = malloc(sizeof(float) * rows * cols); /* [rows, cols] fp32 source */
    void *h_table = malloc(es * rows * cols);           /* [rows, cols] of dt */
    int32_t *h_tok = malloc(sizeof(int32_t) * n);       /* [n] */
    float *h_out = malloc(sizeof(float) * no), *g_out = malloc(sizeof(float) * no); /* [n, cols] */
    void *d_table = NULL;
    int32_t *d_tok = NULL;
    float *d_out = NULL;
    detail[0] = '\0';
    if (!h_src || !h_table || !h_tok || !h_out || !g_out) {
        snprintf(detail, sizeof detail, "out of host memory");
        goto out;
    }
    fill(h_src, (size_t)rows * cols, -3.0f, 3.0f);
    for (size_t i = 0; i < (size_t)rows * cols; i++) {
        if (dt == FOLIO_F32) ((float *)h_table)[i] = h_src[i];
        if (dt == FOLIO_F16) ((uint16_t *)h_table)[i] = folio_f32_to_f16(h_src[i]);
        if (dt == FOLIO_BF16) ((uint16_t *)h_table)[i] = folio_f32_to_bf16(h_src[i]);
    }
    for (int i = 0; i < n; i++) h_tok[i] = i == 0 ? rows - 1 : irand(rows);
    CK(cudaMalloc(&d_table, es * rows * cols));
    CK(up(d_table, h_table, es * rows * cols));
    CK(dev_alloc_i32(&d_tok, (size_t)n, 0));
    CK(up(d_tok, h_tok, sizeof(int32_t) * n));
    CK(dev_alloc(&d_out, no, g));
    CK(embed(d_table, (enum kernel_dtype)dt, rows, cols, d_tok, n, d_out, st));
    CK(cudaStreamSynchronize(st));
    struct backend_weight w = {.dtype = dt, .data = h_table, .rows = rows, .cols = cols};
    cpu->iface->embed(cpu, &w, h_tok, n, h_out);
    CK(down(g_out, d_out, sizeof(float) * no));
    if (compare("out", g_out, h_out, no, &err, detail, sizeof detail)) goto out;
    check_guard("out", d_out, no, g, detail, sizeof detail);
out:
    cudaFree(d_table);
    cudaFree(d_tok);
    cudaFree(d_out);
    free(h_src);
    free(h_table);
    free(h_tok);
    free(h_out);
    free(g_out);
    report(name, detail[0] ? detail : NULL, err);
}

static void test_gather_rows(struct backend *cpu, cudaStream_t st, int rows, int dim, int n) {
    char name[96], detail[256];
    snprintf(name, sizeof name, "gather_rows rows=%d dim=%d n=%d", rows, dim, n);
    const size_t no = (size_t)n * dim, g = (size_t)dim;
    double err = 0.0;
    float *h_x = malloc(sizeof(float) * rows * dim);  /* [rows, dim] */
    int32_t *h_idx = malloc(sizeof(int32_t) * n);     /* [n] */
    float *h_out = malloc(sizeof(float) * no), *g_out = malloc(sizeof(float) * no); /* [n, dim] */
    float *d_x = NULL, *d_out = NULL;
    int32_t *d_idx = NULL;
    detail[0] = '\0';
    if (!h_x || !h_idx || !h_out || !g_out) {
        snprintf(detail, sizeof detail, "out of host memory");
        goto out;
    }
    fill(h_x, (size_t)rows * dim, -5.0f, 5.0f);
    for (int i = 0; i < n; i++) h_idx[i] = i == n - 1 ? rows - 1 : irand(rows);
    CK(dev_alloc(&d_x, (size_t)rows * dim, 0));
    CK(up(d_x, h_x, sizeof(float) * rows * dim));
    CK(dev_alloc_i32(&d_idx, (size_t)n, 0));
    CK(up(d_idx, h_idx, sizeof(int32_t) * n));
    CK(dev_alloc(&d_out, no, g));
    CK(gather_rows(d_x, d_idx, n, dim, d_out, st));
    CK(cudaStreamSynchronize(st));
    cpu->iface->gather_rows(cpu, h_x, h_idx, n, dim, h_out);
    CK(down(g_out, d_out, sizeof(float) * no));
    if (compare("out", g_out, h_out, no, &err, detail, sizeof detail)) goto out;
    check_guard("out", d_out, no, g, detail, sizeof detail);
out:
    cudaFree(d_x);
    cudaFree(d_idx);
    cudaFree(d_out);
    free(h_x);
    free(h_idx);
    free(h_out);
    free(g_out);
    report(name, detail[0] ? detail : NULL, err);
}

/* q and k inside one fused [T, (nh + 2 nkv) * hd] QKV buffer, as model.c lays them out: the V
 * part, and the dimensions of each head past rot_dim, must come back untouched. long_sel:
 * two inv_freq rows (the second LongRoPE-like, divided by growing factors) and a random row
 * per token; mscale scales the rotated dimensions. */
static void test_rope(struct backend *cpu, cudaStream_t st, int T, int nh, int nkv, int hd, int rot_dim, float theta,
                      int max_pos, int long_sel, float mscale) {
    char name[160], detail[256];
    snprintf(name, sizeof name,
             "rope T=%d nh=%d nkv=%d head_dim=%d rot_dim=%d theta=%g max_pos=%d long_sel=%s mscale=%g", T, nh, nkv,
             hd, rot_dim, (double)theta, max_pos, long_sel ? "mixed" : "NULL", (double)mscale);
    const int stride = (nh + 2 * nkv) * hd, half = rot_dim / 2;
    const size_t n = (size_t)T * stride, g = (size_t)stride;
    double err = 0.0;
    float *h_qkv = malloc(sizeof(float) * n), *g_qkv = malloc(sizeof(float) * n); /* [T, stride] */
    int32_t *h_pos = malloc(sizeof(int32_t) * T), *h_sel = malloc(sizeof(int32_t) * T); /* [T] */
    float *h_freq = malloc(sizeof(float) * 2 * half);                             /* [2, rot_dim / 2] */
    float *d_qkv = NULL, *d_freq = NULL;
    int32_t *d_pos = NULL, *d_sel = NULL;
    detail[0] = '\0';
    if (!h_qkv || !g_qkv || !h_pos || !h_sel || !h_freq) {
        snprintf(detail, sizeof detail, "out of host memory");
        goto out;
    }
    fill(h_qkv, n, -2.0f, 2.0f);
    for (int t = 0; t < T; t++) {
        h_pos[t] = t == 0 ? max_pos : irand(max_pos + 1);
        h_sel[t] = T > 1 ? t % 2 : 1; /* both rows in every batch of two or more */
        if (t > 1 && irand(3) == 0) h_sel[t] = !h_sel[t];
    }
    for (int i = 0; i < half; i++) {
        h_freq[i] = (float)(1.0 / pow((double)theta, (double)(2 * i) / rot_dim));
        h_freq[half + i] = h_freq[i] / (1.0f + 0.37f * (float)i);
    }
    CK(dev_alloc(&d_qkv, n, g));
    CK(up(d_qkv, h_qkv, sizeof(float) * n));
    CK(dev_alloc_i32(&d_pos, (size_t)T, 0));
    CK(up(d_pos, h_pos, sizeof(int32_t) * T));
    CK(dev_alloc_i32(&d_sel, (size_t)T, 0));
    CK(up(d_sel, h_sel, sizeof(int32_t) * T));
    CK(dev_alloc(&d_freq, (size_t)2 * half, 0));
    CK(up(d_freq, h_freq, sizeof(float) * 2 * half));
    const struct rope_params p = {
        .q = d_qkv, .k = d_qkv + (size_t)nh * hd, .q_stride = stride, .k_stride = stride, .positions = d_pos,
        .inv_freq = d_freq, .long_sel = long_sel ? d_sel : NULL, .T = T, .nh = nh, .nkv = nkv, .head_dim = hd,
        .rot_dim = rot_dim, .mscale = mscale};
    CK(rope(&p, st));
    CK(cudaStreamSynchronize(st));
    const struct backend_rope_args a = {
        .q = h_qkv, .k = h_qkv + (size_t)nh * hd, .q_stride = stride, .k_stride = stride, .positions = h_pos,
        .inv_freq = h_freq, .long_sel = long_sel ? h_sel : NULL, .T = T, .nh = nh, .nkv = nkv, .head_dim = hd,
        .rot_dim = rot_dim, .mscale = mscale};
    cpu->iface->rope(cpu, &a);
    CK(down(g_qkv, d_qkv, sizeof(float) * n));
    if (compare("qkv", g_qkv, h_qkv, n, &err, detail, sizeof detail)) goto out;
    check_guard("qkv", d_qkv, n, g, detail, sizeof detail);
out:
    cudaFree(d_qkv);
    cudaFree(d_pos);
    cudaFree(d_sel);
    cudaFree(d_freq);
    free(h_qkv);
    free(g_qkv);
    free(h_pos);
    free(h_sel);
    free(h_freq);
    report(name, detail[0] ? detail : NULL, err);
}

/* K and V taken from a fused QKV buffer (stride (nh + 2 nkv) * hd), scattered to random free
 * slots; some tokens are padding (-1). The caches start random and are compared whole: fp32
 * as floats, bf16 and fp8 (through the scales) byte for byte against the CPU backend's
 * conversions, and nothing may be written past a narrow cache's bytes. */
static void test_reshape_and_cache(struct backend *cpu, cudaStream_t st, int T, int nkv, int hd, int bs,
                                   int num_blocks, enum kernel_kv_dtype kv, float ks, float vs) {
    char name[160], detail[256];
    const size_t es = kv == KERNEL_KV_F32 ? 4 : kv == KERNEL_KV_BF16 ? 2 : 1;
    snprintf(name, sizeof name, "reshape_and_cache %s T=%d nkv=%d head_dim=%d block_size=%d blocks=%d",
             folio_dtype_name((enum folio_dtype)kv), T, nkv, hd, bs, num_blocks);
    const int nh = 2 * nkv, stride = (nh + 2 * nkv) * hd;
    const size_t nx = (size_t)T * stride, nc = (size_t)num_blocks * nkv * bs * hd, g = (size_t)hd;
    double err = 0.0;
    float *h_x = malloc(sizeof(float) * nx);                                 /* [T, stride] */
    float *h_kc = malloc(sizeof(float) * nc), *h_vc = malloc(sizeof(float) * nc); /* [blocks, nkv, bs, hd] of kv */
    float *g_kc = malloc(sizeof(float) * nc), *g_vc = malloc(sizeof(float) * nc);
    int32_t *h_slots = malloc(sizeof(int32_t) * T), *perm = malloc(sizeof(int32_t) * num_blocks * bs); /* [T] */
    float *d_x = NULL, *d_kc = NULL, *d_vc = NULL;
    int32_t *d_slots = NULL;
    detail[0] = '\0';
    if (!h_x || !h_kc || !h_vc || !g_kc || !g_vc || !h_slots || !perm) {
        snprintf(detail, sizeof detail, "out of host memory");
        goto out;
    }
    fill(h_x, nx, -2.0f, 2.0f);
    fill(h_kc, nc, -1.0f, 1.0f); /* a narrow cache's first nc * es bytes: random bits */
    fill(h_vc, nc, -1.0f, 1.0f);
    permute(perm, num_blocks * bs);
    for (int t = 0; t < T; t++) h_slots[t] = t % 5 == 3 ? -1 : perm[t];
    CK(dev_alloc(&d_x, nx, 0));
    CK(up(d_x, h_x, sizeof(float) * nx));
    CK(dev_alloc(&d_kc, nc, g));
    CK(dev_alloc(&d_vc, nc, g));
    CK(up(d_kc, h_kc, es * nc));
    CK(up(d_vc, h_vc, es * nc));
    CK(dev_alloc_i32(&d_slots, (size_t)T, 0));
    CK(up(d_slots, h_slots, sizeof(int32_t) * T));
    CK(reshape_and_cache(d_x + (size_t)nh * hd, d_x + (size_t)(nh + nkv) * hd, stride, d_slots, d_kc, d_vc, kv, ks, vs,
                         T, nkv, hd, bs, st));
    CK(cudaStreamSynchronize(st));
    cpu->iface->reshape_and_cache(cpu, h_x + (size_t)nh * hd, h_x + (size_t)(nh + nkv) * hd, stride, h_slots, h_kc,
                                  h_vc, (enum folio_dtype)kv, ks, vs, T, nkv, hd, bs);
    CK(down(g_kc, d_kc, sizeof(float) * nc));
    CK(down(g_vc, d_vc, sizeof(float) * nc));
    if (kv == KERNEL_KV_F32) {
        if (compare("k_cache", g_kc, h_kc, nc, &err, detail, sizeof detail)) goto out;
        if (compare("v_cache", g_vc, h_vc, nc, &err, detail, sizeof detail)) goto out;
    } else {
        for (int c = 0; c < 2; c++) {
            const unsigned char *gb = (const unsigned char *)(c ? g_vc : g_kc);
            const unsigned char *hb = (const unsigned char *)(c ? h_vc : h_kc);
            size_t bad = 0, first = 0;
            for (size_t i = 0; i < es * nc; i++)
                if (gb[i] != hb[i] && !bad++) first = i;
            for (size_t i = es * nc; i < sizeof(float) * nc; i++) bad += gb[i] != 0xff; /* past the cache */
            if (bad) {
                snprintf(detail, sizeof detail, "%s: %zu bytes differ from the CPU backend's, the first at %zu "
                         "(%02x vs %02x)", c ? "v_cache" : "k_cache", bad, first, gb[first], hb[first]);
                goto out;
            }
        }
    }
    if (check_guard("k_cache", d_kc, nc, g, detail, sizeof detail)) goto out;
    check_guard("v_cache", d_vc, nc, g, detail, sizeof detail);
out:
    cudaFree(d_x);
    cudaFree(d_kc);
    cudaFree(d_vc);
    cudaFree(d_slots);
    free(h_x);
    free(h_kc);
    free(h_vc);
    free(g_kc);
    free(g_vc);
    free(h_slots);
    free(perm);
    report(name, detail[0] ? detail : NULL, kv == KERNEL_KV_F32 ? err : -1.0);
}

/* num_caches caches (2 per layer) back to back, block_bytes a block (any KV dtype: copied as
 * bytes); n pairs with distinct sources and destinations (a copy-on-write never copies into a
 * block that is itself being copied). */
static void test_copy_blocks(struct backend *cpu, cudaStream_t st, int num_caches, int num_blocks,
                             size_t block_bytes, int n) {
    char name[128], detail[256];
    snprintf(name, sizeof name, "copy_blocks caches=%d blocks=%d block_bytes=%zu pairs=%d", num_caches, num_blocks,
             block_bytes, n);
    const size_t cache_bytes = (size_t)num_blocks * block_bytes, nb = cache_bytes * num_caches;
    const size_t np = (nb + 3) / 4, g = 64; /* floats holding the pool */
    float *h_pool = malloc(sizeof(float) * np), *g_pool = malloc(sizeof(float) * np); /* [caches, blocks, bytes] */
    int32_t *h_pairs = malloc(sizeof(int32_t) * 2 * n), *perm = malloc(sizeof(int32_t) * num_blocks); /* [n, 2] */
    float *d_pool = NULL;
    int32_t *d_pairs = NULL;
    detail[0] = '\0';
    if (!h_pool || !g_pool || !h_pairs || !perm || 2 * n > num_blocks) {
        snprintf(detail, sizeof detail, "out of host memory or too many pairs");
        goto out;
    }
    fill(h_pool, np, -1.0f, 1.0f);
    permute(perm, num_blocks);
    for (int i = 0; i < n; i++) {
        h_pairs[2 * i] = perm[i];
        h_pairs[2 * i + 1] = perm[n + i];
    }
    CK(dev_alloc(&d_pool, np, g));
    CK(up(d_pool, h_pool, nb));
    CK(dev_alloc_i32(&d_pairs, (size_t)2 * n, 0));
    CK(up(d_pairs, h_pairs, sizeof(int32_t) * 2 * n));
    CK(copy_blocks(d_pool, num_caches, cache_bytes, block_bytes, d_pairs, n, st));
    CK(cudaStreamSynchronize(st));
    cpu->iface->copy_blocks(cpu, h_pool, num_caches, cache_bytes, block_bytes, h_pairs, n);
    CK(down(g_pool, d_pool, nb));
    if (memcmp(g_pool, h_pool, nb) != 0) {
        snprintf(detail, sizeof detail, "the pool differs from the CPU backend's copy");
        goto out;
    }
    check_guard("pool", d_pool, np, g, detail, sizeof detail);
out:
    cudaFree(d_pool);
    cudaFree(d_pairs);
    free(h_pool);
    free(g_pool);
    free(h_pairs);
    free(perm);
    report(name, detail[0] ? detail : NULL, -1.0);
}

/* Unsupported sizes fail loudly (cudaErrorInvalidValue) before touching anything; empty
 * shapes are a successful no-op. */
static void test_ops_edges(cudaStream_t st) {
    char detail[256];
    float *d = NULL; /* [0] + guard of 256 */
    detail[0] = '\0';
    CK(dev_alloc(&d, 0, 256));
    struct rope_params rp = {.q = d, .k = d, .q_stride = 48, .k_stride = 48, .positions = (const int32_t *)d,
                             .inv_freq = d, .T = 1, .nh = 1, .nkv = 1, .head_dim = 48, .rot_dim = 48, .mscale = 1.0f};
    if (rope(&rp, st) != cudaErrorInvalidValue) {
        snprintf(detail, sizeof detail, "rope head_dim=48 was not refused");
        goto out;
    }
    static const int bad_rot[] = {0, 63, 66, -2};
    rp.head_dim = 64;
    for (size_t i = 0; i < sizeof bad_rot / sizeof bad_rot[0]; i++) {
        rp.rot_dim = bad_rot[i];
        if (rope(&rp, st) != cudaErrorInvalidValue) {
            snprintf(detail, sizeof detail, "rope rot_dim=%d of head_dim=64 was not refused", bad_rot[i]);
            goto out;
        }
    }
    if (reshape_and_cache(d, d, 48, (const int32_t *)d, d, d, KERNEL_KV_F32, 1, 1, 1, 1, 48, 16, st) !=
        cudaErrorInvalidValue) {
        snprintf(detail, sizeof detail, "reshape_and_cache head_dim=48 was not refused");
        goto out;
    }
    if (reshape_and_cache(d, d, 64, (const int32_t *)d, d, d, (enum kernel_kv_dtype)1, 1, 1, 1, 1, 64, 16, st) !=
        cudaErrorInvalidValue) {
        snprintf(detail, sizeof detail, "reshape_and_cache kv dtype 1 (float16) was not refused");
        goto out;
    }
    if (reshape_and_cache(d, d, 64, (const int32_t *)d, d, d, KERNEL_KV_FP8, 0, 1, 1, 1, 64, 16, st) !=
        cudaErrorInvalidValue) {
        snprintf(detail, sizeof detail, "reshape_and_cache fp8 with k_scale 0 was not refused");
        goto out;
    }
    if (reshape_and_cache(d, d, 64, (const int32_t *)d, (char *)d + 2, d, KERNEL_KV_BF16, 1, 1, 1, 1, 64, 16, st) !=
        cudaErrorInvalidValue) {
        snprintf(detail, sizeof detail, "reshape_and_cache into a bf16 cache not 8-byte aligned was not refused");
        goto out;
    }
    if (embed(d, (enum kernel_dtype)7, 1, 1, (const int32_t *)d, 1, d, st) != cudaErrorInvalidValue) {
        snprintf(detail, sizeof detail, "embed dtype=7 was not refused");
        goto out;
    }
    CK(embed(d, KERNEL_F32, 1, 64, (const int32_t *)d, 0, d, st));
    CK(gather_rows(d, (const int32_t *)d, 0, 64, d, st));
    rp.rot_dim = 64;
    rp.T = 0;
    CK(rope(&rp, st));
    CK(reshape_and_cache(d, d, 64, (const int32_t *)d, d, d, KERNEL_KV_BF16, 1, 1, 0, 1, 64, 16, st));
    CK(copy_blocks(d, 2, 64, 64, (const int32_t *)d, 0, st));
    CK(cudaStreamSynchronize(st));
    check_guard("buffer", d, 0, 256, detail, sizeof detail);
out:
    cudaFree(d);
    report("ops: unsupported sizes refused, empty shapes no-op", detail[0] ? detail : NULL, -1.0);
}

void gpu_tests_ops(struct backend *cpu, cudaStream_t st) {
    static const enum folio_dtype dts[] = {FOLIO_F32, FOLIO_F16, FOLIO_BF16};
    static const int hds[] = {8, 16, 32, 64, 80, 96, 128, 256};
    for (int i = 0; i < 3; i++) {
        test_embed(cpu, st, dts[i], 1000, 64, 1);
        test_embed(cpu, st, dts[i], 1000, 100, 7);
        test_embed(cpu, st, dts[i], 32000, 576, 300);
    }
    test_gather_rows(cpu, st, 10, 64, 1);
    test_gather_rows(cpu, st, 300, 101, 37);
    test_gather_rows(cpu, st, 512, 4096, 64);
    for (size_t i = 0; i < sizeof hds / sizeof hds[0]; i++) {
        test_rope(cpu, st, 1, 4, 4, hds[i], hds[i], 10000.0f, 0, 0, 1.0f);
        test_rope(cpu, st, 37, 8, 2, hds[i], hds[i], 10000.0f, 4096, 0, 1.0f);
        /* Partial rotary: half and a quarter of the head (at least one pair), then LongRoPE. */
        test_rope(cpu, st, 37, 8, 2, hds[i], hds[i] / 2, 10000.0f, 4096, 0, 1.0f);
        test_rope(cpu, st, 5, 4, 2, hds[i], hds[i] / 4 > 2 ? hds[i] / 4 : 2, 10000.0f, 100, 0, 1.0f);
        test_rope(cpu, st, 37, 8, 2, hds[i], hds[i], 10000.0f, 4096, 1, 1.1902380f);
    }
    test_rope(cpu, st, 300, 32, 8, 128, 128, 500000.0f, 131071, 0, 1.0f);
    test_rope(cpu, st, 64, 14, 2, 64, 64, 1000000.0f, 32767, 0, 1.0f);
    /* Phi-3-mini-128k (96 of 96, LongRoPE, its mscale), Phi-4-mini (96 of 128), Phi-2 (32 of
     * 80), and a rot_dim that is not a power of two with everything at once. */
    test_rope(cpu, st, 64, 32, 32, 96, 96, 10000.0f, 131071, 1, 1.1902380f);
    test_rope(cpu, st, 64, 24, 8, 128, 96, 10000.0f, 131071, 1, 1.1902380f);
    test_rope(cpu, st, 33, 32, 32, 80, 32, 10000.0f, 2047, 0, 1.0f);
    test_rope(cpu, st, 7, 6, 2, 256, 200, 10000.0f, 60000, 1, 0.75f);
    /* Every KV dtype; fp8 with scales that take |K|, |V| < 2 to 400 and 250 of e4m3's 448,
     * and with a scale of 1 (values below 2: many subnormals). */
    static const struct {
        enum kernel_kv_dtype kv;
        float ks, vs;
    } kvs[] = {{KERNEL_KV_F32, 1, 1}, {KERNEL_KV_BF16, 1, 1}, {KERNEL_KV_FP8, 0.005f, 0.008f}, {KERNEL_KV_FP8, 1, 1}};
    for (size_t k = 0; k < sizeof kvs / sizeof kvs[0]; k++) {
        for (size_t i = 0; i < sizeof hds / sizeof hds[0]; i++)
            test_reshape_and_cache(cpu, st, 37, 2, hds[i], 16, 64, kvs[k].kv, kvs[k].ks, kvs[k].vs);
        test_reshape_and_cache(cpu, st, 1, 1, 8, 16, 4, kvs[k].kv, kvs[k].ks, kvs[k].vs);
        test_reshape_and_cache(cpu, st, 300, 8, 128, 32, 64, kvs[k].kv, kvs[k].ks, kvs[k].vs);
        test_reshape_and_cache(cpu, st, 513, 4, 64, 8, 128, kvs[k].kv, kvs[k].ks, kvs[k].vs);
    }
    test_copy_blocks(cpu, st, 2, 8, 4 * 16 * 2 * 8, 1);          /* fp32 blocks: 16-byte words */
    test_copy_blocks(cpu, st, 8, 64, 4 * 16 * 8 * 128, 20);
    test_copy_blocks(cpu, st, 8, 64, 2 * 16 * 8 * 128, 20);      /* bf16 */
    test_copy_blocks(cpu, st, 6, 40, 16 * 2 * 8, 9);             /* fp8 */
    test_copy_blocks(cpu, st, 4, 32, 4 * (2 * 8 * 8 + 3), 7);    /* 4-byte words */
    test_copy_blocks(cpu, st, 4, 32, 2 * 8 * 8 + 3, 7);          /* odd bytes: one at a time */
    test_ops_edges(st);
}
