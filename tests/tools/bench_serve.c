/* bench_serve: online serving benchmark, in the spirit of `vllm bench serve`. It sends a
 * deterministic set of random-token completions to a running OpenAI-compatible server and
 * measures what a client sees: time to first token (TTFT), time per output token after the
 * first (TPOT), inter-token latency (ITL, the gaps between stream events) and end-to-end
 * latency, plus request and token throughput over the whole run.
 *
 * The client shares the machine with the server it measures, so it is kept cheap: one
 * thread, plain non-blocking sockets under poll(), one connection per request, every request
 * rendered before the clock starts, and an incremental HTTP/1.1 chunked + SSE parser (cJSON
 * only for the few hundred bytes of each event).
 *
 * Workload (one seeded splitmix64, as bench_throughput): num_prompts requests whose input and
 * output lengths are uniform in [L*(1-X), L*(1+X)] (vLLM's --random-range-ratio), with token
 * ids uniform in [min(300, V/2), V), sent as token id lists so that input lengths are exact.
 * Ids below 300 are left out because small ids are where byte-level and SentencePiece
 * tokenizers keep their special and byte tokens. Arrivals are a Poisson process of rate R
 * from a second stream of the same seed (so the rate does not change the prompts), or all at
 * time 0 for "inf"; at most C requests are in flight, and later ones wait for a slot, as
 * vLLM's semaphore does. Every request is greedy (temperature 0, as vLLM's client sends),
 * ignore_eos, max_tokens = its output length, streamed with include_usage.
 *
 * A request succeeds when the server answers 200 with a chunked event stream that carries a
 * finish_reason, a usage event whose prompt_tokens and completion_tokens are the requested
 * lengths, then [DONE] and the terminating chunk. Any failure makes the exit status 1.
 *
 * Timings follow vLLM: TTFT runs from the connect to the first event with choices; each later
 * such event adds one ITL sample (several tokens can ride in one event when the server
 * batches their writes, so ITL is per event and TPOT = (E2E - TTFT) / (output tokens - 1) is
 * per token); E2E ends at the terminating chunk.
 *
 * --offline DIR runs the same workload through the engine in this process instead (no HTTP,
 * no engine thread: engine_step on this thread, as bench_throughput does), with
 * max_num_seqs = C, and reports the same table; the ratio of the two output throughputs is
 * the cost of the HTTP layer. One warm-up request, with a prompt outside the workload (so it
 * seeds no prefix-cache hits), runs before the clock starts in both modes.
 *
 * The last line of stdout is machine-readable for scripts; --json FILE writes the same
 * numbers as a JSON object. */
#include "tool_util.h"
#include "core/engine.h"
#include "base/sbuf.h"
#include "base/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "model/config.h"

struct opts {
    const char *host, *model, *endpoint, *api_key, *json_path;
    int port;
    int num_prompts;
    double request_rate; /* requests/s; INFINITY: all at once */
    int max_concurrency; /* 0: no limit */
    int input_len, output_len;
    double range_ratio;
    int vocab_size;      /* 0: from --offline's config.json */
    uint64_t seed;
    double timeout_s;    /* a request that receives nothing this long fails */
    const char *offline; /* checkpoint dir: run the engine in-process instead */
    int threads;
    double kv_cache_space;
    const char *device, *dtype; /* --offline: the engine's --device and --dtype */
    double gpu_memory_utilization;
    int enforce_eager;   /* --offline: no CUDA graphs */
    int chat;            /* --chat: /v1/chat/completions with the prompt as a user message's text */
    const char *extra;   /* --extra-body: members added to every request body (a structured
                          * output spec, say), "" for none; a sample may then end early */
};

struct workload {
    int n;
    int32_t **prompts; /* [n][in_len[i]] */
    int *in_len;       /* [n] */
    int *out_len;      /* [n] */
    double *arrival;   /* [n] seconds after the start */
    long long in_tokens, out_tokens;
};

/* What one request measured. Times are folio_now() seconds. */
struct result {
    int ok;
    char error[200];
    double t_start, t_first, t_last, t_end;
    double *itl; /* [n_itl] gaps between events with choices */
    int n_itl, cap_itl;
    int prompt_tokens, output_tokens; /* from the usage event (offline: the engine) */
};

/* ---- flags ---- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_serve [--host 127.0.0.1] --port P --model NAME [--endpoint /v1/completions]\n"
            "         [--api-key KEY] [--num-prompts 1000] [--request-rate inf] [--max-concurrency C]\n"
            "         [--random-input-len 1024] [--random-output-len 128] [--random-range-ratio 0]\n"
            "         --vocab-size V [--seed 0] [--timeout 300] [--json FILE] [--extra-body '{\"k\":v}'] [--chat 1]\n"
            "       bench_serve --offline DIR [--threads N] [--kv-cache-space GiB] [--device auto|cpu|cuda]\n"
            "                 [--dtype auto|float32|float16|bfloat16] [--gpu-memory-utilization F] [--enforce-eager]\n"
            "                 (same workload flags)\n"
            "--offline runs the same requests through the engine in this process (max_num_seqs = C).\n");
}

static int parse_flag(struct opts *o, const char *f, const char *v) {
    if (!strcmp(f, "--host")) o->host = v;
    else if (!strcmp(f, "--port")) return parse_int(f, v, 1, &o->port);
    else if (!strcmp(f, "--model")) o->model = v;
    else if (!strcmp(f, "--endpoint")) o->endpoint = v;
    else if (!strcmp(f, "--api-key")) o->api_key = v;
    else if (!strcmp(f, "--json")) o->json_path = v;
    else if (!strcmp(f, "--num-prompts")) return parse_int(f, v, 1, &o->num_prompts);
    else if (!strcmp(f, "--request-rate")) {
        if (!strcmp(v, "inf")) o->request_rate = INFINITY;
        else return parse_double(f, v, 1e-6, 1e9, &o->request_rate);
    } else if (!strcmp(f, "--max-concurrency")) return parse_int(f, v, 1, &o->max_concurrency);
    else if (!strcmp(f, "--random-input-len")) return parse_int(f, v, 1, &o->input_len);
    else if (!strcmp(f, "--random-output-len")) return parse_int(f, v, 1, &o->output_len);
    else if (!strcmp(f, "--random-range-ratio")) return parse_double(f, v, 0.0, 0.999, &o->range_ratio);
    else if (!strcmp(f, "--vocab-size")) return parse_int(f, v, 2, &o->vocab_size);
    else if (!strcmp(f, "--seed")) {
        int seed = 0;
        if (parse_int(f, v, 0, &seed)) return FOLIO_EINVAL;
        o->seed = (uint64_t)seed;
    } else if (!strcmp(f, "--timeout")) return parse_double(f, v, 0.001, 1e6, &o->timeout_s);
    else if (!strcmp(f, "--offline")) o->offline = v;
    else if (!strcmp(f, "--chat")) {
        o->chat = !strcmp(v, "1");
        if (o->chat && !strcmp(o->endpoint, "/v1/completions")) o->endpoint = "/v1/chat/completions";
    }
    else if (!strcmp(f, "--extra-body")) {
        /* An object's members, spliced into each body: "{...}" without its braces. */
        cJSON *j = cJSON_Parse(v);
        const int ok = cJSON_IsObject(j) && cJSON_GetArraySize(j) > 0;
        cJSON_Delete(j);
        if (!ok) return folio_err(FOLIO_EINVAL, "--extra-body: expected a non-empty JSON object");
        const char *a = strchr(v, '{'), *b = strrchr(v, '}');
        static char members[1 << 16];
        if ((size_t)(b - a) >= sizeof members) return folio_err(FOLIO_EINVAL, "--extra-body: too long");
        snprintf(members, sizeof members, "%.*s", (int)(b - a - 1), a + 1);
        o->extra = members;
    }
    else if (!strcmp(f, "--threads")) return parse_int(f, v, 0, &o->threads);
    else if (!strcmp(f, "--kv-cache-space")) return parse_double(f, v, 1e-9, 1e6, &o->kv_cache_space);
    else if (!strcmp(f, "--device")) o->device = v;
    else if (!strcmp(f, "--dtype")) o->dtype = v;
    else if (!strcmp(f, "--gpu-memory-utilization")) return parse_double(f, v, 1e-6, 1.0, &o->gpu_memory_utilization);
    else return folio_err(FOLIO_EINVAL, "unknown flag '%s' (--help lists them)", f);
    return 0;
}

