/* model: see model.h. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/quant.h"
#include "model/quant_load.h"
#include "model/safetensors.h"

#define MAX_HEAD_DIM 1024
#define MAX_BLOCK_SIZE 1024
/* CUDA graphs: batch sizes recorded (a batch pads up to the next), and the longest context a
 * replay serves: attention's split-K plan is fixed at capture, for this bound. */
#define MAX_GRAPHS 16
#define GRAPH_MAX_CONTEXT 8192
static const int graph_sizes[MAX_GRAPHS] = {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 384, 512};

struct layer {
    struct backend_weight q, k, v, o;
    struct backend_weight gate, up, down;       /* the dense MLP, unless LAYER_MOE */
    struct backend_weight router;               /* [num_experts, hidden] (LAYER_MOE) */
    struct backend_weight xgate, xup, xdown;    /* experts stacked: [E * moe_inter, hidden], [E * hidden, moe_inter] */
    void *xhost[3];                             /* host copies of the stacks the backend borrows (CPU) */
    float *q_bias, *k_bias, *v_bias;            /* [q_dim], [kv_dim], [kv_dim] or NULL */
    float *o_bias;                              /* [hidden] or NULL */
    float *attn_norm, *mlp_norm;                /* [hidden]: before attention, before the MLP */
    float *attn_post_norm, *mlp_post_norm;      /* [hidden] on each sublayer's output (Gemma), or NULL */
    float *q_norm, *k_norm;                     /* [head_dim] per head (QK-norm), or NULL */
    const float *inv_freq;                      /* this layer's RoPE table (model's global or local) */
    int window;                                 /* 0 = full attention */
    void *k_cache, *v_cache;                    /* [num_blocks, nkv, block_size, head_dim] of p.kv_dtype */
    float k_scale, v_scale;                     /* FP8 KV: what an e4m3 element is multiplied by */
};

struct model {
    struct model_config cfg;
    struct model_params p;
    struct backend *b;
    struct safetensors_set *st;
    enum folio_dtype dtype;          /* of the float matrices (embedding, router, a pre-quantized
                                      * checkpoint's LM head) */
    enum folio_dtype mdtype;         /* of the layers' linear matrices: dtype or a quantized one */
    int q_dim, kv_dim, max_blocks_per_seq, num_blocks;
    struct backend_weight embed, lm_head; /* lm_head aliases embed when tied */
    float *final_norm;               /* [hidden] */
    float *inv_freq;                 /* [rot_dim / 2], or [2, rot_dim / 2] short then long (LongRoPE) */
    float *inv_freq_local;           /* [rot_dim / 2] the sliding layers' (Gemma 3), or NULL */
    float embed_scale;               /* 0 = none */
    char prefix[32];                 /* of the language model's tensors: "model." or a multimodal one */
    struct layer *layers;
    void *kv_pool;                   /* every layer's K and V blocks, one allocation (the full
                                      * layers' only, when split), of p.kv_dtype */
    void *kv_pool_local;             /* the sliding layers' K and V blocks, when split */
    int num_local_blocks;            /* 0 unless split */
    int num_local_layers;            /* the layers in kv_pool_local: 0 unless split */

    /* device scratch, sized for the params' limits */
    int32_t *d_tokens, *d_positions, *d_seq_idx, *d_slots; /* [max_tokens] */
    int32_t *d_block_tables;                               /* [max_seqs, max_blocks_per_seq] */
    int32_t *d_logits_idx;                                 /* [max_logits] */
    int32_t *d_copies;                                     /* [max_seqs, 2] */
    int32_t *d_slots_local, *d_block_tables_local, *d_copies_local; /* split only, as the three above */
    float *x, *xn, *delta;                                 /* [max_tokens, hidden] */
    float *q, *k, *v, *attn;                               /* [max_tokens, q_dim / kv_dim] */
    float *gate, *up;                                      /* [max_tokens, intermediate] */
    float *router_logits;                                  /* [max_tokens, num_experts] */
    int32_t *d_long_sel, *long_sel;                        /* [max_tokens] device / host: LongRoPE rows */
    float *rows;                                           /* [max_logits, hidden] */
    float *logits;                                         /* [max_logits, vocab] */
    int32_t *seq_max_pos;                                  /* host [max_seqs], for validation */
    int max_context;                                       /* of the batch being run */
    size_t scratch_bytes;                                  /* of the device scratch above */

    /* Recorded forward passes (model_capture_graphs): graph[i] runs graph_T[i] tokens. */
    int num_graphs, graph_context;
    int graph_T[MAX_GRAPHS];
    void *graph[MAX_GRAPHS];
    int graph_width;                                       /* block table width the graphs read */
    int32_t *graph_host;                                   /* [5, largest graph_T]: padded inputs */
    int32_t *graph_tables;                                 /* [max_seqs, graph_width] */
    int32_t *graph_local;                                  /* split: [largest graph_T] slots, then
                                                            * [max_seqs, graph_width] tables */
    long long graph_replays;
};

struct model_params model_default_params(void) {
    return (struct model_params){
        .dtype_auto = 1,
        .dtype = FOLIO_F32,
        .max_num_batched_tokens = 512,
        .max_num_seqs = 64,
        .max_num_logits = 64,
        .max_model_len = 0,
        .block_size = 16,
        .kv_dtype = FOLIO_F32,
    };
}

const struct model_config *model_config(const struct model *m) { return &m->cfg; }
const struct model_params *model_params(const struct model *m) { return &m->p; }
int model_max_blocks_per_seq(const struct model *m) { return m->max_blocks_per_seq; }
enum folio_dtype model_dtype(const struct model *m) { return m->dtype; }
enum folio_dtype model_matrix_dtype(const struct model *m) { return m->mdtype; }

static size_t weight_bytes(const struct backend_weight *w) {
    return (size_t)w->rows * quant_row_bytes(w->dtype, w->cols) + (w->scale ? sizeof(float) * (size_t)w->rows : 0);
}

size_t model_weight_bytes(const struct model *m) {
    /* Per token, decode reads every layer matrix (of a MoE layer, the router and top_k
     * experts) and the LM head; the embedding table is only gathered from (one row), so it
     * counts only when it doubles as the head. */
    size_t n = weight_bytes(&m->lm_head);
    const int k = m->cfg.num_experts_per_tok, E = m->cfg.num_experts;
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const struct layer *L = &m->layers[l];
        n += weight_bytes(&L->q) + weight_bytes(&L->k) + weight_bytes(&L->v) + weight_bytes(&L->o) +
             weight_bytes(&L->gate) + weight_bytes(&L->up) + weight_bytes(&L->down) + weight_bytes(&L->router);
        if (E) n += (weight_bytes(&L->xgate) + weight_bytes(&L->xup) + weight_bytes(&L->xdown)) / E * k;
    }
    return n;
}

size_t model_kv_block_bytes(const struct model *m) {
    return config_kv_block_bytes(&m->cfg, m->p.block_size, m->p.kv_dtype);
}

enum folio_dtype model_kv_dtype(const struct model *m) { return m->p.kv_dtype; }

void model_kv_scales(const struct model *m, int l, float *k_scale, float *v_scale) {
    *k_scale = m->layers[l].k_scale;
    *v_scale = m->layers[l].v_scale;
}

static const char *shape_str(const struct safetensors_tensor *t, char *buf, size_t cap) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* Finds a tensor and checks its shape: [d0] when d1 == 0, else [d0, d1]. */
static int find_tensor(struct model *m, const char *name, int64_t d0, int64_t d1, const struct safetensors_tensor **out) {
    const struct safetensors_tensor *t = safetensors_find(m->st, name);
    if (!t) return folio_err(FOLIO_EINVAL, "checkpoint is missing tensor %s", name);
    int ok = d1 ? (t->ndim == 2 && t->shape[0] == d0 && t->shape[1] == d1) : (t->ndim == 1 && t->shape[0] == d0);
    if (!ok) {
        char got[128];
        if (d1)
            return folio_err(FOLIO_EINVAL, "tensor %s has shape %s, expected [%lld, %lld]", name,
                             shape_str(t, got, sizeof got), (long long)d0, (long long)d1);
        return folio_err(FOLIO_EINVAL, "tensor %s has shape %s, expected [%lld]", name, shape_str(t, got, sizeof got),
                         (long long)d0);
    }
    *out = t;
    return 0;
}

static int load_matrix(struct model *m, const char *name, int64_t rows, int64_t cols, struct backend_weight *w) {
    const struct safetensors_tensor *t;
    int rc = find_tensor(m, name, rows, cols, &t);
    if (rc) return rc;
    return backend_load_weight(m->b, t->data, t->dtype, rows, cols, m->dtype, w);
}

