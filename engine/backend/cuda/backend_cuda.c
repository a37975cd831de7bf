/* backend_cuda: the backend vtable on an NVIDIA GPU: device buffers, one stream, the kernels/
 * launchers for every op, and cuBLAS for the products. Built only with `make CUDA=1`.
 *
 * The CUDA runtime is linked statically and cuBLAS is opened with dlopen when a CUDA backend
 * is created. Linked normally, cuBLAS(Lt) would put ~110 KiB of static TLS into every thread
 * of the process, more than the stacks CivetWeb gives its HTTP workers, which then fail to
 * start; opened later, its TLS is allocated only in the threads that call it.
 *
 * Weights keep the model's dtype (--dtype): fp32 products run through cublasSgemm in pedantic
 * math (no TF32), so fp32 results match the CPU backend to rounding; bf16/f16 weights meet
 * activations narrowed to their type (kernels/convert.cu) in cublasGemmEx with fp32
 * accumulation and fp32 output, on tensor cores, except for batches of up to GEMV_MAX_T rows,
 * whose products stream the weight once through kernels/gemv.cu on the fp32 activations (at
 * such sizes a GEMM's tiles waste most of the bandwidth). Quantized weights (Q8, Q4, Q4Z,
 * FP8: base/quant.h) are repacked at load into kernels.h's qweight_layout; batches of up to
 * QGEMV_MAX_T rows stream them through kernels/quant.cu's qgemv on fp32 activations, larger
 * ones dequantize slices of rows to bf16 for cublasGemmEx. A MoE block runs as our own
 * kernels (kernels/moe.cu: routing, grouping by expert and grouped products on the device,
 * with no host sync; float experts only). Every op enqueues on the backend's stream; download
 * and sync wait for it. The scratch the ops need (the narrowed input, the bias ones vector,
 * split-K attention partials, argmax ids, the MoE block's buffers, the quantized products'
 * gathered input and dequantized slice) is allocated once by reserve, so the step loop never
 * allocates. */
#include "backend/backend_impl.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "base/quant.h"
#include "base/util.h"

/* The cuBLAS entry points this backend uses, resolved once. */
static struct {
    void *lib;
    __typeof__(cublasCreate_v2) *create;
    __typeof__(cublasDestroy_v2) *destroy;
    __typeof__(cublasSetStream_v2) *set_stream;
    __typeof__(cublasSetMathMode) *set_math_mode;
    __typeof__(cublasSgemm_v2) *sgemm;
    __typeof__(cublasSger_v2) *sger;
    __typeof__(cublasGemmEx) *gemm_ex;
    __typeof__(cublasSetWorkspace_v2) *set_workspace; /* NULL in an old cuBLAS */
    char error[256];
} blas;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_open(void) {
    static const char *const names[] = {FOLIO_CUDA_LIB_DIR "/libcublas.so.13", FOLIO_CUDA_LIB_DIR "/libcublas.so.12",
                                        "libcublas.so.13", "libcublas.so.12", "libcublas.so"};
    for (size_t i = 0; i < sizeof names / sizeof *names && !blas.lib; i++) blas.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!blas.lib) {
        snprintf(blas.error, sizeof blas.error, "cannot load cuBLAS (libcublas.so.13/.12): %s", dlerror());
        return;
    }
    *(void **)&blas.create = dlsym(blas.lib, "cublasCreate_v2");
    *(void **)&blas.destroy = dlsym(blas.lib, "cublasDestroy_v2");
    *(void **)&blas.set_stream = dlsym(blas.lib, "cublasSetStream_v2");
    *(void **)&blas.set_math_mode = dlsym(blas.lib, "cublasSetMathMode");
    *(void **)&blas.sgemm = dlsym(blas.lib, "cublasSgemm_v2");
    *(void **)&blas.sger = dlsym(blas.lib, "cublasSger_v2");
    *(void **)&blas.gemm_ex = dlsym(blas.lib, "cublasGemmEx");
    *(void **)&blas.set_workspace = dlsym(blas.lib, "cublasSetWorkspace_v2");
    if (!blas.create || !blas.destroy || !blas.set_stream || !blas.set_math_mode || !blas.sgemm || !blas.sger ||
        !blas.gemm_ex) {
        snprintf(blas.error, sizeof blas.error, "cuBLAS lacks an entry point this build needs");
        dlclose(blas.lib);
        blas.lib = NULL;
    }
}

struct cuda_ctx {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    cudaError_t err;          /* the first launch error, reported at the next sync */
    cublasMath_t math;        /* the handle's math mode now */
    /* reserve's scratch: */
    struct backend_reserve_args r;
    void *xcast;              /* [r.max_tokens, r.max_cols] 16-bit: matmul input narrowed */
    float *ones;              /* [r.max_tokens] of 1.0 for bias rows (cublasSger) */
    void *attn_ws;            /* split-K partials */
    size_t attn_ws_bytes;
    int32_t *ids;             /* [r.max_tokens] argmax results */
    void *moe_ws;             /* the MoE block's buffers (kernels/moe.cu), or NULL without experts */
    int moe_pairs;            /* (token, expert) pairs they hold per pass */
    void *blas_ws;            /* cuBLAS's workspace, ours so that no call allocates during a capture */
    size_t blas_ws_bytes;
    size_t reserved;          /* bytes of the above */
    /* Quantized weights' scratch (quant_reserve), sized from the largest one loaded: */
    int64_t q_max_elems;      /* rows * cols of the largest quantized weight, 0 without any */
    int64_t q_max_cols;
    float *xg;                /* [QGEMV_MAX_T, xg_cols] fp32: qgemv's input gathered (perm) or padded */
    int64_t xg_cols;
    void *deq;                /* [deq_elems] bf16: a slice of dequantized weight rows for the GEMM */
    size_t deq_elems;
    size_t q_reserved;        /* bytes of xg and deq */
    char name[320];
};

