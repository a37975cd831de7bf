/* Sampler unit tests: each processor on handmade logits with hand-computed answers (keep sets
 * at their boundaries, penalties, bias, min_tokens, logprobs), the selections against a
 * sort-based oracle on large rows, determinism of the counter-based draw, the empirical
 * distribution of the draws against sampler_probs, and the parameter checks. */
#include "core/sampler.h"
#include "test.h"
#include "base/util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAXV 64

static struct sampler_seq no_history(void) {
    return (struct sampler_seq){.seed = 1};
}

/* sampler_probs on a copy of logits[v]. */
static void probs_of(const float *logits, int v, const struct sampling_params *p,
                     const struct sampler_seq *seq, float *probs) {
    struct sampler *s = sampler_create(v);
    float x[MAXV];
    memcpy(x, logits, (size_t)v * sizeof *x);
    sampler_probs(s, x, p, seq, probs);
    sampler_free(s);
}

/* Which tokens have non-zero probability, as a bitmask. */
static uint64_t keep_set(const float *logits, int v, const struct sampling_params *p) {
    float probs[MAXV];
    struct sampler_seq seq = no_history();
    probs_of(logits, v, p, &seq, probs);
    uint64_t m = 0;
    double sum = 0;
    for (int i = 0; i < v; i++) {
        if (probs[i] > 0) m |= 1ull << i;
        sum += probs[i];
    }
    CHECK_NEAR(sum, 1.0, 1e-6);
    return m;
}

static int32_t sample_once(struct sampler *s, const float *logits, int v,
                           const struct sampling_params *p, const struct sampler_seq *seq,
                           struct sampler_logprobs *lp) {
    float *x = malloc((size_t)v * sizeof *x);
    memcpy(x, logits, (size_t)v * sizeof *x);
    int32_t t = sampler_sample(s, x, p, seq, lp);
    free(x);
    return t;
}

TEST(sampler_defaults) {
    struct sampling_params p = sampler_default_params();
    CHECK_EQ_INT(p.n, 1);
    CHECK(p.temperature == 1.0f && p.top_p == 1.0f && p.min_p == 0.0f);
    CHECK_EQ_INT(p.top_k, 0);
    CHECK(p.repetition_penalty == 1.0f && p.presence_penalty == 0 && p.frequency_penalty == 0);
    CHECK(p.logit_bias == NULL && p.num_logit_bias == 0 && !p.has_seed);
    CHECK_EQ_INT(p.max_tokens, -1);
    CHECK_EQ_INT(p.min_tokens, 0);
    CHECK_EQ_INT(p.ignore_eos, 0);
    CHECK(p.stop == NULL && p.num_stop == 0 && p.num_stop_token_ids == 0);
    CHECK_EQ_INT(p.logprobs, -1);
    CHECK_EQ_INT(p.skip_special_tokens, 1);
    CHECK_EQ_INT(p.include_stop_str_in_output, 0);
    CHECK_EQ_INT(sampler_check_params(&p, 10), 0);
}

TEST(sampler_greedy_argmax_ties) {
    const float x[] = {1, 3, -2, 3, 2};
    struct sampler *s = sampler_create(5);
    struct sampling_params p = sampler_default_params();
    struct sampler_seq seq = no_history();
    p.temperature = 0;
    CHECK_EQ_INT(sample_once(s, x, 5, &p, &seq, NULL), 1);
    p.temperature = 9e-6f; /* below vLLM's epsilon: still greedy, no draw */
    for (int i = 0; i < 20; i++) {
        seq.seed = (uint64_t)i;
        CHECK_EQ_INT(sample_once(s, x, 5, &p, &seq, NULL), 1);
    }
    float probs[5];
    probs_of(x, 5, &p, &seq, probs);
    for (int i = 0; i < 5; i++) CHECK(probs[i] == (i == 1 ? 1.0f : 0.0f));
    /* top_k/top_p/min_p do not apply to greedy */
    p.top_k = 1;
    p.top_p = 0.01f;
    p.min_p = 1;
    CHECK_EQ_INT(sample_once(s, x, 5, &p, &seq, NULL), 1);
    sampler_free(s);
}

