/* sampler: one row of logits in, the next token out, with the order and semantics of vLLM v1
 * (vllm/v1/sample/sampler.py): raw logprobs first; then min_tokens masking and logit_bias;
 * apply_penalties; then greedy argmax, or temperature, min_p, top_k, top_p and a draw.
 *
 * vLLM sorts the whole vocabulary for top-k/top-p; we select instead, in about one pass: a
 * heap finds the k-th highest token, and for the nucleus the mass is summed into logit
 * buckets on the way, so that a mass-weighted quickselect runs inside one narrow bucket.
 * Both use one strict order, by logit and then by lower id, so ties are settled and the kept
 * set is exactly "every token at or above a boundary token". That lets the draw walk the kept
 * tokens in id order, whatever order the selections left them in.
 *
 * top_p: vLLM sorts ascending, takes the cumulative sum, and drops the tokens whose sum is
 * <= 1 - p (never the most likely). In exact arithmetic that keeps a token when the mass of
 * the tokens strictly above it is < p, i.e. the shortest descending prefix whose mass reaches
 * p; a prefix that reaches p exactly ends there. We compute that prefix, with the mass taken
 * after min_p and top_k (vLLM re-softmaxes the top-k survivors before the cumsum).
 *
 * Departures, chosen for determinism: top_k keeps exactly k tokens (vLLM also keeps the
 * tokens tied with the k-th), and the rank of the sampled token counts only strictly more
 * likely tokens (vLLM counts ties too). */
#include "core/sampler.h"

#include "base/util.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define GREEDY_BELOW 1e-5f  /* vLLM's _SAMPLING_EPS: lower temperatures are argmax */
#define NUM_BUCKETS 1024    /* logit buckets of the top-p search */

/* A candidate token: its temperature-scaled logit and exp(logit - max logit). */
struct cand {
    float logit;
    float e;
    int32_t id;
};

struct sampler {
    int vocab;
    float *raw;         /* [vocab] the logits as given, kept for logprobs */
    uint32_t *hist;     /* [vocab] output count << 1 | in-prompt bit; all zero between calls */
    int32_t *touched;   /* [vocab] ids whose hist entry is set during one call */
    struct cand *cand;  /* [vocab] candidates in id order */
    struct cand *work;  /* [vocab] scratch that the selections reorder */
    double bucket_mass[NUM_BUCKETS]; /* top-p: candidate mass per logit bucket */
};

struct sampling_params sampler_default_params(void) {
    return (struct sampling_params){
        .n = 1, .temperature = 1.0f, .top_p = 1.0f, .top_k = 0, .min_p = 0.0f,
        .repetition_penalty = 1.0f, .max_tokens = -1, .logprobs = -1,
        .skip_special_tokens = 1,
    };
}

static int check_ids(const char *name, const int32_t *ids, int n, int vocab) {
    if (n < 0 || (n > 0 && !ids))
        return folio_err(FOLIO_EINVAL, "%s: bad list (%d entries)", name, n);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return folio_err(FOLIO_EINVAL, "%s: token id %d is out of vocabulary [0, %d)", name,
                             ids[i], vocab);
    return 0;
}

