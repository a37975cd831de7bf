/* The CPU backend's ops for the newer families (partial and LongRoPE, GeGLU, soft-caps, the
 * sparse MoE block) against direct double-precision formulas written from the transformers
 * definitions. The CPU backend is the CUDA backend's oracle, so these pin both. */
#include <math.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "base/quant.h"
#include "test.h"

static unsigned rng_state = 777;
static float frand(void) {
    rng_state = rng_state * 1103515245u + 12345u;
    return (float)((rng_state >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static struct backend *cpu(int threads) {
    struct backend *b = NULL;
    if (backend_cpu_create(&(struct backend_cpu_params){threads}, &b)) return NULL;
    return b;
}

/* transformers' rotate_half over the first rot dims of each head, cos/sin times mscale. */
static void rope_ref(const float *in, double *out, int heads, int hd, int rot, int pos, const float *inv, double ms) {
    const int half = rot / 2;
    for (int h = 0; h < heads; h++) {
        const float *x = in + h * hd;
        double *o = out + h * hd;
        for (int i = 0; i < hd; i++) o[i] = x[i];
        for (int i = 0; i < half; i++) {
            const double a = (double)pos * inv[i], c = cos(a) * ms, s = sin(a) * ms;
            o[i] = x[i] * c - x[i + half] * s;
            o[i + half] = x[i + half] * c + x[i] * s;
        }
    }
}

TEST(backend_rope_partial_and_longrope) {
    struct backend *b = cpu(1);
    CHECK(b != NULL);
    enum { T = 5, NH = 3, NKV = 1, HD = 16, ROT = 12 };
    float q[T * NH * HD], k[T * NKV * HD], q0[T * NH * HD], k0[T * NKV * HD], inv[2 * ROT / 2];
    int32_t pos[T] = {0, 1, 7, 4095, 4096}, sel[T] = {0, 0, 1, 0, 1};
    for (int i = 0; i < T * NH * HD; i++) q0[i] = q[i] = frand();
    for (int i = 0; i < T * NKV * HD; i++) k0[i] = k[i] = frand();
    for (int i = 0; i < ROT; i++) inv[i] = (float)(1.0 / pow(10000.0, (2.0 * (i % (ROT / 2))) / ROT) / (1 + i / 6));
    const float ms = 1.19f;
    const struct backend_rope_args a = {.q = q, .k = k, .q_stride = NH * HD, .k_stride = NKV * HD, .positions = pos,
                                        .inv_freq = inv, .long_sel = sel, .T = T, .nh = NH, .nkv = NKV,
                                        .head_dim = HD, .rot_dim = ROT, .mscale = ms};
    backend_rope(b, &a);
    double ref[NH * HD], err = 0;
    for (int t = 0; t < T; t++) {
        const float *tab = inv + (sel[t] ? ROT / 2 : 0);
        rope_ref(q0 + t * NH * HD, ref, NH, HD, ROT, pos[t], tab, ms);
        for (int i = 0; i < NH * HD; i++) err = fmax(err, fabs(ref[i] - q[t * NH * HD + i]));
        rope_ref(k0 + t * NKV * HD, ref, NKV, HD, ROT, pos[t], tab, ms);
        for (int i = 0; i < NKV * HD; i++) err = fmax(err, fabs(ref[i] - k[t * NKV * HD + i]));
        /* the pass-through dims are untouched, bit for bit */
        for (int h = 0; h < NH; h++)
            for (int i = ROT; i < HD; i++) CHECK(q[t * NH * HD + h * HD + i] == q0[t * NH * HD + h * HD + i]);
    }
    CHECK(err < 1e-5);
    backend_free(b);
}

TEST(backend_glu_scale_softcap) {
    struct backend *b = cpu(2);
    CHECK(b != NULL);
    enum { N = 10007 };
    float *g = malloc(sizeof(float) * N), *u = malloc(sizeof(float) * N), *o = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) {
        g[i] = 6 * frand();
        u[i] = frand();
    }
    backend_glu(b, BACKEND_ACT_GELU_TANH, g, u, o, 1, N);
    double err = 0;
    for (int i = 0; i < N; i++) {
        const double x = g[i], ref = 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))) * u[i];
        err = fmax(err, fabs(ref - o[i]));
    }
    CHECK(err < 1e-5);
    backend_glu(b, BACKEND_ACT_SILU, g, u, o, 1, N);
    err = 0;
    for (int i = 0; i < N; i++) err = fmax(err, fabs(g[i] / (1 + exp(-(double)g[i])) * u[i] - o[i]));
    CHECK(err < 1e-5);
    for (int i = 0; i < N; i++) o[i] = 200 * g[i];
    backend_softcap(b, o, N, 30.0f);
    err = 0;
    for (int i = 0; i < N; i++) {
        CHECK(fabsf(o[i]) <= 30.0f);
        err = fmax(err, fabs(30.0 * tanh(200.0 * g[i] / 30.0) - o[i]));
    }
    CHECK(err < 1e-4);
    memcpy(o, g, sizeof(float) * N);
    backend_scale(b, o, N, 48.0f);
    for (int i = 0; i < N; i++) CHECK(o[i] == g[i] * 48.0f);
    free(g);
    free(u);
    free(o);
    backend_free(b);
}

