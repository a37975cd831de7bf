/* api_tools: tool calls and reasoning in a chat answer, and the grammars that enforce tool
 * choices. See api_tools.h. */
#include "server/api_tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "base/util.h"
#include "server/api_internal.h"
#include "server/reasoning.h"
#include "server/tool_parser.h"

/* n (<= 16) random bytes; a mixed clock if the kernel has none to give. */
static void random_bytes(uint8_t *r, size_t n) {
    if (getrandom(r, n, 0) == (ssize_t)n) return;
    uint64_t x[2] = {folio_mix64((uint64_t)(folio_now() * 1e9)), 0};
    x[1] = folio_mix64(x[0]);
    memcpy(r, x, n < sizeof x ? n : sizeof x);
}

void api_random_id(char *out, size_t cap, const char *prefix, int bytes) {
    uint8_t r[16];
    const size_t n = bytes > 0 && bytes < 16 ? (size_t)bytes : 16;
    random_bytes(r, n);
    int k = snprintf(out, cap, "%s", prefix);
    for (size_t i = 0; i < n && k + 2 < (int)cap; i++) k += snprintf(out + k, cap - (size_t)k, "%02x", r[i]);
}

/* ---- one choice's output ---- */

/* Calls are parsed when the request has tools and lets the model call them; a model whose
 * template names no format gets hermes, the most common one, when it is sent tools. */
static enum tool_format request_format(const struct api *a, const struct api_request *r) {
    if (!r->tools || r->num_tools == 0 || r->tool_choice == API_TOOLS_NONE || a->tool_format < 0) return TOOL_FORMAT_NONE;
    return a->tool_format == TOOL_FORMAT_NONE ? TOOL_FORMAT_HERMES : (enum tool_format)a->tool_format;
}

int api_out_init(struct api_out *o, const struct api *a, const struct api_request *r, int think_open, int keep) {
    memset(o, 0, sizeof *o);
    o->keep = keep;
    /* a prompt that closed the block (Qwen3's enable_thinking false) leaves nothing to reason */
    if (a->reasoning_format > REASONING_NONE && think_open >= 0 &&
        !(o->rp = reasoning_parser_create((enum reasoning_format)a->reasoning_format, think_open > 0)))
        return FOLIO_ENOMEM;
    const enum tool_format f = request_format(a, r);
    if (f != TOOL_FORMAT_NONE && !(o->tp = tool_parser_create(f, r->tools, API_OUT_MAX_HOLD))) return FOLIO_ENOMEM;
    o->short_ids = f == TOOL_FORMAT_MISTRAL;
    return 0;
}

void api_out_free(struct api_out *o) {
    if (!o) return;
    reasoning_parser_free(o->rp);
    tool_parser_free(o->tp);
    sbuf_free(&o->content);
    sbuf_free(&o->reasoning);
    sbuf_free(&o->d_content);
    sbuf_free(&o->d_reasoning);
    for (int i = 0; i < o->num_calls; i++) {
        sbuf_free(&o->calls[i].name);
        sbuf_free(&o->calls[i].args);
    }
    free(o->calls);
    memset(o, 0, sizeof *o);
}

static int put_content(struct api_out *o, const char *s, size_t n) {
    if ((o->keep && sbuf_put(&o->content, s, n)) || sbuf_put(&o->d_content, s, n)) o->failed = 1;
    return 0;
}

static int on_tool(void *ud, const struct tool_event *ev) {
    struct api_out *o = ud;
    switch (ev->kind) {
    case TOOL_EV_CONTENT:
        return put_content(o, ev->text, ev->len);
    case TOOL_EV_CALL_BEGIN: {
        if (ev->index != o->num_calls || o->num_calls >= API_OUT_MAX_CALLS) return 0;
        if (o->num_calls == o->cap_calls) {
            const int nc = o->cap_calls ? o->cap_calls * 2 : 4;
            struct api_call *c = realloc(o->calls, sizeof *c * (size_t)nc);
            if (!c) {
                o->failed = 1;
                return 0;
            }
            o->calls = c;
            o->cap_calls = nc;
        }
        struct api_call *c = &o->calls[o->num_calls++];
        memset(c, 0, sizeof *c);
        if (o->short_ids) {
            /* Mistral's templates check that a call id is 9 letters and digits */
            static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            uint8_t r[9];
            random_bytes(r, sizeof r);
            for (int k = 0; k < 9; k++) c->id[k] = alnum[r[k] % 62];
            c->id[9] = '\0';
        } else {
            api_random_id(c->id, sizeof c->id, "call_", 12);
        }
        if (sbuf_put(&c->name, ev->text, ev->len)) o->failed = 1;
        if (o->d_first_call > ev->index) o->d_first_call = ev->index;
        return 0;
    }
    case TOOL_EV_CALL_ARGS:
        if (ev->index < 0 || ev->index >= o->num_calls) return 0;
        if (sbuf_put(&o->calls[ev->index].args, ev->text, ev->len)) o->failed = 1;
        if (o->d_first_call > ev->index) o->d_first_call = ev->index;
        return 0;
    }
    return 0;
}

