/* backend_impl.h: the vtable a backend implements (in the style of ggml's ggml_backend_i),
 * for the backends under backend/ and their tests only. Everyone else drives a backend
 * through backend.h, whose functions forward to these slots (backend.c). */
#ifndef FOLIO_BACKEND_IMPL_H
#define FOLIO_BACKEND_IMPL_H

#include "backend/backend.h"

/* Each slot has the contract of the backend.h function of the same name. */
struct backend_i {
    const char *name;
    unsigned kv_dtypes; /* bit (1u << d) set: KV caches of enum folio_dtype d (backend_supports_kv_dtype) */
    void (*free)(struct backend *b);

    void *(*alloc)(struct backend *b, size_t nbytes);
    void (*release)(struct backend *b, void *p);
    int (*upload)(struct backend *b, void *dst, const void *src, size_t n);
    int (*download)(struct backend *b, void *dst, const void *src, size_t n);
    int (*load_weight)(struct backend *b, const void *src, enum folio_dtype src_dtype, int64_t rows,
                       int64_t cols, enum folio_dtype dtype, struct backend_weight *out);
    void (*free_weight)(struct backend *b, struct backend_weight *w);
    int (*load_quant)(struct backend *b, const struct backend_quant_src *src, struct backend_weight *out);

    void (*embed)(struct backend *b, const struct backend_weight *table, const int32_t *tokens, int n, float *out);
    void (*add_rms_norm)(struct backend *b, float *residual, const float *delta, const float *w, float *out,
                         int rows, int dim, float eps);
    void (*matmul)(struct backend *b, const float *x, int T, const struct backend_matmul_args *mm, int n);
    void (*rope)(struct backend *b, const struct backend_rope_args *a);
    void (*reshape_and_cache)(struct backend *b, const float *k, const float *v, int stride,
                              const int32_t *slot_mapping, void *k_cache, void *v_cache, enum folio_dtype kv_dtype,
                              float k_scale, float v_scale, int T, int nkv, int head_dim, int block_size);
    void (*attention)(struct backend *b, const struct backend_attention_args *p);
    void (*glu)(struct backend *b, enum backend_act act, const float *gate, const float *up, float *out, int T,
                int n);
    void (*scale)(struct backend *b, float *x, size_t n, float s);
    void (*softcap)(struct backend *b, float *x, size_t n, float cap);
    void (*moe)(struct backend *b, const struct backend_moe_args *a);
    void (*copy_blocks)(struct backend *b, void *pool, int num_caches, size_t cache_bytes, size_t block_bytes,
                        const int32_t *pairs, int n);
    void (*gather_rows)(struct backend *b, const float *x, const int32_t *idx, int n, int dim, float *out);
    int (*sync)(struct backend *b);

    /* Optional: NULL where the backend has none (the CPU has only reserve). */
    int (*reserve)(struct backend *b, const struct backend_reserve_args *r);
    int (*mem_info)(struct backend *b, struct backend_mem *out);
    int (*argmax)(struct backend *b, const float *logits, int n, int vocab, int32_t *ids);
    int (*graph_begin)(struct backend *b);
    int (*graph_end)(struct backend *b, void **graph);
    int (*graph_launch)(struct backend *b, void *graph);
    void (*graph_free)(struct backend *b, void *graph);
};

struct backend {
    const struct backend_i *iface;
    void *ctx;
};

#endif
