/* gpu-tests cases for paged_attention against the CPU backend's attention op (sliding
 * windows and Gemma 2's score soft cap included), and the decode bandwidth benchmark
 * (gpu-tests --bench).
 *
 * A case is a batch of sequences, each with a context of ctx[i] cached positions whose last
 * qlen[i] positions are this step's query tokens (qlen 1: a decode; qlen < ctx: a prefill
 * chunk that starts mid-sequence). Block tables point at a random permutation of the physical
 * blocks, so no sequence is contiguous, and unused table entries hold -1. The caches are
 * random everywhere, the output is poisoned (NaN) beforehand, and the output and split-K
 * workspace carry NaN guards past their ends. A bf16 or fp8 case stores the same random
 * caches in that dtype (fp8 through the layer's scales) and gives both backends those bytes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/quant.h"
#include "gpu_test.h"

#define MAX_SEQS 64

struct attn_case {
    int nseq;
    int ctx[MAX_SEQS], qlen[MAX_SEQS];
    int nh, nkv, hd, bs, window;
    int max_splits; /* 0: as the launcher chooses (with a workspace); 1: never split */
    float scale;    /* on q.k; 0: 1/sqrt(hd) */
    float softcap;  /* > 0: Gemma 2's soft cap on the scores */
    enum kernel_kv_dtype kv; /* the caches' dtype (F32 by default) */
    float ks, vs;   /* fp8: the layer's k_scale and v_scale */
};

/* The float cache x [n] stored in dtype kv (fp8: x / scale), in place: the first n * es bytes. */
static void narrow_cache(float *x, size_t n, enum kernel_kv_dtype kv, float scale) {
    for (size_t i = 0; i < n; i++) { /* front to back: element i's bytes lie at or before float i */
        const float f = x[i];
        if (kv == KERNEL_KV_BF16) ((uint16_t *)x)[i] = folio_f32_to_bf16(f);
        else if (kv == KERNEL_KV_FP8) ((uint8_t *)x)[i] = quant_f32_to_e4m3(f / scale);
    }
}

