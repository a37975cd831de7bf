/* mem_plan: see mem_plan.h. */
#include "core/mem_plan.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/util.h"

static double gib(size_t n) { return (double)n / (1024.0 * 1024.0 * 1024.0); }

/* The utilization (two decimals, rounded up) whose budget is `bytes`. */
static double share_for(size_t bytes, size_t total) { return ceil((double)bytes / (double)total * 100.0) / 100.0; }

int mem_plan_check(const struct mem_plan *p) {
    if (!(p->utilization > 0.0 && p->utilization <= 1.0))
        return folio_err(FOLIO_EINVAL, "--gpu-memory-utilization must be in (0, 1], not %g", p->utilization);
    if (p->total == 0) return folio_err(FOLIO_EIO, "the GPU reports no memory");
    const double budget = p->utilization * (double)p->total;
    if ((double)p->free < budget) {
        const double fits = floor((double)p->free / (double)p->total * 100.0) / 100.0;
        return folio_err(FOLIO_EINVAL,
                         "only %.2f GiB of the GPU's %.2f GiB is free, less than --gpu-memory-utilization %.2f "
                         "asks for (%.2f GiB): other processes hold %.2f GiB; use --gpu-memory-utilization %.2f "
                         "or less, or free the GPU",
                         gib(p->free), gib(p->total), p->utilization, budget / (1 << 30), gib(p->total - p->free),
                         fits);
    }
    if ((double)p->weight_bytes >= budget) {
        if (p->weight_bytes >= p->free)
            return folio_err(FOLIO_EINVAL,
                             "the weights need %.2f GiB in %s, more than the %.2f GiB free on this GPU (%.2f GiB "
                             "total): use a smaller --dtype or model, or a larger GPU",
                             gib(p->weight_bytes), p->dtype, gib(p->free), gib(p->total));
        return folio_err(FOLIO_EINVAL,
                         "the weights need %.2f GiB in %s, more than --gpu-memory-utilization %.2f leaves this "
                         "engine (%.2f GiB of %.2f GiB): raise it above %.2f (the weights alone), leaving room "
                         "for the KV cache",
                         gib(p->weight_bytes), p->dtype, p->utilization, budget / (1 << 30), gib(p->total),
                         share_for(p->weight_bytes, p->total));
    }
    return 0;
}

void mem_plan_split(double bytes, size_t block_bytes, size_t local_block_bytes, int local_max, long long *num_blocks,
                    int *num_local_blocks) {
    double nl = bytes > 0 ? floor(bytes / (double)(block_bytes + local_block_bytes)) : 0;
    if (nl > local_max) nl = local_max;
    const double rest = bytes - nl * (double)local_block_bytes;
    *num_local_blocks = (int)nl;
    *num_blocks = rest > 0 ? (long long)(rest / (double)block_bytes) : 0;
}

int mem_plan_kv(struct mem_plan *p) {
    const double budget = p->utilization * (double)p->total;
    const long long bs = p->block_size;
    const double left = budget - (double)p->non_kv_bytes;
    long long nb = left > 0 ? (long long)(left / (double)p->block_bytes) : 0;
    p->num_local_blocks = 0;
    if (p->local_block_bytes) mem_plan_split(left, p->block_bytes, p->local_block_bytes, p->local_blocks_max, &nb,
                                             &p->num_local_blocks);
    int len = p->max_model_len;
    const long long need = (len + bs - 1) / bs;
    p->notice[0] = '\0';
    if (nb < need && !p->len_given && nb > 0) {
        snprintf(p->notice, sizeof p->notice,
                 "max_model_len lowered from %d to %lld to fit the KV cache (%.2f GiB); set --max-model-len or "
                 "--gpu-memory-utilization to choose",
                 len, nb * bs, gib((size_t)nb * p->block_bytes));
        len = (int)(nb * bs);
    } else if (nb < need) {
        const size_t want = p->non_kv_bytes + (size_t)need * p->block_bytes;
        char raise[256] = "";
        int n = 0;
        if ((double)want <= (double)p->free)
            n = snprintf(raise, sizeof raise, ", or raise --gpu-memory-utilization to %.2f", share_for(want, p->total));
        /* A narrower cache holds more tokens in the same bytes. */
        if (p->kv_dtype && n >= 0 && (size_t)n < sizeof raise && strcmp(p->kv_dtype, "float8_e4m3") != 0)
            snprintf(raise + n, sizeof raise - (size_t)n, ", or use --kv-cache-dtype %s (the cache is %s now)",
                     strcmp(p->kv_dtype, "float32") ? "fp8" : "bfloat16 (or fp8)", p->kv_dtype);
        if (nb <= 0)
            return folio_err(FOLIO_EINVAL,
                             "no memory is left for the KV cache: --gpu-memory-utilization %.2f gives this engine "
                             "%.2f GiB of the GPU's %.2f GiB, and the weights (%.2f GiB) with the activations and "
                             "workspaces of a %d-sequence batch take %.2f GiB; max_model_len %d needs %.2f GiB "
                             "more%s",
                             p->utilization, budget / (1 << 30), gib(p->total), gib(p->weight_bytes), p->max_num_seqs,
                             gib(p->non_kv_bytes), len, gib((size_t)need * p->block_bytes), raise);
        return folio_err(FOLIO_EINVAL,
                         "the KV cache gets %.2f GiB (--gpu-memory-utilization %.2f of %.2f GiB, less %.2f GiB of "
                         "weights and %.2f GiB of activations and workspaces): %lld blocks, %lld tokens, but "
                         "max_model_len %d needs %lld blocks (%.2f GiB); the largest --max-model-len that fits "
                         "is %lld%s",
                         gib((size_t)nb * p->block_bytes), p->utilization, gib(p->total), gib(p->weight_bytes),
                         gib(p->non_kv_bytes - (p->non_kv_bytes > p->weight_bytes ? p->weight_bytes : 0)), nb,
                         nb * bs, len, need, gib((size_t)need * p->block_bytes), nb * bs, raise);
    }
    const long long need_len = (len + bs - 1) / bs;
    if (nb > (long long)p->max_num_seqs * need_len) nb = (long long)p->max_num_seqs * need_len;
    if (nb > INT_MAX / bs) nb = INT_MAX / bs;
    p->num_blocks = (int)nb;
    p->out_max_model_len = len;
    return 0;
}
