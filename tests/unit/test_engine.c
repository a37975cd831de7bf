/* The engine end to end on the real stories260K model: batch invariance (greedy and seeded),
 * chunked prefill, preemption by recompute, prefix caching, copy-on-write for n > 1, no
 * leaked blocks after finishing or aborting, KV waste under a mixed workload, stop strings
 * and stop tokens, multi-byte characters split across tokens, priorities, admission errors,
 * paused streams, logprobs, and the engine thread under concurrent submitters and aborts. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tools/utf8_check.h"
#include <cjson/cJSON.h>

#include "core/engine.h"
#include "core/structured.h"
#include "test.h"
#include "text/tokenizer.h"
#include "base/util.h"

#define MAXG 512
#define MAXN 4

struct run {
    int n;
    int32_t ids[MAXN][MAXG];
    int nids[MAXN];
    char text[MAXN][MAXG * 16];
    size_t tlen[MAXN];
    enum engine_finish finish[MAXN];
    int32_t stop_token[MAXN];
    char stop_str[MAXN][32];
    int cached, bad_utf8, done;
};

static void run_reset(struct run *r, int n) {
    memset(r, 0, sizeof *r);
    r->n = n;
}

/* The model the engines below load: stories260K, or a generated checkpoint of another family
 * (engine_families_*), with its vocabulary size for the random prompts. */
static const char *g_model_dir;
static int g_vocab = 512, g_max_len = 512;
/* --kv-cache-dtype of the engines below (NULL: auto, fp32 for these fp32 checkpoints); the
 * engine_kv_* tests rerun the cache-sensitive tests with it set. */
static const char *g_kv_dtype;

static const char *stories(void) {
    static char dir[1024];
    if (g_model_dir) return g_model_dir;
    snprintf(dir, sizeof dir, "%s/stories260K", test_models_dir());
    return dir;
}

static struct engine *make_engine(int block_size, int num_blocks, int max_seqs, int max_batched, int prefix) {
    struct engine_params p = engine_default_params();
    p.model = stories();
    p.threads = 1;
    p.block_size = block_size;
    p.num_blocks = num_blocks;
    p.max_num_seqs = max_seqs;
    p.max_num_batched_tokens = max_batched;
    p.max_model_len = g_max_len;
    p.enable_prefix_caching = prefix;
    p.seed = 42;
    p.kv_cache_dtype = g_kv_dtype;
    struct engine *e = NULL;
    if (engine_create(&p, &e) != 0) {
        test_fail(__FILE__, __LINE__, "engine_create: %s", folio_last_error());
        return NULL;
    }
    struct engine_memory em;
    engine_memory(e, &em);
    CHECK_STR(em.kv_dtype, !g_kv_dtype ? "float32" : !strcmp(g_kv_dtype, "fp8") ? "float8_e4m3" : g_kv_dtype);
    return e;
}

/* Reads whatever is ready; returns 1 once the request is done. */
static int drain(struct engine_req *h, struct run *r, int timeout_ms) {
    struct engine_output o;
    int rc;
    while ((rc = engine_read(h, &o, timeout_ms)) == ENGINE_READ_OUTPUT) {
        int i = o.index;
        for (int k = 0; k < o.num_tokens && r->nids[i] < MAXG; k++) r->ids[i][r->nids[i]++] = o.token_ids[k];
        if (!utf8_check((const unsigned char *)o.text, o.text_len)) r->bad_utf8++;
        if (r->tlen[i] + o.text_len < sizeof r->text[i]) {
            memcpy(r->text[i] + r->tlen[i], o.text, o.text_len);
            r->tlen[i] += o.text_len;
            r->text[i][r->tlen[i]] = '\0';
        }
        r->cached = o.num_cached_tokens;
        if (o.finish != ENGINE_FINISH_NONE) {
            r->finish[i] = o.finish;
            r->stop_token[i] = o.stop_token;
            snprintf(r->stop_str[i], sizeof r->stop_str[i], "%s", o.stop_str ? o.stop_str : "");
        }
    }
    if (rc == ENGINE_READ_DONE) r->done = 1;
    return r->done;
}

/* Submits every request at once and steps until all are done. Returns 0 or -1. */
static int run_all(struct engine *e, const struct engine_request *rq, int n, struct run *res) {
    struct engine_req **h = calloc((size_t)n, sizeof *h);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        run_reset(&res[i], rq[i].params.n);
        if (engine_submit(e, &rq[i], &h[i]) != 0) {
            test_fail(__FILE__, __LINE__, "submit %d: %s", i, folio_last_error());
            rc = -1;
            goto out;
        }
    }
    for (int step = 0;; step++) {
        int left = 0;
        for (int i = 0; i < n; i++) left += !drain(h[i], &res[i], 0);
        if (!left) break;
        if (step > 100000 || engine_step(e) < 0) {
            test_fail(__FILE__, __LINE__, "the engine did not finish (%d requests left)", left);
            rc = -1;
            break;
        }
    }
out:
    for (int i = 0; i < n; i++) engine_release(h[i]);
    free(h);
    return rc;
}

