// quant: products with quantized weights (engine/base/quant.h's formats, in the private layout
// of kernels.h's qweight_layout).
//
// qgemv (batches of up to QGEMV_MAX_T rows, i.e. decode): a warp per output row streams the
// row's packed weight once in aligned 16-byte loads (QUNROLL in flight per lane), widens it in
// registers and multiplies it with the fp32 activations, summing in fp32. Per weight it moves
// 1.06 (Q8, FP8 1.0), 0.56 (Q4) or 0.59 (Q4Z) bytes from HBM, so at T = 1 the bound is memory
// bandwidth: Llama-3.2-1B's 1.23G linear weights (the head included) are 1.3 GB in int8,
// ~0.4 ms a token at an H100's 3.35 TB/s, against 0.74 ms in bf16. Two things press on that
// bound and set how far T can go:
//  - the widening is integer and fp32 ALU work, kept to a few instructions a weight: a byte
//    becomes a float with one PRMT and one FADD (under the exponent of 2^23, exact), a nibble
//    with a LOP3 more, an e4m3 byte with two shifts, a LOP3 and an FMUL (its bits placed into
//    an fp32 with the exponent bias fixed by 2^120, subnormals included);
//  - every lane re-reads the activations it multiplies from L1/L2: 4T bytes a weight, against
//    the weight's 0.56-1.06 bytes from HBM. At T = 1 that is within L1's bandwidth (~30 TB/s
//    on an H100, about 8x HBM's); by T = 8 it is the likelier bound, under HBM's (make
//    bench-gpu measures both ends). Still one pass: dequantizing to bf16 for a GEMM would
//    move 4+ bytes a weight.
// Above QGEMV_MAX_T the backend dequantizes slices of rows to bf16 (qdequant_bf16: one read of
// the packed weight, one 2-byte write per weight, sized to stay in L2 for the GEMM that reads
// it back) and runs cuBLAS's bf16 GEMM on tensor cores, where the FLOPs are the bound.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "kernels.h"

#define QROWS_PER_CTA 8 // one warp per output row
#define QUNROLL 4       // 16-byte weight vectors in flight per lane

// Weights one 16-byte vector of q holds: a whole block of nibbles, half a block of bytes.
template <int DT>
struct qvec {
    static constexpr int E = DT == KERNEL_Q4 || DT == KERNEL_Q4Z ? 32 : 16;
    static constexpr int PER_BLOCK = 32 / E; // vectors per block of 32
};

// 2^23 + b for byte i of word: the byte as the low mantissa of 2^23, read as a float (exact).
__device__ __forceinline__ float magic_byte(uint32_t word, int i) {
    return __int_as_float(__byte_perm(word, 0x4B000000u, 0x7540u | (uint32_t)i));
}

// Byte i of word as e4m3fn: its exponent and mantissa bits placed at fp32's (bits 20..26), sign
// at 31, then scaled by 2^(127 - 7); an e4m3 subnormal lands on an fp32 subnormal and scales
// exactly too (no flush to zero: the build does not use fast math). 0x7f reads 480 like the
// CPU's folio_widen (e4m3fn's NaN does not occur in weights).
__device__ __forceinline__ float e4m3_byte(uint32_t word, int i) {
    const uint32_t v = word << (24 - 8 * i);
    return __int_as_float((v & 0x80000000u) | ((v >> 4) & 0x07F00000u)) * 0x1p120f;
}

// Weights 4c .. 4c + 3 of a vector (words w) in K order, before the block scale: Q8 q,
// Q4/Q4Z nib - zero (zmagic = 2^23 + zero point), FP8 the e4m3 value.
template <int DT>
__device__ __forceinline__ void unpack4(const uint32_t w[4], int c, float zmagic, float f[4]) {
    if (DT == KERNEL_Q8) {
        const uint32_t u = w[c] ^ 0x80808080u; // int8 -> q + 128 in [0, 255]
#pragma unroll
        for (int i = 0; i < 4; i++) f[i] = magic_byte(u, i) - 8388736.0f; // 2^23 + 128
    } else if (DT == KERNEL_QFP8) {
#pragma unroll
        for (int i = 0; i < 4; i++) f[i] = e4m3_byte(w[c], i);
    } else { // byte 4j + i holds weights 4j + i (low nibble) and 16 + 4j + i (high nibble)
        const uint32_t nib = (c < 4 ? w[c] : w[c - 4] >> 4) & 0x0F0F0F0Fu;
#pragma unroll
        for (int i = 0; i < 4; i++) f[i] = magic_byte(nib, i) - zmagic;
    }
}