TEST(sampler_temperature) {
    const float x[] = {0, 1, 2};
    struct sampling_params p = sampler_default_params();
    struct sampler_seq seq = no_history();
    const float temps[] = {1.0f, 0.5f, 2.0f, 0.05f};
    for (int t = 0; t < 4; t++) {
        p.temperature = temps[t];
        float probs[3];
        probs_of(x, 3, &p, &seq, probs);
        double z = 0;
        for (int i = 0; i < 3; i++) z += exp(x[i] / temps[t]);
        for (int i = 0; i < 3; i++) CHECK_NEAR(probs[i], exp(x[i] / temps[t]) / z, 1e-6);
    }
}

TEST(sampler_top_k) {
    const float x[] = {1, 5, 3, 5, 2};
    struct sampling_params p = sampler_default_params();
    p.top_k = 1;
    CHECK_EQ_INT(keep_set(x, 5, &p), 0x2); /* tie 1/3: the lower id */
    p.top_k = 2;
    CHECK_EQ_INT(keep_set(x, 5, &p), 0xa);
    p.top_k = 3;
    CHECK_EQ_INT(keep_set(x, 5, &p), 0xe);
    p.top_k = 5;
    CHECK_EQ_INT(keep_set(x, 5, &p), 0x1f);
    p.top_k = 1000;
    CHECK_EQ_INT(keep_set(x, 5, &p), 0x1f);
    p.top_k = -1;
    CHECK_EQ_INT(keep_set(x, 5, &p), 0x1f);
    /* all tied: exactly k kept, lowest ids, renormalized */
    const float eq[] = {2, 2, 2, 2, 2, 2};
    p.top_k = 4;
    CHECK_EQ_INT(keep_set(eq, 6, &p), 0xf);
    float probs[6];
    struct sampler_seq seq = no_history();
    probs_of(eq, 6, &p, &seq, probs);
    CHECK_NEAR(probs[0], 0.25, 1e-7);
    CHECK(probs[5] == 0);
    /* fewer finite logits than k: all of them */
    const int32_t eos[] = {1, 3};
    seq.eos_ids = eos;
    seq.num_eos = 2;
    p.min_tokens = 1;
    probs_of(x, 5, &p, &seq, probs);
    CHECK(probs[1] == 0 && probs[3] == 0);
    CHECK(probs[0] > 0 && probs[2] > 0 && probs[4] > 0);
}

TEST(sampler_top_p) {
    /* four equal tokens: exact masses 0.25 each, so the boundary itself is testable: a
     * prefix whose mass reaches p exactly ends there (vLLM drops cumsum <= 1 - p) */
    const float eq[] = {0, 0, 0, 0};
    struct sampling_params p = sampler_default_params();
    p.top_p = 0.25f;
    CHECK_EQ_INT(keep_set(eq, 4, &p), 0x1);
    p.top_p = 0.5f;
    CHECK_EQ_INT(keep_set(eq, 4, &p), 0x3);
    p.top_p = 0.75f;
    CHECK_EQ_INT(keep_set(eq, 4, &p), 0x7);
    p.top_p = 0.7500001f;
    CHECK_EQ_INT(keep_set(eq, 4, &p), 0xf);
    p.top_p = 1e-6f; /* always at least one */
    CHECK_EQ_INT(keep_set(eq, 4, &p), 0x1);

    /* probs 0.05 0.5 0.15 0.3 (ids shuffled): nucleus 0.5 | 0.8 | 0.95 | 1 */
    const float x[] = {logf(0.05f), logf(0.5f), logf(0.15f), logf(0.3f)};
    p.top_p = 0.49f;
    CHECK_EQ_INT(keep_set(x, 4, &p), 0x2);
    p.top_p = 0.51f;
    CHECK_EQ_INT(keep_set(x, 4, &p), 0xa);
    p.top_p = 0.79f;
    CHECK_EQ_INT(keep_set(x, 4, &p), 0xa);
    p.top_p = 0.81f;
    CHECK_EQ_INT(keep_set(x, 4, &p), 0xe);
    p.top_p = 0.96f;
    CHECK_EQ_INT(keep_set(x, 4, &p), 0xf);
    float probs[4];
    struct sampler_seq seq = no_history();
    p.top_p = 0.81f;
    probs_of(x, 4, &p, &seq, probs);
    CHECK_NEAR(probs[1], 0.5 / 0.95, 1e-6);
    CHECK_NEAR(probs[2], 0.15 / 0.95, 1e-6);

    /* top_p measures the mass after top_k: 0.4 0.3 0.2 0.1 with p = 0.75 keeps three
     * alone, but top_k = 3 renormalizes to 4/9 3/9 2/9 and 7/9 >= 0.75 ends at two */
    const float y[] = {logf(0.4f), logf(0.3f), logf(0.2f), logf(0.1f)};
    p.top_p = 0.75f;
    CHECK_EQ_INT(keep_set(y, 4, &p), 0x7);
    p.top_k = 3;
    CHECK_EQ_INT(keep_set(y, 4, &p), 0x3);
    /* and after temperature: at T = 0.5 the masses are 16 9 4 1 (/30): 25/30 >= 0.75 */
    p.top_k = 0;
    p.temperature = 0.5f;
    CHECK_EQ_INT(keep_set(y, 4, &p), 0x3);
}