static uint32_t rng_next(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* Mixed-length random prompts (ids 3..vocab-1) and output lengths. */
static void make_workload(int n, uint32_t seed, int32_t prompts[][320], struct engine_request *rq, int min_len,
                          int max_len, int min_out, int max_out) {
    for (int i = 0; i < n; i++) {
        int len = min_len + (int)(rng_next(&seed) % (uint32_t)(max_len - min_len + 1));
        prompts[i][0] = 1;
        for (int k = 1; k < len; k++) prompts[i][k] = 3 + (int32_t)(rng_next(&seed) % (uint32_t)(g_vocab - 3));
        rq[i] = (struct engine_request){.prompt = prompts[i], .num_prompt = len, .params = sampler_default_params()};
        rq[i].params.temperature = 0;
        rq[i].params.ignore_eos = 1;
        rq[i].params.max_tokens = min_out + (int)(rng_next(&seed) % (uint32_t)(max_out - min_out + 1));
    }
}

static int same_tokens(const struct run *a, const struct run *b) {
    for (int i = 0; i < a->n; i++)
        if (a->nids[i] != b->nids[i] || memcmp(a->ids[i], b->ids[i], sizeof(int32_t) * (size_t)a->nids[i]) != 0 ||
            strcmp(a->text[i], b->text[i]) != 0)
            return 0;
    return 1;
}

/* "Once upon a time" (BOS added), the prompt of the models' README, as a request. */
static const int32_t story_prompt[5] = {1, 403, 407, 261, 378};
static struct engine_request story_request(int max_tokens) {
    struct engine_request rq = {.prompt = story_prompt, .num_prompt = 5, .params = sampler_default_params()};
    rq.params.max_tokens = max_tokens;
    return rq;
}

static void check_no_blocks_held(struct engine *e) {
    struct engine_stats st;
    engine_step(e); /* let aborts land */
    engine_get_stats(e, &st);
    CHECK_EQ_INT(st.kv_used, 0);
    CHECK_EQ_INT(st.num_running, 0);
    CHECK_EQ_INT(st.num_waiting, 0);
    CHECK_EQ_INT(st.kv_stored_tokens, 0);
    CHECK_EQ_INT(st.num_preempted_waiting, 0);
    CHECK_EQ_INT(st.num_requests, 0);
    CHECK_EQ_INT(st.kv_used + st.kv_cached + st.kv_free, st.kv_blocks);
}

enum { NREQ = 32 };
static int32_t g_prompts[NREQ][320];
static struct engine_request g_rq[NREQ];
static struct run g_batched[NREQ], g_alone[NREQ];

/* 32 mixed requests at once, with a small token budget (so prompts are chunked and decodes
 * share steps with prefills), give exactly what each gives alone. */
TEST(engine_batch_invariance_greedy) {
    make_workload(NREQ, 7, g_prompts, g_rq, 2, 150, 4, 60);
    struct engine *batched = make_engine(16, 0, 64, 96, 1), *alone = make_engine(16, 0, 1, 2048, 0);
    if (!batched || !alone) goto out;
    CHECK_EQ_INT(run_all(batched, g_rq, NREQ, g_batched), 0);
    for (int i = 0; i < NREQ; i++) CHECK_EQ_INT(run_all(alone, &g_rq[i], 1, &g_alone[i]), 0);
    int mismatches = 0;
    for (int i = 0; i < NREQ; i++) {
        mismatches += !same_tokens(&g_batched[i], &g_alone[i]);
        CHECK_EQ_INT(g_batched[i].nids[0], g_rq[i].params.max_tokens);
        CHECK_EQ_INT(g_batched[i].finish[0], ENGINE_FINISH_LENGTH);
    }
    CHECK_EQ_INT(mismatches, 0);
    struct engine_stats st;
    engine_get_stats(batched, &st);
    CHECK(st.steps < 400); /* batched: far fewer steps than the ~1000 tokens generated */
    check_no_blocks_held(batched);
    check_no_blocks_held(alone);
out:
    engine_free(batched);
    engine_free(alone);
}

/* Seeded sampling with every processor on: the same tokens alone and in a batch. */
TEST(engine_batch_invariance_seeded) {
    make_workload(16, 11, g_prompts, g_rq, 2, 100, 8, 40);
    for (int i = 0; i < 16; i++) {
        struct sampling_params *p = &g_rq[i].params;
        p->temperature = 0.9f;
        p->top_p = 0.9f;
        p->top_k = 40;
        p->min_p = 0.02f;
        p->repetition_penalty = 1.1f;
        p->frequency_penalty = 0.3f;
        p->presence_penalty = 0.2f;
        p->has_seed = 1;
        p->seed = 1000 + (uint64_t)i;
    }
    struct engine *batched = make_engine(8, 0, 16, 64, 1), *alone = make_engine(16, 0, 1, 2048, 0);
    if (!batched || !alone) goto out;
    CHECK_EQ_INT(run_all(batched, g_rq, 16, g_batched), 0);
    int mismatches = 0, distinct = 0;
    for (int i = 0; i < 16; i++) {
        CHECK_EQ_INT(run_all(alone, &g_rq[i], 1, &g_alone[i]), 0);
        mismatches += !same_tokens(&g_batched[i], &g_alone[i]);
    }
    CHECK_EQ_INT(mismatches, 0);
    /* And it is sampling: a different seed gives a different continuation. */
    for (int i = 0; i < 16; i++) {
        g_rq[i].params.seed += 77;
        struct run other;
        run_all(alone, &g_rq[i], 1, &other);
        distinct += !same_tokens(&other, &g_alone[i]);
    }
    CHECK(distinct >= 12);
out:
    engine_free(batched);
    engine_free(alone);
}

/* A pool of 20 blocks of 4 tokens (80 slots) for 12 requests of up to ~110 tokens forces
 * preemptions; every output must equal the large-pool run. */
TEST(engine_preemption_recompute) {
    make_workload(12, 5, g_prompts, g_rq, 10, 40, 20, 60);
    for (int i = 6; i < 12; i++) { /* half of them sample, with seeds */
        g_rq[i].params.temperature = 1.0f;
        g_rq[i].params.has_seed = 1;
        g_rq[i].params.seed = (uint64_t)i;
    }
    struct engine *small = NULL, *large = make_engine(4, 0, 16, 64, 0);
    struct engine_params p = engine_default_params();
    p.model = stories();
    p.threads = 1;
    p.block_size = 4;
    p.num_blocks = 28;
    p.max_model_len = 100;
    p.max_num_seqs = 16;
    p.max_num_batched_tokens = 64;
    p.enable_prefix_caching = 0;
    p.kv_cache_dtype = g_kv_dtype;
    CHECK_EQ_INT(engine_create(&p, &small), 0);
    if (!small || !large) goto out;
    CHECK_EQ_INT(run_all(large, g_rq, 12, g_alone), 0);
    CHECK_EQ_INT(run_all(small, g_rq, 12, g_batched), 0);
    struct engine_stats st;
    engine_get_stats(small, &st);
    printf("    preemptions: %lld with a pool of %d blocks\n", st.num_preemptions, st.kv_blocks);
    CHECK(st.num_preemptions > 0);
    int mismatches = 0;
    for (int i = 0; i < 12; i++) mismatches += !same_tokens(&g_batched[i], &g_alone[i]);
    CHECK_EQ_INT(mismatches, 0);
    check_no_blocks_held(small);
out:
    engine_free(small);
    engine_free(large);
}

/* A second request sharing a 96-token prefix prefills only its tail, reports the rest as
 * cached, and answers exactly as an engine without the cache. */
TEST(engine_prefix_caching) {
    int32_t a[120], b[110];
    uint32_t seed = 3;
    a[0] = b[0] = 1;
    for (int i = 1; i < 120; i++) a[i] = 3 + (int32_t)(rng_next(&seed) % 509);
    memcpy(b, a, sizeof(int32_t) * 100);
    for (int i = 100; i < 110; i++) b[i] = 3 + (int32_t)(rng_next(&seed) % 509);
    struct engine_request ra = {.prompt = a, .num_prompt = 120, .params = sampler_default_params()};
    struct engine_request rb = {.prompt = b, .num_prompt = 110, .params = sampler_default_params()};
    ra.params.temperature = rb.params.temperature = 0;
    ra.params.max_tokens = rb.params.max_tokens = 20;
    ra.params.ignore_eos = rb.params.ignore_eos = 1;
    struct engine *e = make_engine(16, 0, 8, 2048, 1), *plain = make_engine(16, 0, 8, 2048, 0);
    if (!e || !plain) goto out;
    struct run out_a, out_b, ref_b;
    CHECK_EQ_INT(run_all(e, &ra, 1, &out_a), 0);
    struct engine_stats s0, s1;
    engine_get_stats(e, &s0);
    CHECK(s0.kv_cached >= 7); /* a's full blocks stay cached */
    CHECK_EQ_INT(run_all(e, &rb, 1, &out_b), 0);
    engine_get_stats(e, &s1);
    CHECK_EQ_INT(out_b.cached, 96);                         /* 6 blocks of 16 */
    CHECK_EQ_INT(s1.prefix_hits - s0.prefix_hits, 96);
    CHECK_EQ_INT(s1.prefix_queries - s0.prefix_queries, 110);
    CHECK_EQ_INT(s1.prompt_tokens - s0.prompt_tokens, 110 - 96); /* prefilled only the tail */
    CHECK_EQ_INT(run_all(plain, &rb, 1, &ref_b), 0);
    CHECK(same_tokens(&out_b, &ref_b));
    CHECK_EQ_INT(ref_b.cached, 0);
    /* Reported in usage: a repeat of a is served almost entirely from the cache. */
    CHECK_EQ_INT(run_all(e, &ra, 1, &out_b), 0);
    CHECK_EQ_INT(out_b.cached, 112);
    CHECK(same_tokens(&out_a, &out_b));
    check_no_blocks_held(e);
out:
    engine_free(e);
    engine_free(plain);
}

/* n = 4 greedy samples share the prompt's blocks: the 10-token prompt's partial block is
 * copied by three of them when they diverge from it, the full ones never; all four equal the
 * n = 1 answer, so the copies carried the right K/V. */
TEST(engine_copy_on_write_n4) {
    int32_t prompt[10] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376};
    struct engine_request rq = {.prompt = prompt, .num_prompt = 10, .params = sampler_default_params()};
    rq.params.temperature = 0;
    rq.params.max_tokens = 30;
    rq.params.ignore_eos = 1;
    struct engine *e = make_engine(4, 0, 8, 2048, 0);
    if (!e) return;
    struct run one, four;
    CHECK_EQ_INT(run_all(e, &rq, 1, &one), 0);
    struct engine_stats s0, s1;
    engine_get_stats(e, &s0);
    rq.params.n = 4;
    struct engine_req *h;
    CHECK_EQ_INT(engine_submit(e, &rq, &h), 0);
    engine_step(e); /* prefill + first tokens: 3 blocks, shared by all four */
    engine_get_stats(e, &s1);
    CHECK_EQ_INT(s1.kv_used, 3);
    CHECK_EQ_INT(s1.num_running, 4);
    CHECK_EQ_INT(s1.cow_copies - s0.cow_copies, 0);
    engine_step(e); /* each writes position 10, inside the shared partial block */
    engine_get_stats(e, &s1);
    CHECK_EQ_INT(s1.cow_copies - s0.cow_copies, 3);
    CHECK_EQ_INT(s1.kv_used, 6);
    run_reset(&four, 4);
    for (int step = 0; step < 1000 && !drain(h, &four, 0); step++) engine_step(e);
    engine_release(h);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(four.nids[i], 30);
        CHECK(four.nids[i] == one.nids[0] && memcmp(four.ids[i], one.ids[0], sizeof(int32_t) * 30) == 0);
        CHECK_STR(four.text[i], one.text[0]);
    }
    engine_get_stats(e, &s1);
    CHECK_EQ_INT(s1.cow_copies - s0.cow_copies, 3); /* no copies beyond the divergence */
    /* A block-aligned prompt (8 tokens) needs no copy at all. */
    rq.num_prompt = 8;
    struct run aligned;
    CHECK_EQ_INT(run_all(e, &rq, 1, &aligned), 0);
    engine_get_stats(e, &s0);
    CHECK_EQ_INT(s0.cow_copies, s1.cow_copies);
    /* Seeded n = 4: the samples differ from one another. */
    rq.params.temperature = 1.0f;
    rq.params.has_seed = 1;
    rq.params.seed = 5;
    CHECK_EQ_INT(run_all(e, &rq, 1, &four), 0);
    CHECK(!(four.nids[0] == four.nids[1] && memcmp(four.ids[0], four.ids[1], sizeof(int32_t) * 30) == 0));
    check_no_blocks_held(e);
    engine_free(e);
}

