/* The plain block allocator: growth a block at a time, exhaustion without side effects, and
 * every block back after release. */
#include "kv_cache.h"
#include "test.h"

TEST(kv_cache_reserve_release) {
    struct kv_cache *kv = kv_cache_create(&(struct kv_cache_params){.num_blocks = 5, .block_size = 4});
    CHECK(kv != NULL);
    if (!kv) return;
    int32_t ta[8], tb[8];
    struct kv_seq a = {ta, 0, 8}, b = {tb, 0, 8};
    CHECK_EQ_INT(kv_cache_reserve(kv, &a, 1), 0);
    CHECK_EQ_INT(a.num_blocks, 1);
    CHECK_EQ_INT(kv_cache_reserve(kv, &a, 4), 0);
    CHECK_EQ_INT(a.num_blocks, 1);
    CHECK_EQ_INT(kv_cache_reserve(kv, &a, 9), 0);
    CHECK_EQ_INT(a.num_blocks, 3);
    CHECK_EQ_INT(kv_seq_slot(&a, 9, 4), a.blocks[2] * 4 + 1);
    CHECK(kv_cache_reserve(kv, &b, 12) < 0); /* 3 needed, 2 free: nothing taken */
    CHECK_EQ_INT(b.num_blocks, 0);
    CHECK_EQ_INT(kv_cache_num_free(kv), 2);
    CHECK_EQ_INT(kv_cache_reserve(kv, &b, 8), 0);
    CHECK_EQ_INT(kv_cache_num_free(kv), 0);
    /* all distinct */
    int seen[5] = {0};
    for (int i = 0; i < a.num_blocks; i++) seen[a.blocks[i]]++;
    for (int i = 0; i < b.num_blocks; i++) seen[b.blocks[i]]++;
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(seen[i], 1);
    kv_cache_release(kv, &a);
    kv_cache_release(kv, &b);
    CHECK_EQ_INT(kv_cache_num_free(kv), 5);
    int32_t tc[2];
    struct kv_seq c = {tc, 0, 2};
    CHECK(kv_cache_reserve(kv, &c, 9) < 0); /* table too small */
    kv_cache_free(kv);
    kv_cache_free(NULL);
}