int sampler_check_params(const struct sampling_params *p, int vocab_size) {
    /* Written as !(in range) so that NaN fails every check. */
    if (vocab_size <= 0) return folio_err(FOLIO_EINVAL, "sampler: vocab_size %d", vocab_size);
    if (p->n < 1 || p->n > 128)
        return folio_err(FOLIO_EINVAL, "n must be in [1, 128], got %d", p->n);
    /* OpenAI caps temperature at 2; vLLM accepts any finite non-negative value, and so do we. */
    if (!(p->temperature >= 0) || isinf(p->temperature))
        return folio_err(FOLIO_EINVAL, "temperature must be a finite number >= 0, got %g",
                         p->temperature);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return folio_err(FOLIO_EINVAL, "top_p must be in (0, 1], got %g", p->top_p);
    if (p->top_k < -1)
        return folio_err(FOLIO_EINVAL, "top_k must be -1 or 0 (disabled) or at least 1, got %d",
                         p->top_k);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return folio_err(FOLIO_EINVAL, "min_p must be in [0, 1], got %g", p->min_p);
    if (!(p->repetition_penalty > 0) || isinf(p->repetition_penalty))
        return folio_err(FOLIO_EINVAL, "repetition_penalty must be a finite number > 0, got %g",
                         p->repetition_penalty);
    if (!(p->presence_penalty >= -2 && p->presence_penalty <= 2))
        return folio_err(FOLIO_EINVAL, "presence_penalty must be in [-2, 2], got %g",
                         p->presence_penalty);
    if (!(p->frequency_penalty >= -2 && p->frequency_penalty <= 2))
        return folio_err(FOLIO_EINVAL, "frequency_penalty must be in [-2, 2], got %g",
                         p->frequency_penalty);
    if (p->num_logit_bias < 0 || (p->num_logit_bias > 0 && !p->logit_bias))
        return folio_err(FOLIO_EINVAL, "logit_bias: bad list (%d entries)", p->num_logit_bias);
    for (int i = 0; i < p->num_logit_bias; i++) {
        const struct sampler_logit_bias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= vocab_size)
            return folio_err(FOLIO_EINVAL, "logit_bias: token id %d is out of vocabulary [0, %d)",
                             b->token, vocab_size);
        if (!(b->bias >= -100 && b->bias <= 100))
            return folio_err(FOLIO_EINVAL, "logit_bias: bias for token %d must be in [-100, 100], "
                             "got %g", b->token, b->bias);
    }
    int rc = check_ids("stop_token_ids", p->stop_token_ids, p->num_stop_token_ids, vocab_size);
    if (rc) return rc;
    if (p->num_stop < 0 || (p->num_stop > 0 && !p->stop))
        return folio_err(FOLIO_EINVAL, "stop: bad list (%d entries)", p->num_stop);
    for (int i = 0; i < p->num_stop; i++)
        if (!p->stop[i]) return folio_err(FOLIO_EINVAL, "stop: string %d is NULL", i);
    if (p->max_tokens != -1 && p->max_tokens < 1)
        return folio_err(FOLIO_EINVAL, "max_tokens must be at least 1 (or -1 for no limit), got %d",
                         p->max_tokens);
    if (p->min_tokens < 0)
        return folio_err(FOLIO_EINVAL, "min_tokens must be >= 0, got %d", p->min_tokens);
    if (p->max_tokens != -1 && p->min_tokens > p->max_tokens)
        return folio_err(FOLIO_EINVAL, "min_tokens (%d) must be <= max_tokens (%d)",
                         p->min_tokens, p->max_tokens);
    if (p->logprobs < -1 || p->logprobs > SAMPLER_MAX_LOGPROBS)
        return folio_err(FOLIO_EINVAL, "logprobs must be in [0, %d] (or -1 for none), got %d",
                         SAMPLER_MAX_LOGPROBS, p->logprobs);
    return 0;
}

struct sampler *sampler_create(int vocab_size) {
    if (vocab_size <= 0) return NULL;
    struct sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    size_t v = (size_t)vocab_size;
    s->vocab = vocab_size;
    s->raw = malloc(v * sizeof *s->raw);
    s->hist = calloc(v, sizeof *s->hist);
    s->touched = malloc(v * sizeof *s->touched);
    s->cand = malloc(v * sizeof *s->cand);
    s->work = malloc(v * sizeof *s->work);
    if (!s->raw || !s->hist || !s->touched || !s->cand || !s->work) {
        sampler_free(s);
        return NULL;
    }
    return s;
}

void sampler_free(struct sampler *s) {
    if (!s) return;
    free(s->raw);
    free(s->hist);
    free(s->touched);
    free(s->cand);
    free(s->work);
    free(s);
}

