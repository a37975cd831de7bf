/* metrics: the engine's latency histograms and request counters, and their Prometheus text.
 *
 * Names copy vLLM's under a `folio:` prefix, so that dashboards built for vLLM read Folio with
 * one rename. The engine thread records (a short mutex-guarded update, no allocation); HTTP
 * threads snapshot. Gauges and token counters come from engine_get_stats; this module only
 * formats them next to the histograms. */
#ifndef FOLIO_METRICS_H
#define FOLIO_METRICS_H

#include <stddef.h>

struct engine_stats;
struct engine_memory;

enum metrics_hist_id {
    METRICS_TTFT,  /* time_to_first_token_seconds: arrival to a request's first token */
    METRICS_ITL,   /* inter_token_latency_seconds: between consecutive tokens of a sample */
    METRICS_TPOT,  /* request_time_per_output_token_seconds: (finish - first) / (tokens - 1) */
    METRICS_E2E,   /* e2e_request_latency_seconds: arrival to finish, aborted requests excluded */
    METRICS_GRAMMAR_COMPILE, /* structured_output_compile_seconds: a grammar prepared for the
                              * vocabulary (cache hits count as 0) */
    METRICS_GRAMMAR_MASK,    /* structured_output_mask_seconds: one token mask */
    METRICS_NUM_HISTS
};

enum metrics_reason { METRICS_STOP, METRICS_LENGTH, METRICS_ABORT, METRICS_NUM_REASONS };

#define METRICS_MAX_BUCKETS 24

struct metrics_hist_snapshot {
    const char *name;                      /* without the prefix */
    const char *help;
    int num_bounds;
    const double *bounds;                  /* [num_bounds] upper bounds, ascending; +Inf implied */
    long long counts[METRICS_MAX_BUCKETS]; /* [num_bounds + 1] per bucket, not cumulative */
    long long count;
    double sum;
};

struct metrics;

/* NULL on allocation failure. Free with metrics_free (NULL ok). */
struct metrics *metrics_create(void);
void metrics_free(struct metrics *m);

void metrics_observe(struct metrics *m, enum metrics_hist_id h, double seconds);
void metrics_count_finish(struct metrics *m, enum metrics_reason why);
/* A request with structured output (response_format, structured_outputs, guided_*), by kind
 * ("json", "regex", "choice", "grammar"); hit: its compiled grammar came from the cache. */
void metrics_count_structured(struct metrics *m, int kind, int hit);
long long metrics_structured(struct metrics *m, int kind);
long long metrics_structured_hits(struct metrics *m);
#define METRICS_STRUCTURED_KINDS 4

void metrics_hist(struct metrics *m, enum metrics_hist_id h, struct metrics_hist_snapshot *out);
long long metrics_finished(struct metrics *m, enum metrics_reason why);
/* The q-quantile (0..1) of a snapshot, interpolated inside its bucket as Prometheus's
 * histogram_quantile does; 0 when empty. */
double metrics_quantile(const struct metrics_hist_snapshot *s, double q);

/* Writes the Prometheus text exposition (format 0.0.4) of the stats, the memory figures (when
 * mem != NULL) and the histograms, labelled model_name="...". Returns the length it needed
 * (like snprintf: >= cap means truncated). */
size_t metrics_prometheus(struct metrics *m, const struct engine_stats *st, const struct engine_memory *mem,
                          const char *model_name, char *buf, size_t cap);

#endif