/* Waste (allocated slots minus stored tokens) under a mixed workload of chat-like lengths
 * (prompts of 100-300 tokens, answers of 100-200), over every step, and at the steps where
 * the pool is at least half full. */
TEST(engine_kv_waste_below_4_percent) {
    make_workload(NREQ, 23, g_prompts, g_rq, 100, 300, 100, 200);
    struct engine *e = make_engine(16, 400, 32, 512, 0);
    if (!e) return;
    struct engine_req *h[NREQ];
    for (int i = 0; i < NREQ; i++) {
        run_reset(&g_batched[i], 1);
        CHECK_EQ_INT(engine_submit(e, &g_rq[i], &h[i]), 0);
    }
    long long alloc = 0, stored = 0;
    double worst = 0;
    int loaded_steps = 0, over_bound = 0;
    for (int step = 0; step < 10000; step++) {
        int left = 0;
        for (int i = 0; i < NREQ; i++) left += !drain(h[i], &g_batched[i], 0);
        if (!left) break;
        engine_step(e);
        struct engine_stats st;
        engine_get_stats(e, &st);
        alloc += st.kv_allocated_slots;
        stored += st.kv_stored_tokens;
        /* Paging's promise: no sequence wastes more than its last block's unused slots. */
        over_bound += st.kv_allocated_slots - st.kv_stored_tokens > (long long)st.num_running * 15;
        if (st.kv_usage >= 0.5) {
            loaded_steps++;
            if (st.waste > worst) worst = st.waste;
        }
    }
    double waste = alloc ? 1.0 - (double)stored / (double)alloc : 1.0;
    printf("    KV waste: %.2f%% of allocated slots over all steps; worst of %d steps with the pool >= 50%% full: "
           "%.2f%%\n", 100 * waste, loaded_steps, 100 * worst);
    CHECK(waste < 0.04);
    CHECK(loaded_steps > 10);
    CHECK_EQ_INT(over_bound, 0);
    for (int i = 0; i < NREQ; i++) engine_release(h[i]);
    check_no_blocks_held(e);
    engine_free(e);
}

/* Stop strings across token boundaries, with and without the stop text; stop tokens; EOS. */
TEST(engine_stop_strings_and_tokens) {
    struct engine_request rq = story_request(60);
    rq.params.temperature = 0;
    struct engine *e = make_engine(16, 0, 8, 2048, 1);
    if (!e) return;
    struct run r;
    const char *stop1[] = {"zzz", "Lily. She"};
    rq.params.stop = stop1;
    rq.params.num_stop = 2;
    CHECK_EQ_INT(run_all(e, &rq, 1, &r), 0);
    CHECK_STR(r.text[0], ", there was a little girl named ");
    CHECK_EQ_INT(r.finish[0], ENGINE_FINISH_STOP);
    CHECK_STR(r.stop_str[0], "Lily. She");
    rq.params.include_stop_str_in_output = 1;
    CHECK_EQ_INT(run_all(e, &rq, 1, &r), 0);
    CHECK_STR(r.text[0], ", there was a little girl named Lily. She");
    rq.params.include_stop_str_in_output = 0;
    /* n samples share the request's one stop set, each with its own state: greedy, each
     * stops where one sample alone does. */
    rq.params.n = 3;
    CHECK_EQ_INT(run_all(e, &rq, 1, &r), 0);
    for (int k = 0; k < 3; k++) {
        CHECK_STR(r.text[k], ", there was a little girl named ");
        CHECK_EQ_INT(r.finish[k], ENGINE_FINISH_STOP);
        CHECK_STR(r.stop_str[k], "Lily. She");
    }
    rq.params.n = 1;
    rq.params.num_stop = 0;
    /* Token 426 is the 11th greedy token: it stops there, its text left out. */
    int32_t stop_ids[] = {426};
    rq.params.stop_token_ids = stop_ids;
    rq.params.num_stop_token_ids = 1;
    CHECK_EQ_INT(run_all(e, &rq, 1, &r), 0);
    CHECK_EQ_INT(r.nids[0], 11);
    CHECK_EQ_INT(r.ids[0][10], 426);
    CHECK_EQ_INT(r.stop_token[0], 426);
    CHECK_EQ_INT(r.finish[0], ENGINE_FINISH_STOP);
    /* min_tokens masks it: the run goes on to max_tokens or EOS. */
    rq.params.min_tokens = 30;
    CHECK_EQ_INT(run_all(e, &rq, 1, &r), 0);
    CHECK(r.nids[0] >= 30);
    rq.params.min_tokens = 0;
    rq.params.num_stop_token_ids = 0;
    /* Without ignore_eos the model ends at an id of generation_config's [2, 1]. */
    rq.params.max_tokens = 400;
    CHECK_EQ_INT(run_all(e, &rq, 1, &r), 0);
    CHECK_EQ_INT(r.finish[0], ENGINE_FINISH_STOP);
    CHECK(r.ids[0][r.nids[0] - 1] == 1 || r.ids[0][r.nids[0] - 1] == 2);
    CHECK_EQ_INT(r.stop_token[0], -1);
    check_no_blocks_held(e);
    engine_free(e);
}

/* Byte-fallback tokens forced by logit_bias build multi-byte characters across tokens: each
 * delta stays valid UTF-8 and the deltas add up to the one-shot decode. A stop string made of
 * a multi-byte character stops the stream when its bytes complete. */
