// moe: a sparse mixture-of-experts block (Mixtral, Qwen3-MoE) as five kernels per pass, with
// no host sync and no allocation, so that a decode step holding it can be captured in a CUDA
// graph:
//   1. moe_route_kernel: a warp per token: fp32 softmax over the router logits, top_k by
//      repeated warp argmax (highest first, the lower id on a tie, as the CPU), renormalized
//      when asked -> ids, wts [T, k].
//   2. moe_group_kernel: one CTA: a counting sort of the T * k (token, slot) pairs by expert
//      in shared memory -> offsets [E + 1] and pair_of_row [P] (the pairs of expert e are
//      grouped rows offsets[e] .. offsets[e + 1]). The order of the rows inside an expert
//      depends on atomics, but no result does: each row is computed on its own.
//   3. moe_gemm_kernel<DUAL>: gate and up together: a CTA takes (expert, 32 output rows) and
//      loops over that expert's grouped rows, MOE_TT at a time, reading x rows straight from
//      the token matrix (no gathered copy), with act(gate) * up fused into its epilogue
//      (the GLU step) -> h [P, inter] in grouped order.
//   4. moe_gemm_kernel<!DUAL>: down over h -> y [P, hidden] in pair order.
//   5. moe_combine_kernel: out[t] = sum_j wts[t, j] y[t * k + j] in slot order, so a token's
//      output does not depend on which other tokens shared its batch.
//
// Bounds. At decode an expert has few rows (at most MOE_TT per pass), so each CTA streams its
// 32-row slice of the active experts' weights exactly once: the block is memory-bound on
// expert weights, top_k * 3 * inter * hidden * sizeof(dtype) bytes per token at batch 1
// (Mixtral bf16: 704 MB, ~0.25 ms at 3 TB/s; Qwen3-30B-A3B: 75 MB), shared by the tokens of
// a batch that pick the same experts. An idle expert's CTAs read its two offsets and exit,
// so none of its weights is read. The weights stay in their dtype and are widened in
// registers; x, h and the sums stay fp32, as on the CPU, so the two agree to fp32 rounding.
// Past MOE_TT rows an expert's CTA re-reads its slice (32 x K) for every MOE_TT rows, from
// L2 when it stays resident: 8 flops per byte of slice, on CUDA cores. Prefill is therefore
// compute-bound on fp32 FMA; a tensor-core grouped GEMM is the step up for long prompts.
// Routing and grouping are a few microseconds (one CTA sorts a pass). Batches of more pairs
// than the workspace holds run as several passes of max_pairs / top_k tokens each.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "activation.cuh"

#define ROUTE_WARPS 4     // tokens per routing CTA, a warp each
#define GROUP_THREADS 1024
#define MOE_MAX_EXPERTS 2048 // the routing CTA's probs in shared memory: ROUTE_WARPS * E floats
#define MOE_WARPS 8
#define MOE_RW 4                      // weight rows per warp
#define MOE_ROWS (MOE_WARPS * MOE_RW) // output rows of one expert per CTA
#define MOE_TT 8                      // grouped rows (tokens) per pass over the slice
#define MOE_KC 512                    // K elements staged in shared memory at a time

// The workspace, carved in this order (each part 256-byte aligned).
struct moe_ws {
    int32_t *ids;         // [P] each pair's expert
    float *wts;           // [P] its routing weight
    int32_t *offsets;     // [E + 1] first grouped row of each expert
    int32_t *pair_of_row; // [P] the pair of each grouped row
    float *h;             // [P, inter] act(gate) * up, grouped rows
    float *y;             // [P, hidden] expert outputs, pair order
};

static size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

