/* folio-engine: the engine's command line.
 *   folio-engine generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--max-tokens N]
 *                         [--temperature T] [--seed S] [--ignore-eos] [--show-ids]
 *   folio-engine logits   --model DIR --prompt-ids "1,2;3,4" --out FILE [--chunk N]
 * Common: --dtype auto|float32|float16|bfloat16, --block-size N, --threads N,
 *         --max-num-batched-tokens N.
 * generate streams the continuation to stdout and prints prefill/decode speed to stderr.
 * logits runs the ';'-separated sequences as one flattened batch (at most --chunk tokens of
 * each per step, so long prompts span steps and read earlier chunks from the paged cache)
 * and writes float32 logits [total_tokens, vocab] for every position. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "detok.h"
#include "kv_cache.h"
#include "model.h"
#include "tokenizer.h"
#include "util.h"

#define MAX_SEQS 64

struct opts {
    const char *cmd, *model, *prompt, *prompt_ids, *out, *dtype;
    int max_tokens, block_size, threads, chunk, max_batched, ignore_eos, show_ids;
    double temperature;
    unsigned long long seed;
};

static int parse_int(const char *flag, const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return folio_err(FOLIO_EINVAL, "%s expects an integer in [%d, %d], got '%s'", flag, lo, hi, s);
    *out = (int)v;
    return 0;
}

static const char usage[] =
    "usage: folio-engine generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [options]\n"
    "       folio-engine logits   --model DIR --prompt-ids \"1,2;3,4\" --out FILE [--chunk N] [options]\n"
    "generate: --max-tokens N (64)  --temperature T (1.0; 0 = greedy)  --seed S  --ignore-eos  --show-ids\n"
    "common:   --dtype auto|float32|float16|bfloat16  --block-size N (16)  --threads N (all CPUs)\n"
    "          --max-num-batched-tokens N (512, the prefill chunk)\n";

static int parse_args(int argc, char **argv, struct opts *o) {
    *o = (struct opts){.max_tokens = 64, .block_size = 16, .threads = 0, .chunk = 0, .max_batched = 512,
                       .temperature = 1.0, .seed = 0, .dtype = "auto"};
    if (argc < 2) return folio_err(FOLIO_EINVAL, "no command (folio-engine --help lists them)");
    o->cmd = argv[1];
    if (strcmp(o->cmd, "generate") != 0 && strcmp(o->cmd, "logits") != 0)
        return folio_err(FOLIO_EINVAL, "unknown command '%s' (generate, logits)", o->cmd);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (strcmp(a, "--ignore-eos") == 0) {
            o->ignore_eos = 1;
            continue;
        }
        if (strcmp(a, "--show-ids") == 0) {
            o->show_ids = 1;
            continue;
        }
        if (i + 1 >= argc) return folio_err(FOLIO_EINVAL, "%s needs a value", a);
        const char *v = argv[++i];
        if (strcmp(a, "--model") == 0) o->model = v;
        else if (strcmp(a, "--prompt") == 0) o->prompt = v;
        else if (strcmp(a, "--prompt-ids") == 0) o->prompt_ids = v;
        else if (strcmp(a, "--out") == 0) o->out = v;
        else if (strcmp(a, "--dtype") == 0) o->dtype = v;
        else if (strcmp(a, "--max-tokens") == 0) rc = parse_int(a, v, 0, 1 << 24, &o->max_tokens);
        else if (strcmp(a, "--block-size") == 0) rc = parse_int(a, v, 1, 1024, &o->block_size);
        else if (strcmp(a, "--threads") == 0) rc = parse_int(a, v, 1, 1024, &o->threads);
        else if (strcmp(a, "--chunk") == 0) rc = parse_int(a, v, 1, 1 << 20, &o->chunk);
        else if (strcmp(a, "--max-num-batched-tokens") == 0) rc = parse_int(a, v, 1, 1 << 20, &o->max_batched);
        else if (strcmp(a, "--seed") == 0) o->seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--temperature") == 0) {
            char *end;
            o->temperature = strtod(v, &end);
            if (*end || !(o->temperature >= 0)) rc = folio_err(FOLIO_EINVAL, "--temperature expects a number >= 0");
        } else {
            return folio_err(FOLIO_EINVAL, "unknown option '%s'", a);
        }
        if (rc) return rc;
    }
    if (!o->model) return folio_err(FOLIO_EINVAL, "--model DIR is required");
    if (!o->prompt && !o->prompt_ids) return folio_err(FOLIO_EINVAL, "--prompt or --prompt-ids is required");
    if (strcmp(o->cmd, "logits") == 0 && (!o->prompt_ids || !o->out))
        return folio_err(FOLIO_EINVAL, "logits needs --prompt-ids and --out");
    return 0;
}

/* Parses "1,2,3;4,5" into up to MAX_SEQS id lists (one malloc'd array, offsets per seq). */
static int parse_id_lists(const char *s, int32_t **ids_out, int *offsets, int *num_seqs) {
    size_t cap = strlen(s) / 2 + 2;
    int32_t *ids = malloc(sizeof(int32_t) * cap);
    if (!ids) return folio_err(FOLIO_ENOMEM, "out of memory");
    int n = 0, ns = 0;
    offsets[0] = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            free(ids);
            return folio_err(FOLIO_EINVAL, "--prompt-ids: expected a token id at '%.20s'", p);
        }
        ids[n++] = (int32_t)v;
        p = end;
        if (*p == ',') {
            p++;
        } else if (*p == ';' || *p == '\0') {
            if (ns == MAX_SEQS) {
                free(ids);
                return folio_err(FOLIO_EINVAL, "--prompt-ids: more than %d sequences", MAX_SEQS);
            }
            offsets[++ns] = n;
            if (*p == '\0') break;
            p++;
        } else {
            free(ids);
            return folio_err(FOLIO_EINVAL, "--prompt-ids: unexpected '%c'", *p);
        }
    }
    *ids_out = ids;
    *num_seqs = ns;
    return 0;
}

