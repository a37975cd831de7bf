/* folio-engine: the engine's command line.
 *   folio-engine [serve] --model DIR [--host H] [--port P] [--served-model-name NAME...]
 *                         [--api-key KEY] [--chat-template FILE] ...   (the OpenAI server)
 *   folio-engine generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--max-tokens N]
 *                         [--temperature T] [--seed S] [--ignore-eos] [--show-ids]
 *   folio-engine logits   --model DIR --prompt-ids "1,2;3,4" --out FILE [--chunk N]
 * Common: --dtype auto|float32|float16|bfloat16, --kv-cache-dtype auto|bfloat16|float32|fp8,
 *         --quantization int8|int4|fp8,
 *         --block-size N, --threads N,
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

#include "backend/backend.h"
#include "base/quant.h"
#include "core/batch.h"
#include "core/engine.h"
#include "core/kv_cache.h"
#include "model/model.h"
#include "server/serve.h"
#include "text/tokenizer.h"
#include "base/sbuf.h"
#include "base/util.h"

#define MAX_SEQS 64

#define MAX_STOP 16

struct opts {
    const char *cmd, *model, *prompt, *prompt_ids, *out, *dtype, *device;
    const char *kv_cache_dtype;
    const char *quantization;
    struct api_params api;
    int max_waiting;
    float drain_timeout;
    int block_size, threads, chunk, max_batched, show_ids;
    int max_num_seqs, max_model_len, prefix_caching, enforce_eager;
    double kv_cache_space, gpu_memory_utilization;
    struct sampling_params sp;
    const char *stops[MAX_STOP];
};

static int parse_float(const char *flag, const char *s, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !isfinite(v)) return folio_err(FOLIO_EINVAL, "%s expects a number, got '%s'", flag, s);
    *out = (float)v;
    return 0;
}

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
    "usage: folio-engine [serve] --model DIR [options]   (OpenAI-compatible server)\n"
    "       folio-engine generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [options]\n"
    "       folio-engine logits   --model DIR --prompt-ids \"1,2;3,4\" --out FILE [--chunk N] [options]\n"
    "generate (sampling, as the OpenAI API):\n"
    "          --max-tokens N (64)  --temperature T (1.0; 0 = greedy)  --top-p P  --top-k K  --min-p P\n"
    "          --repetition-penalty R  --presence-penalty P  --frequency-penalty F  --seed S  --n N\n"
    "          --stop STR (repeatable)  --min-tokens N  --ignore-eos  --show-ids\n"
    "engine:   --max-num-seqs N  --max-model-len N  --kv-cache-space GiB (CPU KV cache, 4)\n"
    "          --gpu-memory-utilization F (0.9: this engine's share of the GPU: weights, activations, KV)\n"
    "          --enforce-eager (no CUDA graphs: every step launches its kernels one by one)\n"
    "          --enable-prefix-caching | --no-enable-prefix-caching\n"
    "serve:    --host H (127.0.0.1)  --port P (8000)  --served-model-name NAME [NAME...] (the --model argument)\n"
    "          --api-key KEY (or FOLIO_API_KEY)  --allowed-origins '[\"http://a\"]'  --chat-template FILE\n"
    "          --tool-call-parser hermes|llama3_json|mistral|qwen3_coder|none  --enable-auto-tool-choice (always on)\n"
    "          --reasoning-parser qwen3|deepseek_r1|none   (both default to what the chat template shows)\n"
    "          --max-waiting N (0: no limit)  --max-request-body MiB (16)  --max-connections N (512)\n"
    "          --drain-timeout S (30)  --seed S\n"
    "          --header-timeout S (20: to send the headers; also the longest stall in a body or in reading a response)\n"
    "          --max-connections-per-client N (0: no cap)  --server-name NAME (a Host allowed on loopback)\n"
    "          per request: --max-stop-bytes N (16384: the stop strings, all together)  --max-stop-token-ids N (1024)\n"
    "          --max-logit-bias N (1024)  --max-json-values N (1000000: values in a body, or 413)\n"
    "          --max-logprob-entries N (262144: logprobs a non-streaming answer could hold, all choices together)\n"
    "          --max-grammar-bytes N (262144: a structured-output JSON Schema, regex, grammar or choice list)\n"
    "          (prompts x n may not exceed --max-num-seqs)\n"
    "common:   --device auto|cpu|cuda (auto: the GPU when built with CUDA=1 and one is present)\n"
    "          --dtype auto|float32|float16|bfloat16  --block-size N (16)  --threads N (all CPUs)\n"
    "          --kv-cache-dtype auto|bfloat16|float32|fp8 (auto: float32 for float32 weights, else bfloat16;\n"
    "                     fp8: e4m3 with the checkpoint's per-layer k_scale/v_scale, else 1)\n"
    "          --quantization int8|int4|fp8 (quantize the layers' matrices and the LM head at load:\n"
    "                     int8/int4 in blocks of 32 with f16 scales, fp8 e4m3 with a scale per row;\n"
    "                     AWQ, GPTQ and FP8 checkpoints are detected from config.json instead)\n"
    "          --max-num-batched-tokens N (2048: the prefill chunk)\n";

static int parse_args(int argc, char **argv, struct opts *o) {
    *o = (struct opts){.block_size = 16, .max_batched = 2048, .dtype = "auto", .prefix_caching = 1,
                       .drain_timeout = 30};
    o->sp = sampler_default_params();
    o->sp.max_tokens = 64;
    o->sp.stop = o->stops;
    o->api = api_default_params();
    o->api.limits = api_default_limits();
    o->api.api_key = getenv("FOLIO_API_KEY");
    if (argc < 2) return folio_err(FOLIO_EINVAL, "no command (folio-engine --help lists them)");
    /* Like `vllm serve`, serving is the default: `folio-engine --model DIR --port 8000`. */
    int first = 2;
    o->cmd = argv[1];
    if (!strncmp(o->cmd, "--", 2)) {
        o->cmd = "serve";
        first = 1;
    }
    if (strcmp(o->cmd, "generate") != 0 && strcmp(o->cmd, "logits") != 0 && strcmp(o->cmd, "serve") != 0)
        return folio_err(FOLIO_EINVAL, "unknown command '%s' (serve, generate, logits)", o->cmd);
    const int serving = !strcmp(o->cmd, "serve");
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (serving && !strcmp(a, "--served-model-name")) {
            /* One or more names, as vLLM: the first is the id responses carry. */
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
                if (o->api.num_names == API_MAX_NAMES) return folio_err(FOLIO_EINVAL, "at most %d served model names", API_MAX_NAMES);
                o->api.names[o->api.num_names++] = argv[++i];
            }
            if (o->api.num_names == 0) return folio_err(FOLIO_EINVAL, "--served-model-name needs a value");
            continue;
        }
        if (strcmp(a, "--ignore-eos") == 0) {
            o->sp.ignore_eos = 1;
            continue;
        }
        if (serving && strcmp(a, "--enable-auto-tool-choice") == 0) {
            /* vLLM's switch for parsing calls under tool_choice auto: folio always does when the
             * model's format is known, so it is accepted for compatibility. */
            continue;
        }
        if (strcmp(a, "--enforce-eager") == 0) {
            o->enforce_eager = 1;
            continue;
        }
        if (strcmp(a, "--show-ids") == 0) {
            o->show_ids = 1;
            continue;
        }
        if (strcmp(a, "--enable-prefix-caching") == 0 || strcmp(a, "--no-enable-prefix-caching") == 0) {
            o->prefix_caching = a[2] == 'e';
            continue;
        }
        if (i + 1 >= argc) return folio_err(FOLIO_EINVAL, "%s needs a value", a);
        const char *v = argv[++i];
        if (strcmp(a, "--model") == 0) o->model = v;
        else if (strcmp(a, "--prompt") == 0) o->prompt = v;
        else if (strcmp(a, "--prompt-ids") == 0) o->prompt_ids = v;
        else if (strcmp(a, "--out") == 0) o->out = v;
        else if (strcmp(a, "--dtype") == 0) o->dtype = v;
        else if (strcmp(a, "--kv-cache-dtype") == 0) o->kv_cache_dtype = v;
        else if (strcmp(a, "--quantization") == 0) o->quantization = v;
        else if (strcmp(a, "--device") == 0) o->device = v;
        else if (serving && strcmp(a, "--host") == 0) o->api.host = v;
        else if (serving && strcmp(a, "--port") == 0) rc = parse_int(a, v, 0, 65535, &o->api.port);
        else if (serving && strcmp(a, "--api-key") == 0) o->api.api_key = v;
        else if (serving && strcmp(a, "--allowed-origins") == 0) o->api.allowed_origins = v;
        else if (serving && strcmp(a, "--chat-template") == 0) o->api.chat_template = v;
        else if (serving && strcmp(a, "--tool-call-parser") == 0) o->api.tool_call_parser = v;
        else if (serving && strcmp(a, "--reasoning-parser") == 0) o->api.reasoning_parser = v;
        else if (serving && strcmp(a, "--max-waiting") == 0) rc = parse_int(a, v, 0, 1 << 24, &o->max_waiting);
        else if (serving && strcmp(a, "--max-connections") == 0) rc = parse_int(a, v, 1, 1 << 16, &o->api.num_threads);
        else if (serving && strcmp(a, "--header-timeout") == 0) rc = parse_int(a, v, 1, 3600, &o->api.timeout_s);
        else if (serving && strcmp(a, "--max-connections-per-client") == 0)
            rc = parse_int(a, v, 0, 1 << 16, &o->api.max_conns_per_client);
        else if (serving && strcmp(a, "--server-name") == 0) {
            if (o->api.num_server_names >= API_MAX_NAMES) rc = folio_err(FOLIO_EINVAL, "at most %d --server-name", API_MAX_NAMES);
            else o->api.server_names[o->api.num_server_names++] = v;
        }
        else if (serving && strcmp(a, "--max-stop-bytes") == 0) {
            int b = 0;
            rc = parse_int(a, v, 1, 1 << 30, &b);
            o->api.limits.max_stop_bytes = (size_t)b;
        } else if (serving && strcmp(a, "--max-stop-token-ids") == 0)
            rc = parse_int(a, v, 1, 1 << 24, &o->api.limits.max_stop_token_ids);
        else if (serving && strcmp(a, "--max-logit-bias") == 0)
            rc = parse_int(a, v, 1, 1 << 24, &o->api.limits.max_logit_bias);
        else if (serving && strcmp(a, "--max-json-values") == 0) {
            int nv = 0;
            rc = parse_int(a, v, 1, 1 << 30, &nv);
            o->api.limits.max_json_values = nv;
        } else if (serving && strcmp(a, "--max-logprob-entries") == 0) {
            int ne = 0;
            rc = parse_int(a, v, 1, 1 << 30, &ne);
            o->api.limits.max_logprob_entries = ne;
        } else if (serving && strcmp(a, "--max-grammar-bytes") == 0) {
            int nb = 0;
            rc = parse_int(a, v, 1, 16 << 20, &nb);
            o->api.limits.max_grammar_bytes = (size_t)nb;
        }
        else if (serving && strcmp(a, "--drain-timeout") == 0) rc = parse_float(a, v, &o->drain_timeout);
        else if (serving && strcmp(a, "--max-request-body") == 0) {
            int mib = 0;
            rc = parse_int(a, v, 1, 4096, &mib);
            o->api.max_body = (size_t)mib << 20;
        }
        else if (strcmp(a, "--max-tokens") == 0) rc = parse_int(a, v, 1, 1 << 24, &o->sp.max_tokens);
        else if (strcmp(a, "--min-tokens") == 0) rc = parse_int(a, v, 0, 1 << 24, &o->sp.min_tokens);
        else if (strcmp(a, "--n") == 0) rc = parse_int(a, v, 1, 128, &o->sp.n);
        else if (strcmp(a, "--top-k") == 0) rc = parse_int(a, v, -1, 1 << 24, &o->sp.top_k);
        else if (strcmp(a, "--block-size") == 0) rc = parse_int(a, v, 1, 1024, &o->block_size);
        else if (strcmp(a, "--threads") == 0) rc = parse_int(a, v, 1, 1024, &o->threads);
        else if (strcmp(a, "--chunk") == 0) rc = parse_int(a, v, 1, 1 << 20, &o->chunk);
        else if (strcmp(a, "--max-num-batched-tokens") == 0) rc = parse_int(a, v, 1, 1 << 20, &o->max_batched);
        else if (strcmp(a, "--max-num-seqs") == 0) rc = parse_int(a, v, 1, 1 << 16, &o->max_num_seqs);
        else if (strcmp(a, "--max-model-len") == 0) rc = parse_int(a, v, 1, 1 << 24, &o->max_model_len);
        else if (strcmp(a, "--temperature") == 0) rc = parse_float(a, v, &o->sp.temperature);
        else if (strcmp(a, "--top-p") == 0) rc = parse_float(a, v, &o->sp.top_p);
        else if (strcmp(a, "--min-p") == 0) rc = parse_float(a, v, &o->sp.min_p);
        else if (strcmp(a, "--repetition-penalty") == 0) rc = parse_float(a, v, &o->sp.repetition_penalty);
        else if (strcmp(a, "--presence-penalty") == 0) rc = parse_float(a, v, &o->sp.presence_penalty);
        else if (strcmp(a, "--frequency-penalty") == 0) rc = parse_float(a, v, &o->sp.frequency_penalty);
        else if (strcmp(a, "--seed") == 0) {
            char *end;
            errno = 0;
            o->sp.seed = strtoull(v, &end, 10);
            o->sp.has_seed = 1;
            if (errno || *end || end == v) rc = folio_err(FOLIO_EINVAL, "--seed expects an unsigned integer");
        } else if (strcmp(a, "--gpu-memory-utilization") == 0) {
            char *end;
            errno = 0;
            double f = strtod(v, &end);
            if (errno || *end || end == v || !(f > 0.0 && f <= 1.0))
                rc = folio_err(FOLIO_EINVAL, "--gpu-memory-utilization expects a fraction in (0, 1], got '%s'", v);
            o->gpu_memory_utilization = f;
        } else if (strcmp(a, "--kv-cache-space") == 0) {
            float f;
            if (!(rc = parse_float(a, v, &f)) && !(f > 0))
                rc = folio_err(FOLIO_EINVAL, "--kv-cache-space expects a positive number of GiB");
            o->kv_cache_space = f;
        } else if (strcmp(a, "--stop") == 0) {
            if (o->sp.num_stop == MAX_STOP) return folio_err(FOLIO_EINVAL, "at most %d --stop strings", MAX_STOP);
            o->stops[o->sp.num_stop++] = v;
        } else {
            return folio_err(FOLIO_EINVAL, "unknown option '%s'", a);
        }
        if (rc) return rc;
    }
    if (!o->model) return folio_err(FOLIO_EINVAL, "--model DIR is required");
    if (serving) return 0;
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

