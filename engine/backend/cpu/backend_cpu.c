/* backend_cpu: the CPU implementation of backend.h. Ops split their work into tasks over a
 * spinning thread pool (threadpool.h); the inner loops are cpu_kernels.h. Weights in the
 * requested dtype are borrowed straight from the safetensors mmap, so loading a model costs
 * no copy and its pages are shared between processes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend_impl.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/cpu_moe.h"
#include "base/quant.h"
#include "base/threadpool.h"

/* Below this much work an op runs on the calling thread: waking the pool would cost more. */
#define SERIAL_FLOPS 65536

struct cpu_ctx {
    struct threadpool *tp;
    const struct cpu_kernels *k;
    struct cpu_moe *moe; /* backend_moe's buffers, from reserve (models with experts only) */
    int has_int_weights;  /* a Q8/Q4/Q4Z weight was loaded: reserve sizes xq */
    struct quant_x8 *xq;  /* [max_tokens, ceil(max_cols / 32)]: a matmul's input, quantized */
    size_t xq_blocks;     /* capacity of xq */
    size_t reserved_blocks; /* what the last reserve asked xq to hold (0: none yet) */
};

/* xq for the reserved batch, once integer weights exist (load time only). */
static int alloc_xq(struct backend *b);

static struct cpu_ctx *ctx_of(struct backend *b) { return b->ctx; }

/* calloc rather than malloc + memset: large blocks come fresh from mmap, already zero, so a
 * multi-GiB KV pool costs no memory until its pages are written. The 64-byte alignment is
 * carved out of the block, with the original pointer stored just below it. */
static void *cpu_alloc(struct backend *b, size_t nbytes) {
    char *raw = calloc(1, nbytes + 64 + sizeof(void *));
    if (!raw) return NULL;
    uintptr_t p = ((uintptr_t)raw + sizeof(void *) + 63) & ~(uintptr_t)63;
    ((void **)p)[-1] = raw;
    return (void *)p;
}

static void cpu_release(struct backend *b, void *p) {
    if (p) free(((void **)p)[-1]);
}

static int cpu_copy(struct backend *b, void *dst, const void *src, size_t n) {
    if (n) memcpy(dst, src, n);
    return 0;
}

static int cpu_load_weight(struct backend *b, const void *src, enum folio_dtype src_dtype, int64_t rows,
                           int64_t cols, enum folio_dtype dtype, struct backend_weight *out) {
    size_t es = folio_dtype_size(dtype), n = (size_t)rows * (size_t)cols;
    memset(out, 0, sizeof *out);
    out->dtype = dtype;
    out->rows = rows;
    out->cols = cols;
    /* Borrow the mapping when no conversion is needed and element access is aligned. */
    if (src_dtype == dtype && ((uintptr_t)src % es) == 0) {
        out->data = src;
        return 0;
    }
    void *dst = cpu_alloc(b, n * es);
    if (!dst) return folio_err(FOLIO_ENOMEM, "out of memory for a %lldx%lld weight", (long long)rows, (long long)cols);
    if (src_dtype == dtype) {
        memcpy(dst, src, n * es);
    } else {
        for (size_t i = 0; i < n; i++) {
            float f = folio_widen(src, src_dtype, i);
            switch (dtype) {
            case FOLIO_F32: ((float *)dst)[i] = f; break;
            case FOLIO_F16: ((uint16_t *)dst)[i] = folio_f32_to_f16(f); break;
            case FOLIO_BF16: ((uint16_t *)dst)[i] = folio_f32_to_bf16(f); break;
            default: break; /* backend_load_weight routes the other dtypes to load_quant */
            }
        }
    }
    out->data = dst;
    out->owned = dst;
    return 0;
}

/* Quantized weights: the blocks are copied (the loader's repacked or quantized buffer is
 * temporary), FP8 bytes are borrowed from the mmap when they may be; row scales and the
 * column order always get an allocation of their own. */