/* An FP8 checkpoint's weight_scale: one per tensor ([] or [1]) or per output row ([rows] or
 * [rows, 1]), widened into scale[rows]. */
static int fp8_scales(struct model *m, const char *name, int64_t rows, float *scale) {
    const struct safetensors_tensor *t = safetensors_find(m->st, name);
    if (!t) return folio_err(FOLIO_EINVAL, "checkpoint is missing tensor %s", name);
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    if ((n != 1 && n != rows) || t->dtype == FOLIO_I32 || t->dtype == FOLIO_FP8)
        return folio_err(FOLIO_EINVAL, "tensor %s must hold 1 or %lld float scales", name, (long long)rows);
    for (int64_t r = 0; r < rows; r++) scale[r] = folio_widen(t->data, t->dtype, n == 1 ? 0 : (size_t)r);
    return 0;
}

/* A tensor of the given dtype and 2-D shape, by name. */
static int find_typed(struct model *m, const char *name, enum folio_dtype dt, int64_t d0, int64_t d1,
                      const struct safetensors_tensor **out) {
    int rc = find_tensor(m, name, d0, d1, out);
    if (!rc && (*out)->dtype != dt)
        rc = folio_err(FOLIO_EINVAL, "tensor %s is %s, expected %s", name, folio_dtype_name((*out)->dtype),
                       folio_dtype_name(dt));
    return rc;
}

/* A layer's linear layer base ("...q_proj", or a fused "...qkv_proj") of total rows, loaded as
 * n weights of consecutive rows: ws[i] takes rows[i] of them. */
struct linear_split {
    int n;
    const int64_t *rows;
    struct backend_weight *const *ws;
};

/* An AWQ or GPTQ linear: base.qweight/.qzeros/.scales (GPTQ: .g_idx) repacked into Q4Z once,
 * then each slice loaded from it. */
static int load_int4_linear(struct model *m, const char *base, int64_t total, int64_t cols,
                            const struct linear_split *sp) {
    const struct model_quant *q = &m->cfg.quant;
    const int awq = q->method == QUANT_AWQ, gs = q->group_size > 0 ? q->group_size : (int)cols;
    const int groups = (int)((cols + gs - 1) / gs);
    const struct safetensors_tensor *qw, *qz, *sc, *gi = NULL;
    char name[300];
    int rc;
    if (awq && q->sym) return folio_err(FOLIO_EUNSUP, "awq without zero points is not supported");
    if (cols % gs) return folio_err(FOLIO_EUNSUP, "%s: in_features %lld is not a multiple of the group size %d", base,
                                    (long long)cols, gs);
    snprintf(name, sizeof name, "%s.qweight", base);
    if ((rc = find_typed(m, name, FOLIO_I32, awq ? cols : cols / 8, awq ? total / 8 : total, &qw))) return rc;
    snprintf(name, sizeof name, "%s.qzeros", base);
    if ((rc = find_typed(m, name, FOLIO_I32, groups, total / 8, &qz))) return rc;
    snprintf(name, sizeof name, "%s.scales", base);
    if ((rc = find_typed(m, name, FOLIO_F16, groups, total, &sc))) return rc;
    snprintf(name, sizeof name, "%s.g_idx", base);
    if (!awq && safetensors_find(m->st, name) && (rc = find_typed(m, name, FOLIO_I32, cols, 0, &gi))) return rc;
    /* act-order groups are only known from g_idx: guessing column / group would be wrong */
    if (!awq && q->desc_act && !gi) return folio_err(FOLIO_EINVAL, "checkpoint is missing tensor %s (desc_act)", name);
    const int64_t nb = quant_blocks(cols);
    struct quant_q4z *blocks = malloc(sizeof *blocks * (size_t)(total * nb));
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)cols);
    int has_perm = 0;
    if (!blocks || !perm) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory repacking %s", base);
        goto out;
    }
    rc = awq ? quant_repack_awq(qw->data, qz->data, sc->data, cols, total, gs, blocks)
             : quant_repack_gptq(qw->data, qz->data, sc->data, gi ? gi->data : NULL, cols, total, gs, groups,
                                 q->gptq_v2, blocks, perm, &has_perm);
    for (int64_t i = 0, row0 = 0; !rc && i < sp->n; row0 += sp->rows[i++]) {
        const struct backend_quant_src src = {.dtype = FOLIO_Q4Z, .data = blocks + row0 * nb, .rows = sp->rows[i],
                                              .cols = cols, .perm = has_perm ? perm : NULL};
        rc = backend_load_quant(m->b, &src, sp->ws[i]);
    }
out:
    free(blocks);
    free(perm);
    return rc;
}

/* An FP8 linear: base.weight (e4m3, borrowed from the mmap on the CPU) and base.weight_scale. */
static int load_fp8_linear(struct model *m, const char *base, int64_t total, int64_t cols,
                           const struct linear_split *sp) {
    const struct safetensors_tensor *t;
    char name[300];
    snprintf(name, sizeof name, "%s.weight", base);
    int rc = find_typed(m, name, FOLIO_FP8, total, cols, &t);
    if (rc) return rc;
    float *scale = malloc(sizeof(float) * (size_t)total);
    if (!scale) return folio_err(FOLIO_ENOMEM, "out of memory");
    snprintf(name, sizeof name, "%s.weight_scale", base);
    rc = fp8_scales(m, name, total, scale);
    for (int64_t i = 0, row0 = 0; !rc && i < sp->n; row0 += sp->rows[i++]) {
        const struct backend_quant_src src = {.dtype = FOLIO_FP8, .data = (const uint8_t *)t->data + row0 * cols,
                                              .rows = sp->rows[i], .cols = cols, .scale = scale + row0, .borrow = 1};
        rc = backend_load_quant(m->b, &src, sp->ws[i]);
    }
    free(scale);
    return rc;
}

/* The slices of a linear layer: in the checkpoint's quantized format, quantized at load, or
 * as they are. */
static int load_linear_split(struct model *m, const char *base, int64_t cols, const struct linear_split *sp) {
    int64_t total = 0;
    for (int i = 0; i < sp->n; i++) total += sp->rows[i];
    switch (m->cfg.quant.method) {
    case QUANT_AWQ:
    case QUANT_GPTQ: return load_int4_linear(m, base, total, cols, sp);
    case QUANT_FP8: return load_fp8_linear(m, base, total, cols, sp);
    default: break;
    }
    const struct safetensors_tensor *t;
    char name[300];
    snprintf(name, sizeof name, "%s.weight", base);
    int rc = find_tensor(m, name, total, cols, &t);
    for (int64_t i = 0, row0 = 0; !rc && i < sp->n; row0 += sp->rows[i++]) {
        const char *src = (const char *)t->data + (size_t)row0 * (size_t)cols * folio_dtype_size(t->dtype);
        rc = backend_load_weight(m->b, src, t->dtype, sp->rows[i], cols, m->mdtype, sp->ws[i]);
    }
    return rc;
}

static int load_linear(struct model *m, const char *base, int64_t rows, int64_t cols, struct backend_weight *w) {
    return load_linear_split(m, base, cols, &(struct linear_split){1, &rows, &w});
}

/* Vectors (norms, biases) are tiny, so they live in fp32 whatever the matrices use. Gemma's
 * norms scale by (1 + w), which is folded in here once (plus_one). */
static int load_vector_as(struct model *m, const char *name, int64_t n, int plus_one, float **out) {
    const struct safetensors_tensor *t;
    int rc = find_tensor(m, name, n, 0, &t);
    if (rc) return rc;
    float *host = malloc(sizeof(float) * (size_t)n);
    float *dev = backend_alloc(m->b, sizeof(float) * (size_t)n);
    if (!host || !dev) {
        free(host);
        if (dev) backend_release(m->b, dev);
        return folio_err(FOLIO_ENOMEM, "out of memory loading %s", name);
    }
    for (int64_t i = 0; i < n; i++) host[i] = (plus_one ? 1.0f : 0.0f) + folio_widen(t->data, t->dtype, (size_t)i);
    rc = backend_upload(m->b, dev, host, sizeof(float) * (size_t)n);
    free(host);
    *out = dev;
    return rc;
}

static int load_vector(struct model *m, const char *name, int64_t n, float **out) {
    return load_vector_as(m, name, n, 0, out);
}

static int load_norm(struct model *m, const char *name, int64_t n, float **out) {
    return load_vector_as(m, name, n, m->cfg.norm_plus_one, out);
}

/* One projection of every expert, stacked [E * rows, cols] in one weight: the experts are
 * separate tensors in the checkpoint, so they are copied together on the host first. When
 * the backend borrows that copy (the CPU), the layer keeps it. */