/* vLLM's apply_penalties. Only the tokens seen in the prompt or output are visited, and their
 * hist entries are cleared on the way out, so a call costs O(history), not O(vocab). */
static void apply_penalties(struct sampler *s, float *logits, const struct sampling_params *p,
                            const struct sampler_seq *seq) {
    int nt = 0;
    for (int i = 0; i < seq->num_prompt; i++) {
        int32_t t = seq->prompt[i];
        if (t < 0 || t >= s->vocab) continue;
        if (!s->hist[t]) s->touched[nt++] = t;
        s->hist[t] |= 1;
    }
    for (int i = 0; i < seq->num_output; i++) {
        int32_t t = seq->output[i];
        if (t < 0 || t >= s->vocab) continue;
        if (!s->hist[t]) s->touched[nt++] = t;
        s->hist[t] += 2;
    }
    float rp = p->repetition_penalty;
    for (int i = 0; i < nt; i++) {
        int32_t t = s->touched[i];
        uint32_t count = s->hist[t] >> 1;
        float l = logits[t];
        if (rp != 1.0f) l = l > 0 ? l / rp : l * rp;
        l -= p->frequency_penalty * (float)count;
        if (count) l -= p->presence_penalty;
        logits[t] = l;
        s->hist[t] = 0;
    }
}

/* The processors that can change the argmax, in place. */
static void process(struct sampler *s, float *logits, const struct sampling_params *p,
                    const struct sampler_seq *seq) {
    /* The grammar's mask first: every later processor sees only what the grammar allows. */
    if (seq->allowed) {
        const int words = (s->vocab + 31) / 32;
        for (int w = 0; w < words; w++) {
            const uint32_t m = seq->allowed[w];
            if (m == 0xffffffffu) continue;
            const int base = w * 32, end = base + 32 < s->vocab ? base + 32 : s->vocab;
            for (int t = base; t < end; t++)
                if (!(m >> (t - base) & 1)) logits[t] = -INFINITY;
        }
    }
    if (seq->num_output < p->min_tokens) {
        for (int i = 0; i < seq->num_eos; i++)
            if (seq->eos_ids[i] >= 0 && seq->eos_ids[i] < s->vocab)
                logits[seq->eos_ids[i]] = -INFINITY;
        for (int i = 0; i < p->num_stop_token_ids; i++)
            if (p->stop_token_ids[i] >= 0 && p->stop_token_ids[i] < s->vocab)
                logits[p->stop_token_ids[i]] = -INFINITY;
    }
    for (int i = 0; i < p->num_logit_bias; i++) {
        int32_t t = p->logit_bias[i].token;
        if (t >= 0 && t < s->vocab) logits[t] += p->logit_bias[i].bias;
    }
    if (p->repetition_penalty != 1.0f || p->presence_penalty != 0 || p->frequency_penalty != 0)
        apply_penalties(s, logits, p, seq);
}

int sampler_is_plain_greedy(const struct sampling_params *p, int num_output) {
    return p->temperature < GREEDY_BELOW && p->logprobs < 0 && p->num_logit_bias == 0 &&
           p->repetition_penalty == 1.0f && p->presence_penalty == 0 && p->frequency_penalty == 0 &&
           num_output >= p->min_tokens;
}

/* Lowest id of the largest value; NaN never wins, and 0 when nothing is comparable. */
static int32_t argmax(const float *x, int n) {
    int32_t best = -1;
    for (int i = 0; i < n; i++)
        if (best < 0 ? !isnan(x[i]) : x[i] > x[best]) best = i;
    return best < 0 ? 0 : best;
}