static int cpu_load_quant(struct backend *b, const struct backend_quant_src *src, struct backend_weight *out) {
    const size_t bytes = quant_row_bytes(src->dtype, src->cols) * (size_t)src->rows;
    const size_t aux = (src->scale ? sizeof(float) * (size_t)src->rows : 0) +
                       (src->perm ? sizeof(int32_t) * (size_t)src->cols : 0);
    memset(out, 0, sizeof *out);
    out->dtype = src->dtype;
    out->rows = src->rows;
    out->cols = src->cols;
    if (src->borrow && src->dtype == FOLIO_FP8) {
        out->data = src->data;
    } else if (src->dtype == FOLIO_Q4) { /* the kernels' four-row groups (cpu_qkernels.h) */
        if (!(out->owned = cpu_alloc(b, cpu_q4x4_bytes(src->rows, src->cols)))) goto oom;
        cpu_q4x4_pack(src->data, src->rows, src->cols, out->owned);
        out->data = out->owned;
    } else {
        if (!(out->owned = cpu_alloc(b, bytes))) goto oom;
        memcpy(out->owned, src->data, bytes);
        out->data = out->owned;
    }
    if (aux) {
        char *p = cpu_alloc(b, aux);
        if (!(out->owned_aux = p)) goto oom;
        if (src->scale) {
            memcpy(p, src->scale, sizeof(float) * (size_t)src->rows);
            out->scale = (const float *)p;
            p += sizeof(float) * (size_t)src->rows;
        }
        if (src->perm) {
            memcpy(p, src->perm, sizeof(int32_t) * (size_t)src->cols);
            out->perm = (const int32_t *)p;
        }
    }
    if (quant_is_blocked(src->dtype)) {
        ctx_of(b)->has_int_weights = 1;
        /* a weight loaded after reserve still gets its activation buffer */
        if (ctx_of(b)->reserved_blocks && !ctx_of(b)->xq && alloc_xq(b)) {
            cpu_release(b, out->owned_aux);
            cpu_release(b, out->owned);
            memset(out, 0, sizeof *out);
            return FOLIO_ENOMEM;
        }
    }
    return 0;
oom:
    cpu_release(b, out->owned);
    memset(out, 0, sizeof *out);
    return folio_err(FOLIO_ENOMEM, "out of memory for a %lldx%lld %s weight", (long long)src->rows,
                     (long long)src->cols, folio_dtype_name(src->dtype));
}

static void cpu_free_weight(struct backend *b, struct backend_weight *w) {
    cpu_release(b, w->owned_aux);
    cpu_release(b, w->owned);
    memset(w, 0, sizeof *w);
}

static void cpu_embed(struct backend *b, const struct backend_weight *table, const int32_t *tokens, int n, float *out) {
    const size_t cols = (size_t)table->cols, es = folio_dtype_size(table->dtype);
    for (int t = 0; t < n; t++) {
        const char *row = (const char *)table->data + (size_t)tokens[t] * cols * es;
        for (size_t i = 0; i < cols; i++) out[(size_t)t * cols + i] = folio_widen(row, table->dtype, i);
    }
}

struct norm_job {
    const struct cpu_kernels *k;
    float *residual;
    const float *delta, *w;
    float *out;
    int dim;
    float eps;
};

static void norm_task(void *p, int r, int thread) {
    const struct norm_job *j = p;
    float *x = j->residual + (size_t)r * j->dim;
    if (j->delta) {
        const float *d = j->delta + (size_t)r * j->dim;
        for (int i = 0; i < j->dim; i++) x[i] += d[i];
    }
    float inv = 1.0f / sqrtf(j->k->sumsq(x, j->dim) / (float)j->dim + j->eps);
    float *o = j->out + (size_t)r * j->dim;
    for (int i = 0; i < j->dim; i++) o[i] = x[i] * inv * j->w[i];
}

static void cpu_add_rms_norm(struct backend *b, float *residual, const float *delta, const float *w, float *out,
                             int rows, int dim, float eps) {
    struct norm_job j = {ctx_of(b)->k, residual, delta, w, out, dim, eps};
    if ((size_t)rows * dim < SERIAL_FLOPS) {
        for (int r = 0; r < rows; r++) norm_task(&j, r, 0);
    } else {
        threadpool_run(ctx_of(b)->tp, rows, norm_task, &j);
    }
}

#define MAX_FUSED 4
struct mm_job {
    const struct cpu_kernels *k;
    const float *x;
    const struct quant_x8 *xq; /* x quantized, for the integer weights among mm */
    int T;
    const struct backend_matmul_args *mm;
    int n;
    int rows_per_task;
    int task_start[MAX_FUSED + 1]; /* first task of each product */
};

