/* api_request: parsing and checking of /v1/completions, /v1/chat/completions, /tokenize and
 * /detokenize bodies. The rules follow vLLM's pydantic models: unknown fields are ignored,
 * null means "not set", integers may be written as integral floats, and a value of the wrong
 * type or out of range is a 400 that names the parameter. Sampling ranges are checked again
 * by sampler_check_params when the engine takes the request.
 *
 * The limits (api_limits) bound what one body can make the engine hold: the JSON values are
 * counted before cJSON builds a tree of them, and the sizes of the arrays a request copies
 * into every sample are checked before they are copied. */
#include "server/api_request.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

int api_error_set(struct api_error *err, int status, const char *param, const char *fmt, ...) {
    va_list ap;
    err->status = status;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return FOLIO_EINVAL;
}

struct api_limits api_default_limits(void) {
    return (struct api_limits){.max_stop_bytes = 16384, .max_stop_token_ids = 1024, .max_logit_bias = 1024,
                               .max_num_seqs = 256, .max_json_values = 1000000, .max_logprob_entries = 262144,
                               .max_grammar_bytes = 262144};
}

/* The caller's limits with its zeros (and a NULL) read as the defaults. */
static struct api_limits effective_limits(const struct api_limits *l) {
    struct api_limits d = api_default_limits();
    if (!l) return d;
    if (l->max_stop_bytes) d.max_stop_bytes = l->max_stop_bytes;
    if (l->max_stop_token_ids) d.max_stop_token_ids = l->max_stop_token_ids;
    if (l->max_logit_bias) d.max_logit_bias = l->max_logit_bias;
    if (l->max_num_seqs) d.max_num_seqs = l->max_num_seqs;
    if (l->max_json_values) d.max_json_values = l->max_json_values;
    if (l->max_logprob_entries) d.max_logprob_entries = l->max_logprob_entries;
    if (l->max_grammar_bytes) d.max_grammar_bytes = l->max_grammar_bytes;
    return d;
}

int api_check_logprob_entries(const struct api_request *r, long long tokens, const struct api_limits *limits,
                              struct api_error *err) {
    if (r->logprobs < 0 || r->stream) return 0;
    const struct api_limits lim = effective_limits(limits);
    /* tokens <= 256 prompts x n 1024 x INT32_MAX and 1 + logprobs <= 21: no overflow */
    const long long entries = tokens * (1 + r->logprobs);
    if (entries <= lim.max_logprob_entries) return 0;
    const int chat = r->kind == API_CHAT;
    return api_error_set(err, 400, "logprobs",
                         "this request could return %lld logprob entries (%s x max_tokens x (1 + %s)); at most %lld "
                         "(--max-logprob-entries): lower max_tokens, n or %s, or set stream=true",
                         entries, !chat && r->num_prompts > 1 ? "prompts x n" : "n",
                         chat ? "top_logprobs" : "logprobs", lim.max_logprob_entries, chat ? "top_logprobs" : "logprobs");
}

static int is_unset(const cJSON *v) { return !v || cJSON_IsNull(v); }

static int get_int(const cJSON *o, const char *name, long long lo, long long hi, long long *out, int *set,
                   struct api_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (is_unset(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble))
        return api_error_set(err, 400, name, "'%s' must be an integer", name);
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return api_error_set(err, 400, name, "'%s' must be in [%lld, %lld], got %.0f", name, lo, hi, v->valuedouble);
    *out = (long long)v->valuedouble;
    if (set) *set = 1;
    return 0;
}

static int get_i(const cJSON *o, const char *name, int lo, int hi, int *out, struct api_error *err) {
    long long v = *out;
    int rc = get_int(o, name, lo, hi, &v, NULL, err);
    *out = (int)v;
    return rc;
}

static int get_float(const cJSON *o, const char *name, float *out, unsigned *set, unsigned flag,
                     struct api_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (is_unset(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e30)
        return api_error_set(err, 400, name, "'%s' must be a number", name);
    *out = (float)v->valuedouble;
    if (set) *set |= flag;
    return 0;
}

static int get_bool(const cJSON *o, const char *name, int *out, struct api_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (is_unset(v)) return 0;
    if (!cJSON_IsBool(v)) return api_error_set(err, 400, name, "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* A token id list: [1, 2, 3]. */
static int parse_ids(const cJSON *a, const char *name, int32_t **out, int *n, struct api_error *err) {
    int cnt = cJSON_GetArraySize(a);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(cnt > 0 ? cnt : 1));
    if (!ids) return api_error_set(err, 500, NULL, "out of memory");
    int i = 0;
    for (const cJSON *x = a->child; x; x = x->next, i++) {
        if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < 0 ||
            x->valuedouble > INT32_MAX) {
            free(ids);
            return api_error_set(err, 400, name, "'%s' must hold token ids (non-negative integers)", name);
        }
        ids[i] = (int32_t)x->valuedouble;
    }
    *out = ids;
    *n = cnt;
    return 0;
}

static int add_text_prompt(struct api_request *r, const cJSON *s, struct api_error *err) {
    struct api_prompt *p = &r->prompts[r->num_prompts];
    p->text_len = strlen(s->valuestring);
    if (!(p->text = strdup(s->valuestring))) return api_error_set(err, 500, NULL, "out of memory");
    r->num_prompts++;
    return 0;
}

static int add_ids_prompt(struct api_request *r, const cJSON *a, struct api_error *err) {
    struct api_prompt *p = &r->prompts[r->num_prompts];
    int rc = parse_ids(a, "prompt", &p->ids, &p->num_ids, err);
    if (!rc) r->num_prompts++;
    return rc;
}

/* prompt: "text" | ["text", ...] | [1, 2, 3] | [[1, 2], [3]] */
static int parse_prompt(const cJSON *body, struct api_request *r, struct api_error *err) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    if (is_unset(p)) return api_error_set(err, 400, "prompt", "'prompt' is required");
    if (!cJSON_IsString(p) && !cJSON_IsArray(p))
        return api_error_set(err, 400, "prompt", "'prompt' must be a string, a list of strings or a list of token ids");
    int cnt = cJSON_IsString(p) ? 1 : cJSON_GetArraySize(p);
    if (cnt == 0) return api_error_set(err, 400, "prompt", "'prompt' must not be empty");
    int ids_only = cJSON_IsArray(p) && cJSON_IsNumber(p->child);
    if (!ids_only && cnt > API_MAX_PROMPTS)
        return api_error_set(err, 400, "prompt", "at most %d prompts in one request, got %d", API_MAX_PROMPTS, cnt);
    if (!(r->prompts = calloc((size_t)(ids_only ? 1 : cnt), sizeof *r->prompts)))
        return api_error_set(err, 500, NULL, "out of memory");
    if (cJSON_IsString(p)) return add_text_prompt(r, p, err);
    if (ids_only) return add_ids_prompt(r, p, err);
    for (const cJSON *x = p->child; x; x = x->next) {
        int rc;
        if (cJSON_IsString(x)) rc = add_text_prompt(r, x, err);
        else if (cJSON_IsArray(x) && cJSON_GetArraySize(x) > 0) rc = add_ids_prompt(r, x, err);
        else rc = api_error_set(err, 400, "prompt", "'prompt' must be a string, a list of strings, a list of token ids or a list of token id lists");
        if (rc) return rc;
    }
    return 0;
}