TEST(engine_multibyte_stream) {
    struct engine *e = make_engine(16, 0, 8, 2048, 0);
    if (!e) return;
    const struct tokenizer *tok = engine_tokenizer(e);
    int32_t b_e2 = tokenizer_token_to_id(tok, "<0xE2>"), b_82 = tokenizer_token_to_id(tok, "<0x82>"),
            b_ac = tokenizer_token_to_id(tok, "<0xAC>");
    CHECK(b_e2 >= 0 && b_82 >= 0 && b_ac >= 0);
    struct sampler_logit_bias bias[3] = {{b_e2, 100}, {b_82, 100}, {b_ac, 100}};
    struct engine_request rq = story_request(60);
    rq.params.logit_bias = bias;
    rq.params.num_logit_bias = 3;
    rq.params.has_seed = 1;
    for (int seed = 0; seed < 6; seed++) {
        rq.params.seed = (uint64_t)seed;
        rq.params.num_stop = 0;
        struct run r;
        CHECK_EQ_INT(run_all(e, &rq, 1, &r), 0);
        CHECK_EQ_INT(r.bad_utf8, 0);
        char *full = NULL;
        size_t n = 0;
        CHECK_EQ_INT(tok_decode(tok, r.ids[0], r.nids[0], 1, &full, &n), 0);
        CHECK(full && strcmp(full, r.text[0]) == 0);
        int has_euro = full && strstr(full, "\xE2\x82\xAC") != NULL;
        free(full);
        if (!has_euro) continue;
        const char *stop[] = {"\xE2\x82\xAC"};
        rq.params.stop = stop;
        rq.params.num_stop = 1;
        struct run s;
        CHECK_EQ_INT(run_all(e, &rq, 1, &s), 0);
        CHECK_EQ_INT(s.finish[0], ENGINE_FINISH_STOP);
        CHECK(strstr(s.text[0], "\xE2\x82\xAC") == NULL);
        CHECK(strncmp(r.text[0], s.text[0], s.tlen[0]) == 0);
    }
    engine_free(e);
}

/* Lower priority values run first; equal priorities in arrival order. */
TEST(engine_priority_order) {
    struct engine *e = make_engine(16, 0, 1, 2048, 0);
    if (!e) return;
    int32_t prompt[3] = {1, 403, 407};
    struct engine_request rq[3];
    int prio[3] = {0, 5, -1};
    struct engine_req *h[3];
    for (int i = 0; i < 3; i++) {
        rq[i] = (struct engine_request){.prompt = prompt, .num_prompt = 3, .params = sampler_default_params(),
                                        .priority = prio[i]};
        rq[i].params.max_tokens = 5;
        rq[i].params.ignore_eos = 1;
        CHECK_EQ_INT(engine_submit(e, &rq[i], &h[i]), 0);
    }
    int order[3], got = 0;
    struct run r[3];
    for (int i = 0; i < 3; i++) run_reset(&r[i], 1);
    for (int step = 0; step < 100 && got < 3; step++) {
        engine_step(e);
        for (int i = 0; i < 3; i++)
            if (!r[i].done && drain(h[i], &r[i], 0)) order[got++] = i;
    }
    CHECK_EQ_INT(got, 3);
    CHECK_EQ_INT(order[0], 2);
    CHECK_EQ_INT(order[1], 0);
    CHECK_EQ_INT(order[2], 1);
    for (int i = 0; i < 3; i++) engine_release(h[i]);
    engine_free(e);
}

/* Requests that cannot be served are refused at once with a clear message. */
TEST(engine_admission_errors) {
    struct engine *e = make_engine(16, 34, 4, 2048, 0); /* 544 slots; max_model_len 512 */
    if (!e) return;
    int32_t prompt[512];
    for (int i = 0; i < 512; i++) prompt[i] = 5;
    struct engine_request rq = {.prompt = prompt, .num_prompt = 400, .params = sampler_default_params()};
    struct engine_req *h = NULL;
    rq.params.max_tokens = 200;
    CHECK(engine_submit(e, &rq, &h) < 0);
    CHECK(strstr(folio_last_error(), "maximum context length is 512 tokens") != NULL);
    CHECK(strstr(folio_last_error(), "you requested 200 output tokens and your prompt contains 400 input tokens") !=
          NULL);
    rq.params.max_tokens = 100;
    rq.params.n = 2; /* 32 blocks, and 7 more for the second sample's answer: 39 > 34 */
    rq.params.temperature = 1;
    CHECK(engine_submit(e, &rq, &h) < 0);
    CHECK(strstr(folio_last_error(), "KV cache blocks") != NULL);
    rq.params.n = 1;
    rq.num_prompt = 512;
    rq.params.max_tokens = -1;
    CHECK(engine_submit(e, &rq, &h) < 0);
    rq.num_prompt = 10;
    prompt[3] = 512;
    CHECK(engine_submit(e, &rq, &h) < 0);
    CHECK(strstr(folio_last_error(), "vocabulary") != NULL);
    prompt[3] = 5;
    rq.params.temperature = -1;
    CHECK(engine_submit(e, &rq, &h) < 0);
    CHECK(strstr(folio_last_error(), "temperature") != NULL);
    rq.num_prompt = 0;
    rq.params.temperature = 1;
    CHECK(engine_submit(e, &rq, &h) < 0);
    CHECK(h == NULL);
    engine_free(e);
    /* A pool smaller than one max_model_len sequence is refused with what would fit. */
    struct engine_params p = engine_default_params();
    p.model = stories();
    p.max_model_len = 512;
    p.kv_cache_space = 0.0005; /* 512 KiB: 51 blocks of 16 tokens at 10 KiB each */
    struct engine *small = NULL;
    CHECK(engine_create(&p, &small) < 0);
    /* 20 KiB a block (5 layers x K and V x 32 floats x 16 tokens): 26 blocks, 416 tokens. */
    CHECK(strstr(folio_last_error(), "the largest max_model_len that fits is 416") != NULL);
    CHECK(small == NULL);
    /* Without an explicit --max-model-len the engine starts, at the length that fits. */
    p.max_model_len = 0;
    CHECK_EQ_INT(engine_create(&p, &small), 0);
    if (small) {
        char desc[512];
        engine_describe(small, desc, sizeof desc);
        CHECK_EQ_INT(engine_max_model_len(small), 416);
        CHECK(strstr(desc, "max_model_len lowered from 512 to 416") != NULL);
    }
    engine_free(small);
}

/* A reader that stops reading pauses its request (bounded memory) without losing tokens. */
TEST(engine_slow_reader_pauses) {
    struct engine *e = make_engine(16, 0, 4, 2048, 0);
    if (!e) return;
    struct engine_request rq = story_request(200);
    rq.params.temperature = 0;
    rq.params.ignore_eos = 1;
    struct engine_req *h;
    CHECK_EQ_INT(engine_submit(e, &rq, &h), 0);
    for (int i = 0; i < 150; i++) engine_step(e);
    struct engine_stats st;
    engine_get_stats(e, &st);
    CHECK(st.generation_tokens < 100); /* paused at the stream's bound */
    struct run r;
    run_reset(&r, 1);
    for (int i = 0; i < 1000 && !drain(h, &r, 0); i++) engine_step(e);
    CHECK_EQ_INT(r.nids[0], 200);
    CHECK_EQ_INT(memcmp(r.ids[0], (int32_t[]){432, 383, 286, 261, 376, 298, 315, 421}, 32), 0);
    engine_release(h);
    engine_free(e);
}

TEST(engine_logprobs) {
    struct engine *e = make_engine(16, 0, 4, 2048, 0);
    if (!e) return;
    struct engine_request rq = story_request(5);
    rq.params.temperature = 0;
    rq.params.logprobs = 5;
    struct engine_req *h;
    CHECK_EQ_INT(engine_submit(e, &rq, &h), 0);
    int seen = 0;
    struct engine_output o;
    for (int i = 0; i < 100; i++) {
        engine_step(e);
        while (engine_read(h, &o, 0) == ENGINE_READ_OUTPUT)
            for (int k = 0; k < o.num_tokens; k++, seen++) {
                const struct sampler_logprobs *lp = &o.logprobs[k];
                CHECK_EQ_INT(lp->num_top, 5);
                CHECK_EQ_INT(lp->rank, 1);
                CHECK_EQ_INT(lp->top_ids[0], o.token_ids[k]);
                CHECK(lp->logprob <= 0 && lp->logprob == lp->top_logprobs[0]);
                for (int j = 1; j < 5; j++) CHECK(lp->top_logprobs[j] <= lp->top_logprobs[j - 1]);
            }
    }
    CHECK_EQ_INT(seen, 5);
    engine_release(h);
    engine_free(e);
}

/* The engine thread with four submitting threads, random aborts and releases mid-stream:
 * every unaborted request gets the greedy answer, and in the end no block is held. */
struct worker {
    struct engine *e;
    int id, ok, bad;
};

