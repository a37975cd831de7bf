/* backend: the public ops, each forwarding to the backend's vtable slot. One indirect call
 * per op is nothing beside the op itself, and it keeps struct backend opaque to the model. */
#include "backend/backend_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/quant.h"

const char *backend_name(const struct backend *b) { return b->iface->name; }

void backend_free(struct backend *b) {
    if (b) b->iface->free(b);
}

void *backend_alloc(struct backend *b, size_t nbytes) { return b->iface->alloc(b, nbytes); }

void backend_release(struct backend *b, void *p) { b->iface->release(b, p); }

int backend_upload(struct backend *b, void *dst, const void *src, size_t n) {
    return b->iface->upload(b, dst, src, n);
}

int backend_download(struct backend *b, void *dst, const void *src, size_t n) {
    return b->iface->download(b, dst, src, n);
}

int backend_load_quant(struct backend *b, const struct backend_quant_src *src, struct backend_weight *out) {
    memset(out, 0, sizeof *out);
    if (!b->iface->load_quant)
        return folio_err(FOLIO_EUNSUP, "the %s backend has no %s weights", b->iface->name, folio_dtype_name(src->dtype));
    return b->iface->load_quant(b, src, out);
}

/* Quantization at load (--quantization): on the host, a row at a time, so that the model's
 * float matrices are read once and never held widened. The result is handed to load_quant,
 * which copies it (borrow = 0). FP8 gets a scale per row (absmax / 448). */
static int quantize_and_load(struct backend *b, const void *src, enum folio_dtype src_dtype, int64_t rows,
                             int64_t cols, enum folio_dtype dtype, struct backend_weight *out) {
    const size_t row_bytes = quant_row_bytes(dtype, cols);
    char *data = malloc(row_bytes * (size_t)rows);
    float *row = malloc(sizeof(float) * (size_t)cols);
    float *scale = dtype == FOLIO_FP8 ? malloc(sizeof(float) * (size_t)rows) : NULL;
    int rc;
    if (!data || !row || (dtype == FOLIO_FP8 && !scale)) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory quantizing a %lldx%lld weight", (long long)rows, (long long)cols);
        goto out;
    }
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t k = 0; k < cols; k++) row[k] = folio_widen(src, src_dtype, (size_t)(r * cols + k));
        uint8_t *dst = (uint8_t *)data + (size_t)r * row_bytes;
        if (dtype == FOLIO_FP8) {
            float amax = 0.0f;
            for (int64_t k = 0; k < cols; k++) amax = fabsf(row[k]) > amax ? fabsf(row[k]) : amax;
            scale[r] = amax > 0.0f ? amax / 448.0f : 1.0f;
            for (int64_t k = 0; k < cols; k++) dst[k] = quant_f32_to_e4m3(row[k] / scale[r]);
        } else {
            quant_row(dtype, row, cols, dst);
        }
    }
    const struct backend_quant_src q = {.dtype = dtype, .data = data, .rows = rows, .cols = cols, .scale = scale};
    rc = backend_load_quant(b, &q, out);
out:
    free(data);
    free(row);
    free(scale);
    return rc;
}

int backend_load_weight(struct backend *b, const void *src, enum folio_dtype src_dtype, int64_t rows, int64_t cols,
                        enum folio_dtype dtype, struct backend_weight *out) {
    if (dtype == FOLIO_Q8 || dtype == FOLIO_Q4 || dtype == FOLIO_FP8)
        return quantize_and_load(b, src, src_dtype, rows, cols, dtype, out);
    return b->iface->load_weight(b, src, src_dtype, rows, cols, dtype, out);
}

void backend_free_weight(struct backend *b, struct backend_weight *w) { b->iface->free_weight(b, w); }

void backend_embed(struct backend *b, const struct backend_weight *table, const int32_t *tokens, int n, float *out) {
    b->iface->embed(b, table, tokens, n, out);
}

void backend_add_rms_norm(struct backend *b, float *residual, const float *delta, const float *w, float *out, int rows,
                          int dim, float eps) {
    b->iface->add_rms_norm(b, residual, delta, w, out, rows, dim, eps);
}

void backend_matmul(struct backend *b, const float *x, int T, const struct backend_matmul_args *mm, int n) {
    b->iface->matmul(b, x, T, mm, n);
}

void backend_rope(struct backend *b, const struct backend_rope_args *a) { b->iface->rope(b, a); }

void backend_reshape_and_cache(struct backend *b, const float *k, const float *v, int stride,
                               const int32_t *slot_mapping, void *k_cache, void *v_cache, enum folio_dtype kv_dtype,
                               float k_scale, float v_scale, int T, int nkv, int head_dim, int block_size) {
    b->iface->reshape_and_cache(b, k, v, stride, slot_mapping, k_cache, v_cache, kv_dtype, k_scale, v_scale, T, nkv,
                                head_dim, block_size);
}

void backend_attention(struct backend *b, const struct backend_attention_args *p) { b->iface->attention(b, p); }

void backend_glu(struct backend *b, enum backend_act act, const float *gate, const float *up, float *out, int T,
                 int n) {
    b->iface->glu(b, act, gate, up, out, T, n);
}

void backend_scale(struct backend *b, float *x, size_t n, float s) { b->iface->scale(b, x, n, s); }

void backend_softcap(struct backend *b, float *x, size_t n, float cap) { b->iface->softcap(b, x, n, cap); }

void backend_moe(struct backend *b, const struct backend_moe_args *a) { b->iface->moe(b, a); }

void backend_copy_blocks(struct backend *b, void *pool, int num_caches, size_t cache_bytes, size_t block_bytes,
                         const int32_t *pairs, int n) {
    b->iface->copy_blocks(b, pool, num_caches, cache_bytes, block_bytes, pairs, n);
}

int backend_supports_kv_dtype(const struct backend *b, enum folio_dtype dt) {
    return (unsigned)dt < 32 && (b->iface->kv_dtypes >> dt & 1u);
}

void backend_gather_rows(struct backend *b, const float *x, const int32_t *idx, int n, int dim, float *out) {
    b->iface->gather_rows(b, x, idx, n, dim, out);
}

int backend_sync(struct backend *b) { return b->iface->sync(b); }

int backend_reserve(struct backend *b, const struct backend_reserve_args *r) {
    return b->iface->reserve ? b->iface->reserve(b, r) : 0;
}

int backend_mem_info(struct backend *b, struct backend_mem *out) {
    if (!b->iface->mem_info) return FOLIO_EUNSUP; /* quietly: callers fall back, and keep their error */
    return b->iface->mem_info(b, out);
}

int backend_has_argmax(const struct backend *b) { return b->iface->argmax != NULL; }

int backend_argmax(struct backend *b, const float *logits, int n, int vocab, int32_t *ids) {
    if (!b->iface->argmax) return folio_err(FOLIO_EUNSUP, "this backend has no device argmax");
    return b->iface->argmax(b, logits, n, vocab, ids);
}

int backend_has_graphs(const struct backend *b) { return b->iface->graph_begin != NULL; }

int backend_graph_begin(struct backend *b) { return b->iface->graph_begin(b); }

int backend_graph_end(struct backend *b, void **graph) { return b->iface->graph_end(b, graph); }

int backend_graph_launch(struct backend *b, void *graph) { return b->iface->graph_launch(b, graph); }

void backend_graph_free(struct backend *b, void *graph) { b->iface->graph_free(b, graph); }