/* xorshift64*: a small deterministic generator for --seed. */
static double rng_uniform(unsigned long long *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 2685821657736338717ULL) >> 11) * (1.0 / 9007199254740992.0);
}

static int32_t sample(const float *logits, int V, double temperature, unsigned long long *rng) {
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (temperature <= 0) return best;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((logits[i] - logits[best]) / temperature);
    double r = rng_uniform(rng) * sum, acc = 0;
    for (int i = 0; i < V; i++) {
        acc += exp((logits[i] - logits[best]) / temperature);
        if (acc >= r) return i;
    }
    return best;
}

static int is_eos(const struct model_config *c, const struct tokenizer *tok, int32_t id) {
    for (int i = 0; i < c->num_eos_token_ids; i++)
        if (c->eos_token_ids[i] == id) return 1;
    return c->num_eos_token_ids == 0 && tok && id == tok_eos_id(tok);
}

struct run_state {
    struct model *m;
    struct kv_cache *kv;
    int32_t *tokens, *positions, *seq_idx, *slots, *tables, *logits_idx;
};

static int run_state_init(struct run_state *r, struct model *m, int num_blocks) {
    const struct model_params *p = model_params(m);
    int rc;
    memset(r, 0, sizeof *r);
    r->m = m;
    if ((rc = model_alloc_kv(m, num_blocks))) return rc;
    r->kv = kv_cache_create(&(struct kv_cache_params){num_blocks, p->block_size});
    size_t T = (size_t)p->max_num_batched_tokens;
    r->tokens = malloc(4 * T);
    r->positions = malloc(4 * T);
    r->seq_idx = malloc(4 * T);
    r->slots = malloc(4 * T);
    r->logits_idx = malloc(4 * T);
    r->tables = malloc(4 * (size_t)p->max_num_seqs * model_max_blocks_per_seq(m));
    if (!r->kv || !r->tokens || !r->positions || !r->seq_idx || !r->slots || !r->logits_idx || !r->tables)
        return folio_err(FOLIO_ENOMEM, "out of memory");
    for (size_t i = 0; i < (size_t)p->max_num_seqs * model_max_blocks_per_seq(m); i++) r->tables[i] = -1;
    return 0;
}

static void run_state_free(struct run_state *r) {
    kv_cache_free(r->kv);
    free(r->tokens);
    free(r->positions);
    free(r->seq_idx);
    free(r->slots);
    free(r->logits_idx);
    free(r->tables);
}

