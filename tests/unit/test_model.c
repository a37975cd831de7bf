/* Model loading and the CPU forward pass on the real shared checkpoints: greedy decoding
 * must reproduce the known-good ids from ../shared/models/README.md, through a batch layout
 * with several sequences, chunked prefill and small KV blocks. */
#include <stdlib.h>

#include "backend/backend.h"
#include "core/kv_cache.h"
#include "model/model.h"
#include "test.h"

static const int32_t stories_prompt[] = {1, 403, 407, 261, 378};
static const int32_t stories_expected[40] = {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396,
                                             267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385,
                                             328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426};

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Greedy-decodes n_seqs copies of the stories prompt in one batch; prefill goes `chunk`
 * tokens per step per sequence. Every sequence must give the reference ids. */
static void greedy_batch(int n_seqs, int chunk, int block_size, int threads) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/stories260K", test_models_dir());
    struct backend *b = NULL;
    struct model *m = NULL;
    CHECK_EQ_INT(backend_cpu_create(&(struct backend_cpu_params){threads}, &b), 0);
    struct model_params mp = model_default_params();
    mp.block_size = block_size;
    mp.max_num_seqs = mp.max_num_logits = n_seqs;
    mp.max_num_batched_tokens = n_seqs * 8;
    int rc = model_load(dir, &mp, b, &m);
    CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "    %s\n", folio_last_error());
        backend_free(b);
        return;
    }
    const int V = model_config(m)->vocab_size, mb = model_max_blocks_per_seq(m), np = 5, ngen = 40;
    int num_blocks = n_seqs * ((np + ngen + block_size - 1) / block_size);
    CHECK_EQ_INT(model_alloc_kv(m, num_blocks), 0);
    struct kv_cache *kv = kv_cache_create(&(struct kv_cache_params){num_blocks, block_size, 0});
    int32_t *tables = calloc((size_t)n_seqs * mb, 4), *store = calloc((size_t)n_seqs * mb, 4);
    struct kv_seq seqs[8];
    int done[8] = {0}, last[8] = {0}, ngot[8] = {0}, ok[8];
    int32_t tokens[64], pos[64], sidx[64], slots[64], lidx[8];
    float *logits = malloc(sizeof(float) * V * n_seqs);
    for (int s = 0; s < n_seqs; s++) {
        kv_seq_init(&seqs[s], store + s * mb, mb);
        ok[s] = 1;
    }
    for (int step = 0; step < 200; step++) {
        int T = 0, L = 0;
        int owner[8];
        for (int s = 0; s < n_seqs; s++) {
            if (ngot[s] == ngen) continue;
            int n = done[s] < np ? (np - done[s] < chunk ? np - done[s] : chunk) : 1;
            int no_copies = 0;
            CHECK_EQ_INT(kv_cache_reserve(kv, &seqs[s], done[s] + n, NULL, &no_copies), 0);
            seqs[s].num_computed = done[s] + n; /* written by the forward below; nothing is shared */
            for (int i = 0; i < n; i++, T++) {
                int p = done[s] + i;
                tokens[T] = p < np ? stories_prompt[p] : last[s];
                pos[T] = p;
                sidx[T] = s;
                slots[T] = kv_seq_slot(&seqs[s], p, block_size);
            }
            done[s] += n;
            if (done[s] >= np) {
                owner[L] = s;
                lidx[L++] = T - 1;
            }
            memcpy(tables + s * mb, seqs[s].blocks, 4 * (size_t)seqs[s].num_blocks);
        }
        if (!T) break;
        struct model_batch bt = {T, tokens, pos, sidx, slots, n_seqs, tables, L, lidx, 0, NULL, 0, NULL, NULL, NULL, 0, NULL};
        CHECK_EQ_INT(model_forward(m, &bt, logits), 0);
        for (int i = 0; i < L; i++) {
            int s = owner[i], id = argmax(logits + (size_t)i * V, V);
            if (id != stories_expected[ngot[s]]) ok[s] = 0;
            last[s] = id;
            ngot[s]++;
        }
    }
    for (int s = 0; s < n_seqs; s++) {
        CHECK_EQ_INT(ngot[s], ngen);
        CHECK(ok[s]);
    }
    free(logits);
    free(tables);
    free(store);
    kv_cache_free(kv);
    model_free(m);
    backend_free(b);
}

TEST(model_stories_greedy_single) { greedy_batch(1, 8, 16, 1); }
TEST(model_stories_greedy_batched_chunked) { greedy_batch(3, 2, 4, 2); }
TEST(model_stories_greedy_block1) { greedy_batch(2, 1, 1, 2); }

TEST(model_rejects_bad_batch) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/stories260K", test_models_dir());
    struct backend *b = NULL;
    struct model *m = NULL;
    CHECK_EQ_INT(backend_cpu_create(&(struct backend_cpu_params){1}, &b), 0);
    struct model_params mp = model_default_params();
    CHECK_EQ_INT(model_load(dir, &mp, b, &m), 0);
    if (!m) {
        backend_free(b);
        return;
    }
    CHECK_EQ_INT(model_alloc_kv(m, 2), 0);
    int32_t tables[32], tok = 600, pos = 0, sidx = 0, slot = 0, lidx = 0;
    for (int i = 0; i < 32; i++) tables[i] = -1;
    tables[0] = 0;
    float logits[512];
    struct model_batch bt = {1, &tok, &pos, &sidx, &slot, 1, tables, 1, &lidx, 0, NULL, 0, NULL, NULL, NULL, 0, NULL};
    CHECK(model_forward(m, &bt, logits) < 0); /* token outside the vocabulary */
    tok = 5;
    slot = 2 * 16;
    CHECK(model_forward(m, &bt, logits) < 0); /* slot outside the pool */
    slot = 0;
    tables[0] = 7;
    CHECK(model_forward(m, &bt, logits) < 0); /* block outside the pool */
    tables[0] = 0;
    CHECK_EQ_INT(model_forward(m, &bt, logits), 0);
    /* A compact block table: width 1 reaches position 15, not 16; wider than the model's is refused. */
    bt.block_table_width = 1;
    CHECK_EQ_INT(model_forward(m, &bt, logits), 0);
    pos = 16;
    slot = 16;
    tables[1] = 1;
    CHECK(model_forward(m, &bt, logits) < 0);
    bt.block_table_width = 2;
    CHECK_EQ_INT(model_forward(m, &bt, logits), 0);
    bt.block_table_width = model_max_blocks_per_seq(m) + 1;
    CHECK(model_forward(m, &bt, logits) < 0);
    model_free(m);
    backend_free(b);
}
