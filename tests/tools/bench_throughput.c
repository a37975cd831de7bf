/* bench_throughput: offline throughput benchmark, in the spirit of vLLM's
 * benchmark_throughput.py. It measures what continuous batching buys over one request at a
 * time on the same engine, model and workload.
 *
 * The workload is deterministic (one seeded PRNG): num_prompts requests with input lengths
 * uniform in [min_in, max_in] and output lengths uniform in [min_out, max_out], random token
 * ids in [min(300, vocab/2), vocab). A fraction shared_frac of the prompts start with one
 * common shared_prefix-token prefix (a system prompt) followed by their own tokens, as
 * vLLM's random dataset does with --random-prefix-len, so the prefix cache has something to
 * hit. Every request samples at temperature 1 with ignore_eos, max_tokens = its output length
 * and seed = its index, so the output does not depend on how the requests are batched.
 *
 * Modes, each on a fresh engine driven by engine_step on this thread (no engine thread, for
 * determinism):
 *   batched  submit everything, step until all are done (continuous batching);
 *   serial   submit, run to completion and drain one request at a time.
 * With both, the tokens of every request must match between the modes (exit 1 otherwise).
 * The batched run also reports KV waste, peak KV usage, prefix-cache hits and preemptions,
 * from engine_get_stats after every step. The last line is machine-readable for scripts. */
#include "model/config.h"
#include "tool_util.h"
#include "core/engine.h"
#include "base/util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct opts {
    const char *model;
    int num_prompts;
    uint64_t seed;
    int threads;
    int min_in, max_in, min_out, max_out;
    int shared_prefix;
    double shared_frac;
    int batched, serial;
    int max_num_seqs, max_num_batched_tokens;
    double kv_cache_space; /* GiB; <= 0: the engine's default */
};

struct workload {
    int n;
    int32_t **prompts; /* [n][in_len[i]] */
    int *in_len;       /* [n] */
    int *out_len;      /* [n] */
    size_t *out_off;   /* [n + 1] offsets of each request's outputs in a flat token array */
    long long in_tokens, out_tokens;
};

/* What one mode measured. */
struct run {
    double seconds;
    int32_t *ids;         /* [out_tokens] every request's output, at workload out_off */
    int *got;             /* [n] tokens received so far */
    int *done;            /* [n] */
    long long steps, sum_batch;
    long long sum_alloc, sum_stored;
    double waste_max;     /* per-step waste, over steps with kv_usage >= 0.5 */
    int loaded_steps;
    double peak_usage;
    long long preemptions, prefix_queries, prefix_hits;
    double forward_s, sample_s; /* engine thread time in forward passes / in sampling */
};