/* A message's content as the template sees it: a string (text parts joined with newlines,
 * as vLLM does for string-format templates) or null. */
static int normalize_content(cJSON *msg, int idx, struct api_error *err) {
    cJSON *c = cJSON_GetObjectItemCaseSensitive(msg, "content");
    if (cJSON_IsNull(c)) {
        /* The SDKs send content: null beside tool_calls; templates test and concatenate it as
         * a string (Qwen3's `'</think>' in content` fails on none), so it reads as "", as in vLLM. */
        cJSON *e = cJSON_CreateString("");
        if (!e) return api_error_set(err, 500, NULL, "out of memory");
        cJSON_ReplaceItemInObjectCaseSensitive(msg, "content", e);
        return 0;
    }
    if (!c || cJSON_IsString(c)) return 0;
    if (!cJSON_IsArray(c))
        return api_error_set(err, 400, "messages", "messages[%d].content must be a string or a list of content parts", idx);
    size_t len = 0;
    for (const cJSON *part = c->child; part; part = part->next) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0)
            return api_error_set(err, 400, "messages",
                                 "messages[%d].content: only parts of type 'text' are supported (this model takes text)", idx);
        if (!cJSON_IsString(text))
            return api_error_set(err, 400, "messages", "messages[%d].content: a text part needs a string 'text'", idx);
        len += strlen(text->valuestring) + 1;
    }
    char *joined = malloc(len + 1), *w = joined;
    if (!joined) return api_error_set(err, 500, NULL, "out of memory");
    for (const cJSON *part = c->child; part; part = part->next) {
        const char *t = cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring;
        if (w != joined) *w++ = '\n';
        size_t n = strlen(t);
        memcpy(w, t, n);
        w += n;
    }
    *w = '\0';
    cJSON *s = cJSON_CreateString(joined);
    free(joined);
    if (!s) return api_error_set(err, 500, NULL, "out of memory");
    cJSON_ReplaceItemInObjectCaseSensitive(msg, "content", s);
    return 0;
}

/* An assistant message's tool_calls, checked, with each function's arguments (a JSON string
 * in OpenAI's wire format) parsed into the object templates expect: Llama 3.1's writes
 * `arguments | tojson`, which would quote a string a second time (vLLM parses them too).
 * A string is one value to the body's count, but its tree may hold millions: the values the
 * arguments hold come out of *values_left (what --max-json-values leaves after the body's own)
 * before any is parsed, and an arguments string nested too deep stays a string. */
static int normalize_tool_calls(cJSON *msg, int idx, long long *values_left, struct api_error *err) {
    cJSON *calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
    if (is_unset(calls)) return 0;
    if (!cJSON_IsArray(calls))
        return api_error_set(err, 400, "messages", "messages[%d].tool_calls must be a list", idx);
    int k = 0;
    for (cJSON *tc = calls->child; tc; tc = tc->next, k++) {
        cJSON *fn = cJSON_IsObject(tc) ? cJSON_GetObjectItemCaseSensitive(tc, "function") : NULL;
        const cJSON *name = cJSON_IsObject(fn) ? cJSON_GetObjectItemCaseSensitive(fn, "name") : NULL;
        if (!cJSON_IsString(name))
            return api_error_set(err, 400, "messages",
                                 "messages[%d].tool_calls[%d] needs a function with a string name", idx, k);
        cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (is_unset(args)) continue;
        if (!cJSON_IsString(args) && !cJSON_IsObject(args))
            return api_error_set(err, 400, "messages",
                                 "messages[%d].tool_calls[%d].function.arguments must be a JSON string", idx, k);
        if (!cJSON_IsString(args)) continue;
        const size_t n = strlen(args->valuestring);
        const long long values = folio_json_count_values(args->valuestring, n, *values_left);
        if (values > *values_left)
            return api_error_set(err, 413, "messages",
                                 "messages[%d].tool_calls[%d].function.arguments: the request holds more than the "
                                 "--max-json-values JSON values with the calls' arguments counted",
                                 idx, k);
        if (folio_json_max_depth(args->valuestring, n, FOLIO_JSON_MAX_DEPTH) > FOLIO_JSON_MAX_DEPTH) continue;
        *values_left -= values;
        cJSON *parsed = cJSON_Parse(args->valuestring);
        if (!cJSON_IsObject(parsed)) {
            /* Not an object: the template gets the text as sent. */
            cJSON_Delete(parsed);
            continue;
        }
        cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", parsed);
    }
    return 0;
}