// The multiplier of vector v's block (FP8: 1, its row scale comes at the end) and its zero point
// as 2^23 + z.
template <int DT>
__device__ __forceinline__ void block_params(const __half *__restrict__ d, const uint8_t *__restrict__ z, int b,
                                             float *mult, float *zmagic) {
    *mult = DT == KERNEL_QFP8 ? 1.0f : __half2float(d[b]);
    *zmagic = DT == KERNEL_Q4Z ? 8388608.0f + (float)z[b] : 8388616.0f; // Q4: z = 8
}

template <int T, int DT>
__global__ void __launch_bounds__(32 * QROWS_PER_CTA)
    qgemv_kernel(const uint8_t *__restrict__ q,     // [N, nb * QWEIGHT_QBYTES]
                 const __half *__restrict__ d,      // [N, nb] (not FP8)
                 const uint8_t *__restrict__ z,     // [N, nb] (Q4Z)
                 const float *__restrict__ scale,   // [N] (FP8)
                 const float *__restrict__ x,       // [T, ldx]
                 int ldx, float *__restrict__ out,  // [T, N]
                 int N, int nb) {
    constexpr int E = qvec<DT>::E, PB = qvec<DT>::PER_BLOCK;
    const int lane = threadIdx.x % 32;
    const int n = blockIdx.x * QROWS_PER_CTA + threadIdx.x / 32;
    if (n >= N) return;
    const int nv = nb * PB;
    const uint4 *row = reinterpret_cast<const uint4 *>(q + (size_t)n * nb * QWEIGHT_QBYTES(DT));
    const __half *drow = DT == KERNEL_QFP8 ? d : d + (size_t)n * nb;
    const uint8_t *zrow = DT == KERNEL_Q4Z ? z + (size_t)n * nb : z;
    float acc[T];
#pragma unroll
    for (int t = 0; t < T; t++) acc[t] = 0.0f;
    for (int v0 = lane; v0 < nv; v0 += 32 * QUNROLL) {
        uint4 wv[QUNROLL];
        float mult[QUNROLL], zm[QUNROLL];
#pragma unroll
        for (int u = 0; u < QUNROLL; u++) { // all loads first, so that QUNROLL are in flight
            const int v = v0 + 32 * u;
            wv[u] = make_uint4(0, 0, 0, 0);
            mult[u] = 0.0f;
            zm[u] = 0.0f;
            if (v < nv) {
                wv[u] = row[v];
                block_params<DT>(drow, zrow, v / PB, &mult[u], &zm[u]);
            }
        }
#pragma unroll
        for (int u = 0; u < QUNROLL; u++) {
            const int v = v0 + 32 * u;
            if (v >= nv) break;
            const uint32_t w[4] = {wv[u].x, wv[u].y, wv[u].z, wv[u].w};
            float s[T];
#pragma unroll
            for (int t = 0; t < T; t++) s[t] = 0.0f;
#pragma unroll
            for (int c = 0; c < E / 4; c++) { // 4 weights at a time, so that few are live
                float f[4];
                unpack4<DT>(w, c, zm[u], f);
#pragma unroll
                for (int t = 0; t < T; t++) {
                    const float4 a = reinterpret_cast<const float4 *>(x + (size_t)t * ldx)[(size_t)v * (E / 4) + c];
                    s[t] += f[0] * a.x + f[1] * a.y + f[2] * a.z + f[3] * a.w;
                }
            }
#pragma unroll
            for (int t = 0; t < T; t++) acc[t] += mult[u] * s[t];
        }
    }
#pragma unroll
    for (int t = 0; t < T; t++) {
        float s = acc[t];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0) out[(size_t)t * N + n] = DT == KERNEL_QFP8 ? s * scale[n] : s;
    }
}

// The three arrays of a qweight_layout allocation.
struct qarrays {
    const uint8_t *q;
    const __half *d;
    const uint8_t *z;
};

