/* roofline: measures this machine's memory read bandwidth and fp32 FMA throughput with the
 * engine's own thread pool and thread count, so that benchmark figures can be set against what
 * the hardware can do in the same run.
 *   roofline [--threads N] [--mib M]   prints: bandwidth_gbs=X flops_g=Y isa=Z threads=N */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_kernels.h"
#include "base/threadpool.h"
#include "base/util.h"

#define CHUNK (1 << 20) /* bytes per read task */

struct bw_job {
    const float *buf;
    float sums[256];
};

__attribute__((target("avx2"))) static void bw_task(void *p, int task, int thread) {
    struct bw_job *j = p;
    const __m256 *v = (const __m256 *)(j->buf + (size_t)task * (CHUNK / 4));
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < CHUNK / 32; i += 4) {
        a0 = _mm256_add_ps(a0, v[i]);
        a1 = _mm256_add_ps(a1, v[i + 1]);
        a2 = _mm256_add_ps(a2, v[i + 2]);
        a3 = _mm256_add_ps(a3, v[i + 3]);
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    j->sums[thread & 255] += out[0] + out[7];
}

/* Independent FMA chains, enough to cover latency x ports; per-ISA so it measures the width
 * the GEMM kernels use. */
#define FMA_CHAINS(T, FMA, SET1)                                                                   \
    T a0 = SET1(0.f), a1 = SET1(1.f), a2 = SET1(2.f), a3 = SET1(3.f), a4 = SET1(4.f), a5 = SET1(5.f); \
    T a6 = SET1(6.f), a7 = SET1(7.f), a8 = SET1(8.f), a9 = SET1(9.f), b = SET1(0.999999f), c = SET1(1e-7f); \
    for (int it = 0; it < FMA_ITERS; it++) {                                                         \
        a0 = FMA(a0, b, c); a1 = FMA(a1, b, c); a2 = FMA(a2, b, c); a3 = FMA(a3, b, c);             \
        a4 = FMA(a4, b, c); a5 = FMA(a5, b, c); a6 = FMA(a6, b, c); a7 = FMA(a7, b, c);             \
        a8 = FMA(a8, b, c); a9 = FMA(a9, b, c);                                                     \
    }
#define FMA_ITERS (1 << 22)
#define FMA_PER_ITER 10

/* Ten independent FMA chains in named variables (so they stay in registers): enough to
 * cover FMA latency x pipes on current x86 cores. Per-ISA, to measure the width the GEMM
 * kernels use. */
__attribute__((target("avx512f"))) static void flops_task512(void *p, int task, int thread) {
    FMA_CHAINS(__m512, _mm512_fmadd_ps, _mm512_set1_ps)
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(_mm512_add_ps(a6, a7), _mm512_add_ps(a8, a9))));
    ((volatile float *)p)[thread & 255] = _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static void flops_task256(void *p, int task, int thread) {
    FMA_CHAINS(__m256, _mm256_fmadd_ps, _mm256_set1_ps)
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(_mm256_add_ps(a6, a7), _mm256_add_ps(a8, a9))));
    float out[8];
    _mm256_storeu_ps(out, s);
    ((volatile float *)p)[thread & 255] = out[0];
}

int main(int argc, char **argv) {
    int threads = 0, mib = 1024;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0) threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--mib") == 0) mib = atoi(argv[i + 1]);
    }
    struct threadpool *tp = threadpool_create(threads);
    const struct cpu_kernels *k = cpu_kernels_get();
    size_t bytes = (size_t)mib << 20;
    float *buf = aligned_alloc(64, bytes);
    if (!tp || !buf) {
        fprintf(stderr, "roofline: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < bytes / 4; i++) buf[i] = (float)(i & 1023) * 1e-3f;
    struct bw_job bj = {buf, {0}};
    int tasks = (int)(bytes / CHUNK);
    double best_bw = 0;
    for (int rep = 0; rep < 7; rep++) {
        double t0 = folio_now();
        threadpool_run(tp, tasks, bw_task, &bj);
        double dt = folio_now() - t0;
        if (bytes / dt > best_bw) best_bw = bytes / dt;
    }
    int avx512 = strcmp(k->isa, "avx512") == 0;
    float sink[256];
    double best_fl = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = folio_now();
        threadpool_run(tp, threadpool_size(tp), avx512 ? flops_task512 : flops_task256, sink);
        double dt = folio_now() - t0;
        double fl = (double)threadpool_size(tp) * FMA_ITERS * FMA_PER_ITER * (avx512 ? 16 : 8) * 2 / dt;
        if (fl > best_fl) best_fl = fl;
    }
    printf("bandwidth_gbs=%.2f flops_g=%.1f isa=%s threads=%d\n", best_bw / 1e9, best_fl / 1e9, k->isa, threadpool_size(tp));
    free(buf);
    threadpool_free(tp);
    return 0;
}
