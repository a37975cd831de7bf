/* api_responses: /v1/responses translated into a chat request, and its answer written back as
 * a response object or its event stream. See api_responses.h. */
#include "server/api_responses.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"

static int is_unset(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* ---- the request ---- */

/* A message's text: a string, or its text parts (input_text, output_text, text) joined. */
static int item_text(const cJSON *content, int idx, char **out, struct api_error *err) {
    if (cJSON_IsString(content)) return (*out = strdup(content->valuestring)) ? 0 : api_error_set(err, 500, NULL, "out of memory");
    if (!cJSON_IsArray(content))
        return api_error_set(err, 400, "input", "input[%d].content must be a string or a list of content parts", idx);
    size_t n = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type"), *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        const char *t = cJSON_IsString(type) ? type->valuestring : "";
        if (strcmp(t, "input_text") != 0 && strcmp(t, "output_text") != 0 && strcmp(t, "text") != 0)
            return api_error_set(err, 400, "input", "input[%d].content: parts of type '%.40s' are not supported (this model takes text)", idx, t);
        if (!cJSON_IsString(text)) return api_error_set(err, 400, "input", "input[%d].content: a text part needs a string 'text'", idx);
        n += strlen(text->valuestring) + 1;
    }
    char *s = malloc(n + 1), *w = s;
    if (!s) return api_error_set(err, 500, NULL, "out of memory");
    cJSON_ArrayForEach(p, content) {
        const char *t = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
        if (w != s) *w++ = '\n';
        memcpy(w, t, strlen(t));
        w += strlen(t);
    }
    *w = '\0';
    *out = s;
    return 0;
}

static cJSON *add_message(cJSON *msgs, const char *role, const char *text) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", text);
    cJSON_AddItemToArray(msgs, m);
    return m;
}

