/* gpu-tests cases for the sparse MoE block: the CUDA backend's moe slot (kernels/moe.cu
 * behind reserve's buffers) against the CPU backend's (cpu_moe.c) on the same weights, over
 * batch sizes, expert counts, top_k, the three weight dtypes, norm_topk_prob, both
 * activations, and shapes that are not multiples of the kernels' tiles; then the launcher
 * alone with a workspace too small for the batch (several passes), a CUDA graph replay of
 * the slot (no sync, no allocation inside), and the launcher's refusals.
 *
 * Router logits are a random permutation of the experts per token, spaced 0.5 apart, so the
 * top_k are never a near-tie that fp32 rounding could flip between the two sides. Optionally
 * two experts are never chosen ("idle") and their weights are NaN: any use of an idle
 * expert's rows, or of a wrong expert's, poisons the output. Both sides keep x and the sums
 * in fp32 and widen the same 16-bit weights, so they agree to fp32 rounding; the bound is
 * 1e-4 of the output's scale (max |cpu|). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_test.h"

#define MOE_TOL 1e-4

struct moe_case {
    int T, E, k, hidden, inter;
    enum folio_dtype dt;
    int norm;
    enum backend_act act;
    int idle; /* experts 1 and E - 1 are never routed to, and their weights are NaN */
};

/* Host inputs of one case, shared by the backend and launcher tests. */
struct moe_host {
    float *x;              /* [T, hidden] */
    float *logits;         /* [T, E] */
    float *gate, *up;      /* [E * inter, hidden] fp32 source */
    float *down;           /* [E * hidden, inter] */
    float *out;            /* [T, hidden] the CPU's result */
};

static void moe_host_free(struct moe_host *h) {
    free(h->x);
    free(h->logits);
    free(h->gate);
    free(h->up);
    free(h->down);
    free(h->out);
}

static int is_idle(const struct moe_case *c, int e) { return c->idle && (e == 1 || e == c->E - 1); }

static void case_name(const struct moe_case *c, const char *what, char *name, size_t cap) {
    snprintf(name, cap, "moe %s T=%d E=%d k=%d hidden=%d inter=%d %s norm=%d %s%s", what, c->T, c->E, c->k,
             c->hidden, c->inter, folio_dtype_name(c->dt), c->norm, c->act == BACKEND_ACT_SILU ? "silu" : "gelu_tanh",
             c->idle ? " idle-experts" : "");
}