/* ---- flags ---- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_throughput --model DIR [--num-prompts 200] [--seed 1] [--threads N]\n"
            "         [--min-in 16 --max-in 128 --min-out 16 --max-out 128]\n"
            "         [--shared-prefix 64 --shared-frac 0.5] [--mode both|batched|serial]\n"
            "         [--max-num-seqs 256] [--max-num-batched-tokens 2048] [--kv-cache-space GiB]\n"
            "Shared-prefix prompts are the prefix plus their own [min-in, max-in] tokens.\n");
}

static int parse_flag(struct opts *o, const char *f, const char *v) {
    int seed = 0;
    if (!strcmp(f, "--model")) o->model = v;
    else if (!strcmp(f, "--num-prompts")) return parse_int(f, v, 1, &o->num_prompts);
    else if (!strcmp(f, "--seed")) {
        if (parse_int(f, v, 0, &seed)) return FOLIO_EINVAL;
        o->seed = (uint64_t)seed;
    } else if (!strcmp(f, "--threads")) return parse_int(f, v, 0, &o->threads);
    else if (!strcmp(f, "--min-in")) return parse_int(f, v, 1, &o->min_in);
    else if (!strcmp(f, "--max-in")) return parse_int(f, v, 1, &o->max_in);
    else if (!strcmp(f, "--min-out")) return parse_int(f, v, 1, &o->min_out);
    else if (!strcmp(f, "--max-out")) return parse_int(f, v, 1, &o->max_out);
    else if (!strcmp(f, "--shared-prefix")) return parse_int(f, v, 0, &o->shared_prefix);
    else if (!strcmp(f, "--shared-frac")) return parse_double(f, v, 0.0, 1.0, &o->shared_frac);
    else if (!strcmp(f, "--max-num-seqs")) return parse_int(f, v, 1, &o->max_num_seqs);
    else if (!strcmp(f, "--max-num-batched-tokens")) return parse_int(f, v, 1, &o->max_num_batched_tokens);
    else if (!strcmp(f, "--kv-cache-space")) return parse_double(f, v, 1e-9, 1e6, &o->kv_cache_space);
    else if (!strcmp(f, "--mode")) {
        o->batched = !strcmp(v, "both") || !strcmp(v, "batched");
        o->serial = !strcmp(v, "both") || !strcmp(v, "serial");
        if (!o->batched && !o->serial)
            return folio_err(FOLIO_EINVAL, "--mode: expected both, batched or serial, got '%s'", v);
    } else return folio_err(FOLIO_EINVAL, "unknown flag '%s' (--help lists them)", f);
    return 0;
}

static int parse_args(int argc, char **argv, struct opts *o) {
    *o = (struct opts){.num_prompts = 200, .seed = 1, .min_in = 16, .max_in = 128, .min_out = 16,
                       .max_out = 128, .shared_prefix = 64, .shared_frac = 0.5, .batched = 1, .serial = 1,
                       .max_num_seqs = 256, .max_num_batched_tokens = 2048};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) return folio_err(FOLIO_EINVAL, "%s needs a value", argv[i]);
        if (parse_flag(o, argv[i], argv[i + 1])) return FOLIO_EINVAL;
        i++;
    }
    if (!o->model) return folio_err(FOLIO_EINVAL, "--model DIR is required");
    if (o->min_in > o->max_in || o->min_out > o->max_out)
        return folio_err(FOLIO_EINVAL, "--min-in/--min-out must not exceed --max-in/--max-out");
    return 0;
}

/* ---- workload ---- */

static void workload_free(struct workload *w) {
    if (w->prompts)
        for (int i = 0; i < w->n; i++) free(w->prompts[i]);
    free(w->prompts);
    free(w->in_len);
    free(w->out_len);
    free(w->out_off);
    memset(w, 0, sizeof *w);
}

static int workload_build(const struct opts *o, int vocab, struct workload *w) {
    int rc = 0;
    uint64_t st = o->seed;
    const int lo = vocab / 2 < 300 ? vocab / 2 : 300;
    int32_t *prefix = malloc(sizeof(int32_t) * (size_t)(o->shared_prefix + 1));
    w->n = o->num_prompts;
    w->prompts = calloc((size_t)w->n, sizeof *w->prompts);
    w->in_len = calloc((size_t)w->n, sizeof *w->in_len);
    w->out_len = calloc((size_t)w->n, sizeof *w->out_len);
    w->out_off = calloc((size_t)w->n + 1, sizeof *w->out_off);
    if (!prefix || !w->prompts || !w->in_len || !w->out_len || !w->out_off) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory for the workload");
        goto out;
    }
    for (int j = 0; j < o->shared_prefix; j++) prefix[j] = rng_range(&st, lo, vocab - 1);
    for (int i = 0; i < w->n; i++) {
        int own = rng_range(&st, o->min_in, o->max_in);
        w->out_len[i] = rng_range(&st, o->min_out, o->max_out);
        int shared = o->shared_prefix > 0 && (double)(rng_next(&st) >> 11) / 9007199254740992.0 < o->shared_frac;
        int pre = shared ? o->shared_prefix : 0;
        w->in_len[i] = pre + own;
        if (!(w->prompts[i] = malloc(sizeof(int32_t) * (size_t)w->in_len[i]))) {
            rc = folio_err(FOLIO_ENOMEM, "out of memory for the workload");
            goto out;
        }
        memcpy(w->prompts[i], prefix, sizeof(int32_t) * (size_t)pre);
        for (int j = pre; j < w->in_len[i]; j++) w->prompts[i][j] = rng_range(&st, lo, vocab - 1);
        w->out_off[i + 1] = w->out_off[i] + (size_t)w->out_len[i];
        w->in_tokens += w->in_len[i];
        w->out_tokens += w->out_len[i];
    }