/* input (a string or items) into chat messages after the instructions. */
static int input_messages(const cJSON *input, cJSON *msgs, struct api_error *err) {
    if (cJSON_IsString(input)) {
        add_message(msgs, "user", input->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(input) || cJSON_GetArraySize(input) == 0)
        return api_error_set(err, 400, "input", "'input' must be a string or a non-empty list of items");
    int i = 0;
    cJSON *last_assistant = NULL; /* function_call items join the assistant message before them */
    for (const cJSON *it = input->child; it; it = it->next, i++) {
        if (!cJSON_IsObject(it)) return api_error_set(err, 400, "input", "input[%d] must be an object", i);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(it, "type");
        const char *t = cJSON_IsString(type) ? type->valuestring : "message";
        if (!strcmp(t, "message")) {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
            if (!cJSON_IsString(role) || !(!strcmp(role->valuestring, "user") || !strcmp(role->valuestring, "assistant") ||
                                           !strcmp(role->valuestring, "system") || !strcmp(role->valuestring, "developer")))
                return api_error_set(err, 400, "input", "input[%d].role must be user, assistant, system or developer", i);
            char *text = NULL;
            int rc = item_text(cJSON_GetObjectItemCaseSensitive(it, "content"), i, &text, err);
            if (rc) return rc;
            cJSON *m = add_message(msgs, !strcmp(role->valuestring, "developer") ? "system" : role->valuestring, text);
            free(text);
            last_assistant = !strcmp(role->valuestring, "assistant") ? m : NULL;
        } else if (!strcmp(t, "function_call")) {
            const cJSON *call_id = cJSON_GetObjectItemCaseSensitive(it, "call_id");
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
            const cJSON *args = cJSON_GetObjectItemCaseSensitive(it, "arguments");
            if (!cJSON_IsString(call_id) || !cJSON_IsString(name) || !cJSON_IsString(args))
                return api_error_set(err, 400, "input", "input[%d]: a function_call needs string call_id, name and arguments", i);
            if (!last_assistant) {
                last_assistant = add_message(msgs, "assistant", "");
            }
            cJSON *calls = cJSON_GetObjectItemCaseSensitive(last_assistant, "tool_calls");
            if (!calls) calls = cJSON_AddArrayToObject(last_assistant, "tool_calls");
            cJSON *tc = cJSON_CreateObject();
            cJSON_AddStringToObject(tc, "id", call_id->valuestring);
            cJSON_AddStringToObject(tc, "type", "function");
            cJSON *fn = cJSON_AddObjectToObject(tc, "function");
            cJSON_AddStringToObject(fn, "name", name->valuestring);
            cJSON_AddStringToObject(fn, "arguments", args->valuestring);
            cJSON_AddItemToArray(calls, tc);
        } else if (!strcmp(t, "function_call_output")) {
            const cJSON *call_id = cJSON_GetObjectItemCaseSensitive(it, "call_id");
            const cJSON *output = cJSON_GetObjectItemCaseSensitive(it, "output");
            if (!cJSON_IsString(call_id)) return api_error_set(err, 400, "input", "input[%d]: a function_call_output needs a string call_id", i);
            char *text = NULL;
            int rc = item_text(output, i, &text, err);
            if (rc) return rc;
            cJSON *m = add_message(msgs, "tool", text);
            free(text);
            cJSON_AddStringToObject(m, "tool_call_id", call_id->valuestring);
            last_assistant = NULL;
        } else if (!strcmp(t, "reasoning")) {
            /* earlier reasoning is not shown to the model again, as the templates drop it */
        } else {
            return api_error_set(err, 400, "input", "input[%d]: items of type '%.40s' are not supported", i, t);
        }
    }
    return 0;
}

/* Responses tools are flat ({"type":"function","name",...}); chat's nest the function. */
static int chat_tools(const cJSON *tools, cJSON *chat, struct api_error *err) {
    if (is_unset(tools)) return 0;
    if (!cJSON_IsArray(tools)) return api_error_set(err, 400, "tools", "'tools' must be a list");
    cJSON *out = cJSON_AddArrayToObject(chat, "tools");
    int i = 0;
    for (const cJSON *t = tools->child; t; t = t->next, i++) {
        char param[48];
        snprintf(param, sizeof param, "tools[%d]", i);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        if (!cJSON_IsObject(t) || !cJSON_IsString(type))
            return api_error_set(err, 400, param, "%s must be an object with a type", param);
        if (strcmp(type->valuestring, "function") != 0)
            return api_error_set(err, 400, param, "%s: tools of type '%.40s' are not supported (only function)", param,
                                 type->valuestring);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
        snprintf(param, sizeof param, "tools[%d].name", i);
        if (!cJSON_IsString(name)) return api_error_set(err, 400, param, "%s is required", param);
        cJSON *ct = cJSON_CreateObject();
        cJSON_AddStringToObject(ct, "type", "function");
        cJSON *fn = cJSON_AddObjectToObject(ct, "function");
        static const char *const keys[] = {"name", "description", "parameters", "strict"};
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, keys[k]);
            if (v) cJSON_AddItemToObject(fn, keys[k], cJSON_Duplicate(v, 1));
        }
        cJSON_AddItemToArray(out, ct);
    }
    return 0;
}

static int copy_field(const cJSON *from, const char *key, cJSON *to, const char *as) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(from, key);
    if (!v) return 0;
    cJSON *d = cJSON_Duplicate(v, 1);
    if (!d) return -1;
    cJSON_AddItemToObject(to, as, d);
    return 0;
}