static int load_experts(struct model *m, struct layer *L, int slot, const char *fmt, int l, int64_t rows, int64_t cols,
                        struct backend_weight *w) {
    const int E = m->cfg.num_experts;
    const struct safetensors_tensor *t0 = NULL;
    char name[256];
    int rc;
    for (int e = 0; e < E; e++) {
        const struct safetensors_tensor *t;
        snprintf(name, sizeof name, fmt, m->prefix, l, e);
        if ((rc = find_tensor(m, name, rows, cols, &t))) return rc;
        if (t0 && t->dtype != t0->dtype)
            return folio_err(FOLIO_EUNSUP, "expert tensor %s is %s, unlike expert 0's %s", name,
                             folio_dtype_name(t->dtype), folio_dtype_name(t0->dtype));
        if (!t0) t0 = t;
    }
    const size_t one = (size_t)rows * (size_t)cols * folio_dtype_size(t0->dtype);
    char *host = malloc(one * (size_t)E);
    if (!host) return folio_err(FOLIO_ENOMEM, "out of memory stacking the experts of layer %d", l);
    for (int e = 0; e < E; e++) {
        snprintf(name, sizeof name, fmt, m->prefix, l, e);
        memcpy(host + one * (size_t)e, safetensors_find(m->st, name)->data, one);
    }
    rc = backend_load_weight(m->b, host, t0->dtype, rows * E, cols, m->dtype, w);
    if (!rc && w->data == host) {
        L->xhost[slot] = host;
    } else {
        free(host);
    }
    return rc;
}
static void *scratch(struct model *m, size_t elems, size_t es, int *rc) {
    if (*rc) return NULL;
    void *p = backend_alloc(m->b, elems * es);
    if (p) m->scratch_bytes += elems * es;
    if (!p) *rc = folio_err(FOLIO_ENOMEM, "out of memory for activation scratch (%zu bytes)", elems * es);
    return p;
}

static int alloc_scratch(struct model *m) {
    const size_t T = (size_t)m->p.max_num_batched_tokens, S = (size_t)m->p.max_num_seqs;
    const size_t L = (size_t)m->p.max_num_logits, H = (size_t)m->cfg.hidden_size;
    int rc = 0;
    m->d_tokens = scratch(m, T, 4, &rc);
    m->d_positions = scratch(m, T, 4, &rc);
    m->d_seq_idx = scratch(m, T, 4, &rc);
    m->d_slots = scratch(m, T, 4, &rc);
    m->d_block_tables = scratch(m, S * (size_t)m->max_blocks_per_seq, 4, &rc);
    m->d_logits_idx = scratch(m, L, 4, &rc);
    m->d_copies = scratch(m, 2 * S, 4, &rc);
    m->x = scratch(m, T * H, 4, &rc);
    m->xn = scratch(m, T * H, 4, &rc);
    m->delta = scratch(m, T * H, 4, &rc);
    m->q = scratch(m, T * (size_t)m->q_dim, 4, &rc);
    m->attn = scratch(m, T * (size_t)m->q_dim, 4, &rc);
    m->k = scratch(m, T * (size_t)m->kv_dim, 4, &rc);
    m->v = scratch(m, T * (size_t)m->kv_dim, 4, &rc);
    m->gate = scratch(m, T * (size_t)m->cfg.intermediate_size, 4, &rc);
    m->up = scratch(m, T * (size_t)m->cfg.intermediate_size, 4, &rc);
    if (m->cfg.num_experts) m->router_logits = scratch(m, T * (size_t)m->cfg.num_experts, 4, &rc);
    if (m->cfg.rope_scaling.type == ROPE_SCALING_LONGROPE) {
        m->d_long_sel = scratch(m, T, 4, &rc);
        if (!rc && !(m->long_sel = malloc(T * sizeof(int32_t)))) rc = folio_err(FOLIO_ENOMEM, "out of memory");
    }
    m->rows = scratch(m, L * H, 4, &rc);
    m->logits = scratch(m, L * (size_t)m->cfg.vocab_size, 4, &rc);
    if (!rc && !(m->seq_max_pos = malloc(S * sizeof(int32_t))))
        rc = folio_err(FOLIO_ENOMEM, "out of memory");
    /* The backend's own scratch for the same limits (a device's narrowed GEMM inputs, split-K
     * partials), so that nothing is allocated once steps run. */
    if (!rc) {
        int64_t widest = H;
        if (m->q_dim > widest) widest = m->q_dim;
        if (m->cfg.intermediate_size > widest) widest = m->cfg.intermediate_size;
        if (m->cfg.moe_intermediate_size > widest) widest = m->cfg.moe_intermediate_size;
        const int max_tokens = (int)(T > L ? T : L), E = m->cfg.num_experts;
        const struct backend_reserve_args r = {.max_tokens = max_tokens, .max_cols = widest,
                                     .num_heads = m->cfg.num_heads, .num_kv_heads = m->cfg.num_kv_heads,
                                     .head_dim = m->cfg.head_dim,
                                     .moe_pairs = E ? (int)T * m->cfg.num_experts_per_tok : 0,
                                     .moe_hidden = E ? (int)H : 0, .moe_inter = E ? m->cfg.moe_intermediate_size : 0,
                                     .moe_experts = E};
        rc = backend_reserve(m->b, &r);
    }
    return rc;
}

static int load_attention(struct model *m, struct layer *L, int l) {
    const struct model_config *c = &m->cfg;
    const int64_t H = c->hidden_size;
    char name[256];
    int rc;
#define NAME(suffix) (snprintf(name, sizeof name, "%slayers.%d.%s", m->prefix, l, suffix), name)
    if (c->fused_qkv) {
        const int64_t rows[3] = {m->q_dim, m->kv_dim, m->kv_dim};
        struct backend_weight *const ws[3] = {&L->q, &L->k, &L->v};
        if ((rc = load_linear_split(m, NAME("self_attn.qkv_proj"), H, &(struct linear_split){3, rows, ws})))
            return rc;
    } else if ((rc = load_linear(m, NAME("self_attn.q_proj"), m->q_dim, H, &L->q)) ||
               (rc = load_linear(m, NAME("self_attn.k_proj"), m->kv_dim, H, &L->k)) ||
               (rc = load_linear(m, NAME("self_attn.v_proj"), m->kv_dim, H, &L->v))) {
        return rc;
    }
    if ((rc = load_linear(m, NAME("self_attn.o_proj"), H, m->q_dim, &L->o))) return rc;
    if (c->attention_bias &&
        ((rc = load_vector(m, NAME("self_attn.q_proj.bias"), m->q_dim, &L->q_bias)) ||
         (rc = load_vector(m, NAME("self_attn.k_proj.bias"), m->kv_dim, &L->k_bias)) ||
         (rc = load_vector(m, NAME("self_attn.v_proj.bias"), m->kv_dim, &L->v_bias))))
        return rc;
    /* Llama's and Qwen3's attention_bias covers o_proj too; Qwen2 biases q, k and v only. */
    if (c->attention_bias && c->arch != ARCH_QWEN2 &&
        (rc = load_vector(m, NAME("self_attn.o_proj.bias"), H, &L->o_bias)))
        return rc;
    if (c->qk_norm && ((rc = load_norm(m, NAME("self_attn.q_norm.weight"), c->head_dim, &L->q_norm)) ||
                       (rc = load_norm(m, NAME("self_attn.k_norm.weight"), c->head_dim, &L->k_norm))))
        return rc;
    /* Gemma names its four norms differently: post_attention_layernorm is on the attention's
     * output there, and pre_feedforward_layernorm is the MLP's input norm. */
    if ((rc = load_norm(m, NAME("input_layernorm.weight"), H, &L->attn_norm))) return rc;
    if (c->sandwich_norm)
        return (rc = load_norm(m, NAME("post_attention_layernorm.weight"), H, &L->attn_post_norm)) ||
                       (rc = load_norm(m, NAME("pre_feedforward_layernorm.weight"), H, &L->mlp_norm)) ||
                       (rc = load_norm(m, NAME("post_feedforward_layernorm.weight"), H, &L->mlp_post_norm))
                   ? rc
                   : 0;
    return load_norm(m, NAME("post_attention_layernorm.weight"), H, &L->mlp_norm);
#undef NAME
}