/* Fills the inputs and runs the CPU backend's moe into h->out. Returns 0 or writes detail. */
static int moe_host_make(struct backend *cpu, const struct moe_case *c, struct moe_host *h, char *detail,
                         size_t cap) {
    const size_t H = (size_t)c->hidden, I = (size_t)c->inter, E = (size_t)c->E, T = (size_t)c->T;
    struct backend_weight wg = {0}, wu = {0}, wd = {0};
    int32_t *perm = malloc(sizeof(int32_t) * E);
    int rc = -1;
    memset(h, 0, sizeof *h);
    h->x = malloc(sizeof(float) * T * H);
    h->logits = malloc(sizeof(float) * T * E);
    h->gate = malloc(sizeof(float) * E * I * H);
    h->up = malloc(sizeof(float) * E * I * H);
    h->down = malloc(sizeof(float) * E * H * I);
    h->out = malloc(sizeof(float) * T * H);
    if (!perm || !h->x || !h->logits || !h->gate || !h->up || !h->down || !h->out) {
        snprintf(detail, cap, "out of host memory");
        goto out;
    }
    fill(h->x, T * H, -1.0f, 1.0f);
    const float gs = 2.0f / sqrtf((float)H), ds = 2.0f / sqrtf((float)I);
    fill(h->gate, E * I * H, -gs, gs);
    fill(h->up, E * I * H, -gs, gs);
    fill(h->down, E * H * I, -ds, ds);
    for (size_t e = 0; e < E; e++) {
        if (!is_idle(c, (int)e)) continue;
        for (size_t i = 0; i < I * H; i++) h->gate[e * I * H + i] = h->up[e * I * H + i] = NAN;
        for (size_t i = 0; i < H * I; i++) h->down[e * H * I + i] = NAN;
    }
    for (size_t t = 0; t < T; t++) {
        for (size_t e = 0; e < E; e++) perm[e] = (int32_t)e;
        for (size_t e = E - 1; e > 0; e--) {
            const int j = irand((int)e + 1);
            const int32_t s = perm[e];
            perm[e] = perm[j];
            perm[j] = s;
        }
        for (size_t e = 0; e < E; e++) {
            const float idle = is_idle(c, (int)e) ? 30.0f : 0.0f;
            h->logits[t * E + e] = 0.5f * (float)perm[e] - 2.0f + urand(0.0f, 0.1f) - idle;
        }
    }
    const struct backend_reserve_args r = {.max_tokens = c->T, .moe_pairs = c->T * c->k, .moe_hidden = c->hidden,
                                           .moe_inter = c->inter, .moe_experts = c->E};
    if (cpu->iface->reserve(cpu, &r) ||
        cpu->iface->load_weight(cpu, h->gate, FOLIO_F32, (int64_t)(E * I), c->hidden, c->dt, &wg) ||
        cpu->iface->load_weight(cpu, h->up, FOLIO_F32, (int64_t)(E * I), c->hidden, c->dt, &wu) ||
        cpu->iface->load_weight(cpu, h->down, FOLIO_F32, (int64_t)(E * H), c->inter, c->dt, &wd)) {
        snprintf(detail, cap, "CPU backend: %s", folio_last_error());
        goto out;
    }
    for (size_t i = 0; i < T * H; i++) h->out[i] = NAN;
    const struct backend_moe_args a = {
        .x = h->x, .router_logits = h->logits, .gate = &wg, .up = &wu, .down = &wd, .out = h->out, .T = c->T,
        .hidden = c->hidden, .inter = c->inter, .num_experts = c->E, .top_k = c->k, .norm_topk_prob = c->norm,
        .act = c->act};
    cpu->iface->moe(cpu, &a);
    for (size_t i = 0; i < T * H; i++)
        if (!isfinite(h->out[i])) {
            snprintf(detail, cap, "the CPU reference is not finite at [%zu] (test setup)", i);
            goto out;
        }
    rc = 0;
out:
    if (wg.owned || wg.data) cpu->iface->free_weight(cpu, &wg);
    if (wu.owned || wu.data) cpu->iface->free_weight(cpu, &wu);
    if (wd.owned || wd.data) cpu->iface->free_weight(cpu, &wd);
    free(perm);
    return rc;
}

/* Compares the GPU's out [T, hidden] (and its guard) with the CPU's. */
static int moe_check(const struct moe_case *c, const struct moe_host *h, const float *d_out, size_t guard,
                     double *err, char *detail, size_t cap) {
    const size_t n = (size_t)c->T * c->hidden;
    float *g = malloc(sizeof(float) * n);
    size_t at = 0;
    int rc = -1;
    if (!g) {
        snprintf(detail, cap, "out of host memory");
        return -1;
    }
    cudaError_t ce = cudaMemcpy(g, d_out, sizeof(float) * n, cudaMemcpyDeviceToHost);
    if (ce != cudaSuccess) {
        snprintf(detail, cap, "download: %s", cudaGetErrorString(ce));
        goto out;
    }
    const double e = scaled_error(g, h->out, n, &at);
    if (e > *err || isnan(e)) *err = e;
    if (!(e <= MOE_TOL)) {
        snprintf(detail, cap, "out[t=%zu, %zu]: gpu %.9g cpu %.9g (err %.3g of scale > %.0e)", at / c->hidden,
                 at % c->hidden, (double)g[at], (double)h->out[at], e, MOE_TOL);
        goto out;
    }
    rc = check_guard("out", d_out, n, guard, detail, cap);
out:
    free(g);
    return rc;
}

/* The backend's slot, after reserve. graph: also record the slot into a CUDA graph, replay
 * it on a poisoned output and compare again. */