TEST(sampler_min_p) {
    /* exp(0 -1 -2 -3) = 1 .368 .135 .0498 relative to the max */
    const float x[] = {-2, 0, -3, -1};
    struct sampling_params p = sampler_default_params();
    p.min_p = 0.1f;
    CHECK_EQ_INT(keep_set(x, 4, &p), 0xb);
    p.min_p = 0.2f;
    CHECK_EQ_INT(keep_set(x, 4, &p), 0xa);
    p.min_p = 1.0f; /* only the max */
    CHECK_EQ_INT(keep_set(x, 4, &p), 0x2);
    /* min_p sees the tempered distribution: at T = 2, 1 .607 .368 .223 */
    p.temperature = 2;
    p.min_p = 0.2f;
    CHECK_EQ_INT(keep_set(x, 4, &p), 0xf);
    p.min_p = 0.3f;
    CHECK_EQ_INT(keep_set(x, 4, &p), 0xb);
    /* then top_k among the survivors */
    p.top_k = 2;
    CHECK_EQ_INT(keep_set(x, 4, &p), 0xa);
}

TEST(sampler_penalties) {
    const float x[] = {2, -1, 0.5f, 3, -2};
    const int32_t prompt[] = {0, 1, 0};
    const int32_t output[] = {2, 3, 2};
    struct sampler *s = sampler_create(5);
    struct sampling_params p = sampler_default_params();
    struct sampler_seq seq = {.prompt = prompt, .num_prompt = 3, .output = output,
                              .num_output = 3, .seed = 1};
    p.temperature = 0; /* greedy leaves the processed logits in place */
    p.repetition_penalty = 2;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    for (int round = 0; round < 2; round++) { /* the second call sees a clean histogram */
        float y[5];
        memcpy(y, x, sizeof y);
        int32_t t = sampler_sample(s, y, &p, &seq, NULL);
        CHECK_NEAR(y[0], 1.0, 1e-6);                   /* prompt, positive: / rp */
        CHECK_NEAR(y[1], -2.0, 1e-6);                  /* prompt, negative: * rp */
        CHECK_NEAR(y[2], 0.25 - 2 * 0.5 - 0.25, 1e-6); /* output twice */
        CHECK_NEAR(y[3], 1.5 - 0.5 - 0.25, 1e-6);      /* output once */
        CHECK_NEAR(y[4], -2.0, 1e-6);                  /* unseen */
        CHECK_EQ_INT(t, 0);
    }
    /* negative penalties reward repeats; repetition alone ignores the counts */
    p.repetition_penalty = 1;
    p.frequency_penalty = -1;
    p.presence_penalty = -2;
    float y[5];
    memcpy(y, x, sizeof y);
    CHECK_EQ_INT(sampler_sample(s, y, &p, &seq, NULL), 3); /* 3 + 1 + 2 */
    CHECK_NEAR(y[2], 4.5, 1e-6);
    CHECK_NEAR(y[3], 6.0, 1e-6);
    CHECK_NEAR(y[0], 2.0, 1e-6); /* prompt only: presence/frequency count the output */
    p = sampler_default_params();
    p.temperature = 0;
    p.repetition_penalty = 0.5f;
    memcpy(y, x, sizeof y);
    sampler_sample(s, y, &p, &seq, NULL);
    CHECK_NEAR(y[2], 1.0, 1e-6);
    CHECK_NEAR(y[1], -0.5, 1e-6);
    CHECK_NEAR(y[4], -2.0, 1e-6);
    /* out-of-range history ids are ignored, not read out of bounds */
    const int32_t bad[] = {-1, 5, 1000};
    seq.prompt = bad;
    seq.output = bad;
    memcpy(y, x, sizeof y);
    sampler_sample(s, y, &p, &seq, NULL);
    for (int i = 0; i < 5; i++) CHECK(y[i] == x[i]);
    sampler_free(s);
}