static int feed_content(struct api_out *o, const char *s, size_t n, int final) {
    if (!o->tp) return put_content(o, s, n);
    return tool_parser_feed(o->tp, s, n, final, on_tool, o);
}

static int on_reasoning(void *ud, const struct reasoning_event *ev) {
    struct api_out *o = ud;
    if (ev->kind == REASONING_EV_CONTENT) return feed_content(o, ev->text, ev->len, 0);
    if ((o->keep && sbuf_put(&o->reasoning, ev->text, ev->len)) || sbuf_put(&o->d_reasoning, ev->text, ev->len)) o->failed = 1;
    return 0;
}

int api_out_feed(struct api_out *o, const char *s, size_t n, int tokens, int final) {
    o->d_content.n = 0;
    o->d_reasoning.n = 0;
    if (o->d_content.p) o->d_content.p[0] = '\0';
    if (o->d_reasoning.p) o->d_reasoning.p[0] = '\0';
    for (int i = o->d_first_call; i < o->num_calls; i++) o->calls[i].args_sent = o->calls[i].args.n;
    o->d_first_call = o->d_new_call = o->num_calls;
    if (o->rp) {
        const int before = reasoning_parser_in_reasoning(o->rp);
        reasoning_parser_feed(o->rp, s, n, final, on_reasoning, o);
        /* A piece that was or became reasoning counts as reasoning tokens (the closing tag's
         * token included). */
        if (before || reasoning_parser_in_reasoning(o->rp) || o->d_reasoning.n > 0) o->reasoning_tokens += tokens;
        if (final) feed_content(o, "", 0, 1);
    } else {
        feed_content(o, s, n, final);
    }
    return o->failed ? -1 : 0;
}

/* ---- grammars for tool_choice ---- */

/* A copy of a tool's parameters schema with its local references ("#/...") moved under
 * "#/$defs/tN/...", where the call schema keeps it. */
static int rebase_refs(cJSON *j, const char *base) {
    for (cJSON *c = j ? j->child : NULL; c; c = c->next) {
        if (c->string && !strcmp(c->string, "$ref") && cJSON_IsString(c) && c->valuestring[0] == '#') {
            char *v = malloc(strlen(base) + strlen(c->valuestring) + 1);
            if (!v) return -1;
            sprintf(v, "%s%s", base, c->valuestring + 1);
            cJSON *s = cJSON_CreateString(v);
            free(v);
            if (!s) return -1;
            cJSON_ReplaceItemViaPointer(j, c, s);
            c = s;
        } else if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && rebase_refs(c, base)) {
            return -1;
        }
    }
    return 0;
}

/* The JSON Schema of one call's object as the format writes it: {"name": N, ARGS_KEY: params}
 * for each allowed tool (anyOf when several), parameters kept in $defs. */
