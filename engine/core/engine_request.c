/* engine_request: a request's side of the engine (engine.h), on the callers' threads:
 * validation with the OpenAI API's wording, the copies that make a request independent of the
 * caller's memory, its output stream (a bounded buffer per sample that the engine fills and
 * engine_read drains), abort and release. Every buffer is allocated here, at submission, so
 * the step loop never allocates. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text/detok.h"
#include "core/engine_internal.h"
#include "core/metrics.h"
#include "text/stop.h"
#include "base/util.h"
#include "core/structured.h"
#include "grammar/gram_matcher.h"

static void req_free(struct engine_req *r) {
    if (!r) return;
    if (r->samples) {
        for (int i = 0; i < r->n; i++) {
            struct sample *s = &r->samples[i];
            free(s->tokens);
            free(s->blocks);
            free(s->blocks_local);
            detok_free(s->dt);
            stop_free(s->stop);
            gram_matcher_free(s->gm);
            free(s->p_ids);
            free(s->p_lps);
            free(s->p_text);
        }
        free(r->samples);
    }
    free(r->stops);
    stop_set_free(r->stop_set);
    free(r->stop_ids);
    free(r->bias);
    structured_release(r->structured);
    free(r->prompt);
    free(r->tmp);
    free(r->tmp2);
    free(r->r_ids);
    free(r->r_lps);
    free(r->r_text);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

void engine_req_unref(struct engine_req *r) {
    if (atomic_fetch_sub(&r->refs, 1) == 1) req_free(r);
}

int engine_max_num_seqs(const struct engine *e) { return e->max_seqs; }

static int blocks_for(int tokens, int bs) { return (tokens + bs - 1) / bs; }

static int check_request(struct engine *e, const struct engine_request *rq) {
    const struct sampling_params *sp = &rq->params;
    const int L = e->max_model_len, n = rq->num_prompt;
    int rc;
    if (!rq->prompt || n < 1) return folio_err(FOLIO_EINVAL, "the prompt is empty");
    for (int i = 0; i < n; i++)
        if (rq->prompt[i] < 0 || rq->prompt[i] >= e->V)
            return folio_err(FOLIO_EINVAL, "prompt token %d is outside the vocabulary (0..%d)", rq->prompt[i],
                             e->V - 1);
    if ((rc = sampler_check_params(sp, e->V))) return rc;
    if (sp->max_tokens > 0 && (long long)n + sp->max_tokens > L)
        return folio_err(FOLIO_EINVAL,
                         "This model's maximum context length is %d tokens. However, you requested %d output "
                         "tokens and your prompt contains %d input tokens, for a total of %lld tokens. Please "
                         "reduce the length of the input prompt or the number of requested output tokens.",
                         L, sp->max_tokens, n, (long long)n + sp->max_tokens);
    if (n >= L)
        return folio_err(FOLIO_EINVAL,
                         "This model's maximum context length is %d tokens. However, your prompt contains %d "
                         "input tokens, which leaves no room for output tokens. Please reduce the length of the "
                         "input prompt.",
                         L, n);
    if (sp->n > e->max_seqs)
        return folio_err(FOLIO_EINVAL, "n is %d but this engine runs at most %d sequences at once (--max-num-seqs)",
                         sp->n, e->max_seqs);
    /* The blocks it needs at its longest: its samples share the prompt's full blocks. */
    const int total = n + (sp->max_tokens > 0 ? sp->max_tokens : L - n);
    long long need = blocks_for(total, e->bs) + (long long)(sp->n - 1) * (blocks_for(total, e->bs) - n / e->bs);
    if (need > e->num_blocks)
        return folio_err(FOLIO_EINVAL,
                         "this request needs %lld KV cache blocks at its longest (%d tokens x %d samples) but the "
                         "whole cache holds %d blocks; reduce max_tokens or n, or give the engine a larger "
                         "--kv-cache-space",
                         need, total, sp->n, e->num_blocks);
    return 0;
}