TEST(sampler_logit_bias) {
    const float x[] = {5, 1, 0, 4};
    struct sampler *s = sampler_create(4);
    struct sampling_params p = sampler_default_params();
    struct sampler_seq seq = no_history();
    struct sampler_logit_bias b[] = {{2, 100}, {0, -100}};
    p.logit_bias = b;
    p.num_logit_bias = 1;
    for (int i = 0; i < 50; i++) {
        seq.num_output = i;
        CHECK_EQ_INT(sample_once(s, x, 4, &p, &seq, NULL), 2);
    }
    p.temperature = 0;
    CHECK_EQ_INT(sample_once(s, x, 4, &p, &seq, NULL), 2);
    p.logit_bias = b + 1;
    CHECK_EQ_INT(sample_once(s, x, 4, &p, &seq, NULL), 3);
    float y[4];
    memcpy(y, x, sizeof y);
    sampler_sample(s, y, &p, &seq, NULL);
    CHECK_NEAR(y[0], -95, 1e-5);
    sampler_free(s);
}

TEST(sampler_min_tokens) {
    const float x[] = {1, 10, 0, 9, 1};
    const int32_t eos[] = {1};
    const int32_t stop_ids[] = {3};
    const int32_t out[] = {4, 4};
    struct sampler *s = sampler_create(5);
    struct sampling_params p = sampler_default_params();
    struct sampler_seq seq = {.output = out, .num_output = 1, .eos_ids = eos, .num_eos = 1,
                              .seed = 3};
    p.min_tokens = 2;
    p.stop_token_ids = stop_ids;
    p.num_stop_token_ids = 1;
    p.temperature = 0;
    CHECK_EQ_INT(sample_once(s, x, 5, &p, &seq, NULL), 0); /* 0 and 4 tie: lower id */
    p.ignore_eos = 1; /* masked all the same, as vLLM's min_tokens does */
    CHECK_EQ_INT(sample_once(s, x, 5, &p, &seq, NULL), 0);
    p.temperature = 1;
    float probs[5];
    probs_of(x, 5, &p, &seq, probs);
    CHECK(probs[1] == 0 && probs[3] == 0);
    CHECK_NEAR(probs[0], 1 / (2 + exp(-1.0)), 1e-6);
    for (int i = 0; i < 100; i++) {
        seq.seed = (uint64_t)i;
        int32_t t = sample_once(s, x, 5, &p, &seq, NULL);
        CHECK(t != 1 && t != 3);
    }
    seq.num_output = 2; /* reached: unmasked */
    p.temperature = 0;
    CHECK_EQ_INT(sample_once(s, x, 5, &p, &seq, NULL), 1);
    /* everything masked: a valid id, no crash */
    const int32_t all[] = {0, 1, 2, 3, 4};
    seq.eos_ids = all;
    seq.num_eos = 5;
    seq.num_output = 0;
    p.temperature = 1;
    int32_t t = sample_once(s, x, 5, &p, &seq, NULL);
    CHECK(t >= 0 && t < 5);
    sampler_free(s);
}