static void test_moe_backend(struct backend *cpu, struct backend *gpu, const struct moe_case *c, int graph) {
    char name[192], detail[256] = "";
    case_name(c, graph ? "backend+graph" : "backend", name, sizeof name);
    const size_t H = (size_t)c->hidden, I = (size_t)c->inter, E = (size_t)c->E, T = (size_t)c->T;
    struct moe_host h;
    struct backend_weight wg = {0}, wu = {0}, wd = {0};
    struct backend_mem mem = {0};
    float *d_x = NULL, *d_logits = NULL, *d_out = NULL;
    void *g = NULL;
    double err = 0.0;
    if (moe_host_make(cpu, c, &h, detail, sizeof detail)) goto out;
    const struct backend_reserve_args r = {.max_tokens = c->T, .max_cols = c->hidden, .moe_pairs = c->T * c->k,
                                           .moe_hidden = c->hidden, .moe_inter = c->inter, .moe_experts = c->E};
    if (gpu->iface->reserve(gpu, &r) || gpu->iface->mem_info(gpu, &mem)) {
        snprintf(detail, sizeof detail, "reserve: %s", folio_last_error());
        goto out;
    }
    if (mem.reserved < moe_workspace_size(c->T * c->k, c->hidden, c->inter, c->E)) {
        snprintf(detail, sizeof detail, "mem_info reserved %zu does not count the MoE buffers", mem.reserved);
        goto out;
    }
    if (gpu->iface->load_weight(gpu, h.gate, FOLIO_F32, (int64_t)(E * I), c->hidden, c->dt, &wg) ||
        gpu->iface->load_weight(gpu, h.up, FOLIO_F32, (int64_t)(E * I), c->hidden, c->dt, &wu) ||
        gpu->iface->load_weight(gpu, h.down, FOLIO_F32, (int64_t)(E * H), c->inter, c->dt, &wd)) {
        snprintf(detail, sizeof detail, "load_weight: %s", folio_last_error());
        goto out;
    }
    CK(dev_alloc(&d_x, T * H, 0));
    CK(cudaMemcpy(d_x, h.x, sizeof(float) * T * H, cudaMemcpyHostToDevice));
    CK(dev_alloc(&d_logits, T * E, 0));
    CK(cudaMemcpy(d_logits, h.logits, sizeof(float) * T * E, cudaMemcpyHostToDevice));
    CK(dev_alloc(&d_out, T * H, H));
    const struct backend_moe_args a = {
        .x = d_x, .router_logits = d_logits, .gate = &wg, .up = &wu, .down = &wd, .out = d_out, .T = c->T,
        .hidden = c->hidden, .inter = c->inter, .num_experts = c->E, .top_k = c->k, .norm_topk_prob = c->norm,
        .act = c->act};
    gpu->iface->moe(gpu, &a);
    if (gpu->iface->sync(gpu)) {
        snprintf(detail, sizeof detail, "sync: %s", folio_last_error());
        goto out;
    }
    if (moe_check(c, &h, d_out, H, &err, detail, sizeof detail)) goto out;
    if (graph) {
        if (gpu->iface->graph_begin(gpu)) {
            snprintf(detail, sizeof detail, "graph_begin: %s", folio_last_error());
            goto out;
        }
        gpu->iface->moe(gpu, &a);
        if (gpu->iface->graph_end(gpu, &g)) {
            snprintf(detail, sizeof detail, "graph capture of moe: %s", folio_last_error());
            goto out;
        }
        CK(cudaMemset(d_out, 0xff, sizeof(float) * T * H));
        gpu->iface->graph_launch(gpu, g);
        if (gpu->iface->sync(gpu)) {
            snprintf(detail, sizeof detail, "graph replay: %s", folio_last_error());
            goto out;
        }
        if (moe_check(c, &h, d_out, H, &err, detail, sizeof detail)) goto out;
    }
out:
    if (g) gpu->iface->graph_free(gpu, g);
    if (wg.owned) gpu->iface->free_weight(gpu, &wg);
    if (wu.owned) gpu->iface->free_weight(gpu, &wu);
    if (wd.owned) gpu->iface->free_weight(gpu, &wd);
    cudaFree(d_x);
    cudaFree(d_logits);
    cudaFree(d_out);
    moe_host_free(&h);
    report(name, detail[0] ? detail : NULL, err);
}

/* The launcher alone, with a workspace of `pass_tokens` tokens' pairs, so that T runs in
 * several passes. */