/* The strict order every selection uses: higher logit first, then lower id. */
static inline bool above(const struct cand *a, const struct cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static inline void swap(struct cand *a, struct cand *b) {
    struct cand t = *a;
    *a = *b;
    *b = t;
}

/* Partitions a[0..n) (n >= 2) around a median-of-three pivot and returns its final place q:
 * a[0..q) above it, a[q+1..n) below. */
static int partition(struct cand *a, int n) {
    int m = n / 2;
    if (above(&a[m], &a[0])) swap(&a[m], &a[0]);
    if (above(&a[n - 1], &a[0])) swap(&a[n - 1], &a[0]);
    if (above(&a[m], &a[n - 1])) swap(&a[m], &a[n - 1]);
    /* now a[0] >= a[n-1] >= a[m]: the median sits at n-1 */
    int q = 0;
    for (int i = 0; i < n - 1; i++)
        if (above(&a[i], &a[n - 1])) swap(&a[i], &a[q++]);
    swap(&a[q], &a[n - 1]);
    return q;
}

/* Restores the min-heap h[0..n) (root: the lowest under `above`) below slot i. */
static void sift_down(struct cand *h, int n, int i) {
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && above(&h[c], &h[c + 1])) c++;
        if (!above(&h[i], &h[c])) return;
        swap(&h[i], &h[c]);
        i = c;
    }
}

/* The k-th highest finite logit of x[0..n), as a boundary token, into *kth; false when fewer
 * than k are finite. A min-heap of the k highest so far: most tokens lose one comparison with
 * its root, a branch the CPU predicts well, so small k cost one pass over the row. */
static bool kth_highest(const float *x, int n, int k, struct cand *heap, struct cand *kth) {
    int h = 0;
    for (int i = 0; i < n; i++) {
        if (!(x[i] > -INFINITY)) continue;
        struct cand c = {x[i], 0, i};
        if (h < k) {
            int j = h++; /* sift up */
            for (; j > 0 && above(&heap[(j - 1) / 2], &c); j = (j - 1) / 2)
                heap[j] = heap[(j - 1) / 2];
            heap[j] = c;
        } else if (above(&c, &heap[0])) {
            heap[0] = c;
            sift_down(heap, h, 0);
        }
    }
    if (h < k) return false;
    *kth = heap[0];
    return true;
}

/* Monotone in the logit: a higher logit never lands in a later bucket. The last bucket also
 * takes everything below the span, clamped as an int (a cmov, not a branch that most tokens
 * would mispredict): a candidate's exp did not underflow, so m - logit < 104 and the product
 * fits. */
static inline int bucket_of(float logit, float m, float scale) {
    int b = (int)((m - logit) * scale);
    return b < NUM_BUCKETS - 1 ? b : NUM_BUCKETS - 1;
}

/* Reorders a[0..n) and returns j: the fewest highest elements whose mass reaches need (top-p's
 * nucleus), or n when rounding leaves the row short. A quickselect that recurses into the
 * side holding the boundary, summing the mass above each pivot. */
static int select_mass(struct cand *a, int n, double need) {
    int lo = 0, hi = n;  /* a[0..lo) are taken, with mass `taken` < need; j is in (lo, hi] */
    double taken = 0;
    while (hi - lo > 1) {
        int q = lo + partition(a + lo, hi - lo);
        double above_q = taken;
        for (int i = lo; i < q; i++) above_q += a[i].e;
        if (above_q >= need) {
            hi = q;  /* q > lo: above_q == taken < need otherwise */
        } else if (above_q + a[q].e >= need) {
            return q + 1;
        } else {
            taken = above_q + a[q].e;
            lo = q + 1;
        }
    }
    return hi;
}

/* The tokens a draw chooses from: the candidates cand[0..n) (id order) that are at or above
 * `bound` when there is one; z is their mass. */
struct kept {
    int n;
    double z;
    bool has_bound;
    struct cand bound;
};

static inline bool is_kept(const struct kept *k, const struct cand *c) {
    return !k->has_bound || !above(&k->bound, c);
}

/* top-p's boundary: the last token of the shortest prefix of the order whose mass reaches
 * need. The candidates' mass was already summed into logit buckets (whose order is the
 * tokens' order); the bucket where the cumulative mass crosses need is found from the top,
 * and select_mass runs inside it only. */