static void mm_task(void *p, int task, int thread) {
    const struct mm_job *j = p;
    int i = 0;
    while (task >= j->task_start[i + 1]) i++;
    const struct backend_matmul_args *m = &j->mm[i];
    const struct backend_weight *w = m->w;
    int n0 = (task - j->task_start[i]) * j->rows_per_task;
    int n1 = n0 + j->rows_per_task;
    if (n1 > w->rows) n1 = (int)w->rows;
    const int K = (int)w->cols, ldo = (int)w->rows;
    if (quant_is_blocked(w->dtype)) {
        j->k->gemm_q[w->dtype](j->xq, j->T, K, w->data, n0, n1, m->out, ldo, m->bias);
    } else if (w->dtype == FOLIO_FP8) {
        j->k->gemm_fp8(j->x, j->T, K, w->data, w->scale, n0, n1, m->out, ldo, m->bias);
    } else {
        j->k->gemm[w->dtype](j->x, j->T, K, w->data, n0, n1, m->out, ldo, m->bias);
    }
}

struct xq_job {
    const struct cpu_kernels *k;
    const float *x;
    const int32_t *perm;
    int K;
    struct quant_x8 *xq;
};

static void xq_task(void *p, int t, int thread) {
    const struct xq_job *j = p;
    j->k->quantize_x8(j->x + (size_t)t * j->K, j->perm, j->K, j->xq + (size_t)t * quant_blocks(j->K));
}

/* One parallel launch over the rows of n products that share x (and, for integer weights,
 * one column order). */
static void matmul_launch(struct backend *b, const float *x, int T, const struct backend_matmul_args *mm, int n) {
    struct cpu_ctx *c = ctx_of(b);
    struct mm_job j = {c->k, x, NULL, T, mm, n, 0, {0}};
    size_t flops = 0;
    int64_t rows = 0;
    const int32_t *perm = NULL;
    int ints = 0;
    for (int i = 0; i < n; i++) {
        rows += mm[i].w->rows;
        if (quant_is_blocked(mm[i].w->dtype)) {
            ints = 1;
            perm = mm[i].w->perm;
        }
    }
    if (ints) {
        const int K = (int)mm[0].w->cols;
        /* reserve sized xq for the largest batch; a caller past it gets nothing done rather
         * than an overflow (model.c always reserves) */
        if (!c->xq || (size_t)T * (size_t)quant_blocks(K) > c->xq_blocks) return;
        struct xq_job q = {c->k, x, perm, K, c->xq};
        if ((size_t)T * (size_t)K < SERIAL_FLOPS) {
            for (int t = 0; t < T; t++) xq_task(&q, t, 0);
        } else {
            threadpool_run(c->tp, T, xq_task, &q);
        }
        j.xq = c->xq;
    }
    j.rows_per_task = cpu_rows_per_task(rows, threadpool_size(c->tp));
    for (int i = 0; i < n; i++) {
        j.task_start[i + 1] = j.task_start[i] + (int)((mm[i].w->rows + j.rows_per_task - 1) / j.rows_per_task);
        flops += (size_t)T * (size_t)mm[i].w->rows * (size_t)mm[i].w->cols;
    }
    if (flops < SERIAL_FLOPS) {
        for (int t = 0; t < j.task_start[n]; t++) mm_task(&j, t, 0);
    } else {
        threadpool_run(c->tp, j.task_start[n], mm_task, &j);
    }
}

/* Products launch together unless their integer weights read x in different column orders
 * (GPTQ act-order): each of those runs on its own, with x quantized in its order. */
static void cpu_matmul(struct backend *b, const float *x, int T, const struct backend_matmul_args *mm, int n) {
    struct backend_matmul_args shared[MAX_FUSED];
    int ns = 0;
    for (int i = 0; i < n; i++) {
        if (quant_is_blocked(mm[i].w->dtype) && mm[i].w->perm) {
            matmul_launch(b, x, T, &mm[i], 1);
        } else {
            shared[ns++] = mm[i];
        }
    }
    if (ns) matmul_launch(b, x, T, shared, ns);
}

static void rotate(float *h, const float *cs, const float *sn, int half) {
    for (int i = 0; i < half; i++) {
        float x0 = h[i], x1 = h[i + half];
        h[i] = x0 * cs[i] - x1 * sn[i];
        h[i + half] = x1 * cs[i] + x0 * sn[i];
    }
}