/* The chat body for a Responses body. */
static int to_chat(const cJSON *body, cJSON *chat, struct api_error *err) {
    int rc;
    if (!is_unset(cJSON_GetObjectItemCaseSensitive(body, "background")) &&
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "background")))
        return api_error_set(err, 400, "background", "background responses are not supported");
    cJSON *msgs = cJSON_AddArrayToObject(chat, "messages");
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(body, "instructions");
    if (!is_unset(ins)) {
        if (!cJSON_IsString(ins)) return api_error_set(err, 400, "instructions", "'instructions' must be a string");
        add_message(msgs, "system", ins->valuestring);
    }
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(body, "input");
    if (is_unset(input)) return api_error_set(err, 400, "input", "'input' is required");
    if ((rc = input_messages(input, msgs, err))) return rc;
    if ((rc = chat_tools(cJSON_GetObjectItemCaseSensitive(body, "tools"), chat, err))) return rc;
    static const char *const same[] = {"model", "tool_choice", "parallel_tool_calls", "temperature", "top_p", "stream",
                                       "seed", "top_k", "min_p", "repetition_penalty", "chat_template_kwargs",
                                       "presence_penalty", "frequency_penalty", "stop", "logit_bias",
                                       "min_tokens", "ignore_eos", "skip_special_tokens"};
    for (size_t k = 0; k < sizeof same / sizeof *same; k++)
        if (copy_field(body, same[k], chat, same[k])) return api_error_set(err, 500, NULL, "out of memory");
    if (copy_field(body, "max_output_tokens", chat, "max_tokens")) return api_error_set(err, 500, NULL, "out of memory");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(body, "text");
    const cJSON *fmt = cJSON_IsObject(text) ? cJSON_GetObjectItemCaseSensitive(text, "format") : NULL;
    if (!is_unset(text) && !cJSON_IsObject(text)) return api_error_set(err, 400, "text", "'text' must be an object");
    if (cJSON_IsObject(fmt)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(fmt, "type");
        if (!cJSON_IsString(type)) return api_error_set(err, 400, "text.format", "text.format needs a type");
        cJSON *rf = cJSON_AddObjectToObject(chat, "response_format");
        cJSON_AddStringToObject(rf, "type", type->valuestring);
        if (!strcmp(type->valuestring, "json_schema")) {
            cJSON *js = cJSON_AddObjectToObject(rf, "json_schema");
            if (copy_field(fmt, "name", js, "name") || copy_field(fmt, "schema", js, "schema") ||
                copy_field(fmt, "strict", js, "strict"))
                return api_error_set(err, 500, NULL, "out of memory");
        }
    }
    /* reasoning.effort "none"/"minimal": the hybrid templates' switch (Qwen3's enable_thinking). */
    const cJSON *reasoning = cJSON_GetObjectItemCaseSensitive(body, "reasoning");
    const cJSON *effort = cJSON_IsObject(reasoning) ? cJSON_GetObjectItemCaseSensitive(reasoning, "effort") : NULL;
    if (cJSON_IsString(effort) && (!strcmp(effort->valuestring, "none") || !strcmp(effort->valuestring, "minimal"))) {
        cJSON *kw = cJSON_GetObjectItemCaseSensitive(chat, "chat_template_kwargs");
        if (!cJSON_IsObject(kw)) {
            cJSON_DeleteItemFromObjectCaseSensitive(chat, "chat_template_kwargs");
            kw = cJSON_AddObjectToObject(chat, "chat_template_kwargs");
        }
        if (!cJSON_GetObjectItemCaseSensitive(kw, "enable_thinking")) cJSON_AddFalseToObject(kw, "enable_thinking");
    }
    return 0;
}