struct run_state {
    struct model *m;
    struct kv_cache *kv;
    struct batch *batch;
    int32_t *blocks; /* [max_num_seqs, max_blocks_per_seq] the sequences' block tables */
};

static int run_state_init(struct run_state *r, struct model *m, int num_blocks) {
    const struct model_params *p = model_params(m);
    const int mb = model_max_blocks_per_seq(m);
    int rc;
    memset(r, 0, sizeof *r);
    r->m = m;
    if ((rc = model_alloc_kv(m, num_blocks))) return rc;
    r->kv = kv_cache_create(&(struct kv_cache_params){num_blocks, p->block_size, 0});
    r->batch = batch_create(&(struct batch_params){.max_tokens = p->max_num_batched_tokens, .max_seqs = p->max_num_seqs,
                                                   .max_logits = p->max_num_logits, .max_blocks_per_seq = mb,
                                                   .block_size = p->block_size});
    r->blocks = malloc(sizeof(int32_t) * (size_t)p->max_num_seqs * (size_t)mb);
    if (!r->kv || !r->batch || !r->blocks) return folio_err(FOLIO_ENOMEM, "out of memory");
    return 0;
}

static void run_state_free(struct run_state *r) {
    kv_cache_free(r->kv);
    batch_free(r->batch);
    free(r->blocks);
}