static int load_mlp(struct model *m, struct layer *L, int l) {
    const struct model_config *c = &m->cfg;
    const int64_t H = c->hidden_size, I = c->intermediate_size, MI = c->moe_intermediate_size;
    char name[256];
    int rc;
#define NAME(suffix) (snprintf(name, sizeof name, "%slayers.%d.%s", m->prefix, l, suffix), name)
    if (c->layer_flags[l] & LAYER_MOE) {
        const int mixtral = c->arch == ARCH_MIXTRAL;
        if (c->quant.method)
            return folio_err(FOLIO_EUNSUP, "%s-quantized experts (mixture-of-experts layers) are not supported",
                             c->quant.name);
        return (rc = load_matrix(m, NAME(mixtral ? "block_sparse_moe.gate.weight" : "mlp.gate.weight"),
                                 c->num_experts, H, &L->router)) ||
                       (rc = load_experts(m, L, 0, mixtral ? "%slayers.%d.block_sparse_moe.experts.%d.w1.weight"
                                                           : "%slayers.%d.mlp.experts.%d.gate_proj.weight",
                                          l, MI, H, &L->xgate)) ||
                       (rc = load_experts(m, L, 1, mixtral ? "%slayers.%d.block_sparse_moe.experts.%d.w3.weight"
                                                           : "%slayers.%d.mlp.experts.%d.up_proj.weight",
                                          l, MI, H, &L->xup)) ||
                       (rc = load_experts(m, L, 2, mixtral ? "%slayers.%d.block_sparse_moe.experts.%d.w2.weight"
                                                           : "%slayers.%d.mlp.experts.%d.down_proj.weight",
                                          l, H, MI, &L->xdown))
                   ? rc
                   : 0;
    }
    if (c->fused_qkv) {
        const int64_t rows[2] = {I, I};
        struct backend_weight *const ws[2] = {&L->gate, &L->up};
        if ((rc = load_linear_split(m, NAME("mlp.gate_up_proj"), H, &(struct linear_split){2, rows, ws}))) return rc;
    } else if ((rc = load_linear(m, NAME("mlp.gate_proj"), I, H, &L->gate)) ||
               (rc = load_linear(m, NAME("mlp.up_proj"), I, H, &L->up))) {
        return rc;
    }
    return load_linear(m, NAME("mlp.down_proj"), H, I, &L->down);
#undef NAME
}

static int load_weights(struct model *m) {
    const struct model_config *c = &m->cfg;
    const int64_t H = c->hidden_size, V = c->vocab_size;
    char name[256];
    int rc;
    snprintf(name, sizeof name, "%sembed_tokens.weight", m->prefix);
    if ((rc = load_matrix(m, name, V, H, &m->embed))) return rc;
    if (m->p.quantization) { /* the head is quantized with the layers; a tied one gets its own copy */
        const struct safetensors_tensor *t;
        if ((rc = find_tensor(m, c->tie_word_embeddings ? name : "lm_head.weight", V, H, &t)) ||
            (rc = backend_load_weight(m->b, t->data, t->dtype, V, H, m->mdtype, &m->lm_head)))
            return rc;
    } else if (c->tie_word_embeddings) {
        m->lm_head = m->embed;
        m->lm_head.owned = NULL; /* freed once, through embed */
    } else if ((rc = load_matrix(m, "lm_head.weight", V, H, &m->lm_head))) {
        return rc;
    }
    snprintf(name, sizeof name, "%snorm.weight", m->prefix);
    if ((rc = load_norm(m, name, H, &m->final_norm))) return rc;
    for (int l = 0; l < c->num_layers; l++)
        if ((rc = load_attention(m, &m->layers[l], l)) || (rc = load_mlp(m, &m->layers[l], l))) return rc;
    return 0;
}

/* Where the language model's tensors live: "model." in a text checkpoint; a multimodal
 * Gemma 3 nests them ("language_model.model." on the Hub, "model.language_model." as newer
 * transformers saves them), next to a vision tower that is not loaded. */
static void find_prefix(struct model *m) {
    static const char *const prefixes[] = {"model.", "language_model.model.", "model.language_model."};
    char name[64];
    snprintf(m->prefix, sizeof m->prefix, "model.");
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        snprintf(name, sizeof name, "%sembed_tokens.weight", prefixes[i]);
        if (safetensors_find(m->st, name)) {
            snprintf(m->prefix, sizeof m->prefix, "%s", prefixes[i]);
            return;
        }
    }
}

/* RoPE tables: the global one (short and long rows for LongRoPE) and the sliding layers'
 * where their base differs; each layer points at its own. */
static int upload_rope(struct model *m) {
    const struct model_config *c = &m->cfg;
    const int half = c->rotary_dim / 2, rows = c->rope_scaling.type == ROPE_SCALING_LONGROPE ? 2 : 1;
    double inv[2 * (MAX_HEAD_DIM / 2)];
    float invf[2 * (MAX_HEAD_DIM / 2)];
    int rc = 0;
    for (int r = 0; r < rows; r++) config_rope_inv_freq_for(c, 0, r, inv + r * half);
    for (int i = 0; i < rows * half; i++) invf[i] = (float)inv[i];
    m->inv_freq = scratch(m, (size_t)(rows * half), sizeof(float), &rc);
    if (rc || (rc = backend_upload(m->b, m->inv_freq, invf, sizeof(float) * (size_t)(rows * half)))) return rc;
    if (c->rope_local_theta > 0) {
        config_rope_inv_freq_for(c, 1, 0, inv);
        for (int i = 0; i < half; i++) invf[i] = (float)inv[i];
        m->inv_freq_local = scratch(m, (size_t)half, sizeof(float), &rc);
        if (rc || (rc = backend_upload(m->b, m->inv_freq_local, invf, sizeof(float) * (size_t)half))) return rc;
    }
    for (int l = 0; l < c->num_layers; l++) {
        const int sliding = (c->layer_flags[l] & LAYER_SLIDING) != 0;
        m->layers[l].window = sliding ? c->sliding_window : 0;
        m->layers[l].inv_freq = sliding && m->inv_freq_local ? m->inv_freq_local : m->inv_freq;
    }
    return 0;
}

/* Gemma multiplies the embeddings by sqrt(hidden) as a tensor of the activations' dtype, so
 * the factor is rounded to that dtype first (48.0 stays, 33.94 becomes 34.0 in bf16). */
static float embed_normalizer(const struct model *m) {
    const float f = sqrtf((float)m->cfg.hidden_size);
    uint16_t h;
    switch (m->dtype) {
    case FOLIO_BF16: h = folio_f32_to_bf16(f); return folio_widen(&h, FOLIO_BF16, 0);
    case FOLIO_F16: h = folio_f32_to_f16(f); return folio_widen(&h, FOLIO_F16, 0);
    default: return f;
    }
}

/* The checkpoint's dtype is that of its embedding table; with dtype auto every matrix keeps
 * it, so a bf16 checkpoint stays bf16 in memory. */
static enum folio_dtype checkpoint_dtype(const struct model *m) {
    char name[64];
    snprintf(name, sizeof name, "%sembed_tokens.weight", m->prefix);
    const struct safetensors_tensor *t = safetensors_find(m->st, name);
    const struct model_config *c = &m->cfg;
    return t ? t->dtype : c->torch_dtype;
}

/* An FP8 KV cache's per-layer scales, as vLLM reads them: self_attn.k_scale / v_scale
 * (llm-compressor, and vLLM's own FP8 checkpoints), the older single self_attn.kv_scale, or
 * compressed-tensors' k_proj / v_proj output_scale; 1 where the checkpoint has none. A scale
 * of several elements (per head) counts as its largest, which keeps every head in range. */
static int load_kv_scales(struct model *m) {
    static const char *const names[][2] = {{"self_attn.k_scale", "self_attn.v_scale"},
                                           {"self_attn.kv_scale", "self_attn.kv_scale"},
                                           {"self_attn.k_proj.output_scale", "self_attn.v_proj.output_scale"}};
    for (int l = 0; l < m->cfg.num_layers; l++) {
        float *dst[2] = {&m->layers[l].k_scale, &m->layers[l].v_scale};
        for (int kv = 0; kv < 2; kv++) {
            *dst[kv] = 1.0f;
            if (m->p.kv_dtype != FOLIO_FP8) continue;
            for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
                char name[256];
                snprintf(name, sizeof name, "%slayers.%d.%s", m->prefix, l, names[i][kv]);
                const struct safetensors_tensor *t = safetensors_find(m->st, name);
                const size_t es = t ? folio_dtype_size(t->dtype) : 0;
                if (!t) continue;
                if (t->dtype != FOLIO_F32 && t->dtype != FOLIO_F16 && t->dtype != FOLIO_BF16)
                    return folio_err(FOLIO_EUNSUP, "tensor %s has dtype %s; a KV scale must be a float", name,
                                     folio_dtype_name(t->dtype));
                float best = 0.0f;
                for (size_t e = 0; e < t->nbytes / es; e++) best = fmaxf(best, folio_widen(t->data, t->dtype, e));
                if (!(best > 0.0f) || !isfinite(best))
                    return folio_err(FOLIO_EINVAL, "tensor %s holds no positive finite scale", name);
                *dst[kv] = best;
                break;
            }
        }
    }
    return 0;
}