TEST(sampler_logprobs) {
    const float x[] = {1, 2, 3, 0.5f, 3};
    double z = 0;
    for (int i = 0; i < 5; i++) z += exp((double)x[i]);
    double lse = log(z);
    struct sampler *s = sampler_create(5);
    struct sampling_params p = sampler_default_params();
    struct sampler_seq seq = no_history();
    struct sampler_logprobs lp;
    p.temperature = 0;
    p.logprobs = 3;
    CHECK_EQ_INT(sample_once(s, x, 5, &p, &seq, &lp), 2);
    CHECK_NEAR(lp.logprob, 3 - lse, 1e-6);
    CHECK_EQ_INT(lp.rank, 1);
    CHECK_EQ_INT(lp.num_top, 3);
    CHECK_EQ_INT(lp.top_ids[0], 2);
    CHECK_EQ_INT(lp.top_ids[1], 4);
    CHECK_EQ_INT(lp.top_ids[2], 1);
    CHECK_NEAR(lp.top_logprobs[0], 3 - lse, 1e-6);
    CHECK_NEAR(lp.top_logprobs[2], 2 - lse, 1e-6);

    /* logprobs are of the raw logits, whatever the processors did to pick the token */
    struct sampler_logit_bias b = {3, 100};
    const int32_t prompt[] = {3};
    seq.prompt = prompt;
    seq.num_prompt = 1;
    p.logit_bias = &b;
    p.num_logit_bias = 1;
    p.repetition_penalty = 1.5f;
    p.temperature = 0.7f;
    p.logprobs = 0;
    CHECK_EQ_INT(sample_once(s, x, 5, &p, &seq, &lp), 3);
    CHECK_NEAR(lp.logprob, 0.5 - lse, 1e-6);
    CHECK_EQ_INT(lp.rank, 5);
    CHECK_EQ_INT(lp.num_top, 0);

    p.logprobs = 20; /* more than the vocabulary */
    sample_once(s, x, 5, &p, &seq, &lp);
    CHECK_EQ_INT(lp.num_top, 5);
    CHECK_EQ_INT(lp.top_ids[4], 3);
    CHECK_NEAR(lp.top_logprobs[4], 0.5 - lse, 1e-6);

    /* ties at the cut: the lower ids stay */
    const float t[] = {1, 2, 2, 2, 2};
    p = sampler_default_params();
    p.logprobs = 2;
    sample_once(s, t, 5, &p, &seq, &lp);
    CHECK_EQ_INT(lp.top_ids[0], 1);
    CHECK_EQ_INT(lp.top_ids[1], 2);

    p.logprobs = -1; /* not asked: untouched */
    lp.rank = -7;
    sample_once(s, x, 5, &p, &seq, &lp);
    CHECK_EQ_INT(lp.rank, -7);
    sampler_free(s);
}

static void random_logits(float *x, int v, uint32_t *state, float scale) {
    for (int i = 0; i < v; i++) {
        *state = *state * 1664525u + 1013904223u;
        x[i] = ((float)(*state >> 8) / (float)(1u << 24) - 0.5f) * scale;
    }
}

TEST(sampler_determinism) {
    enum { V = 1000, N = 200 };
    static float x[V];
    uint32_t st = 42;
    random_logits(x, V, &st, 8);
    struct sampler *s = sampler_create(V);
    struct sampling_params p = sampler_default_params();
    p.top_p = 0.95f;
    struct sampler_seq a = no_history(), b = no_history();
    int32_t first[N];
    for (int i = 0; i < N; i++) {
        a.seed = 1234;
        a.num_output = i;
        first[i] = sample_once(s, x, V, &p, &a, NULL);
    }
    int diff_seed = 0, diff_index = 0, same = 1;
    for (int i = N - 1; i >= 0; i--) { /* another order: no state between calls */
        a.num_output = i;
        same &= sample_once(s, x, V, &p, &a, NULL) == first[i];
        b = a;
        b.seed = 1235;
        diff_seed += sample_once(s, x, V, &p, &b, NULL) != first[i];
        b = a;
        b.sample_index = 1;
        diff_index += sample_once(s, x, V, &p, &b, NULL) != first[i];
    }
    CHECK(same);
    CHECK(diff_seed > N / 2);
    CHECK(diff_index > N / 2);
    /* positions differ too: not one token over and over */
    int distinct = 0;
    for (int i = 1; i < N; i++) distinct += first[i] != first[0];
    CHECK(distinct > N / 2);
    sampler_free(s);
}