static void cpu_rope(struct backend *b, const struct backend_rope_args *a) {
    const int half = a->rot_dim / 2;
    float cs[512], sn[512]; /* head_dim <= 1024, checked at load */
    for (int t = 0; t < a->T; t++) {
        const float *inv = a->inv_freq + (a->long_sel && a->long_sel[t] ? half : 0);
        /* Angles in double: at position 1e5 a float product would already be off by ~1e-2 rad. */
        for (int i = 0; i < half; i++) {
            double ang = (double)a->positions[t] * (double)inv[i];
            cs[i] = (float)(cos(ang) * a->mscale);
            sn[i] = (float)(sin(ang) * a->mscale);
        }
        for (int h = 0; h < a->nh; h++) rotate(a->q + (size_t)t * a->q_stride + (size_t)h * a->head_dim, cs, sn, half);
        for (int h = 0; h < a->nkv; h++) rotate(a->k + (size_t)t * a->k_stride + (size_t)h * a->head_dim, cs, sn, half);
    }
}

/* One head's row into a cache of dtype dt (FP8: x / scale). */
static void store_kv_row(void *cache, size_t dst, const float *x, int n, enum folio_dtype dt, float scale) {
    switch (dt) {
    case FOLIO_BF16:
        for (int i = 0; i < n; i++) ((uint16_t *)cache)[dst + i] = folio_f32_to_bf16(x[i]);
        break;
    case FOLIO_FP8: {
        const float inv = 1.0f / scale;
        for (int i = 0; i < n; i++) ((uint8_t *)cache)[dst + i] = quant_f32_to_e4m3(x[i] * inv);
        break;
    }
    default: memcpy((float *)cache + dst, x, sizeof(float) * (size_t)n); break;
    }
}

static void cpu_reshape_and_cache(struct backend *b, const float *k, const float *v, int stride,
                                  const int32_t *slot_mapping, void *k_cache, void *v_cache, enum folio_dtype kv_dtype,
                                  float k_scale, float v_scale, int T, int nkv, int head_dim, int block_size) {
    for (int t = 0; t < T; t++) {
        int32_t slot = slot_mapping[t];
        if (slot < 0) continue;
        size_t blk = (size_t)(slot / block_size), off = (size_t)(slot % block_size);
        for (int h = 0; h < nkv; h++) {
            size_t dst = ((blk * nkv + h) * block_size + off) * head_dim;
            store_kv_row(k_cache, dst, k + (size_t)t * stride + (size_t)h * head_dim, head_dim, kv_dtype, k_scale);
            store_kv_row(v_cache, dst, v + (size_t)t * stride + (size_t)h * head_dim, head_dim, kv_dtype, v_scale);
        }
    }
}

/* Per-task scratch bound (floats): a task's heads x head_dim and heads x block_size. */
#define ATTN_SCRATCH 8192

struct attn_job {
    const struct cpu_kernels *k;
    const struct backend_attention_args *p;
    int group;     /* query heads per KV head */
    int per_task;  /* query heads one task handles (all of a group unless scratch is short) */
    int subtasks;  /* tasks per (token, KV head) */
};

/* One token and the query heads of one KV head (or a slice of them): a single pass over the
 * context, a KV block at a time, with an online softmax, so no buffer grows with the context
 * and each K/V row is read once for all the heads that share it. */
