/* sampler: turns one row of logits into the next token, with every OpenAI and vLLM sampling
 * parameter: logit_bias, min_tokens, repetition/presence/frequency penalties, temperature,
 * min_p, top_k, top_p, greedy, and logprobs of the raw model distribution.
 *
 * Randomness is a pure function of (seed, sample index, output position), so a seeded request
 * draws the same numbers alone, in any batch, and after a preemption that recomputes it.
 *
 * A sampler owns scratch sized for the vocabulary, allocated once in sampler_create; sampling
 * never allocates. One sampler serves one thread. */
#ifndef FOLIO_SAMPLER_H
#define FOLIO_SAMPLER_H

#include <stdint.h>

#define SAMPLER_MAX_LOGPROBS 20

struct sampler_logit_bias {
    int32_t token;
    float bias;
};

/* What a request asks for. sampler_default_params() gives OpenAI's defaults. Pointers are
 * borrowed for the duration of a call (the engine keeps its own copies). */
struct sampling_params {
    int n;                      /* parallel samples (1) */
    float temperature;          /* 1.0; below 1e-5 means greedy */
    float top_p;                /* 1.0 = off; (0, 1] */
    int top_k;                  /* 0 or -1 = off */
    float min_p;                /* 0 = off; [0, 1] */
    float repetition_penalty;   /* 1.0 = off; > 0 */
    float presence_penalty;     /* 0 = off; [-2, 2] */
    float frequency_penalty;    /* 0 = off; [-2, 2] */
    const struct sampler_logit_bias *logit_bias;
    int num_logit_bias;
    int has_seed;
    uint64_t seed;
    int max_tokens;             /* -1: until max_model_len */
    int min_tokens;             /* EOS and stop_token_ids are masked until this many tokens */
    int ignore_eos;
    const char *const *stop;    /* stop strings */
    int num_stop;
    const int32_t *stop_token_ids;
    int num_stop_token_ids;
    int include_stop_str_in_output;
    int logprobs;               /* -1: none; 0..20: the sampled token's plus this many top ones */
    int skip_special_tokens;    /* 1 */
};

struct sampling_params sampler_default_params(void);

/* Checks ranges and returns 0 or FOLIO_EINVAL with an OpenAI-style message naming the
 * parameter ("top_p must be in (0, 1]"...). vocab_size bounds logit_bias and
 * stop_token_ids. */
int sampler_check_params(const struct sampling_params *p, int vocab_size);

/* The logprobs of one sampled token. */
struct sampler_logprobs {
    float logprob;                          /* of the sampled token */
    int32_t rank;                           /* 1 = most likely */
    int num_top;
    int32_t top_ids[SAMPLER_MAX_LOGPROBS];  /* most likely first; ties by lower id */
    float top_logprobs[SAMPLER_MAX_LOGPROBS];
};

/* Everything a call needs to know about the sequence being sampled. */
struct sampler_seq {
    const int32_t *prompt;      /* [num_prompt] */
    int num_prompt;
    const int32_t *output;      /* [num_output] tokens generated so far */
    int num_output;
    int sample_index;           /* which of the request's n samples */
    uint64_t seed;              /* the request's seed (the engine draws one when unset) */
    const int32_t *eos_ids;     /* [num_eos], masked while num_output < min_tokens */
    int num_eos;
    const uint32_t *allowed;    /* NULL, or a grammar's mask: bit (id & 31) of allowed[id >> 5]
                                 * set for each token the grammar allows (gram_matcher.h) */
};

struct sampler;

/* NULL on allocation failure. Free with sampler_free. */
struct sampler *sampler_create(int vocab_size);
void sampler_free(struct sampler *s);

/* Picks the next token from logits[vocab_size], which it overwrites (processors run in
 * place). Order, as vLLM: raw logprobs are taken first (when p->logprobs >= 0, written to
 * *lp); then the grammar's mask (seq->allowed), min_tokens masking, logit_bias,
 * repetition/frequency/presence penalties; then
 * greedy argmax (lowest id on ties), or temperature, min_p, top_k, top_p and a draw. */
int32_t sampler_sample(struct sampler *s, float *logits, const struct sampling_params *p,
                       const struct sampler_seq *seq, struct sampler_logprobs *lp);

/* Whether sampler_sample with these params is exactly the argmax (lowest id on ties) of the
 * raw logits, for a sequence with num_output tokens so far: greedy, no logprobs, and no
 * processor (min_tokens masking, logit_bias, penalties) active. The engine then lets the
 * device take the argmax. */
int sampler_is_plain_greedy(const struct sampling_params *p, int num_output);

/* The distribution that sampler_sample would draw from for the same arguments, written to
 * probs[vocab_size] (one-hot on the argmax when greedy). logits is overwritten as above. For
 * the reference tests. */
void sampler_probs(struct sampler *s, float *logits, const struct sampling_params *p,
                   const struct sampler_seq *seq, float *probs);

#endif