static struct cuda_ctx *ctx_of(struct backend *b) { return b->ctx; }

static void note(struct cuda_ctx *c, cudaError_t e) {
    if (e != cudaSuccess && c->err == cudaSuccess) c->err = e;
}

static void cu_free(struct backend *b) {
    struct cuda_ctx *c = ctx_of(b);
    if (c) {
        cudaFree(c->xcast);
        cudaFree(c->ones);
        cudaFree(c->attn_ws);
        cudaFree(c->ids);
        cudaFree(c->moe_ws);
        cudaFree(c->xg);
        cudaFree(c->deq);
        if (c->blas) blas.destroy(c->blas);
        cudaFree(c->blas_ws);
        if (c->stream) cudaStreamDestroy(c->stream);
        free(c);
    }
    free(b);
}

static void *cu_alloc(struct backend *b, size_t n) {
    void *p = NULL;
    if (cudaMalloc(&p, n ? n : 1) != cudaSuccess) return NULL;
    if (cudaMemsetAsync(p, 0, n, ctx_of(b)->stream) != cudaSuccess) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void cu_release(struct backend *b, void *p) {
    cudaStreamSynchronize(ctx_of(b)->stream);
    cudaFree(p);
}

static int cu_upload(struct backend *b, void *dst, const void *src, size_t n) {
    /* Host memory is pageable and reused at once by the caller, so the copy must finish. */
    cudaError_t e = cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, ctx_of(b)->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(ctx_of(b)->stream);
    return e == cudaSuccess ? 0 : folio_err(FOLIO_EIO, "cuda upload: %s", cudaGetErrorString(e));
}

static int cu_download(struct backend *b, void *dst, const void *src, size_t n) {
    struct cuda_ctx *c = ctx_of(b);
    cudaError_t e = cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e == cudaSuccess && c->err != cudaSuccess) e = c->err;
    return e == cudaSuccess ? 0 : folio_err(FOLIO_EIO, "cuda: %s", cudaGetErrorString(e));
}

/* Weights become `dtype` on the device: fp32, or a 16-bit type that the GEMMs take as is. A
 * checkpoint already in that dtype is copied straight; otherwise it is converted on the host
 * in slices of up to 64 MiB, so that a 1B model's conversion never holds a second copy. */
static int cu_load_weight(struct backend *b, const void *src, enum folio_dtype src_dtype, int64_t rows,
                          int64_t cols, enum folio_dtype dtype, struct backend_weight *out) {
    const size_t n = (size_t)rows * (size_t)cols, es = folio_dtype_size(dtype), ses = folio_dtype_size(src_dtype);
    void *dev = cu_alloc(b, es * n);
    if (!dev)
        return folio_err(FOLIO_ENOMEM, "out of GPU memory for a %lld x %lld %s weight (%.1f MiB)", (long long)rows,
                         (long long)cols, folio_dtype_name(dtype), (double)(es * n) / (1 << 20));
    int rc = 0;
    if (src_dtype == dtype) {
        rc = cu_upload(b, dev, src, es * n);
    } else {
        const size_t slice = ((size_t)64 << 20) / es;
        void *host = malloc(es * (n < slice ? n : slice));
        if (!host) rc = folio_err(FOLIO_ENOMEM, "out of memory converting a weight");
        for (size_t at = 0; !rc && at < n; at += slice) {
            const size_t m = n - at < slice ? n - at : slice;
            const char *s = (const char *)src + at * ses;
            for (size_t i = 0; i < m; i++) {
                const float f = folio_widen(s, src_dtype, i);
                switch (dtype) {
                case FOLIO_F32: ((float *)host)[i] = f; break;
                case FOLIO_F16: ((uint16_t *)host)[i] = folio_f32_to_f16(f); break;
                case FOLIO_BF16: ((uint16_t *)host)[i] = folio_f32_to_bf16(f); break;
                default: break; /* backend_load_weight routes the other dtypes to load_quant */
                }
            }
            rc = cu_upload(b, (char *)dev + at * es, host, es * m);
        }
        free(host);
    }
    if (rc) {
        cu_release(b, dev);
        return rc;
    }
    *out = (struct backend_weight){.dtype = dtype, .data = dev, .rows = rows, .cols = cols, .owned = dev};
    return 0;
}

static void cu_free_weight(struct backend *b, struct backend_weight *w) {
    if (w->owned) cu_release(b, w->owned);
    if (w->owned_aux) cu_release(b, w->owned_aux);
    w->owned = w->owned_aux = NULL;
    w->data = NULL;
    w->scale = NULL;
    w->perm = NULL;
}