static int blocks_for(int tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

static int load_model(const struct opts *o, struct model_params *mp, struct backend **b, struct model **m) {
    int rc;
    if (strcmp(o->dtype, "auto") != 0) {
        mp->dtype_auto = 0;
        if ((rc = folio_dtype_parse(o->dtype, &mp->dtype))) return rc;
    }
    if ((rc = quant_parse_method(o->quantization, &mp->quantization))) return rc;
    struct model_config cfg; /* --kv-cache-dtype auto follows the weights, as in the engine */
    if ((rc = config_load(o->model, &cfg)) ||
        (rc = config_kv_dtype(o->kv_cache_dtype, mp->dtype_auto ? cfg.torch_dtype : mp->dtype, &mp->kv_dtype)))
        return rc;
    mp->block_size = o->block_size;
    const char *dev = o->device ? o->device : "cpu";
    if (!strcmp(dev, "cuda")) {
#ifdef FOLIO_CUDA
        if ((rc = backend_cuda_create(0, b))) return rc;
        return model_load(o->model, mp, *b, m);
#else
        return folio_err(FOLIO_EUNSUP, "this folio-engine was built without CUDA (build it with make CUDA=1)");
#endif
    }
    if (strcmp(dev, "cpu") != 0 && strcmp(dev, "auto") != 0)
        return folio_err(FOLIO_EINVAL, "--device must be auto, cpu or cuda, not '%s'", dev);
    if ((rc = backend_cpu_create(&(struct backend_cpu_params){.n_threads = o->threads}, b))) return rc;
    return model_load(o->model, mp, *b, m);
}

/* One line on what runs where; printed once a run has succeeded, so that an error is the only
 * line on stderr. */
static void print_banner(const struct opts *o, struct model *m, struct backend *b) {
    const struct model_config *c = model_config(m);
    const int gpu = !strcmp(backend_name(b), "cuda");
    const char *name = "";
#ifdef FOLIO_CUDA
    if (gpu) name = backend_cuda_name(b);
#endif
    if (!gpu) name = backend_cpu_isa(b);
    fprintf(stderr, "folio-engine: %s (%s, %d layers, %s weights, %.1f MiB), %s backend %s, %s KV cache\n",
            o->model, c->arch_name, c->num_layers, folio_dtype_name(model_matrix_dtype(m)),
            (double)model_weight_bytes(m) / (1 << 20), gpu ? "cuda" : "cpu", name, folio_dtype_name(model_kv_dtype(m)));
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
    for (int s = 0; s < ns; s++) kv_seq_init(&seqs[s], r.blocks + (size_t)s * mb, mb);
    for (int finished = 0; finished < total;) {
        int T = 0;
        batch_clear(r.batch);
        for (int s = 0; s < ns; s++) {
            int len = offsets[s + 1] - offsets[s], n = len - done[s] < chunk ? len - done[s] : chunk;
            if (n <= 0) continue;
            int no_copies = 0;
            if ((rc = kv_cache_reserve(r.kv, &seqs[s], done[s] + n, NULL, &no_copies)) ||
                (rc = batch_add(r.batch, &seqs[s], NULL, ids + offsets[s], done[s], n, len, BATCH_LOGITS_ALL)))
                goto out;
            for (int i = 0; i < n; i++) dst_row[T++] = offsets[s] + done[s] + i; /* logits row T's token */
            done[s] += n;
        }
        struct model_batch batch;
        batch_finish(r.batch, NULL, 0, &batch);
        if ((rc = model_forward(m, &batch, step_logits))) goto out;
        for (int s = 0; s < ns; s++) kv_cache_commit(r.kv, &seqs[s], ids + offsets[s], done[s]);
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

/* The engine flags that generate and serve share. */
static struct engine_params engine_params_from(const struct opts *o) {
    struct engine_params ep = engine_default_params();
    ep.model = o->model;
    ep.dtype = o->dtype;
    ep.kv_cache_dtype = o->kv_cache_dtype;
    ep.quantization = o->quantization;
    ep.device = o->device;
    ep.threads = o->threads;
    ep.block_size = o->block_size;
    ep.max_num_batched_tokens = o->max_batched;
    if (o->max_num_seqs) ep.max_num_seqs = o->max_num_seqs;
    ep.max_model_len = o->max_model_len;
    if (o->kv_cache_space > 0) ep.kv_cache_space = o->kv_cache_space;
    if (o->gpu_memory_utilization > 0) ep.gpu_memory_utilization = o->gpu_memory_utilization;
    ep.enable_prefix_caching = o->prefix_caching;
    ep.enforce_eager = o->enforce_eager;
    return ep;
}

/* generate runs through the engine (engine.h): the same scheduler, sampler, detokenizer and
 * stop checks that serve API requests, on the engine thread. */
static int cmd_generate(const struct opts *o) {
    int rc, n_prompt = 0;
    int32_t *prompt = NULL, **ids = NULL;
    int *n_ids = NULL;
    struct sbuf *texts = NULL; /* [n] each sample's text, when there are several */
    struct engine *e = NULL;
    struct engine_req *h = NULL;
    struct engine_params ep = engine_params_from(o);
    ep.max_num_seqs = o->max_num_seqs ? o->max_num_seqs : o->sp.n;
    if ((rc = engine_create(&ep, &e))) return rc;
    if (o->prompt_ids) {
        int offsets[MAX_SEQS + 1], ns;
        if ((rc = parse_id_lists(o->prompt_ids, &prompt, offsets, &ns))) goto out;
        if (ns != 1) {
            rc = folio_err(FOLIO_EINVAL, "generate takes one sequence of --prompt-ids");
            goto out;
        }
        n_prompt = offsets[1];
    } else if ((rc = tokenizer_encode(engine_tokenizer(e), o->prompt, strlen(o->prompt), 1, &prompt, &n_prompt))) {
        goto out;
    }
    struct engine_request rq = {.prompt = prompt, .num_prompt = n_prompt, .params = o->sp};
    /* The CLI's --max-tokens is a cap, not a demand: a long prompt gets what room is left. */
    const int room = engine_max_model_len(e) - n_prompt;
    if (rq.params.max_tokens > room && room > 0) rq.params.max_tokens = room;
    const int n = o->sp.n, cap = rq.params.max_tokens + 1;
    ids = calloc((size_t)n, sizeof *ids);
    n_ids = calloc((size_t)n, sizeof *n_ids);
    texts = calloc((size_t)n, sizeof *texts);
    if (!ids || !n_ids || !texts) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++)
        if (!(ids[i] = malloc(sizeof(int32_t) * (size_t)cap))) {
            rc = folio_err(FOLIO_ENOMEM, "out of memory");
            goto out;
        }
    if ((rc = engine_start(e))) goto out;
    double t0 = 0, t_first = 0, t_end = 0;
    if ((rc = engine_submit(e, &rq, &h))) goto out;
    struct engine_output out;
    int r, n_gen = 0;
    while ((r = engine_read(h, &out, -1)) == ENGINE_READ_OUTPUT) {
        t0 = out.arrival_time;
        if (out.first_token_time > 0 && (t_first == 0 || out.first_token_time < t_first)) t_first = out.first_token_time;
        if (out.finish_time > t_end) t_end = out.finish_time;
        for (int i = 0; i < out.num_tokens && n_ids[out.index] < cap; i++) ids[out.index][n_ids[out.index]++] = out.token_ids[i];
        n_gen += out.num_tokens;
        if (n == 1) {
            fwrite(out.text, 1, out.text_len, stdout);
            fflush(stdout);
        } else if (out.text_len > 0 && (rc = sbuf_put(&texts[out.index], out.text, out.text_len))) {
            goto out;
        }
        if (out.error) {
            rc = folio_err(FOLIO_EIO, "%s", out.error);
            goto out;
        }
    }
    if (n == 1) printf("\n");
    for (int i = 0; i < n && n > 1; i++) printf("[%d] %s\n", i, texts[i].p ? texts[i].p : "");
    if (o->show_ids)
        for (int i = 0; i < n; i++) {
            if (n == 1) printf("ids: ");
            else printf("ids[%d]: ", i);
            for (int j = 0; j < n_ids[i]; j++) printf("%s%d", j ? "," : "", ids[i][j]);
            printf("\n");
        }
    char desc[512];
    engine_describe(e, desc, sizeof desc);
    fprintf(stderr, "folio-engine: %s %s\n", o->model, desc);
    double pre_s = t_first - t0, dec_s = t_end - t_first;
    int n_dec = n_gen - n;
    fprintf(stderr, "prefill: %d tokens in %.3f s (%.1f tok/s); decode: %d tokens in %.3f s (%.1f tok/s)\n",
            n_prompt, pre_s, n_prompt / pre_s, n_dec, dec_s, n_dec > 0 ? n_dec / dec_s : 0.0);
out:
    engine_release(h);
    engine_free(e);
    free(prompt);
    for (int i = 0; ids && i < o->sp.n; i++) free(ids[i]);
    for (int i = 0; texts && i < o->sp.n; i++) sbuf_free(&texts[i]);
    free(ids);
    free(n_ids);
    free(texts);
    return rc;
}

static int cmd_serve(struct opts *o) {
    struct engine_params ep = engine_params_from(o);
    ep.max_waiting = o->max_waiting;
    if (o->sp.has_seed) ep.seed = o->sp.seed;
    o->api.model_path = o->model;
    return serve_run(&ep, &o->api, o->drain_timeout);
}

int main(int argc, char **argv) {
    struct opts o;
    folio_malloc_tune(); /* before any thread: big buffers mmapped, freed memory returned */
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    int rc = parse_args(argc, argv, &o);
    if (!rc) rc = !strcmp(o.cmd, "serve") ? cmd_serve(&o) : !strcmp(o.cmd, "logits") ? cmd_logits(&o) : cmd_generate(&o);
    if (rc) {
        fflush(stdout);
        fprintf(stderr, "folio-engine: error: %s\n", folio_last_error());
        return 1;
    }
    return 0;
}