static void test_attention(struct backend *cpu, cudaStream_t st, const struct attn_case *c, const char *what) {
    char name[256], detail[256];
    int T = 0, nblk = 0, maxb = 0, maxctx = 0;
    for (int i = 0; i < c->nseq; i++) {
        int b = (c->ctx[i] + c->bs - 1) / c->bs;
        T += c->qlen[i];
        nblk += b;
        if (b > maxb) maxb = b;
        if (c->ctx[i] > maxctx) maxctx = c->ctx[i];
    }
    const int num_blocks = nblk + 3, mb = maxb + 2; /* spare blocks and table slots */
    const size_t nq = (size_t)T * c->nh * c->hd, nc = (size_t)num_blocks * c->nkv * c->bs * c->hd;
    const size_t g = (size_t)c->nh * c->hd;
    const float scale = c->scale > 0.0f ? c->scale : 1.0f / sqrtf((float)c->hd);
    double err = 0.0;
    float *h_q = malloc(sizeof(float) * nq), *h_out = malloc(sizeof(float) * nq); /* [T, nh, hd] */
    float *g_out = malloc(sizeof(float) * nq);
    float *h_kc = malloc(sizeof(float) * nc), *h_vc = malloc(sizeof(float) * nc); /* [blocks, nkv, bs, hd] */
    int32_t *h_bt = malloc(sizeof(int32_t) * c->nseq * mb);                        /* [nseq, mb] */
    int32_t *h_seq = malloc(sizeof(int32_t) * T), *h_pos = malloc(sizeof(int32_t) * T); /* [T] */
    int32_t *perm = malloc(sizeof(int32_t) * num_blocks);
    float *d_q = NULL, *d_out = NULL, *d_kc = NULL, *d_vc = NULL, *d_ws = NULL;
    int32_t *d_bt = NULL, *d_seq = NULL, *d_pos = NULL;
    size_t ws_floats = 0;
    int splits = 1;
    detail[0] = '\0';
    if (!h_q || !h_out || !g_out || !h_kc || !h_vc || !h_bt || !h_seq || !h_pos || !perm) {
        snprintf(detail, sizeof detail, "out of host memory");
        goto out;
    }
    fill(h_q, nq, -2.0f, 2.0f);
    fill(h_kc, nc, -1.0f, 1.0f);
    fill(h_vc, nc, -1.0f, 1.0f);
    narrow_cache(h_kc, nc, c->kv, c->ks);
    narrow_cache(h_vc, nc, c->kv, c->vs);
    for (int i = 0; i < num_blocks; i++) perm[i] = i;
    for (int i = num_blocks - 1; i > 0; i--) {
        int j = irand(i + 1), x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    for (int i = 0, used = 0, t = 0; i < c->nseq; i++) {
        int b = (c->ctx[i] + c->bs - 1) / c->bs;
        for (int j = 0; j < mb; j++) h_bt[i * mb + j] = j < b ? perm[used + j] : -1;
        used += b;
        for (int j = 0; j < c->qlen[i]; j++, t++) {
            h_seq[t] = i;
            h_pos[t] = c->ctx[i] - c->qlen[i] + j;
        }
    }

    CK(dev_alloc(&d_q, nq, 0));
    CK(cudaMemcpy(d_q, h_q, sizeof(float) * nq, cudaMemcpyHostToDevice));
    CK(dev_alloc(&d_out, nq, g));
    CK(dev_alloc(&d_kc, nc, 0));
    CK(dev_alloc(&d_vc, nc, 0));
    CK(cudaMemcpy(d_kc, h_kc, sizeof(float) * nc, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_vc, h_vc, sizeof(float) * nc, cudaMemcpyHostToDevice));
    CK(dev_alloc_i32(&d_bt, (size_t)c->nseq * mb, 0));
    CK(cudaMemcpy(d_bt, h_bt, sizeof(int32_t) * c->nseq * mb, cudaMemcpyHostToDevice));
    CK(dev_alloc_i32(&d_seq, (size_t)T, 0));
    CK(cudaMemcpy(d_seq, h_seq, sizeof(int32_t) * T, cudaMemcpyHostToDevice));
    CK(dev_alloc_i32(&d_pos, (size_t)T, 0));
    CK(cudaMemcpy(d_pos, h_pos, sizeof(int32_t) * T, cudaMemcpyHostToDevice));
    ws_floats = paged_attention_workspace_size(T, c->nh, c->nkv, c->hd) / sizeof(float);
    if (ws_floats) CK(dev_alloc(&d_ws, ws_floats, 64));

    struct paged_attention_params p = {
        .q = d_q, .k_cache = d_kc, .v_cache = d_vc, .kv_dtype = c->kv, .k_scale = c->ks, .v_scale = c->vs,
        .block_tables = d_bt, .seq_idx = d_seq, .positions = d_pos,
        .out = d_out, .num_tokens = T, .num_heads = c->nh, .num_kv_heads = c->nkv, .head_dim = c->hd,
        .block_size = c->bs, .max_blocks_per_seq = mb, .sliding_window = c->window, .scale = scale,
        .softcap = c->softcap, .max_context = maxctx, .max_splits = c->max_splits, .workspace = d_ws,
        .workspace_bytes = ws_floats * sizeof(float)
    };
    splits = paged_attention_splits(&p);
    CK(paged_attention(&p, st));
    CK(cudaStreamSynchronize(st));
    struct backend_attention_args a = {
        .q = h_q, .k_cache = h_kc, .v_cache = h_vc, .kv_dtype = (enum folio_dtype)c->kv, .k_scale = c->ks,
        .v_scale = c->vs, .block_tables = h_bt, .seq_idx = h_seq, .positions = h_pos,
        .out = h_out, .num_tokens = T, .num_heads = c->nh, .num_kv_heads = c->nkv, .head_dim = c->hd,
        .block_size = c->bs, .max_blocks_per_seq = mb, .sliding_window = c->window, .scale = scale,
        .softcap = c->softcap,
    };
    cpu->iface->attention(cpu, &a);
    CK(cudaMemcpy(g_out, d_out, sizeof(float) * nq, cudaMemcpyDeviceToHost));
    if (compare("out", g_out, h_out, nq, &err, detail, sizeof detail)) goto out;
    if (check_guard("out", d_out, nq, g, detail, sizeof detail)) goto out;
    if (ws_floats) check_guard("workspace", d_ws, ws_floats, 64, detail, sizeof detail);
out:
    snprintf(name, sizeof name,
             "paged_attention %s: seqs=%d T=%d max_ctx=%d nh=%d nkv=%d head_dim=%d block=%d window=%d splits=%d"
             " scale=%.4g softcap=%g%s%s",
             what, c->nseq, T, maxctx, c->nh, c->nkv, c->hd, c->bs, c->window, splits, (double)scale,
             (double)c->softcap, c->kv ? " kv=" : "", c->kv ? folio_dtype_name((enum folio_dtype)c->kv) : "");
    cudaFree(d_q);
    cudaFree(d_out);
    cudaFree(d_kc);
    cudaFree(d_vc);
    cudaFree(d_ws);
    cudaFree(d_bt);
    cudaFree(d_seq);
    cudaFree(d_pos);
    free(h_q);
    free(h_out);
    free(g_out);
    free(h_kc);
    free(h_vc);
    free(h_bt);
    free(h_seq);
    free(h_pos);
    free(perm);
    report(name, detail[0] ? detail : NULL, err);
}

/* Two decodes: one with context ctx, one shorter. */
static struct attn_case decode2(int ctx, int nh, int nkv, int hd, int bs, int window) {
    struct attn_case c = {.nseq = 2, .nh = nh, .nkv = nkv, .hd = hd, .bs = bs, .window = window};
    c.ctx[0] = ctx;
    c.ctx[1] = ctx / 2 + 3;
    c.qlen[0] = c.qlen[1] = 1;
    return c;
}

/* Decodes and prefill chunks in one batch: long decode, a chunk starting mid-sequence, a
 * whole short prompt, a decode at position 0, a longer chunk. */
static struct attn_case mixed(int nh, int nkv, int hd, int bs, int window) {
    struct attn_case c = {.nseq = 5, .nh = nh, .nkv = nkv, .hd = hd, .bs = bs, .window = window};
    static const int ctx[] = {2048, 300, 64, 1, 1000}, ql[] = {1, 37, 64, 1, 128};
    for (int i = 0; i < 5; i++) {
        c.ctx[i] = ctx[i];
        c.qlen[i] = ql[i];
    }
    return c;
}

static void test_attention_edges(cudaStream_t st) {
    char detail[256];
    float *d = NULL; /* [0] + guard of 256 */
    detail[0] = '\0';
    CK(dev_alloc(&d, 0, 256));
    struct paged_attention_params p = {
        .q = d, .k_cache = d, .v_cache = d, .block_tables = (const int32_t *)d, .seq_idx = (const int32_t *)d,
        .positions = (const int32_t *)d, .out = d, .num_tokens = 1, .num_heads = 4, .num_kv_heads = 2,
        .head_dim = 48, .block_size = 16, .max_blocks_per_seq = 1, .scale = 1.0f,
    };
    if (paged_attention(&p, st) != cudaErrorInvalidValue) {
        snprintf(detail, sizeof detail, "head_dim=48 was not refused");
        goto out;
    }
    p.head_dim = 64;
    p.block_size = 0;
    if (paged_attention(&p, st) != cudaErrorInvalidValue) {
        snprintf(detail, sizeof detail, "block_size=0 was not refused");
        goto out;
    }
    p.block_size = 16;
    p.num_heads = 5;
    if (paged_attention(&p, st) != cudaErrorInvalidValue) {
        snprintf(detail, sizeof detail, "num_heads=5 over num_kv_heads=2 was not refused");
        goto out;
    }
    p.num_heads = 4;
    p.kv_dtype = (enum kernel_kv_dtype)1;
    if (paged_attention(&p, st) != cudaErrorInvalidValue) {
        snprintf(detail, sizeof detail, "kv dtype 1 (float16) was not refused");
        goto out;
    }
    p.kv_dtype = KERNEL_KV_FP8;
    p.k_scale = 0.0f;
    p.v_scale = 1.0f;
    if (paged_attention(&p, st) != cudaErrorInvalidValue) {
        snprintf(detail, sizeof detail, "fp8 with k_scale 0 was not refused");
        goto out;
    }
    p.kv_dtype = KERNEL_KV_BF16;
    p.k_cache = (const char *)d + 4;
    if (paged_attention(&p, st) != cudaErrorInvalidValue) {
        snprintf(detail, sizeof detail, "a bf16 cache not 8-byte aligned was not refused");
        goto out;
    }
    p.k_cache = d;
    p.num_tokens = 0;
    CK(paged_attention(&p, st));
    CK(cudaStreamSynchronize(st));
    check_guard("buffer", d, 0, 256, detail, sizeof detail);
out:
    cudaFree(d);
    report("paged_attention: unsupported sizes refused, T=0 no-op", detail[0] ? detail : NULL, -1.0);
}

void gpu_tests_attention(struct backend *cpu, cudaStream_t st) {
    static const int ctxs[] = {1, 15, 16, 17, 1000, 2048, 4096};
    static const int groups[] = {1, 2, 4, 8};
    struct attn_case c;
    /* Decode over every context length and GQA ratio (split-K from 1000 on). */
    for (size_t i = 0; i < sizeof ctxs / sizeof ctxs[0]; i++)
        for (size_t j = 0; j < sizeof groups / sizeof groups[0]; j++) {
            c = decode2(ctxs[i], 2 * groups[j], 2, 128, 16, 0);
            test_attention(cpu, st, &c, "decode");
        }
    /* Head dims x block sizes x windows. */
    static const int hds[] = {8, 64, 128}, bss[] = {16, 32}, wins[] = {0, 100, 7}, cs[] = {17, 1000, 4096};
    for (size_t h = 0; h < 3; h++)
        for (size_t b = 0; b < 2; b++)
            for (size_t w = 0; w < 3; w++)
                for (size_t k = 0; k < 3; k++) {
                    c = decode2(cs[k], 8, 2, hds[h], bss[b], wins[w]);
                    test_attention(cpu, st, &c, "decode");
                }
    /* The same long contexts without split-K. */
    c = decode2(4096, 8, 2, 128, 16, 0);
    c.max_splits = 1;
    test_attention(cpu, st, &c, "decode no-split");
    c = decode2(4096, 4, 4, 8, 32, 0);
    c.max_splits = 1;
    test_attention(cpu, st, &c, "decode no-split");
    c = decode2(4096, 8, 2, 64, 16, 1000);
    c.max_splits = 3;
    test_attention(cpu, st, &c, "decode 3 splits");
    /* The other instantiated head dims and block sizes. */
    static const int more_hd[] = {16, 32, 80, 96, 256};
    for (size_t h = 0; h < sizeof more_hd / sizeof more_hd[0]; h++) {
        c = decode2(1000, 8, 2, more_hd[h], 16, 0);
        test_attention(cpu, st, &c, "decode");
        c = mixed(8, 2, more_hd[h], 16, 0);
        test_attention(cpu, st, &c, "mixed");
    }
    static const int more_bs[] = {8, 64, 128};
    for (size_t b = 0; b < sizeof more_bs / sizeof more_bs[0]; b++) {
        c = decode2(1000, 8, 2, 64, more_bs[b], 0);
        test_attention(cpu, st, &c, "decode");
        c = mixed(4, 4, 8, more_bs[b], 50);
        test_attention(cpu, st, &c, "mixed");
    }
    /* Groups larger than one CTA's GMAX heads, and odd groups. */
    c = decode2(2048, 32, 2, 64, 16, 0);
    test_attention(cpu, st, &c, "decode group=16");
    c = decode2(300, 24, 2, 128, 16, 0);
    test_attention(cpu, st, &c, "decode group=12");
    c = mixed(14, 2, 64, 16, 0);
    test_attention(cpu, st, &c, "mixed group=7");
    /* Prefill chunks mixed with decodes. */
    for (size_t h = 0; h < 3; h++)
        for (size_t j = 0; j < sizeof groups / sizeof groups[0]; j++)
            for (int w = 0; w <= 1; w++) {
                c = mixed(2 * groups[j], 2, hds[h], 16 << (j & 1), w ? 100 : 0);
                test_attention(cpu, st, &c, "mixed");
            }
    /* A whole prompt of 512 tokens, one sequence. */
    c = (struct attn_case){.nseq = 1, .ctx = {512}, .qlen = {512}, .nh = 8, .nkv = 2, .hd = 128, .bs = 16};
    test_attention(cpu, st, &c, "prefill");
    /* Batch 64 x context 2048. */
    c = (struct attn_case){.nseq = 64, .nh = 8, .nkv = 2, .hd = 128, .bs = 16};
    for (int i = 0; i < 64; i++) {
        c.ctx[i] = 2048;
        c.qlen[i] = 1;
    }
    test_attention(cpu, st, &c, "decode batch 64");
    /* Block sizes that are not powers of two, and the smallest ones (a division, not a shift). */
    static const int odd_bs[] = {1, 2, 3, 4, 24};
    for (size_t b = 0; b < sizeof odd_bs / sizeof odd_bs[0]; b++) {
        c = decode2(1000, 8, 2, 128, odd_bs[b], 0);
        test_attention(cpu, st, &c, "decode");
        c = mixed(8, 2, 64, odd_bs[b], b == 2 ? 100 : 0);
        test_attention(cpu, st, &c, "mixed");
    }
    /* Gemma 2's soft cap: 50 on scores of scale 1/8 (it bends the largest by ~1e-3, well past
     * the tolerance; a larger scale would amplify the dot products' rounding past it) and 1
     * on the usual scale (it saturates), on decodes with and without split-K, windows, and
     * prefill chunks. */
    static const float caps[][2] = {{50.0f, 0.125f}, {1.0f, 0.0f}};
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        static const int cap_ctx[] = {17, 1000, 4096}, cap_win[] = {0, 100, 7};
        for (size_t i = 0; i < 3; i++)
            for (size_t w = 0; w < 3; w++) {
                c = decode2(cap_ctx[i], 8, 4, 256, 16, cap_win[w]);
                c.softcap = caps[k][0];
                c.scale = caps[k][1];
                test_attention(cpu, st, &c, "decode softcap");
            }
        c = decode2(4096, 8, 2, 128, 16, 0);
        c.softcap = caps[k][0];
        c.scale = caps[k][1];
        c.max_splits = 1;
        test_attention(cpu, st, &c, "decode softcap no-split");
        c.max_splits = 3;
        c.window = 1000;
        test_attention(cpu, st, &c, "decode softcap 3 splits");
        for (int w = 0; w <= 1; w++) {
            c = mixed(8, 4, 256, 16, w ? 100 : 0);
            c.softcap = caps[k][0];
            c.scale = caps[k][1];
            test_attention(cpu, st, &c, "mixed softcap");
        }
        c = (struct attn_case){.nseq = 1, .ctx = {512}, .qlen = {512}, .nh = 8, .nkv = 2, .hd = 128, .bs = 16,
                               .window = 64, .scale = caps[k][1], .softcap = caps[k][0]};
        test_attention(cpu, st, &c, "prefill softcap");
    }
    /* bf16 and fp8 caches: decodes with and without split-K, every head dim, windows, odd
     * block sizes, groups past GMAX, prefill chunks, the soft cap. fp8's scales take the
     * caches' |x| < 1 to 250 and 333 of e4m3's 448; a scale of 1 leaves them small (e4m3's
     * subnormals). */
    static const struct {
        enum kernel_kv_dtype kv;
        float ks, vs;
    } kvs[] = {{KERNEL_KV_BF16, 1, 1}, {KERNEL_KV_FP8, 0.004f, 0.003f}, {KERNEL_KV_FP8, 1, 1}};
    for (size_t k = 0; k < sizeof kvs / sizeof kvs[0]; k++) {
#define KV_CASE(expr, what)                                                                                        \
    do {                                                                                                           \
        c = expr;                                                                                                  \
        c.kv = kvs[k].kv;                                                                                          \
        c.ks = kvs[k].ks;                                                                                          \
        c.vs = kvs[k].vs;                                                                                          \
        test_attention(cpu, st, &c, what);                                                                         \
    } while (0)
        static const int kv_ctx[] = {1, 17, 1000, 4096};
        for (size_t i = 0; i < sizeof kv_ctx / sizeof kv_ctx[0]; i++)
            KV_CASE(decode2(kv_ctx[i], 8, 2, 128, 16, 0), "decode");
        static const int all_hd[] = {8, 16, 32, 64, 80, 96, 128, 256};
        for (size_t h = 0; h < sizeof all_hd / sizeof all_hd[0]; h++) {
            KV_CASE(decode2(1000, 8, 2, all_hd[h], 16, 0), "decode");
            KV_CASE(mixed(8, 2, all_hd[h], 16, all_hd[h] == 64 ? 100 : 0), "mixed");
        }
        KV_CASE(decode2(4096, 8, 2, 64, 16, 7), "decode window");
        KV_CASE(decode2(1000, 8, 2, 128, 3, 0), "decode");
        KV_CASE(mixed(8, 2, 64, 24, 100), "mixed");
        KV_CASE(decode2(2048, 32, 2, 64, 16, 0), "decode group=16");
        KV_CASE(((struct attn_case){.nseq = 1, .ctx = {512}, .qlen = {512}, .nh = 8, .nkv = 2, .hd = 128, .bs = 16}),
                "prefill");
        c = decode2(4096, 8, 2, 128, 16, 0);
        c.max_splits = 1;
        KV_CASE(c, "decode no-split");
        c = decode2(1000, 8, 4, 256, 16, 100);
        c.softcap = 50.0f;
        c.scale = 0.125f;
        KV_CASE(c, "decode softcap");
#undef KV_CASE
    }
    test_attention_edges(st);
}