/* The MoE block in double, straight from MixtralSparseMoeBlock / Qwen3MoeSparseMoeBlock. */
static void moe_ref(const float *x, const float *logits, const float *wg, const float *wu, const float *wd, int T,
                    int H, int I, int E, int K, int norm, double *out) {
    double *h = malloc(sizeof(double) * I);
    for (int t = 0; t < T; t++) {
        double p[64], mx = -1e300, z = 0;
        int taken[64] = {0};
        for (int e = 0; e < E; e++) mx = fmax(mx, logits[t * E + e]);
        for (int e = 0; e < E; e++) z += (p[e] = exp(logits[t * E + e] - mx));
        int ids[8];
        double w[8], kept = 0;
        for (int j = 0; j < K; j++) {
            int best = -1;
            for (int e = 0; e < E; e++)
                if (!taken[e] && (best < 0 || p[e] > p[best])) best = e;
            taken[best] = 1;
            ids[j] = best;
            kept += (w[j] = p[best] / z);
        }
        for (int i = 0; i < H; i++) out[t * H + i] = 0;
        for (int j = 0; j < K; j++) {
            const int e = ids[j];
            const double wj = norm ? w[j] / kept : w[j];
            for (int r = 0; r < I; r++) {
                double a = 0, c = 0;
                for (int i = 0; i < H; i++) {
                    a += (double)wg[((size_t)e * I + r) * H + i] * x[t * H + i];
                    c += (double)wu[((size_t)e * I + r) * H + i] * x[t * H + i];
                }
                h[r] = a / (1 + exp(-a)) * c;
            }
            for (int i = 0; i < H; i++) {
                double s = 0;
                for (int r = 0; r < I; r++) s += (double)wd[((size_t)e * H + i) * I + r] * h[r];
                out[t * H + i] += wj * s;
            }
        }
    }
    free(h);
}

static void check_moe(int T, int H, int I, int E, int K, int norm, int threads) {
    struct backend *b = cpu(threads);
    CHECK(b != NULL);
    float *x = malloc(sizeof(float) * T * H), *lg = malloc(sizeof(float) * T * E), *out = malloc(sizeof(float) * T * H);
    float *wg = malloc(sizeof(float) * E * I * H), *wu = malloc(sizeof(float) * E * I * H),
          *wd = malloc(sizeof(float) * E * H * I);
    double *ref = malloc(sizeof(double) * T * H);
    for (int i = 0; i < T * H; i++) x[i] = frand();
    for (int i = 0; i < T * E; i++) lg[i] = 4 * frand();
    for (int i = 0; i < E * I * H; i++) {
        wg[i] = frand();
        wu[i] = frand();
        wd[i] = frand();
    }
    struct backend_weight g, u, d;
    CHECK_EQ_INT(backend_load_weight(b, wg, FOLIO_F32, (int64_t)E * I, H, FOLIO_F32, &g), 0);
    CHECK_EQ_INT(backend_load_weight(b, wu, FOLIO_F32, (int64_t)E * I, H, FOLIO_F32, &u), 0);
    CHECK_EQ_INT(backend_load_weight(b, wd, FOLIO_F32, (int64_t)E * H, I, FOLIO_F32, &d), 0);
    /* Buffers for 4-token chunks: a batch of T tokens runs in several. */
    const struct backend_reserve_args r = {.max_tokens = 4, .max_cols = I, .num_heads = 1, .num_kv_heads = 1,
                                           .head_dim = 2, .moe_pairs = 4 * K, .moe_hidden = H, .moe_inter = I,
                                           .moe_experts = E};
    CHECK_EQ_INT(backend_reserve(b, &r), 0);
    const struct backend_moe_args a = {.x = x, .router_logits = lg, .gate = &g, .up = &u, .down = &d, .out = out,
                                       .T = T, .hidden = H, .inter = I, .num_experts = E, .top_k = K,
                                       .norm_topk_prob = norm, .act = BACKEND_ACT_SILU};
    backend_moe(b, &a);
    moe_ref(x, lg, wg, wu, wd, T, H, I, E, K, norm, ref);
    double err = 0, scale = 0;
    for (int i = 0; i < T * H; i++) {
        err = fmax(err, fabs(ref[i] - out[i]));
        scale = fmax(scale, fabs(ref[i]));
    }
    if (!(err <= 1e-5 * scale + 1e-6))
        test_fail(__FILE__, __LINE__, "moe T=%d E=%d K=%d norm=%d: max err %g of %g", T, E, K, norm, err, scale);
    /* Each token alone gives its row of the batch, bit for bit. */
    for (int t = 0; t < T; t++) {
        float one[64];
        struct backend_moe_args a1 = a;
        a1.x = x + t * H;
        a1.router_logits = lg + t * E;
        a1.out = one;
        a1.T = 1;
        backend_moe(b, &a1);
        CHECK(memcmp(one, out + t * H, sizeof(float) * H) == 0);
    }
    backend_free_weight(b, &g);
    backend_free_weight(b, &u);
    backend_free_weight(b, &d);
    free(x);
    free(lg);
    free(out);
    free(wg);
    free(wu);
    free(wd);
    free(ref);
    backend_free(b);
}