static void test_moe_passes(struct backend *cpu, cudaStream_t st, const struct moe_case *c, int pass_tokens) {
    char name[192], what[48], detail[256] = "";
    snprintf(what, sizeof what, "launcher passes of %d tokens", pass_tokens);
    case_name(c, what, name, sizeof name);
    const size_t H = (size_t)c->hidden, I = (size_t)c->inter, E = (size_t)c->E, T = (size_t)c->T;
    const size_t es = folio_dtype_size(c->dt);
    struct moe_host h;
    float *d_x = NULL, *d_logits = NULL, *d_out = NULL, *d_ws = NULL;
    void *d_w[3] = {NULL, NULL, NULL};
    void *hw = NULL;
    double err = 0.0;
    const int max_pairs = pass_tokens * c->k;
    const size_t ws = moe_workspace_size(max_pairs, c->hidden, c->inter, c->E);
    if (moe_host_make(cpu, c, &h, detail, sizeof detail)) goto out;
    /* The weights in their dtype, converted as load_weight does. */
    const float *src[3] = {h.gate, h.up, h.down};
    const size_t wn = E * I * H;
    if (!(hw = malloc(es * wn))) {
        snprintf(detail, sizeof detail, "out of host memory");
        goto out;
    }
    for (int m = 0; m < 3; m++) {
        for (size_t i = 0; i < wn; i++) {
            if (c->dt == FOLIO_F32) ((float *)hw)[i] = src[m][i];
            if (c->dt == FOLIO_F16) ((uint16_t *)hw)[i] = folio_f32_to_f16(src[m][i]);
            if (c->dt == FOLIO_BF16) ((uint16_t *)hw)[i] = folio_f32_to_bf16(src[m][i]);
        }
        CK(cudaMalloc(&d_w[m], es * wn));
        CK(cudaMemcpy(d_w[m], hw, es * wn, cudaMemcpyHostToDevice));
    }
    CK(dev_alloc(&d_x, T * H, 0));
    CK(cudaMemcpy(d_x, h.x, sizeof(float) * T * H, cudaMemcpyHostToDevice));
    CK(dev_alloc(&d_logits, T * E, 0));
    CK(cudaMemcpy(d_logits, h.logits, sizeof(float) * T * E, cudaMemcpyHostToDevice));
    CK(dev_alloc(&d_out, T * H, H));
    CK(dev_alloc(&d_ws, ws / sizeof(float), 64));
    const struct moe_params p = {
        .x = d_x, .router_logits = d_logits, .gate = d_w[0], .up = d_w[1], .down = d_w[2],
        .dtype = (enum kernel_dtype)c->dt, .out = d_out, .T = c->T, .hidden = c->hidden, .inter = c->inter,
        .num_experts = c->E, .top_k = c->k, .norm_topk_prob = c->norm, .act = (enum kernel_act)c->act,
        .workspace = d_ws, .max_pairs = max_pairs};
    CK(moe(&p, st));
    CK(cudaStreamSynchronize(st));
    if (moe_check(c, &h, d_out, H, &err, detail, sizeof detail)) goto out;
    check_guard("workspace", d_ws, ws / sizeof(float), 64, detail, sizeof detail);
out:
    for (int m = 0; m < 3; m++) cudaFree(d_w[m]);
    cudaFree(d_x);
    cudaFree(d_logits);
    cudaFree(d_out);
    cudaFree(d_ws);
    free(hw);
    moe_host_free(&h);
    report(name, detail[0] ? detail : NULL, err);
}