int api_resp_parse(const char *text, size_t len, const struct api_limits *limits, const char *store_header,
                   const char *prev_header, struct api_request *r, struct api_resp *m, struct api_error *err) {
    int rc = 0;
    cJSON *body = NULL, *chat = NULL;
    char *chat_text = NULL;
    memset(m, 0, sizeof *m);
    memset(r, 0, sizeof *r);
    memset(err, 0, sizeof *err);
    const struct api_limits lim = limits ? *limits : api_default_limits();
    const long long maxv = lim.max_json_values ? lim.max_json_values : api_default_limits().max_json_values;
    /* counted before a tree is built, as api_request_parse does */
    if (folio_json_count_values(text, len, maxv) > maxv) {
        rc = api_error_set(err, 413, NULL, "the request body holds more than %lld JSON values (--max-json-values)", maxv);
        goto out;
    }
    if (folio_json_max_depth(text, len, FOLIO_JSON_MAX_DEPTH) > FOLIO_JSON_MAX_DEPTH) {
        rc = api_error_set(err, 400, NULL, "the request body nests arrays and objects more than %d levels deep",
                           FOLIO_JSON_MAX_DEPTH);
        goto out;
    }
    body = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(body)) {
        rc = api_error_set(err, 400, NULL, body ? "the request body must be a JSON object" : "the request body is not valid JSON");
        goto out;
    }
    const cJSON *prev = cJSON_GetObjectItemCaseSensitive(body, "previous_response_id");
    if (!is_unset(prev)) {
        rc = api_error_set(err, 400, "previous_response_id",
                           "folio-engine runs stateless and keeps no responses: send previous_response_id through "
                           "foliod, which stores them, or send the whole conversation as input");
        goto out;
    }
    const cJSON *store = cJSON_GetObjectItemCaseSensitive(body, "store");
    if (!is_unset(store) && !cJSON_IsBool(store)) {
        rc = api_error_set(err, 400, "store", "'store' must be a boolean");
        goto out;
    }
    m->store = store_header && !strcmp(store_header, "1") && !cJSON_IsFalse(store);
    if (prev_header) snprintf(m->previous_id, sizeof m->previous_id, "%s", prev_header);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(body, "metadata");
    if (!is_unset(md) && (!cJSON_IsObject(md) || cJSON_GetArraySize(md) > 16)) {
        rc = api_error_set(err, 400, "metadata", "'metadata' must be an object of at most 16 keys");
        goto out;
    }
    if (!(chat = cJSON_CreateObject()) || !(m->echo = cJSON_CreateObject())) {
        rc = api_error_set(err, 500, NULL, "out of memory");
        goto out;
    }
    if ((rc = to_chat(body, chat, err))) goto out;
    static const char *const echoed[] = {"instructions", "tools", "tool_choice", "text", "reasoning", "metadata",
                                         "temperature", "top_p", "max_output_tokens", "parallel_tool_calls"};
    for (size_t k = 0; k < sizeof echoed / sizeof *echoed; k++)
        if (copy_field(body, echoed[k], m->echo, echoed[k])) {
            rc = api_error_set(err, 500, NULL, "out of memory");
            goto out;
        }
    if (!(chat_text = cJSON_PrintUnformatted(chat))) {
        rc = api_error_set(err, 500, NULL, "out of memory");
        goto out;
    }
    /* the chat request's checks, with the Responses names where they differ */
    cJSON_Delete(body);
    body = NULL;
    cJSON_Delete(chat);
    chat = NULL;
    if ((rc = api_request_parse(API_CHAT, chat_text, strlen(chat_text), &lim, r, err))) {
        if (!strcmp(err->param, "max_tokens")) snprintf(err->param, sizeof err->param, "max_output_tokens");
        if (!strcmp(err->param, "response_format")) snprintf(err->param, sizeof err->param, "text.format");
        if (!strncmp(err->param, "tools[", 6) && strstr(err->param, ".function.")) {
            char p[64];
            const char *rest = strstr(err->param, ".function.") + 9;
            snprintf(p, sizeof p, "%.*s%s", (int)(strstr(err->param, ".function.") - err->param), err->param, rest);
            snprintf(err->param, sizeof err->param, "%s", p);
        }
        goto out;
    }
    api_random_id(m->id, sizeof m->id, "resp_", 12);
    m->created_at = (long long)time(NULL);
out:
    free(chat_text);
    cJSON_Delete(body);
    cJSON_Delete(chat);
    if (rc) api_resp_free(m);
    return rc;
}

void api_resp_free(struct api_resp *m) {
    if (!m) return;
    cJSON_Delete(m->echo);
    m->echo = NULL;
}

/* ---- the answer ---- */

static cJSON *text_part(const char *s, size_t n) {
    cJSON *p = cJSON_CreateObject();
    char *t = strndup(s ? s : "", s ? n : 0);
    cJSON_AddStringToObject(p, "type", "output_text");
    cJSON_AddStringToObject(p, "text", t ? t : "");
    cJSON_AddArrayToObject(p, "annotations");
    cJSON_AddArrayToObject(p, "logprobs");
    free(t);
    return p;
}

static cJSON *item_json(const struct api_resp_item *it, const struct api_out *out, const char *status) {
    cJSON *j = cJSON_CreateObject();
    if (it->kind == API_ITEM_REASONING) {
        cJSON_AddStringToObject(j, "type", "reasoning");
        cJSON_AddStringToObject(j, "id", it->id);
        cJSON_AddArrayToObject(j, "summary");
        cJSON *c = cJSON_AddArrayToObject(j, "content");
        cJSON *p = cJSON_CreateObject();
        char *t = strndup(out->reasoning.p ? out->reasoning.p + it->start : "", it->end - it->start);
        cJSON_AddStringToObject(p, "type", "reasoning_text");
        cJSON_AddStringToObject(p, "text", t ? t : "");
        free(t);
        cJSON_AddItemToArray(c, p);
        cJSON_AddStringToObject(j, "status", status);
    } else if (it->kind == API_ITEM_MESSAGE) {
        cJSON_AddStringToObject(j, "type", "message");
        cJSON_AddStringToObject(j, "id", it->id);
        cJSON_AddStringToObject(j, "status", status);
        cJSON_AddStringToObject(j, "role", "assistant");
        cJSON *c = cJSON_AddArrayToObject(j, "content");
        if (strcmp(status, "in_progress") != 0 || it->end > it->start)
            cJSON_AddItemToArray(c, text_part(out->content.p ? out->content.p + it->start : "", it->end - it->start));
    } else {
        const struct api_call *call = &out->calls[it->call];
        cJSON_AddStringToObject(j, "type", "function_call");
        cJSON_AddStringToObject(j, "id", it->id);
        cJSON_AddStringToObject(j, "call_id", call->id);
        cJSON_AddStringToObject(j, "name", call->name.p ? call->name.p : "");
        cJSON_AddStringToObject(j, "arguments", !strcmp(status, "in_progress") || !call->args.p ? "" : call->args.p);
        cJSON_AddStringToObject(j, "status", status);
    }
    return j;
}