TEST(backend_moe_matches_the_definition) {
    check_moe(1, 24, 40, 4, 1, 1, 1);
    check_moe(7, 24, 40, 8, 2, 1, 2);
    check_moe(9, 33, 17, 8, 3, 0, 2);
    check_moe(13, 64, 48, 16, 4, 1, 2);
}

/* ---- KV cache dtypes (--kv-cache-dtype) ---- */

/* The element of a cache of dtype dt that x is stored as, widened back (FP8: x / scale in
 * e4m3, times scale). */
static float kv_round(float x, enum folio_dtype dt, float scale) {
    if (dt == FOLIO_BF16) return folio_bf16_to_f32(folio_f32_to_bf16(x));
    if (dt == FOLIO_FP8) return quant_e4m3_to_f32(quant_f32_to_e4m3(x / scale)) * scale;
    return x;
}

/* A paged batch of three sequences (prefill of every position) over shuffled blocks. */
enum { KV_NS = 3, KV_BS = 4, KV_NH = 4, KV_NKV = 2, KV_MAXB = 24, KV_BLOCKS = 64 };
static const int kv_lens[KV_NS] = {37, 5, 70};

struct kv_case {
    int hd, T;
    float *q, *k, *v;            /* [T, NH * hd], [T, NKV * hd] x2 */
    int32_t tables[KV_NS * KV_MAXB], seq[112], pos[112], slots[112];
};

static void kv_case_init(struct kv_case *c, int hd) {
    memset(c, 0, sizeof *c);
    c->hd = hd;
    int next = 0; /* (7 n + 3) mod 64 is a permutation: each sequence's blocks shuffled, none shared */
    for (int s = 0; s < KV_NS; s++)
        for (int i = 0; i < KV_MAXB; i++)
            c->tables[s * KV_MAXB + i] = i * KV_BS < kv_lens[s] ? (7 * next++ + 3) % KV_BLOCKS : -1;
    for (int s = 0; s < KV_NS; s++)
        for (int p = 0; p < kv_lens[s]; p++, c->T++) {
            c->seq[c->T] = s;
            c->pos[c->T] = p;
            c->slots[c->T] = c->tables[s * KV_MAXB + p / KV_BS] * KV_BS + p % KV_BS;
        }
    c->q = malloc(sizeof(float) * c->T * KV_NH * hd);
    c->k = malloc(sizeof(float) * c->T * KV_NKV * hd);
    c->v = malloc(sizeof(float) * c->T * KV_NKV * hd);
    for (int i = 0; i < c->T * KV_NH * hd; i++) c->q[i] = 2 * frand();
    for (int i = 0; i < c->T * KV_NKV * hd; i++) {
        c->k[i] = 2 * frand();
        c->v[i] = 2 * frand();
    }
}