static int copy_params(struct engine_req *r, const struct sampling_params *sp) {
    r->sp = *sp;
    /* The stop set holds the request's only copy of the strings: its samples share it, and
     * sp.stop points into it. */
    if (sp->num_stop > 0) {
        r->stop_set = stop_set_create(sp->stop, sp->num_stop, sp->include_stop_str_in_output);
        r->stops = calloc((size_t)sp->num_stop, sizeof *r->stops);
        if (!r->stop_set || !r->stops) return FOLIO_ENOMEM;
        for (int i = 0; i < sp->num_stop; i++) r->stops[i] = stop_set_string(r->stop_set, i);
    }
    r->sp.stop = r->stops;
    if (sp->num_stop_token_ids > 0) {
        if (!(r->stop_ids = malloc(sizeof(int32_t) * (size_t)sp->num_stop_token_ids))) return FOLIO_ENOMEM;
        memcpy(r->stop_ids, sp->stop_token_ids, sizeof(int32_t) * (size_t)sp->num_stop_token_ids);
    }
    r->sp.stop_token_ids = r->stop_ids;
    if (sp->num_logit_bias > 0) {
        if (!(r->bias = malloc(sizeof *r->bias * (size_t)sp->num_logit_bias))) return FOLIO_ENOMEM;
        memcpy(r->bias, sp->logit_bias, sizeof *r->bias * (size_t)sp->num_logit_bias);
    }
    r->sp.logit_bias = r->bias;
    return 0;
}

static int alloc_sample(struct engine *e, struct engine_req *r, int i) {
    struct sample *s = &r->samples[i];
    s->req = r;
    s->index = i;
    s->stop_token = -1;
    s->stop_idx = -1;
    s->tokens = malloc(sizeof(int32_t) * (size_t)(r->num_prompt + r->max_tokens));
    s->blocks = malloc(sizeof(int32_t) * (size_t)e->mbps);
    if (e->kv_local && !(s->blocks_local = malloc(sizeof(int32_t) * (size_t)e->mbps))) return FOLIO_ENOMEM;
    s->dt = detok_create(e->tok, r->prompt, r->num_prompt, r->sp.skip_special_tokens);
    s->p_ids = malloc(sizeof(int32_t) * STREAM_TOKENS);
    s->p_text = malloc(r->text_cap);
    if (r->sp.logprobs >= 0) s->p_lps = malloc(sizeof *s->p_lps * STREAM_TOKENS);
    if (r->stop_set) s->stop = stop_open(r->stop_set);
    if (r->structured) s->gm = gram_matcher_create(structured_compiled(r->structured));
    if (!s->tokens || !s->blocks || !s->dt || !s->p_ids || !s->p_text || (r->sp.logprobs >= 0 && !s->p_lps) ||
        (r->stop_set && !s->stop) || (r->structured && !s->gm))
        return FOLIO_ENOMEM;
    memcpy(s->tokens, r->prompt, sizeof(int32_t) * (size_t)r->num_prompt);
    struct scheduler_seq *q = &s->seq;
    q->tokens = s->tokens;
    q->num_tokens = q->num_prompt = r->num_prompt;
    q->priority = r->priority;
    q->seats = i == 0 ? r->n : 1;
    kv_seq_init(&q->kv, s->blocks, e->mbps);
    if (e->kv_local) kv_seq_init(&q->kv_local, s->blocks_local, e->mbps);
    return 0;
}