// Bytes of the workspace for P pairs; fills *w when base is not null.
static size_t ws_layout(int P, int hidden, int inter, int E, char *base, struct moe_ws *w) {
    const size_t p = (size_t)P;
    const size_t sz[6] = {align256(p * 4), align256(p * 4), align256(((size_t)E + 1) * 4), align256(p * 4),
                          align256(p * (size_t)inter * 4), align256(p * (size_t)hidden * 4)};
    size_t at[6], total = 0;
    for (int i = 0; i < 6; i++) {
        at[i] = total;
        total += sz[i];
    }
    if (base) {
        w->ids = (int32_t *)(base + at[0]);
        w->wts = (float *)(base + at[1]);
        w->offsets = (int32_t *)(base + at[2]);
        w->pair_of_row = (int32_t *)(base + at[3]);
        w->h = (float *)(base + at[4]);
        w->y = (float *)(base + at[5]);
    }
    return total;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__global__ void __launch_bounds__(32 * ROUTE_WARPS) moe_route_kernel(const float *__restrict__ logits, // [T, E]
                                                                      int32_t *__restrict__ ids,        // [T, k]
                                                                      float *__restrict__ wts,          // [T, k]
                                                                      int T, int E, int k, int norm) {
    extern __shared__ float probs_s[]; // [ROUTE_WARPS, E]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int t = blockIdx.x * ROUTE_WARPS + warp;
    if (t >= T) return; // a whole warp; nothing below syncs the CTA
    float *probs = probs_s + (size_t)warp * E;
    const float *l = logits + (size_t)t * E;
    float mx = -INFINITY;
    for (int e = lane; e < E; e += 32) mx = fmaxf(mx, l[e]);
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int e = lane; e < E; e += 32) {
        const float p = expf(l[e] - mx);
        probs[e] = p;
        sum += p;
    }
    sum = warp_sum(sum);
    for (int e = lane; e < E; e += 32) probs[e] = probs[e] / sum;
    __syncwarp();
    float kept = 0.0f;
    for (int j = 0; j < k; j++) {
        // Each lane's best among its experts (ascending ids, so a strict > keeps the lower
        // id), then the warp's; taken experts hold -1, NaNs never compare.
        int best = -1;
        float bp = -1.0f;
        for (int e = lane; e < E; e += 32) {
            const float p = probs[e];
            if (p >= 0.0f && (best < 0 || p > bp)) {
                best = e;
                bp = p;
            }
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            const int ob = __shfl_xor_sync(0xffffffffu, best, off);
            const float op = __shfl_xor_sync(0xffffffffu, bp, off);
            if (ob >= 0 && (best < 0 || op > bp || (op == bp && ob < best))) {
                best = ob;
                bp = op;
            }
        }
        if (best < 0) { // nothing comparable (NaN logits): expert 0 at weight 0, never out of bounds
            best = 0;
            bp = 0.0f;
        }
        if (lane == 0) {
            ids[(size_t)t * k + j] = best;
            wts[(size_t)t * k + j] = bp;
            probs[best] = -1.0f; // taken
        }
        kept += bp;
        __syncwarp();
    }
    if (norm && lane == 0)
        for (int j = 0; j < k; j++) wts[(size_t)t * k + j] /= kept;
}

__global__ void __launch_bounds__(GROUP_THREADS) moe_group_kernel(const int32_t *__restrict__ ids, // [P]
                                                                   int32_t *__restrict__ offsets,   // [E + 1]
                                                                   int32_t *__restrict__ pair_of_row, // [P]
                                                                   int P, int E) {
    extern __shared__ int32_t cnt_s[]; // [E]: counts, then each expert's next free row
    for (int e = threadIdx.x; e < E; e += blockDim.x) cnt_s[e] = 0;
    __syncthreads();
    for (int p = threadIdx.x; p < P; p += blockDim.x) atomicAdd(&cnt_s[ids[p]], 1);
    __syncthreads();
    if (threadIdx.x == 0) { // a serial scan: E is at most a few hundred in practice
        int run = 0;
        for (int e = 0; e < E; e++) {
            const int c = cnt_s[e];
            offsets[e] = run;
            cnt_s[e] = run;
            run += c;
        }
        offsets[E] = run;
    }
    __syncthreads();
    for (int p = threadIdx.x; p < P; p += blockDim.x) pair_of_row[atomicAdd(&cnt_s[ids[p]], 1)] = p;
}

// A weight element widened to fp32.
__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }

// V consecutive weight elements of type WT starting at p (16 bytes when V > 1) widened to fp32.
template <typename WT, int V>
__device__ __forceinline__ void load_w(const WT *p, float f[V]) {
    if constexpr (V == 1) {
        f[0] = to_f(*p);
    } else {
        const uint4 v = *reinterpret_cast<const uint4 *>(p);
        const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            if constexpr (sizeof(WT) == 4) {
                f[i] = __uint_as_float(u[i]);
            } else if constexpr (std::is_same<WT, __nv_bfloat16>::value) {
                f[2 * i] = __uint_as_float(u[i] << 16);
                f[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
            } else { // through __half_raw: reading u[i] as a __half2 would break strict aliasing
                __half_raw lo, hi;
                lo.x = (unsigned short)(u[i] & 0xffffu);
                hi.x = (unsigned short)(u[i] >> 16);
                f[2 * i] = __half2float(__half(lo));
                f[2 * i + 1] = __half2float(__half(hi));
            }
        }
    }
}

// out rows of expert blockIdx.y, output rows [blockIdx.x * MOE_ROWS, + MOE_ROWS): for each
// grouped row r of the expert, out[., n] = x_r . w0[e * N + n] (and with DUAL, act(that) *
// (x_r . w1[e * N + n])). Each warp owns MOE_RW consecutive weight rows, each lane V-element
// vectors of them; the x rows of a pass sit in shared memory, MOE_KC columns at a time.
// V > 1 needs K % V == 0 and 16-byte aligned weights (the launcher checks).
template <typename WT, int V, bool DUAL, int ACT>
__global__ void __launch_bounds__(32 * MOE_WARPS) moe_gemm_kernel(
    const WT *__restrict__ w0,               // [E * N, K]: gate (DUAL) or down
    const WT *__restrict__ w1,               // [E * N, K]: up (DUAL); unused otherwise
    const float *__restrict__ x,             // DUAL: [T, K] the tokens; else [P, K] grouped rows
    const int32_t *__restrict__ offsets,     // [E + 1]
    const int32_t *__restrict__ pair_of_row, // [P]
    float *__restrict__ out,                 // DUAL: [P, N] grouped rows; else [P, N] pair order
    int N, int K, int top_k) {
    constexpr int NP = DUAL ? 2 : 1;          // products
    constexpr int NV = MOE_KC / (32 * V);     // vectors per lane per row per stage
    static_assert(MOE_KC % (32 * V) == 0, "bad MoE stage");
    __shared__ __align__(16) float xs[MOE_TT][MOE_KC];
    __shared__ const float *src_s[MOE_TT];

    const int e = blockIdx.y;
    const int r0 = offsets[e], r1 = offsets[e + 1];
    if (r0 == r1) return; // an idle expert: none of its weights are read
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int nb = blockIdx.x * MOE_ROWS + warp * MOE_RW;
    const WT *wrow[NP][MOE_RW];
#pragma unroll
    for (int r = 0; r < MOE_RW; r++) {
        const size_t row = ((size_t)e * N + (nb + r < N ? nb + r : 0)) * (size_t)K; // past N: never read
        wrow[0][r] = w0 + row;
        if constexpr (DUAL) wrow[NP - 1][r] = w1 + row;
    }

    for (int rb = r0; rb < r1; rb += MOE_TT) {
        const int tn = min(MOE_TT, r1 - rb);
        // The previous pass read src_s only before its last barrier, so this write is safe;
        // the barrier at the top of the first stage publishes it.
        if (threadIdx.x < tn) {
            const int r = rb + threadIdx.x;
            src_s[threadIdx.x] = DUAL ? x + (size_t)(pair_of_row[r] / top_k) * K : x + (size_t)r * K;
        }
        float acc[NP][MOE_RW][MOE_TT];
#pragma unroll
        for (int p = 0; p < NP; p++)
#pragma unroll
            for (int r = 0; r < MOE_RW; r++)
#pragma unroll
                for (int t = 0; t < MOE_TT; t++) acc[p][r][t] = 0.0f;

        for (int k0 = 0; k0 < K; k0 += MOE_KC) {
            const int kc = min(MOE_KC, K - k0);
            __syncthreads(); // the previous stage is done with xs
            for (int i = threadIdx.x; i < tn * MOE_KC; i += blockDim.x) {
                const int t = i / MOE_KC, kk = i % MOE_KC;
                if (kk < kc) xs[t][kk] = src_s[t][k0 + kk];
            }
            __syncthreads();
#pragma unroll
            for (int i = 0; i < NV; i++) {
                const int kk = (lane + 32 * i) * V;
                if (kk >= kc) break;
                float f[NP][MOE_RW][V];
#pragma unroll
                for (int p = 0; p < NP; p++)
#pragma unroll
                    for (int r = 0; r < MOE_RW; r++) {
                        if (nb + r < N) {
                            load_w<WT, V>(wrow[p][r] + k0 + kk, f[p][r]);
                        } else {
#pragma unroll
                            for (int v = 0; v < V; v++) f[p][r][v] = 0.0f;
                        }
                    }
#pragma unroll
                for (int t = 0; t < MOE_TT; t++) {
                    if (t >= tn) break;
                    float xv[V];
#pragma unroll
                    for (int v = 0; v < V; v++) xv[v] = xs[t][kk + v];
#pragma unroll
                    for (int p = 0; p < NP; p++)
#pragma unroll
                        for (int r = 0; r < MOE_RW; r++)
#pragma unroll
                            for (int v = 0; v < V; v++) acc[p][r][t] = fmaf(f[p][r][v], xv[v], acc[p][r][t]);
                }
            }
        }

#pragma unroll
        for (int r = 0; r < MOE_RW; r++) {
            const int n = nb + r;
#pragma unroll
            for (int t = 0; t < MOE_TT; t++) {
                if (t >= tn) break;
                const float s0 = warp_sum(acc[0][r][t]);
                const float s1 = DUAL ? warp_sum(acc[NP - 1][r][t]) : 0.0f;
                if (lane == 0 && n < N) {
                    if constexpr (DUAL)
                        out[(size_t)(rb + t) * N + n] = act_f<ACT>(s0) * s1;
                    else
                        out[(size_t)pair_of_row[rb + t] * N + n] = s0;
                }
            }
        }
    }
}