/* OpenAI's rule for function names: letters, digits, '_' and '-', at most 64 (we also allow
 * '.', which MCP tool names use). */
static int valid_tool_name(const char *s) {
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= '0' && s[n] <= '9') ||
              s[n] == '_' || s[n] == '-' || s[n] == '.'))
            return 0;
    return n >= 1 && n <= API_MAX_TOOL_NAME;
}

/* tools: a list of {"type":"function","function":{"name","description","parameters","strict"}}. */
static int check_tools(const cJSON *tools, struct api_request *r, const struct api_limits *lim,
                       struct api_error *err) {
    const int n = cJSON_GetArraySize(tools);
    if (n > API_MAX_TOOLS) return api_error_set(err, 400, "tools", "at most %d tools, got %d", API_MAX_TOOLS, n);
    int i = 0;
    for (const cJSON *t = tools->child; t; t = t->next, i++) {
        char param[64];
        snprintf(param, sizeof param, "tools[%d]", i);
        if (!cJSON_IsObject(t)) return api_error_set(err, 400, param, "%s must be an object", param);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        if (!is_unset(type) && !(cJSON_IsString(type) && !strcmp(type->valuestring, "function")))
            return api_error_set(err, 400, param, "%s.type must be \"function\" (the only tool type served)", param);
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        if (!cJSON_IsObject(fn)) return api_error_set(err, 400, param, "%s needs a 'function' object", param);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        snprintf(param, sizeof param, "tools[%d].function.name", i);
        if (is_unset(name)) return api_error_set(err, 400, param, "%s is required", param);
        if (!cJSON_IsString(name) || !valid_tool_name(name->valuestring))
            return api_error_set(err, 400, param,
                                 "%s must be 1 to %d letters, digits, '_', '-' or '.'", param, API_MAX_TOOL_NAME);
        for (const cJSON *u = tools->child; u != t; u = u->next)
            if (!strcmp(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(u, "function"), "name")->valuestring,
                        name->valuestring))
                return api_error_set(err, 400, param, "two tools are named '%s'", name->valuestring);
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(fn, "description");
        snprintf(param, sizeof param, "tools[%d].function.description", i);
        if (!is_unset(desc) && !cJSON_IsString(desc)) return api_error_set(err, 400, param, "%s must be a string", param);
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        snprintf(param, sizeof param, "tools[%d].function.parameters", i);
        if (!is_unset(params)) {
            const cJSON *pt = cJSON_IsObject(params) ? cJSON_GetObjectItemCaseSensitive(params, "type") : NULL;
            if (!cJSON_IsObject(params) || (pt && !(cJSON_IsString(pt) && !strcmp(pt->valuestring, "object"))))
                return api_error_set(err, 400, param,
                                     "%s must be a JSON Schema of type \"object\" (the arguments are an object)", param);
        }
        const cJSON *strict = cJSON_GetObjectItemCaseSensitive(fn, "strict");
        snprintf(param, sizeof param, "tools[%d].function.strict", i);
        if (!is_unset(strict) && !cJSON_IsBool(strict)) return api_error_set(err, 400, param, "%s must be a boolean", param);
    }
    /* The tools become a grammar's schema: the same bound as any structured-output spec. */
    char *text = cJSON_PrintUnformatted(tools);
    if (!text) return api_error_set(err, 500, NULL, "out of memory");
    r->tools_bytes = strlen(text);
    free(text);
    if (r->tools_bytes > lim->max_grammar_bytes)
        return api_error_set(err, 400, "tools", "the tools are %zu bytes as JSON; at most %zu (--max-grammar-bytes)",
                             r->tools_bytes, lim->max_grammar_bytes);
    r->num_tools = n;
    return 0;
}

/* tool_choice: "none" | "auto" | "required" | {"type":"function","function":{"name"}} (or the
 * Responses API's {"type":"function","name"}), checked against the tools. */
static int parse_tool_choice(const cJSON *body, struct api_request *r, struct api_error *err) {
    int rc;
    r->parallel_tool_calls = 1;
    if ((rc = get_bool(body, "parallel_tool_calls", &r->parallel_tool_calls, err))) return rc;
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(body, "tool_choice");
    r->tool_choice = API_TOOLS_AUTO;
    if (is_unset(tc)) return 0;
    if (cJSON_IsString(tc)) {
        if (!strcmp(tc->valuestring, "none")) r->tool_choice = API_TOOLS_NONE;
        else if (!strcmp(tc->valuestring, "auto")) r->tool_choice = API_TOOLS_AUTO;
        else if (!strcmp(tc->valuestring, "required")) r->tool_choice = API_TOOLS_REQUIRED;
        else
            return api_error_set(err, 400, "tool_choice",
                                 "tool_choice must be \"none\", \"auto\", \"required\" or a named function, got '%.64s'",
                                 tc->valuestring);
    } else if (cJSON_IsObject(tc)) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(cJSON_IsObject(fn) ? fn : tc, "name");
        if (!cJSON_IsString(name))
            return api_error_set(err, 400, "tool_choice",
                                 "a named tool_choice is {\"type\": \"function\", \"function\": {\"name\": ...}}");
        if (!(r->tool_name = strdup(name->valuestring))) return api_error_set(err, 500, NULL, "out of memory");
        r->tool_choice = API_TOOLS_NAMED;
    } else {
        return api_error_set(err, 400, "tool_choice", "tool_choice must be a string or an object");
    }
    if ((r->tool_choice == API_TOOLS_REQUIRED || r->tool_choice == API_TOOLS_NAMED) && r->num_tools == 0)
        return api_error_set(err, 400, "tool_choice", "tool_choice '%s' needs tools",
                             r->tool_choice == API_TOOLS_NAMED ? r->tool_name : "required");
    if (r->tool_choice == API_TOOLS_NAMED) {
        for (const cJSON *t = r->tools->child; t; t = t->next)
            if (!strcmp(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name")->valuestring,
                        r->tool_name))
                return 0;
        return api_error_set(err, 400, "tool_choice", "tool_choice names '%.64s', which is not among the tools",
                             r->tool_name);
    }
    return 0;
}