static qarrays arrays_of(const void *w, enum kernel_qdtype dt, int N, int K) {
    const struct qweight_layout l = qweight_layout(dt, N, K);
    const uint8_t *base = static_cast<const uint8_t *>(w);
    return {base + l.q, l.d ? reinterpret_cast<const __half *>(base + l.d) : nullptr, l.z ? base + l.z : nullptr};
}

template <int DT>
static cudaError_t launch_qgemv(const qarrays &a, const float *scale, const float *x, int ldx, float *out, int T,
                                int N, int nb, cudaStream_t stream) {
    const dim3 grid((unsigned)((N + QROWS_PER_CTA - 1) / QROWS_PER_CTA)), block(32 * QROWS_PER_CTA);
#define QGEMV_CASE(TT)                                                                                           \
    case TT: qgemv_kernel<TT, DT><<<grid, block, 0, stream>>>(a.q, a.d, a.z, scale, x, ldx, out, N, nb); break;
    switch (T) {
        QGEMV_CASE(1)
        QGEMV_CASE(2)
        QGEMV_CASE(3)
        QGEMV_CASE(4)
        QGEMV_CASE(5)
        QGEMV_CASE(6)
        QGEMV_CASE(7)
        QGEMV_CASE(8)
    default: return cudaErrorInvalidValue;
    }
#undef QGEMV_CASE
    return cudaGetLastError();
}

static bool known(enum kernel_qdtype dt) {
    return dt == KERNEL_Q8 || dt == KERNEL_Q4 || dt == KERNEL_Q4Z || dt == KERNEL_QFP8;
}

extern "C" cudaError_t qgemv(const void *w, enum kernel_qdtype dt, const float *scale, const float *x, int ldx,
                             float *out, int T, int N, int K, cudaStream_t stream) {
    const int nb = (K + 31) / 32;
    if (!known(dt) || T < 1 || T > QGEMV_MAX_T || K <= 0 || ldx % 4 != 0 || ldx < nb * 32 ||
        (uintptr_t)x % 16 != 0 || (dt == KERNEL_QFP8 && !scale))
        return cudaErrorInvalidValue;
    if (N <= 0) return cudaSuccess;
    const qarrays a = arrays_of(w, dt, N, K);
    switch (dt) {
    case KERNEL_Q8: return launch_qgemv<KERNEL_Q8>(a, scale, x, ldx, out, T, N, nb, stream);
    case KERNEL_Q4: return launch_qgemv<KERNEL_Q4>(a, scale, x, ldx, out, T, N, nb, stream);
    case KERNEL_Q4Z: return launch_qgemv<KERNEL_Q4Z>(a, scale, x, ldx, out, T, N, nb, stream);
    case KERNEL_QFP8: return launch_qgemv<KERNEL_QFP8>(a, scale, x, ldx, out, T, N, nb, stream);
    }
    return cudaErrorInvalidValue;
}

template <typename O>
__device__ __forceinline__ O from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) {
    return v;
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) {
    return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

// Memory-bound (a gather of T * K floats that L2 holds for these sizes, one write each).
template <typename O>
__global__ void qgather_kernel(const float *__restrict__ x,      // [T, K]
                               const int32_t *__restrict__ perm, // [K] or NULL
                               int T, int K, O *__restrict__ out, // [T, ldo]
                               int ldo) {
    const size_t n = (size_t)T * ldo;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t t = i / (size_t)ldo;
        const int k = (int)(i - t * (size_t)ldo);
        const float v = k < K ? x[t * (size_t)K + (size_t)(perm ? perm[k] : k)] : 0.0f;
        out[i] = from_f32<O>(v);
    }
}

static unsigned grid_for(size_t n) {
    size_t blocks = (n + 255) / 256;
    return (unsigned)(blocks > 65535 ? 65535 : blocks);
}