// out[t, c] = sum_j wts[t, j] * y[t * k + j, c], in slot order with uncontracted float
// operations, as the CPU sums it.
__global__ void moe_combine_kernel(const float *__restrict__ y,   // [T * k, H] pair order
                                   const float *__restrict__ wts, // [T, k]
                                   float *__restrict__ out,       // [T, H]
                                   int T, int H, int k) {
    const size_t count = (size_t)T * H;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        const size_t t = i / H, c = i % H;
        float o = 0.0f;
        for (int j = 0; j < k; j++) o = __fadd_rn(o, __fmul_rn(wts[t * k + j], y[(t * k + j) * H + c]));
        out[i] = o;
    }
}

static bool aligned16(const void *p) { return (uintptr_t)p % 16 == 0; }

// The gate/up product with act fused, at vector width V.
template <typename WT, int V>
static void launch_gate_up(const struct moe_params *p, const struct moe_ws *w, const float *x, dim3 grid,
                           cudaStream_t stream) {
    const WT *g = (const WT *)p->gate, *u = (const WT *)p->up;
    if (p->act == KERNEL_ACT_SILU)
        moe_gemm_kernel<WT, V, true, KERNEL_ACT_SILU><<<grid, 32 * MOE_WARPS, 0, stream>>>(
            g, u, x, w->offsets, w->pair_of_row, w->h, p->inter, p->hidden, p->top_k);
    else
        moe_gemm_kernel<WT, V, true, KERNEL_ACT_GELU_TANH><<<grid, 32 * MOE_WARPS, 0, stream>>>(
            g, u, x, w->offsets, w->pair_of_row, w->h, p->inter, p->hidden, p->top_k);
}