static int is_quant(enum folio_dtype d) { return d == FOLIO_Q8 || d == FOLIO_Q4 || d == FOLIO_Q4Z || d == FOLIO_FP8; }

/* A larger batch's product with a quantized weight dequantizes slices of its rows into this
 * many bf16 weights at most (16 MiB, or 128 rows when those are wider): small beside a model,
 * and small enough that the GEMM reads the slice back from L2 rather than HBM. */
#define DEQ_SLICE_ELEMS ((size_t)8 << 20)

/* Sizes the quantized products' scratch for the largest quantized weight loaded and the
 * reserved batch: qgemv's gathered input and the dequantized slice. Load time only: by
 * reserve, or by load_quant when a weight arrives after it. */
static int quant_reserve(struct backend *b) {
    struct cuda_ctx *c = ctx_of(b);
    if (c->q_max_elems == 0 || c->r.max_tokens <= 0) return 0;
    const int64_t K = c->r.max_cols > c->q_max_cols ? c->r.max_cols : c->q_max_cols;
    const int64_t xg_cols = quant_blocks(K) * QUANT_BLOCK;
    const size_t cap = DEQ_SLICE_ELEMS > 128 * (size_t)c->q_max_cols ? DEQ_SLICE_ELEMS : 128 * (size_t)c->q_max_cols;
    const size_t deq = (size_t)c->q_max_elems < cap ? (size_t)c->q_max_elems : cap;
    if (xg_cols <= c->xg_cols && deq <= c->deq_elems) return 0;
    cudaStreamSynchronize(c->stream);
    cudaFree(c->xg);
    cudaFree(c->deq);
    c->xg = NULL;
    c->deq = NULL;
    c->xg_cols = 0;
    c->deq_elems = 0;
    c->q_reserved = 0;
    const size_t xg_bytes = sizeof(float) * QGEMV_MAX_T * (size_t)xg_cols, deq_bytes = 2 * deq;
    if (!(c->xg = cu_alloc(b, xg_bytes)) || !(c->deq = cu_alloc(b, deq_bytes))) {
        cudaFree(c->xg);
        c->xg = NULL;
        return folio_err(FOLIO_ENOMEM, "out of GPU memory for the quantized products' scratch (%.1f MiB)",
                         (double)(xg_bytes + deq_bytes) / (1 << 20));
    }
    c->xg_cols = xg_cols;
    c->deq_elems = deq;
    c->q_reserved = xg_bytes + deq_bytes;
    return 0;
}

/* Quantized weights are repacked on the host into kernels.h's qweight_layout (quant.h's
 * blocks split into 16-byte-aligned rows of values, f16 scales and zero points), a slice of
 * rows at a time, and uploaded into one allocation (owned); FP8's row scales and GPTQ's
 * column order share a second one (owned_aux). */