static int parse_args(int argc, char **argv, struct opts *o) {
    *o = (struct opts){.host = "127.0.0.1", .endpoint = "/v1/completions", .num_prompts = 1000, .extra = "",
                       .request_rate = INFINITY, .input_len = 1024, .output_len = 128, .timeout_s = 300};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(argv[i], "--enforce-eager")) {
            o->enforce_eager = 1;
            continue;
        }
        if (i + 1 >= argc) return folio_err(FOLIO_EINVAL, "%s needs a value", argv[i]);
        if (parse_flag(o, argv[i], argv[i + 1])) return FOLIO_EINVAL;
        i++;
    }
    if (!o->offline) {
        if (!o->port) return folio_err(FOLIO_EINVAL, "--port is required (or --offline DIR)");
        if (!o->model) return folio_err(FOLIO_EINVAL, "--model NAME is required");
        if (!o->vocab_size) return folio_err(FOLIO_EINVAL, "--vocab-size is required");
    }
    return 0;
}

/* ---- workload ---- */

static double rng_unit(uint64_t *s) { /* uniform in [0, 1) */
    return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

/* vLLM's random dataset: uniform in [floor(L(1-X)), ceil(L(1+X))], at least 1. */
static int rng_len(uint64_t *s, int len, double ratio) {
    int lo = (int)floor(len * (1.0 - ratio)), hi = (int)ceil(len * (1.0 + ratio));
    if (lo < 1) lo = 1;
    if (hi < lo) hi = lo;
    return rng_range(s, lo, hi);
}

static int token_lo(int vocab) { return vocab / 2 < 300 ? vocab / 2 : 300; }

static void workload_free(struct workload *w) {
    if (w->prompts)
        for (int i = 0; i < w->n; i++) free(w->prompts[i]);
    free(w->prompts);
    free(w->in_len);
    free(w->out_len);
    free(w->arrival);
    memset(w, 0, sizeof *w);
}

static int workload_alloc(struct workload *w, int n) {
    w->n = n;
    w->prompts = calloc((size_t)n, sizeof *w->prompts);
    w->in_len = calloc((size_t)n, sizeof *w->in_len);
    w->out_len = calloc((size_t)n, sizeof *w->out_len);
    w->arrival = calloc((size_t)n, sizeof *w->arrival);
    if (!w->prompts || !w->in_len || !w->out_len || !w->arrival)
        return folio_err(FOLIO_ENOMEM, "out of memory for the workload");
    return 0;
}

static int fill_prompt(struct workload *w, int i, uint64_t *st, int vocab) {
    if (!(w->prompts[i] = malloc(sizeof(int32_t) * (size_t)w->in_len[i])))
        return folio_err(FOLIO_ENOMEM, "out of memory for the workload");
    for (int j = 0; j < w->in_len[i]; j++) w->prompts[i][j] = rng_range(st, token_lo(vocab), vocab - 1);
    w->in_tokens += w->in_len[i];
    w->out_tokens += w->out_len[i];
    return 0;
}

static int workload_build(const struct opts *o, struct workload *w) {
    int rc = workload_alloc(w, o->num_prompts);
    if (rc) return rc;
    uint64_t st = o->seed, arr = o->seed ^ 0x5deece66dULL;
    double t = 0;
    for (int i = 0; i < w->n; i++) {
        w->in_len[i] = rng_len(&st, o->input_len, o->range_ratio);
        w->out_len[i] = rng_len(&st, o->output_len, o->range_ratio);
        if ((rc = fill_prompt(w, i, &st, o->vocab_size))) return rc;
        /* Poisson arrivals: exponential gaps; the first request goes at once, as in vLLM. */
        w->arrival[i] = t;
        if (isfinite(o->request_rate)) t += -log(1.0 - rng_unit(&arr)) / o->request_rate;
    }
    return 0;
}

/* The warm-up request: a prompt from its own stream, so that its KV blocks match no prompt
 * of the workload in the prefix cache. */
static int warmup_build(const struct opts *o, struct workload *w) {
    int rc = workload_alloc(w, 1);
    if (rc) return rc;
    uint64_t st = o->seed ^ 0xa5a5a5a5a5a5a5a5ULL;
    w->in_len[0] = o->input_len;
    w->out_len[0] = o->output_len < 4 ? o->output_len : 4;
    return fill_prompt(w, 0, &st, o->vocab_size);
}

/* ---- results ---- */

/* CPU seconds of this process (all threads): the client's own cost, or the offline engine's. */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}