int model_load(const char *dir, const struct model_params *p, struct backend *b, struct model **out) {
    int rc;
    struct model *m = calloc(1, sizeof *m);
    if (!m) return folio_err(FOLIO_ENOMEM, "out of memory");
    m->b = b;
    m->p = p ? *p : model_default_params();
    if ((rc = config_load(dir, &m->cfg))) goto fail;
    const struct model_config *c = &m->cfg;
    if (c->head_dim > MAX_HEAD_DIM) {
        rc = folio_err(FOLIO_EUNSUP, "head_dim %d exceeds %d", c->head_dim, MAX_HEAD_DIM);
        goto fail;
    }
    if (m->p.block_size < 1 || m->p.block_size > MAX_BLOCK_SIZE || m->p.max_num_batched_tokens < 1 ||
        m->p.max_num_seqs < 1 || m->p.max_num_logits < 1) {
        rc = folio_err(FOLIO_EINVAL, "block size must be in [1, %d] and batch limits positive", MAX_BLOCK_SIZE);
        goto fail;
    }
    if (!backend_supports_kv_dtype(b, m->p.kv_dtype)) {
        rc = folio_err(FOLIO_EUNSUP, "a %s KV cache is not supported on the %s backend",
                       folio_dtype_name(m->p.kv_dtype), backend_name(b));
        goto fail;
    }
    if (m->p.max_model_len <= 0) m->p.max_model_len = c->max_position_embeddings;
    m->q_dim = c->num_heads * c->head_dim;
    m->kv_dim = c->num_kv_heads * c->head_dim;
    m->max_blocks_per_seq = (m->p.max_model_len + m->p.block_size - 1) / m->p.block_size;
    if ((rc = safetensors_open_dir(dir, &m->st))) goto fail;
    find_prefix(m);
    m->dtype = m->p.dtype_auto ? checkpoint_dtype(m) : m->p.dtype;
    if (m->p.quantization && c->quant.method) {
        rc = folio_err(FOLIO_EINVAL, "--quantization %s: the checkpoint is already quantized (quant_method %s)",
                       quant_method_name(m->p.quantization), c->quant.name);
        goto fail;
    }
    if (m->p.quantization && m->p.quantization != FOLIO_Q8 && m->p.quantization != FOLIO_Q4 &&
        m->p.quantization != FOLIO_FP8) {
        rc = folio_err(FOLIO_EINVAL, "quantization at load is int8, int4 or fp8");
        goto fail;
    }
    m->mdtype = m->p.quantization ? m->p.quantization : config_matrix_dtype(c, m->dtype);
    if (c->embed_scale) m->embed_scale = embed_normalizer(m);
    m->layers = calloc((size_t)c->num_layers, sizeof *m->layers);
    if (!m->layers) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = load_weights(m)) || (rc = load_kv_scales(m)) || (rc = upload_rope(m)) || (rc = alloc_scratch(m)))
        goto fail;
    *out = m;
    return 0;
fail:
    model_free(m);
    return rc;
}

int model_has_local_layers(const struct model *m) { return config_kv_split(&m->cfg); }

/* n_layers' K and V caches of num_blocks blocks each, back to back. */
static void *alloc_pool(struct model *m, int num_blocks, int n_layers) {
    const size_t bytes =
        2 * (size_t)num_blocks * m->p.block_size * m->kv_dim * n_layers * folio_dtype_size(m->p.kv_dtype);
    void *p = backend_alloc(m->b, bytes);
    if (!p) folio_err(FOLIO_ENOMEM, "out of memory for %d KV blocks (%zu MiB)", num_blocks, bytes >> 20);
    return p;
}

/* Points each layer at its K and V caches: the layers of one pool in order. */
static void assign_caches(struct model *m, void *pool, int num_blocks, int which) {
    /* bytes of one layer's K or V */
    const size_t per_layer = (size_t)num_blocks * m->p.block_size * m->kv_dim * folio_dtype_size(m->p.kv_dtype);
    size_t i = 0;
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const int sliding = (m->cfg.layer_flags[l] & LAYER_SLIDING) != 0;
        if (which >= 0 && sliding != which) continue;
        m->layers[l].k_cache = (char *)pool + (2 * i) * per_layer;
        m->layers[l].v_cache = (char *)pool + (2 * i + 1) * per_layer;
        i++;
    }
}

int model_alloc_kv(struct model *m, int num_blocks) {
    if (m->kv_pool) return folio_err(FOLIO_EINVAL, "KV cache already allocated");
    if (num_blocks < 1) return folio_err(FOLIO_EINVAL, "the KV cache needs at least one block");
    if (!(m->kv_pool = alloc_pool(m, num_blocks, m->cfg.num_layers))) return FOLIO_ENOMEM;
    assign_caches(m, m->kv_pool, num_blocks, -1);
    m->num_blocks = num_blocks;
    return 0;
}

int model_alloc_kv_split(struct model *m, int num_blocks, int num_local_blocks) {
    if (m->kv_pool) return folio_err(FOLIO_EINVAL, "KV cache already allocated");
    if (!model_has_local_layers(m)) return folio_err(FOLIO_EINVAL, "the model has no sliding layers to split off");
    if (num_blocks < 1 || num_local_blocks < 1) return folio_err(FOLIO_EINVAL, "each KV pool needs a block");
    const int sliding = config_num_sliding_layers(&m->cfg);
    int rc = 0;
    const size_t T = (size_t)m->p.max_num_batched_tokens, S = (size_t)m->p.max_num_seqs;
    if (!m->d_slots_local) { /* once: kept across re-allocations of the pools */
        m->d_slots_local = scratch(m, T, 4, &rc);
        m->d_block_tables_local = scratch(m, S * (size_t)m->max_blocks_per_seq, 4, &rc);
        m->d_copies_local = scratch(m, 2 * S, 4, &rc);
        if (rc) return rc;
    }
    if (!(m->kv_pool = alloc_pool(m, num_blocks, m->cfg.num_layers - sliding))) return FOLIO_ENOMEM;
    if (!(m->kv_pool_local = alloc_pool(m, num_local_blocks, sliding))) {
        backend_release(m->b, m->kv_pool);
        m->kv_pool = NULL;
        return FOLIO_ENOMEM;
    }
    assign_caches(m, m->kv_pool, num_blocks, 0);
    assign_caches(m, m->kv_pool_local, num_local_blocks, 1);
    m->num_blocks = num_blocks;
    m->num_local_blocks = num_local_blocks;
    m->num_local_layers = sliding;
    return 0;
}

void model_free(struct model *m) {
    if (!m) return;
    if (m->layers) {
        for (int l = 0; l < m->cfg.num_layers; l++) {
            struct layer *L = &m->layers[l];
            struct backend_weight *ws[] = {&L->q,      &L->k,    &L->v,   &L->o,    &L->gate, &L->up,
                                           &L->down,   &L->router, &L->xgate, &L->xup, &L->xdown};
            for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) backend_free_weight(m->b, ws[i]);
            float *vs[] = {L->q_bias,        L->k_bias,        L->v_bias, L->o_bias, L->attn_norm, L->mlp_norm,
                           L->attn_post_norm, L->mlp_post_norm, L->q_norm, L->k_norm};
            for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++)
                if (vs[i]) backend_release(m->b, vs[i]);
            for (int i = 0; i < 3; i++) free(L->xhost[i]);
        }
        free(m->layers);
    }
    backend_free_weight(m->b, &m->embed);
    backend_free_weight(m->b, &m->lm_head);
    for (int i = 0; i < m->num_graphs; i++) backend_graph_free(m->b, m->graph[i]);
    free(m->graph_host);
    free(m->graph_tables);
    free(m->graph_local);
    void *bufs[] = {m->final_norm, m->inv_freq, m->inv_freq_local, m->router_logits, m->d_long_sel, m->kv_pool, m->d_tokens, m->d_positions, m->d_seq_idx,
                    m->d_slots, m->d_block_tables, m->d_logits_idx, m->d_copies, m->kv_pool_local, m->d_slots_local,
                    m->d_block_tables_local, m->d_copies_local, m->x, m->xn, m->delta, m->q, m->k, m->v,
                    m->attn, m->gate, m->up, m->rows, m->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) backend_release(m->b, bufs[i]);
    free(m->seq_max_pos);
    free(m->long_sel);
    safetensors_free(m->st);
    free(m);
}