static int blocks_for(int tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

static int load_model(const struct opts *o, struct model_params *mp, struct backend **b, struct model **m) {
    int rc;
    if (strcmp(o->dtype, "auto") != 0) {
        mp->dtype_auto = 0;
        if ((rc = folio_dtype_parse(o->dtype, &mp->dtype))) return rc;
    }
    mp->block_size = o->block_size;
    if ((rc = backend_cpu_create(&(struct backend_cpu_params){.n_threads = o->threads}, b))) return rc;
    return model_load(o->model, mp, *b, m);
}

/* One line on what runs where; printed once a run has succeeded, so that an error is the only
 * line on stderr. */
static void print_banner(const struct opts *o, struct model *m, struct backend *b) {
    const struct model_config *c = model_config(m);
    fprintf(stderr, "folio-engine: %s (%s, %d layers, %s weights, %.1f MiB), cpu backend %s\n", o->model,
            c->arch_name, c->num_layers, folio_dtype_name(model_dtype(m)), (double)model_weight_bytes(m) / (1 << 20),
            backend_cpu_isa(b));
}

static int cmd_logits(const struct opts *o) {
    int rc, offsets[MAX_SEQS + 1], ns = 0, done[MAX_SEQS] = {0};
    int32_t *ids = NULL, *dst_row = NULL;
    float *out = NULL, *step_logits = NULL;
    struct backend *b = NULL;
    struct model *m = NULL;
    struct run_state r = {0};
    struct kv_seq seqs[MAX_SEQS];
    FILE *f = NULL;
    if ((rc = parse_id_lists(o->prompt_ids, &ids, offsets, &ns))) return rc;
    const int total = offsets[ns], chunk = o->chunk ? o->chunk : total;
    struct model_params mp = model_default_params();
    mp.max_num_seqs = ns;
    mp.max_num_batched_tokens = mp.max_num_logits = ns * chunk < total ? ns * chunk : total;
    if ((rc = load_model(o, &mp, &b, &m))) goto out;
    const int V = model_config(m)->vocab_size, bs = o->block_size, mb = model_max_blocks_per_seq(m);
    int need = 0;
    for (int s = 0; s < ns; s++) {
        if (offsets[s + 1] - offsets[s] > model_params(m)->max_model_len) {
            rc = folio_err(FOLIO_EINVAL, "sequence %d has %d tokens; this model's maximum context length is %d", s,
                           offsets[s + 1] - offsets[s], model_params(m)->max_model_len);
            goto out;
        }
        need += blocks_for(offsets[s + 1] - offsets[s], bs);
    }
    if ((rc = run_state_init(&r, m, need))) goto out;
    out = malloc(sizeof(float) * (size_t)total * V);
    step_logits = malloc(sizeof(float) * (size_t)mp.max_num_logits * V);
    dst_row = malloc(sizeof(int32_t) * (size_t)mp.max_num_logits);
    if (!out || !step_logits || !dst_row) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory");
        goto out;
    }
    /* Each sequence grows its row of the batch block-table array in place. */
    for (int s = 0; s < ns; s++) seqs[s] = (struct kv_seq){r.tables + (size_t)s * mb, 0, mb};
    for (int finished = 0; finished < total;) {
        int T = 0;
        for (int s = 0; s < ns; s++) {
            int len = offsets[s + 1] - offsets[s], n = len - done[s] < chunk ? len - done[s] : chunk;
            if (n <= 0) continue;
            if ((rc = kv_cache_reserve(r.kv, &seqs[s], done[s] + n))) goto out;
            for (int i = 0; i < n; i++, T++) {
                int pos = done[s] + i;
                r.tokens[T] = ids[offsets[s] + pos];
                r.positions[T] = pos;
                r.seq_idx[T] = s;
                r.slots[T] = kv_seq_slot(&seqs[s], pos, bs);
                r.logits_idx[T] = T;
                dst_row[T] = offsets[s] + pos;
            }
            done[s] += n;
        }
        struct model_batch batch = {T, r.tokens, r.positions, r.seq_idx, r.slots, ns, r.tables, T, r.logits_idx};
        if ((rc = model_forward(m, &batch, step_logits))) goto out;
        for (int t = 0; t < T; t++)
            memcpy(out + (size_t)dst_row[t] * V, step_logits + (size_t)t * V, sizeof(float) * V);
        finished += T;
    }
    f = fopen(o->out, "wb");
    if (!f || fwrite(out, sizeof(float), (size_t)total * V, f) != (size_t)total * V) {
        rc = folio_err(FOLIO_EIO, "cannot write %s: %s", o->out, strerror(errno));
        goto out;
    }
    print_banner(o, m, b);
out:
    if (f && fclose(f) != 0 && !rc) rc = folio_err(FOLIO_EIO, "cannot write %s", o->out);
    run_state_free(&r);
    model_free(m);
    backend_free(b);
    free(ids);
    free(out);
    free(step_logits);
    free(dst_row);
    return rc;
}