static int cu_load_quant(struct backend *b, const struct backend_quant_src *src, struct backend_weight *out) {
    struct cuda_ctx *c = ctx_of(b);
    const enum folio_dtype dt = src->dtype;
    const int64_t N = src->rows, K = src->cols;
    memset(out, 0, sizeof *out);
    if (!is_quant(dt) || N <= 0 || K <= 0 || N > INT_MAX || K > INT_MAX || (dt == FOLIO_FP8 && !src->scale))
        return folio_err(FOLIO_EINVAL, "the cuda backend cannot load a %lldx%lld %s weight%s", (long long)N,
                         (long long)K, folio_dtype_name(dt), dt == FOLIO_FP8 && !src->scale ? " without scales" : "");
    for (int64_t k = 0; src->perm && k < K; k++)
        if (src->perm[k] < 0 || src->perm[k] >= K)
            return folio_err(FOLIO_EINVAL, "the column order of a %lldx%lld weight names column %d", (long long)N,
                             (long long)K, (int)src->perm[k]);
    const enum kernel_qdtype qt = (enum kernel_qdtype)dt;
    const struct qweight_layout l = qweight_layout(qt, N, K);
    const size_t nb = (size_t)quant_blocks(K), qrow = nb * QWEIGHT_QBYTES(qt), srow = quant_row_bytes(dt, K);
    const size_t scale_bytes = dt == FOLIO_FP8 ? sizeof(float) * (size_t)N : 0;
    const size_t perm_at = qweight_align(scale_bytes), aux_bytes = src->perm ? perm_at + sizeof(int32_t) * (size_t)K
                                                                              : scale_bytes;
    const size_t slice = ((size_t)64 << 20) / qrow > 0 ? ((size_t)64 << 20) / qrow : 1; /* rows per upload */
    const size_t rows0 = (size_t)N < slice ? (size_t)N : slice;
    uint8_t *dev = cu_alloc(b, l.bytes), *aux = aux_bytes ? cu_alloc(b, aux_bytes) : NULL;
    uint8_t *hq = malloc(rows0 * qrow), *hz = malloc(rows0 * nb); /* [rows0, qrow], [rows0, nb] */
    uint16_t *hd = malloc(rows0 * nb * 2);                         /* [rows0, nb] */
    int rc = 0;
    if (!dev || (aux_bytes && !aux) || !hq || !hz || !hd) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory for a %lldx%lld %s weight (%.1f MiB)", (long long)N, (long long)K,
                       folio_dtype_name(dt), (double)(l.bytes + aux_bytes) / (1 << 20));
        goto out;
    }
    for (size_t r0 = 0; !rc && r0 < (size_t)N; r0 += slice) {
        const size_t m = (size_t)N - r0 < slice ? (size_t)N - r0 : slice;
        for (size_t r = 0; r < m; r++) {
            const uint8_t *s = (const uint8_t *)src->data + (r0 + r) * srow;
            uint8_t *oq = hq + r * qrow;
            if (dt == FOLIO_FP8) {
                memcpy(oq, s, (size_t)K);
                memset(oq + K, 0, qrow - (size_t)K);
                continue;
            }
            for (size_t k = 0; k < nb; k++) {
                const uint8_t *blk = s + k * (srow / nb); /* blocks may be unaligned: bytes only */
                memcpy(&hd[r * nb + k], blk, 2);
                switch (dt) {
                case FOLIO_Q8: memcpy(oq + 32 * k, blk + offsetof(struct quant_q8, q), 32); break;
                case FOLIO_Q4: memcpy(oq + 16 * k, blk + offsetof(struct quant_q4, n), 16); break;
                default: /* FOLIO_Q4Z */
                    memcpy(oq + 16 * k, blk + offsetof(struct quant_q4z, n), 16);
                    hz[r * nb + k] = blk[offsetof(struct quant_q4z, z)];
                    break;
                }
            }
        }
        rc = cu_upload(b, dev + l.q + r0 * qrow, hq, m * qrow);
        if (!rc && l.d) rc = cu_upload(b, dev + l.d + r0 * nb * 2, hd, m * nb * 2);
        if (!rc && l.z) rc = cu_upload(b, dev + l.z + r0 * nb, hz, m * nb);
    }
    if (!rc && scale_bytes) rc = cu_upload(b, aux, src->scale, scale_bytes);
    if (!rc && src->perm) rc = cu_upload(b, aux + perm_at, src->perm, sizeof(int32_t) * (size_t)K);
    if (rc) goto out;
    if (N * K > c->q_max_elems) c->q_max_elems = N * K;
    if (K > c->q_max_cols) c->q_max_cols = K;
    if ((rc = quant_reserve(b))) goto out;
    *out = (struct backend_weight){.dtype = dt, .data = dev, .rows = N, .cols = K,
                                   .scale = scale_bytes ? (const float *)aux : NULL,
                                   .perm = src->perm ? (const int32_t *)(aux + perm_at) : NULL,
                                   .owned = dev, .owned_aux = aux};
    dev = aux = NULL;
out:
    if (dev) cu_release(b, dev);
    if (aux) cu_release(b, aux);
    free(hq);
    free(hz);
    free(hd);
    return rc;
}

static void cu_embed(struct backend *b, const struct backend_weight *t, const int32_t *tokens, int n, float *out) {
    note(ctx_of(b), embed(t->data, (enum kernel_dtype)t->dtype, t->rows, t->cols, tokens, n, out, ctx_of(b)->stream));
}

static void cu_add_rms_norm(struct backend *b, float *residual, const float *delta, const float *w, float *out,
                            int rows, int dim, float eps) {
    note(ctx_of(b), add_rms_norm(residual, delta, w, out, rows, dim, eps, ctx_of(b)->stream));
}

static void set_math(struct cuda_ctx *c, cublasMath_t m) {
    if (c->math != m && blas.set_math_mode(c->blas, m) == CUBLAS_STATUS_SUCCESS) c->math = m;
}

static cudaDataType_t cuda_type(enum folio_dtype d) { return d == FOLIO_BF16 ? CUDA_R_16BF : CUDA_R_16F; }

/* What the scratch holds within one matmul call, so that the products sharing x convert it
 * once: xcast (narrowed, in a column order) and xg (qgemv's gathered copy). */
struct x_state {
    enum folio_dtype narrowed;    /* xcast holds x in this 16-bit type; FOLIO_F32: nothing yet */
    const int32_t *narrowed_perm; /* ... in this column order (NULL: x's own) */
    int gathered;                 /* xg holds x ... */
    const int32_t *gathered_perm; /* ... in this column order */
};

/* out[T, N] = x W^T for a quantized W. Up to QGEMV_MAX_T rows: qgemv, straight from the packed
 * weight on fp32 x (gathered first into xg when W has a column order, or when x's rows are
 * not whole aligned blocks). More: slices of W's rows dequantized to bf16 (deq), each a
 * cuBLAS bf16 GEMM against x narrowed to bf16 in W's column order, written into its rows of
 * out (ldc N). 0, or -1 with the error noted. */