/* Moves messages, tools, documents and chat_template_kwargs out of the body into the
 * template's variables. */
static int parse_messages(cJSON *body, struct api_request *r, const struct api_limits *lim, struct api_error *err) {
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (is_unset(msgs)) return api_error_set(err, 400, "messages", "'messages' is required");
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
        return api_error_set(err, 400, "messages", "'messages' must be a non-empty list of messages");
    int i = 0;
    long long values_left = lim->max_json_values; /* api_request_parse: what the body left */
    for (cJSON *m = msgs->child; m; m = m->next, i++) {
        if (!cJSON_IsObject(m)) return api_error_set(err, 400, "messages", "messages[%d] must be an object", i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role) || !role->valuestring[0])
            return api_error_set(err, 400, "messages", "messages[%d] needs a string 'role'", i);
        int rc = normalize_content(m, i, err);
        if (rc || (rc = normalize_tool_calls(m, i, &values_left, err))) return rc;
    }
    if (!(r->chat_ctx = cJSON_CreateObject())) return api_error_set(err, 500, NULL, "out of memory");
    cJSON *kw = cJSON_GetObjectItemCaseSensitive(body, "chat_template_kwargs");
    if (!is_unset(kw)) {
        if (!cJSON_IsObject(kw))
            return api_error_set(err, 400, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
        for (cJSON *k = kw->child; k; k = k->next) {
            cJSON *dup = cJSON_Duplicate(k, 1);
            if (!dup) return api_error_set(err, 500, NULL, "out of memory");
            cJSON_AddItemToObject(r->chat_ctx, k->string, dup);
        }
    }
    static const char *const moved[] = {"messages", "tools", "documents"};
    for (size_t k = 0; k < sizeof moved / sizeof *moved; k++) {
        cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(body, moved[k]);
        if (!v) continue;
        if (cJSON_IsNull(v)) {
            cJSON_Delete(v);
            continue;
        }
        if (k > 0 && !cJSON_IsArray(v)) {
            cJSON_Delete(v);
            return api_error_set(err, 400, moved[k], "'%s' must be a list", moved[k]);
        }
        if (k == 1) {
            int rc = check_tools(v, r, lim, err);
            if (rc) {
                cJSON_Delete(v);
                return rc;
            }
            if (cJSON_GetArraySize(v) == 0) { /* no tools: the template shows none */
                cJSON_Delete(v);
                continue;
            }
            r->tools = v;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(r->chat_ctx, moved[k]);
        cJSON_AddItemToObject(r->chat_ctx, moved[k], v);
    }
    return 0;
}

static int parse_stop(const cJSON *body, struct api_request *r, const struct api_limits *lim, struct api_error *err) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(body, "stop");
    if (is_unset(s)) return 0;
    int cnt = cJSON_IsString(s) ? 1 : cJSON_IsArray(s) ? cJSON_GetArraySize(s) : -1;
    if (cnt < 0) return api_error_set(err, 400, "stop", "'stop' must be a string or a list of strings");
    if (cnt > API_MAX_STOPS) return api_error_set(err, 400, "stop", "at most %d stop strings, got %d", API_MAX_STOPS, cnt);
    if (cnt == 0) return 0;
    /* Every byte costs the engine 5 (the string and its KMP table) plus a held-back buffer
     * and stream room per sample for the longest: bound the total before copying any. */
    size_t total = 0;
    const cJSON *x = cJSON_IsString(s) ? s : s->child;
    for (int i = 0; i < cnt; i++, x = x->next) {
        if (!cJSON_IsString(x)) return api_error_set(err, 400, "stop", "'stop' must be a string or a list of strings");
        if (!x->valuestring[0]) return api_error_set(err, 400, "stop", "stop strings must not be empty");
        total += strlen(x->valuestring);
    }
    if (total > lim->max_stop_bytes)
        return api_error_set(err, 400, "stop", "the stop strings add up to %zu bytes; at most %zu (--max-stop-bytes)",
                             total, lim->max_stop_bytes);
    if (!(r->stops = calloc((size_t)cnt, sizeof *r->stops))) return api_error_set(err, 500, NULL, "out of memory");
    x = cJSON_IsString(s) ? s : s->child;
    for (int i = 0; i < cnt; i++, x = x->next) {
        if (!(r->stops[i] = strdup(x->valuestring))) return api_error_set(err, 500, NULL, "out of memory");
        r->sp.num_stop = i + 1;
    }
    r->sp.stop = (const char *const *)r->stops;
    return 0;
}