static char *call_schema(const struct api_request *r, const char *args_key) {
    struct sbuf b = {0};
    cJSON *defs = cJSON_CreateObject();
    int n = 0, rc = 0;
    char *out = NULL;
    rc |= sbuf_puts(&b, "{\"anyOf\":[");
    for (const cJSON *t = r->tools->child; t && !rc; t = t->next) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const char *name = cJSON_GetObjectItemCaseSensitive(fn, "name")->valuestring;
        if (r->tool_choice == API_TOOLS_NAMED && strcmp(name, r->tool_name) != 0) continue;
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        char key[32], base[48];
        snprintf(key, sizeof key, "t%d", n);
        snprintf(base, sizeof base, "#/$defs/%s", key);
        cJSON *p = cJSON_IsObject(params) ? cJSON_Duplicate(params, 1) : cJSON_CreateObject();
        if (!p || rebase_refs(p, base)) {
            cJSON_Delete(p);
            rc = -1;
            break;
        }
        if (!cJSON_GetObjectItemCaseSensitive(p, "type")) cJSON_AddStringToObject(p, "type", "object");
        const cJSON *strict = cJSON_GetObjectItemCaseSensitive(fn, "strict");
        if (cJSON_IsTrue(strict) && !cJSON_GetObjectItemCaseSensitive(p, "additionalProperties"))
            cJSON_AddFalseToObject(p, "additionalProperties");
        cJSON_AddItemToObject(defs, key, p);
        rc |= sbuf_puts(&b, n ? ",{" : "{");
        rc |= sbuf_puts(&b, "\"type\":\"object\",\"properties\":{\"name\":{\"const\":");
        rc |= sbuf_put_json_string(&b, name, strlen(name));
        rc |= sbuf_puts(&b, "},");
        rc |= sbuf_put_json_string(&b, args_key, strlen(args_key));
        rc |= sbuf_puts(&b, ":{\"$ref\":\"");
        rc |= sbuf_puts(&b, base);
        rc |= sbuf_puts(&b, "\"}},\"required\":[\"name\",");
        rc |= sbuf_put_json_string(&b, args_key, strlen(args_key));
        rc |= sbuf_puts(&b, "],\"additionalProperties\":false}");
        n++;
    }
    char *d = rc ? NULL : cJSON_PrintUnformatted(defs);
    if (d && !sbuf_puts(&b, "],\"$defs\":") && !sbuf_puts(&b, d) && !sbuf_puts(&b, "}")) {
        out = b.p;
        b.p = NULL;
    }
    free(d);
    cJSON_Delete(defs);
    sbuf_free(&b);
    return out;
}

/* Qwen3-Coder's XML calls, described for structured.c's frame: each allowed tool's parameters
 * in its schema's order, with the schema of those whose values are not plain text (the tool's
 * $defs carried along for their references). */
static int xml_tools(const struct api_request *r, cJSON *out) {
    for (const cJSON *t = r->tools->child; t; t = t->next) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const char *name = cJSON_GetObjectItemCaseSensitive(fn, "name")->valuestring;
        if (r->tool_choice == API_TOOLS_NAMED && strcmp(name, r->tool_name) != 0) continue;
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        const cJSON *props = cJSON_IsObject(params) ? cJSON_GetObjectItemCaseSensitive(params, "properties") : NULL;
        const cJSON *req = cJSON_IsObject(params) ? cJSON_GetObjectItemCaseSensitive(params, "required") : NULL;
        cJSON *x = cJSON_CreateObject(), *ps = cJSON_AddArrayToObject(x, "params");
        if (!x || !ps) {
            cJSON_Delete(x);
            return -1;
        }
        cJSON_AddStringToObject(x, "name", name);
        cJSON_AddItemToArray(out, x);
        const cJSON *p, *plist = cJSON_IsObject(props) ? props : NULL, *rlist = cJSON_IsArray(req) ? req : NULL;
        cJSON_ArrayForEach(p, plist) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddItemToArray(ps, e);
            cJSON_AddStringToObject(e, "name", p->string);
            int required = 0;
            const cJSON *q;
            cJSON_ArrayForEach(q, rlist) required |= cJSON_IsString(q) && !strcmp(q->valuestring, p->string);
            cJSON_AddBoolToObject(e, "required", required);
            const cJSON *type = cJSON_IsObject(p) ? cJSON_GetObjectItemCaseSensitive(p, "type") : NULL;
            if (!cJSON_IsObject(p) || (!type && !cJSON_GetObjectItemCaseSensitive(p, "enum") &&
                                       !cJSON_GetObjectItemCaseSensitive(p, "const") &&
                                       !cJSON_GetObjectItemCaseSensitive(p, "$ref") &&
                                       !cJSON_GetObjectItemCaseSensitive(p, "anyOf")))
                continue; /* untyped: text */
            cJSON *schema = cJSON_Duplicate(p, 1);
            if (!schema) return -1;
            static const char *const defs[] = {"$defs", "definitions"};
            for (size_t k = 0; k < 2; k++) {
                const cJSON *d = cJSON_GetObjectItemCaseSensitive(params, defs[k]);
                if (d && !cJSON_GetObjectItemCaseSensitive(schema, defs[k])) cJSON_AddItemToObject(schema, defs[k], cJSON_Duplicate(d, 1));
            }
            cJSON_AddItemToObject(e, "schema", schema);
        }
    }
    return 0;
}

/* Qwen's calls, JSON (hermes) or XML (Qwen3-Coder), one per <tool_call> block; auto waits for
 * the tag. */
static void tool_call_tags(cJSON *c, int forced) {
    cJSON_AddStringToObject(c, "begin", "<tool_call>\n");
    cJSON_AddStringToObject(c, "end", "\n</tool_call>");
    cJSON_AddStringToObject(c, "sep", "\n");
    if (!forced) cJSON_AddStringToObject(c, "trigger", "<tool_call>");
}