TEST(sampler_draw_distribution) {
    enum { V = 10, DRAWS = 20000 };
    const float x[V] = {1.0f, 0.2f, -0.5f, 2.0f, 0.9f, -3.0f, 0.0f, 1.5f, -1.0f, 0.4f};
    const int32_t prompt[] = {3, 7};
    static int32_t out[DRAWS];
    for (int i = 0; i < DRAWS; i++) out[i] = 7; /* also in the prompt: penalties stay put */
    struct sampler *s = sampler_create(V);
    struct sampling_params p = sampler_default_params();
    p.temperature = 0.8f;
    p.top_k = 7;
    p.top_p = 0.97f;
    p.repetition_penalty = 1.3f;
    struct sampler_seq seq = {.prompt = prompt, .num_prompt = 2, .output = out, .seed = 99};
    float probs[V], y[V];
    memcpy(y, x, sizeof y);
    sampler_probs(s, y, &p, &seq, probs);
    int count[V] = {0};
    for (int i = 0; i < DRAWS; i++) {
        seq.num_output = i;
        count[sample_once(s, x, V, &p, &seq, NULL)]++;
    }
    double chi2 = 0;
    int kept = 0;
    for (int i = 0; i < V; i++) {
        double e = DRAWS * (double)probs[i];
        if (probs[i] == 0) {
            CHECK_EQ_INT(count[i], 0);
            continue;
        }
        kept++;
        double sd = sqrt(e * (1 - probs[i]));
        if (fabs(count[i] - e) > 5 * sd)
            test_fail(__FILE__, __LINE__, "token %d: %d draws, want %.0f +- %.0f", i, count[i],
                      e, 5 * sd);
        chi2 += (count[i] - e) * (count[i] - e) / e;
    }
    CHECK(kept >= 4 && kept <= 7);
    CHECK(chi2 < 35); /* df <= 6: p < 1e-5 */
    sampler_free(s);
}

static int cmp_desc(const void *pa, const void *pb) {
    const float *a = pa, *b = pb; /* {logit, id} */
    if (a[0] != b[0]) return a[0] > b[0] ? -1 : 1;
    return a[1] < b[1] ? -1 : 1;
}

/* The selections against a full sort, on large rows with many ties. */
TEST(sampler_selection_vs_sort) {
    enum { V = 30000 };
    float *x = malloc(V * sizeof *x), *y = malloc(V * sizeof *y);
    float *probs = malloc(V * sizeof *probs);
    float *pairs = malloc(2 * V * sizeof *pairs);
    float *want = malloc(V * sizeof *want);
    struct sampler *s = sampler_create(V);
    uint32_t st = 7;
    const int ks[] = {0, 1, 5, 50, 1000, 29999};
    const float ps[] = {1.0f, 0.9f, 0.5f, 0.999999f, 0.01f, 0.95f, 0.99f};
    const float temps[] = {1.0f, 0.7f, 1e-4f, 3.0f};
    const float min_ps[] = {0, 0, 0.01f};
    for (int c = 0; c < 84; c++) {
        random_logits(x, V, &st, c % 3 == 0 ? 40 : 12);
        if (c % 2) /* quantized: ties everywhere */
            for (int i = 0; i < V; i++) x[i] = roundf(x[i] * 2) / 2;
        if (c % 5 == 0) x[c] += 30; /* one dominant token */
        struct sampling_params p = sampler_default_params();
        p.top_k = ks[c % 6];
        p.top_p = ps[c % 7];
        p.temperature = temps[c % 4];
        p.min_p = min_ps[c % 3];
        struct sampler_seq seq = no_history();
        memcpy(y, x, V * sizeof *y);
        sampler_probs(s, y, &p, &seq, probs);

        /* oracle: sort everything, cut at k, then at the first prefix reaching p */
        float m = -INFINITY;
        for (int i = 0; i < V; i++) m = fmaxf(m, x[i] / p.temperature);
        for (int i = 0; i < V; i++) {
            pairs[2 * i] = x[i] / p.temperature;
            pairs[2 * i + 1] = (float)i;
        }
        qsort(pairs, V, 2 * sizeof *pairs, cmp_desc);
        int n = V;
        while (n > 0 && !(expf(pairs[2 * (n - 1)] - m) > 0 &&
                          expf(pairs[2 * (n - 1)] - m) >= p.min_p))
            n--;
        if (p.top_k > 0 && p.top_k < n) n = p.top_k;
        double total = 0, acc = 0;
        for (int i = 0; i < n; i++) total += expf(pairs[2 * i] - m);
        int j = 0;
        while (j < n && (j == 0 || acc < p.top_p * total)) acc += expf(pairs[2 * j++] - m);
        if (p.top_p >= 1) j = n;
        acc = 0;
        for (int i = 0; i < j; i++) acc += expf(pairs[2 * i] - m);
        memset(want, 0, V * sizeof *want);
        for (int i = 0; i < j; i++)
            want[(int)pairs[2 * i + 1]] = (float)(expf(pairs[2 * i] - m) / acc);
        int bad = 0;
        for (int i = 0; i < V; i++)
            if ((probs[i] > 0) != (want[i] > 0) || fabsf(probs[i] - want[i]) > 1e-6f) bad++;
        if (bad)
            test_fail(__FILE__, __LINE__, "case %d (k=%d p=%g T=%g min_p=%g): %d tokens differ",
                      c, p.top_k, p.top_p, p.temperature, p.min_p, bad);
    }
    sampler_free(s);
    free(x);
    free(y);
    free(probs);
    free(pairs);
    free(want);
}