out:
    free(prefix);
    return rc;
}

/* ---- running ---- */

static void run_free(struct run *r) {
    free(r->ids);
    free(r->got);
    free(r->done);
    memset(r, 0, sizeof *r);
}

static int run_init(struct run *r, const struct workload *w) {
    memset(r, 0, sizeof *r);
    r->ids = calloc(w->out_off[w->n] + 1, sizeof *r->ids);
    r->got = calloc((size_t)w->n, sizeof *r->got);
    r->done = calloc((size_t)w->n, sizeof *r->done);
    if (!r->ids || !r->got || !r->done) return folio_err(FOLIO_ENOMEM, "out of memory for the results");
    return 0;
}

static int make_engine(const struct opts *o, struct engine **e) {
    struct engine_params p = engine_default_params();
    p.model = o->model;
    p.threads = o->threads;
    p.max_num_seqs = o->max_num_seqs;
    p.max_num_batched_tokens = o->max_num_batched_tokens;
    if (o->kv_cache_space > 0) p.kv_cache_space = o->kv_cache_space;
    p.seed = o->seed ? o->seed : 1;
    return engine_create(&p, e);
}

static int submit(struct engine *e, const struct workload *w, int i, struct engine_req **h) {
    struct engine_request rq = {.prompt = w->prompts[i], .num_prompt = w->in_len[i]};
    rq.params = sampler_default_params();
    rq.params.temperature = 1.0f;
    rq.params.top_p = 1.0f;
    rq.params.ignore_eos = 1;
    rq.params.max_tokens = w->out_len[i];
    rq.params.has_seed = 1;
    rq.params.seed = (uint64_t)i;
    int rc = engine_submit(e, &rq, h);
    if (rc) {
        char why[512]; /* folio_err formats into the buffer folio_last_error() reads */
        snprintf(why, sizeof why, "%s", folio_last_error());
        folio_err(rc, "request %d (%d prompt tokens, %d output): %s", i, w->in_len[i], w->out_len[i], why);
    }
    return rc;
}

/* Reads whatever request i has produced; marks it done once it has finished and been read. */
static int drain(struct engine_req *h, const struct workload *w, struct run *r, int i) {
    struct engine_output out;
    for (;;) {
        int k = engine_read(h, &out, 0);
        if (k == ENGINE_READ_TIMEOUT) return 0;
        if (k == ENGINE_READ_DONE) {
            if (r->got[i] != w->out_len[i])
                return folio_err(FOLIO_EINVAL, "request %d ended with %d of its %d tokens", i, r->got[i],
                                 w->out_len[i]);
            r->done[i] = 1;
            return 0;
        }
        if (r->got[i] + out.num_tokens > w->out_len[i])
            return folio_err(FOLIO_EINVAL, "request %d produced more than its %d tokens", i, w->out_len[i]);
        memcpy(r->ids + w->out_off[i] + r->got[i], out.token_ids, sizeof(int32_t) * (size_t)out.num_tokens);
        r->got[i] += out.num_tokens;
        if (out.error) return folio_err(FOLIO_EINVAL, "request %d failed: %s", i, out.error);
        if (out.finish != ENGINE_FINISH_NONE && out.finish != ENGINE_FINISH_LENGTH)
            return folio_err(FOLIO_EINVAL, "request %d finished with '%s', expected 'length'", i,
                             engine_finish_name(out.finish));
    }
}