static void *worker_main(void *arg) {
    struct worker *w = arg;
    uint32_t seed = 99 + (uint32_t)w->id;
    for (int k = 0; k < 8; k++) {
        int i = (int)(rng_next(&seed) % NREQ);
        struct engine_req *h;
        if (engine_submit(w->e, &g_rq[i], &h) != 0) {
            w->bad++;
            continue;
        }
        int mode = (int)(rng_next(&seed) % 4); /* 0: abort early, 1: release mid-way, else finish */
        struct run *r = calloc(1, sizeof *r);
        r->n = 1;
        int reads = 0;
        while (!drain(h, r, 50)) {
            if (mode == 0 && reads == 0) engine_abort(h);
            if (mode == 1 && r->nids[0] >= 3) break;
            reads++;
        }
        if (mode >= 2) {
            if (same_tokens(r, &g_alone[i])) w->ok++;
            else w->bad++;
        } else if (mode == 0 && r->done && r->finish[0] != ENGINE_FINISH_ABORT && !same_tokens(r, &g_alone[i])) {
            w->bad++;
        }
        engine_release(h);
        free(r);
    }
    return NULL;
}

TEST(engine_thread_concurrent_clients) {
    make_workload(NREQ, 7, g_prompts, g_rq, 2, 150, 4, 60);
    struct engine *alone = make_engine(16, 0, 1, 2048, 0), *e = make_engine(16, 40, 16, 128, 1);
    if (!alone || !e) goto out;
    for (int i = 0; i < NREQ; i++) run_all(alone, &g_rq[i], 1, &g_alone[i]);
    CHECK_EQ_INT(engine_start(e), 0);
    pthread_t th[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){e, i, 0, 0};
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    int ok = 0, bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok += w[i].ok;
        bad += w[i].bad;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(ok > 0);
    /* Aborted and released requests leave nothing behind once the engine has stepped. */
    struct engine_stats st;
    for (int i = 0; i < 200; i++) {
        engine_get_stats(e, &st);
        if (st.num_requests == 0 && st.kv_used == 0) break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK_EQ_INT(st.num_requests, 0);
    CHECK_EQ_INT(st.kv_used, 0);
    CHECK_EQ_INT(st.num_running + st.num_waiting, 0);
out:
    engine_free(e);
    engine_free(alone);
}

/* Freeing the engine with requests in flight finishes them as aborted; the handles stay
 * readable until released. */
TEST(engine_free_with_requests_in_flight) {
    struct engine *e = make_engine(16, 0, 4, 2048, 0);
    if (!e) return;
    struct engine_request rq = story_request(100);
    struct engine_req *h1, *h2;
    CHECK_EQ_INT(engine_submit(e, &rq, &h1), 0);
    engine_step(e);
    CHECK_EQ_INT(engine_submit(e, &rq, &h2), 0);
    engine_free(e);
    struct run r;
    run_reset(&r, 1);
    CHECK_EQ_INT(drain(h1, &r, 0), 1);
    CHECK_EQ_INT(r.finish[0], ENGINE_FINISH_ABORT);
    run_reset(&r, 1);
    CHECK_EQ_INT(drain(h2, &r, 0), 1);
    CHECK_EQ_INT(r.finish[0], ENGINE_FINISH_ABORT);
    engine_abort(h1); /* harmless after the engine is gone */
    engine_release(h1);
    engine_release(h2);
}

/* An aborted request's blocks are back in the pool after the next step, mid-prefill and
 * mid-decode alike, and its stream ends with finish reason abort. */
TEST(engine_abort_frees_blocks_next_step) {
    struct engine *e = make_engine(4, 0, 4, 8, 0); /* 8-token chunks: a long prefill spans steps */
    if (!e) return;
    int32_t prompt[60];
    for (int i = 0; i < 60; i++) prompt[i] = 3 + i;
    struct engine_request rq = {.prompt = prompt, .num_prompt = 60, .params = sampler_default_params()};
    rq.params.max_tokens = 100;
    for (int when = 2; when <= 12; when += 10) { /* step 2: prefilling; step 12: decoding */
        struct engine_req *h;
        CHECK_EQ_INT(engine_submit(e, &rq, &h), 0);
        for (int i = 0; i < when; i++) engine_step(e);
        struct engine_stats st;
        engine_get_stats(e, &st);
        CHECK(st.kv_used > 0);
        engine_abort(h);
        engine_step(e);
        engine_get_stats(e, &st);
        CHECK_EQ_INT(st.kv_used, 0);
        CHECK_EQ_INT(st.num_running + st.num_waiting, 0);
        struct run r;
        run_reset(&r, 1);
        CHECK_EQ_INT(drain(h, &r, 0), 1);
        CHECK_EQ_INT(r.finish[0], ENGINE_FINISH_ABORT);
        CHECK_EQ_INT(r.nids[0], when == 2 ? 0 : when - 8 + 1);
        engine_release(h);
    }
    engine_free(e);
}

/* A randomized soak on a tiny pool with prefix caching on: n of 1 to 3, greedy and seeded
 * sampling, stop strings, priorities, staggered arrivals and random aborts, so preemption,
 * copy-on-write and cache hits all mix. After every step the pool's figures add up; in the end
 * nothing is held, and every request that was not aborted matches a big-pool run of it alone. */
static void soak(uint32_t seed) {
    enum { N = 40 };
    const uint32_t seed0 = seed;
    static int32_t prompts[N][120];
    static struct engine_request rq[N];
    static struct run got[N], ref;
    static const char *stops[] = {"Lily", "park."};
    for (int i = 0; i < N; i++) {
        int len = 2 + (int)(rng_next(&seed) % 100);
        prompts[i][0] = 1;
        for (int k = 1; k < len; k++) /* a few shared openings, so prefixes get cached */
            prompts[i][k] = k < 40 && i % 3 == 0 ? 100 + k : 3 + (int32_t)(rng_next(&seed) % 509);
        rq[i] = (struct engine_request){.prompt = prompts[i], .num_prompt = len, .params = sampler_default_params(),
                                        .priority = (int)(rng_next(&seed) % 3)};
        struct sampling_params *p = &rq[i].params;
        p->n = 1 + (int)(rng_next(&seed) % 3);
        p->max_tokens = 5 + (int)(rng_next(&seed) % 50);
        p->temperature = rng_next(&seed) % 2 ? 0.0f : 0.8f;
        p->has_seed = 1;
        p->seed = (uint64_t)i;
        p->ignore_eos = (int)(rng_next(&seed) % 2);
        p->stop = stops;
        p->num_stop = (int)(rng_next(&seed) % 3);
    }
    struct engine_params ep = engine_default_params();
    ep.model = stories();
    ep.threads = 2;
    ep.block_size = 4;
    ep.num_blocks = 120; /* holds any one request, not the dozen that run at once */
    ep.max_model_len = 160;
    ep.max_num_seqs = 12;
    ep.max_num_batched_tokens = 40;
    struct engine *e = NULL, *big = make_engine(16, 0, 4, 2048, 0);
    CHECK_EQ_INT(engine_create(&ep, &e), 0);
    if (!e || !big) goto out;
    struct engine_req *h[N] = {0};
    int aborted[N] = {0}, submitted = 0, bad_sums = 0;
    for (int step = 0; step < 20000; step++) {
        if (submitted < N && rng_next(&seed) % 3 == 0) {
            run_reset(&got[submitted], rq[submitted].params.n);
            CHECK_EQ_INT(engine_submit(e, &rq[submitted], &h[submitted]), 0);
            submitted++;
        }
        int i = (int)(rng_next(&seed) % N);
        if (h[i] && !aborted[i] && rng_next(&seed) % 40 == 0) {
            engine_abort(h[i]);
            aborted[i] = 1;
        }
        engine_step(e);
        struct engine_stats st;
        engine_get_stats(e, &st);
        bad_sums += st.kv_used + st.kv_cached + st.kv_free != st.kv_blocks;
        int left = N - submitted;
        for (int k = 0; k < submitted; k++) left += !got[k].done && !drain(h[k], &got[k], 0);
        if (!left) break;
    }
    CHECK_EQ_INT(bad_sums, 0);
    struct engine_stats st;
    engine_get_stats(e, &st);
    printf("    soak %u: %lld preemptions, %lld block copies, %lld of %lld prompt tokens from the cache\n",
           seed0, st.num_preemptions, st.cow_copies, st.prefix_hits, st.prefix_queries);
    CHECK(st.num_preemptions > 0);
    CHECK(st.cow_copies > 0);
    CHECK(st.prefix_hits > 0);
    CHECK_EQ_INT(st.kv_used, 0);
    CHECK_EQ_INT(st.kv_stored_tokens, 0);
    CHECK_EQ_INT(st.num_preempted_waiting, 0);
    CHECK_EQ_INT(st.num_requests, 0);
    int compared = 0, mismatches = 0;
    for (int i = 0; i < N; i++) {
        CHECK(got[i].done);
        for (int s = 0; s < got[i].n; s++) CHECK(got[i].nids[s] <= rq[i].params.max_tokens);
        if (aborted[i]) continue;
        CHECK_EQ_INT(run_all(big, &rq[i], 1, &ref), 0);
        compared++;
        mismatches += !same_tokens(&got[i], &ref);
    }
    CHECK(compared > N / 2);
    CHECK_EQ_INT(mismatches, 0);
    for (int i = 0; i < N; i++) engine_release(h[i]);
out:
    engine_free(e);
    engine_free(big);
}

TEST(engine_randomized_soak) {
    const uint32_t seeds[] = {2024, 7, 99, 12345};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) soak(seeds[i]);
}