static void check_rejected(const struct sampling_params *p, int vocab, const char *name) {
    int rc = sampler_check_params(p, vocab);
    if (rc != FOLIO_EINVAL || !strstr(folio_last_error(), name))
        test_fail(__FILE__, __LINE__, "%s: rc %d, message \"%s\"", name, rc,
                  rc ? folio_last_error() : "");
}

TEST(sampler_check_params) {
    const int V = 100;
    struct sampling_params d = sampler_default_params(), p;
#define BAD(field, value, name)                                                             \
    do {                                                                                    \
        p = d;                                                                              \
        p.field = (value);                                                                  \
        check_rejected(&p, V, name);                                                        \
    } while (0)
#define GOOD(field, value)                                                                  \
    do {                                                                                    \
        p = d;                                                                              \
        p.field = (value);                                                                  \
        CHECK_EQ_INT(sampler_check_params(&p, V), 0);                                       \
    } while (0)
    BAD(n, 0, "n must");
    BAD(n, 129, "n must");
    GOOD(n, 128);
    BAD(temperature, -0.1f, "temperature");
    BAD(temperature, NAN, "temperature");
    BAD(temperature, INFINITY, "temperature");
    GOOD(temperature, 0);
    GOOD(temperature, 5);
    BAD(top_p, 0, "top_p");
    BAD(top_p, 1.01f, "top_p");
    BAD(top_p, NAN, "top_p");
    GOOD(top_p, 1e-3f);
    BAD(top_k, -2, "top_k");
    GOOD(top_k, -1);
    GOOD(top_k, 1);
    GOOD(top_k, 1000000);
    BAD(min_p, -0.01f, "min_p");
    BAD(min_p, 1.5f, "min_p");
    GOOD(min_p, 1);
    BAD(repetition_penalty, 0, "repetition_penalty");
    BAD(repetition_penalty, INFINITY, "repetition_penalty");
    BAD(repetition_penalty, NAN, "repetition_penalty");
    GOOD(repetition_penalty, 0.1f);
    BAD(presence_penalty, 2.5f, "presence_penalty");
    BAD(presence_penalty, -2.01f, "presence_penalty");
    GOOD(presence_penalty, -2);
    BAD(frequency_penalty, -3, "frequency_penalty");
    BAD(frequency_penalty, NAN, "frequency_penalty");
    GOOD(frequency_penalty, 2);
    BAD(max_tokens, 0, "max_tokens");
    BAD(max_tokens, -2, "max_tokens");
    GOOD(max_tokens, 1);
    BAD(min_tokens, -1, "min_tokens");
    BAD(logprobs, 21, "logprobs");
    BAD(logprobs, -2, "logprobs");
    GOOD(logprobs, 0);
    GOOD(logprobs, 20);
    p = d;
    p.max_tokens = 4;
    p.min_tokens = 5;
    check_rejected(&p, V, "min_tokens");
    p.min_tokens = 4;
    CHECK_EQ_INT(sampler_check_params(&p, V), 0);
    p.max_tokens = -1;
    p.min_tokens = 1000;
    CHECK_EQ_INT(sampler_check_params(&p, V), 0);

    struct sampler_logit_bias lb[] = {{5, 1}, {V, 1}};
    p = d;
    p.logit_bias = lb;
    p.num_logit_bias = 2;
    check_rejected(&p, V, "logit_bias");
    lb[1] = (struct sampler_logit_bias){-1, 1};
    check_rejected(&p, V, "logit_bias");
    lb[1] = (struct sampler_logit_bias){6, 100.5f};
    check_rejected(&p, V, "logit_bias");
    lb[1] = (struct sampler_logit_bias){6, NAN};
    check_rejected(&p, V, "logit_bias");
    lb[1] = (struct sampler_logit_bias){V - 1, -100};
    CHECK_EQ_INT(sampler_check_params(&p, V), 0);

    const int32_t ids[] = {0, V};
    p = d;
    p.stop_token_ids = ids;
    p.num_stop_token_ids = 2;
    check_rejected(&p, V, "stop_token_ids");
    p.num_stop_token_ids = 1;
    CHECK_EQ_INT(sampler_check_params(&p, V), 0);
#undef BAD
#undef GOOD
}