static int quant_matmul(struct cuda_ctx *c, const float *x, int T, const struct backend_weight *w, float *out,
                        struct x_state *xs) {
    const int N = (int)w->rows, K = (int)w->cols, Kp = (int)quant_blocks(K) * QUANT_BLOCK;
    const enum kernel_qdtype qt = (enum kernel_qdtype)w->dtype;
    const float one = 1.0f, zero = 0.0f;
    if (T <= 0 || N <= 0) return 0;
    if (T <= QGEMV_MAX_T) {
        const float *xin = x;
        int ldx = K;
        if (w->perm || K % QUANT_BLOCK || (uintptr_t)x % 16) {
            if (!c->xg || Kp > c->xg_cols) { /* a caller bug: reserve was not told */
                note(c, cudaErrorInvalidValue);
                return -1;
            }
            if (!xs->gathered || xs->gathered_perm != w->perm) {
                note(c, qgather_x(x, w->perm, T, K, c->xg, KERNEL_F32, Kp, c->stream));
                xs->gathered = 1;
                xs->gathered_perm = w->perm;
            }
            xin = c->xg;
            ldx = Kp;
        }
        note(c, qgemv(w->data, qt, w->scale, xin, ldx, out, T, N, K, c->stream));
        return 0;
    }
    if (T > c->r.max_tokens || K > c->r.max_cols || !c->deq || c->deq_elems < (size_t)K) {
        note(c, cudaErrorInvalidValue);
        return -1;
    }
    if (xs->narrowed != FOLIO_BF16 || xs->narrowed_perm != w->perm) {
        note(c, qgather_x(x, w->perm, T, K, c->xcast, KERNEL_BF16, K, c->stream));
        xs->narrowed = FOLIO_BF16;
        xs->narrowed_perm = w->perm;
    }
    set_math(c, CUBLAS_DEFAULT_MATH);
    int rows = (int)(c->deq_elems / (size_t)K < (size_t)N ? c->deq_elems / (size_t)K : (size_t)N);
    if (rows < N && rows > 128) rows -= rows % 128; /* slices of whole GEMM tiles but the last */
    for (int n0 = 0; n0 < N; n0 += rows) {
        const int m = N - n0 < rows ? N - n0 : rows;
        note(c, qdequant_bf16(w->data, qt, w->scale, N, K, n0, m, c->deq, c->stream));
        if (blas.gemm_ex(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, m, T, K, &one, c->deq, CUDA_R_16BF, K, c->xcast,
                         CUDA_R_16BF, K, &zero, out + n0, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
            note(c, cudaErrorLaunchFailure);
            return -1;
        }
    }
    return 0;
}

/* out[T, N] = x[T, K] W^T + bias. Row-major out is column-major N x T, and W [N, K] row-major
 * is column-major K x N, so C(N x T) = op(Wc)^T (N x K) * xc (K x T) with no transposed copy.
 * The products of one call share x, so a 16-bit x is narrowed once for all of them. */
static void cu_matmul(struct backend *b, const float *x, int T, const struct backend_matmul_args *mm, int n) {
    struct cuda_ctx *c = ctx_of(b);
    const float one = 1.0f, zero = 0.0f;
    struct x_state xs = {.narrowed = FOLIO_F32};
    for (int i = 0; i < n; i++) {
        const struct backend_weight *w = mm[i].w;
        const int N = (int)w->rows, K = (int)w->cols;
        cublasStatus_t st;
        if (is_quant(w->dtype)) {
            if (quant_matmul(c, x, T, w, mm[i].out, &xs)) continue;
            st = CUBLAS_STATUS_SUCCESS;
        } else if (w->dtype != FOLIO_F32 && gemv_supported((enum kernel_dtype)w->dtype, T, K, w->data, x)) {
            /* A few rows: our weight-streaming kernel, on the fp32 activations as they are. */
            note(c, gemv(w->data, (enum kernel_dtype)w->dtype, x, mm[i].out, T, N, K, c->stream));
            st = CUBLAS_STATUS_SUCCESS;
        } else if (w->dtype == FOLIO_F32) {
            set_math(c, CUBLAS_PEDANTIC_MATH);
            st = blas.sgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, T, K, &one, w->data, K, x, K, &zero, mm[i].out, N);
        } else {
            if (T > c->r.max_tokens || K > c->r.max_cols) { /* a caller bug: reserve was not told */
                note(c, cudaErrorInvalidValue);
                continue;
            }
            if (xs.narrowed != w->dtype || xs.narrowed_perm) {
                note(c, cast_f32(x, c->xcast, (enum kernel_dtype)w->dtype, (size_t)T * K, c->stream));
                xs.narrowed = w->dtype;
                xs.narrowed_perm = NULL;
            }
            set_math(c, CUBLAS_DEFAULT_MATH);
            st = blas.gemm_ex(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, T, K, &one, w->data, cuda_type(w->dtype), K,
                              c->xcast, cuda_type(w->dtype), K, &zero, mm[i].out, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT);
        }
        if (st != CUBLAS_STATUS_SUCCESS) note(c, cudaErrorLaunchFailure);
        if (mm[i].bias) {
            if (T > c->r.max_tokens) {
                note(c, cudaErrorInvalidValue);
                continue;
            }
            /* A bias row per token: a rank-1 update with the ones vector. */
            if (blas.sger(c->blas, N, T, &one, mm[i].bias, 1, c->ones, 1, mm[i].out, N) != CUBLAS_STATUS_SUCCESS)
                note(c, cudaErrorLaunchFailure);
        }
    }
}