static int itl_push(struct result *r, double v) {
    if (r->n_itl == r->cap_itl) {
        int nc = r->cap_itl ? 2 * r->cap_itl : 128;
        double *p = realloc(r->itl, sizeof *p * (size_t)nc);
        if (!p) return FOLIO_ENOMEM;
        r->itl = p;
        r->cap_itl = nc;
    }
    r->itl[r->n_itl++] = v;
    return 0;
}

/* An event with choices arrived at `now`: the first token, or one more ITL gap. */
static int result_event(struct result *r, double now) {
    int rc = 0;
    if (r->t_first == 0) r->t_first = now;
    else rc = itl_push(r, now - r->t_last);
    r->t_last = now;
    return rc;
}

static void result_fail(struct result *r, const char *fmt, const char *detail) {
    if (r->error[0]) return; /* the first reason is the useful one */
    r->ok = 0;
    snprintf(r->error, sizeof r->error, fmt, detail);
}

static void results_free(struct result *res, int n) {
    for (int i = 0; res && i < n; i++) free(res[i].itl);
    free(res);
}

/* ---- HTTP client ---- */

enum http_state { ST_HEAD, ST_SIZE, ST_DATA, ST_DATA_END, ST_TRAILER, ST_BODY, ST_DONE };

struct conn {
    int fd;                 /* -1: slot free */
    int chat;               /* chat completions: text in delta.content */
    int req;
    const char *wbuf;       /* the rendered request */
    size_t wlen, woff;
    enum http_state st;
    char head[8192];        /* status line and headers */
    size_t head_n;
    int status, chunked;
    long long body_left;    /* ST_BODY: Content-Length left, -1: until close */
    size_t chunk_left;
    char line[64];          /* a chunk-size or trailer line */
    size_t line_n;
    struct sbuf ev;         /* SSE bytes not yet parsed into events (CRs dropped) */
    int got_finish, got_usage, got_done;
    double t_io;            /* last time anything came */
};

struct client {
    const struct opts *o;
    const struct workload *w;
    struct result *res;
    char **reqs;            /* [n] rendered requests */
    size_t *req_len;        /* [n] */
    struct sockaddr_in addr;
};

/* Renders request i (HTTP head and JSON body) before the clock starts. Caller frees. */
static int render(const struct opts *o, const struct workload *w, int i, char **out, size_t *out_len) {
    size_t cap = 512 + (size_t)w->in_len[i] * 12 + strlen(o->model) + (o->api_key ? strlen(o->api_key) : 0) +
                 strlen(o->extra);
    char *body = malloc(cap), *req = malloc(cap + 512);
    int rc = 0;
    if (!body || !req) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory rendering the requests");
        goto out;
    }
    size_t n;
    if (o->chat) {
        /* A chat prompt is text: one common English word per token asked for (each about one
         * token in the BPE vocabularies), picked by the same random ids, then the template. */
        static const char *const words[] = {
            "the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "to", "house", "with", "big",
            "red", "door", "we", "saw", "dog", "in", "park", "day", "was", "sunny", "so", "they", "played",
            "ball", "all", "time", "after", "that", "went", "home", "for", "dinner", "she", "he", "good",
            "night", "tree", "water", "bird", "flew", "over", "small", "hill", "river", "boat", "man",
            "woman", "child", "book", "read", "story", "about", "old", "king", "who", "lived", "far", "away",
            "from", "sea"};
        n = (size_t)snprintf(body, cap, "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"", o->model);
        for (int j = 0; j < w->in_len[i]; j++)
            n += (size_t)snprintf(body + n, cap - n, "%s%s", j ? " " : "",
                                  words[(uint32_t)w->prompts[i][j] % (sizeof words / sizeof *words)]);
        n += (size_t)snprintf(body + n, cap - n, "\"}]");
    } else {
        n = (size_t)snprintf(body, cap, "{\"model\":\"%s\",\"prompt\":[", o->model);
        for (int j = 0; j < w->in_len[i]; j++)
            n += (size_t)snprintf(body + n, cap - n, "%s%d", j ? "," : "", w->prompts[i][j]);
        n += (size_t)snprintf(body + n, cap - n, "]");
    }
    n += (size_t)snprintf(body + n, cap - n,
                          ",\"max_tokens\":%d,\"temperature\":0,\"ignore_eos\":true,\"stream\":true,"
                          "\"stream_options\":{\"include_usage\":true}%s%s}",
                          w->out_len[i], *o->extra ? "," : "", o->extra);
    if (n >= cap) {
        rc = folio_err(FOLIO_EINVAL, "request %d does not fit its buffer (--model too long?)", i);
        goto out;
    }
    char auth[300] = "";
    if (o->api_key) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", o->api_key);
    int hn = snprintf(req, cap + 512,
                      "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                      "Accept: text/event-stream\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n",
                      o->endpoint, o->host, o->port, auth, n);
    if (hn < 0 || (size_t)hn + n >= cap + 512) {
        rc = folio_err(FOLIO_EINVAL, "request %d does not fit its buffer (--endpoint too long?)", i);
        goto out;
    }
    memcpy(req + hn, body, n + 1);
    *out = req;
    *out_len = (size_t)hn + n;
    req = NULL;
out:
    free(body);
    free(req);
    return rc;
}

static void conn_close(struct conn *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->ev.n = 0;
}

/* Starts request i on the free slot c: a non-blocking connect; the request goes out on
 * POLLOUT. A connect that fails at once fails the request, not the run. */
static void conn_start(struct client *cl, struct conn *c, int i, double now) {
    struct result *r = &cl->res[i];
    struct sbuf ev = c->ev; /* the buffer is kept from request to request */
    memset(c, 0, sizeof *c);
    c->ev = ev;
    c->ev.n = 0;
    if (c->ev.p) c->ev.p[0] = '\0'; /* an error answer without a body prints nothing stale */
    c->fd = -1;
    c->req = i;
    c->wbuf = cl->reqs[i];
    c->wlen = cl->req_len[i];
    c->chat = cl->o->chat;
    c->t_io = now;
    r->ok = 1;
    r->t_start = now;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        result_fail(r, "socket: %s", strerror(errno));
        c->st = ST_DONE;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&cl->addr, sizeof cl->addr) < 0 && errno != EINPROGRESS) {
        result_fail(r, "connect: %s", strerror(errno));
        close(fd);
        c->st = ST_DONE;
        return;
    }
    c->fd = fd;
}