/* One step, with its stats folded into r. Returns the sequences scheduled or an error. */
static int step(struct engine *e, struct run *r) {
    int ns = engine_step(e);
    if (ns < 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", folio_last_error());
        return folio_err(ns, "engine_step: %s", why);
    }
    if (ns == 0) return 0;
    struct engine_stats st;
    engine_get_stats(e, &st);
    r->steps++;
    r->sum_batch += ns;
    r->sum_alloc += st.kv_allocated_slots;
    r->sum_stored += st.kv_stored_tokens;
    if (st.kv_usage > r->peak_usage) r->peak_usage = st.kv_usage;
    if (st.kv_usage >= 0.5) {
        r->loaded_steps++;
        if (st.waste > r->waste_max) r->waste_max = st.waste;
    }
    r->preemptions = st.num_preemptions;
    r->forward_s = st.forward_seconds;
    r->sample_s = st.sample_seconds;
    r->prefix_queries = st.prefix_queries;
    r->prefix_hits = st.prefix_hits;
    return ns;
}

static int run_batched(struct engine *e, const struct workload *w, struct engine_req **h, struct run *r) {
    int rc = 0, left = w->n;
    double t0 = folio_now();
    for (int i = 0; i < w->n; i++)
        if ((rc = submit(e, w, i, &h[i]))) return rc;
    while (left > 0) {
        int ns = step(e, r);
        if (ns < 0) return ns;
        for (int i = 0; i < w->n; i++) {
            if (r->done[i]) continue;
            if ((rc = drain(h[i], w, r, i))) return rc;
            if (r->done[i]) left--;
        }
        if (ns == 0 && left > 0)
            return folio_err(FOLIO_EINVAL, "the engine scheduled nothing with %d requests unfinished", left);
    }
    r->seconds = folio_now() - t0;
    return 0;
}

static int run_serial(struct engine *e, const struct workload *w, struct engine_req **h, struct run *r) {
    int rc;
    double t0 = folio_now();
    for (int i = 0; i < w->n; i++) {
        if ((rc = submit(e, w, i, &h[i]))) return rc;
        while (!r->done[i]) {
            int ns = step(e, r);
            if (ns < 0) return ns;
            if ((rc = drain(h[i], w, r, i))) return rc;
            if (ns == 0 && !r->done[i])
                return folio_err(FOLIO_EINVAL, "the engine scheduled nothing with request %d unfinished", i);
        }
        engine_release(h[i]);
        h[i] = NULL;
    }
    r->seconds = folio_now() - t0;
    return 0;
}

/* describe: print what runs where (for the first mode). */
static int run_mode(const struct opts *o, const struct workload *w, int batched, int describe, struct run *r) {
    struct engine *e = NULL;
    struct engine_req **h = calloc((size_t)w->n, sizeof *h);
    int rc = h ? run_init(r, w) : folio_err(FOLIO_ENOMEM, "out of memory");
    if (rc) goto out;
    if ((rc = make_engine(o, &e))) goto out;
    if (describe) {
        char desc[512];
        engine_describe(e, desc, sizeof desc);
        printf("model: %s %s\n", o->model, desc);
        fflush(stdout);
    }
    rc = batched ? run_batched(e, w, h, r) : run_serial(e, w, h, r);
out:
    if (h)
        for (int i = 0; i < w->n; i++) engine_release(h[i]);
    free(h);
    engine_free(e);
    return rc;
}

/* ---- report ---- */

static int compare(const struct workload *w, const struct run *a, const struct run *b) {
    int bad = 0;
    for (int i = 0; i < w->n; i++) {
        size_t off = w->out_off[i];
        for (int k = 0; k < w->out_len[i]; k++) {
            if (a->ids[off + k] == b->ids[off + k]) continue;
            if (bad < 5)
                fprintf(stderr, "bench_throughput: request %d differs at output token %d: batched %d, serial %d\n",
                        i, k, a->ids[off + k], b->ids[off + k]);
            bad++;
            break;
        }
    }
    if (bad) return folio_err(FOLIO_EINVAL, "%d of %d requests produced different tokens batched and serial", bad, w->n);
    return 0;
}

static void print_row(const char *mode, const struct workload *w, const struct run *r) {
    printf("| %-7s | %8d | %7lld | %7lld | %7.2f | %9.1f | %11.1f |\n", mode, w->n, w->in_tokens, w->out_tokens,
           r->seconds, (double)w->out_tokens / r->seconds, (double)(w->in_tokens + w->out_tokens) / r->seconds);
}