/* The newer families (QK-norm, sandwich norms and soft-caps, per-layer windows, experts,
 * partial and LongRoPE) through the whole engine: batched with chunked prefills, preempted
 * and recomputed, and prefix-cached, each run must give exactly what it gives alone. The
 * checkpoints are random-weight ones in each family's real format (tests/fixtures), and their
 * windows (8 tokens) and LongRoPE switch (at 32) fall inside these prompts. */
/* Points make_engine at a generated F32 checkpoint of preset (vocabulary 320, 256 positions)
 * in dir; 0, or -1 (a test failure recorded) when the generator fails. */
static int use_preset(const char *preset, int seed, char *dir, size_t cap) {
    char cmd[1200];
    snprintf(dir, cap, "/tmp/folio-unit-%s-%d", preset, (int)getpid());
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tests/fixtures/gen_checkpoint.py --out %s --preset %s --dtype F32 --seed %d >/dev/null",
             dir, preset, seed);
    if (system(cmd) != 0) {
        test_fail(__FILE__, __LINE__, "%s: the checkpoint generator failed", preset);
        return -1;
    }
    g_model_dir = dir;
    g_vocab = 320;
    g_max_len = 128;
    return 0;
}

/* Back to stories260K, and the generated checkpoint removed. */
static void drop_preset(const char *dir) {
    char cmd[600];
    g_model_dir = NULL;
    g_vocab = 512;
    g_max_len = 512;
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) test_fail(__FILE__, __LINE__, "cannot remove %s", dir);
}

static void family_invariance(const char *preset) {
    char dir[512];
    if (use_preset(preset, 9, dir, sizeof dir)) return;
    struct engine *batched = make_engine(4, 0, 12, 24, 1), *alone = make_engine(16, 0, 1, 2048, 0), *small = NULL;
    struct engine_params p = engine_default_params();
    p.model = dir;
    p.threads = 1;
    p.block_size = 4;
    p.num_blocks = 26;
    p.max_model_len = 100;
    p.max_num_seqs = 12;
    p.max_num_batched_tokens = 32;
    p.enable_prefix_caching = 1;
    p.kv_cache_dtype = g_kv_dtype;
    if (engine_create(&p, &small) != 0) test_fail(__FILE__, __LINE__, "%s: %s", preset, folio_last_error());
    if (!batched || !alone || !small) goto out;
    make_workload(10, 21, g_prompts, g_rq, 2, 60, 4, 36);
    /* Two requests share a 40-token prefix with a third, so the cache has hits to serve. */
    uint32_t seed = 5;
    for (int i = 0; i < 3; i++) {
        for (int k = 1; k < 48; k++) g_prompts[i][k] = 3 + (int32_t)(rng_next(&seed) % (uint32_t)(g_vocab - 3));
        if (i) memcpy(g_prompts[i], g_prompts[0], sizeof(int32_t) * 40);
        g_rq[i].num_prompt = 48;
    }
    for (int i = 0; i < 10; i++) CHECK_EQ_INT(run_all(alone, &g_rq[i], 1, &g_alone[i]), 0);
    CHECK_EQ_INT(run_all(batched, g_rq, 10, g_batched), 0);
    int mismatches = 0;
    for (int i = 0; i < 10; i++) mismatches += !same_tokens(&g_batched[i], &g_alone[i]);
    if (mismatches) test_fail(__FILE__, __LINE__, "%s: %d of 10 batched requests differ from alone", preset, mismatches);
    struct engine_stats st;
    engine_get_stats(batched, &st);
    CHECK(st.prefix_hits >= 2 * 40 - 2 * 4); /* whole blocks of the shared prefix */
    /* 26 blocks of 4 tokens for 10 requests of up to ~96 tokens: preemptions. */
    CHECK_EQ_INT(run_all(small, g_rq, 10, g_batched), 0);
    engine_get_stats(small, &st);
    CHECK(st.num_preemptions > 0);
    mismatches = 0;
    for (int i = 0; i < 10; i++) mismatches += !same_tokens(&g_batched[i], &g_alone[i]);
    if (mismatches) test_fail(__FILE__, __LINE__, "%s: %d of 10 preempted requests differ from alone", preset, mismatches);
    printf("    %s: %lld preemptions, %lld prefix-cache hit tokens\n", preset, st.num_preemptions, st.prefix_hits);
    check_no_blocks_held(batched);
    check_no_blocks_held(small);
out:
    engine_free(batched);
    engine_free(alone);
    engine_free(small);
    drop_preset(dir);
}

TEST(engine_families_qwen3_moe) { family_invariance("qwen3-moe"); }
TEST(engine_families_mixtral) { family_invariance("mixtral"); }
TEST(engine_families_gemma2) { family_invariance("gemma2"); }
TEST(engine_families_gemma3) { family_invariance("gemma3"); }
TEST(engine_families_phi3_longrope) { family_invariance("phi3-longrope"); }

/* ---- KV cache dtypes ---- */

/* The tests whose outputs depend on what the KV cache holds (batching, preemption and
 * recompute, prefix-cache hits, copy-on-write, Gemma 3's split pools) with a bf16 or fp8 cache:
 * each compares engines that both use it, so they must still agree exactly. make_engine checks
 * that the dtype took. */
static void with_kv(const char *kv, void (*fn)(void)) {
    g_kv_dtype = kv;
    fn();
    g_kv_dtype = NULL;
}
static void families_gemma3(void) { family_invariance("gemma3"); }
TEST(engine_kv_bf16_batch_invariance_greedy) { with_kv("bfloat16", test_engine_batch_invariance_greedy); }
TEST(engine_kv_bf16_preemption_recompute) { with_kv("bfloat16", test_engine_preemption_recompute); }
TEST(engine_kv_bf16_prefix_caching) { with_kv("bfloat16", test_engine_prefix_caching); }
TEST(engine_kv_bf16_copy_on_write_n4) { with_kv("bfloat16", test_engine_copy_on_write_n4); }
TEST(engine_kv_bf16_families_gemma3) { with_kv("bfloat16", families_gemma3); }
TEST(engine_kv_fp8_preemption_recompute) { with_kv("fp8", test_engine_preemption_recompute); }
TEST(engine_kv_fp8_prefix_caching) { with_kv("fp8", test_engine_prefix_caching); }
TEST(engine_kv_fp8_copy_on_write_n4) { with_kv("fp8", test_engine_copy_on_write_n4); }

/* An engine on model dir with --kv-cache-dtype kv (and --dtype dtype), a CPU KV space of
 * 0.001 GiB; NULL when it fails. */
