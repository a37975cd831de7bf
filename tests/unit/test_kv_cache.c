/* The block manager: growth a block at a time, exhaustion without side effects, reference
 * counts, copy-on-write after a fork, prefix caching (chained hashes, hit counting, LRU
 * eviction of unused cached blocks, confirmation against stored tokens), and a randomized
 * run checking the pool's invariants against a model of who holds what. */
#include <stdlib.h>

#include "core/kv_cache.h"
#include "test.h"

static struct kv_cache *make(int blocks, int bs, int prefix) {
    return kv_cache_create(&(struct kv_cache_params){blocks, bs, prefix});
}

static int reserve(struct kv_cache *kv, struct kv_seq *s, int n) {
    int32_t copies[64];
    int nc = 0;
    return kv_cache_reserve(kv, s, n, copies, &nc);
}

TEST(kv_cache_reserve_release) {
    struct kv_cache *kv = make(5, 4, 0);
    CHECK(kv != NULL);
    if (!kv) return;
    int32_t ta[8], tb[8];
    struct kv_seq a, b;
    kv_seq_init(&a, ta, 8);
    kv_seq_init(&b, tb, 8);
    CHECK_EQ_INT(reserve(kv, &a, 1), 0);
    CHECK_EQ_INT(a.num_blocks, 1);
    CHECK_EQ_INT(reserve(kv, &a, 4), 0);
    CHECK_EQ_INT(a.num_blocks, 1);
    CHECK_EQ_INT(reserve(kv, &a, 9), 0);
    CHECK_EQ_INT(a.num_blocks, 3);
    CHECK_EQ_INT(kv_seq_slot(&a, 9, 4), a.blocks[2] * 4 + 1);
    CHECK(reserve(kv, &b, 12) < 0); /* 3 needed, 2 free: nothing taken */
    CHECK_EQ_INT(b.num_blocks, 0);
    CHECK_EQ_INT(kv_cache_num_available(kv), 2);
    CHECK_EQ_INT(reserve(kv, &b, 8), 0);
    CHECK_EQ_INT(kv_cache_num_available(kv), 0);
    int seen[5] = {0};
    for (int i = 0; i < a.num_blocks; i++) seen[a.blocks[i]]++;
    for (int i = 0; i < b.num_blocks; i++) seen[b.blocks[i]]++;
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(seen[i], 1);
    kv_cache_release(kv, &a);
    kv_cache_release(kv, &b);
    CHECK_EQ_INT(kv_cache_num_available(kv), 5);
    int32_t tc[2];
    struct kv_seq c;
    kv_seq_init(&c, tc, 2);
    CHECK(reserve(kv, &c, 9) < 0); /* table too small */
    kv_cache_free(kv);
    kv_cache_free(NULL);
    CHECK(make(0, 4, 0) == NULL);
}

TEST(kv_cache_waste_counts_unfilled_slots) {
    struct kv_cache *kv = make(8, 4, 0);
    int32_t ta[8], seq[16] = {0};
    struct kv_seq a;
    kv_seq_init(&a, ta, 8);
    reserve(kv, &a, 6);
    kv_cache_commit(kv, &a, seq, 6);
    struct kv_cache_stats st;
    kv_cache_get_stats(kv, &st);
    CHECK_EQ_INT(st.used, 2);
    CHECK_EQ_INT(st.allocated_slots, 8);
    CHECK_EQ_INT(st.stored_tokens, 6);
    CHECK_EQ_INT(st.free, 6);
    kv_cache_release(kv, &a);
    kv_cache_get_stats(kv, &st);
    CHECK_EQ_INT(st.used, 0);
    CHECK_EQ_INT(st.stored_tokens, 0);
    kv_cache_free(kv);
}

/* n = 3 samples of a 6-token prompt in blocks of 4: the full block is shared for good, the
 * partial one is copied by the first two writers and written in place by the last. */