static void cu_rope(struct backend *b, const struct backend_rope_args *a) {
    const struct rope_params p = {
        .q = a->q, .k = a->k, .q_stride = a->q_stride, .k_stride = a->k_stride, .positions = a->positions,
        .inv_freq = a->inv_freq, .long_sel = a->long_sel, .T = a->T, .nh = a->nh, .nkv = a->nkv,
        .head_dim = a->head_dim, .rot_dim = a->rot_dim, .mscale = a->mscale};
    note(ctx_of(b), rope(&p, ctx_of(b)->stream));
}

static void cu_reshape_and_cache(struct backend *b, const float *k, const float *v, int stride,
                                 const int32_t *slot_mapping, void *k_cache, void *v_cache, enum folio_dtype kv_dtype,
                                 float k_scale, float v_scale, int T, int nkv, int head_dim, int block_size) {
    note(ctx_of(b), reshape_and_cache(k, v, stride, slot_mapping, k_cache, v_cache, (enum kernel_kv_dtype)kv_dtype,
                                      k_scale, v_scale, T, nkv, head_dim, block_size, ctx_of(b)->stream));
}

static void cu_attention(struct backend *b, const struct backend_attention_args *p) {
    const struct paged_attention_params pa = {
        .q = p->q, .k_cache = p->k_cache, .v_cache = p->v_cache, .kv_dtype = (enum kernel_kv_dtype)p->kv_dtype,
        .k_scale = p->k_scale, .v_scale = p->v_scale, .block_tables = p->block_tables,
        .seq_idx = p->seq_idx, .positions = p->positions, .out = p->out, .num_tokens = p->num_tokens,
        .num_heads = p->num_heads, .num_kv_heads = p->num_kv_heads, .head_dim = p->head_dim,
        .block_size = p->block_size, .max_blocks_per_seq = p->max_blocks_per_seq,
        .sliding_window = p->sliding_window, .scale = p->scale, .softcap = p->softcap, .max_context = p->max_context,
        .max_splits = 0, .workspace = ctx_of(b)->attn_ws, .workspace_bytes = ctx_of(b)->attn_ws_bytes};
    note(ctx_of(b), paged_attention(&pa, ctx_of(b)->stream));
}

static void cu_glu(struct backend *b, enum backend_act act, const float *gate, const float *up, float *out, int T,
                   int n) {
    note(ctx_of(b), glu((enum kernel_act)act, gate, up, out, T, n, ctx_of(b)->stream));
}

static void cu_scale(struct backend *b, float *x, size_t n, float s) {
    note(ctx_of(b), scale_f32(x, n, s, ctx_of(b)->stream));
}

static void cu_softcap(struct backend *b, float *x, size_t n, float cap) {
    note(ctx_of(b), softcap_f32(x, n, cap, ctx_of(b)->stream));
}

/* The experts' three matrices must share a dtype and match the block's shape; a block that
 * reserve did not size (no buffers, or other experts' shapes) is a caller bug, reported at
 * the next sync rather than run out of bounds. */
static void cu_moe(struct backend *b, const struct backend_moe_args *a) {
    struct cuda_ctx *c = ctx_of(b);
    const int64_t EI = (int64_t)a->num_experts * a->inter, EH = (int64_t)a->num_experts * a->hidden;
    if (a->gate->dtype != a->up->dtype || a->down->dtype != a->gate->dtype || a->gate->rows != EI ||
        a->gate->cols != a->hidden || a->up->rows != EI || a->up->cols != a->hidden || a->down->rows != EH ||
        a->down->cols != a->inter || a->hidden != c->r.moe_hidden || a->inter != c->r.moe_inter ||
        a->num_experts != c->r.moe_experts || !c->moe_ws) {
        note(c, cudaErrorInvalidValue);
        return;
    }
    const struct moe_params p = {
        .x = a->x, .router_logits = a->router_logits, .gate = a->gate->data, .up = a->up->data,
        .down = a->down->data, .dtype = (enum kernel_dtype)a->gate->dtype, .out = a->out, .T = a->T,
        .hidden = a->hidden, .inter = a->inter, .num_experts = a->num_experts, .top_k = a->top_k,
        .norm_topk_prob = a->norm_topk_prob, .act = (enum kernel_act)a->act, .workspace = c->moe_ws,
        .max_pairs = c->moe_pairs};
    note(c, moe(&p, c->stream));
}

static void cu_copy_blocks(struct backend *b, void *pool, int num_caches, size_t cache_bytes, size_t block_bytes,
                           const int32_t *pairs, int n) {
    note(ctx_of(b), copy_blocks(pool, num_caches, cache_bytes, block_bytes, pairs, n, ctx_of(b)->stream));
}

static void cu_gather_rows(struct backend *b, const float *x, const int32_t *idx, int n, int dim, float *out) {
    note(ctx_of(b), gather_rows(x, idx, n, dim, out, ctx_of(b)->stream));
}

static int cu_sync(struct backend *b) {
    struct cuda_ctx *c = ctx_of(b);
    cudaError_t e = cudaStreamSynchronize(c->stream);
    if (e == cudaSuccess && c->err != cudaSuccess) e = c->err;
    return e == cudaSuccess ? 0 : folio_err(FOLIO_EIO, "cuda: %s", cudaGetErrorString(e));
}