static struct engine *kv_engine(const char *dir, const char *kv, const char *dtype) {
    struct engine_params p = engine_default_params();
    p.model = dir;
    p.threads = 1;
    p.max_model_len = 128;
    p.max_num_seqs = 64;
    p.kv_cache_space = 0.001;
    p.kv_cache_dtype = kv;
    if (dtype) p.dtype = dtype;
    struct engine *e = NULL;
    return engine_create(&p, &e) ? NULL : e;
}

/* Equal --kv-cache-space holds twice the blocks in bf16 (four times in fp8) and the same bytes;
 * /stats' memory and the load line name the dtype; auto follows the weights. */
TEST(engine_kv_dtype_blocks_and_stats) {
    struct engine *e32 = kv_engine(stories(), NULL, NULL), *e16 = kv_engine(stories(), "bf16", NULL);
    struct engine *e8 = kv_engine(stories(), "fp8", NULL);
    CHECK(e32 && e16 && e8);
    if (e32 && e16 && e8) {
        struct engine_memory m32, m16, m8;
        engine_memory(e32, &m32);
        engine_memory(e16, &m16);
        engine_memory(e8, &m8);
        const int n32 = engine_num_blocks(e32), n16 = engine_num_blocks(e16), n8 = engine_num_blocks(e8);
        printf("    0.001 GiB of KV: %d blocks in float32, %d in bfloat16, %d in fp8\n", n32, n16, n8);
        CHECK_EQ_INT(n32, 52); /* 1073741 / 20480 bytes a block (5 layers, K+V, 4 x 8 dims, 16 tokens) */
        CHECK_EQ_INT(n16, 2 * n32);
        CHECK(n8 >= 4 * n32 && n8 <= 4 * n32 + 3);
        CHECK_STR(m32.kv_dtype, "float32");
        CHECK_STR(m16.kv_dtype, "bfloat16");
        CHECK_STR(m8.kv_dtype, "float8_e4m3");
        CHECK_EQ_INT(m32.kv_cache, (long long)n32 * 20480);
        CHECK_EQ_INT(m16.kv_cache, (long long)n16 * 10240);
        CHECK_EQ_INT(m8.kv_cache, (long long)n8 * 5120);
        char line[512];
        engine_describe(e16, line, sizeof line);
        CHECK(strstr(line, "KV blocks of 16 tokens in bfloat16") != NULL);
        /* The engines still answer: a bf16 cache gives the fp32 one's greedy story here. */
        struct engine_request rq = story_request(20);
        rq.params.temperature = 0;
        struct run a, b;
        CHECK_EQ_INT(run_all(e32, &rq, 1, &a), 0);
        CHECK_EQ_INT(run_all(e16, &rq, 1, &b), 0);
        CHECK(same_tokens(&a, &b));
    }
    engine_free(e32);
    engine_free(e16);
    engine_free(e8);
    /* A dtype that is not one: the error names the flag and the choices. */
    struct engine *bad = kv_engine(stories(), "float16", NULL);
    CHECK(bad == NULL);
    engine_free(bad);
    CHECK(strstr(folio_last_error(), "--kv-cache-dtype must be auto, bfloat16, float32 or fp8") != NULL);
    /* A cache too small for --max-model-len: the refusal points at the narrower dtype too. */
    struct engine_params tp = engine_default_params();
    tp.model = stories();
    tp.threads = 1;
    tp.max_model_len = 512;   /* 32 blocks */
    tp.kv_cache_space = 0.0005; /* 26 fp32 blocks, 52 bf16 ones */
    CHECK(engine_create(&tp, &bad) != 0);
    CHECK(strstr(folio_last_error(), "or use --kv-cache-dtype bfloat16 (twice the tokens)") != NULL);
    tp.kv_cache_dtype = "bfloat16";
    CHECK_EQ_INT(engine_create(&tp, &bad), 0);
    if (bad) CHECK_EQ_INT(engine_num_blocks(bad), 52); /* the same bytes in bf16 hold the sequence */
    engine_free(bad);
    bad = NULL;
    /* auto: a bf16 or f16 checkpoint gets bf16 K/V, and --dtype float32 makes it fp32. */
    const char *dts[] = {"BF16", "F16"};
    for (int i = 0; i < 2; i++) {
        char dir[256], cmd[800];
        snprintf(dir, sizeof dir, "%s/kv-auto-%s", test_tmp_dir(), dts[i]);
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 tests/fixtures/gen_checkpoint.py --out %s --preset llama-gqa --dtype %s --seed 1 "
                 ">/dev/null",
                 dir, dts[i]);
        CHECK_EQ_INT(system(cmd), 0);
        struct engine *a = kv_engine(dir, NULL, NULL), *f = kv_engine(dir, "auto", "float32");
        CHECK(a && f);
        struct engine_memory ma, mf;
        if (a) {
            engine_memory(a, &ma);
            CHECK_STR(ma.kv_dtype, "bfloat16");
        }
        if (f) {
            engine_memory(f, &mf);
            CHECK_STR(mf.kv_dtype, "float32");
        }
        if (a && f) { /* half the bytes a block: twice the blocks, give or take the space's remainder */
            const int na = engine_num_blocks(a), nf = engine_num_blocks(f);
            CHECK(na >= 2 * nf && na <= 2 * nf + 1);
        }
        engine_free(a);
        engine_free(f);
    }
}

/* Gemma 3's sliding layers (window 8) keep their K/V in a pool of their own, where a sequence
 * holds only the blocks its window reaches: after every step, at most 3 blocks of 4 tokens
 * (two the window spans and the one being filled), while the full layers' table grows with
 * the sequence. The output equals a run on the unsplit cache (the logits command's path is
 * checked against PyTorch by check_models.py). */
TEST(engine_sliding_layers_keep_only_their_window) {
    char dir[512];
    if (use_preset("gemma3", 4, dir, sizeof dir)) return;
    struct engine *e = make_engine(4, 0, 4, 16, 1);
    if (!e) goto out;
    struct engine_stats st;
    make_workload(1, 8, g_prompts, g_rq, 60, 60, 40, 40);
    struct engine_req *h = NULL;
    CHECK_EQ_INT(engine_submit(e, &g_rq[0], &h), 0);
    struct run r;
    run_reset(&r, 1);
    int steps = 0, max_local = 0, max_global = 0;
    while (!drain(h, &r, 0) && steps++ < 1000) {
        CHECK(engine_step(e) >= 0);
        engine_get_stats(e, &st);
        if (st.kv_local_used > max_local) max_local = st.kv_local_used;
        if (st.kv_used > max_global) max_global = st.kv_used;
    }
    engine_release(h);
    printf("    100 tokens in blocks of 4: the full layers held up to %d blocks, the sliding layers %d\n", max_global,
           max_local);
    CHECK(st.kv_local_blocks > 0 && st.kv_local_blocks < st.kv_blocks);
    CHECK(max_local <= 3);
    CHECK(max_global >= 25);
    CHECK_EQ_INT(r.nids[0], 40);
    check_no_blocks_held(e);
    engine_get_stats(e, &st);
    CHECK_EQ_INT(st.kv_local_used, 0);
out:
    engine_free(e);
    drop_preset(dir);
}

/* ---- structured output through the engine (stories260K's SentencePiece vocabulary) ---- */

static struct structured *compile_spec(struct engine *e, enum structured_kind kind, const char *text, size_t len,
                                       int num_choices) {
    struct structured_spec spec = {.kind = kind, .text = text, .len = len, .num_choices = num_choices};
    struct structured *g = NULL;
    if (engine_structured(e, &spec, &g) != 0) test_fail(__FILE__, __LINE__, "engine_structured: %s", folio_last_error());
    return g;
}

/* A choice: every sample's text is one of the strings, finished with "stop" by the grammar
 * alone (ignore_eos), with n = 4 samples forked from one prompt, whatever the temperature. */
