/* api_endpoints: every endpoint but generation: /health, /version, /metrics, /stats,
 * /v1/models, /tokenize and /detokenize; and the chat prompt (template + tokenizer) that
 * /tokenize shares with /v1/chat/completions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/api_internal.h"
#include "server/reasoning.h"
#include "chat_template/chat_template.h"
#include "core/engine.h"
#include "core/metrics.h"
#include "text/tokenizer.h"
#include "base/util.h"

void api_ep_health(struct api *a, struct mg_connection *c, struct engine *e, const char *b, size_t n) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "status", e ? "ok" : "loading");
    api_send_json(a, c, e ? 200 : 503, j);
}

void api_ep_version(struct api *a, struct mg_connection *c, struct engine *e, const char *b, size_t n) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "version", FOLIO_VERSION);
    api_send_json(a, c, 200, j);
}

void api_ep_metrics(struct api *a, struct mg_connection *c, struct engine *e, const char *b, size_t n) {
    struct engine_stats st;
    struct engine_memory em;
    engine_get_stats(e, &st);
    engine_memory(e, &em);
    size_t cap = 1 << 15;
    for (;;) {
        char *buf = malloc(cap);
        if (!buf) {
            api_send_error_msg(a, c, 500, NULL, "out of memory");
            return;
        }
        size_t len = metrics_prometheus(engine_metrics(e), &st, &em, a->names[0], buf, cap);
        if (len < cap) {
            char cors[512];
            api_cors_headers(a, c, cors, sizeof cors);
            mg_printf(c,
                      "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                      "Content-Length: %zu\r\nCache-Control: no-store\r\n%s\r\n",
                      len, cors);
            mg_write(c, buf, len);
            free(buf);
            return;
        }
        free(buf);
        cap = len + 1;
    }
}

static void add_hist(cJSON *root, const char *key, struct metrics *m, enum metrics_hist_id h) {
    struct metrics_hist_snapshot s;
    metrics_hist(m, h, &s);
    cJSON *o = cJSON_AddObjectToObject(root, key);
    cJSON_AddNumberToObject(o, "count", (double)s.count);
    cJSON_AddNumberToObject(o, "mean", s.count ? s.sum / (double)s.count : 0);
    cJSON_AddNumberToObject(o, "p50", metrics_quantile(&s, 0.5));
    cJSON_AddNumberToObject(o, "p99", metrics_quantile(&s, 0.99));
}

void api_ep_stats(struct api *a, struct mg_connection *c, struct engine *e, const char *b, size_t n) {
    struct engine_stats st;
    engine_get_stats(e, &st);
    struct metrics *m = engine_metrics(e);
    struct engine_memory em;
    engine_memory(e, &em);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", a->names[0]);
    cJSON_AddStringToObject(j, "state", "ready");
    cJSON_AddNumberToObject(j, "uptime_s", folio_now() - a->t_start);
    cJSON_AddNumberToObject(j, "max_model_len", engine_max_model_len(e));
    cJSON_AddStringToObject(j, "device", em.device);
    /* As model cards count them: a MoE's total, and what one token's forward pass uses. */
    const struct model_config *cfg = engine_model_config(e);
    int64_t total, active;
    config_param_counts(cfg, &total, &active);
    cJSON *mp = cJSON_AddObjectToObject(j, "parameters");
    cJSON_AddStringToObject(mp, "architecture", cfg->arch_name);
    cJSON_AddNumberToObject(mp, "total", (double)total);
    cJSON_AddNumberToObject(mp, "active", (double)active);
    cJSON_AddNumberToObject(mp, "experts", cfg->num_experts);
    cJSON_AddNumberToObject(mp, "experts_per_token", cfg->num_experts ? cfg->num_experts_per_tok : 0);
    cJSON *mem = cJSON_AddObjectToObject(j, "memory");
    cJSON_AddNumberToObject(mem, "weights_bytes", (double)em.weights);
    cJSON_AddStringToObject(mem, "weights_dtype", em.weights_dtype ? em.weights_dtype : "float32");
    cJSON_AddStringToObject(mem, "quantization", em.quantization ? em.quantization : "none");
    cJSON_AddNumberToObject(mem, "kv_cache_bytes", (double)em.kv_cache);
    cJSON_AddNumberToObject(mem, "activation_bytes", (double)em.activations);
    cJSON_AddNumberToObject(mem, "other_bytes", (double)em.other);
    if (em.device_total) {
        cJSON_AddNumberToObject(mem, "device_total_bytes", (double)em.device_total);
        cJSON_AddNumberToObject(mem, "device_free_bytes", (double)em.device_free);
        cJSON_AddNumberToObject(mem, "gpu_memory_utilization", em.utilization);
    }
    cJSON *req = cJSON_AddObjectToObject(j, "requests");
    cJSON_AddNumberToObject(req, "running", st.num_running);
    cJSON_AddNumberToObject(req, "waiting", st.num_waiting);
    cJSON_AddNumberToObject(req, "preempted_waiting", st.num_preempted_waiting);
    cJSON_AddNumberToObject(req, "preemptions", (double)st.num_preemptions);
    cJSON_AddNumberToObject(req, "in_flight", st.num_requests);
    cJSON_AddNumberToObject(req, "finished_stop", (double)metrics_finished(m, METRICS_STOP));
    cJSON_AddNumberToObject(req, "finished_length", (double)metrics_finished(m, METRICS_LENGTH));
    cJSON_AddNumberToObject(req, "finished_abort", (double)metrics_finished(m, METRICS_ABORT));
    cJSON *kv = cJSON_AddObjectToObject(j, "kv_cache");
    cJSON_AddNumberToObject(kv, "blocks", st.kv_blocks);
    cJSON_AddNumberToObject(kv, "used", st.kv_used);
    cJSON_AddNumberToObject(kv, "cached", st.kv_cached);
    cJSON_AddNumberToObject(kv, "free", st.kv_free);
    cJSON_AddNumberToObject(kv, "touched", st.kv_touched);
    cJSON_AddNumberToObject(kv, "block_size", st.block_size);
    cJSON_AddStringToObject(kv, "dtype", em.kv_dtype ? em.kv_dtype : "float32");
    if (st.kv_local_blocks) { /* the sliding layers' own pool: each sequence keeps only its window there */
        cJSON *loc = cJSON_AddObjectToObject(kv, "sliding_window_layers");
        cJSON_AddNumberToObject(loc, "blocks", st.kv_local_blocks);
        cJSON_AddNumberToObject(loc, "used", st.kv_local_used);
    }
    cJSON_AddNumberToObject(kv, "usage", st.kv_usage);
    cJSON_AddNumberToObject(kv, "waste", st.waste);
    cJSON *pc = cJSON_AddObjectToObject(j, "prefix_cache");
    cJSON_AddNumberToObject(pc, "queries", (double)st.prefix_queries);
    cJSON_AddNumberToObject(pc, "hits", (double)st.prefix_hits);
    cJSON_AddNumberToObject(pc, "hit_rate", st.prefix_queries ? (double)st.prefix_hits / (double)st.prefix_queries : 0);
    cJSON *tk = cJSON_AddObjectToObject(j, "tokens");
    cJSON_AddNumberToObject(tk, "prompt", (double)st.prompt_tokens);
    cJSON_AddNumberToObject(tk, "generation", (double)st.generation_tokens);
    cJSON_AddNumberToObject(tk, "generation_per_s", st.gen_tokens_per_s);
    cJSON *steps = cJSON_AddObjectToObject(j, "steps");
    cJSON_AddNumberToObject(steps, "total", (double)st.steps);
    cJSON_AddNumberToObject(steps, "device_argmax", (double)st.greedy_device_steps);
    cJSON_AddNumberToObject(steps, "cuda_graph", (double)st.graph_steps);
    cJSON_AddNumberToObject(steps, "cuda_graphs_recorded", (double)st.cuda_graphs);
    cJSON_AddNumberToObject(steps, "forward_s", st.forward_seconds);
    cJSON_AddNumberToObject(steps, "sample_s", st.sample_seconds);
    add_hist(j, "ttft_s", m, METRICS_TTFT);
    add_hist(j, "itl_s", m, METRICS_ITL);
    add_hist(j, "e2e_s", m, METRICS_E2E);
    api_send_json(a, c, 200, j);
}