static void nucleus_bound(struct sampler *s, struct kept *k, double need, float m, float scale) {
    double acc = 0, before = 0;
    int b = 0;
    for (int i = 0; i < NUM_BUCKETS && acc < need; i++) {
        if (s->bucket_mass[i] == 0) continue;
        b = i;
        before = acc;
        acc += s->bucket_mass[i];
    }
    /* before: the mass above bucket b. If rounding fell short of need, select_mass takes all
     * of b. */
    int w = 0;
    for (int i = 0; i < k->n; i++)
        if (bucket_of(s->cand[i].logit, m, scale) == b)
            s->work[w++] = s->cand[i];
    int j = select_mass(s->work, w, need - before);
    k->has_bound = true;
    k->bound = s->work[0];
    k->z = before;
    for (int i = 0; i < j; i++) {
        k->z += s->work[i].e;
        if (above(&k->bound, &s->work[i])) k->bound = s->work[i];
    }
}

/* Everything before the draw. Returns the token when it is already decided (greedy, or no
 * finite logit left); otherwise -1, with the tokens to draw from in *k. */
static int32_t prepare(struct sampler *s, float *logits, const struct sampling_params *p,
                       const struct sampler_seq *seq, struct kept *k) {
    process(s, logits, p, seq);
    if (p->temperature < GREEDY_BELOW) return argmax(logits, s->vocab);

    float m = -INFINITY;
    for (int i = 0; i < s->vocab; i++) {
        logits[i] /= p->temperature;
        if (logits[i] > m) m = logits[i];
    }
    /* nothing finite to normalize: argmax's fallback when all is masked, or the +inf logit */
    if (!(m > -INFINITY) || m == INFINITY) return argmax(logits, s->vocab);

    /* vLLM applies min_p, then top_k. The other way round is the same and cheaper (no exp
     * for the tokens top_k drops): min_p keeps a top segment of the order, so the k highest
     * of its survivors are its survivors among the k highest. */
    struct cand kth = {0};
    bool top_k = p->top_k > 0 && p->top_k < s->vocab &&
                 kth_highest(logits, s->vocab, p->top_k, s->work, &kth);

    /* top_p: the mass strictly above a nucleus token is < p * z, so the mass at or below it,
     * at most n * e, exceeds (1 - p) * z, where z >= 1 (the top token's e) and n <= vocab:
     * tokens with e < (1 - p) / vocab are out. The buckets span the logits from m down to
     * that cut (and a little more, for rounding), so the boundary falls in a narrow one. */
    bool top_p = p->top_p < 1.0f;
    float scale = 0;
    if (top_p) {
        scale = (float)((NUM_BUCKETS - 1) / (log(s->vocab / (1.0 - p->top_p)) + 1e-3));
        memset(s->bucket_mass, 0, sizeof s->bucket_mass);
    }

    /* min_p drops prob < min_p * max_prob, i.e. exp(l - m) < min_p; a margin in log space
     * spares the exp of tokens surely below it. Tokens whose exp underflows carry no mass
     * and go too, as do NaNs. */
    float lcut = p->min_p > 0 ? logf(p->min_p) - 1e-3f : -INFINITY;
    /* expf is exactly 0 below about -103.97; skipping those tokens keeps the result and
     * spares the slow underflow path, which a random-weight model's wide logits hit often. */
    if (lcut < -104.0f) lcut = -104.0f;
    int n = 0;
    double z = 0;
    for (int i = 0; i < s->vocab; i++) {
        float d = logits[i] - m;
        if (!(d >= lcut)) continue;
        struct cand c = {logits[i], 0, i};
        if (top_k && above(&kth, &c)) continue;
        c.e = expf(d);
        if (!(c.e > 0 && c.e >= p->min_p)) continue;
        s->cand[n++] = c;
        z += c.e;
        if (top_p) s->bucket_mass[bucket_of(c.logit, m, scale)] += c.e;
    }
    *k = (struct kept){.n = n, .z = z};
    if (top_p) nucleus_bound(s, k, (double)p->top_p * z, m, scale);
    return -1;
}

