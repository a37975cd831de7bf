// attention: paged attention over the KV cache for a flattened batch of decodes and prefill
// chunks (vLLM's layout: every token finds its sequence's K/V through a block table).
//
// Decode is the case that matters for speed and it is bandwidth-bound: each token reads its
// whole context's K and V once and does 2 flops per byte. So the kernel streams K/V exactly
// once per (token, KV head): one CTA per (token, KV head) serves the whole GQA group of query
// heads (up to GMAX of them; larger groups are cut into chunks, each its own CTA), with the
// group's queries in shared memory and an online softmax over tiles of TILE keys, so nothing
// grows with the context. Per tile:
//   A. scores: TPK lanes per key, each lane holding a contiguous 16-byte slice of the K row,
//      so one warp instruction reads several whole rows coalesced; a short xor-shuffle tree
//      finishes each head's dot product;
//   B. softmax: a warp per head folds the tile's scores into the running max and sum;
//   C. P V: a "slice" of head_dim / 4 threads owns a V row as float4s; the NT / (head_dim / 4)
//      slices take interleaved keys and keep private accumulators, summed once at the end.
// Measured on an H100 (make bench-gpu): decode at batch 64 x context 2048, 32/8 heads,
// head_dim 128 reads K/V at 2.68-2.77 TB/s, 89-92% of a device memcpy's read+write rate
// (3.01 TB/s) over three runs; 128 registers leave 4 CTAs per SM. Measured and dropped in the same run: 4 query heads per
// CTA at 5 CTAs per SM (86%: the register cap spills) and loading the next tile's K during
// P V (44%: 205 registers leave 2 CTAs per SM). (An H200 gave 77% in an earlier session,
// against its 4.3 TB/s memcpy.)
// A long context in a small batch cannot fill the GPU this way (a batch of 1 with 8 KV heads
// is 8 CTAs), so the launcher then splits each context into num_splits parts (split-K, as in
// flash-decoding): each part writes its unnormalized output and (max, sum) to a caller-provided
// workspace, and paged_attention_reduce_kernel merges them. Prefill chunks run through the
// same kernel (causality comes from positions), re-reading K/V per query token from L2:
// correct and simple, but compute-heavy for long prompts, where a query-tiled kernel would
// share each K/V tile among query tokens.
//
// Numerics follow the CPU backend: q is scaled before the dot products, a soft cap (Gemma 2's
// softcap * tanh(score / softcap), when softcap > 0) applies to each score before the softmax
// in every path (split-K parts included, so the merge sees capped maxima), exp is the
// accurate expf, everything accumulates in fp32; only the order of additions differs.
// The cache's dtype (kv_dtype.cuh) is a template parameter: bf16 and fp8 rows are widened to
// fp32 as they are loaded, so they read half and a quarter of fp32's bytes. An fp8 element
// loads as e4m3 * 2^-8; the 2^8 and the layer's k_scale fold into q's scale, and with v_scale
// into the output, once per row rather than once per element (as the CPU backend does).
#include <math.h>

#include "kernels.h"
#include "kv_dtype.cuh"

#define NT 128 // threads per CTA
#define NW (NT / 32)
#define GMAX 8 // query heads per CTA
#define PART_MIN 256 // fewest positions worth a split of their own

template <int HD>
struct attn_shape {
    static constexpr int TPK = (HD / 4) % 8 == 0 ? 8 : (HD / 4) % 4 == 0 ? 4 : 2; // lanes per key (phase A)
    static constexpr int E = HD / TPK;                                           // K floats per lane
    static constexpr int KG = NT / TPK;                                          // keys in flight per round
    static constexpr int TILE = HD >= 256 ? 32 : 64;                             // keys per tile
    static constexpr int R = TILE / KG;                                          // rounds of phase A
    static constexpr int CPS = HD / 4;                                           // threads per V slice
    static constexpr int NS = NT / CPS;                                          // V slices (phase C)
    static constexpr int KPS = (TILE + NS - 1) / NS;                             // keys per slice per tile
    static_assert(E % 4 == 0 && R >= 1 && TILE % KG == 0 && NS >= 1, "bad attention shape");
};

