/* roofline: measures this machine's memory read bandwidth and fp32 FMA throughput with the
 * engine's own thread pool and thread count, so that benchmark figures can be set against what
 * the hardware can do in the same run.
 *   roofline [--threads N] [--mib M]   prints: bandwidth_gbs=X flops_g=Y isa=Z threads=N */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "threadpool.h"
#include "util.h"

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
__attribute__((target("avx512f"))) static void flops_task512(void *p, int task, int thread) {
    __m512 a[12], b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (int it = 0; it < (1 << 20); it++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    float s = 0;
    for (int i = 0; i < 12; i++) s += _mm512_reduce_add_ps(a[i]);
    ((volatile float *)p)[thread & 255] = s;
}

__attribute__((target("avx2,fma"))) static void flops_task256(void *p, int task, int thread) {
    __m256 a[12], b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (int it = 0; it < (1 << 20); it++)
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
    float out[8], s = 0;
    for (int i = 0; i < 12; i++) {
        _mm256_storeu_ps(out, a[i]);
        s += out[0];
    }
    ((volatile float *)p)[thread & 255] = s;
}

int main(int argc, char **argv) {
    int threads = 0, mib = 1024;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0) threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--mib") == 0) mib = atoi(argv[i + 1]);
    }
    struct threadpool *tp = tp_create(threads);
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
        tp_run(tp, tasks, bw_task, &bj);
        double dt = folio_now() - t0;
        if (bytes / dt > best_bw) best_bw = bytes / dt;
    }
    int avx512 = strcmp(k->isa, "avx512") == 0;
    float sink[256];
    double best_fl = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = folio_now();
        tp_run(tp, tp_size(tp), avx512 ? flops_task512 : flops_task256, sink);
        double dt = folio_now() - t0;
        double fl = (double)tp_size(tp) * (1 << 20) * 12 * (avx512 ? 16 : 8) * 2 / dt;
        if (fl > best_fl) best_fl = fl;
    }
    printf("bandwidth_gbs=%.2f flops_g=%.1f isa=%s threads=%d\n", best_bw / 1e9, best_fl / 1e9, k->isa, tp_size(tp));
    free(buf);
    tp_free(tp);
    return 0;
}