int engine_submit(struct engine *e, const struct engine_request *rq, struct engine_req **out) {
    int rc;
    if ((rc = check_request(e, rq))) return rc;
    struct engine_req *r = calloc(1, sizeof *r);
    if (!r) return folio_err(FOLIO_ENOMEM, "out of memory");
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&r->refs, 2); /* the caller's and the engine's */
    atomic_init(&r->abort, 0);
    r->e = e;
    r->n = rq->params.n;
    r->num_prompt = rq->num_prompt;
    r->priority = rq->priority;
    r->t_arrival = folio_now();
    r->max_tokens = rq->params.max_tokens > 0 ? rq->params.max_tokens : e->max_model_len - rq->num_prompt;
    size_t longest_stop = 0;
    for (int i = 0; i < rq->params.num_stop; i++)
        if (rq->params.stop[i] && strlen(rq->params.stop[i]) > longest_stop) longest_stop = strlen(rq->params.stop[i]);
    /* One step adds at most a push, a flush and the stop filter's held-back text. */
    r->step_text = 2 * e->max_delta + longest_stop + 64;
    r->text_cap = 4 * r->step_text;
    r->prompt = malloc(sizeof(int32_t) * (size_t)rq->num_prompt);
    r->samples = calloc((size_t)r->n, sizeof *r->samples);
    r->tmp = malloc(r->step_text);
    r->tmp2 = malloc(r->step_text);
    r->r_ids = malloc(sizeof(int32_t) * STREAM_TOKENS);
    r->r_text = malloc(r->text_cap + 1);
    if (rq->params.logprobs >= 0) r->r_lps = malloc(sizeof *r->r_lps * STREAM_TOKENS);
    if (!r->prompt || !r->samples || !r->tmp || !r->tmp2 || !r->r_ids || !r->r_text ||
        (rq->params.logprobs >= 0 && !r->r_lps)) {
        rc = FOLIO_ENOMEM;
        goto fail;
    }
    memcpy(r->prompt, rq->prompt, sizeof(int32_t) * (size_t)rq->num_prompt);
    if ((rc = copy_params(r, &rq->params))) goto fail;
    if (rq->structured) {
        structured_retain(rq->structured);
        r->structured = rq->structured;
    }
    for (int i = 0; i < r->n; i++)
        if ((rc = alloc_sample(e, r, i))) goto fail;

    pthread_mutex_lock(&e->mu);
    if (e->p.max_waiting > 0) {
        pthread_mutex_lock(&e->stats_mu);
        const int waiting = e->stats.num_waiting + e->num_incoming;
        pthread_mutex_unlock(&e->stats_mu);
        if (waiting >= e->p.max_waiting) {
            pthread_mutex_unlock(&e->mu);
            rc = folio_err(FOLIO_EBUSY, "the server is busy: %d requests are waiting (--max-waiting %d); retry later",
                           waiting, e->p.max_waiting);
            goto fail;
        }
    }
    e->num_incoming++;
    r->seed = rq->params.has_seed ? rq->params.seed : folio_mix64(e->seed_state++);
    uint64_t arrival = e->arrivals++;
    for (int i = 0; i < r->n; i++) r->samples[i].seq.arrival = arrival;
    r->prev = e->in_tail;
    r->next = NULL;
    if (e->in_tail) e->in_tail->next = r;
    else e->in_head = r;
    e->in_tail = r;
    e->kicks++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    *out = r;
    return 0;
fail:
    req_free(r);
    return rc == FOLIO_ENOMEM ? folio_err(FOLIO_ENOMEM, "out of memory for a request") : rc;
}