/* The draw's uniform number in [0, 1): the top 53 bits of mix(mix(mix(seed) ^ sample_index)
 * ^ position), mix being folio_mix64. A pure function of the three, with no state carried
 * between calls, so a sequence draws the same numbers alone, in any batch, and when
 * recomputed after preemption. */
static double uniform(const struct sampler_seq *seq) {
    uint64_t h = folio_mix64(seq->seed);
    h = folio_mix64(h ^ (uint32_t)seq->sample_index);
    h = folio_mix64(h ^ (uint32_t)seq->num_output);
    return (double)(h >> 11) * 0x1.0p-53;
}

/* Logprobs of the raw distribution (s->raw), for the sampled token and the top k. */
static void fill_logprobs(const struct sampler *s, int32_t tok, int k,
                          struct sampler_logprobs *lp) {
    const float *x = s->raw;
    float m = -INFINITY;
    for (int i = 0; i < s->vocab; i++)
        if (x[i] > m) m = x[i];
    double sum = 0;
    int greater = 0;
    int nt = 0;
    for (int i = 0; i < s->vocab; i++) {
        if (isnan(x[i])) continue;
        sum += expf(x[i] - m);
        greater += x[i] > x[tok];
        /* insertion into the sorted top k; an equal later id never displaces an earlier one */
        if (k > 0 && (nt < k || x[i] > lp->top_logprobs[nt - 1])) {
            int j = nt < k ? nt++ : k - 1;
            for (; j > 0 && lp->top_logprobs[j - 1] < x[i]; j--) {
                lp->top_logprobs[j] = lp->top_logprobs[j - 1];
                lp->top_ids[j] = lp->top_ids[j - 1];
            }
            lp->top_logprobs[j] = x[i];
            lp->top_ids[j] = i;
        }
    }
    double lse = m + log(sum);
    lp->logprob = (float)(x[tok] - lse);
    lp->rank = 1 + greater;
    lp->num_top = nt;
    for (int i = 0; i < nt; i++) lp->top_logprobs[i] = (float)(lp->top_logprobs[i] - lse);
}

int32_t sampler_sample(struct sampler *s, float *logits, const struct sampling_params *p,
                       const struct sampler_seq *seq, struct sampler_logprobs *lp) {
    bool want_lp = p->logprobs >= 0 && lp;
    if (want_lp) memcpy(s->raw, logits, (size_t)s->vocab * sizeof *s->raw);
    struct kept k;
    int32_t tok = prepare(s, logits, p, seq, &k);
    if (tok < 0) {
        /* inverse CDF over the kept tokens in id order; rounding that leaves the target
         * beyond the last partial sum picks the last kept token */
        double target = uniform(seq) * k.z, acc = 0;
        for (int i = 0; i < k.n; i++) {
            if (!is_kept(&k, &s->cand[i])) continue;
            tok = s->cand[i].id;
            acc += s->cand[i].e;
            if (acc > target) break;
        }
    }
    if (want_lp) {
        int nt = p->logprobs < SAMPLER_MAX_LOGPROBS ? p->logprobs : SAMPLER_MAX_LOGPROBS;
        fill_logprobs(s, tok, nt, lp);
    }
    return tok;
}

void sampler_probs(struct sampler *s, float *logits, const struct sampling_params *p,
                   const struct sampler_seq *seq, float *probs) {
    struct kept k;
    int32_t tok = prepare(s, logits, p, seq, &k);
    memset(probs, 0, (size_t)s->vocab * sizeof *probs);
    if (tok >= 0) {
        probs[tok] = 1.0f;
        return;
    }
    for (int i = 0; i < k.n; i++)
        if (is_kept(&k, &s->cand[i])) probs[s->cand[i].id] = (float)(s->cand[i].e / k.z);
}