// Offset of position p's row in a cache of kv heads [num_blocks, nkv, bs, HD], for KV head kvh.
// bs_shift is log2(bs) when bs is a power of two (a shift, not a division), else -1.
__device__ __forceinline__ size_t cache_row(const int32_t *__restrict__ table, int p, int bs, int bs_shift, int nkv,
                                            int kvh) {
    const int blk = bs_shift >= 0 ? p >> bs_shift : p / bs, off = bs_shift >= 0 ? p & (bs - 1) : p % bs;
    return ((size_t)table[blk] * nkv + kvh) * bs + off;
}

template <int HD, int DT>
__global__ void __launch_bounds__(NT) paged_attention_kernel(
    const float *__restrict__ q,              // [T, nh, HD]
    const typename kv_elem<DT>::T *__restrict__ k_cache, // [num_blocks, nkv, bs, HD]
    const typename kv_elem<DT>::T *__restrict__ v_cache, // [num_blocks, nkv, bs, HD]
    const int32_t *__restrict__ block_tables, // [num_seqs, max_blocks]
    const int32_t *__restrict__ seq_idx,      // [T]
    const int32_t *__restrict__ positions,    // [T]
    float *__restrict__ out,                  // [T, nh, HD]; unused when splitting
    float *__restrict__ ws_acc,               // [T, nh, num_splits, HD] or nullptr (no split)
    float *__restrict__ ws_ml,                // [T, nh, num_splits, 2] (max, sum) or nullptr
    int nh, int nkv, int bs, int bs_shift, int max_blocks, int window, float scale, float softcap, int chunks,
    int heads_per_cta, int part, float out_scale) { // out_scale: V's fold (fp8), else 1
    using S = attn_shape<HD>;
    using KV = kv_elem<DT>;
    __shared__ __align__(16) float q_s[GMAX][HD];
    __shared__ float s_s[GMAX][S::TILE];
    __shared__ __align__(16) float red[S::NS][GMAX][HD];
    __shared__ float m_s[GMAX], l_s[GMAX], corr_s[GMAX];

    const int tid = threadIdx.x;
    const int t = blockIdx.x;
    const int kvh = blockIdx.y / chunks, chunk = blockIdx.y % chunks;
    const int group = nh / nkv;
    const int h0 = kvh * group + chunk * heads_per_cta;
    const int G = min(heads_per_cta, group - chunk * heads_per_cta);
    const int pos = positions[t];
    const int start = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
    const int split = blockIdx.z, num_splits = gridDim.z;
    int lo = start + split * part, hi = split == num_splits - 1 ? pos + 1 : min(pos + 1, lo + part);
    if (lo > hi) lo = hi;
    const int32_t *table = block_tables + (size_t)seq_idx[t] * max_blocks;

    for (int i = tid; i < G * HD; i += NT) q_s[i / HD][i % HD] = q[((size_t)t * nh + h0) * HD + i] * scale;
    if (tid < GMAX) {
        m_s[tid] = -INFINITY;
        l_s[tid] = 0.0f;
    }
    float acc[GMAX][4];
#pragma unroll
    for (int h = 0; h < GMAX; h++) acc[h][0] = acc[h][1] = acc[h][2] = acc[h][3] = 0.0f;
    __syncthreads();

    const int kg = tid / S::TPK, lg = tid % S::TPK;    // phase A: key group, lane in group
    const int sl = tid / S::CPS, c = tid % S::CPS;     // phase C: slice, float4 column
    const int warp = tid / 32, lane = tid % 32;
    for (int t0 = lo; t0 < hi; t0 += S::TILE) {
        // A. scores s_s[h][key] = q_h . k_key (q pre-scaled), -inf past the range.
        {
            float4 kr[S::R][S::E / 4];
#pragma unroll
            for (int r = 0; r < S::R; r++) {
                const int p = t0 + kg + S::KG * r;
                if (p < hi) {
                    const typename KV::T *row = k_cache + cache_row(table, p, bs, bs_shift, nkv, kvh) * HD + 4 * lg;
#pragma unroll
                    for (int j = 0; j < S::E / 4; j++) kr[r][j] = KV::load4(row + 4 * S::TPK * j);
                } else {
#pragma unroll
                    for (int j = 0; j < S::E / 4; j++) kr[r][j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                }
            }
#pragma unroll
            for (int r = 0; r < S::R; r++) {
                const int key = kg + S::KG * r;
#pragma unroll
                for (int h = 0; h < GMAX; h++) {
                    if (h >= G) break;
                    float d = 0.0f;
#pragma unroll
                    for (int j = 0; j < S::E / 4; j++) {
                        const float4 qv = *(const float4 *)&q_s[h][4 * lg + 4 * S::TPK * j];
                        d += qv.x * kr[r][j].x + qv.y * kr[r][j].y + qv.z * kr[r][j].z + qv.w * kr[r][j].w;
                    }
#pragma unroll
                    for (int off = S::TPK / 2; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
                    if (lg == 0) { // the soft cap (Gemma 2) as the CPU computes it
                        if (softcap > 0.0f) d = softcap * tanhf(d / softcap);
                        s_s[h][key] = t0 + key < hi ? d : -INFINITY;
                    }
                }
            }
        }
        __syncthreads();
        // B. running max and sum per head; s_s becomes the tile's weights exp(s - m).
        for (int h = warp; h < G; h += NW) {
            float tm = -INFINITY;
            for (int k = lane; k < S::TILE; k += 32) tm = fmaxf(tm, s_s[h][k]);
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) tm = fmaxf(tm, __shfl_xor_sync(0xffffffffu, tm, off));
            const float m_old = m_s[h], m_new = fmaxf(m_old, tm);
            float sum = 0.0f;
            for (int k = lane; k < S::TILE; k += 32) {
                const float e = expf(s_s[h][k] - m_new);
                s_s[h][k] = e;
                sum += e;
            }
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
            __syncwarp();
            if (lane == 0) {
                const float corr = expf(m_old - m_new); // 0 on the first tile (m_old = -inf)
                corr_s[h] = corr;
                l_s[h] = l_s[h] * corr + sum;
                m_s[h] = m_new;
            }
        }
        __syncthreads();
        // C. acc = acc * corr + P V over this slice's keys.
        if (sl < S::NS) {
#pragma unroll
            for (int h = 0; h < GMAX; h++) {
                if (h >= G) break;
                const float cr = corr_s[h];
                acc[h][0] *= cr;
                acc[h][1] *= cr;
                acc[h][2] *= cr;
                acc[h][3] *= cr;
            }
            float4 vr[S::KPS];
#pragma unroll
            for (int j = 0; j < S::KPS; j++) {
                const int key = sl + S::NS * j, p = t0 + key;
                if (key < S::TILE && p < hi)
                    vr[j] = KV::load4(v_cache + cache_row(table, p, bs, bs_shift, nkv, kvh) * HD + 4 * c);
                else
                    vr[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
#pragma unroll
            for (int j = 0; j < S::KPS; j++) {
                const int key = sl + S::NS * j;
                if (key >= S::TILE) break;
#pragma unroll
                for (int h = 0; h < GMAX; h++) {
                    if (h >= G) break;
                    const float w = s_s[h][key];
                    acc[h][0] += w * vr[j].x;
                    acc[h][1] += w * vr[j].y;
                    acc[h][2] += w * vr[j].z;
                    acc[h][3] += w * vr[j].w;
                }
            }
        }
        __syncthreads();
    }

    // Sum the slices' accumulators, then normalize (or hand the parts to the reduce kernel).
    if (sl < S::NS) {
#pragma unroll
        for (int h = 0; h < GMAX; h++) {
            if (h >= G) break;
            *(float4 *)&red[sl][h][4 * c] = make_float4(acc[h][0], acc[h][1], acc[h][2], acc[h][3]);
        }
    }
    __syncthreads();
    for (int i = tid; i < G * HD; i += NT) {
        const int h = i / HD, d = i % HD;
        float o = 0.0f;
#pragma unroll
        for (int s = 0; s < S::NS; s++) o += red[s][h][d];
        o *= out_scale; // exact for 1 (fp32 and bf16 caches)
        const size_t row = (size_t)t * nh + h0 + h;
        if (ws_acc) {
            ws_acc[(row * num_splits + split) * HD + d] = o;
            if (d == 0) {
                ws_ml[(row * num_splits + split) * 2] = m_s[h];
                ws_ml[(row * num_splits + split) * 2 + 1] = l_s[h];
            }
        } else {
            out[row * HD + d] = o / l_s[h];
        }
    }
}

// Merges the split parts of one (token, head): out = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M).
template <int HD>
__global__ void __launch_bounds__(NT) paged_attention_reduce_kernel(
    const float *__restrict__ ws_acc, // [T, nh, num_splits, HD]
    const float *__restrict__ ws_ml,  // [T, nh, num_splits, 2]
    float *__restrict__ out,          // [T, nh, HD]
    int nh, int num_splits) {
    __shared__ float w_s[PAGED_ATTENTION_MAX_SPLITS];
    __shared__ float inv_l;
    const size_t row = (size_t)blockIdx.x * nh + blockIdx.y;
    const float *ml = ws_ml + row * num_splits * 2;
    if (threadIdx.x < 32) {
        float mx = -INFINITY;
        for (int s = threadIdx.x; s < num_splits; s += 32) mx = fmaxf(mx, ml[2 * s]);
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
        float l = 0.0f;
        for (int s = threadIdx.x; s < num_splits; s += 32) {
            const float w = expf(ml[2 * s] - mx); // 0 for an empty part (m = -inf)
            w_s[s] = w;
            l += ml[2 * s + 1] * w;
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) l += __shfl_xor_sync(0xffffffffu, l, off);
        if (threadIdx.x == 0) inv_l = 1.0f / l;
    }
    __syncthreads();
    const float *acc = ws_acc + row * num_splits * HD;
    for (int d = threadIdx.x; d < HD; d += NT) {
        float o = 0.0f;
        for (int s = 0; s < num_splits; s++) o += acc[(size_t)s * HD + d] * w_s[s];
        out[row * HD + d] = o * inv_l;
    }
}

static int sm_count(void) {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms <= 0)
        return 132;
    return sms;
}

// Splits per context: enough CTAs for about one full wave (4 CTAs of NT threads per SM),
// parts of at least PART_MIN positions, at most what max_splits and the workspace allow.
static int choose_splits(int T, int nh, int nkv, int hd, int max_context, int max_splits, size_t ws_bytes, int sms) {
    const int group = nh / nkv, chunks = (group + GMAX - 1) / GMAX;
    const long long base = (long long)T * nkv * chunks, target = 4LL * sms;
    if (base <= 0 || base * 2 > target) return 1;
    long long s = target / base;
    const long long by_len = ((long long)max_context + PART_MIN - 1) / PART_MIN;
    if (s > by_len) s = by_len;
    if (s > PAGED_ATTENTION_MAX_SPLITS) s = PAGED_ATTENTION_MAX_SPLITS;
    if (max_splits > 0 && s > max_splits) s = max_splits;
    const size_t per_split = (size_t)T * nh * (hd + 2) * sizeof(float);
    if ((size_t)s * per_split > ws_bytes) s = (long long)(ws_bytes / per_split);
    return s > 1 ? (int)s : 1;
}

extern "C" size_t paged_attention_workspace_size(int max_num_tokens, int num_heads, int num_kv_heads, int head_dim) {
    if (max_num_tokens <= 0 || num_kv_heads <= 0 || num_heads % num_kv_heads) return 0;
    const int sms = sm_count();
    size_t best = 0;
    for (int T = 1; T <= max_num_tokens && T <= 4 * sms; T++) {
        const int s = choose_splits(T, num_heads, num_kv_heads, head_dim, 1 << 30, 0, (size_t)-1, sms);
        const size_t need = s > 1 ? (size_t)s * T * num_heads * (head_dim + 2) * sizeof(float) : 0;
        if (need > best) best = need;
    }
    return best;
}

template <int HD, int DT>
static void launch_dt(const struct paged_attention_params *p, dim3 grid, int bs_shift, int chunks, int hpc, int part,
                      float *ws_acc, float *ws_ml, cudaStream_t stream) {
    typedef typename kv_elem<DT>::T E;
    const float unit_inv = 1.0f / kv_elem<DT>::unit; // 2^8 for fp8, 1 otherwise
    const float qs = DT == KERNEL_KV_FP8 ? p->scale * (unit_inv * p->k_scale) : p->scale;
    const float os = DT == KERNEL_KV_FP8 ? unit_inv * p->v_scale : 1.0f;
    paged_attention_kernel<HD, DT><<<grid, NT, 0, stream>>>(
        p->q, (const E *)p->k_cache, (const E *)p->v_cache, p->block_tables, p->seq_idx, p->positions, p->out, ws_acc,
        ws_ml, p->num_heads, p->num_kv_heads, p->block_size, bs_shift, p->max_blocks_per_seq, p->sliding_window, qs,
        p->softcap, chunks, hpc, part, os);
}

template <int HD>
static cudaError_t launch(const struct paged_attention_params *p, int chunks, int hpc, int splits, int part,
                          float *ws_acc, float *ws_ml, cudaStream_t stream) {
    const dim3 grid((unsigned)p->num_tokens, (unsigned)(p->num_kv_heads * chunks), (unsigned)splits);
    const int bs = p->block_size, bs_shift = (bs & (bs - 1)) ? -1 : __builtin_ctz((unsigned)bs);
    if (p->kv_dtype == KERNEL_KV_BF16)
        launch_dt<HD, KERNEL_KV_BF16>(p, grid, bs_shift, chunks, hpc, part, ws_acc, ws_ml, stream);
    else if (p->kv_dtype == KERNEL_KV_FP8)
        launch_dt<HD, KERNEL_KV_FP8>(p, grid, bs_shift, chunks, hpc, part, ws_acc, ws_ml, stream);
    else
        launch_dt<HD, KERNEL_KV_F32>(p, grid, bs_shift, chunks, hpc, part, ws_acc, ws_ml, stream);
    cudaError_t ce = cudaGetLastError();
    if (ce != cudaSuccess || splits == 1) return ce;
    paged_attention_reduce_kernel<HD><<<dim3((unsigned)p->num_tokens, (unsigned)p->num_heads), NT, 0, stream>>>(
        ws_acc, ws_ml, p->out, p->num_heads, splits);
    return cudaGetLastError();
}

// The split count and part length (positions) for p; 1 and max_context when not splitting.
static int plan_splits(const struct paged_attention_params *p, int *part) {
    const int max_context = p->max_context > 0 ? p->max_context : p->max_blocks_per_seq * p->block_size;
    int splits = choose_splits(p->num_tokens, p->num_heads, p->num_kv_heads, p->head_dim, max_context, p->max_splits,
                               p->workspace ? p->workspace_bytes : 0, sm_count());
    // Parts of whole tiles (64 positions covers both tile sizes); the last part takes the rest.
    *part = max_context;
    if (splits > 1) {
        *part = (max_context + splits - 1) / splits;
        *part = (*part + 63) / 64 * 64;
        splits = (max_context + *part - 1) / *part;
    }
    return splits;
}

extern "C" int paged_attention_splits(const struct paged_attention_params *p) {
    int part;
    if (p->num_tokens <= 0 || p->num_kv_heads <= 0 || p->num_heads % p->num_kv_heads) return 1;
    return plan_splits(p, &part);
}

extern "C" cudaError_t paged_attention(const struct paged_attention_params *p, cudaStream_t stream) {
    if (p->num_tokens <= 0) return cudaSuccess;
    const size_t es = kv_elem_size(p->kv_dtype);
    if (p->num_kv_heads <= 0 || p->num_heads % p->num_kv_heads || p->max_blocks_per_seq <= 0 || p->block_size <= 0 ||
        !es || ((uintptr_t)p->k_cache | (uintptr_t)p->v_cache) % (4 * es) ||
        (p->kv_dtype == KERNEL_KV_FP8 && !(p->k_scale > 0.0f && p->v_scale > 0.0f)))
        return cudaErrorInvalidValue;
    const int group = p->num_heads / p->num_kv_heads;
    const int chunks = (group + GMAX - 1) / GMAX, hpc = (group + chunks - 1) / chunks;
    if ((long long)p->num_kv_heads * chunks > 65535) return cudaErrorInvalidValue;
    int part;
    const int splits = plan_splits(p, &part);
    float *ws_acc = nullptr, *ws_ml = nullptr;
    if (splits > 1) {
        ws_acc = (float *)p->workspace;
        ws_ml = ws_acc + (size_t)p->num_tokens * p->num_heads * splits * p->head_dim;
    }
    switch (p->head_dim) {
    case 8: return launch<8>(p, chunks, hpc, splits, part, ws_acc, ws_ml, stream);
    case 16: return launch<16>(p, chunks, hpc, splits, part, ws_acc, ws_ml, stream);
    case 32: return launch<32>(p, chunks, hpc, splits, part, ws_acc, ws_ml, stream);
    case 64: return launch<64>(p, chunks, hpc, splits, part, ws_acc, ws_ml, stream);
    case 80: return launch<80>(p, chunks, hpc, splits, part, ws_acc, ws_ml, stream);
    case 96: return launch<96>(p, chunks, hpc, splits, part, ws_acc, ws_ml, stream);
    case 128: return launch<128>(p, chunks, hpc, splits, part, ws_acc, ws_ml, stream);
    case 256: return launch<256>(p, chunks, hpc, splits, part, ws_acc, ws_ml, stream);
    default: return cudaErrorInvalidValue;
    }
}