TEST(kv_cache_fork_copy_on_write) {
    struct kv_cache *kv = make(10, 4, 0);
    int32_t tb[3][8], toks[8] = {1, 2, 3, 4, 5, 6, 7, 8}, copies[16];
    struct kv_seq s[3];
    for (int i = 0; i < 3; i++) kv_seq_init(&s[i], tb[i], 8);
    CHECK_EQ_INT(reserve(kv, &s[0], 6), 0);
    kv_cache_commit(kv, &s[0], toks, 6);
    kv_cache_fork(kv, &s[0], &s[1]);
    kv_cache_fork(kv, &s[0], &s[2]);
    struct kv_cache_stats st;
    kv_cache_get_stats(kv, &st);
    CHECK_EQ_INT(st.used, 2);          /* shared, not duplicated */
    CHECK_EQ_INT(st.stored_tokens, 6);
    CHECK_EQ_INT(s[1].blocks[1], s[0].blocks[1]);
    int nc = 0;
    int32_t shared_partial = s[0].blocks[1];
    CHECK_EQ_INT(kv_cache_blocks_needed(kv, &s[1], 7), 1);
    CHECK_EQ_INT(kv_cache_reserve(kv, &s[1], 7, copies, &nc), 0);
    CHECK_EQ_INT(nc, 1);
    CHECK_EQ_INT(copies[0], shared_partial);
    CHECK_EQ_INT(copies[1], s[1].blocks[1]);
    CHECK(s[1].blocks[1] != shared_partial);
    CHECK_EQ_INT(s[1].blocks[0], s[0].blocks[0]); /* the full block stays shared */
    CHECK_EQ_INT(kv_cache_reserve(kv, &s[2], 7, copies, &nc), 0);
    CHECK_EQ_INT(nc, 2);
    CHECK_EQ_INT(kv_cache_blocks_needed(kv, &s[0], 7), 0); /* last holder: in place */
    CHECK_EQ_INT(kv_cache_reserve(kv, &s[0], 7, copies, &nc), 0);
    CHECK_EQ_INT(nc, 2);
    CHECK_EQ_INT(s[0].blocks[1], shared_partial);
    kv_cache_get_stats(kv, &st);
    CHECK_EQ_INT(st.cow_copies, 2);
    CHECK_EQ_INT(st.used, 4);
    for (int i = 0; i < 3; i++) kv_cache_release(kv, &s[i]);
    kv_cache_get_stats(kv, &st);
    CHECK_EQ_INT(st.used, 0);
    CHECK_EQ_INT(kv_cache_num_available(kv), 10);
    kv_cache_free(kv);
}

TEST(kv_cache_prefix_hits_and_confirmation) {
    struct kv_cache *kv = make(16, 4, 1);
    int32_t ta[8], tb[8], tc[8];
    int32_t p1[13] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
    int32_t p2[13] = {1, 2, 3, 4, 5, 6, 7, 8, 99, 10, 11, 12, 13}; /* differs in block 2 */
    int32_t p3[13] = {1, 2, 3, 4, 5, 6, 0, 8, 9, 10, 11, 12, 13};  /* differs in block 1 */
    struct kv_seq a, b, c;
    kv_seq_init(&a, ta, 8);
    kv_seq_init(&b, tb, 8);
    kv_seq_init(&c, tc, 8);
    CHECK_EQ_INT(kv_cache_match_prefix(kv, &a, p1, 13), 0);
    CHECK_EQ_INT(reserve(kv, &a, 13), 0);
    kv_cache_commit(kv, &a, p1, 13); /* three full blocks enter the cache */
    CHECK_EQ_INT(a.num_hashed, 3);
    CHECK_EQ_INT(kv_cache_match_prefix(kv, &b, p2, 13), 8);
    CHECK_EQ_INT(b.blocks[0], a.blocks[0]);
    CHECK_EQ_INT(b.blocks[1], a.blocks[1]);
    CHECK_EQ_INT(kv_cache_match_prefix(kv, &c, p3, 13), 4);
    kv_cache_release(kv, &b);
    kv_cache_release(kv, &c);
    /* The last prompt token is always recomputed: a 12-token prompt of 3 cached blocks
     * matches only 2 of them. */
    CHECK_EQ_INT(kv_cache_match_prefix(kv, &b, p1, 12), 8);
    kv_cache_release(kv, &b);
    kv_cache_release(kv, &a);
    struct kv_cache_stats st;
    kv_cache_get_stats(kv, &st);
    CHECK_EQ_INT(st.used, 0);
    CHECK_EQ_INT(st.cached, 3);
    CHECK_EQ_INT(st.free, 13);
    /* Unused cached blocks still hit. */
    CHECK_EQ_INT(kv_cache_match_prefix(kv, &a, p1, 13), 12);
    kv_cache_get_stats(kv, &st);
    CHECK_EQ_INT(st.used, 3);
    CHECK_EQ_INT(st.cached, 0);
    kv_cache_count_prefix(kv, 13, 12);
    kv_cache_get_stats(kv, &st);
    CHECK_EQ_INT(st.prefix_queries, 13);
    CHECK_EQ_INT(st.prefix_hits, 12);
    kv_cache_release(kv, &a);
    kv_cache_free(kv);
}

/* Free blocks go first; then cached ones, least recently released first, and within one
 * sequence its tail before its head. */