/* One SSE event's data (NUL-terminated). */
static int on_event(struct conn *c, struct result *r, const char *data, double now) {
    if (!strcmp(data, "[DONE]")) {
        c->got_done = 1;
        return 0;
    }
    if (c->got_done) {
        result_fail(r, "%s", "an event after [DONE]");
        return 0;
    }
    cJSON *j = cJSON_Parse(data);
    if (!j) {
        result_fail(r, "an event that is not JSON: %.120s", data);
        return 0;
    }
    int rc = 0;
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
    if (err) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(err, "message");
        result_fail(r, "error event: %.150s", cJSON_IsString(m) ? m->valuestring : "(no message)");
    } else if (!cJSON_IsArray(choices)) {
        result_fail(r, "%s", "an event without choices");
    } else if (cJSON_GetArraySize(choices) > 0) {
        const cJSON *ch = cJSON_GetArrayItem(choices, 0);
        const cJSON *delta = cJSON_GetObjectItemCaseSensitive(ch, "delta");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(c->chat ? delta : ch, c->chat ? "content" : "text");
        const cJSON *fin = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
        if (c->chat && !cJSON_IsObject(delta)) result_fail(r, "%s", "a chat choice without a delta");
        else if (!c->chat && !cJSON_IsString(text)) result_fail(r, "%s", "a choice without text");
        if (cJSON_IsString(fin)) c->got_finish = 1;
        else if (!cJSON_IsNull(fin) && fin) result_fail(r, "%s", "a finish_reason that is not a string");
        /* chat's first event (the role, no text) comes before any token: not one */
        if (!c->chat || (cJSON_IsString(text) && text->valuestring[0]) || cJSON_IsString(fin)) rc = result_event(r, now);
    }
    if (cJSON_IsObject(usage)) {
        const cJSON *pt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
        if (cJSON_IsNumber(pt) && cJSON_IsNumber(ct)) {
            r->prompt_tokens = pt->valueint;
            r->output_tokens = ct->valueint;
            c->got_usage = 1;
        } else {
            result_fail(r, "%s", "a usage event without token counts");
        }
    }
    cJSON_Delete(j);
    return rc;
}

/* Appends received bytes to c->ev, without CRs (so that events end in "\n\n" either way). */
static int ev_append(struct conn *c, const char *p, size_t n) {
    if (sbuf_reserve(&c->ev, n)) return folio_err(FOLIO_ENOMEM, "out of memory for an event");
    for (size_t k = 0; k < n; k++)
        if (p[k] != '\r') c->ev.p[c->ev.n++] = p[k];
    c->ev.p[c->ev.n] = '\0';
    return 0;
}

/* Appends stream bytes and handles every complete event ("...\n\n"). */
static int sse_feed(struct conn *c, struct result *r, const char *p, size_t n, double now) {
    int rc = ev_append(c, p, n);
    if (rc) return rc;
    size_t start = 0;
    char *end;
    while ((end = strstr(c->ev.p + start, "\n\n"))) {
        *end = '\0';
        /* One event: its data: lines, joined by newlines (the SSE rule); others ignored. */
        char *data = NULL, *line = c->ev.p + start, *out = line;
        while (line && *line) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = '\0';
            if (!strncmp(line, "data:", 5)) {
                const char *v = line[5] == ' ' ? line + 6 : line + 5;
                if (data) *out++ = '\n';
                else data = out;
                size_t vl = strlen(v);
                memmove(out, v, vl);
                out += vl;
            }
            line = nl ? nl + 1 : NULL;
        }
        if (data) {
            *out = '\0';
            if ((rc = on_event(c, r, data, now))) return rc;
        }
        start = (size_t)(end - c->ev.p) + 2;
    }
    memmove(c->ev.p, c->ev.p + start, c->ev.n - start + 1);
    c->ev.n -= start;
    return 0;
}