static void attn_task(void *vj, int task, int thread) {
    const struct attn_job *j = vj;
    const struct backend_attention_args *p = j->p;
    const int hd = p->head_dim, bs = p->block_size;
    const int per_tok = p->num_kv_heads * j->subtasks;
    const int t = task / per_tok, kvh = (task % per_tok) / j->subtasks, sub = task % j->subtasks;
    const int h0 = kvh * j->group + sub * j->per_task;
    const int g = j->group - sub * j->per_task < j->per_task ? j->group - sub * j->per_task : j->per_task;
    const int pos = p->positions[t];
    const int start = p->sliding_window > 0 && pos - p->sliding_window + 1 > 0 ? pos - p->sliding_window + 1 : 0;
    const int32_t *table = p->block_tables + (size_t)p->seq_idx[t] * p->max_blocks_per_seq;
    float q[ATTN_SCRATCH], acc[ATTN_SCRATCH], s[ATTN_SCRATCH], m[ATTN_HEADS_MAX], l[ATTN_HEADS_MAX];
    const float *qt = p->q + ((size_t)t * p->num_heads + h0) * hd;
    /* FP8 K/V come out of attn_block times 2^-8: the 2^8 and the layer's scales fold into q
     * and into the output, once per token rather than once per element. */
    const int fp8 = p->kv_dtype == FOLIO_FP8;
    const float qscale = fp8 ? p->scale * (256.0f * p->k_scale) : p->scale, vscale = fp8 ? 256.0f * p->v_scale : 1.0f;
    const size_t es = folio_dtype_size(p->kv_dtype);
    const char *kc = p->k_cache, *vc = p->v_cache;
    for (int i = 0; i < g * hd; i++) q[i] = qt[i] * qscale;
    memset(acc, 0, sizeof(float) * (size_t)g * hd);
    for (int i = 0; i < g; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    for (int p0 = start - start % bs; p0 <= pos; p0 += bs) {
        const size_t base = ((size_t)table[p0 / bs] * p->num_kv_heads + kvh) * bs * hd;
        const int lo = p0 < start ? start - p0 : 0;
        const int hi = pos - p0 + 1 < bs ? pos - p0 + 1 : bs;
        const size_t at = (base + (size_t)lo * hd) * es;
        j->k->attn_block[p->kv_dtype](q, g, kc + at, vc + at, hi - lo, hd, p->softcap, m, l, acc, s);
    }
    float *out = p->out + ((size_t)t * p->num_heads + h0) * hd;
    for (int h = 0; h < g; h++)
        for (int d = 0; d < hd; d++) out[(size_t)h * hd + d] = acc[(size_t)h * hd + d] / l[h] * vscale;
}

static void cpu_attention(struct backend *b, const struct backend_attention_args *p) {
    struct attn_job j = {ctx_of(b)->k, p, p->num_heads / p->num_kv_heads, 0, 0};
    const int widest = p->head_dim > p->block_size ? p->head_dim : p->block_size;
    j.per_task = ATTN_SCRATCH / widest;
    if (j.per_task > ATTN_HEADS_MAX) j.per_task = ATTN_HEADS_MAX;
    if (j.per_task > j.group) j.per_task = j.group;
    j.subtasks = (j.group + j.per_task - 1) / j.per_task;
    const int tasks = p->num_tokens * p->num_kv_heads * j.subtasks;
    /* Rough work: each task reads its context; a short context is not worth a wake-up. */
    if ((size_t)p->num_tokens * p->num_heads * (p->positions[p->num_tokens - 1] + 1) * p->head_dim < SERIAL_FLOPS) {
        for (int t = 0; t < tasks; t++) attn_task(&j, t, 0);
    } else {
        threadpool_run(ctx_of(b)->tp, tasks, attn_task, &j);
    }
}

struct glu_job {
    const struct cpu_kernels *k;
    enum backend_act act;
    const float *gate, *up;
    float *out;
    size_t n;
};

#define GLU_CHUNK 4096
static void glu_task(void *vj, int task, int thread) {
    const struct glu_job *j = vj;
    size_t i0 = (size_t)task * GLU_CHUNK, i1 = i0 + GLU_CHUNK < j->n ? i0 + GLU_CHUNK : j->n;
    if (j->act == BACKEND_ACT_SILU) {
        j->k->silu_mul(j->gate + i0, j->up + i0, j->out + i0, i1 - i0);
    } else {
        for (size_t i = i0; i < i1; i++) j->out[i] = cpu_gelu_tanh(j->gate[i]) * j->up[i];
    }
}

static void cpu_glu(struct backend *b, enum backend_act act, const float *gate, const float *up, float *out, int T,
                    int n) {
    struct glu_job j = {ctx_of(b)->k, act, gate, up, out, (size_t)T * n};
    threadpool_run(ctx_of(b)->tp, (int)((j.n + GLU_CHUNK - 1) / GLU_CHUNK), glu_task, &j);
}

static void cpu_scale(struct backend *b, float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

static void cpu_softcap(struct backend *b, float *x, size_t n, float cap) {
    for (size_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] / cap);
}

static void cpu_moe_block(struct backend *b, const struct backend_moe_args *a) {
    struct cpu_ctx *c = ctx_of(b);
    /* reserve sized the buffers for this model; a caller that skipped it gets nothing done
     * rather than an overflow (model.c always reserves). */
    if (!cpu_moe_fits(c->moe, a->top_k, a->hidden, a->inter, a->num_experts)) return;
    cpu_moe_run(c->moe, c->tp, c->k, a);
}

/* Only the MoE block keeps buffers of its own; batches of more tokens than fit run a chunk
 * of tokens at a time, so 256 tokens' worth bounds them. */
#define MOE_MAX_CHUNK_TOKENS 256
static int alloc_xq(struct backend *b) {
    struct cpu_ctx *c = ctx_of(b);
    cpu_release(b, c->xq);
    c->xq_blocks = 0;
    if (!(c->xq = cpu_alloc(b, c->reserved_blocks * sizeof(struct quant_x8))))
        return folio_err(FOLIO_ENOMEM, "out of memory for quantized activations (%zu blocks)", c->reserved_blocks);
    c->xq_blocks = c->reserved_blocks;
    return 0;
}

static int cpu_reserve(struct backend *b, const struct backend_reserve_args *r) {
    struct cpu_ctx *c = ctx_of(b);
    int rc;
    c->reserved_blocks = (size_t)(r->max_tokens > 0 ? r->max_tokens : 1) * (size_t)quant_blocks(r->max_cols);
    if (c->has_int_weights && (rc = alloc_xq(b))) return rc;
    if (r->moe_experts <= 0) return 0;
    const int k = r->moe_pairs / (r->max_tokens > 0 ? r->max_tokens : 1);
    const int tokens = r->max_tokens < MOE_MAX_CHUNK_TOKENS ? r->max_tokens : MOE_MAX_CHUNK_TOKENS;
    const int pairs = (tokens > 0 ? tokens : 1) * (k > 0 ? k : 1);
    cpu_moe_free(c->moe);
    c->moe = cpu_moe_create(pairs, r->moe_hidden, r->moe_inter, r->moe_experts);
    if (!c->moe) return folio_err(FOLIO_ENOMEM, "out of memory for the expert buffers of %d-token batches", tokens);
    return 0;
}

static void cpu_gather_rows(struct backend *b, const float *x, const int32_t *idx, int n, int dim, float *out) {
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * dim, x + (size_t)idx[i] * dim, sizeof(float) * dim);
}