static cJSON *model_card(struct api *a, struct engine *e, const char *id) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)a->created);
    cJSON_AddStringToObject(m, "owned_by", "folio");
    cJSON_AddStringToObject(m, "root", a->p.model_path ? a->p.model_path : id);
    cJSON_AddNullToObject(m, "parent");
    cJSON_AddNumberToObject(m, "max_model_len", engine_max_model_len(e));
    return m;
}

/* GET /v1/models, or /v1/models/{id} when `id` is given. */
void api_ep_models(struct api *a, struct mg_connection *c, struct engine *e, const char *id, size_t n) {
    if (id) {
        struct api_error err;
        if (api_check_model(a, id, &err)) {
            api_send_error(a, c, &err);
            return;
        }
        api_send_json(a, c, 200, model_card(a, e, id));
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(j, "data");
    for (int i = 0; i < a->num_names; i++) cJSON_AddItemToArray(data, model_card(a, e, a->names[i]));
    api_send_json(a, c, 200, j);
}

/* continue_final_message: the rendered text ends with the last message's content, so that the
 * model continues it (the template would close the turn after it). */
static int cut_after_final(const struct api_request *r, char *text, size_t *len, struct api_error *err) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(r->chat_ctx, "messages");
    const cJSON *last = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(last, "content");
    if (!cJSON_IsString(content) || !content->valuestring[0]) return 0;
    const char *want = content->valuestring;
    const size_t wn = strlen(want);
    /* Its last occurrence: the template may have quoted earlier text that contains it. */
    for (size_t i = *len >= wn ? *len - wn + 1 : 0; i-- > 0;)
        if (!memcmp(text + i, want, wn)) {
            *len = i + wn;
            text[*len] = '\0';
            return 0;
        }
    return api_error_set(err, 400, "continue_final_message",
                         "continue_final_message: the chat template does not write the final message's content "
                         "verbatim, so it cannot be continued");
}