static void parse_head(struct conn *c, struct result *r) {
    c->head[c->head_n] = '\0';
    if (sscanf(c->head, "HTTP/1.%*d %d", &c->status) != 1 || c->status <= 0) {
        result_fail(r, "%s", "a bad status line");
        c->status = 0;
    }
    c->body_left = -1;
    for (char *l = strstr(c->head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2, *eol = strstr(h, "\r\n"), *ck = strstr(h, "chunked");
        if (!strncasecmp(h, "transfer-encoding:", 18) && ck && ck < eol) c->chunked = 1;
        else if (!strncasecmp(h, "content-length:", 15)) c->body_left = atoll(h + 15);
    }
    if (c->status == 200 && c->chunked) {
        c->st = ST_SIZE;
        return;
    }
    /* An error answer: conn_finish reports its status and the start of its body. */
    if (c->status == 200) result_fail(r, "%s", "a 200 response that is not chunked");
    c->st = c->body_left == 0 ? ST_DONE : ST_BODY;
}

/* Reads a line ending in CRLF into c->line; 1 when complete, 0 when more is needed, -1 on
 * an overlong line. */
static int take_line(struct conn *c, const char **p, const char *e) {
    while (*p < e) {
        char ch = *(*p)++;
        if (ch == '\n') {
            if (c->line_n && c->line[c->line_n - 1] == '\r') c->line_n--;
            c->line[c->line_n] = '\0';
            c->line_n = 0;
            return 1;
        }
        if (c->line_n + 1 >= sizeof c->line) return -1;
        c->line[c->line_n++] = ch;
    }
    return 0;
}

/* Feeds received bytes through the HTTP state machine. */
static int http_feed(struct conn *c, struct result *r, const char *p, size_t n, double now) {
    const char *e = p + n;
    int rc = 0;
    while (p < e && c->st != ST_DONE && !rc) {
        switch (c->st) {
        case ST_HEAD:
            while (p < e && c->st == ST_HEAD) {
                if (c->head_n + 1 >= sizeof c->head) {
                    result_fail(r, "%s", "response headers over 8 KiB");
                    c->st = ST_DONE;
                    break;
                }
                c->head[c->head_n++] = *p++;
                if (c->head_n >= 4 && !memcmp(c->head + c->head_n - 4, "\r\n\r\n", 4)) parse_head(c, r);
            }
            break;
        case ST_SIZE: {
            int k = take_line(c, &p, e);
            if (k < 0) result_fail(r, "%s", "a bad chunk size line"), c->st = ST_DONE;
            if (k <= 0) break;
            char *end;
            unsigned long long sz = strtoull(c->line, &end, 16);
            if (end == c->line) {
                result_fail(r, "%s", "a bad chunk size line");
                c->st = ST_DONE;
            } else if (sz == 0) {
                c->st = ST_TRAILER;
            } else {
                c->chunk_left = (size_t)sz;
                c->st = ST_DATA;
            }
            break;
        }
        case ST_DATA: {
            size_t k = (size_t)(e - p) < c->chunk_left ? (size_t)(e - p) : c->chunk_left;
            rc = sse_feed(c, r, p, k, now);
            p += k;
            c->chunk_left -= k;
            if (c->chunk_left == 0) c->st = ST_DATA_END;
            break;
        }
        case ST_DATA_END: {
            int k = take_line(c, &p, e);
            if (k < 0 || (k > 0 && c->line[0])) result_fail(r, "%s", "a chunk not followed by CRLF"), c->st = ST_DONE;
            else if (k > 0) c->st = ST_SIZE;
            break;
        }
        case ST_TRAILER: {
            int k = take_line(c, &p, e);
            if (k < 0) result_fail(r, "%s", "a bad trailer"), c->st = ST_DONE;
            else if (k > 0 && !c->line[0]) c->st = ST_DONE, r->t_end = now; /* the end of the response */
            break;
        }
        case ST_BODY: {
            /* Not an event stream (an error answer): keep the start of it for the message. */
            size_t k = (size_t)(e - p);
            if (c->body_left >= 0 && (long long)k > c->body_left) k = (size_t)c->body_left;
            if (c->ev.n < 400) rc = ev_append(c, p, k < 400 ? k : 400);
            p += k;
            if (c->body_left >= 0 && (c->body_left -= (long long)k) == 0) c->st = ST_DONE;
            break;
        }
        case ST_DONE:
            break;
        }
    }
    return rc;
}

/* The response has ended (or the connection has): is the request a success? */
static void conn_finish(struct conn *c, struct result *r, const struct workload *w, const char *extra, double now) {
    const int i = c->req;
    if (c->status && c->status != 200) {
        char msg[200];
        for (char *q = c->ev.p; q && *q; q++)
            if (*q == '\n') *q = ' ';
        snprintf(msg, sizeof msg, "HTTP %d: %.150s", c->status, c->ev.p ? c->ev.p : "");
        result_fail(r, "%s", msg);
    }
    if (c->st != ST_DONE) result_fail(r, "%s", "the connection closed before the response ended");
    if (!r->t_end) r->t_end = now;
    if (!c->got_finish) result_fail(r, "%s", "no finish_reason");
    if (!c->got_usage) result_fail(r, "%s", "no usage event");
    if (!c->got_done) result_fail(r, "%s", "no [DONE]");
    /* a chat prompt is the template around words, not the ids asked for: its length differs */
    if (c->got_usage && ((*extra ? r->output_tokens > w->out_len[i] : r->output_tokens != w->out_len[i]) ||
                         (!c->chat && r->prompt_tokens != w->in_len[i]))) {
        char m[96];
        snprintf(m, sizeof m, "usage says %d prompt + %d completion tokens, asked %d + %d", r->prompt_tokens,
                 r->output_tokens, w->in_len[i], w->out_len[i]);
        result_fail(r, "%s", m);
    }
    conn_close(c);
}

/* Runs the workload against the server: starts each request at its arrival time once a slot
 * is free, and polls every connection until all have ended. */
static int run_served(struct client *cl, double *t0_out, double *t1_out) {
    const struct workload *w = cl->w;
    const int C = cl->o->max_concurrency > 0 && cl->o->max_concurrency < w->n ? cl->o->max_concurrency : w->n;
    struct conn *cs = calloc((size_t)C, sizeof *cs);
    struct pollfd *pf = calloc((size_t)C, sizeof *pf);
    int *slot_of = calloc((size_t)C, sizeof *slot_of);
    static char buf[1 << 16];
    int rc = 0, next = 0, ended = 0, inflight = 0;
    if (!cs || !pf || !slot_of) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory for the connections");
        goto out;
    }
    for (int s = 0; s < C; s++) cs[s].fd = -1, cs[s].st = ST_DONE;
    const double t0 = folio_now();
    while (ended < w->n) {
        double now = folio_now();
        /* Start what has arrived, while there is a slot. */
        for (int s = 0; s < C && next < w->n && t0 + w->arrival[next] <= now; s++) {
            if (cs[s].fd >= 0 || cs[s].st != ST_DONE) continue;
            conn_start(cl, &cs[s], next++, now);
            inflight++;
            if (cs[s].fd < 0) { /* failed at once */
                conn_finish(&cs[s], &cl->res[cs[s].req], w, cl->o->extra, now);
                cs[s].st = ST_DONE;
                inflight--;
                ended++;
            }
        }
        int np = 0;
        for (int s = 0; s < C; s++) {
            if (cs[s].fd < 0) continue;
            pf[np] = (struct pollfd){.fd = cs[s].fd, .events = cs[s].woff < cs[s].wlen ? POLLOUT : POLLIN};
            slot_of[np++] = s;
        }
        /* Sleep until I/O, the next arrival (if a slot is free), or 1 s for the timeouts. */
        int timeout_ms = 1000;
        if (next < w->n && inflight < C) {
            double dt = t0 + w->arrival[next] - now;
            timeout_ms = dt <= 0 ? 0 : dt < 1 ? (int)ceil(dt * 1000) : 1000;
        }
        if (np == 0 && next >= w->n) break; /* cannot happen: ended would be n */
        int k = poll(pf, (nfds_t)np, timeout_ms);
        if (k < 0 && errno != EINTR) {
            rc = folio_err(FOLIO_EIO, "poll: %s", strerror(errno));
            goto out;
        }
        for (int q = 0; q < np && k > 0; q++) {
            struct conn *c = &cs[slot_of[q]];
            struct result *r = &cl->res[c->req];
            if (!pf[q].revents) continue;
            now = folio_now();
            c->t_io = now;
            int end = 0;
            if (c->woff < c->wlen) {
                ssize_t m = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
                if (m < 0 && errno != EAGAIN && errno != EINTR) {
                    result_fail(r, c->woff ? "send: %s" : "connect: %s", strerror(errno));
                    end = 1;
                } else if (m > 0) {
                    c->woff += (size_t)m;
                }
            } else {
                ssize_t m = recv(c->fd, buf, sizeof buf, 0);
                if (m < 0 && errno != EAGAIN && errno != EINTR) {
                    result_fail(r, "recv: %s", strerror(errno));
                    end = 1;
                } else if (m == 0) {
                    end = 1;
                } else if (m > 0) {
                    if ((rc = http_feed(c, r, buf, (size_t)m, now))) goto out;
                    end = c->st == ST_DONE;
                }
            }
            if (end) {
                conn_finish(c, r, w, cl->o->extra, now);
                c->st = ST_DONE;
                inflight--;
                ended++;
            }
        }
        /* A request that has received nothing for --timeout fails. */
        now = folio_now();
        for (int s = 0; s < C; s++) {
            struct conn *c = &cs[s];
            if (c->fd < 0 || now - c->t_io < cl->o->timeout_s) continue;
            result_fail(&cl->res[c->req], "%s", "timed out waiting for the server");
            conn_finish(c, &cl->res[c->req], w, cl->o->extra, now);
            c->st = ST_DONE;
            inflight--;
            ended++;
        }
    }
    *t0_out = t0;
    *t1_out = folio_now();
out:
    for (int s = 0; cs && s < C; s++) {
        if (cs[s].fd >= 0) close(cs[s].fd);
        sbuf_free(&cs[s].ev);
    }
    free(cs);
    free(pf);
    free(slot_of);
    return rc;
}

