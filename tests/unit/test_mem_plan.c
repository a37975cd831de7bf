/* GPU memory planning (mem_plan.c) on the figures of real devices and models: the share must
 * be free, the weights must fit it, the rest of it becomes KV blocks, and every refusal says
 * what would fit. Pure arithmetic, so it runs without a GPU. */
#include <string.h>

#include "core/mem_plan.h"
#include "test.h"
#include "base/util.h"

#define GiB ((size_t)1 << 30)
#define MiB ((size_t)1 << 20)

/* An H100 80GB (79.19 GiB as cudaMemGetInfo reports it) serving Llama-3.2-1B in bf16: 2.30
 * GiB of weights, 16 layers x 8 KV heads x 64 dims, so a 16-token block is 512 KiB. */
static struct mem_plan h100_llama1b(void) {
    return (struct mem_plan){
        .total = (size_t)(79.19 * GiB), .free = (size_t)(78.6 * GiB), .utilization = 0.9,
        .weight_bytes = (size_t)(2.30 * GiB), .dtype = "bfloat16", .block_bytes = 512 * 1024,
        .block_size = 16, .max_model_len = 131072, .len_given = 0, .max_num_seqs = 256};
}

static int has(const char *s) { return strstr(folio_last_error(), s) != NULL; }

TEST(mem_plan_fits_and_sizes_the_pool) {
    struct mem_plan p = h100_llama1b();
    CHECK_EQ_INT(mem_plan_check(&p), 0);
    p.non_kv_bytes = p.weight_bytes + 900 * MiB; /* activations and workspaces at max batch */
    CHECK_EQ_INT(mem_plan_kv(&p), 0);
    /* 0.9 * 79.19 GiB - 3.18 GiB = 68.09 GiB of 512 KiB blocks. */
    const double left = 0.9 * (double)p.total - (double)p.non_kv_bytes;
    CHECK_EQ_INT(p.num_blocks, (int)(left / (512.0 * 1024)));
    CHECK_EQ_INT(p.out_max_model_len, 131072);
    CHECK(p.notice[0] == '\0');
    /* The pool never exceeds what max_num_seqs full-length sequences can use. */
    p.max_num_seqs = 2;
    CHECK_EQ_INT(mem_plan_kv(&p), 0);
    CHECK_EQ_INT(p.num_blocks, 2 * 131072 / 16);
}

TEST(mem_plan_refuses_a_share_that_is_not_free) {
    struct mem_plan p = h100_llama1b();
    p.free = 40 * GiB; /* another engine holds half the GPU */
    CHECK(mem_plan_check(&p) == FOLIO_EINVAL);
    CHECK(has("only 40.00 GiB of the GPU's 79.19 GiB is free"));
    CHECK(has("--gpu-memory-utilization 0.90"));
    CHECK(has("use --gpu-memory-utilization 0.50 or less")); /* floor(40 / 79.19, 2 places) */
    p.utilization = 0.5;
    CHECK_EQ_INT(mem_plan_check(&p), 0);
    p.utilization = 0;
    CHECK(mem_plan_check(&p) == FOLIO_EINVAL && has("must be in (0, 1]"));
    p.utilization = 1.5;
    CHECK(mem_plan_check(&p) == FOLIO_EINVAL && has("must be in (0, 1]"));
}

TEST(mem_plan_refuses_weights_beyond_the_share) {
    struct mem_plan p = h100_llama1b();
    p.utilization = 0.02; /* 1.58 GiB for 2.30 GiB of weights */
    CHECK(mem_plan_check(&p) == FOLIO_EINVAL);
    CHECK(has("the weights need 2.30 GiB in bfloat16"));
    CHECK(has("raise it above 0.03")); /* ceil(2.30 / 79.19, 2 places) */
    /* Weights larger than the whole free memory: no share helps. */
    p = h100_llama1b();
    p.weight_bytes = 140 * GiB;
    p.utilization = 1.0;
    p.free = p.total;
    CHECK(mem_plan_check(&p) == FOLIO_EINVAL && has("more than the 79.19 GiB free on this GPU"));
}

TEST(mem_plan_kv_too_small_for_max_model_len) {
    struct mem_plan p = h100_llama1b();
    p.utilization = 0.05;                              /* 3.96 GiB */
    p.non_kv_bytes = p.weight_bytes + 1024 * MiB;      /* 3.30 GiB: 0.66 GiB of KV */
    p.len_given = 1;
    CHECK(mem_plan_kv(&p) == FOLIO_EINVAL);
    const double left = 0.05 * (double)p.total - (double)p.non_kv_bytes;
    const long long blocks = (long long)(left / (512.0 * 1024));
    char want[96];
    snprintf(want, sizeof want, "the largest --max-model-len that fits is %lld", blocks * 16);
    CHECK(has(want));
    CHECK(has("max_model_len 131072 needs 8192 blocks (4.00 GiB)"));
    /* 3.30 + 4.00 GiB = 7.30 GiB of 79.19: a share of 0.10 would do, and is free. */
    CHECK(has("or raise --gpu-memory-utilization to 0.10"));
    /* Without --max-model-len the length is lowered to what fits, with a notice. */
    p.len_given = 0;
    CHECK_EQ_INT(mem_plan_kv(&p), 0);
    CHECK_EQ_INT(p.out_max_model_len, (int)(blocks * 16));
    CHECK_EQ_INT(p.num_blocks, (int)blocks);
    CHECK(strstr(p.notice, "max_model_len lowered from 131072") != NULL);
}