static cJSON *usage_json(const struct api_resp_usage *u) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "input_tokens", (double)u->input);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(j, "input_tokens_details"), "cached_tokens", (double)u->cached);
    cJSON_AddNumberToObject(j, "output_tokens", (double)u->output);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(j, "output_tokens_details"), "reasoning_tokens", (double)u->reasoning);
    cJSON_AddNumberToObject(j, "total_tokens", (double)(u->input + u->output));
    return j;
}

static void echo_or(cJSON *j, const struct api_resp *m, const char *key, cJSON *dflt) {
    const cJSON *v = m->echo ? cJSON_GetObjectItemCaseSensitive(m->echo, key) : NULL;
    if (v && !cJSON_IsNull(v)) {
        cJSON_AddItemToObject(j, key, cJSON_Duplicate(v, 1));
        cJSON_Delete(dflt);
    } else {
        cJSON_AddItemToObject(j, key, dflt);
    }
}

cJSON *api_resp_object(const struct api_resp *m, const char *status, const struct api_out *out,
                       const struct api_resp_stream *items, const struct api_resp_usage *usage) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", m->id);
    cJSON_AddStringToObject(j, "object", "response");
    cJSON_AddNumberToObject(j, "created_at", (double)m->created_at);
    cJSON_AddStringToObject(j, "status", status);
    cJSON_AddNullToObject(j, "error");
    if (!strcmp(status, "incomplete"))
        cJSON_AddStringToObject(cJSON_AddObjectToObject(j, "incomplete_details"), "reason", "max_output_tokens");
    else cJSON_AddNullToObject(j, "incomplete_details");
    echo_or(j, m, "instructions", cJSON_CreateNull());
    echo_or(j, m, "max_output_tokens", cJSON_CreateNull());
    cJSON_AddStringToObject(j, "model", m->model ? m->model : "");
    cJSON *output = cJSON_AddArrayToObject(j, "output");
    const char *item_status = !strcmp(status, "in_progress") ? "in_progress" : !strcmp(status, "incomplete") ? "incomplete" : "completed";
    if (out && items) {
        for (int i = 0; i < items->num_items; i++) cJSON_AddItemToArray(output, item_json(&items->items[i], out, item_status));
    } else if (out) {
        struct api_resp_item it = {0};
        if (out->reasoning.n > 0) {
            it = (struct api_resp_item){.kind = API_ITEM_REASONING, .end = out->reasoning.n};
            api_random_id(it.id, sizeof it.id, "rs_", 12);
            cJSON_AddItemToArray(output, item_json(&it, out, item_status));
        }
        if (out->content.n > 0 || out->num_calls == 0) {
            it = (struct api_resp_item){.kind = API_ITEM_MESSAGE, .end = out->content.n};
            api_random_id(it.id, sizeof it.id, "msg_", 12);
            cJSON_AddItemToArray(output, item_json(&it, out, item_status));
        }
        for (int k = 0; k < out->num_calls; k++) {
            it = (struct api_resp_item){.kind = API_ITEM_CALL, .call = k};
            api_random_id(it.id, sizeof it.id, "fc_", 12);
            cJSON_AddItemToArray(output, item_json(&it, out, item_status));
        }
    }
    echo_or(j, m, "parallel_tool_calls", cJSON_CreateTrue());
    if (m->previous_id[0]) cJSON_AddStringToObject(j, "previous_response_id", m->previous_id);
    else cJSON_AddNullToObject(j, "previous_response_id");
    echo_or(j, m, "reasoning", cJSON_CreateObject());
    cJSON_AddBoolToObject(j, "store", m->store);
    echo_or(j, m, "temperature", cJSON_CreateNumber(1));
    cJSON *text = cJSON_CreateObject();
    cJSON_AddStringToObject(cJSON_AddObjectToObject(text, "format"), "type", "text");
    echo_or(j, m, "text", text);
    echo_or(j, m, "tool_choice", cJSON_CreateString("auto"));
    echo_or(j, m, "tools", cJSON_CreateArray());
    echo_or(j, m, "top_p", cJSON_CreateNumber(1));
    cJSON_AddStringToObject(j, "truncation", "disabled");
    if (usage) cJSON_AddItemToObject(j, "usage", usage_json(usage));
    else cJSON_AddNullToObject(j, "usage");
    echo_or(j, m, "metadata", cJSON_CreateObject());
    return j;
}