/* A bad batch is a caller bug, but it would read or write outside the KV pool, so it is
 * rejected rather than trusted. */
static int check_batch(struct model *m, const struct model_batch *bt) {
    const int T = bt->num_tokens, S = bt->num_seqs, bs = m->p.block_size;
    if (!m->kv_pool) return folio_err(FOLIO_EINVAL, "no KV cache allocated");
    if (m->num_local_blocks && (!bt->block_tables_local || !bt->slot_mapping_local))
        return folio_err(FOLIO_EINVAL, "a split KV cache needs the sliding layers' tables and slots");
    if (T < 1 || T > m->p.max_num_batched_tokens || S < 1 || S > m->p.max_num_seqs || bt->num_logits < 0 ||
        bt->num_logits > m->p.max_num_logits)
        return folio_err(FOLIO_EINVAL, "batch of %d tokens, %d seqs, %d logits exceeds the limits (%d, %d, %d)",
                         T, S, bt->num_logits, m->p.max_num_batched_tokens, m->p.max_num_seqs,
                         m->p.max_num_logits);
    const int W = bt->block_table_width ? bt->block_table_width : m->max_blocks_per_seq;
    if (W < 1 || W > m->max_blocks_per_seq)
        return folio_err(FOLIO_EINVAL, "block table width %d is outside [1, %d]", W, m->max_blocks_per_seq);
    for (int s = 0; s < S; s++) m->seq_max_pos[s] = -1;
    for (int t = 0; t < T; t++) {
        if (bt->tokens[t] < 0 || bt->tokens[t] >= m->cfg.vocab_size)
            return folio_err(FOLIO_EINVAL, "token id %d is outside the vocabulary (%d)", bt->tokens[t],
                             m->cfg.vocab_size);
        if (bt->positions[t] < 0 || bt->positions[t] >= m->p.max_model_len)
            return folio_err(FOLIO_EINVAL, "position %d is outside the model length %d", bt->positions[t],
                             m->p.max_model_len);
        if (bt->seq_idx[t] < 0 || bt->seq_idx[t] >= S) return folio_err(FOLIO_EINVAL, "bad sequence index");
        if (bt->slot_mapping[t] < -1 || bt->slot_mapping[t] >= m->num_blocks * bs)
            return folio_err(FOLIO_EINVAL, "slot %d is outside the KV cache", bt->slot_mapping[t]);
        if (m->num_local_blocks &&
            (bt->slot_mapping_local[t] < -1 || bt->slot_mapping_local[t] >= m->num_local_blocks * bs))
            return folio_err(FOLIO_EINVAL, "slot %d is outside the sliding layers' KV cache", bt->slot_mapping_local[t]);
        if (bt->positions[t] > m->seq_max_pos[bt->seq_idx[t]]) m->seq_max_pos[bt->seq_idx[t]] = bt->positions[t];
    }
    m->max_context = 0;
    for (int s = 0; s < S; s++)
        if (m->seq_max_pos[s] + 1 > m->max_context) m->max_context = m->seq_max_pos[s] + 1;
    if ((m->max_context + bs - 1) / bs > W)
        return folio_err(FOLIO_EINVAL, "block table width %d does not reach position %d", W, m->max_context - 1);
    for (int s = 0; s < S; s++)
        for (int i = 0; i <= m->seq_max_pos[s] / bs && m->seq_max_pos[s] >= 0; i++) {
            int32_t blk = bt->block_tables[(size_t)s * W + i];
            if (blk < 0 || blk >= m->num_blocks) return folio_err(FOLIO_EINVAL, "block table holds block %d", blk);
            if (m->num_local_blocks &&
                ((blk = bt->block_tables_local[(size_t)s * W + i]) < 0 || blk >= m->num_local_blocks))
                return folio_err(FOLIO_EINVAL, "the sliding layers' block table holds block %d", blk);
        }
    for (int i = 0; i < bt->num_logits; i++)
        if (bt->logits_idx[i] < 0 || bt->logits_idx[i] >= T) return folio_err(FOLIO_EINVAL, "bad logits index");
    if (bt->num_copies < 0 || bt->num_copies > m->p.max_num_seqs)
        return folio_err(FOLIO_EINVAL, "%d block copies exceed the limit %d", bt->num_copies, m->p.max_num_seqs);
    for (int i = 0; i < 2 * bt->num_copies; i++)
        if (bt->block_copies[i] < 0 || bt->block_copies[i] >= m->num_blocks)
            return folio_err(FOLIO_EINVAL, "block copy names block %d", bt->block_copies[i]);
    if (bt->num_copies_local < 0 || bt->num_copies_local > (m->num_local_blocks ? m->p.max_num_seqs : 0))
        return folio_err(FOLIO_EINVAL, "%d sliding-layer block copies exceed the limit", bt->num_copies_local);
    for (int i = 0; i < 2 * bt->num_copies_local; i++)
        if (bt->block_copies_local[i] < 0 || bt->block_copies_local[i] >= m->num_local_blocks)
            return folio_err(FOLIO_EINVAL, "block copy names sliding-layer block %d", bt->block_copies_local[i]);
    return 0;
}

static int table_width(const struct model *m, const struct model_batch *bt) {
    return bt->block_table_width ? bt->block_table_width : m->max_blocks_per_seq;
}

/* Everything the forward pass reads from the host, into the device scratch. */
static int upload_batch(struct model *m, const struct model_batch *bt) {
    struct backend *b = m->b;
    const size_t n4 = sizeof(int32_t) * (size_t)bt->num_tokens;
    int rc;
    if ((rc = backend_upload(b, m->d_tokens, bt->tokens, n4)) || (rc = backend_upload(b, m->d_positions, bt->positions, n4)) ||
        (rc = backend_upload(b, m->d_seq_idx, bt->seq_idx, n4)) || (rc = backend_upload(b, m->d_slots, bt->slot_mapping, n4)) ||
        (rc = backend_upload(b, m->d_block_tables, bt->block_tables,
                         sizeof(int32_t) * (size_t)bt->num_seqs * table_width(m, bt))) ||
        (rc = backend_upload(b, m->d_logits_idx, bt->logits_idx, sizeof(int32_t) * (size_t)bt->num_logits)))
        return rc;
    if (m->d_long_sel) {
        const int orig = m->cfg.longrope.original_max_position_embeddings;
        for (int t = 0; t < bt->num_tokens; t++) {
            const int s = bt->seq_idx[t];
            const int len = bt->seq_prompt_len ? bt->seq_prompt_len[s] : m->seq_max_pos[s] + 1;
            m->long_sel[t] = (len > bt->positions[t] + 1 ? len : bt->positions[t] + 1) > orig;
        }
        if ((rc = backend_upload(b, m->d_long_sel, m->long_sel, n4))) return rc;
    }
    const size_t block_bytes = (size_t)m->p.block_size * m->kv_dim * folio_dtype_size(m->p.kv_dtype);
    if (m->num_local_blocks) {
        if ((rc = backend_upload(b, m->d_slots_local, bt->slot_mapping_local, n4)) ||
            (rc = backend_upload(b, m->d_block_tables_local, bt->block_tables_local,
                                 sizeof(int32_t) * (size_t)bt->num_seqs * table_width(m, bt))))
            return rc;
        if (bt->num_copies_local > 0) {
            if ((rc = backend_upload(b, m->d_copies_local, bt->block_copies_local,
                                     sizeof(int32_t) * 2 * (size_t)bt->num_copies_local)))
                return rc;
            backend_copy_blocks(b, m->kv_pool_local, 2 * m->num_local_layers, block_bytes * m->num_local_blocks,
                                block_bytes, m->d_copies_local, bt->num_copies_local);
        }
    }
    if (bt->num_copies > 0) {
        if ((rc = backend_upload(b, m->d_copies, bt->block_copies, sizeof(int32_t) * 2 * (size_t)bt->num_copies)))
            return rc;
        backend_copy_blocks(b, m->kv_pool, 2 * (m->cfg.num_layers - m->num_local_layers), block_bytes * m->num_blocks,
                            block_bytes, m->d_copies, bt->num_copies);
    }
    return 0;
}

/* Enqueues the forward pass of T uploaded tokens up to the LM head's output for their first
 * num_logits rows (m->logits). It never syncs, so that it can be recorded as a graph. */
