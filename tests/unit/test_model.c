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

/* ---- KV cache dtypes ---- */

enum { KVT_LEN = 45 }; /* the stories prompt and its 40 greedy tokens, teacher-forced */

/* Token p of sequence s: the known-good stream for s = 0; for the others, the same ids
 * rotated, so that each sequence has a context of its own. */
static int32_t kvt_token(int s, int p) {
    const int i = p == 0 ? 0 : 1 + (p - 1 + 7 * s) % (KVT_LEN - 1);
    return i < 5 ? stories_prompt[i] : stories_expected[i - 5];
}

/* Logits of every position of sequence 0 ([KVT_LEN, V] into out) with a KV cache of dtype kv,
 * running n_seqs sequences together, `chunk` tokens of each per step, over 4-token blocks
 * taken in turn (so the sequences' blocks interleave). 0, or the failing call's code. */
static int kvt_logits(enum folio_dtype kv, int n_seqs, int chunk, float *out) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/stories260K", test_models_dir());
    struct backend *b = NULL;
    struct model *m = NULL;
    int rc = backend_cpu_create(&(struct backend_cpu_params){2}, &b);
    if (rc) return rc;
    struct model_params mp = model_default_params();
    mp.block_size = 4;
    mp.kv_dtype = kv;
    mp.max_num_seqs = n_seqs;
    mp.max_num_batched_tokens = mp.max_num_logits = n_seqs * chunk;
    if ((rc = model_load(dir, &mp, b, &m))) {
        backend_free(b);
        return rc;
    }
    const int V = model_config(m)->vocab_size, mb = model_max_blocks_per_seq(m), nb = (KVT_LEN + 3) / 4;
    int32_t *tables = calloc((size_t)n_seqs * mb, sizeof(int32_t));
    int32_t tok[64], pos[64], sidx[64], slot[64], lidx[64];
    float *logits = malloc(sizeof(float) * 64 * V);
    if ((rc = model_alloc_kv(m, n_seqs * nb))) goto out;
    for (int i = 0; i < nb; i++)
        for (int s = 0; s < n_seqs; s++) tables[s * mb + i] = i * n_seqs + s;
    for (int p0 = 0; p0 < KVT_LEN && !rc; p0 += chunk) {
        int T = 0;
        const int n = KVT_LEN - p0 < chunk ? KVT_LEN - p0 : chunk;
        for (int s = 0; s < n_seqs; s++)
            for (int p = p0; p < p0 + n; p++, T++) {
                tok[T] = kvt_token(s, p);
                pos[T] = p;
                sidx[T] = s;
                slot[T] = tables[s * mb + p / 4] * 4 + p % 4;
                lidx[T] = T;
            }
        struct model_batch bt = {.num_tokens = T, .tokens = tok, .positions = pos, .seq_idx = sidx,
                                 .slot_mapping = slot, .num_seqs = n_seqs, .block_tables = tables, .num_logits = T,
                                 .logits_idx = lidx};
        if (!(rc = model_forward(m, &bt, logits))) memcpy(out + (size_t)p0 * V, logits, sizeof(float) * n * V);
    }
out:
    free(tables);
    free(logits);
    model_free(m);
    backend_free(b);
    return rc;
}

/* stories260K's logits with bf16 (and fp8) K/V against the fp32 cache: within the dtype's
 * rounding, with the same greedy token at (nearly) every position; with bf16 K/V a sequence in
 * a batch of three, prefilled 3 tokens a step, gives its logits bit for bit as it does alone
 * in one step. */
TEST(model_kv_bf16_fp8_against_f32) {
    const int V = 512;
    float *f32 = malloc(sizeof(float) * KVT_LEN * V), *bf16 = malloc(sizeof(float) * KVT_LEN * V);
    float *fp8 = malloc(sizeof(float) * KVT_LEN * V), *batched = malloc(sizeof(float) * KVT_LEN * V);
    CHECK_EQ_INT(kvt_logits(FOLIO_F32, 1, KVT_LEN, f32), 0);
    CHECK_EQ_INT(kvt_logits(FOLIO_BF16, 1, KVT_LEN, bf16), 0);
    CHECK_EQ_INT(kvt_logits(FOLIO_FP8, 1, KVT_LEN, fp8), 0);
    CHECK_EQ_INT(kvt_logits(FOLIO_BF16, 3, 3, batched), 0);
    double scale = 0, e16 = 0, e8 = 0;
    int agree16 = 0, agree8 = 0;
    for (int p = 0; p < KVT_LEN; p++) {
        const float *r = f32 + (size_t)p * V;
        for (int i = 0; i < V; i++) {
            scale = fmax(scale, fabs(r[i]));
            e16 = fmax(e16, fabs(bf16[(size_t)p * V + i] - r[i]));
            e8 = fmax(e8, fabs(fp8[(size_t)p * V + i] - r[i]));
        }
        agree16 += argmax(r, V) == argmax(bf16 + (size_t)p * V, V);
        agree8 += argmax(r, V) == argmax(fp8 + (size_t)p * V, V);
    }
    printf("    stories260K, %d positions: |logits| <= %.2f; bf16 KV off by %.4f (%d/%d argmax equal), fp8 KV by "
           "%.4f (%d/%d)\n", KVT_LEN, scale, e16, agree16, KVT_LEN, e8, agree8, KVT_LEN);
    CHECK(e16 > 0);
    CHECK(e16 <= 1e-2 * scale);
    CHECK_EQ_INT(agree16, KVT_LEN);
    CHECK(e8 > e16 && e8 <= 0.15 * scale); /* e4m3 keeps 4 bits: 6% an element */
    CHECK(agree8 >= KVT_LEN - 2);
    CHECK(memcmp(batched, bf16, sizeof(float) * KVT_LEN * V) == 0);
    free(f32);
    free(bf16);
    free(fp8);
    free(batched);
}