static void kv_case_free(struct kv_case *c) {
    free(c->q);
    free(c->k);
    free(c->v);
}

/* Writes the case's K/V (or, with round_to, the values they round to in that dtype, into an
 * fp32 cache) and runs attention over rows [t0, t0 + T) as their own batch. */
static void kv_attend(struct backend *b, const struct kv_case *c, enum folio_dtype dt, enum folio_dtype round_to,
                      float ks, float vs, int t0, int T, float *out, void **cache_out) {
    const size_t n = (size_t)KV_BLOCKS * KV_NKV * KV_BS * c->hd, es = folio_dtype_size(dt);
    void *kc = calloc(n, es), *vc = calloc(n, es);
    float *k = malloc(sizeof(float) * c->T * KV_NKV * c->hd), *v = malloc(sizeof(float) * c->T * KV_NKV * c->hd);
    for (int i = 0; i < c->T * KV_NKV * c->hd; i++) {
        k[i] = kv_round(c->k[i], round_to, ks);
        v[i] = kv_round(c->v[i], round_to, vs);
    }
    backend_reshape_and_cache(b, k, v, KV_NKV * c->hd, c->slots, kc, vc, dt, ks, vs, c->T, KV_NKV, c->hd, KV_BS);
    const struct backend_attention_args a = {
        .q = c->q + (size_t)t0 * KV_NH * c->hd, .k_cache = kc, .v_cache = vc, .kv_dtype = dt, .k_scale = ks,
        .v_scale = vs, .block_tables = c->tables, .seq_idx = c->seq + t0, .positions = c->pos + t0, .out = out,
        .num_tokens = T, .num_heads = KV_NH, .num_kv_heads = KV_NKV, .head_dim = c->hd, .block_size = KV_BS,
        .max_blocks_per_seq = KV_MAXB, .scale = 1.0f / sqrtf((float)c->hd)};
    backend_attention(b, &a);
    if (cache_out) {
        cache_out[0] = kc;
        cache_out[1] = vc;
    } else {
        free(kc);
        free(vc);
    }
    free(k);
    free(v);
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *scale) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    if (scale) *scale = s;
    return d;
}

/* bf16 and fp8 KV caches on the CPU: the stored bytes are the rounded K/V (fp8 through the
 * layer's scales); attention over them equals fp32 attention over the rounded values (bf16 bit
 * for bit: the same floats reach the same arithmetic); against the fp32 cache they stay within
 * the dtype's rounding; and a sequence alone gives the rows it gives in the batch, bit for bit. */