/* sampler_is_plain_greedy may only claim rows whose sampled token is the raw argmax (the GPU
 * then takes the argmax instead of the sampler): random parameter mixes on random logits
 * with ties, each claimed row checked against a first-index argmax of the raw row, and each
 * processor on its own must turn the claim off. */
TEST(sampler_plain_greedy_is_the_raw_argmax) {
    struct sampler *s = sampler_create(MAXV);
    uint64_t rng = 7;
    int claimed = 0;
    const struct sampler_logit_bias bias[1] = {{3, 5.0f}};
    for (int iter = 0; iter < 2000; iter++) {
        float raw[MAXV], x[MAXV];
        for (int i = 0; i < MAXV; i++) raw[i] = (float)((rng = folio_mix64(rng)) % 8); /* many ties */
        struct sampling_params p = sampler_default_params();
        const uint64_t r = rng = folio_mix64(rng);
        /* each processor on in a quarter of the rows, so that a good share is claimed */
        p.temperature = (r & 1) ? 0.0f : 0.7f;
        if (((r >> 1) & 3) == 0) p.logprobs = 2;
        if (((r >> 3) & 3) == 0) p.repetition_penalty = 1.3f;
        if (((r >> 5) & 3) == 0) p.presence_penalty = 0.5f;
        if (((r >> 7) & 3) == 0) p.frequency_penalty = 0.5f;
        if (((r >> 9) & 3) == 0) {
            p.logit_bias = bias;
            p.num_logit_bias = 1;
        }
        if (((r >> 11) & 3) == 0) p.min_tokens = 3;
        const int32_t out[4] = {1, 2, 3, 1};
        const int num_output = (int)((r >> 16) % 5);
        const int32_t eos[1] = {(int32_t)(raw[5] > 3 ? 5 : 0)};
        struct sampler_seq seq = {.output = out, .num_output = num_output, .seed = 1, .eos_ids = eos, .num_eos = 1};
        if (!sampler_is_plain_greedy(&p, num_output)) continue;
        claimed++;
        int32_t best = 0;
        for (int i = 1; i < MAXV; i++)
            if (raw[i] > raw[best]) best = i;
        memcpy(x, raw, sizeof raw);
        CHECK_EQ_INT(sampler_sample(s, x, &p, &seq, NULL), best);
    }
    CHECK(claimed > 50);
    struct sampling_params g = sampler_default_params();
    g.temperature = 0;
    CHECK(sampler_is_plain_greedy(&g, 0));
    struct sampling_params q = g;
    q.logprobs = 0;
    CHECK(!sampler_is_plain_greedy(&q, 0));
    q = g;
    q.min_tokens = 2;
    CHECK(!sampler_is_plain_greedy(&q, 1) && sampler_is_plain_greedy(&q, 2));
    q = g;
    q.num_logit_bias = 1;
    q.logit_bias = bias;
    CHECK(!sampler_is_plain_greedy(&q, 0));
    q = g;
    q.repetition_penalty = 1.1f;
    CHECK(!sampler_is_plain_greedy(&q, 0));
    q = g;
    q.temperature = 1e-4f;
    CHECK(!sampler_is_plain_greedy(&q, 0));
    sampler_free(s);
}