static int parse_logit_bias(const cJSON *body, struct api_request *r, const struct api_limits *lim,
                            struct api_error *err) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(body, "logit_bias");
    if (is_unset(b)) return 0;
    if (!cJSON_IsObject(b)) return api_error_set(err, 400, "logit_bias", "'logit_bias' must map token ids to numbers");
    int cnt = cJSON_GetArraySize(b);
    if (cnt == 0) return 0;
    if (cnt > lim->max_logit_bias)
        return api_error_set(err, 400, "logit_bias", "logit_bias has %d entries; at most %d (--max-logit-bias)", cnt,
                             lim->max_logit_bias);
    if (!(r->bias = calloc((size_t)cnt, sizeof *r->bias))) return api_error_set(err, 500, NULL, "out of memory");
    int i = 0;
    for (const cJSON *x = b->child; x; x = x->next, i++) {
        char *end;
        long id = strtol(x->string, &end, 10);
        if (end == x->string || *end || id < 0 || id > INT32_MAX)
            return api_error_set(err, 400, "logit_bias", "logit_bias keys must be token ids, got '%.40s'", x->string);
        if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
            return api_error_set(err, 400, "logit_bias", "logit_bias values must be numbers");
        if (x->valuedouble < -100 || x->valuedouble > 100)
            return api_error_set(err, 400, "logit_bias", "logit_bias values must be in [-100, 100], got %g", x->valuedouble);
        r->bias[i] = (struct sampler_logit_bias){(int32_t)id, (float)x->valuedouble};
    }
    r->sp.logit_bias = r->bias;
    r->sp.num_logit_bias = cnt;
    return 0;
}

/* ---- structured output ---- */

/* Takes one spec for the request; a second from another field is an error, as vLLM says. */
static int set_structured(struct api_request *r, const char *param, enum structured_kind kind, char *text,
                          size_t len, int num_choices, int strict, const struct api_limits *lim,
                          struct api_error *err) {
    if (r->structured.kind != STRUCTURED_NONE) {
        free(text);
        return api_error_set(err, 400, param,
                             "only one kind of structured output may be given: %s and %s were both set",
                             r->structured_param, param);
    }
    if (len > lim->max_grammar_bytes) {
        free(text);
        return api_error_set(err, 400, param, "%s is %zu bytes; at most %zu (--max-grammar-bytes)", param, len,
                             lim->max_grammar_bytes);
    }
    r->structured_text = text;
    r->structured = (struct structured_spec){.kind = kind, .text = text, .len = len, .num_choices = num_choices,
                                             .strict = strict};
    snprintf(r->structured_param, sizeof r->structured_param, "%s", param);
    return 0;
}

/* A schema given as a JSON value (or, as vLLM also takes it, a string holding one). */
static int take_schema(struct api_request *r, const char *param, const cJSON *v, int strict,
                       const struct api_limits *lim, struct api_error *err) {
    char *text = NULL;
    if (cJSON_IsString(v)) text = strdup(v->valuestring);
    else if (cJSON_IsObject(v) || cJSON_IsBool(v)) text = cJSON_PrintUnformatted(v);
    else return api_error_set(err, 400, param, "'%s' must be a JSON Schema (an object)", param);
    if (!text) return api_error_set(err, 500, NULL, "out of memory");
    return set_structured(r, param, STRUCTURED_JSON, text, strlen(text), 0, strict, lim, err);
}

static int take_string(struct api_request *r, const char *param, const cJSON *v, enum structured_kind kind,
                       const struct api_limits *lim, struct api_error *err) {
    if (!cJSON_IsString(v)) return api_error_set(err, 400, param, "'%s' must be a string", param);
    const size_t n = strlen(v->valuestring);
    if (n == 0) return api_error_set(err, 400, param, "'%s' must not be empty", param);
    if (n > lim->max_grammar_bytes) /* before the copy */
        return api_error_set(err, 400, param, "%s is %zu bytes; at most %zu (--max-grammar-bytes)", param, n,
                             lim->max_grammar_bytes);
    char *text = strdup(v->valuestring);
    if (!text) return api_error_set(err, 500, NULL, "out of memory");
    return set_structured(r, param, kind, text, n, 0, 0, lim, err);
}

/* The choices, each NUL-terminated, back to back. */
static int take_choices(struct api_request *r, const char *param, const cJSON *v, const struct api_limits *lim,
                        struct api_error *err) {
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)
        return api_error_set(err, 400, param, "'%s' must be a non-empty list of strings", param);
    size_t total = 0;
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        if (!cJSON_IsString(it)) return api_error_set(err, 400, param, "'%s' must be a list of strings", param);
        total += strlen(it->valuestring) + 1;
        n++;
    }
    if (total > lim->max_grammar_bytes)
        return api_error_set(err, 400, param, "%s adds up to %zu bytes; at most %zu (--max-grammar-bytes)", param,
                             total, lim->max_grammar_bytes);
    char *text = malloc(total);
    if (!text) return api_error_set(err, 500, NULL, "out of memory");
    size_t off = 0;
    cJSON_ArrayForEach(it, v) {
        const size_t k = strlen(it->valuestring) + 1;
        memcpy(text + off, it->valuestring, k);
        off += k;
    }
    return set_structured(r, param, STRUCTURED_CHOICE, text, total, n, 0, lim, err);
}