// Both grouped products of one pass, 16-byte loads where the shapes allow them.
template <typename WT>
static cudaError_t launch_gemms(const struct moe_params *p, const struct moe_ws *w, const float *x,
                                cudaStream_t stream) {
    constexpr int VEC = 16 / sizeof(WT);
    const dim3 gu((unsigned)((p->inter + MOE_ROWS - 1) / MOE_ROWS), (unsigned)p->num_experts);
    const dim3 dn((unsigned)((p->hidden + MOE_ROWS - 1) / MOE_ROWS), (unsigned)p->num_experts);
    if (p->hidden % VEC == 0 && aligned16(p->gate) && aligned16(p->up))
        launch_gate_up<WT, VEC>(p, w, x, gu, stream);
    else
        launch_gate_up<WT, 1>(p, w, x, gu, stream);
    cudaError_t ce = cudaGetLastError();
    if (ce != cudaSuccess) return ce;
    const WT *d = (const WT *)p->down;
    if (p->inter % VEC == 0 && aligned16(p->down))
        moe_gemm_kernel<WT, VEC, false, 0><<<dn, 32 * MOE_WARPS, 0, stream>>>(d, nullptr, w->h, w->offsets,
                                                                             w->pair_of_row, w->y, p->hidden,
                                                                             p->inter, p->top_k);
    else
        moe_gemm_kernel<WT, 1, false, 0><<<dn, 32 * MOE_WARPS, 0, stream>>>(d, nullptr, w->h, w->offsets,
                                                                           w->pair_of_row, w->y, p->hidden,
                                                                           p->inter, p->top_k);
    return cudaGetLastError();
}

extern "C" size_t moe_workspace_size(int max_pairs, int hidden, int inter, int num_experts) {
    if (max_pairs <= 0 || hidden <= 0 || inter <= 0 || num_experts <= 0) return 0;
    return ws_layout(max_pairs, hidden, inter, num_experts, nullptr, nullptr);
}

extern "C" cudaError_t moe(const struct moe_params *p, cudaStream_t stream) {
    if ((p->act != KERNEL_ACT_SILU && p->act != KERNEL_ACT_GELU_TANH) ||
        (p->dtype != KERNEL_F32 && p->dtype != KERNEL_F16 && p->dtype != KERNEL_BF16) || p->hidden <= 0 ||
        p->inter <= 0 || p->num_experts <= 0 || p->num_experts > MOE_MAX_EXPERTS || p->top_k < 1 ||
        p->top_k > p->num_experts || p->max_pairs < p->top_k || !p->workspace || p->T < 0)
        return cudaErrorInvalidValue;
    struct moe_ws w;
    ws_layout(p->max_pairs, p->hidden, p->inter, p->num_experts, (char *)p->workspace, &w);
    const int E = p->num_experts, k = p->top_k, H = p->hidden, chunk = p->max_pairs / k;
    for (int t0 = 0; t0 < p->T; t0 += chunk) {
        const int tc = p->T - t0 < chunk ? p->T - t0 : chunk, P = tc * k;
        moe_route_kernel<<<(tc + ROUTE_WARPS - 1) / ROUTE_WARPS, 32 * ROUTE_WARPS, sizeof(float) * ROUTE_WARPS * E,
                           stream>>>(p->router_logits + (size_t)t0 * E, w.ids, w.wts, tc, E, k, p->norm_topk_prob);
        moe_group_kernel<<<1, GROUP_THREADS, sizeof(int32_t) * E, stream>>>(w.ids, w.offsets, w.pair_of_row, P, E);
        cudaError_t ce = cudaGetLastError();
        if (ce != cudaSuccess) return ce;
        const float *x = p->x + (size_t)t0 * H;
        switch (p->dtype) {
        case KERNEL_F32: ce = launch_gemms<float>(p, &w, x, stream); break;
        case KERNEL_F16: ce = launch_gemms<__half>(p, &w, x, stream); break;
        case KERNEL_BF16: ce = launch_gemms<__nv_bfloat16>(p, &w, x, stream); break;
        }
        if (ce != cudaSuccess) return ce;
        const size_t count = (size_t)tc * H;
        size_t blocks = (count + 255) / 256;
        if (blocks > 65535) blocks = 65535;
        moe_combine_kernel<<<(unsigned)blocks, 256, 0, stream>>>(w.y, w.wts, p->out + (size_t)t0 * H, tc, H, k);
        if ((ce = cudaGetLastError()) != cudaSuccess) return ce;
    }
    return cudaSuccess;
}