TEST(engine_structured_choice_n4) {
    struct engine *e = make_engine(16, 0, 8, 2048, 1);
    if (!e) return;
    static const char choices[] = "Lily\0Tom\0a big dog\0";
    struct structured *g = compile_spec(e, STRUCTURED_CHOICE, choices, sizeof choices - 1, 3);
    if (!g) goto out;
    struct engine_request rq = story_request(40);
    rq.structured = g;
    rq.params.n = 4;
    rq.params.ignore_eos = 1;
    rq.params.seed = 5;
    rq.params.has_seed = 1;
    struct run r;
    for (int t = 0; t < 2; t++) {
        rq.params.temperature = t ? 1.5f : 0;
        CHECK_EQ_INT(run_all(e, &rq, 1, &r), 0);
        for (int k = 0; k < 4; k++) {
            CHECK(strcmp(r.text[k], "Lily") == 0 || strcmp(r.text[k], "Tom") == 0 || strcmp(r.text[k], "a big dog") == 0);
            CHECK_EQ_INT(r.finish[k], ENGINE_FINISH_STOP);
        }
    }
    structured_release(g);
    check_no_blocks_held(e);
out:
    engine_free(e);
}

/* A regex and a JSON Schema, sampled hot so the model strays: what finishes with "stop" matches,
 * what stops on max_tokens is a prefix the grammar allows; a stop string still cuts. */
TEST(engine_structured_regex_and_json) {
    struct engine *e = make_engine(16, 0, 8, 2048, 1);
    if (!e) return;
    static const char re[] = "[a-z]{2,6}( [a-z]{2,6}){1,3}\\.";
    static const char schema[] = "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":0,"
                                 "\"maximum\":99},\"ok\":{\"type\":\"boolean\"}},\"required\":[\"n\",\"ok\"],"
                                 "\"additionalProperties\":false}";
    struct structured *gr = compile_spec(e, STRUCTURED_REGEX, re, sizeof re - 1, 0);
    struct structured *gj = compile_spec(e, STRUCTURED_JSON, schema, sizeof schema - 1, 0);
    if (!gr || !gj) goto out;
    struct engine_request rq = story_request(120);
    rq.params.n = 4;
    rq.params.temperature = 1.0f;
    rq.params.seed = 9;
    rq.params.has_seed = 1;
    struct run r;
    rq.structured = gr;
    CHECK_EQ_INT(run_all(e, &rq, 1, &r), 0);
    for (int k = 0; k < 4; k++) {
        CHECK_EQ_INT(r.finish[k], ENGINE_FINISH_STOP);
        const char *s = r.text[k];
        size_t n = strlen(s);
        CHECK(n >= 6 && s[n - 1] == '.');
        for (size_t i = 0; i + 1 < n; i++) CHECK((s[i] >= 'a' && s[i] <= 'z') || s[i] == ' ');
    }
    rq.structured = gj;
    CHECK_EQ_INT(run_all(e, &rq, 1, &r), 0);
    for (int k = 0; k < 4; k++) {
        if (r.finish[k] != ENGINE_FINISH_STOP) continue;
        cJSON *j = cJSON_Parse(r.text[k]);
        CHECK(j != NULL);
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "n");
        CHECK(cJSON_IsNumber(n) && n->valuedouble >= 0 && n->valuedouble <= 99 && n->valuedouble == (int)n->valuedouble);
        CHECK(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(j, "ok")));
        CHECK_EQ_INT(cJSON_GetArraySize(j), 2);
        cJSON_Delete(j);
    }
    /* A stop string cuts a constrained sample too. */
    const char *stops[] = {"\"ok\""};
    rq.params.stop = stops;
    rq.params.num_stop = 1;
    rq.params.n = 1;
    CHECK_EQ_INT(run_all(e, &rq, 1, &r), 0);
    CHECK(strstr(r.text[0], "\"ok\"") == NULL);
    structured_release(gr);
    structured_release(gj);
    check_no_blocks_held(e);
out:
    engine_free(e);
}

/* Constrained sequences preempted for want of blocks (recomputed later) still give exactly what
 * they give alone, greedy: the matcher follows the sample's tokens, which preemption keeps. */
TEST(engine_structured_preemption) {
    static const char re[] = "([a-z]+ ){60,90}[a-z]+\\.";
    struct engine *big = make_engine(16, 0, 8, 2048, 0), *small = make_engine(4, 130, 8, 64, 0);
    if (!big || !small) goto out;
    struct structured *g1 = compile_spec(big, STRUCTURED_REGEX, re, sizeof re - 1, 0);
    struct structured *g2 = compile_spec(small, STRUCTURED_REGEX, re, sizeof re - 1, 0);
    if (!g1 || !g2) goto out;
    struct engine_request rq[8];
    static struct run alone[8], together[8];
    for (int i = 0; i < 8; i++) {
        rq[i] = story_request(100);
        rq[i].params.temperature = 0;
        rq[i].structured = g1;
        CHECK_EQ_INT(run_all(big, &rq[i], 1, &alone[i]), 0);
        rq[i].structured = g2;
    }
    CHECK_EQ_INT(run_all(small, rq, 8, together), 0);
    struct engine_stats st;
    engine_get_stats(small, &st);
    CHECK(st.num_preemptions > 0);
    for (int i = 0; i < 8; i++) CHECK(same_tokens(&alone[i], &together[i]));
    structured_release(g1);
    structured_release(g2);
    check_no_blocks_held(small);
out:
    engine_free(big);
    engine_free(small);
}

/* A spec the front ends refuse is an error that names what is wrong, and nothing is cached. */
TEST(engine_structured_errors) {
    struct engine *e = make_engine(16, 0, 8, 2048, 1);
    if (!e) return;
    static const struct {
        enum structured_kind kind;
        const char *text, *needle;
    } bad[] = {
        {STRUCTURED_JSON, "{\"type\":\"object\",\"properties\":{\"a\":{\"not\":{\"minLength\":3}}}}", "not"},
        {STRUCTURED_JSON, "{\"type\":", ""},
        {STRUCTURED_REGEX, "(a", ""},
        {STRUCTURED_GRAMMAR, "root ::= missing", "missing"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct structured_spec spec = {.kind = bad[i].kind, .text = bad[i].text, .len = strlen(bad[i].text)};
        struct structured *g = NULL;
        CHECK(engine_structured(e, &spec, &g) != 0);
        CHECK(g == NULL);
        CHECK(strstr(folio_last_error(), bad[i].needle) != NULL);
    }
    engine_free(e);
}

/* The GPU's way (FOLIO_MASK_OVERLAP=1 on the CPU): a worker fills the constrained rows' masks
 * while the forward pass runs. Same tokens as masks filled at sampling time, for a batch that
 * mixes constrained and free rows. */
TEST(engine_structured_mask_overlap) {
    struct engine *plain = make_engine(16, 0, 8, 2048, 0);
    setenv("FOLIO_MASK_OVERLAP", "1", 1);
    struct engine *over = make_engine(16, 0, 8, 2048, 0);
    unsetenv("FOLIO_MASK_OVERLAP");
    if (!plain || !over) goto out;
    static const char re[] = "[a-z]+( [a-z]+){3,9}\\.";
    struct structured *g1 = compile_spec(plain, STRUCTURED_REGEX, re, sizeof re - 1, 0);
    struct structured *g2 = compile_spec(over, STRUCTURED_REGEX, re, sizeof re - 1, 0);
    if (!g1 || !g2) goto out;
    struct engine_request rq[4];
    struct run a[4], b[4];
    for (int i = 0; i < 4; i++) {
        rq[i] = story_request(60);
        rq[i].params.temperature = i == 3 ? 0.9f : 0;
        rq[i].params.seed = (uint64_t)i;
        rq[i].params.has_seed = 1;
        rq[i].params.n = i == 3 ? 3 : 1;
        rq[i].structured = i == 1 ? NULL : g1; /* one free row among them */
    }
    CHECK_EQ_INT(run_all(plain, rq, 4, a), 0);
    for (int i = 0; i < 4; i++) rq[i].structured = i == 1 ? NULL : g2;
    CHECK_EQ_INT(run_all(over, rq, 4, b), 0);
    for (int i = 0; i < 4; i++) CHECK(same_tokens(&a[i], &b[i]));
    structured_release(g1);
    structured_release(g2);
    check_no_blocks_held(over);
out:
    engine_free(plain);
    engine_free(over);
}