/* A KV dtype the backend lacks is refused at load, naming it and the backend. */
TEST(model_kv_dtype_refused) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/stories260K", test_models_dir());
    struct backend *b = NULL;
    struct model *m = NULL;
    CHECK_EQ_INT(backend_cpu_create(&(struct backend_cpu_params){1}, &b), 0);
    struct model_params mp = model_default_params();
    mp.kv_dtype = FOLIO_F16;
    CHECK_EQ_INT(model_load(dir, &mp, b, &m), FOLIO_EUNSUP);
    CHECK(m == NULL);
    CHECK(strstr(folio_last_error(), "float16 KV cache") && strstr(folio_last_error(), "cpu backend"));
    mp.kv_dtype = FOLIO_BF16;
    CHECK_EQ_INT(model_load(dir, &mp, b, &m), 0);
    if (m) {
        CHECK_EQ_INT(model_kv_dtype(m), FOLIO_BF16);
        CHECK_EQ_INT(model_kv_block_bytes(m), 2 * 5 * 4 * 8 * 16 * 2); /* K+V, 5 layers, 4 KV heads of 8, 16 tokens */
        float ks, vs;
        model_kv_scales(m, 0, &ks, &vs);
        CHECK(ks == 1.0f && vs == 1.0f);
    }
    model_free(m);
    backend_free(b);
}

/* An FP8 KV cache takes each layer's self_attn.k_scale / v_scale from the checkpoint (here a
 * shard of their own added to a generated one), as vLLM does; other KV dtypes ignore them, and
 * a scale that is not a positive number is refused. */
TEST(model_kv_fp8_checkpoint_scales) {
    char dir[256], cmd[2048];
    snprintf(dir, sizeof dir, "%s/kv-scales", test_tmp_dir());
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 - %s <<'PY'\n"
             "import json, struct, sys\n"
             "sys.path.insert(0, 'tests/fixtures')\n"
             "import gen_checkpoint as g\n"
             "out = sys.argv[1]\n"
             "g.write_model(out, 'llama-gqa', 'F32', 3, 2)\n"
             "idx = json.load(open(out + '/model.safetensors.index.json'))\n"
             "n = json.load(open(out + '/config.json'))['num_hidden_layers']\n"
             "items = []\n"
             "for l in range(n):\n"
             "    items.append((f'model.layers.{l}.self_attn.k_scale', 'F32', [], struct.pack('<f', 0.5 + l)))\n"
             "    v = struct.pack('<f', 0.25 * (l + 1))\n"
             "    items.append((f'model.layers.{l}.self_attn.v_scale', 'F32', [1], v))\n"
             "g.write_safetensors(out + '/kv_scales.safetensors', items)\n"
             "for name, *_ in items: idx['weight_map'][name] = 'kv_scales.safetensors'\n"
             "json.dump(idx, open(out + '/model.safetensors.index.json', 'w'))\n"
             "PY",
             dir);
    CHECK_EQ_INT(system(cmd), 0);
    struct backend *b = NULL;
    struct model *m = NULL;
    CHECK_EQ_INT(backend_cpu_create(&(struct backend_cpu_params){1}, &b), 0);
    struct model_params mp = model_default_params();
    mp.kv_dtype = FOLIO_FP8;
    CHECK_EQ_INT(model_load(dir, &mp, b, &m), 0);
    if (m) {
        const int L = model_config(m)->num_layers;
        CHECK(L >= 2);
        for (int l = 0; l < L; l++) {
            float ks, vs;
            model_kv_scales(m, l, &ks, &vs);
            CHECK(ks == 0.5f + (float)l && vs == 0.25f * (float)(l + 1));
        }
        model_free(m);
        m = NULL;
    }
    mp.kv_dtype = FOLIO_BF16;
    CHECK_EQ_INT(model_load(dir, &mp, b, &m), 0);
    if (m) {
        float ks, vs;
        model_kv_scales(m, 1, &ks, &vs);
        CHECK(ks == 1.0f && vs == 1.0f);
        model_free(m);
        m = NULL;
    }
    /* A zero scale, written over layer 0's k_scale in place. */
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import json, struct, sys\n"
             "p = sys.argv[1] + '/kv_scales.safetensors'\n"
             "b = bytearray(open(p, 'rb').read()); n = struct.unpack('<Q', b[:8])[0]\n"
             "h = json.loads(b[8:8 + n]); o = 8 + n + h['model.layers.0.self_attn.k_scale']['data_offsets'][0]\n"
             "b[o:o + 4] = struct.pack('<f', 0.0); open(p, 'wb').write(b)\" %s",
             dir);
    CHECK_EQ_INT(system(cmd), 0);
    mp.kv_dtype = FOLIO_FP8;
    CHECK(model_load(dir, &mp, b, &m) < 0);
    CHECK(m == NULL);
    CHECK(strstr(folio_last_error(), "model.layers.0.self_attn.k_scale") != NULL);
    backend_free(b);
}