static void cpu_copy_blocks(struct backend *b, void *pool, int num_caches, size_t cache_bytes, size_t block_bytes,
                            const int32_t *pairs, int n) {
    for (int c = 0; c < num_caches; c++) {
        char *cache = (char *)pool + (size_t)c * cache_bytes;
        for (int i = 0; i < n; i++)
            memcpy(cache + (size_t)pairs[2 * i + 1] * block_bytes, cache + (size_t)pairs[2 * i] * block_bytes,
                   block_bytes);
    }
}

static int cpu_sync(struct backend *b) { return 0; }

static void cpu_free(struct backend *b) {
    if (!b) return;
    struct cpu_ctx *c = b->ctx;
    if (c) {
        threadpool_free(c->tp);
        cpu_moe_free(c->moe);
        cpu_release(b, c->xq);
    }
    free(c);
    free(b);
}

static const struct backend_i cpu_iface = {
    .name = "cpu",
    .kv_dtypes = 1u << FOLIO_F32 | 1u << FOLIO_BF16 | 1u << FOLIO_FP8,
    .free = cpu_free,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_copy,
    .download = cpu_copy,
    .load_weight = cpu_load_weight,
    .free_weight = cpu_free_weight,
    .load_quant = cpu_load_quant,
    .embed = cpu_embed,
    .add_rms_norm = cpu_add_rms_norm,
    .matmul = cpu_matmul,
    .rope = cpu_rope,
    .reshape_and_cache = cpu_reshape_and_cache,
    .attention = cpu_attention,
    .glu = cpu_glu,
    .scale = cpu_scale,
    .softcap = cpu_softcap,
    .moe = cpu_moe_block,
    .copy_blocks = cpu_copy_blocks,
    .gather_rows = cpu_gather_rows,
    .sync = cpu_sync,
    .reserve = cpu_reserve,
};

int backend_cpu_create(const struct backend_cpu_params *p, struct backend **out) {
    struct backend *b = calloc(1, sizeof *b);
    struct cpu_ctx *c = calloc(1, sizeof *c);
    if (!b || !c) goto fail;
    c->k = cpu_kernels_get();
    c->tp = threadpool_create(p ? p->n_threads : 0);
    if (!c->tp) goto fail;
    b->iface = &cpu_iface;
    b->ctx = c;
    *out = b;
    return 0;
fail:
    free(c);
    free(b);
    return folio_err(FOLIO_ENOMEM, "cannot create the CPU backend");
}

const char *backend_cpu_isa(const struct backend *b) { return ((const struct cpu_ctx *)b->ctx)->k->isa; }

struct threadpool *backend_cpu_threadpool(const struct backend *b) { return ((const struct cpu_ctx *)b->ctx)->tp; }