TEST(kv_cache_lru_eviction) {
    struct kv_cache *kv = make(4, 2, 1);
    int32_t ta[4], tb[4], tc[4], td[4];
    int32_t pa[5] = {1, 2, 3, 4, 5}, pb[3] = {7, 8, 9};
    struct kv_seq a, b, c, d;
    kv_seq_init(&a, ta, 4);
    kv_seq_init(&b, tb, 4);
    kv_seq_init(&c, tc, 4);
    kv_seq_init(&d, td, 4);
    reserve(kv, &a, 4);
    kv_cache_commit(kv, &a, pa, 4); /* blocks [1,2] [3,4] cached when released */
    kv_cache_release(kv, &a);
    reserve(kv, &b, 2);
    kv_cache_commit(kv, &b, pb, 2); /* [7,8] */
    kv_cache_release(kv, &b);
    struct kv_cache_stats st;
    kv_cache_get_stats(kv, &st);
    CHECK_EQ_INT(st.cached, 3);
    CHECK_EQ_INT(st.free, 1);
    reserve(kv, &c, 2); /* takes the free block: nothing evicted */
    kv_cache_get_stats(kv, &st);
    CHECK_EQ_INT(st.evictions, 0);
    CHECK_EQ_INT(kv_cache_match_prefix(kv, &d, pa, 5), 4);
    kv_cache_release(kv, &d);
    /* LRU order now: [7,8] (released first), then a's tail [3,4], then a's head [1,2]. */
    reserve(kv, &c, 4);
    kv_cache_get_stats(kv, &st);
    CHECK_EQ_INT(st.evictions, 1);
    CHECK_EQ_INT(kv_cache_match_prefix(kv, &d, pb, 3), 0); /* [7,8] was evicted */
    CHECK_EQ_INT(kv_cache_match_prefix(kv, &d, pa, 5), 4); /* a's blocks survive */
    kv_cache_release(kv, &d);
    reserve(kv, &c, 6);
    CHECK_EQ_INT(kv_cache_match_prefix(kv, &d, pa, 5), 2); /* tail evicted before head */
    kv_cache_release(kv, &d);
    kv_cache_release(kv, &c);
    kv_cache_free(kv);
}

/* Random sequences grow, fork, write, commit and release against a shadow count of
 * references; the pool's figures must always add up, and end with nothing in use. */
TEST(kv_cache_random_invariants) {
    enum { NB = 24, BS = 4, NS = 6, CAP = 12 };
    struct kv_cache *kv = make(NB, BS, 1);
    int32_t tables[NS][CAP], toks[NS][CAP * BS], copies[2 * CAP * 2];
    struct kv_seq s[NS];
    int len[NS] = {0};
    for (int i = 0; i < NS; i++) kv_seq_init(&s[i], tables[i], CAP);
    unsigned seed = 12345;
    for (int step = 0; step < 4000; step++) {
        seed = seed * 1103515245u + 12345u;
        int i = (int)((seed >> 16) % NS), op = (int)((seed >> 8) % 10);
        if (op < 5) { /* extend by 1..5 tokens from a small alphabet, so prefixes repeat */
            int add = 1 + (int)(seed >> 24) % 5;
            if (len[i] + add > CAP * BS) continue;
            for (int k = len[i]; k < len[i] + add; k++) toks[i][k] = (int32_t)((seed >> (k % 16)) % 3);
            if (s[i].num_blocks == 0) kv_cache_match_prefix(kv, &s[i], toks[i], len[i] + add);
            int nc = 0;
            int need = kv_cache_blocks_needed(kv, &s[i], len[i] + add);
            int avail = kv_cache_num_available(kv);
            int rc = kv_cache_reserve(kv, &s[i], len[i] + add, copies, &nc);
            CHECK_EQ_INT(rc == 0, need <= avail);
            if (rc == 0) {
                len[i] += add;
                kv_cache_commit(kv, &s[i], toks[i], len[i]);
            } else if (len[i] == 0) {
                kv_cache_release(kv, &s[i]); /* drop the matched prefix */
            }
        } else if (op < 7) {
            kv_cache_release(kv, &s[i]);
            len[i] = 0;
        } else if (op < 8) { /* fork i into an empty j */
            int j = (i + 1) % NS;
            if (len[j] == 0 && s[j].num_blocks == 0 && len[i] > 0) {
                kv_cache_fork(kv, &s[i], &s[j]);
                for (int k = 0; k < len[i]; k++) toks[j][k] = toks[i][k];
                len[j] = len[i];
            }
        }
        struct kv_cache_stats st;
        kv_cache_get_stats(kv, &st);
        if (st.used + st.cached + st.free != NB) {
            CHECK_EQ_INT(st.used + st.cached + st.free, NB);
            break;
        }
        /* Every block a sequence holds is distinct within it and counted as used. */
        int held[NB] = {0};
        for (int a = 0; a < NS; a++)
            for (int b = 0; b < s[a].num_blocks; b++) held[s[a].blocks[b]]++;
        int used = 0;
        for (int b = 0; b < NB; b++) used += held[b] > 0;
        if (used != st.used) {
            CHECK_EQ_INT(used, st.used);
            break;
        }
        if (st.stored_tokens > st.allocated_slots) {
            CHECK(st.stored_tokens <= st.allocated_slots);
            break;
        }
    }
    for (int i = 0; i < NS; i++) kv_cache_release(kv, &s[i]);
    struct kv_cache_stats st;
    kv_cache_get_stats(kv, &st);
    CHECK_EQ_INT(st.used, 0);
    CHECK_EQ_INT(st.stored_tokens, 0); /* the running sum came back to zero */
    CHECK_EQ_INT(kv_cache_num_available(kv), NB);
    kv_cache_free(kv);
}