int api_chat_prompt(struct api *a, struct engine *e, const struct api_request *r, int32_t **ids, int *n,
                    int *think_open, struct api_error *err) {
    if (!a->tmpl)
        return api_error_set(err, 400, "messages",
                             "this model has no chat template (tokenizer_config.json has no chat_template): start "
                             "the server with --chat-template FILE, or use /v1/completions");
    cJSON *ctx = cJSON_Duplicate(r->chat_ctx, 1);
    if (!ctx) return api_error_set(err, 500, NULL, "out of memory");
    /* Request kwargs may not override these. */
    cJSON_DeleteItemFromObjectCaseSensitive(ctx, "add_generation_prompt");
    cJSON_AddBoolToObject(ctx, "add_generation_prompt", r->add_generation_prompt);
    if (!cJSON_GetObjectItemCaseSensitive(ctx, "bos_token")) cJSON_AddStringToObject(ctx, "bos_token", a->bos_token);
    if (!cJSON_GetObjectItemCaseSensitive(ctx, "eos_token")) cJSON_AddStringToObject(ctx, "eos_token", a->eos_token);
    char *text = NULL;
    size_t len = 0;
    int rc = chat_template_render(a->tmpl, ctx, &text, &len);
    cJSON_Delete(ctx);
    if (rc) return api_error_set(err, 400, "messages", "chat template error: %s", folio_last_error());
    if (r->continue_final_message && (rc = cut_after_final(r, text, &len, err))) goto out;
    if (think_open) *think_open = reasoning_prompt_opens(text, len) ? 1 : reasoning_prompt_closes(text, len) ? -1 : 0;
    if ((rc = tokenizer_encode(engine_tokenizer(e), text, len, r->add_special_tokens, ids, n)))
        rc = api_error_set(err, 400, "messages", "%s", folio_last_error());
out:
    free(text);
    return rc;
}