static void enqueue_attention(struct model *m, const struct layer *L, int T, int max_context, int table_width) {
    struct backend *b = m->b;
    const struct model_config *c = &m->cfg;
    const struct backend_matmul_args qkv[3] = {
        {&L->q, L->q_bias, m->q}, {&L->k, L->k_bias, m->k}, {&L->v, L->v_bias, m->v}};
    backend_matmul(b, m->xn, T, qkv, 3);
    if (L->q_norm) { /* each head on its own: [T * heads, head_dim] rows, in place */
        backend_add_rms_norm(b, m->q, NULL, L->q_norm, m->q, T * c->num_heads, c->head_dim, c->rms_norm_eps);
        backend_add_rms_norm(b, m->k, NULL, L->k_norm, m->k, T * c->num_kv_heads, c->head_dim, c->rms_norm_eps);
    }
    const int longrope = c->rope_scaling.type == ROPE_SCALING_LONGROPE;
    const struct backend_rope_args rope = {
        .q = m->q, .k = m->k, .q_stride = m->q_dim, .k_stride = m->kv_dim, .positions = m->d_positions,
        .inv_freq = L->inv_freq, .long_sel = longrope ? m->d_long_sel : NULL, .T = T, .nh = c->num_heads,
        .nkv = c->num_kv_heads, .head_dim = c->head_dim, .rot_dim = c->rotary_dim,
        .mscale = longrope ? (float)c->longrope.attention_factor : 1.0f};
    backend_rope(b, &rope);
    const int local = m->num_local_blocks && L->window;
    backend_reshape_and_cache(b, m->k, m->v, m->kv_dim, local ? m->d_slots_local : m->d_slots, L->k_cache, L->v_cache,
                              m->p.kv_dtype, L->k_scale, L->v_scale, T, c->num_kv_heads, c->head_dim, m->p.block_size);
    const struct backend_attention_args ap = {
        .q = m->q, .k_cache = L->k_cache, .v_cache = L->v_cache, .kv_dtype = m->p.kv_dtype,
        .k_scale = L->k_scale, .v_scale = L->v_scale,
        .block_tables = local ? m->d_block_tables_local : m->d_block_tables,
        .seq_idx = m->d_seq_idx, .positions = m->d_positions, .out = m->attn, .num_tokens = T,
        .num_heads = c->num_heads, .num_kv_heads = c->num_kv_heads, .head_dim = c->head_dim,
        .block_size = m->p.block_size, .max_blocks_per_seq = table_width, .sliding_window = L->window,
        .scale = c->attn_scale, .softcap = c->attn_softcap, .max_context = max_context};
    backend_attention(b, &ap);
    const struct backend_matmul_args o = {&L->o, L->o_bias, m->delta};
    backend_matmul(b, m->attn, T, &o, 1);
}

/* The MLP of m->xn into m->delta: dense, or the experts a router picks for each token. */
static void enqueue_mlp(struct model *m, const struct layer *L, int T, int l) {
    struct backend *b = m->b;
    const struct model_config *c = &m->cfg;
    const enum backend_act act = c->act == MODEL_ACT_GELU_TANH ? BACKEND_ACT_GELU_TANH : BACKEND_ACT_SILU;
    if (c->layer_flags[l] & LAYER_MOE) {
        const struct backend_matmul_args router = {&L->router, NULL, m->router_logits};
        backend_matmul(b, m->xn, T, &router, 1);
        const struct backend_moe_args moe = {
            .x = m->xn, .router_logits = m->router_logits, .gate = &L->xgate, .up = &L->xup, .down = &L->xdown,
            .out = m->delta, .T = T, .hidden = c->hidden_size, .inter = c->moe_intermediate_size,
            .num_experts = c->num_experts, .top_k = c->num_experts_per_tok, .norm_topk_prob = c->norm_topk_prob,
            .act = act};
        backend_moe(b, &moe);
        return;
    }
    const struct backend_matmul_args gu[2] = {{&L->gate, NULL, m->gate}, {&L->up, NULL, m->up}};
    backend_matmul(b, m->xn, T, gu, 2);
    backend_glu(b, act, m->gate, m->up, m->gate, T, c->intermediate_size);
    const struct backend_matmul_args down = {&L->down, NULL, m->delta};
    backend_matmul(b, m->gate, T, &down, 1);
}

/* Enqueues the forward pass of T uploaded tokens up to the LM head's output for their first
 * num_logits rows (m->logits). It never syncs, so that it can be recorded as a graph. */
static void enqueue_forward(struct model *m, int T, int num_logits, int max_context, int table_width) {
    struct backend *b = m->b;
    const struct model_config *c = &m->cfg;
    const int H = c->hidden_size;
    backend_embed(b, &m->embed, m->d_tokens, T, m->x);
    if (m->embed_scale > 0) backend_scale(b, m->x, (size_t)T * H, m->embed_scale);
    const float *pending = NULL; /* sublayer output not yet added to the residual stream x */
    for (int l = 0; l < c->num_layers; l++) {
        const struct layer *L = &m->layers[l];
        backend_add_rms_norm(b, m->x, pending, L->attn_norm, m->xn, T, H, c->rms_norm_eps);
        enqueue_attention(m, L, T, max_context, table_width);
        if (L->attn_post_norm) backend_add_rms_norm(b, m->delta, NULL, L->attn_post_norm, m->delta, T, H, c->rms_norm_eps);
        backend_add_rms_norm(b, m->x, m->delta, L->mlp_norm, m->xn, T, H, c->rms_norm_eps);
        enqueue_mlp(m, L, T, l);
        if (L->mlp_post_norm) backend_add_rms_norm(b, m->delta, NULL, L->mlp_post_norm, m->delta, T, H, c->rms_norm_eps);
        pending = m->delta;
    }
    if (num_logits == 0) return;
    /* The final norm is per row, so only the rows whose logits are wanted need it; the
     * residual add must still cover them, and gathering first keeps it to those rows. */
    backend_gather_rows(b, m->x, m->d_logits_idx, num_logits, H, m->rows);
    backend_gather_rows(b, m->delta, m->d_logits_idx, num_logits, H, m->xn);
    backend_add_rms_norm(b, m->rows, m->xn, m->final_norm, m->rows, num_logits, H, c->rms_norm_eps);
    const struct backend_matmul_args head = {&m->lm_head, NULL, m->logits};
    backend_matmul(b, m->rows, num_logits, &head, 1);
    if (c->final_softcap > 0) backend_softcap(b, m->logits, (size_t)num_logits * c->vocab_size, c->final_softcap);
}

/* The recorded graph that serves bt (the smallest that holds it), or -1: it needs every
 * token's logits in order and a context within the graphs' bound. */
static int graph_for(const struct model *m, const struct model_batch *bt) {
    const int T = bt->num_tokens;
    if (m->num_graphs == 0 || bt->num_logits != T || m->max_context > m->graph_context ||
        T > m->graph_T[m->num_graphs - 1])
        return -1;
    for (int i = 0; i < T; i++)
        if (bt->logits_idx[i] != i) return -1;
    int g = 0;
    while (m->graph_T[g] < T) g++;
    return g;
}

/* bt padded to graph g's size: the extra tokens are token 0 at position 0 of sequence 0 with
 * no KV slot, so they write nothing and read one cached position. */
static int run_graph(struct model *m, const struct model_batch *bt, int g) {
    const int T = bt->num_tokens, Tg = m->graph_T[g], cap = m->graph_T[m->num_graphs - 1];
    int32_t *tok = m->graph_host, *pos = tok + cap, *seq = pos + cap, *slot = seq + cap, *idx = slot + cap;
    memcpy(tok, bt->tokens, sizeof(int32_t) * (size_t)T);
    memcpy(pos, bt->positions, sizeof(int32_t) * (size_t)T);
    memcpy(seq, bt->seq_idx, sizeof(int32_t) * (size_t)T);
    memcpy(slot, bt->slot_mapping, sizeof(int32_t) * (size_t)T);
    for (int i = T; i < Tg; i++) {
        tok[i] = pos[i] = seq[i] = 0;
        slot[i] = -1;
    }
    /* The graphs read tables graph_width wide (the widest their context bound needs). */
    const int W = table_width(m, bt), Wg = m->graph_width;
    for (int s = 0; s < bt->num_seqs; s++)
        memcpy(m->graph_tables + (size_t)s * Wg, bt->block_tables + (size_t)s * W,
               sizeof(int32_t) * (size_t)(W < Wg ? W : Wg));
    struct model_batch padded = *bt;
    if (m->num_local_blocks) {
        int32_t *lslot = m->graph_local, *ltab = lslot + cap;
        memcpy(lslot, bt->slot_mapping_local, sizeof(int32_t) * (size_t)T);
        for (int i = T; i < Tg; i++) lslot[i] = -1;
        for (int s = 0; s < bt->num_seqs; s++)
            memcpy(ltab + (size_t)s * Wg, bt->block_tables_local + (size_t)s * W,
                   sizeof(int32_t) * (size_t)(W < Wg ? W : Wg));
        padded.slot_mapping_local = lslot;
        padded.block_tables_local = ltab;
    }
    padded.block_tables = m->graph_tables;
    padded.block_table_width = Wg;
    padded.num_tokens = padded.num_logits = Tg;
    padded.tokens = tok;
    padded.positions = pos;
    padded.seq_idx = seq;
    padded.slot_mapping = slot;
    padded.logits_idx = idx;
    int rc = upload_batch(m, &padded);
    if (rc) return rc;
    m->graph_replays++;
    return backend_graph_launch(m->b, m->graph[g]);
}