/* ---- streaming ---- */

static int emit_ev(struct api_resp_stream *st, api_resp_emit_fn emit, void *ud, const char *type, cJSON *data) {
    cJSON_AddStringToObject(data, "type", type);
    cJSON_AddNumberToObject(data, "sequence_number", st->seq++);
    return emit(ud, type, data);
}

static cJSON *ev_at(const struct api_resp_stream *st, const struct api_resp_item *it) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "item_id", it->id);
    cJSON_AddNumberToObject(d, "output_index", (double)(it - st->items));
    return d;
}

/* A text's .done event: the item's whole text (its [start, end) of buf). */
static cJSON *text_done(const struct api_resp_stream *st, const struct api_resp_item *it, const struct sbuf *buf,
                        int logprobs) {
    cJSON *d = ev_at(st, it);
    cJSON_AddNumberToObject(d, "content_index", 0);
    char *t = strndup(buf->p ? buf->p + it->start : "", it->end - it->start);
    cJSON_AddStringToObject(d, "text", t ? t : "");
    free(t);
    if (logprobs) cJSON_AddArrayToObject(d, "logprobs");
    return d;
}

static int close_item(struct api_resp_stream *st, const struct api_out *out, api_resp_emit_fn emit, void *ud) {
    if (st->num_items == 0 || !st->items[st->num_items - 1].open) return 0;
    struct api_resp_item *it = &st->items[st->num_items - 1];
    it->open = 0;
    cJSON *d;
    if (it->kind == API_ITEM_REASONING) {
        it->end = out->reasoning.n;
        if (emit_ev(st, emit, ud, "response.reasoning_text.done", text_done(st, it, &out->reasoning, 0))) return -1;
    } else if (it->kind == API_ITEM_MESSAGE) {
        it->end = out->content.n;
        if (emit_ev(st, emit, ud, "response.output_text.done", text_done(st, it, &out->content, 1))) return -1;
        d = ev_at(st, it);
        cJSON_AddNumberToObject(d, "content_index", 0);
        cJSON_AddItemToObject(d, "part", text_part(out->content.p ? out->content.p + it->start : "", it->end - it->start));
        if (emit_ev(st, emit, ud, "response.content_part.done", d)) return -1;
    } else {
        const struct api_call *call = &out->calls[it->call];
        d = ev_at(st, it);
        cJSON_AddStringToObject(d, "arguments", call->args.p ? call->args.p : "");
        if (emit_ev(st, emit, ud, "response.function_call_arguments.done", d)) return -1;
    }
    d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "output_index", (double)(it - st->items));
    cJSON_AddItemToObject(d, "item", item_json(it, out, "completed"));
    return emit_ev(st, emit, ud, "response.output_item.done", d);
}

static struct api_resp_item *open_item(struct api_resp_stream *st, const struct api_out *out, int kind, int call,
                                       api_resp_emit_fn emit, void *ud, int *rc) {
    struct api_resp_item *cur = st->num_items ? &st->items[st->num_items - 1] : NULL;
    if (cur && cur->open && cur->kind == kind && (kind != API_ITEM_CALL || cur->call == call)) return cur;
    if ((*rc = close_item(st, out, emit, ud))) return NULL;
    if (st->num_items >= (int)(sizeof st->items / sizeof *st->items)) return NULL;
    struct api_resp_item *it = &st->items[st->num_items++];
    *it = (struct api_resp_item){.kind = kind, .call = call, .open = 1};
    api_random_id(it->id, sizeof it->id, kind == API_ITEM_REASONING ? "rs_" : kind == API_ITEM_MESSAGE ? "msg_" : "fc_", 12);
    if (kind == API_ITEM_REASONING) it->start = out->reasoning.n - out->d_reasoning.n;
    if (kind == API_ITEM_MESSAGE) it->start = out->content.n - out->d_content.n;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "output_index", (double)(it - st->items));
    it->end = it->start;
    cJSON_AddItemToObject(d, "item", item_json(it, out, "in_progress"));
    if ((*rc = emit_ev(st, emit, ud, "response.output_item.added", d))) return NULL;
    if (kind == API_ITEM_MESSAGE) {
        d = ev_at(st, it);
        cJSON_AddNumberToObject(d, "content_index", 0);
        cJSON_AddItemToObject(d, "part", text_part("", 0));
        if ((*rc = emit_ev(st, emit, ud, "response.content_part.added", d))) return NULL;
    }
    return it;
}