/* OpenAI's response_format, vLLM's structured_outputs and its older guided_* fields. */
static int parse_structured(const cJSON *body, struct api_request *r, const struct api_limits *lim,
                            struct api_error *err) {
    int rc;
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(body, "response_format");
    if (!is_unset(rf)) {
        const cJSON *t = cJSON_IsObject(rf) ? cJSON_GetObjectItemCaseSensitive(rf, "type") : NULL;
        if (!cJSON_IsString(t))
            return api_error_set(err, 400, "response_format",
                                 "response_format must be an object with a type: text, json_object or json_schema");
        if (strcmp(t->valuestring, "json_object") == 0) {
            char *text = strdup("{\"type\":\"object\"}");
            if (!text) return api_error_set(err, 500, NULL, "out of memory");
            if ((rc = set_structured(r, "response_format", STRUCTURED_JSON, text, strlen(text), 0, 0, lim, err)))
                return rc;
        } else if (strcmp(t->valuestring, "json_schema") == 0) {
            const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
            if (!cJSON_IsObject(js))
                return api_error_set(err, 400, "response_format",
                                     "response_format of type json_schema needs a json_schema object");
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(js, "name");
            if (!is_unset(name) && !cJSON_IsString(name))
                return api_error_set(err, 400, "response_format", "json_schema.name must be a string");
            const cJSON *strict = cJSON_GetObjectItemCaseSensitive(js, "strict");
            if (!is_unset(strict) && !cJSON_IsBool(strict))
                return api_error_set(err, 400, "response_format", "json_schema.strict must be a boolean");
            const cJSON *schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
            /* OpenAI's schema is optional: without one, any JSON value. */
            static const cJSON any = {.type = cJSON_Object};
            if ((rc = take_schema(r, "response_format", is_unset(schema) ? &any : schema, cJSON_IsTrue(strict), lim,
                                  err)))
                return rc;
        } else if (strcmp(t->valuestring, "text") != 0) {
            return api_error_set(err, 400, "response_format",
                                 "response_format type '%.64s' is not supported: use text, json_object or json_schema",
                                 t->valuestring);
        }
    }
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "structured_outputs");
    if (!is_unset(so)) {
        if (!cJSON_IsObject(so))
            return api_error_set(err, 400, "structured_outputs", "'structured_outputs' must be an object");
        const cJSON *v;
        const cJSON *dap = cJSON_GetObjectItemCaseSensitive(so, "disable_additional_properties");
        if (!is_unset(dap) && !cJSON_IsBool(dap))
            return api_error_set(err, 400, "structured_outputs",
                                 "structured_outputs.disable_additional_properties must be a boolean");
        static const char *const unsupported[] = {"structural_tag", "whitespace_pattern"};
        for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
            if (!is_unset(cJSON_GetObjectItemCaseSensitive(so, unsupported[i])))
                return api_error_set(err, 400, "structured_outputs", "structured_outputs.%s is not supported",
                                     unsupported[i]);
        if (!is_unset(v = cJSON_GetObjectItemCaseSensitive(so, "json")) &&
            (rc = take_schema(r, "structured_outputs.json", v, cJSON_IsTrue(dap), lim, err)))
            return rc;
        if (!is_unset(v = cJSON_GetObjectItemCaseSensitive(so, "regex")) &&
            (rc = take_string(r, "structured_outputs.regex", v, STRUCTURED_REGEX, lim, err)))
            return rc;
        if (!is_unset(v = cJSON_GetObjectItemCaseSensitive(so, "choice")) &&
            (rc = take_choices(r, "structured_outputs.choice", v, lim, err)))
            return rc;
        if (!is_unset(v = cJSON_GetObjectItemCaseSensitive(so, "grammar")) &&
            (rc = take_string(r, "structured_outputs.grammar", v, STRUCTURED_GRAMMAR, lim, err)))
            return rc;
        v = cJSON_GetObjectItemCaseSensitive(so, "json_object");
        if (!is_unset(v) && !cJSON_IsBool(v))
            return api_error_set(err, 400, "structured_outputs", "structured_outputs.json_object must be a boolean");
        if (cJSON_IsTrue(v)) {
            char *text = strdup("{\"type\":\"object\"}");
            if (!text) return api_error_set(err, 500, NULL, "out of memory");
            if ((rc = set_structured(r, "structured_outputs.json_object", STRUCTURED_JSON, text, strlen(text), 0, 0,
                                     lim, err)))
                return rc;
        }
    }
    const cJSON *v;
    if (!is_unset(v = cJSON_GetObjectItemCaseSensitive(body, "guided_json")) &&
        (rc = take_schema(r, "guided_json", v, 0, lim, err)))
        return rc;
    if (!is_unset(v = cJSON_GetObjectItemCaseSensitive(body, "guided_regex")) &&
        (rc = take_string(r, "guided_regex", v, STRUCTURED_REGEX, lim, err)))
        return rc;
    if (!is_unset(v = cJSON_GetObjectItemCaseSensitive(body, "guided_choice")) &&
        (rc = take_choices(r, "guided_choice", v, lim, err)))
        return rc;
    if (!is_unset(v = cJSON_GetObjectItemCaseSensitive(body, "guided_grammar")) &&
        (rc = take_string(r, "guided_grammar", v, STRUCTURED_GRAMMAR, lim, err)))
        return rc;
    return 0;
}