TEST(mem_plan_no_room_for_any_block) {
    struct mem_plan p = h100_llama1b();
    p.utilization = 0.04;                          /* 3.17 GiB */
    p.non_kv_bytes = p.weight_bytes + 2 * GiB;    /* 4.30 GiB: nothing left */
    CHECK(mem_plan_kv(&p) == FOLIO_EINVAL);
    CHECK(has("no memory is left for the KV cache"));
    CHECK(has("or raise --gpu-memory-utilization to 0.11")); /* (4.30 + 4.00) / 79.19 */
    /* When even that much is not free, the message does not suggest it. */
    p.free = 5 * GiB;
    CHECK(mem_plan_kv(&p) == FOLIO_EINVAL && !has("raise --gpu-memory-utilization"));
}

/* Gemma 3 4B on the same H100: 34 layers x 4 KV heads x 256 dims, of which 29 slide over 1024
 * tokens, so a 16-token block is 640 KiB in the 5 full layers and 3712 KiB in the 29 sliding
 * ones. The sliding layers' pool takes their share (29 of 34) of what is left, unless it could
 * not use that much (max_num_seqs windows). */
TEST(mem_plan_split_cache_shares_the_pool) {
    struct mem_plan p = h100_llama1b();
    p.weight_bytes = (size_t)(7.76 * GiB);
    p.block_bytes = 640 * 1024;
    p.local_block_bytes = 3712 * 1024;
    p.local_blocks_max = 256 * 67 + 128; /* 256 sequences x (1024 / 16 + 3) blocks, and a step's */
    p.non_kv_bytes = p.weight_bytes + 900 * MiB;
    CHECK_EQ_INT(mem_plan_kv(&p), 0);
    const double left = 0.9 * (double)p.total - (double)p.non_kv_bytes;
    const int share = (int)(left / ((640.0 + 3712.0) * 1024));
    CHECK_EQ_INT(p.num_local_blocks, share < p.local_blocks_max ? share : p.local_blocks_max);
    CHECK_EQ_INT(p.num_blocks, (int)((left - (double)p.num_local_blocks * 3712 * 1024) / (640.0 * 1024)));
    /* At least as many tokens as an unsplit cache would hold, in both pools. */
    CHECK((double)p.num_blocks >= left / ((640.0 + 3712.0) * 1024) - 1);
    /* With 8 sequences at most, the sliding layers keep only what 8 windows use. */
    p.local_blocks_max = 8 * 67 + 128;
    CHECK_EQ_INT(mem_plan_kv(&p), 0);
    CHECK_EQ_INT(p.num_local_blocks, 8 * 67 + 128);
    long long nb;
    int nl;
    mem_plan_split(0, 640, 3712, 100, &nb, &nl);
    CHECK(nb == 0 && nl == 0);
}

/* The KV cache's dtype sizes the blocks: the same share holds twice as many fp32-sized blocks'
 * worth in bf16 (Llama-3.2-1B's 16-token block is 1 MiB in fp32, 512 KiB in bf16, 256 KiB in
 * fp8), and a cache too small for the length suggests the narrower dtypes. */
TEST(mem_plan_kv_dtype) {
    int blocks[3];
    const size_t bytes[3] = {1024 * 1024, 512 * 1024, 256 * 1024};
    const char *names[3] = {"float32", "bfloat16", "float8_e4m3"};
    for (int i = 0; i < 3; i++) {
        struct mem_plan p = h100_llama1b();
        p.non_kv_bytes = p.weight_bytes + 900 * MiB;
        p.block_bytes = bytes[i];
        p.kv_dtype = names[i];
        CHECK_EQ_INT(mem_plan_kv(&p), 0);
        blocks[i] = p.num_blocks;
    }
    CHECK(blocks[1] >= 2 * blocks[0] && blocks[1] <= 2 * blocks[0] + 1);
    CHECK(blocks[2] >= 2 * blocks[1] && blocks[2] <= 2 * blocks[1] + 1);
    for (int i = 0; i < 3; i++) {
        struct mem_plan p = h100_llama1b();
        p.utilization = 0.05;
        p.non_kv_bytes = p.weight_bytes + 1024 * MiB;
        p.len_given = 1;
        p.block_bytes = bytes[i];
        p.kv_dtype = names[i];
        CHECK(mem_plan_kv(&p) == FOLIO_EINVAL);
        if (i == 0) CHECK(has("or use --kv-cache-dtype bfloat16 (or fp8) (the cache is float32 now)"));
        if (i == 1) CHECK(has("or use --kv-cache-dtype fp8 (the cache is bfloat16 now)"));
        if (i == 2) CHECK(!has("--kv-cache-dtype"));
    }
}