static int client_run(const struct opts *o, const struct workload *w, struct result *res, double *t0, double *t1) {
    struct client cl = {.o = o, .w = w, .res = res};
    int rc = 0;
    cl.addr.sin_family = AF_INET;
    cl.addr.sin_port = htons((uint16_t)o->port);
    if (inet_pton(AF_INET, o->host, &cl.addr.sin_addr) != 1)
        return folio_err(FOLIO_EINVAL, "--host: expected an IPv4 address, got '%s'", o->host);
    cl.reqs = calloc((size_t)w->n, sizeof *cl.reqs);
    cl.req_len = calloc((size_t)w->n, sizeof *cl.req_len);
    if (!cl.reqs || !cl.req_len) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory rendering the requests");
        goto out;
    }
    for (int i = 0; i < w->n; i++)
        if ((rc = render(o, w, i, &cl.reqs[i], &cl.req_len[i]))) goto out;
    rc = run_served(&cl, t0, t1);
out:
    for (int i = 0; cl.reqs && i < w->n; i++) free(cl.reqs[i]);
    free(cl.reqs);
    free(cl.req_len);
    return rc;
}

/* ---- offline: the same requests through the engine in this process ---- */

static int offline_submit(struct engine *e, const struct workload *w, int i, struct engine_req **h) {
    struct engine_request rq = {.prompt = w->prompts[i], .num_prompt = w->in_len[i]};
    rq.params = sampler_default_params();
    rq.params.temperature = 0.0f; /* what the client sends */
    rq.params.ignore_eos = 1;
    rq.params.max_tokens = w->out_len[i];
    int rc = engine_submit(e, &rq, h);
    if (rc) {
        char why[512];
        snprintf(why, sizeof why, "%s", folio_last_error());
        folio_err(rc, "request %d: %s", i, why);
    }
    return rc;
}

/* Steps the engine, submitting each request at its arrival time while fewer than C run, and
 * reads every output right after the step that made it. */
static int offline_loop(struct engine *e, const struct workload *w, int C, struct result *res, double *t0_out,
                        double *t1_out) {
    struct engine_req **h = calloc((size_t)w->n, sizeof *h);
    int rc = 0, next = 0, ended = 0, inflight = 0;
    if (!h) return folio_err(FOLIO_ENOMEM, "out of memory");
    const double t0 = folio_now();
    while (ended < w->n) {
        double now = folio_now();
        while (next < w->n && inflight < C && t0 + w->arrival[next] <= now) {
            res[next].ok = 1;
            res[next].t_start = now;
            if ((rc = offline_submit(e, w, next, &h[next]))) goto out;
            next++;
            inflight++;
        }
        int ns = engine_step(e);
        if (ns < 0) {
            char why[512];
            snprintf(why, sizeof why, "%s", folio_last_error());
            rc = folio_err(ns, "engine_step: %s", why);
            goto out;
        }
        now = folio_now();
        for (int i = 0; i < next; i++) {
            if (!h[i]) continue;
            struct result *r = &res[i];
            struct engine_output out;
            int k;
            while ((k = engine_read(h[i], &out, 0)) == ENGINE_READ_OUTPUT) {
                r->output_tokens += out.num_tokens;
                if ((out.num_tokens > 0 || out.finish != ENGINE_FINISH_NONE) && (rc = result_event(r, now))) goto out;
                if (out.error) result_fail(r, "engine: %s", out.error);
                else if (out.finish != ENGINE_FINISH_NONE && out.finish != ENGINE_FINISH_LENGTH)
                    result_fail(r, "finished with '%s', expected 'length'", engine_finish_name(out.finish));
            }
            if (k != ENGINE_READ_DONE) continue;
            r->t_end = now;
            r->prompt_tokens = w->in_len[i];
            if (r->output_tokens != w->out_len[i]) {
                char m[64];
                snprintf(m, sizeof m, "%d tokens, asked %d", r->output_tokens, w->out_len[i]);
                result_fail(r, "%s", m);
            }
            engine_release(h[i]);
            h[i] = NULL;
            inflight--;
            ended++;
        }
        if (ns == 0 && inflight > 0) {
            rc = folio_err(FOLIO_EINVAL, "the engine scheduled nothing with %d requests in flight", inflight);
            goto out;
        }
        if (ns == 0 && next < w->n) { /* idle until the next arrival */
            double dt = t0 + w->arrival[next] - folio_now();
            if (dt > 0) nanosleep(&(struct timespec){(time_t)dt, (long)((dt - floor(dt)) * 1e9)}, NULL);
        }
    }
    *t0_out = t0;
    *t1_out = folio_now();
out:
    for (int i = 0; i < w->n; i++) engine_release(h[i]);
    free(h);
    return rc;
}