/* ---- gpu-tests --bench: decode paged_attention bandwidth against a device memcpy ---- */

/* Average milliseconds of one paged_attention over reps, after a warm-up. */
static int time_attention(const struct paged_attention_params *p, cudaStream_t st, int reps, float *ms) {
    cudaEvent_t e0 = NULL, e1 = NULL;
    int rc = -1;
    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) goto out;
    for (int i = 0; i < 3; i++)
        if (paged_attention(p, st) != cudaSuccess) goto out;
    if (cudaEventRecord(e0, st) != cudaSuccess) goto out;
    for (int i = 0; i < reps; i++)
        if (paged_attention(p, st) != cudaSuccess) goto out;
    if (cudaEventRecord(e1, st) != cudaSuccess || cudaEventSynchronize(e1) != cudaSuccess) goto out;
    if (cudaEventElapsedTime(ms, e0, e1) != cudaSuccess) goto out;
    *ms /= reps;
    rc = 0;
out:
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    return rc;
}

/* One decode configuration: batch sequences of context ctx, the caches in kv. Returns GB/s
 * of K/V read, or < 0. */
static double bench_decode(cudaStream_t st, int batch, int ctx, int nh, int nkv, int hd, int bs, int max_splits,
                           enum kernel_kv_dtype kv, int *splits_out, double *ms_out) {
    const int mb = (ctx + bs - 1) / bs, num_blocks = batch * mb;
    const size_t es = kv == KERNEL_KV_F32 ? 4 : kv == KERNEL_KV_BF16 ? 2 : 1;
    const size_t nc = (size_t)num_blocks * nkv * bs * hd * es / sizeof(float), nq = (size_t)batch * nh * hd;
    float *d_kc = NULL, *d_vc = NULL, *d_q = NULL, *d_out = NULL, *d_ws = NULL;
    int32_t *d_bt = NULL, *d_seq = NULL, *d_pos = NULL;
    int32_t *h_bt = malloc(sizeof(int32_t) * num_blocks), *h_seq = malloc(sizeof(int32_t) * batch);
    int32_t *h_pos = malloc(sizeof(int32_t) * batch);
    double gbs = -1.0;
    float ms = 0.0f;
    size_t ws = paged_attention_workspace_size(batch, nh, nkv, hd);
    if (!h_bt || !h_seq || !h_pos) goto out;
    for (int i = 0; i < num_blocks; i++) h_bt[i] = i;
    for (int i = num_blocks - 1; i > 0; i--) { /* scattered blocks */
        int j = irand(i + 1), x = h_bt[i];
        h_bt[i] = h_bt[j];
        h_bt[j] = x;
    }
    for (int i = 0; i < batch; i++) {
        h_seq[i] = i;
        h_pos[i] = ctx - 1;
    }
    if (cudaMalloc((void **)&d_kc, nc * sizeof(float)) != cudaSuccess ||
        cudaMalloc((void **)&d_vc, nc * sizeof(float)) != cudaSuccess ||
        cudaMalloc((void **)&d_q, nq * sizeof(float)) != cudaSuccess ||
        cudaMalloc((void **)&d_out, nq * sizeof(float)) != cudaSuccess ||
        (ws && cudaMalloc((void **)&d_ws, ws) != cudaSuccess) ||
        cudaMalloc((void **)&d_bt, sizeof(int32_t) * num_blocks) != cudaSuccess ||
        cudaMalloc((void **)&d_seq, sizeof(int32_t) * batch) != cudaSuccess ||
        cudaMalloc((void **)&d_pos, sizeof(int32_t) * batch) != cudaSuccess)
        goto out;
    /* 0x3c bytes: every float is ~0.0115, a bf16 ~0.0115 and an e4m3 1.5: harmless finite values. */
    if (cudaMemset(d_kc, 0x3c, nc * sizeof(float)) != cudaSuccess ||
        cudaMemset(d_vc, 0x3c, nc * sizeof(float)) != cudaSuccess ||
        cudaMemset(d_q, 0x3c, nq * sizeof(float)) != cudaSuccess ||
        cudaMemcpy(d_bt, h_bt, sizeof(int32_t) * num_blocks, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(d_seq, h_seq, sizeof(int32_t) * batch, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(d_pos, h_pos, sizeof(int32_t) * batch, cudaMemcpyHostToDevice) != cudaSuccess)
        goto out;
    struct paged_attention_params p = {
        .q = d_q, .k_cache = d_kc, .v_cache = d_vc, .kv_dtype = kv, .k_scale = 1.0f, .v_scale = 1.0f,
        .block_tables = d_bt, .seq_idx = d_seq, .positions = d_pos,
        .out = d_out, .num_tokens = batch, .num_heads = nh, .num_kv_heads = nkv, .head_dim = hd, .block_size = bs,
        .max_blocks_per_seq = mb, .scale = 1.0f / sqrtf((float)hd), .max_context = ctx, .max_splits = max_splits,
        .workspace = d_ws, .workspace_bytes = ws
    };
    *splits_out = paged_attention_splits(&p);
    if (time_attention(&p, st, 20, &ms) != 0) goto out;
    *ms_out = ms;
    gbs = 2.0 * (double)batch * ctx * nkv * hd * es / (ms * 1e-3) / 1e9;
out:
    cudaFree(d_kc);
    cudaFree(d_vc);
    cudaFree(d_q);
    cudaFree(d_out);
    cudaFree(d_ws);
    cudaFree(d_bt);
    cudaFree(d_seq);
    cudaFree(d_pos);
    free(h_bt);
    free(h_seq);
    free(h_pos);
    return gbs;
}

int gpu_bench_attention(cudaStream_t st, double *copy_gbs_out) {
    const size_t bytes = (size_t)1 << 30; /* 1 GiB copied */
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    float ms = 0.0f;
    int rc = 1, reps = 10;
    double copy_gbs = 0.0;
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess ||
        cudaMemset(a, 1, bytes) != cudaSuccess || cudaEventCreate(&e0) != cudaSuccess ||
        cudaEventCreate(&e1) != cudaSuccess) {
        fprintf(stderr, "bench: cannot allocate the memcpy buffers\n");
        goto out;
    }
    for (int i = 0; i < 2; i++) cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, st);
    cudaEventRecord(e0, st);
    for (int i = 0; i < reps; i++) cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, st);
    cudaEventRecord(e1, st);
    if (cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) goto out;
    /* A copy reads and writes every byte: count both, as the attention's reads are counted. */
    copy_gbs = 2.0 * (double)bytes * reps / (ms * 1e-3) / 1e9;
    *copy_gbs_out = copy_gbs;
    cudaFree(a);
    cudaFree(b);
    a = b = NULL;

    printf("%-58s %10s %8s %10s %7s\n", "op", "MB/iter", "splits", "us/iter", "GB/s");
    printf("%-58s %10.1f %8s %10.1f %7.0f\n", "cudaMemcpy D2D 1 GiB (read + write)", 2.0 * bytes / 1e6, "-",
           ms * 1e3 / reps, copy_gbs);
    static const struct {
        const char *label;
        int batch, ctx, nh, nkv, hd, bs, max_splits;
        enum kernel_kv_dtype kv;
    } cfg[] = {
        {"paged_attention decode b64 ctx2048 32q/8kv hd128 bs16", 64, 2048, 32, 8, 128, 16, 0, KERNEL_KV_F32},
        /* bf16 and fp8 caches: the same tokens read half and a quarter of the bytes */
        {"paged_attention decode b64 ctx2048 32q/8kv hd128 bf16 KV", 64, 2048, 32, 8, 128, 16, 0, KERNEL_KV_BF16},
        {"paged_attention decode b64 ctx2048 32q/8kv hd128 fp8 KV", 64, 2048, 32, 8, 128, 16, 0, KERNEL_KV_FP8},
        {"paged_attention decode b64 ctx2048 64q/8kv hd128 bs16", 64, 2048, 64, 8, 128, 16, 0, KERNEL_KV_F32},
        {"paged_attention decode b64 ctx2048 32q/8kv hd128 bs32", 64, 2048, 32, 8, 128, 32, 0, KERNEL_KV_F32},
        {"paged_attention decode b64 ctx2048 32q/8kv hd128 bs24", 64, 2048, 32, 8, 128, 24, 0, KERNEL_KV_F32},
        {"paged_attention decode b256 ctx1024 32q/8kv hd128 bs16", 256, 1024, 32, 8, 128, 16, 0, KERNEL_KV_F32},
        {"paged_attention decode b4 ctx16384 32q/8kv hd128 bs16", 4, 16384, 32, 8, 128, 16, 0, KERNEL_KV_F32},
        {"paged_attention decode b4 ctx16384 (no split-K)", 4, 16384, 32, 8, 128, 16, 1, KERNEL_KV_F32},
    };
    double first = 0.0;
    rc = 0;
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        int splits = 1;
        double t_ms = 0.0;
        double gbs = bench_decode(st, cfg[i].batch, cfg[i].ctx, cfg[i].nh, cfg[i].nkv, cfg[i].hd, cfg[i].bs,
                                  cfg[i].max_splits, cfg[i].kv, &splits, &t_ms);
        if (gbs < 0) {
            printf("%-58s failed: %s\n", cfg[i].label, cudaGetErrorString(cudaGetLastError()));
            rc = 1;
            continue;
        }
        if (i == 0) first = gbs;
        const double es = cfg[i].kv == KERNEL_KV_F32 ? 4 : cfg[i].kv == KERNEL_KV_BF16 ? 2 : 1;
        printf("%-58s %10.1f %8d %10.1f %7.0f  (%.0f%% of memcpy)\n", cfg[i].label,
               2.0 * cfg[i].batch * cfg[i].ctx * cfg[i].nkv * cfg[i].hd * es / 1e6, splits, t_ms * 1e3, gbs,
               100.0 * gbs / copy_gbs);
    }
    printf("target: decode b64 ctx2048 at >= 80%% of memcpy bandwidth: %.0f%% %s\n", 100.0 * first / copy_gbs,
           first >= 0.8 * copy_gbs ? "(met)" : "(NOT met)");
out:
    cudaFree(a);
    cudaFree(b);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    return rc;
}