static void report(const struct opts *o, const struct workload *w, const struct run *b, const struct run *s) {
    double btps = o->batched ? (double)w->out_tokens / b->seconds : 0;
    double stps = o->serial ? (double)w->out_tokens / s->seconds : 0;
    double ratio = o->batched && o->serial ? btps / stps : 0;
    printf("| mode    | requests | in tok  | out tok | time s  | out tok/s | total tok/s |\n");
    printf("|---------|----------|---------|---------|---------|-----------|-------------|\n");
    if (o->batched) print_row("batched", w, b);
    if (o->serial) print_row("serial", w, s);
    if (ratio > 0) printf("batched/serial output throughput: %.2fx\n", ratio);
    if (o->batched)
        printf("batched: %.1f s in forward passes, %.1f s sampling and streaming, %.1f s elsewhere\n", b->forward_s,
               b->sample_s, b->seconds - b->forward_s - b->sample_s);
    if (o->serial)
        printf("serial: %.1f s in forward passes, %.1f s sampling and streaming, %.1f s elsewhere\n", s->forward_s,
               s->sample_s, s->seconds - s->forward_s - s->sample_s);
    double waste = 0, hit = 0;
    if (o->batched) {
        waste = b->sum_alloc ? 1.0 - (double)b->sum_stored / (double)b->sum_alloc : 0;
        hit = b->prefix_queries ? (double)b->prefix_hits / (double)b->prefix_queries : 0;
        char wmax[64];
        if (b->loaded_steps) snprintf(wmax, sizeof wmax, "%.1f%% (%d steps)", 100 * b->waste_max, b->loaded_steps);
        else snprintf(wmax, sizeof wmax, "n/a");
        printf("batched: KV waste %.1f%% aggregate, max under load (usage >= 50%%) %s; peak KV usage %.1f%%\n",
               100 * waste, wmax, 100 * b->peak_usage);
        printf("batched: prefix cache hit rate %.1f%% (%lld of %lld prompt tokens); preemptions %lld; "
               "steps %lld, mean batch %.1f seqs\n",
               100 * hit, b->prefix_hits, b->prefix_queries, b->preemptions, b->steps,
               b->steps ? (double)b->sum_batch / (double)b->steps : 0.0);
    }
    printf("bench_throughput: batched_tps=%.2f serial_tps=%.2f ratio=%.3f waste_pct=%.2f waste_max_pct=%.2f "
           "prefix_hit_pct=%.2f preemptions=%lld\n",
           btps, stps, ratio, 100 * waste, 100 * b->waste_max, 100 * hit, b->preemptions);
}

/* The vocabulary, from config.json, without loading the weights. */
static int probe(const struct opts *o, int *vocab) {
    struct model_config cfg;
    int rc = config_load(o->model, &cfg);
    if (rc) return rc;
    *vocab = cfg.vocab_size;
    if (*vocab < 2) return folio_err(FOLIO_EINVAL, "%s: vocab_size %d is too small", o->model, *vocab);
    return 0;
}

int main(int argc, char **argv) {
    struct opts o;
    struct workload w = {0};
    struct run b = {0}, s = {0};
    int vocab = 0, rc;
    if ((rc = parse_args(argc, argv, &o)) || (rc = probe(&o, &vocab)) || (rc = workload_build(&o, vocab, &w)))
        goto out;
    printf("workload: %d prompts, in %lld tokens, out %lld tokens, %.0f%% share a %d-token prefix, seed %llu\n",
           w.n, w.in_tokens, w.out_tokens, 100 * o.shared_frac, o.shared_prefix, (unsigned long long)o.seed);
    fflush(stdout);
    if (o.batched && (rc = run_mode(&o, &w, 1, 1, &b))) goto out;
    if (o.serial && (rc = run_mode(&o, &w, 0, !o.batched, &s))) goto out;
    report(&o, &w, &b, &s);
    if (o.batched && o.serial) rc = compare(&w, &b, &s);
out:
    if (rc) {
        fprintf(stderr, "bench_throughput: %s\n", folio_last_error());
        if (argc < 2) usage(stderr);
    }
    run_free(&b);
    run_free(&s);
    workload_free(&w);
    return rc ? 1 : 0;
}