static void kick(struct engine *e) {
    pthread_mutex_lock(&e->mu);
    e->kicks++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void engine_abort(struct engine_req *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    if (!r->engine_gone && !atomic_exchange(&r->abort, 1)) {
        atomic_fetch_add(&r->e->aborts, 1);
        kick(r->e);
    }
    pthread_mutex_unlock(&r->mu);
}

void engine_release(struct engine_req *r) {
    if (!r) return;
    engine_abort(r);
    engine_req_unref(r);
}

/* ---- the output stream ---- */

void engine_emit(struct sample *s, int32_t id, const struct sampler_logprobs *lp, const char *text, size_t n,
                 enum engine_finish finish, const char *error) {
    struct engine_req *r = s->req;
    struct metrics *m = r->e->metrics;
    const double now = folio_now();
    pthread_mutex_lock(&r->mu);
    if (id >= 0) {
        if (s->t_first == 0) {
            s->t_first = now;
            if (s->index == 0) metrics_observe(m, METRICS_TTFT, now - r->t_arrival);
        } else {
            metrics_observe(m, METRICS_ITL, now - s->t_last);
        }
        s->t_last = now;
        s->p_ids[s->p_n] = id;
        if (s->p_lps && lp) s->p_lps[s->p_n] = *lp;
        s->p_n++;
    }
    if (n > r->text_cap - s->p_text_n) n = r->text_cap - s->p_text_n; /* cannot happen: see has_room */
    memcpy(s->p_text + s->p_text_n, text, n);
    s->p_text_n += n;
    if (finish != ENGINE_FINISH_NONE) {
        s->finish = finish;
        s->t_finish = now;
        metrics_count_finish(m, finish == ENGINE_FINISH_STOP     ? METRICS_STOP
                                : finish == ENGINE_FINISH_LENGTH ? METRICS_LENGTH
                                                                 : METRICS_ABORT);
        if (finish != ENGINE_FINISH_ABORT && s->num_output > 1)
            metrics_observe(m, METRICS_TPOT, (now - s->t_first) / (s->num_output - 1));
        if (error) {
            snprintf(r->error, sizeof r->error, "%s", error);
            s->error = r->error;
        }
    }
    s->out_count = s->num_output;
    r->num_cached = r->samples[0].seq.num_cached;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

int engine_has_room(const struct sample *s) {
    return s->p_n < STREAM_TOKENS && s->req->text_cap - s->p_text_n >= s->req->step_text;
}

int engine_read(struct engine_req *r, struct engine_output *out, int timeout_ms) {
    struct timespec deadline;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&r->mu);
    for (;;) {
        int all_read = 1;
        for (int k = 0; k < r->n; k++) {
            struct sample *s = &r->samples[(r->cursor + k) % r->n];
            int ended = s->finish != ENGINE_FINISH_NONE;
            if (!s->finish_read) all_read = 0;
            if (s->p_n == 0 && s->p_text_n == 0 && (!ended || s->finish_read)) continue;
            r->cursor = (s->index + 1) % r->n;
            memset(out, 0, sizeof *out);
            out->index = s->index;
            out->num_tokens = s->p_n;
            memcpy(r->r_ids, s->p_ids, sizeof(int32_t) * (size_t)s->p_n);
            out->token_ids = r->r_ids;
            if (s->p_lps) {
                memcpy(r->r_lps, s->p_lps, sizeof *r->r_lps * (size_t)s->p_n);
                out->logprobs = r->r_lps;
            }
            memcpy(r->r_text, s->p_text, s->p_text_n);
            r->r_text[s->p_text_n] = '\0';
            out->text = r->r_text;
            out->text_len = s->p_text_n;
            out->stop_token = -1;
            if (ended) {
                out->finish = s->finish;
                out->stop_token = s->stop_token;
                out->stop_str = s->stop_idx >= 0 ? r->sp.stop[s->stop_idx] : NULL;
                out->error = s->error;
                s->finish_read = 1;
            }
            out->num_prompt_tokens = r->num_prompt;
            out->num_cached_tokens = r->num_cached;
            out->num_output_tokens = s->out_count;
            out->arrival_time = r->t_arrival;
            out->first_token_time = s->t_first;
            out->finish_time = s->t_finish;
            s->p_n = 0;
            s->p_text_n = 0;
            if (r->stalled && !r->engine_gone) {
                r->stalled = 0;
                kick(r->e);
            }
            pthread_mutex_unlock(&r->mu);
            return ENGINE_READ_OUTPUT;
        }
        if (all_read) {
            pthread_mutex_unlock(&r->mu);
            return ENGINE_READ_DONE;
        }
        if (timeout_ms < 0) {
            pthread_cond_wait(&r->cv, &r->mu);
        } else if (timeout_ms == 0 || pthread_cond_timedwait(&r->cv, &r->mu, &deadline) != 0) {
            /* A poll must not cost a system call. */
            pthread_mutex_unlock(&r->mu);
            return ENGINE_READ_TIMEOUT;
        }
    }
}