/* The MoE block's buffers hold passes of at most this many tokens; larger batches run a pass
 * at a time (each re-reads the active experts' weights, a small cost next to the products of
 * so many tokens), so that a long prompt does not pin gigabytes of scratch. */
#define MOE_MAX_PASS_TOKENS 1024

/* (token, expert) pairs per MoE pass for r: its top_k (moe_pairs / max_tokens) times the
 * tokens of a pass. 0 without experts. */
static int moe_pass_pairs(const struct backend_reserve_args *r) {
    if (r->moe_experts <= 0 || r->moe_pairs <= 0) return 0;
    const int k = r->moe_pairs / (r->max_tokens > 0 ? r->max_tokens : 1);
    const int tokens = r->max_tokens < MOE_MAX_PASS_TOKENS ? r->max_tokens : MOE_MAX_PASS_TOKENS;
    return (tokens > 0 ? tokens : 1) * (k > 0 ? k : 1);
}

/* Allocates the ops' scratch for the largest batch; called once at load, before the
 * profiling pass, and again only if the model's limits grow. */
static int cu_reserve(struct backend *b, const struct backend_reserve_args *r) {
    struct cuda_ctx *c = ctx_of(b);
    const int moe_pairs = moe_pass_pairs(r);
    if (r->max_tokens <= c->r.max_tokens && r->max_cols <= c->r.max_cols && r->num_heads <= c->r.num_heads &&
        r->num_kv_heads == c->r.num_kv_heads && r->head_dim == c->r.head_dim &&
        (moe_pairs == 0 || (moe_pairs <= c->moe_pairs && r->moe_hidden == c->r.moe_hidden &&
                            r->moe_inter == c->r.moe_inter && r->moe_experts == c->r.moe_experts)))
        return 0;
    cudaStreamSynchronize(c->stream);
    cudaFree(c->xcast);
    cudaFree(c->ones);
    cudaFree(c->attn_ws);
    cudaFree(c->ids);
    cudaFree(c->moe_ws);
    c->xcast = c->attn_ws = c->moe_ws = NULL;
    c->ones = NULL;
    c->ids = NULL;
    c->moe_pairs = 0;
    c->r = (struct backend_reserve_args){0};
    c->reserved = 0;
    const size_t T = (size_t)(r->max_tokens > 0 ? r->max_tokens : 1);
    const size_t xcast_bytes = T * (size_t)(r->max_cols > 0 ? r->max_cols : 1) * 2;
    const size_t ws = paged_attention_workspace_size(r->max_tokens, r->num_heads, r->num_kv_heads, r->head_dim);
    const size_t moe_bytes = moe_workspace_size(moe_pairs, r->moe_hidden, r->moe_inter, r->moe_experts);
    float *ones_h = malloc(sizeof(float) * T);
    int rc = 0;
    if (!ones_h || !(c->xcast = cu_alloc(b, xcast_bytes)) || !(c->ones = cu_alloc(b, sizeof(float) * T)) ||
        !(c->ids = cu_alloc(b, sizeof(int32_t) * T)) || (ws && !(c->attn_ws = cu_alloc(b, ws))) ||
        (moe_bytes && !(c->moe_ws = cu_alloc(b, moe_bytes)))) {
        rc = folio_err(FOLIO_ENOMEM, "out of GPU memory for the activation scratch of %zu-token batches", T);
    } else {
        for (size_t i = 0; i < T; i++) ones_h[i] = 1.0f;
        rc = cu_upload(b, c->ones, ones_h, sizeof(float) * T);
    }
    free(ones_h);
    if (rc) return rc;
    c->r = *r;
    c->attn_ws_bytes = ws;
    c->moe_pairs = moe_bytes ? moe_pairs : 0;
    c->reserved = xcast_bytes + sizeof(float) * T + sizeof(int32_t) * T + ws + moe_bytes;
    return quant_reserve(b);
}

static int cu_mem_info(struct backend *b, struct backend_mem *out) {
    cudaError_t e = cudaMemGetInfo(&out->free, &out->total);
    out->reserved = ctx_of(b)->reserved + ctx_of(b)->blas_ws_bytes + ctx_of(b)->q_reserved;
    return e == cudaSuccess ? 0 : folio_err(FOLIO_EIO, "cudaMemGetInfo: %s", cudaGetErrorString(e));
}

static int cu_argmax(struct backend *b, const float *logits, int n, int vocab, int32_t *ids) {
    struct cuda_ctx *c = ctx_of(b);
    if (n > c->r.max_tokens) return folio_err(FOLIO_EINVAL, "argmax of %d rows exceeds the reserved %d", n, c->r.max_tokens);
    note(c, argmax_rows(logits, n, vocab, c->ids, c->stream));
    return cu_download(b, ids, c->ids, sizeof(int32_t) * (size_t)n);
}

static int cu_graph_begin(struct backend *b) {
    struct cuda_ctx *c = ctx_of(b);
    /* Thread-local: only this thread's unsafe calls (a sync, a malloc) break the capture. */
    cudaError_t e = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal);
    return e == cudaSuccess ? 0 : folio_err(FOLIO_EIO, "cuda graph capture: %s", cudaGetErrorString(e));
}