TEST(backend_attention_kv_dtypes) {
    struct backend *b = cpu(2);
    CHECK(b != NULL);
    if (!b) return;
    CHECK(backend_supports_kv_dtype(b, FOLIO_F32) && backend_supports_kv_dtype(b, FOLIO_BF16) &&
          backend_supports_kv_dtype(b, FOLIO_FP8));
    CHECK(!backend_supports_kv_dtype(b, FOLIO_F16) && !backend_supports_kv_dtype(b, FOLIO_Q8));
    const int hds[] = {64, 20}; /* 20: the kernels' scalar tails */
    const float ks = 0.01f, vs = 0.005f; /* |K|, |V| < 2 reach 200 and 400 of e4m3's 448 */
    for (size_t h = 0; h < sizeof hds / sizeof hds[0]; h++) {
        struct kv_case c;
        kv_case_init(&c, hds[h]);
        const int hd = c.hd;
        const size_t no = (size_t)c.T * KV_NH * hd;
        float *o32 = malloc(sizeof(float) * no), *o16 = malloc(sizeof(float) * no), *o8 = malloc(sizeof(float) * no);
        float *r16 = malloc(sizeof(float) * no), *r8 = malloc(sizeof(float) * no), *alone = malloc(sizeof(float) * no);
        void *c16[2], *c8[2];
        kv_attend(b, &c, FOLIO_F32, FOLIO_F32, 1, 1, 0, c.T, o32, NULL);
        kv_attend(b, &c, FOLIO_BF16, FOLIO_F32, 1, 1, 0, c.T, o16, c16);
        kv_attend(b, &c, FOLIO_FP8, FOLIO_F32, ks, vs, 0, c.T, o8, c8);
        kv_attend(b, &c, FOLIO_F32, FOLIO_BF16, 1, 1, 0, c.T, r16, NULL);
        kv_attend(b, &c, FOLIO_F32, FOLIO_FP8, ks, vs, 0, c.T, r8, NULL);
        /* The bytes reshape_and_cache stored. */
        int bad16 = 0, bad8 = 0;
        for (int t = 0; t < c.T; t++)
            for (int i = 0; i < KV_NKV * hd; i++) {
                const int hh = i / hd, d = i % hd, slot = c.slots[t];
                const size_t at = (((size_t)(slot / KV_BS) * KV_NKV + hh) * KV_BS + slot % KV_BS) * hd + d;
                const float kx = c.k[(size_t)t * KV_NKV * hd + i], vx = c.v[(size_t)t * KV_NKV * hd + i];
                bad16 += ((uint16_t *)c16[0])[at] != folio_f32_to_bf16(kx);
                bad16 += ((uint16_t *)c16[1])[at] != folio_f32_to_bf16(vx);
                bad8 += ((uint8_t *)c8[0])[at] != quant_f32_to_e4m3(kx / ks);
                bad8 += ((uint8_t *)c8[1])[at] != quant_f32_to_e4m3(vx / vs);
            }
        CHECK_EQ_INT(bad16, 0);
        CHECK_EQ_INT(bad8, 0);
        double scale;
        CHECK(memcmp(o16, r16, sizeof(float) * no) == 0);
        const double e8r = max_abs_diff(o8, r8, no, &scale);
        if (!(e8r <= 1e-5 * scale)) test_fail(__FILE__, __LINE__, "hd %d: fp8 vs its rounded fp32: %g", hd, e8r);
        const double e16 = max_abs_diff(o16, o32, no, &scale), e8 = max_abs_diff(o8, o32, no, NULL);
        printf("    head_dim %d: |out| <= %.3f; bf16 KV off fp32 KV by %.2e, fp8 by %.2e\n", hd, scale, e16, e8);
        CHECK(e16 > 0);                /* the bf16 cache was used */
        CHECK(e16 <= 1.6e-2 * scale);  /* bf16 keeps 8 bits: 2^-8 relative per element */
        CHECK(e8 > e16 && e8 <= 0.12 * scale); /* e4m3 keeps 4 bits */
        /* Batch invariance: sequence 1 (rows 37..41) and 2 (42..111) alone. */
        for (int s = 1; s < KV_NS; s++) {
            const int t0 = s == 1 ? kv_lens[0] : kv_lens[0] + kv_lens[1], n = kv_lens[s];
            const size_t off = (size_t)t0 * KV_NH * hd, len = sizeof(float) * n * KV_NH * hd;
            kv_attend(b, &c, FOLIO_BF16, FOLIO_F32, 1, 1, t0, n, alone, NULL);
            CHECK(memcmp(alone, o16 + off, len) == 0);
            kv_attend(b, &c, FOLIO_FP8, FOLIO_F32, ks, vs, t0, n, alone, NULL);
            CHECK(memcmp(alone, o8 + off, len) == 0);
        }
        /* Copy-on-write in bytes: a bf16 block copied whole, and no byte beyond it. */
        const size_t blk = (size_t)KV_NKV * KV_BS * hd * 2, cache = blk * KV_BLOCKS;
        char *pool = malloc(2 * cache);
        memcpy(pool, c16[0], cache);
        memcpy(pool + cache, c16[1], cache);
        const int32_t pairs[4] = {c.tables[0], 60, c.tables[KV_MAXB], 61}; /* two blocks no sequence uses */
        CHECK(c.tables[0] != 60 && c.tables[0] != 61);
        backend_copy_blocks(b, pool, 2, cache, blk, pairs, 2);
        for (int cc = 0; cc < 2; cc++) {
            const char *src = cc ? c16[1] : c16[0], *dst = pool + cc * cache;
            CHECK(memcmp(dst + 60 * blk, src + (size_t)pairs[0] * blk, blk) == 0);
            CHECK(memcmp(dst + 61 * blk, src + (size_t)pairs[2] * blk, blk) == 0);
            CHECK(memcmp(dst, src, 60 * blk) == 0 && memcmp(dst + 62 * blk, src + 62 * blk, 2 * blk) == 0);
        }
        free(pool);
        for (int i = 0; i < 2; i++) {
            free(c16[i]);
            free(c8[i]);
        }
        free(o32);
        free(o16);
        free(o8);
        free(r16);
        free(r8);
        free(alone);
        kv_case_free(&c);
    }
    backend_free(b);
}