static int offline_run(const struct opts *o, const struct workload *warm, const struct workload *w,
                       struct result *res, double *t0, double *t1, double *cpu) {
    struct engine *e = NULL;
    struct engine_params p = engine_default_params();
    const int C = o->max_concurrency > 0 && o->max_concurrency < w->n ? o->max_concurrency : w->n;
    struct result *wres = calloc(1, sizeof *wres);
    double a, b;
    int rc = wres ? 0 : folio_err(FOLIO_ENOMEM, "out of memory");
    if (rc) goto out;
    p.model = o->offline;
    p.threads = o->threads;
    if (o->device) p.device = o->device;
    if (o->dtype) p.dtype = o->dtype;
    if (o->gpu_memory_utilization > 0) p.gpu_memory_utilization = o->gpu_memory_utilization;
    p.max_num_seqs = C;
    p.enforce_eager = o->enforce_eager;
    if (o->kv_cache_space > 0) p.kv_cache_space = o->kv_cache_space;
    if ((rc = engine_create(&p, &e))) goto out;
    char desc[512];
    engine_describe(e, desc, sizeof desc);
    printf("offline engine: %s %s\n", o->offline, desc);
    if ((rc = offline_loop(e, warm, 1, wres, &a, &b))) goto out;
    if (!wres->ok) {
        rc = folio_err(FOLIO_EINVAL, "the warm-up request failed: %s", wres->error);
        goto out;
    }
    struct engine_stats s0, s1;
    engine_get_stats(e, &s0);
    *cpu = cpu_seconds();
    rc = offline_loop(e, w, C, res, t0, t1);
    *cpu = cpu_seconds() - *cpu;
    engine_get_stats(e, &s1);
    /* Where the engine thread's time went: forward passes (device work and its launches)
     * against the host's share (sampling, detokenizing, stop checks, scheduling). */
    const long long steps = s1.steps - s0.steps;
    if (!rc && steps > 0)
        printf("offline steps: %lld, forward %.3f s (%.3f ms/step), sampling and the rest %.3f s (%.3f ms/step), "
               "%lld from CUDA graphs\n",
               steps, s1.forward_seconds - s0.forward_seconds, 1e3 * (s1.forward_seconds - s0.forward_seconds) / steps,
               s1.sample_seconds - s0.sample_seconds, 1e3 * (s1.sample_seconds - s0.sample_seconds) / steps,
               s1.graph_steps - s0.graph_steps);
out:
    results_free(wres, 1);
    engine_free(e);
    return rc;
}

/* ---- report ---- */

struct dist {
    double mean, p50, p99;
};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Mean, median and 99th percentile (numpy's linear interpolation, as vLLM reports). Sorts v. */
static struct dist dist_of(double *v, int n) {
    struct dist d = {0, 0, 0};
    if (n == 0) return d;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += v[i];
    d.mean = sum / n;
    for (int k = 0; k < 2; k++) {
        double q = k ? 0.99 : 0.5, pos = q * (n - 1);
        int lo = (int)floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
        double x = v[lo] + (v[hi] - v[lo]) * (pos - lo);
        if (k) d.p99 = x;
        else d.p50 = x;
    }
    return d;
}

struct summary {
    int completed, failed, concurrency;
    double duration, req_tps, out_tps, total_tps;
    double cpu_s; /* this process's CPU time over the timed run: the client's, or the offline engine's */
    long long in_tokens, out_tokens;
    struct dist ttft, tpot, itl, e2e; /* milliseconds */
};

static int summarize(const struct opts *o, const struct workload *w, struct result *res, double t0, double t1,
                     struct summary *s) {
    memset(s, 0, sizeof *s);
    long long n_itl = 0;
    for (int i = 0; i < w->n; i++) n_itl += res[i].n_itl;
    double *ttft = malloc(sizeof(double) * (size_t)w->n), *tpot = malloc(sizeof(double) * (size_t)w->n);
    double *e2e = malloc(sizeof(double) * (size_t)w->n), *itl = malloc(sizeof(double) * (size_t)(n_itl + 1));
    int n_tpot = 0, k_itl = 0, rc = 0;
    if (!ttft || !tpot || !e2e || !itl) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory for the report");
        goto out;
    }
    for (int i = 0; i < w->n; i++) {
        const struct result *r = &res[i];
        if (!r->ok) {
            s->failed++;
            continue;
        }
        const int k = s->completed++;
        s->in_tokens += r->prompt_tokens;
        s->out_tokens += r->output_tokens;
        ttft[k] = 1e3 * (r->t_first - r->t_start);
        e2e[k] = 1e3 * (r->t_end - r->t_start);
        if (r->output_tokens > 1) tpot[n_tpot++] = 1e3 * (r->t_end - r->t_first) / (r->output_tokens - 1);
        for (int j = 0; j < r->n_itl; j++) itl[k_itl++] = 1e3 * r->itl[j];
    }
    s->concurrency = o->max_concurrency > 0 && o->max_concurrency < w->n ? o->max_concurrency : w->n;
    s->duration = t1 - t0;
    s->req_tps = s->completed / s->duration;
    s->out_tps = (double)s->out_tokens / s->duration;
    s->total_tps = (double)(s->in_tokens + s->out_tokens) / s->duration;
    s->ttft = dist_of(ttft, s->completed);
    s->tpot = dist_of(tpot, n_tpot);
    s->itl = dist_of(itl, k_itl);
    s->e2e = dist_of(e2e, s->completed);
out:
    free(ttft);
    free(tpot);
    free(e2e);
    free(itl);
    return rc;
}

static void print_dist(const char *title, const char *name, const struct dist *d) {
    char k[48];
    printf("%s\n", title);
    snprintf(k, sizeof k, "Mean %s (ms):", name);
    printf("%-40s %-10.2f\n", k, d->mean);
    snprintf(k, sizeof k, "Median %s (ms):", name);
    printf("%-40s %-10.2f\n", k, d->p50);
    snprintf(k, sizeof k, "P99 %s (ms):", name);
    printf("%-40s %-10.2f\n", k, d->p99);
}

static void report(const struct opts *o, const struct summary *s) {
    char rate[32];
    if (isfinite(o->request_rate)) snprintf(rate, sizeof rate, "%g", o->request_rate);
    else snprintf(rate, sizeof rate, "inf");
    printf("======= Serving Benchmark Result (%s) ========\n", o->offline ? "offline" : "served");
    printf("%-40s %-10d\n", "Successful requests:", s->completed);
    printf("%-40s %-10d\n", "Failed requests:", s->failed);
    printf("%-40s %-10s\n", "Request rate (req/s):", rate);
    printf("%-40s %-10d\n", "Maximum request concurrency:", s->concurrency);
    printf("%-40s %-10.2f\n", "Benchmark duration (s):", s->duration);
    printf("%-40s %-10lld\n", "Total input tokens:", s->in_tokens);
    printf("%-40s %-10lld\n", "Total generated tokens:", s->out_tokens);
    printf("%-40s %-10.2f\n", "Request throughput (req/s):", s->req_tps);
    printf("%-40s %-10.2f\n", "Output token throughput (tok/s):", s->out_tps);
    printf("%-40s %-10.2f\n", "Total token throughput (tok/s):", s->total_tps);
    printf("%-40s %-10.2f\n", o->offline ? "Engine CPU time (s):" : "Client CPU time (s):", s->cpu_s);
    print_dist("---------------Time to First Token----------------", "TTFT", &s->ttft);
    print_dist("-----Time per Output Token (excl. 1st token)------", "TPOT", &s->tpot);
    print_dist("---------------Inter-token Latency----------------", "ITL", &s->itl);
    print_dist("----------------End-to-end Latency----------------", "E2EL", &s->e2e);
    printf("==================================================\n");
}

