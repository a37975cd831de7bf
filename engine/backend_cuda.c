/* backend_cuda: the backend vtable on an NVIDIA GPU: device buffers, one stream, the kernels/
 * launchers for every op, and cuBLAS for the products. Built only with `make CUDA=1`.
 *
 * The CUDA runtime is linked statically and cuBLAS is opened with dlopen when a CUDA backend
 * is created. Linked normally, cuBLAS(Lt) would put ~110 KiB of static TLS into every thread
 * of the process, more than the stacks CivetWeb gives its HTTP workers, which then fail to
 * start; opened later, its TLS is allocated only in the threads that call it.
 *
 * First version: weights are widened to fp32 at load and products run through cublasSgemm
 * (TF32 off), so results match the CPU backend to rounding; bf16/f16 GEMMs (half the weight
 * bytes) and split-K attention workspace are the next steps. Every op enqueues on the
 * backend's stream; download and sync wait for it. */
#include "backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "util.h"

/* The cuBLAS entry points this backend uses, resolved once. */
static struct {
    void *lib;
    __typeof__(cublasCreate_v2) *create;
    __typeof__(cublasDestroy_v2) *destroy;
    __typeof__(cublasSetStream_v2) *set_stream;
    __typeof__(cublasSetMathMode) *set_math_mode;
    __typeof__(cublasSgemm_v2) *sgemm;
    __typeof__(cublasSger_v2) *sger;
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
    if (!blas.create || !blas.destroy || !blas.set_stream || !blas.set_math_mode || !blas.sgemm || !blas.sger) {
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
    float *ones;              /* [ones_n] for bias rows (cublasSger) */
    int ones_n;
    char name[320];
};

static struct cuda_ctx *ctx_of(struct backend *b) { return b->ctx; }

static void note(struct cuda_ctx *c, cudaError_t e) {
    if (e != cudaSuccess && c->err == cudaSuccess) c->err = e;
}

static void cu_free(struct backend *b) {
    struct cuda_ctx *c = ctx_of(b);
    if (c) {
        cudaFree(c->ones);
        if (c->blas) blas.destroy(c->blas);
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

static int cu_load_weight(struct backend *b, const void *src, enum folio_dtype src_dtype, int64_t rows,
                          int64_t cols, enum folio_dtype dtype, struct bk_weight *out) {
    (void)dtype; /* widened to fp32 in this version (see the top comment) */
    const size_t n = (size_t)rows * (size_t)cols;
    float *host = malloc(sizeof(float) * n);
    if (!host) return folio_err(FOLIO_ENOMEM, "out of memory widening a weight");
    for (size_t i = 0; i < n; i++) host[i] = folio_widen(src, src_dtype, i);
    void *dev = cu_alloc(b, sizeof(float) * n);
    int rc = dev ? cu_upload(b, dev, host, sizeof(float) * n)
                 : folio_err(FOLIO_ENOMEM, "out of GPU memory for a %lld x %lld weight", (long long)rows,
                             (long long)cols);
    free(host);
    if (rc) {
        if (dev) cudaFree(dev);
        return rc;
    }
    *out = (struct bk_weight){.dtype = FOLIO_F32, .data = dev, .rows = rows, .cols = cols, .owned = dev};
    return 0;
}

static void cu_free_weight(struct backend *b, struct bk_weight *w) {
    if (w->owned) cu_release(b, w->owned);
    w->owned = NULL;
    w->data = NULL;
}

static void cu_embed(struct backend *b, const struct bk_weight *t, const int32_t *tokens, int n, float *out) {
    note(ctx_of(b), embed(t->data, (enum kernel_dtype)t->dtype, t->rows, t->cols, tokens, n, out, ctx_of(b)->stream));
}

static void cu_add_rms_norm(struct backend *b, float *residual, const float *delta, const float *w, float *out,
                            int rows, int dim, float eps) {
    note(ctx_of(b), add_rms_norm(residual, delta, w, out, rows, dim, eps, ctx_of(b)->stream));
}

/* out[T, N] = x[T, K] W^T + bias. Row-major out is column-major N x T, and W [N, K] row-major
 * is column-major K x N, so out = op(W)^T-free: C(N x T) = Wc^T (N x K) * xc (K x T). */
static void cu_matmul(struct backend *b, const float *x, int T, const struct bk_matmul *mm, int n) {
    struct cuda_ctx *c = ctx_of(b);
    const float one = 1.0f, zero = 0.0f;
    for (int i = 0; i < n; i++) {
        const struct bk_weight *w = mm[i].w;
        const int N = (int)w->rows, K = (int)w->cols;
        if (blas.sgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, T, K, &one, w->data, K, x, K, &zero, mm[i].out, N) !=
            CUBLAS_STATUS_SUCCESS)
            note(c, cudaErrorLaunchFailure);
        if (mm[i].bias) {
            if (T > c->ones_n) {
                /* A bias row per token: a rank-1 update with a ones vector, grown on the first
                 * batches (the warm-up) and kept. */
                float *ones = NULL;
                float *h = malloc(sizeof(float) * (size_t)T);
                if (!h || cudaMalloc((void **)&ones, sizeof(float) * (size_t)T) != cudaSuccess) {
                    free(h);
                    note(c, cudaErrorMemoryAllocation);
                    continue;
                }
                for (int k = 0; k < T; k++) h[k] = 1.0f;
                cudaMemcpy(ones, h, sizeof(float) * (size_t)T, cudaMemcpyHostToDevice);
                free(h);
                cudaStreamSynchronize(c->stream);
                cudaFree(c->ones);
                c->ones = ones;
                c->ones_n = T;
            }
            if (blas.sger(c->blas, N, T, &one, mm[i].bias, 1, c->ones, 1, mm[i].out, N) != CUBLAS_STATUS_SUCCESS)
                note(c, cudaErrorLaunchFailure);
        }
    }
}

static void cu_rope(struct backend *b, float *q, int q_stride, float *k, int k_stride, const int32_t *positions,
                    const float *inv_freq, int T, int nh, int nkv, int head_dim) {
    note(ctx_of(b), rope(q, q_stride, k, k_stride, positions, inv_freq, T, nh, nkv, head_dim, ctx_of(b)->stream));
}

static void cu_reshape_and_cache(struct backend *b, const float *k, const float *v, int stride,
                                 const int32_t *slot_mapping, float *k_cache, float *v_cache, int T, int nkv,
                                 int head_dim, int block_size) {
    note(ctx_of(b), reshape_and_cache(k, v, stride, slot_mapping, k_cache, v_cache, T, nkv, head_dim, block_size,
                                      ctx_of(b)->stream));
}

static void cu_attention(struct backend *b, const struct bk_attention *p) {
    const struct paged_attention_params pa = {
        .q = p->q, .k_cache = p->k_cache, .v_cache = p->v_cache, .block_tables = p->block_tables,
        .seq_idx = p->seq_idx, .positions = p->positions, .out = p->out, .num_tokens = p->num_tokens,
        .num_heads = p->num_heads, .num_kv_heads = p->num_kv_heads, .head_dim = p->head_dim,
        .block_size = p->block_size, .max_blocks_per_seq = p->max_blocks_per_seq,
        .sliding_window = p->sliding_window, .scale = p->scale, .max_splits = 1};
    note(ctx_of(b), paged_attention(&pa, ctx_of(b)->stream));
}

static void cu_silu_mul(struct backend *b, const float *gate, const float *up, float *out, int T, int n) {
    note(ctx_of(b), silu_mul(gate, up, out, T, n, ctx_of(b)->stream));
}

static void cu_copy_blocks(struct backend *b, float *pool, int num_caches, size_t cache_elems, size_t block_elems,
                           const int32_t *pairs, int n) {
    note(ctx_of(b), copy_blocks(pool, num_caches, cache_elems, block_elems, pairs, n, ctx_of(b)->stream));
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

static const struct backend_i cuda_iface = {
    .name = "cuda",
    .free = cu_free,
    .alloc = cu_alloc,
    .release = cu_release,
    .upload = cu_upload,
    .download = cu_download,
    .load_weight = cu_load_weight,
    .free_weight = cu_free_weight,
    .embed = cu_embed,
    .add_rms_norm = cu_add_rms_norm,
    .matmul = cu_matmul,
    .rope = cu_rope,
    .reshape_and_cache = cu_reshape_and_cache,
    .attention = cu_attention,
    .silu_mul = cu_silu_mul,
    .copy_blocks = cu_copy_blocks,
    .gather_rows = cu_gather_rows,
    .sync = cu_sync,
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
    snprintf(c->name, sizeof c->name, "cuda:%d %.200s (sm_%d%d, %.1f GiB)", device, prop.name, prop.major, prop.minor,
             (double)prop.totalGlobalMem / (1 << 30));
    *out = b;
    return 0;
}

const char *backend_cuda_name(const struct backend *b) { return ((const struct cuda_ctx *)b->ctx)->name; }
