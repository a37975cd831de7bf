/* sampler_probs: runs the sampler on cases read from stdin, for tests/reference/check_sampler.py.
 *
 * A case is whitespace-separated "key values" pairs ending with "end"; keys may come in any
 * order, except that vocab comes before logits, and missing ones keep their defaults:
 *   vocab V                  logits x0 .. x{V-1}
 *   temperature T  top_p P  top_k K  min_p M  repetition_penalty R  presence_penalty A
 *   frequency_penalty F  min_tokens N  logprobs L  seed S  sample_index I
 *   logit_bias N id bias ..  stop_token_ids N id ..  eos N id ..  prompt N id ..  output N id ..
 * For each case it prints, each on its own line:
 *   probs p0 .. p{V-1}       sampler_probs (the distribution the draw uses)
 *   token T                  sampler_sample on the same inputs
 *   logprob X rank R         (when logprobs >= 0)
 *   top N id lp ..           (when logprobs >= 0)
 *   end
 * or "error MESSAGE" and "end" when sampler_check_params rejects the case. Exits 1 on
 * malformed input. */
#include "core/sampler.h"
#include "base/util.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ids {
    int32_t *v;
    int n;
};

static int read_ids(struct ids *a) {
    if (scanf("%d", &a->n) != 1 || a->n < 0) return -1;
    free(a->v);
    a->v = malloc(((size_t)a->n + 1) * sizeof *a->v);
    if (!a->v) return -1;
    for (int i = 0; i < a->n; i++)
        if (scanf("%d", &a->v[i]) != 1) return -1;
    return 0;
}

static int run_case(struct sampling_params *p, int vocab, const float *logits,
                    const struct sampler_seq *seq) {
    if (sampler_check_params(p, vocab)) {
        printf("error %s\nend\n", folio_last_error());
        return 0;
    }
    int rc = 0;
    struct sampler *s = sampler_create(vocab);
    float *x = malloc((size_t)vocab * sizeof *x);
    float *probs = malloc((size_t)vocab * sizeof *probs);
    if (!s || !x || !probs) {
        rc = -1;
        goto out;
    }
    memcpy(x, logits, (size_t)vocab * sizeof *x);
    sampler_probs(s, x, p, seq, probs);
    printf("probs");
    for (int i = 0; i < vocab; i++) printf(" %.9g", probs[i]);
    memcpy(x, logits, (size_t)vocab * sizeof *x);
    struct sampler_logprobs lp;
    int32_t tok = sampler_sample(s, x, p, seq, &lp);
    printf("\ntoken %d\n", tok);
    if (p->logprobs >= 0) {
        printf("logprob %.9g rank %d\ntop %d", lp.logprob, lp.rank, lp.num_top);
        for (int i = 0; i < lp.num_top; i++) printf(" %d %.9g", lp.top_ids[i], lp.top_logprobs[i]);
        printf("\n");
    }
    printf("end\n");
out:
    sampler_free(s);
    free(x);
    free(probs);
    return rc;
}

int main(void) {
    int rc = 0;
    char key[64];
    float *logits = NULL;
    struct sampler_logit_bias *bias = NULL;
    struct ids stop = {0}, eos = {0}, prompt = {0}, output = {0};
    int vocab = 0;
    struct sampling_params p = sampler_default_params();
    struct sampler_seq seq = {0};

    while (scanf("%63s", key) == 1) {
        int ok = 1;
        if (!strcmp(key, "end")) {
            p.stop_token_ids = stop.v;
            p.num_stop_token_ids = stop.n;
            seq.eos_ids = eos.v;
            seq.num_eos = eos.n;
            seq.prompt = prompt.v;
            seq.num_prompt = prompt.n;
            seq.output = output.v;
            seq.num_output = output.n;
            if (!logits || run_case(&p, vocab, logits, &seq)) goto bad;
            fflush(stdout);
            p = sampler_default_params();
            seq = (struct sampler_seq){0};
            stop.n = eos.n = prompt.n = output.n = 0;
        } else if (!strcmp(key, "vocab")) {
            ok = scanf("%d", &vocab) == 1 && vocab > 0;
            free(logits);
            logits = ok ? malloc((size_t)vocab * sizeof *logits) : NULL;
            ok = ok && logits;
        } else if (!strcmp(key, "logits")) {
            ok = logits != NULL;
            for (int i = 0; ok && i < vocab; i++) ok = scanf("%f", &logits[i]) == 1;
        } else if (!strcmp(key, "temperature")) ok = scanf("%f", &p.temperature) == 1;
        else if (!strcmp(key, "top_p")) ok = scanf("%f", &p.top_p) == 1;
        else if (!strcmp(key, "top_k")) ok = scanf("%d", &p.top_k) == 1;
        else if (!strcmp(key, "min_p")) ok = scanf("%f", &p.min_p) == 1;
        else if (!strcmp(key, "repetition_penalty")) ok = scanf("%f", &p.repetition_penalty) == 1;
        else if (!strcmp(key, "presence_penalty")) ok = scanf("%f", &p.presence_penalty) == 1;
        else if (!strcmp(key, "frequency_penalty")) ok = scanf("%f", &p.frequency_penalty) == 1;
        else if (!strcmp(key, "min_tokens")) ok = scanf("%d", &p.min_tokens) == 1;
        else if (!strcmp(key, "logprobs")) ok = scanf("%d", &p.logprobs) == 1;
        else if (!strcmp(key, "seed")) ok = scanf("%" SCNu64, &seq.seed) == 1;
        else if (!strcmp(key, "sample_index")) ok = scanf("%d", &seq.sample_index) == 1;
        else if (!strcmp(key, "stop_token_ids")) ok = read_ids(&stop) == 0;
        else if (!strcmp(key, "eos")) ok = read_ids(&eos) == 0;
        else if (!strcmp(key, "prompt")) ok = read_ids(&prompt) == 0;
        else if (!strcmp(key, "output")) ok = read_ids(&output) == 0;
        else if (!strcmp(key, "logit_bias")) {
            ok = scanf("%d", &p.num_logit_bias) == 1 && p.num_logit_bias >= 0;
            free(bias);
            bias = ok ? malloc(((size_t)p.num_logit_bias + 1) * sizeof *bias) : NULL;
            ok = ok && bias;
            for (int i = 0; ok && i < p.num_logit_bias; i++)
                ok = scanf("%d %f", &bias[i].token, &bias[i].bias) == 2;
            p.logit_bias = bias;
        } else {
            fprintf(stderr, "sampler_probs: unknown key '%s'\n", key);
            ok = 0;
        }
        if (!ok) goto bad;
    }
    goto out;
bad:
    fprintf(stderr, "sampler_probs: malformed input near '%s'\n", key);
    rc = 1;
out:
    free(logits);
    free(bias);
    free(stop.v);
    free(eos.v);
    free(prompt.v);
    free(output.v);
    return rc;
}