int api_resp_stream_start(struct api_resp_stream *st, const struct api_resp *m, api_resp_emit_fn emit, void *ud) {
    memset(st, 0, sizeof *st);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddItemToObject(d, "response", api_resp_object(m, "in_progress", NULL, NULL, NULL));
    if (emit_ev(st, emit, ud, "response.created", d)) return -1;
    d = cJSON_CreateObject();
    cJSON_AddItemToObject(d, "response", api_resp_object(m, "in_progress", NULL, NULL, NULL));
    return emit_ev(st, emit, ud, "response.in_progress", d);
}

/* The piece's call events for calls [from, to): opened where new, their arguments' delta. */
static int call_pieces(struct api_resp_stream *st, const struct api_out *out, int from, int to, api_resp_emit_fn emit,
                       void *ud) {
    int rc = 0;
    for (int k = from; k < to; k++) {
        struct api_resp_item *it = open_item(st, out, API_ITEM_CALL, k, emit, ud, &rc);
        if (!it) return rc;
        const struct api_call *call = &out->calls[k];
        if (call->args.n <= call->args_sent) continue;
        cJSON *d = ev_at(st, it);
        cJSON_AddStringToObject(d, "delta", call->args.p + call->args_sent);
        if (emit_ev(st, emit, ud, "response.function_call_arguments.delta", d)) return -1;
    }
    return 0;
}

/* A piece's events in the order its text came: reasoning ends before anything else; a call
 * already open when the piece began ends before any text after it; text before a call that
 * begins in the piece. (Text after a call that begins and ends within one piece is the one
 * order a piece cannot tell; it joins the message before that call.) */
int api_resp_stream_piece(struct api_resp_stream *st, const struct api_out *out, api_resp_emit_fn emit, void *ud) {
    int rc = 0;
    struct api_resp_item *it;
    if (out->d_reasoning.n > 0) {
        if (!(it = open_item(st, out, API_ITEM_REASONING, 0, emit, ud, &rc))) return rc;
        cJSON *d = ev_at(st, it);
        cJSON_AddNumberToObject(d, "content_index", 0);
        cJSON_AddStringToObject(d, "delta", out->d_reasoning.p);
        if (emit_ev(st, emit, ud, "response.reasoning_text.delta", d)) return -1;
    }
    const int fresh = out->d_new_call > out->d_first_call ? out->d_new_call : out->d_first_call;
    if ((rc = call_pieces(st, out, out->d_first_call, fresh, emit, ud))) return rc;
    if (out->d_content.n > 0) {
        if (!(it = open_item(st, out, API_ITEM_MESSAGE, 0, emit, ud, &rc))) return rc;
        cJSON *d = ev_at(st, it);
        cJSON_AddNumberToObject(d, "content_index", 0);
        cJSON_AddStringToObject(d, "delta", out->d_content.p);
        cJSON_AddArrayToObject(d, "logprobs");
        if (emit_ev(st, emit, ud, "response.output_text.delta", d)) return -1;
    }
    return call_pieces(st, out, fresh, out->num_calls, emit, ud);
}

int api_resp_stream_end(struct api_resp_stream *st, const struct api_resp *m, const struct api_out *out,
                        const char *status, const struct api_resp_usage *usage, api_resp_emit_fn emit, void *ud) {
    int rc = 0;
    /* an answer with nothing in it still has its (empty) message */
    if (st->num_items == 0 && !open_item(st, out, API_ITEM_MESSAGE, 0, emit, ud, &rc) && rc) return rc;
    if (close_item(st, out, emit, ud)) return -1;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddItemToObject(d, "response", api_resp_object(m, status, out, st, usage));
    return emit_ev(st, emit, ud, !strcmp(status, "incomplete") ? "response.incomplete" : "response.completed", d);
}