/* The numbers of the last line and of --json, in one list so that the two cannot drift. */
#define SUMMARY_FIELDS(X)                                                                          \
    X("duration_s", s->duration) X("req_tps", s->req_tps) X("out_tps", s->out_tps)                 \
    X("total_tps", s->total_tps) X("ttft_mean_ms", s->ttft.mean) X("ttft_p50_ms", s->ttft.p50)     \
    X("ttft_p99_ms", s->ttft.p99) X("tpot_mean_ms", s->tpot.mean) X("tpot_p50_ms", s->tpot.p50)    \
    X("tpot_p99_ms", s->tpot.p99) X("itl_mean_ms", s->itl.mean) X("itl_p50_ms", s->itl.p50)        \
    X("itl_p99_ms", s->itl.p99) X("e2e_mean_ms", s->e2e.mean) X("e2e_p50_ms", s->e2e.p50)          \
    X("e2e_p99_ms", s->e2e.p99) X("cpu_s", s->cpu_s)

static void print_line(const struct opts *o, const struct summary *s) {
    printf("bench_serve: mode=%s concurrency=%d completed=%d failed=%d in_tokens=%lld out_tokens=%lld",
           o->offline ? "offline" : "served", s->concurrency, s->completed, s->failed, s->in_tokens, s->out_tokens);
#define X(k, v) printf(" %s=%.3f", k, v);
    SUMMARY_FIELDS(X)
#undef X
    printf("\n");
}

static int write_json(const struct opts *o, const struct summary *s) {
    FILE *f = fopen(o->json_path, "w");
    if (!f) return folio_err(FOLIO_EIO, "%s: cannot write: %s", o->json_path, strerror(errno));
    char rate[40];
    if (isfinite(o->request_rate)) snprintf(rate, sizeof rate, "%.17g", o->request_rate);
    else snprintf(rate, sizeof rate, "\"inf\"");
    fprintf(f,
            "{\"mode\": \"%s\", \"num_prompts\": %d, \"request_rate\": %s, \"max_concurrency\": %d, "
            "\"completed\": %d, \"failed\": %d, \"total_input_tokens\": %lld, \"total_output_tokens\": %lld",
            o->offline ? "offline" : "served", o->num_prompts, rate, s->concurrency, s->completed, s->failed,
            s->in_tokens, s->out_tokens);
#define X(k, v) fprintf(f, ", \"%s\": %.6f", k, v);
    SUMMARY_FIELDS(X)
#undef X
    fprintf(f, "}\n");
    int bad = ferror(f);
    if (fclose(f) || bad) return folio_err(FOLIO_EIO, "%s: write failed", o->json_path);
    return 0;
}

/* The vocabulary, from config.json, without loading the weights. */
static int probe_vocab(const char *dir, int *vocab) {
    struct model_config cfg;
    int rc = config_load(dir, &cfg);
    if (rc) return rc;
    *vocab = cfg.vocab_size;
    if (*vocab < 2) return folio_err(FOLIO_EINVAL, "%s: vocab_size %d is too small", dir, *vocab);
    return 0;
}

int main(int argc, char **argv) {
    struct opts o;
    struct workload w = {0}, warm = {0};
    struct result *res = NULL, *wres = NULL;
    struct summary s;
    double t0 = 0, t1 = 0, a, b, cpu = 0;
    int rc;
    if ((rc = parse_args(argc, argv, &o))) goto out;
    if (o.offline && !o.vocab_size && (rc = probe_vocab(o.offline, &o.vocab_size))) goto out;
    if ((rc = workload_build(&o, &w)) || (rc = warmup_build(&o, &warm))) goto out;
    res = calloc((size_t)w.n, sizeof *res);
    wres = calloc(1, sizeof *wres);
    if (!res || !wres) {
        rc = folio_err(FOLIO_ENOMEM, "out of memory for the results");
        goto out;
    }
    printf("workload: %d prompts, in %lld tokens, out %lld tokens, input %d, output %d, range ratio %g, vocab %d, "
           "seed %llu\n",
           w.n, w.in_tokens, w.out_tokens, o.input_len, o.output_len, o.range_ratio, o.vocab_size,
           (unsigned long long)o.seed);
    fflush(stdout);
    if (o.offline) {
        if ((rc = offline_run(&o, &warm, &w, res, &t0, &t1, &cpu))) goto out;
    } else {
        if ((rc = client_run(&o, &warm, wres, &a, &b))) goto out;
        if (!wres->ok) {
            rc = folio_err(FOLIO_EINVAL, "the warm-up request failed: %s", wres->error);
            goto out;
        }
        cpu = cpu_seconds();
        if ((rc = client_run(&o, &w, res, &t0, &t1))) goto out;
        cpu = cpu_seconds() - cpu;
    }
    if ((rc = summarize(&o, &w, res, t0, t1, &s))) goto out;
    s.cpu_s = cpu;
    int shown = 0;
    for (int i = 0; i < w.n; i++)
        if (!res[i].ok && shown++ < 5) fprintf(stderr, "bench_serve: request %d failed: %s\n", i, res[i].error);
    report(&o, &s);
    print_line(&o, &s);
    if (o.json_path && (rc = write_json(&o, &s))) goto out;
    if (s.failed) rc = folio_err(FOLIO_EINVAL, "%d of %d requests failed", s.failed, w.n);
out:
    if (rc) {
        fprintf(stderr, "bench_serve: %s\n", folio_last_error());
        if (argc < 2) usage(stderr);
    }
    results_free(res, w.n);
    results_free(wres, 1);
    workload_free(&w);
    workload_free(&warm);
    return rc ? 1 : 0;
}
