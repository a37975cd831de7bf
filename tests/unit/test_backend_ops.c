/* The CPU backend's ops for the newer families (partial and LongRoPE, GeGLU, soft-caps, the
 * sparse MoE block) against direct double-precision formulas written from the transformers
 * definitions. The CPU backend is the CUDA backend's oracle, so these pin both. */
#include <math.h>
#include <stdlib.h>

#include "backend/backend.h"
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