/* The calls' part of a frame for this format, or NULL when the format has no grammar. */
static cJSON *calls_frame(enum tool_format f, const struct api_request *r) {
    cJSON *c = cJSON_CreateObject();
    const int forced = r->tool_choice == API_TOOLS_REQUIRED || r->tool_choice == API_TOOLS_NAMED;
    const int max = r->tool_choice == API_TOOLS_NAMED || !r->parallel_tool_calls ? 1 : 0;
    switch (f) {
    case TOOL_FORMAT_HERMES:
        tool_call_tags(c, forced);
        break;
    case TOOL_FORMAT_LLAMA3_JSON:
        cJSON_AddStringToObject(c, "sep", "; ");
        if (!forced) cJSON_AddTrueToObject(c, "start");
        break;
    case TOOL_FORMAT_MISTRAL:
        cJSON_AddStringToObject(c, "open", "[TOOL_CALLS][");
        cJSON_AddStringToObject(c, "close", "]");
        cJSON_AddStringToObject(c, "sep", ", ");
        if (!forced) cJSON_AddStringToObject(c, "trigger", "[TOOL_CALLS]");
        break;
    case TOOL_FORMAT_QWEN3_CODER:
        tool_call_tags(c, forced);
        cJSON_AddFalseToObject(c, "ws");
        if (xml_tools(r, cJSON_AddArrayToObject(c, "xml"))) {
            cJSON_Delete(c);
            return NULL;
        }
        break;
    default:
        cJSON_Delete(c);
        return NULL;
    }
    if (max) cJSON_AddNumberToObject(c, "max", max);
    return c;
}

int api_tools_spec(const struct api *a, const struct api_request *r, int think_open, struct structured_spec *spec,
                   char **owned_text, char **owned_frame, struct api_error *err) {
    *owned_text = *owned_frame = NULL;
    *spec = r->structured;
    const enum tool_format f = request_format(a, r);
    const int forced = r->tool_choice == API_TOOLS_REQUIRED || r->tool_choice == API_TOOLS_NAMED;
    cJSON *frame = cJSON_CreateObject();
    if (!frame) return api_error_set(err, 500, NULL, "out of memory");
    /* Tool calls: forced ones always; auto ones unless the request asked for its own format
     * (response_format), which then shapes the text and calls are only parsed. */
    if (f != TOOL_FORMAT_NONE && (forced || r->structured.kind == STRUCTURED_NONE)) {
        cJSON *calls = calls_frame(f, r);
        if (!calls) {
            cJSON_Delete(frame);
            if (!forced) return 0; /* auto: parsed, not enforced */
            return api_error_set(err, 400, "tool_choice",
                                 "tool_choice '%s' is not supported with the %s tool-call format (it cannot be enforced)",
                                 r->tool_choice == API_TOOLS_NAMED ? r->tool_name : "required", tool_format_name(f));
        }
        cJSON_AddItemToObject(frame, "calls", calls);
        if (f == TOOL_FORMAT_QWEN3_CODER) {
            /* the frame's XML calls are the whole grammar */
            *spec = (struct structured_spec){.kind = STRUCTURED_NONE, .text = "", .len = 0};
        } else if (!(*owned_text = call_schema(r, f == TOOL_FORMAT_LLAMA3_JSON ? "parameters" : "arguments"))) {
            cJSON_Delete(frame);
            return api_error_set(err, 500, NULL, "out of memory");
        } else {
            *spec = (struct structured_spec){.kind = STRUCTURED_JSON, .text = *owned_text, .len = strlen(*owned_text),
                                             .tight_ws = 1};
        }
    } else if (spec->kind == STRUCTURED_NONE) {
        cJSON_Delete(frame);
        return 0;
    }
    if (a->reasoning_format > REASONING_NONE && think_open >= 0) {
        cJSON *t = cJSON_AddObjectToObject(frame, "think");
        cJSON_AddStringToObject(t, "start", "<think>");
        cJSON_AddStringToObject(t, "end", "</think>");
        if (think_open > 0 || a->reasoning_format == REASONING_DEEPSEEK_R1) cJSON_AddTrueToObject(t, "open");
    }
    if (frame->child) {
        if (!(*owned_frame = cJSON_PrintUnformatted(frame))) {
            cJSON_Delete(frame);
            return api_error_set(err, 500, NULL, "out of memory");
        }
        spec->frame = *owned_frame;
        spec->frame_len = strlen(*owned_frame);
    }
    cJSON_Delete(frame);
    return 0;
}