extern "C" cudaError_t qgather_x(const float *x, const int32_t *perm, int T, int K, void *out,
                                 enum kernel_dtype out_dtype, int ldo, cudaStream_t stream) {
    if (T < 0 || K < 0 || ldo < K) return cudaErrorInvalidValue;
    const size_t n = (size_t)T * (size_t)ldo;
    if (n == 0) return cudaSuccess;
    switch (out_dtype) {
    case KERNEL_F32: qgather_kernel<float><<<grid_for(n), 256, 0, stream>>>(x, perm, T, K, (float *)out, ldo); break;
    case KERNEL_F16: qgather_kernel<__half><<<grid_for(n), 256, 0, stream>>>(x, perm, T, K, (__half *)out, ldo); break;
    case KERNEL_BF16:
        qgather_kernel<__nv_bfloat16><<<grid_for(n), 256, 0, stream>>>(x, perm, T, K, (__nv_bfloat16 *)out, ldo);
        break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

// A thread per 16-byte vector of q: one 16-byte read, 32-64 bytes of bf16 written (16-byte
// stores when K % 8 == 0 keeps every row and vector aligned). Memory-bound on the writes.
template <int DT>
__global__ void qdequant_kernel(const uint8_t *__restrict__ q, const __half *__restrict__ d,
                                const uint8_t *__restrict__ z, const float *__restrict__ scale,
                                int nb, int K, int n0, int rows,
                                __nv_bfloat16 *__restrict__ out) { // [rows, K]
    constexpr int E = qvec<DT>::E, PB = qvec<DT>::PER_BLOCK;
    const size_t nv = (size_t)nb * PB, total = (size_t)rows * nv;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / nv;
        const int v = (int)(i - r * nv);
        const size_t n = (size_t)n0 + r;
        const uint4 vec = reinterpret_cast<const uint4 *>(q + n * nb * QWEIGHT_QBYTES(DT))[v];
        float mult, zm;
        block_params<DT>(DT == KERNEL_QFP8 ? d : d + n * nb, DT == KERNEL_Q4Z ? z + n * nb : z, v / PB, &mult, &zm);
        if (DT == KERNEL_QFP8) mult = scale[n];
        const uint32_t w[4] = {vec.x, vec.y, vec.z, vec.w};
        float f[E];
#pragma unroll
        for (int c = 0; c < E / 4; c++) unpack4<DT>(w, c, zm, f + 4 * c);
        const int k0 = v * E;
        __nv_bfloat16 *o = out + r * (size_t)K + k0;
        if (K % 8 == 0 && k0 + E <= K) {
#pragma unroll
            for (int j = 0; j < E / 8; j++) {
                uint32_t pk[4];
#pragma unroll
                for (int p = 0; p < 4; p++) {
                    const __nv_bfloat162 h = __floats2bfloat162_rn(f[8 * j + 2 * p] * mult, f[8 * j + 2 * p + 1] * mult);
                    pk[p] = *reinterpret_cast<const uint32_t *>(&h);
                }
                reinterpret_cast<uint4 *>(o)[j] = make_uint4(pk[0], pk[1], pk[2], pk[3]);
            }
        } else {
#pragma unroll
            for (int e = 0; e < E; e++)
                if (k0 + e < K) o[e] = __float2bfloat16_rn(f[e] * mult);
        }
    }
}

extern "C" cudaError_t qdequant_bf16(const void *w, enum kernel_qdtype dt, const float *scale, int N, int K, int n0,
                                     int rows, void *out, cudaStream_t stream) {
    if (!known(dt) || K <= 0 || n0 < 0 || rows < 0 || n0 + rows > N || (dt == KERNEL_QFP8 && !scale))
        return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    const int nb = (K + 31) / 32;
    const qarrays a = arrays_of(w, dt, N, K);
    const size_t n = (size_t)rows * (size_t)nb * (dt == KERNEL_Q4 || dt == KERNEL_Q4Z ? 1 : 2);
    __nv_bfloat16 *o = static_cast<__nv_bfloat16 *>(out);
    switch (dt) {
    case KERNEL_Q8:
        qdequant_kernel<KERNEL_Q8><<<grid_for(n), 256, 0, stream>>>(a.q, a.d, a.z, scale, nb, K, n0, rows, o);
        break;
    case KERNEL_Q4:
        qdequant_kernel<KERNEL_Q4><<<grid_for(n), 256, 0, stream>>>(a.q, a.d, a.z, scale, nb, K, n0, rows, o);
        break;
    case KERNEL_Q4Z:
        qdequant_kernel<KERNEL_Q4Z><<<grid_for(n), 256, 0, stream>>>(a.q, a.d, a.z, scale, nb, K, n0, rows, o);
        break;
    case KERNEL_QFP8:
        qdequant_kernel<KERNEL_QFP8><<<grid_for(n), 256, 0, stream>>>(a.q, a.d, a.z, scale, nb, K, n0, rows, o);
        break;
    }
    return cudaGetLastError();
}