/* Everything the sampler and the engine take, shared by completions and chat. */
static int parse_sampling(const cJSON *body, struct api_request *r, const struct api_limits *lim,
                          struct api_error *err) {
    struct sampling_params *sp = &r->sp;
    int rc, set = 0;
    long long v;
    if ((rc = get_float(body, "temperature", &sp->temperature, &r->set, API_SET_TEMPERATURE, err)) ||
        (rc = get_float(body, "top_p", &sp->top_p, &r->set, API_SET_TOP_P, err)) ||
        (rc = get_float(body, "min_p", &sp->min_p, &r->set, API_SET_MIN_P, err)) ||
        (rc = get_float(body, "repetition_penalty", &sp->repetition_penalty, &r->set, API_SET_REPETITION, err)) ||
        (rc = get_float(body, "presence_penalty", &sp->presence_penalty, NULL, 0, err)) ||
        (rc = get_float(body, "frequency_penalty", &sp->frequency_penalty, NULL, 0, err)))
        return rc;
    v = sp->top_k;
    if ((rc = get_int(body, "top_k", -1, INT32_MAX, &v, &set, err))) return rc;
    sp->top_k = (int)v;
    if (set) r->set |= API_SET_TOP_K;
    if ((rc = get_i(body, "n", 1, 1024, &sp->n, err))) return rc;
    /* Each prompt is a request of n samples, all of which must run at once (they share the
     * prompt's blocks and are forked together): more than the engine's sequences never runs. */
    const int np = r->kind == API_CHAT ? 1 : r->num_prompts;
    if ((long long)np * sp->n > lim->max_num_seqs)
        return api_error_set(err, 400, "n",
                             "%d prompt%s x n=%d is %lld sequences, but this engine runs at most %d at once "
                             "(--max-num-seqs)",
                             np, np == 1 ? "" : "s", sp->n, (long long)np * sp->n, lim->max_num_seqs);
    const cJSON *best_of = cJSON_GetObjectItemCaseSensitive(body, "best_of");
    if (!is_unset(best_of) && !(cJSON_IsNumber(best_of) && best_of->valuedouble == sp->n))
        return api_error_set(err, 400, "best_of", "best_of is not supported (vLLM's V1 engine dropped it too); use n");
    set = 0;
    v = 0;
    if ((rc = get_int(body, "seed", INT64_MIN, INT64_MAX, &v, &set, err))) return rc;
    if (set) {
        sp->has_seed = 1;
        sp->seed = (uint64_t)v;
    }
    const char *mt = r->kind == API_CHAT && cJSON_GetObjectItemCaseSensitive(body, "max_completion_tokens") &&
                             !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(body, "max_completion_tokens"))
                         ? "max_completion_tokens"
                         : "max_tokens";
    set = 0;
    v = sp->max_tokens;
    if ((rc = get_int(body, mt, 1, INT32_MAX, &v, &set, err))) return rc;
    sp->max_tokens = (int)v;
    if (set) r->set |= API_SET_MAX_TOKENS;
    if ((rc = get_i(body, "min_tokens", 0, INT32_MAX, &sp->min_tokens, err)) ||
        (rc = get_bool(body, "ignore_eos", &sp->ignore_eos, err)) ||
        (rc = get_bool(body, "skip_special_tokens", &sp->skip_special_tokens, err)) ||
        (rc = get_bool(body, "include_stop_str_in_output", &sp->include_stop_str_in_output, err)) ||
        (rc = get_i(body, "priority", INT32_MIN / 2, INT32_MAX / 2, &r->priority, err)) ||
        (rc = parse_stop(body, r, lim, err)) || (rc = parse_logit_bias(body, r, lim, err)))
        return rc;
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(body, "stop_token_ids");
    if (!is_unset(ids)) {
        if (!cJSON_IsArray(ids)) return api_error_set(err, 400, "stop_token_ids", "'stop_token_ids' must be a list of token ids");
        const int cnt = cJSON_GetArraySize(ids);
        if (cnt > lim->max_stop_token_ids)
            return api_error_set(err, 400, "stop_token_ids", "stop_token_ids has %d ids; at most %d (--max-stop-token-ids)",
                                 cnt, lim->max_stop_token_ids);
        if ((rc = parse_ids(ids, "stop_token_ids", &r->stop_ids, &sp->num_stop_token_ids, err))) return rc;
        sp->stop_token_ids = r->stop_ids;
    }
    if (sp->min_tokens > 0 && (r->set & API_SET_MAX_TOKENS) && sp->min_tokens > sp->max_tokens)
        return api_error_set(err, 400, "min_tokens", "min_tokens must be less than or equal to max_tokens=%d, got %d",
                             sp->max_tokens, sp->min_tokens);
    if ((rc = get_bool(body, "stream", &r->stream, err))) return rc;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
    if (!is_unset(so)) {
        if (!r->stream)
            return api_error_set(err, 400, "stream_options", "Stream options can only be defined when `stream=True`.");
        if (!cJSON_IsObject(so)) return api_error_set(err, 400, "stream_options", "'stream_options' must be an object");
        if ((rc = get_bool(so, "include_usage", &r->include_usage, err))) return rc;
    }
    return parse_structured(body, r, lim, err);
}

static int parse_completions(cJSON *body, struct api_request *r, const struct api_limits *lim, struct api_error *err) {
    int rc;
    r->add_special_tokens = 1;
    r->sp.max_tokens = 16; /* the OpenAI default for completions */
    if ((rc = parse_prompt(body, r, err)) || (rc = parse_sampling(body, r, lim, err)) ||
        (rc = get_bool(body, "echo", &r->echo, err)) ||
        (rc = get_bool(body, "add_special_tokens", &r->add_special_tokens, err)))
        return rc;
    long long lp = -1;
    if ((rc = get_int(body, "logprobs", 0, SAMPLER_MAX_LOGPROBS, &lp, NULL, err))) return rc;
    r->logprobs = (int)lp;
    if (r->echo && r->logprobs >= 0)
        return api_error_set(err, 400, "logprobs", "echo with logprobs (prompt logprobs) is not supported");
    /* max_tokens is always known here (16 when left out): refuse before anything is tokenized */
    if ((rc = api_check_logprob_entries(r, (long long)r->num_prompts * r->sp.n * r->sp.max_tokens, lim, err)))
        return rc;
    const cJSON *suffix = cJSON_GetObjectItemCaseSensitive(body, "suffix");
    if (!is_unset(suffix)) return api_error_set(err, 400, "suffix", "suffix is not currently supported");
    return 0;
}

static int parse_chat_flags(const cJSON *body, struct api_request *r, struct api_error *err) {
    int rc;
    if ((rc = get_bool(body, "add_generation_prompt", &r->add_generation_prompt, err)) ||
        (rc = get_bool(body, "continue_final_message", &r->continue_final_message, err)) ||
        (rc = get_bool(body, "add_special_tokens", &r->add_special_tokens, err)))
        return rc;
    if (r->continue_final_message && r->add_generation_prompt)
        return api_error_set(err, 400, "continue_final_message",
                             "Cannot set both `continue_final_message` and `add_generation_prompt` to True.");
    return 0;
}