/* Bad arguments are refused before anything runs; T = 0 is a no-op. */
static void test_moe_edges(cudaStream_t st) {
    char detail[256] = "";
    float *d = NULL; /* [0] + guard of 256 */
    CK(dev_alloc(&d, 0, 256));
    const struct moe_params ok = {
        .x = d, .router_logits = d, .gate = d, .up = d, .down = d, .dtype = KERNEL_BF16, .out = d, .T = 1,
        .hidden = 8, .inter = 8, .num_experts = 4, .top_k = 2, .act = KERNEL_ACT_SILU, .workspace = d,
        .max_pairs = 2};
    struct moe_params p = ok;
    static const char *const what[] = {"act=2", "dtype=7", "top_k > num_experts", "top_k=0", "max_pairs < top_k",
                                       "no workspace", "num_experts=0", "inter=0"};
    for (int i = 0; i < 8 && !detail[0]; i++) {
        p = ok;
        switch (i) {
        case 0: p.act = (enum kernel_act)2; break;
        case 1: p.dtype = (enum kernel_dtype)7; break;
        case 2: p.top_k = 5; break;
        case 3: p.top_k = 0; break;
        case 4: p.max_pairs = 1; break;
        case 5: p.workspace = NULL; break;
        case 6: p.num_experts = 0; break;
        case 7: p.inter = 0; break;
        }
        if (moe(&p, st) != cudaErrorInvalidValue) snprintf(detail, sizeof detail, "%s was not refused", what[i]);
    }
    if (detail[0]) goto out;
    p = ok;
    p.T = 0;
    CK(moe(&p, st));
    CK(cudaStreamSynchronize(st));
    check_guard("buffer", d, 0, 256, detail, sizeof detail);
out:
    cudaFree(d);
    report("moe: bad arguments refused, T=0 no-op", detail[0] ? detail : NULL, -1.0);
}

void gpu_tests_moe(struct backend *cpu, cudaStream_t st) {
    static const enum folio_dtype dts[] = {FOLIO_F32, FOLIO_BF16, FOLIO_F16};
    static const int Ts[] = {1, 7, 64}, Es[] = {4, 8}, ks[] = {1, 2};
    struct backend *gpu = NULL;
    if (backend_cuda_create(0, &gpu)) {
        report("moe: backend_cuda_create", folio_last_error(), -1.0);
        return;
    }
    /* Every combination on a shape that fits no tile (hidden 100: 16-bit rows take the scalar
     * path; inter 77: every dtype does), two idle experts whenever there are 8. */
    for (size_t d = 0; d < 3; d++)
        for (size_t t = 0; t < 3; t++)
            for (size_t e = 0; e < 2; e++)
                for (size_t k = 0; k < 2; k++)
                    for (int norm = 0; norm <= 1; norm++)
                        for (int act = BACKEND_ACT_SILU; act <= BACKEND_ACT_GELU_TANH; act++) {
                            const struct moe_case c = {Ts[t], Es[e], ks[k], 100, 77, dts[d], norm, act, Es[e] == 8};
                            test_moe_backend(cpu, gpu, &c, 0);
                        }
    /* 16-byte loads (hidden and inter multiples of 8) over several K stages of 512 with a
     * partial last one, and output rows past a whole number of 32-row tiles. */
    for (size_t d = 0; d < 3; d++)
        for (int act = BACKEND_ACT_SILU; act <= BACKEND_ACT_GELU_TANH; act++) {
            struct moe_case c = {1, 8, 2, 1000, 600, dts[d], 1, act, 0};
            test_moe_backend(cpu, gpu, &c, 0);
            c.T = 64;
            c.idle = 1;
            test_moe_backend(cpu, gpu, &c, 0);
        }
    /* Qwen3-MoE-like routing: many experts, top 8, more tokens per expert than one pass. */
    const struct moe_case qwen = {200, 64, 8, 128, 96, FOLIO_BF16, 1, BACKEND_ACT_SILU, 1};
    test_moe_backend(cpu, gpu, &qwen, 0);
    /* A decode step captured in a CUDA graph and replayed. */
    const struct moe_case cap1 = {7, 8, 2, 256, 120, FOLIO_BF16, 1, BACKEND_ACT_SILU, 1};
    test_moe_backend(cpu, gpu, &cap1, 1);
    backend_free(gpu);
    /* Batches larger than the workspace: several passes of the launcher. */
    const struct moe_case pass1 = {64, 8, 2, 136, 72, FOLIO_BF16, 1, BACKEND_ACT_SILU, 1};
    test_moe_passes(cpu, st, &pass1, 5);
    const struct moe_case pass2 = {7, 4, 1, 100, 77, FOLIO_F32, 0, BACKEND_ACT_GELU_TANH, 0};
    test_moe_passes(cpu, st, &pass2, 3);
    test_moe_passes(cpu, st, &pass2, 1);
    test_moe_edges(st);
}
