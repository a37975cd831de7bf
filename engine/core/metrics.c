/* metrics: latency histograms and finish counters, recorded on the engine thread and read by
 * the HTTP threads; and the Prometheus text of everything /metrics shows. See metrics.h. */
#include "core/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"

/* vLLM's bucket edges, with finer ones below 10 ms for the ITL that small models reach. */
static const double ttft_bounds[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                     1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
static const double itl_bounds[] = {0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
                                    0.3,   0.4,    0.5,   0.75,   1.0,  2.5,   5.0,  7.5,   10.0, 20.0, 40.0, 80.0};
static const double e2e_bounds[] = {0.1,  0.3,  0.5,  0.8,  1.0,  1.5,  2.0,   2.5,   5.0,   10.0,  15.0,
                                    20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

/* Grammar work: a compile is 0.1 ms to seconds, a mask 10 us to 10 ms. */
static const double compile_bounds[] = {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,   0.5,   1.0,    2.5,   5.0,  10.0};
static const double mask_bounds[] = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                     0.001,   0.0025,   0.005,   0.01,   0.025,   0.05};

static const struct {
    const char *name, *help;
    const double *bounds;
    int num_bounds;
} hist_defs[METRICS_NUM_HISTS] = {
    [METRICS_TTFT] = {"time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttft_bounds,
                      (int)(sizeof ttft_bounds / sizeof *ttft_bounds)},
    [METRICS_ITL] = {"inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", itl_bounds,
                     (int)(sizeof itl_bounds / sizeof *itl_bounds)},
    [METRICS_TPOT] = {"request_time_per_output_token_seconds",
                      "Histogram of time per output token in seconds, per request.", itl_bounds,
                      (int)(sizeof itl_bounds / sizeof *itl_bounds)},
    [METRICS_E2E] = {"e2e_request_latency_seconds", "Histogram of end-to-end request latency in seconds.", e2e_bounds,
                     (int)(sizeof e2e_bounds / sizeof *e2e_bounds)},
    [METRICS_GRAMMAR_COMPILE] = {"structured_output_compile_seconds",
                                 "Histogram of structured-output grammar compile time in seconds (cache hits: 0).",
                                 compile_bounds, (int)(sizeof compile_bounds / sizeof *compile_bounds)},
    [METRICS_GRAMMAR_MASK] = {"structured_output_mask_seconds",
                              "Histogram of structured-output token mask time in seconds, per token.", mask_bounds,
                              (int)(sizeof mask_bounds / sizeof *mask_bounds)},
};
static const char *structured_names[METRICS_STRUCTURED_KINDS] = {"json", "regex", "choice", "grammar"};

static const char *reason_names[METRICS_NUM_REASONS] = {"stop", "length", "abort"};

struct hist {
    long long counts[METRICS_MAX_BUCKETS];
    long long count;
    double sum;
};

struct metrics {
    pthread_mutex_t mu;
    struct hist h[METRICS_NUM_HISTS];
    long long finished[METRICS_NUM_REASONS];
    long long structured[METRICS_STRUCTURED_KINDS], structured_hits;
};

struct metrics *metrics_create(void) {
    struct metrics *m = calloc(1, sizeof *m);
    if (m) pthread_mutex_init(&m->mu, NULL);
    return m;
}

void metrics_free(struct metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void metrics_observe(struct metrics *m, enum metrics_hist_id id, double v) {
    const double *b = hist_defs[id].bounds;
    int i = 0;
    while (i < hist_defs[id].num_bounds && v > b[i]) i++;
    pthread_mutex_lock(&m->mu);
    m->h[id].counts[i]++;
    m->h[id].count++;
    m->h[id].sum += v;
    pthread_mutex_unlock(&m->mu);
}

void metrics_count_finish(struct metrics *m, enum metrics_reason why) {
    pthread_mutex_lock(&m->mu);
    m->finished[why]++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_count_structured(struct metrics *m, int kind, int hit) {
    if (kind < 0 || kind >= METRICS_STRUCTURED_KINDS) return;
    pthread_mutex_lock(&m->mu);
    m->structured[kind]++;
    m->structured_hits += hit != 0;
    pthread_mutex_unlock(&m->mu);
}

long long metrics_structured(struct metrics *m, int kind) {
    if (kind < 0 || kind >= METRICS_STRUCTURED_KINDS) return 0;
    pthread_mutex_lock(&m->mu);
    long long n = m->structured[kind];
    pthread_mutex_unlock(&m->mu);
    return n;
}

long long metrics_structured_hits(struct metrics *m) {
    pthread_mutex_lock(&m->mu);
    long long n = m->structured_hits;
    pthread_mutex_unlock(&m->mu);
    return n;
}

void metrics_hist(struct metrics *m, enum metrics_hist_id id, struct metrics_hist_snapshot *out) {
    memset(out, 0, sizeof *out);
    out->name = hist_defs[id].name;
    out->help = hist_defs[id].help;
    out->bounds = hist_defs[id].bounds;
    out->num_bounds = hist_defs[id].num_bounds;
    pthread_mutex_lock(&m->mu);
    memcpy(out->counts, m->h[id].counts, sizeof out->counts);
    out->count = m->h[id].count;
    out->sum = m->h[id].sum;
    pthread_mutex_unlock(&m->mu);
}

long long metrics_finished(struct metrics *m, enum metrics_reason why) {
    pthread_mutex_lock(&m->mu);
    long long n = m->finished[why];
    pthread_mutex_unlock(&m->mu);
    return n;
}

double metrics_quantile(const struct metrics_hist_snapshot *s, double q) {
    if (s->count == 0) return 0;
    const double rank = q * (double)s->count;
    long long below = 0;
    for (int i = 0; i <= s->num_bounds; i++) {
        if (s->counts[i] > 0 && (double)(below + s->counts[i]) >= rank) {
            /* The +Inf bucket has no upper edge: report its lower one, as Prometheus does. */
            if (i == s->num_bounds) return s->bounds[s->num_bounds - 1];
            const double lo = i ? s->bounds[i - 1] : 0, hi = s->bounds[i];
            return lo + (hi - lo) * (rank - (double)below) / (double)s->counts[i];
        }
        below += s->counts[i];
    }
    return s->bounds[s->num_bounds - 1];
}

/* An appender over a caller buffer that keeps counting past its end. */
struct out {
    char *buf;
    size_t cap, len;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->len < o->cap ? o->buf + o->len : NULL, o->len < o->cap ? o->cap - o->len : 0, fmt, ap);
    va_end(ap);
    if (n > 0) o->len += (size_t)n;
}

static void head(struct out *o, const char *name, const char *type, const char *help) {
    put(o, "# HELP folio:%s %s\n# TYPE folio:%s %s\n", name, help, name, type);
}

static void gauge(struct out *o, const char *label, const char *name, const char *help, double v) {
    head(o, name, "gauge", help);
    put(o, "folio:%s{%s} %.17g\n", name, label, v);
}

static void counter(struct out *o, const char *label, const char *name, const char *help, long long v) {
    head(o, name, "counter", help);
    put(o, "folio:%s_total{%s} %lld\n", name, label, v);
}

size_t metrics_prometheus(struct metrics *m, const struct engine_stats *st, const struct engine_memory *mem,
                          const char *model_name, char *buf, size_t cap) {
    struct out o = {buf, cap, 0};
    if (cap) buf[0] = '\0';
    /* A label value escapes backslash, quote and newline. */
    char label[320];
    size_t k = (size_t)snprintf(label, sizeof label, "model_name=\"");
    for (const char *p = model_name; *p && k + 4 < sizeof label; p++) {
        if (*p == '\\' || *p == '"') label[k++] = '\\';
        if (*p == '\n') {
            label[k++] = '\\';
            label[k++] = 'n';
            continue;
        }
        label[k++] = *p;
    }
    label[k++] = '"';
    label[k] = '\0';

    gauge(&o, label, "num_requests_running", "Number of requests in model execution batches.", st->num_running);
    gauge(&o, label, "num_requests_waiting", "Number of requests waiting to be processed.", st->num_waiting);
    gauge(&o, label, "num_requests_preempted_waiting", "Number of waiting requests that were preempted.",
          st->num_preempted_waiting);
    gauge(&o, label, "kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", st->kv_usage);
    gauge(&o, label, "kv_cache_blocks_total", "KV-cache blocks in the pool.", st->kv_blocks);
    gauge(&o, label, "kv_cache_blocks_used", "KV-cache blocks held by running or waiting sequences.", st->kv_used);
    gauge(&o, label, "kv_cache_blocks_cached", "KV-cache blocks held only by the prefix cache.", st->kv_cached);
    gauge(&o, label, "kv_cache_waste_perc", "Allocated KV slots that hold no token.", st->waste);
    gauge(&o, label, "generation_tokens_per_second", "Output tokens per second over the last second or so.",
          st->gen_tokens_per_s);
    if (mem) {
        gauge(&o, label, "memory_weights_bytes", "Bytes of resident model weights.", (double)mem->weights);
        gauge(&o, label, "memory_kv_cache_bytes", "Bytes of the KV-cache pool.", (double)mem->kv_cache);
        gauge(&o, label, "memory_activation_bytes", "Bytes of activation scratch and backend workspaces.",
              (double)mem->activations);
        if (mem->device_total) {
            gauge(&o, label, "gpu_memory_total_bytes", "The GPU's total memory.", (double)mem->device_total);
            gauge(&o, label, "gpu_memory_free_bytes", "The GPU's free memory, now.", (double)mem->device_free);
            gauge(&o, label, "gpu_memory_utilization", "This engine's share of the GPU's memory.", mem->utilization);
        }
    }
    counter(&o, label, "prefix_cache_queries", "Prefix-cache queries, in tokens.", st->prefix_queries);
    counter(&o, label, "prefix_cache_hits", "Prefix-cache hits, in tokens.", st->prefix_hits);
    counter(&o, label, "num_preemptions", "Cumulative number of preemptions.", st->num_preemptions);
    counter(&o, label, "prompt_tokens", "Number of prefill tokens processed.", st->prompt_tokens);
    counter(&o, label, "generation_tokens", "Number of generation tokens processed.", st->generation_tokens);
    head(&o, "request_success", "counter", "Count of finished requests, by finish reason.");
    for (int r = 0; r < METRICS_NUM_REASONS; r++)
        put(&o, "folio:request_success_total{%s,finished_reason=\"%s\"} %lld\n", label, reason_names[r],
            metrics_finished(m, (enum metrics_reason)r));
    head(&o, "structured_output_requests", "counter",
         "Count of requests with structured output (JSON Schema, regex, choice, grammar), by kind.");
    for (int kind = 0; kind < METRICS_STRUCTURED_KINDS; kind++)
        put(&o, "folio:structured_output_requests_total{%s,kind=\"%s\"} %lld\n", label, structured_names[kind],
            metrics_structured(m, kind));
    head(&o, "structured_output_cache_hits", "counter", "Count of structured-output grammars found compiled in the cache.");
    put(&o, "folio:structured_output_cache_hits_total{%s} %lld\n", label, metrics_structured_hits(m));
    for (int h = 0; h < METRICS_NUM_HISTS; h++) {
        struct metrics_hist_snapshot s;
        metrics_hist(m, (enum metrics_hist_id)h, &s);
        head(&o, s.name, "histogram", s.help);
        long long cum = 0;
        for (int i = 0; i < s.num_bounds; i++) {
            cum += s.counts[i];
            put(&o, "folio:%s_bucket{%s,le=\"%g\"} %lld\n", s.name, label, s.bounds[i], cum);
        }
        put(&o, "folio:%s_bucket{%s,le=\"+Inf\"} %lld\n", s.name, label, s.count);
        put(&o, "folio:%s_sum{%s} %.17g\n", s.name, label, s.sum);
        put(&o, "folio:%s_count{%s} %lld\n", s.name, label, s.count);
    }
    return o.len;
}