/* The forward pass up to the LM head's output, left on the device in m->logits. */
static int run(struct model *m, const struct model_batch *bt) {
    int rc;
    if ((rc = check_batch(m, bt))) return rc;
    const int g = graph_for(m, bt);
    if (g >= 0) return run_graph(m, bt, g);
    if ((rc = upload_batch(m, bt))) return rc;
    enqueue_forward(m, bt->num_tokens, bt->num_logits, m->max_context, table_width(m, bt));
    return bt->num_logits == 0 ? backend_sync(m->b) : 0;
}

int model_capture_graphs(struct model *m, int max_batch) {
    if (!backend_has_graphs(m->b) || !m->kv_pool || m->num_graphs) return 0;
    int limit = max_batch;
    if (limit > m->p.max_num_seqs) limit = m->p.max_num_seqs;
    if (limit > m->p.max_num_batched_tokens) limit = m->p.max_num_batched_tokens;
    if (limit > m->p.max_num_logits) limit = m->p.max_num_logits;
    int n = 0;
    while (n < MAX_GRAPHS && graph_sizes[n] <= limit) n++;
    if (n == 0) return 0;
    const int cap = graph_sizes[n - 1];
    m->graph_context = m->p.max_model_len < GRAPH_MAX_CONTEXT ? m->p.max_model_len : GRAPH_MAX_CONTEXT;
    m->graph_width = (m->graph_context + m->p.block_size - 1) / m->p.block_size;
    int32_t *host = calloc(5 * (size_t)cap + (size_t)m->graph_width, sizeof(int32_t));
    m->graph_tables = calloc((size_t)m->p.max_num_seqs * m->graph_width, sizeof(int32_t));
    if (m->num_local_blocks)
        m->graph_local = calloc((size_t)cap + (size_t)m->p.max_num_seqs * m->graph_width, sizeof(int32_t));
    if (!host || !m->graph_tables || (m->num_local_blocks && !m->graph_local)) {
        free(host);
        return folio_err(FOLIO_ENOMEM, "out of memory");
    }
    int rc = 0;
    m->graph_host = host;
    int32_t *idx = host + 4 * (size_t)cap, *table = host + 5 * (size_t)cap;
    for (int i = 0; i < cap; i++) idx[i] = i;
    for (int i = 1; i < m->graph_width; i++) table[i] = -1;
    for (int i = 0; i < cap; i++) host[3 * (size_t)cap + i] = -1; /* no KV slot */
    for (int i = 0; i < n && !rc; i++) {
        const int T = graph_sizes[i];
        /* A warm-up pass of the same shape first: cuBLAS picks and loads its kernels outside
         * the recording. Sequence 0 at position 0, reading block 0, writing nothing. */
        const struct model_batch warm = {
            .num_tokens = T, .tokens = host, .positions = host + cap, .seq_idx = host + 2 * (size_t)cap,
            .slot_mapping = host + 3 * (size_t)cap, .num_seqs = 1, .block_tables = table,
            .block_table_width = m->graph_width, .num_logits = T, .logits_idx = idx,
            .block_tables_local = table, .slot_mapping_local = host + 3 * (size_t)cap};
        if ((rc = check_batch(m, &warm)) || (rc = upload_batch(m, &warm))) break;
        enqueue_forward(m, T, T, m->max_context, m->graph_width);
        if ((rc = backend_sync(m->b)) || (rc = backend_graph_begin(m->b))) break;
        enqueue_forward(m, T, T, m->graph_context, m->graph_width);
        if ((rc = backend_graph_end(m->b, &m->graph[i]))) break;
        m->graph_T[i] = T;
        m->num_graphs = i + 1;
    }
    if (rc) {
        for (int i = 0; i < m->num_graphs; i++) backend_graph_free(m->b, m->graph[i]);
        m->num_graphs = 0;
        return rc;
    }
    return m->num_graphs;
}

int model_num_graphs(const struct model *m, int *largest) {
    if (largest) *largest = m->num_graphs ? m->graph_T[m->num_graphs - 1] : 0;
    return m->num_graphs;
}

long long model_graph_replays(const struct model *m) { return m->graph_replays; }

int model_forward(struct model *m, const struct model_batch *bt, float *logits) {
    int rc = run(m, bt);
    if (rc || bt->num_logits == 0) return rc;
    return backend_download(m->b, logits, m->logits, sizeof(float) * (size_t)bt->num_logits * m->cfg.vocab_size);
}

int model_has_device_argmax(const struct model *m) { return backend_has_argmax(m->b); }

int model_forward_argmax(struct model *m, const struct model_batch *bt, int32_t *ids) {
    if (!backend_has_argmax(m->b)) return folio_err(FOLIO_EUNSUP, "this backend has no device argmax");
    int rc = run(m, bt);
    if (rc || bt->num_logits == 0) return rc;
    return backend_argmax(m->b, m->logits, bt->num_logits, m->cfg.vocab_size, ids);
}

size_t model_activation_bytes(const struct model *m) {
    struct backend_mem mem = {0};
    if (backend_mem_info(m->b, &mem)) mem.reserved = 0;
    return m->scratch_bytes + mem.reserved;
}

void model_set_max_model_len(struct model *m, int len) {
    if (len > 0 && len < m->p.max_model_len) m->p.max_model_len = len;
}

void model_free_kv(struct model *m) {
    if (m->kv_pool) backend_release(m->b, m->kv_pool);
    if (m->kv_pool_local) backend_release(m->b, m->kv_pool_local);
    m->kv_pool = m->kv_pool_local = NULL;
    m->num_blocks = m->num_local_blocks = m->num_local_layers = 0;
    for (int l = 0; l < m->cfg.num_layers; l++) m->layers[l].k_cache = m->layers[l].v_cache = NULL;
}

/* Tokens spread over as many sequences as the limits allow, each at positions 0.. (wrapped at
 * max_model_len), every block-table entry block 0 and no slot written: the pass computes at
 * full size and leaves the cache as it was. */
int model_profile(struct model *m) {
    const int T = m->p.max_num_batched_tokens;
    int S = m->p.max_num_seqs < T ? m->p.max_num_seqs : T;
    const int L = m->p.max_num_logits < S ? m->p.max_num_logits : S;
    int rc = 0, own_kv = !m->kv_pool;
    int32_t *buf = calloc((size_t)4 * T + (size_t)S * m->max_blocks_per_seq + (size_t)L, sizeof(int32_t));
    float *logits = NULL;
    if (!buf) return folio_err(FOLIO_ENOMEM, "out of memory");
    int32_t *tokens = buf, *positions = tokens + T, *seq_idx = positions + T, *slots = seq_idx + T;
    int32_t *tables = slots + T, *logits_idx = tables + (size_t)S * m->max_blocks_per_seq;
    const int per = T / S;
    for (int t = 0; t < T; t++) {
        const int s = t / per < S ? t / per : S - 1;
        seq_idx[t] = s;
        positions[t] = (t - s * per) % m->p.max_model_len;
        slots[t] = -1;
    }
    for (int i = 0; i < L; i++) logits_idx[i] = (i + 1) * per - 1;
    const struct model_batch bt = {.num_tokens = T, .tokens = tokens, .positions = positions, .seq_idx = seq_idx,
                                   .slot_mapping = slots, .num_seqs = S, .block_tables = tables,
                                   .num_logits = L, .logits_idx = logits_idx};
    if (own_kv && (rc = model_alloc_kv(m, 1))) goto out;
    if (model_has_device_argmax(m)) {
        rc = model_forward_argmax(m, &bt, logits_idx); /* the ids land over the indices, now used */
    } else if (!(logits = malloc(sizeof(float) * (size_t)L * m->cfg.vocab_size))) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory");
    } else {
        rc = model_forward(m, &bt, logits);
    }
out:
    if (own_kv) model_free_kv(m);
    free(logits);
    free(buf);
    return rc;
}