/* A sliding window's blocks: the ones wholly behind the window go back (cached, when hashed),
 * a fork shares only the kept ones, and a window-aware prefix match takes just the blocks the
 * window still reads, even when the chain's first blocks are gone. */
TEST(kv_cache_sliding_window_drop_and_match) {
    struct kv_cache *kv = make(16, 4, 1);
    CHECK(kv != NULL);
    if (!kv) return;
    int32_t toks[64], ta[16], tb[16], tc[16];
    for (int i = 0; i < 64; i++) toks[i] = 100 + i;
    struct kv_seq a, b, c;
    kv_seq_init(&a, ta, 16);
    kv_seq_init(&b, tb, 16);
    kv_seq_init(&c, tc, 16);
    CHECK_EQ_INT(reserve(kv, &a, 40), 0);
    kv_cache_commit(kv, &a, toks, 40);
    kv_cache_drop_before(kv, &a, 40 - 8 + 1); /* window 8: positions >= 33 are read */
    CHECK_EQ_INT(a.num_dropped, 8);
    struct kv_cache_stats st;
    kv_cache_get_stats(kv, &st);
    CHECK_EQ_INT(st.used, 2);
    CHECK_EQ_INT(st.cached, 8); /* hashed, so still a prefix to match */
    kv_cache_fork(kv, &a, &b);
    kv_cache_get_stats(kv, &st);
    CHECK_EQ_INT(st.used, 2);
    kv_cache_release(kv, &b);
    kv_cache_release(kv, &a);
    kv_cache_get_stats(kv, &st);
    CHECK_EQ_INT(st.used, 0);
    CHECK_EQ_INT(st.cached, 10);
    /* Evict the chain's first blocks: 6 free blocks, then 4 of the cached ones. */
    CHECK_EQ_INT(reserve(kv, &c, 40), 0);
    kv_cache_release(kv, &c); /* unhashed: back to the free stack */
    int32_t td[16];
    struct kv_seq d;
    kv_seq_init(&d, td, 16);
    /* The plain match needs block 0, evicted now; the window match needs only blocks 8 and 9
     * for a continuation at 40. */
    CHECK_EQ_INT(kv_cache_match_prefix(kv, &d, toks, 41), 0);
    kv_cache_release(kv, &d);
    CHECK_EQ_INT(kv_cache_match_prefix_window(kv, &d, toks, 41, 8), 40);
    CHECK_EQ_INT(d.num_dropped, 8);
    kv_cache_get_stats(kv, &st);
    CHECK_EQ_INT(st.used, 2);
    kv_cache_release(kv, &d);
    /* A window of 4 at 40 reads from 37: only block 9. */
    CHECK_EQ_INT(kv_cache_match_prefix_window(kv, &d, toks, 41, 4), 40);
    CHECK_EQ_INT(d.num_dropped, 9);
    kv_cache_release(kv, &d);
    /* A different token in block 9 ends the match before it: at 36, which needs blocks 7, 8. */
    toks[38] = 7;
    CHECK_EQ_INT(kv_cache_match_prefix_window(kv, &d, toks, 41, 8), 36);
    CHECK_EQ_INT(d.num_dropped, 7);
    kv_cache_release(kv, &d);
    toks[38] = 138;
    toks[2] = 7; /* changes every chain hash after block 0: nothing matches */
    CHECK_EQ_INT(kv_cache_match_prefix_window(kv, &d, toks, 41, 8), 0);
    kv_cache_free(kv);
}