static int parse_chat(cJSON *body, struct api_request *r, const struct api_limits *lim, struct api_error *err) {
    int rc;
    r->add_generation_prompt = 1;
    r->sp.max_tokens = -1; /* the rest of the context */
    if ((rc = parse_chat_flags(body, r, err)) || (rc = parse_sampling(body, r, lim, err))) return rc;
    int want = 0;
    long long top = 0;
    if ((rc = get_bool(body, "logprobs", &want, err)) ||
        (rc = get_int(body, "top_logprobs", 0, SAMPLER_MAX_LOGPROBS, &top, NULL, err)))
        return rc;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "top_logprobs");
    if (!is_unset(t) && top > 0 && !want)
        return api_error_set(err, 400, "top_logprobs", "when using `top_logprobs`, `logprobs` must be set to true.");
    r->logprobs = want ? (int)top : -1;
    /* Left out, max_tokens is the rest of the context: api_generate checks once the prompt is built. */
    if ((r->set & API_SET_MAX_TOKENS) &&
        (rc = api_check_logprob_entries(r, (long long)r->sp.n * r->sp.max_tokens, lim, err)))
        return rc;
    if ((rc = parse_messages(body, r, lim, err))) return rc;
    return parse_tool_choice(body, r, err);
}

static int parse_tokenize(cJSON *body, struct api_request *r, const struct api_limits *lim, struct api_error *err) {
    int rc;
    if ((rc = get_bool(body, "return_token_strs", &r->return_token_strs, err))) return rc;
    if (!is_unset(cJSON_GetObjectItemCaseSensitive(body, "messages"))) {
        r->add_generation_prompt = 1;
        if ((rc = parse_chat_flags(body, r, err))) return rc;
        return parse_messages(body, r, lim, err);
    }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    r->add_special_tokens = 1;
    if ((rc = get_bool(body, "add_special_tokens", &r->add_special_tokens, err))) return rc;
    if (!cJSON_IsString(p)) return api_error_set(err, 400, "prompt", "'prompt' (a string) or 'messages' is required");
    if (!(r->prompts = calloc(1, sizeof *r->prompts))) return api_error_set(err, 500, NULL, "out of memory");
    return add_text_prompt(r, p, err);
}

static int parse_detokenize(const cJSON *body, struct api_request *r, struct api_error *err) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "tokens");
    if (!cJSON_IsArray(t)) return api_error_set(err, 400, "tokens", "'tokens' must be a list of token ids");
    return parse_ids(t, "tokens", &r->tokens, &r->num_tokens, err);
}

int api_request_parse(enum api_kind kind, const char *text, size_t len, const struct api_limits *limits,
                      struct api_request *r, struct api_error *err) {
    int rc;
    struct api_limits lim = effective_limits(limits);
    cJSON *body = NULL;
    memset(r, 0, sizeof *r);
    memset(err, 0, sizeof *err);
    r->kind = kind;
    r->sp = sampler_default_params();
    r->logprobs = -1;
    /* cJSON spends ~64-80 bytes on each value: a 16 MiB body of `[1,1,...]` would become a
     * tree of ~600 MB. Counting first is a byte scan and allocates nothing. */
    const long long values = folio_json_count_values(text, len, lim.max_json_values);
    if (values > lim.max_json_values) {
        rc = api_error_set(err, 413, NULL, "the request body holds more than %lld JSON values (--max-json-values)",
                           lim.max_json_values);
        goto out;
    }
    /* From here on the limit is what the body left: values parsed out of strings (a tool
     * call's arguments) draw on it. */
    lim.max_json_values -= values;
    if (folio_json_max_depth(text, len, FOLIO_JSON_MAX_DEPTH) > FOLIO_JSON_MAX_DEPTH) {
        rc = api_error_set(err, 400, NULL, "the request body nests arrays and objects more than %d levels deep",
                           FOLIO_JSON_MAX_DEPTH);
        goto out;
    }
    const char *end = NULL;
    body = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    /* Only whitespace may follow the value: `{...} junk` is malformed, not a request. */
    while (body && end < text + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')) end++;
    if (body && end < text + len && !(*end == '\0' && end + 1 == text + len)) {
        cJSON_Delete(body);
        body = NULL;
    }
    if (!body) {
        rc = api_error_set(err, 400, NULL, "the request body is not valid JSON");
        goto out;
    }
    if (!cJSON_IsObject(body)) {
        rc = api_error_set(err, 400, NULL, "the request body must be a JSON object");
        goto out;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (!is_unset(model)) {
        if (!cJSON_IsString(model)) {
            rc = api_error_set(err, 400, "model", "'model' must be a string");
            goto out;
        }
        if (!(r->model = strdup(model->valuestring))) {
            rc = api_error_set(err, 500, NULL, "out of memory");
            goto out;
        }
    }
    switch (kind) {
    case API_COMPLETIONS: rc = parse_completions(body, r, &lim, err); break;
    case API_CHAT: rc = parse_chat(body, r, &lim, err); break;
    case API_TOKENIZE: rc = parse_tokenize(body, r, &lim, err); break;
    default: rc = parse_detokenize(body, r, err); break;
    }
out:
    cJSON_Delete(body);
    if (rc) api_request_free(r);
    return rc;
}

void api_request_free(struct api_request *r) {
    if (!r) return;
    free(r->model);
    for (int i = 0; r->prompts && i < r->num_prompts; i++) {
        free(r->prompts[i].text);
        free(r->prompts[i].ids);
    }
    free(r->prompts);
    cJSON_Delete(r->chat_ctx);
    for (int i = 0; r->stops && i < r->sp.num_stop; i++) free(r->stops[i]);
    free(r->stops);
    free(r->stop_ids);
    free(r->bias);
    free(r->tokens);
    free(r->structured_text);
    free(r->tool_name);
    memset(r, 0, sizeof *r);
}