static int cu_graph_end(struct backend *b, void **graph) {
    struct cuda_ctx *c = ctx_of(b);
    cudaGraph_t g = NULL;
    cudaGraphExec_t exec = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &g);
    if (e == cudaSuccess && c->err != cudaSuccess) e = c->err;
    if (e == cudaSuccess) e = cudaGraphInstantiate(&exec, g, 0);
    if (g) cudaGraphDestroy(g);
    c->err = cudaSuccess; /* a failed capture launched nothing: the stream goes on eagerly */
    cudaGetLastError();
    if (e != cudaSuccess) return folio_err(FOLIO_EIO, "cuda graph capture: %s", cudaGetErrorString(e));
    *graph = exec;
    return 0;
}

static int cu_graph_launch(struct backend *b, void *graph) {
    note(ctx_of(b), cudaGraphLaunch((cudaGraphExec_t)graph, ctx_of(b)->stream));
    return 0;
}

static void cu_graph_free(struct backend *b, void *graph) {
    cudaStreamSynchronize(ctx_of(b)->stream);
    cudaGraphExecDestroy((cudaGraphExec_t)graph);
}

static const struct backend_i cuda_iface = {
    .name = "cuda",
    .kv_dtypes = 1u << FOLIO_F32 | 1u << FOLIO_BF16 | 1u << FOLIO_FP8,
    .free = cu_free,
    .alloc = cu_alloc,
    .release = cu_release,
    .upload = cu_upload,
    .download = cu_download,
    .load_weight = cu_load_weight,
    .free_weight = cu_free_weight,
    .load_quant = cu_load_quant,
    .embed = cu_embed,
    .add_rms_norm = cu_add_rms_norm,
    .matmul = cu_matmul,
    .rope = cu_rope,
    .reshape_and_cache = cu_reshape_and_cache,
    .attention = cu_attention,
    .glu = cu_glu,
    .scale = cu_scale,
    .softcap = cu_softcap,
    .moe = cu_moe,
    .copy_blocks = cu_copy_blocks,
    .gather_rows = cu_gather_rows,
    .sync = cu_sync,
    .reserve = cu_reserve,
    .mem_info = cu_mem_info,
    .argmax = cu_argmax,
    .graph_begin = cu_graph_begin,
    .graph_end = cu_graph_end,
    .graph_launch = cu_graph_launch,
    .graph_free = cu_graph_free,
};

int backend_cuda_available(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

int backend_cuda_create(int device, struct backend **out) {
    struct backend *b = calloc(1, sizeof *b);
    struct cuda_ctx *c = calloc(1, sizeof *c);
    int n = 0;
    if (!b || !c) {
        free(b);
        free(c);
        return folio_err(FOLIO_ENOMEM, "out of memory");
    }
    b->iface = &cuda_iface;
    b->ctx = c;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cu_free(b);
        return folio_err(FOLIO_EUNSUP, "no CUDA device (%s); use --device cpu",
                         e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    }
    if (device < 0 || device >= n) {
        cu_free(b);
        return folio_err(FOLIO_EINVAL, "CUDA device %d does not exist (%d found)", device, n);
    }
    struct cudaDeviceProp prop;
    if ((e = cudaSetDevice(device)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        cu_free(b);
        return folio_err(FOLIO_EIO, "cuda device %d: %s", device, cudaGetErrorString(e));
    }
    c->device = device;
    pthread_once(&blas_once, blas_open);
    if (!blas.lib) {
        cu_free(b);
        return folio_err(FOLIO_EUNSUP, "%s", blas.error);
    }
    if (blas.create(&c->blas) != CUBLAS_STATUS_SUCCESS || blas.set_stream(c->blas, c->stream) != CUBLAS_STATUS_SUCCESS ||
        blas.set_math_mode(c->blas, CUBLAS_PEDANTIC_MATH) != CUBLAS_STATUS_SUCCESS) {
        cu_free(b);
        return folio_err(FOLIO_EIO, "cuBLAS could not start on device %d", device);
    }
    c->math = CUBLAS_PEDANTIC_MATH;
    /* cuBLAS would otherwise allocate its workspace on first use, which a graph capture
     * cannot contain; 32 MiB is what NVIDIA suggests for Hopper. */
    if (blas.set_workspace) {
        const size_t ws = (size_t)32 << 20;
        if (cudaMalloc(&c->blas_ws, ws) != cudaSuccess ||
            blas.set_workspace(c->blas, c->blas_ws, ws) != CUBLAS_STATUS_SUCCESS) {
            cu_free(b);
            return folio_err(FOLIO_ENOMEM, "cuBLAS workspace: out of GPU memory on device %d", device);
        }
        c->blas_ws_bytes = ws;
    }
    snprintf(c->name, sizeof c->name, "cuda:%d %.200s (sm_%d%d, %.1f GiB)", device, prop.name, prop.major, prop.minor,
             (double)prop.totalGlobalMem / (1 << 30));
    *out = b;
    return 0;
}

const char *backend_cuda_name(const struct backend *b) { return ((const struct cuda_ctx *)b->ctx)->name; }