static int cmd_generate(const struct opts *o) {
    int rc, n_prompt = 0, n_gen = 0;
    int32_t *prompt = NULL, *gen = NULL;
    float *logits = NULL;
    struct backend *b = NULL;
    struct model *m = NULL;
    struct tokenizer *tok = NULL;
    struct detok *dt = NULL;
    struct run_state r = {0};
    char delta[1024];
    size_t dn;

    if ((rc = tok_load(o->model, &tok))) return rc;
    if (o->prompt_ids) {
        int offsets[MAX_SEQS + 1], ns;
        if ((rc = parse_id_lists(o->prompt_ids, &prompt, offsets, &ns))) goto out;
        if (ns != 1) {
            rc = folio_err(FOLIO_EINVAL, "generate takes one sequence of --prompt-ids");
            goto out;
        }
        n_prompt = offsets[1];
    } else if ((rc = tok_encode(tok, o->prompt, strlen(o->prompt), 1, &prompt, &n_prompt))) {
        goto out;
    }
    if (n_prompt == 0) {
        rc = folio_err(FOLIO_EINVAL, "the prompt is empty");
        goto out;
    }
    struct model_params mp = model_default_params();
    mp.max_num_seqs = mp.max_num_logits = 1;
    mp.max_num_batched_tokens = o->max_batched;
    if ((rc = load_model(o, &mp, &b, &m))) goto out;
    const struct model_config *c = model_config(m);
    const int V = c->vocab_size, bs = o->block_size, max_len = model_params(m)->max_model_len;
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V) {
            rc = folio_err(FOLIO_EINVAL, "prompt token %d is outside the vocabulary (%d)", prompt[i], V);
            goto out;
        }
    if (n_prompt >= max_len) {
        rc = folio_err(FOLIO_EINVAL, "the prompt has %d tokens; this model's maximum context length is %d", n_prompt,
                       max_len);
        goto out;
    }
    int max_new = o->max_tokens < max_len - n_prompt ? o->max_tokens : max_len - n_prompt;
    int total = n_prompt + max_new, mb = model_max_blocks_per_seq(m);
    if ((rc = run_state_init(&r, m, blocks_for(total, bs)))) goto out;
    logits = malloc(sizeof(float) * V);
    gen = malloc(sizeof(int32_t) * (size_t)(max_new + 1));
    dt = detok_create(tok, prompt, n_prompt, 1);
    if (!logits || !gen || !dt) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory");
        goto out;
    }
    struct kv_seq seq = {r.tables, 0, mb};
    unsigned long long rng = o->seed * 0x9E3779B97F4A7C15ULL + 1;
    double t0 = folio_now(), t_first = 0;
    int pos = 0;
    int32_t next = -1;
    /* Prefill in chunks of max_batched, then decode one token per step. */
    while (n_gen < max_new) {
        int T = 0;
        if (pos < n_prompt) {
            T = n_prompt - pos < o->max_batched ? n_prompt - pos : o->max_batched;
            for (int i = 0; i < T; i++) r.tokens[i] = prompt[pos + i];
        } else {
            T = 1;
            r.tokens[0] = next;
        }
        if ((rc = kv_cache_reserve(r.kv, &seq, pos + T))) goto out;
        for (int i = 0; i < T; i++) {
            r.positions[i] = pos + i;
            r.seq_idx[i] = 0;
            r.slots[i] = kv_seq_slot(&seq, pos + i, bs);
        }
        r.logits_idx[0] = T - 1;
        struct model_batch batch = {T, r.tokens, r.positions, r.seq_idx, r.slots, 1, r.tables, 1, r.logits_idx};
        if ((rc = model_forward(m, &batch, logits))) goto out;
        pos += T;
        if (pos < n_prompt) continue;
        next = sample(logits, V, o->temperature, &rng);
        if (n_gen == 0) t_first = folio_now();
        gen[n_gen++] = next;
        if (!o->ignore_eos && is_eos(c, tok, next)) break;
        if ((rc = detok_push(dt, next, delta, sizeof delta, &dn))) goto out;
        fwrite(delta, 1, dn, stdout);
        fflush(stdout);
    }
    double t_end = folio_now();
    do {
        if ((rc = detok_flush(dt, delta, sizeof delta, &dn))) goto out;
        fwrite(delta, 1, dn, stdout);
    } while (dn > 0);
    printf("\n");
    if (o->show_ids) {
        printf("ids: ");
        for (int i = 0; i < n_gen; i++) printf("%s%d", i ? "," : "", gen[i]);
        printf("\n");
    }
    print_banner(o, m, b);
    double pre_s = t_first - t0, dec_s = t_end - t_first;
    fprintf(stderr, "prefill: %d tokens in %.3f s (%.1f tok/s); decode: %d tokens in %.3f s (%.1f tok/s)\n",
            n_prompt, pre_s, n_prompt / pre_s, n_gen - 1, dec_s, n_gen > 1 ? (n_gen - 1) / dec_s : 0.0);
out:
    detok_free(dt);
    run_state_free(&r);
    model_free(m);
    backend_free(b);
    tok_free(tok);
    free(prompt);
    free(gen);
    free(logits);
    return rc;
}

int main(int argc, char **argv) {
    struct opts o;
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    int rc = parse_args(argc, argv, &o);
    if (!rc) rc = strcmp(o.cmd, "logits") == 0 ? cmd_logits(&o) : cmd_generate(&o);
    if (rc) {
        fflush(stdout);
        fprintf(stderr, "folio-engine: error: %s\n", folio_last_error());
        return 1;
    }
    return 0;
}