void api_ep_tokenize(struct api *a, struct mg_connection *c, struct engine *e, const char *body, size_t len) {
    struct api_request r;
    struct api_error err;
    int32_t *ids = NULL;
    int n = 0;
    const struct tokenizer *tok = engine_tokenizer(e);
    if (api_request_parse(API_TOKENIZE, body, len, &a->p.limits, &r, &err)) {
        api_send_error(a, c, &err);
        if (len >= API_TRIM_BODY_BYTES) folio_malloc_release();
        return;
    }
    if (api_check_model(a, r.model, &err)) goto fail;
    if (r.chat_ctx) {
        if (api_chat_prompt(a, e, &r, &ids, &n, NULL, &err)) goto fail;
    } else if (tokenizer_encode(tok, r.prompts[0].text, r.prompts[0].text_len, r.add_special_tokens, &ids, &n)) {
        api_error_set(&err, 400, "prompt", "%s", folio_last_error());
        goto fail;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "count", n);
    cJSON_AddNumberToObject(j, "max_model_len", engine_max_model_len(e));
    cJSON *t = cJSON_AddArrayToObject(j, "tokens");
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(t, cJSON_CreateNumber(ids[i]));
    if (r.return_token_strs) {
        cJSON *s = cJSON_AddArrayToObject(j, "token_strs");
        for (int i = 0; i < n; i++) {
            const char *piece = tokenizer_id_to_piece(tok, ids[i]);
            cJSON_AddItemToArray(s, cJSON_CreateString(piece ? piece : ""));
        }
    } else {
        cJSON_AddNullToObject(j, "token_strs");
    }
    api_send_json(a, c, 200, j);
    free(ids);
    api_request_free(&r);
    if (len >= API_TRIM_BODY_BYTES) folio_malloc_release(); /* its parse tree and answer */
    return;
fail:
    api_send_error(a, c, &err);
    free(ids);
    api_request_free(&r);
    if (len >= API_TRIM_BODY_BYTES) folio_malloc_release(); /* its parse tree and answer */
}

void api_ep_detokenize(struct api *a, struct mg_connection *c, struct engine *e, const char *body, size_t len) {
    struct api_request r;
    struct api_error err;
    char *text = NULL;
    size_t n = 0;
    const struct tokenizer *tok = engine_tokenizer(e);
    if (api_request_parse(API_DETOKENIZE, body, len, &a->p.limits, &r, &err)) {
        api_send_error(a, c, &err);
        if (len >= API_TRIM_BODY_BYTES) folio_malloc_release();
        return;
    }
    if (api_check_model(a, r.model, &err)) goto fail;
    for (int i = 0; i < r.num_tokens; i++)
        if (r.tokens[i] >= tokenizer_vocab_size(tok)) {
            api_error_set(&err, 400, "tokens", "token id %d is outside the vocabulary (0..%d)", r.tokens[i],
                          tokenizer_vocab_size(tok) - 1);
            goto fail;
        }
    if (tok_decode(tok, r.tokens, r.num_tokens, 0, &text, &n)) {
        api_error_set(&err, 400, "tokens", "%s", folio_last_error());
        goto fail;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "prompt", text);
    api_send_json(a, c, 200, j);
    free(text);
    api_request_free(&r);
    if (len >= API_TRIM_BODY_BYTES) folio_malloc_release(); /* its parse tree and answer */
    return;
fail:
    api_send_error(a, c, &err);
    api_request_free(&r);
    if (len >= API_TRIM_BODY_BYTES) folio_malloc_release(); /* its parse tree and answer */
}
