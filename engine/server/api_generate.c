/* api_generate: POST /v1/completions and /v1/chat/completions. Builds the prompts (chat
 * template, tokenizer), submits one engine request per prompt, and answers either with one
 * JSON body or as a server-sent event stream that writes each text delta as soon as the
 * engine hands it over. A client that goes away aborts its requests, whose KV blocks the
 * engine frees at its next step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/api_internal.h"
#include "server/api_responses.h"
#include "server/api_tools.h"
#include "server/reasoning.h"
#include "server/tool_parser.h"
#include "base/http_conn.h"
#include "base/openai_error.h"
#include "base/sbuf.h"
#include "core/engine.h"
#include "core/structured.h"
#include "text/tokenizer.h"
#include "base/util.h"

/* One choice of the response: sample k of prompt p is choice p * n + k. */
struct choice {
    struct sbuf text;               /* non-streaming: the text so far */
    int32_t *ids;                   /* non-streaming with logprobs: [num] */
    struct sampler_logprobs *lps;   /* [num] */
    int num, cap;
    size_t offset;                  /* completions logprobs: text_offset of the next token */
    int num_output;
    enum engine_finish finish;
    const char *stop_str;           /* borrowed from the engine request */
    int32_t stop_token;
    struct api_out out;             /* chat: reasoning and tool calls parsed out of the text */
    int out_tokens;                 /* non-streaming: output tokens fed to out so far */
};

struct gen {
    struct api *a;
    struct mg_connection *c;
    struct engine *e;
    const struct tokenizer *tok;
    const struct api_request *r;
    int chat, np, n, fd;
    char id[48];
    long long created;
    const char *model;
    struct engine_req **h;          /* [np] */
    int32_t **ids;                  /* [np] prompt token ids */
    int *num_ids;                   /* [np] */
    int *cached;                    /* [np] prompt tokens served from the prefix cache */
    struct choice *ch;              /* [np * n] */
    void *dec_work;                 /* [dec_cap] token_text's decode scratch */
    size_t dec_cap;
    char error[512];                /* an engine failure, for the response */
    struct api_resp *resp;          /* /v1/responses: its metadata; NULL for the others */
    struct api_resp_stream *rs;     /* /v1/responses streamed: the events so far */
    struct structured *grammar;     /* the request's compiled grammar, or NULL */
    int think_open;                 /* chat: the prompt opened a reasoning block */
};

/* ---- small helpers ---- */

/* The text of one token as it reads inside a text, which is what OpenAI's logprobs show
 * (" there", not "there"). Decoding it alone would drop what a decoder strips at the start
 * of a text (SentencePiece's leading space), so decode it twice in a row and keep the second
 * copy. Caller frees. */
static char *token_text(const struct gen *g, int32_t id) {
    const int32_t two[2] = {id, id};
    const char *t1, *t2;
    size_t n1 = 0, n2 = 0;
    char *out = NULL;
    int inc;
    if (g->dec_work && !tok_decode_window(g->tok, two, 1, 0, g->dec_work, g->dec_cap, &t1, &n1, &inc) &&
        !tok_decode_window(g->tok, two, 2, 0, g->dec_work, g->dec_cap, &t2, &n2, &inc) && n2 >= n1)
        out = strndup(t2 + n1, n2 - n1);
    return out ? out : strdup("");
}

/* The echo of prompt p: its text as sent, or its ids decoded. Caller frees; NULL when out of
 * memory. */
static char *echo_text(const struct gen *g, int p, size_t *len) {
    const struct api_prompt *pr = &g->r->prompts[p];
    char *t = NULL;
    if (pr->text) {
        *len = pr->text_len;
        return strndup(pr->text, pr->text_len);
    }
    if (tok_decode(g->tok, pr->ids, pr->num_ids, 0, &t, len)) return NULL;
    return t;
}

static double lp_value(float lp) { return lp < -9999.0f ? -9999.0 : (double)lp; } /* -inf is not JSON */

static cJSON *bytes_array(const char *s) {
    cJSON *a = cJSON_CreateArray();
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) cJSON_AddItemToArray(a, cJSON_CreateNumber(*p));
    return a;
}

/* Chat: [{"token","logprob","bytes","top_logprobs":[...]}] for these tokens. */
static cJSON *chat_logprobs(const struct gen *g, const int32_t *ids, const struct sampler_logprobs *lps, int n) {
    cJSON *o = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(o, "content");
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_CreateObject();
        char *s = token_text(g, ids[i]);
        cJSON_AddStringToObject(t, "token", s ? s : "");
        cJSON_AddNumberToObject(t, "logprob", lp_value(lps[i].logprob));
        cJSON_AddItemToObject(t, "bytes", bytes_array(s ? s : ""));
        free(s);
        cJSON *top = cJSON_AddArrayToObject(t, "top_logprobs");
        for (int k = 0; k < lps[i].num_top && k < g->r->logprobs; k++) {
            cJSON *x = cJSON_CreateObject();
            char *ts = token_text(g, lps[i].top_ids[k]);
            cJSON_AddStringToObject(x, "token", ts ? ts : "");
            cJSON_AddNumberToObject(x, "logprob", lp_value(lps[i].top_logprobs[k]));
            cJSON_AddItemToObject(x, "bytes", bytes_array(ts ? ts : ""));
            free(ts);
            cJSON_AddItemToArray(top, x);
        }
        cJSON_AddItemToArray(content, t);
    }
    return o;
}

/* Completions: {"text_offset","token_logprobs","tokens","top_logprobs"}; the top dict holds
 * the sampled token too, as OpenAI's and vLLM's do. */
static cJSON *completion_logprobs(const struct gen *g, struct choice *ch, const int32_t *ids,
                                  const struct sampler_logprobs *lps, int n) {
    cJSON *o = cJSON_CreateObject();
    cJSON *offs = cJSON_AddArrayToObject(o, "text_offset"), *tlp = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *toks = cJSON_AddArrayToObject(o, "tokens"), *tops = cJSON_AddArrayToObject(o, "top_logprobs");
    for (int i = 0; i < n; i++) {
        char *s = token_text(g, ids[i]);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)ch->offset));
        ch->offset += s ? strlen(s) : 0;
        cJSON_AddItemToArray(tlp, cJSON_CreateNumber(lp_value(lps[i].logprob)));
        cJSON_AddItemToArray(toks, cJSON_CreateString(s ? s : ""));
        cJSON *top = cJSON_CreateObject();
        for (int k = 0; k < lps[i].num_top && k < g->r->logprobs; k++) {
            char *ts = token_text(g, lps[i].top_ids[k]);
            if (ts && !cJSON_GetObjectItemCaseSensitive(top, ts))
                cJSON_AddNumberToObject(top, ts, lp_value(lps[i].top_logprobs[k]));
            free(ts);
        }
        if (s && !cJSON_GetObjectItemCaseSensitive(top, s)) cJSON_AddNumberToObject(top, s, lp_value(lps[i].logprob));
        cJSON_AddItemToArray(tops, top);
        free(s);
    }
    return o;
}

static cJSON *usage_object(const struct gen *g) {
    long long prompt = 0, cached = 0, completion = 0;
    for (int p = 0; p < g->np; p++) {
        prompt += g->num_ids[p];
        cached += g->cached[p];
    }
    long long reasoning = 0;
    for (int i = 0; i < g->np * g->n; i++) {
        completion += g->ch[i].num_output;
        reasoning += g->ch[i].out.reasoning_tokens;
    }
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)prompt);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(prompt + completion));
    cJSON_AddNumberToObject(u, "completion_tokens", (double)completion);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", (double)cached);
    if (g->chat && g->a->reasoning_format > REASONING_NONE) {
        cJSON *cd = cJSON_AddObjectToObject(u, "completion_tokens_details");
        cJSON_AddNumberToObject(cd, "reasoning_tokens", (double)reasoning);
    }
    return u;
}

/* tool_calls when the choice called a tool and stopped on its own (a call cut short by
 * max_tokens stays "length"). */
static const char *finish_reason(const struct choice *ch) {
    const char *f = engine_finish_name(ch->finish);
    if (!f) f = "stop";
    return ch->finish == ENGINE_FINISH_STOP && ch->out.num_calls > 0 ? "tool_calls" : f;
}

static void add_stop_reason(cJSON *choice, const struct choice *ch) {
    if (ch->stop_str) cJSON_AddStringToObject(choice, "stop_reason", ch->stop_str);
    else if (ch->stop_token >= 0) cJSON_AddNumberToObject(choice, "stop_reason", ch->stop_token);
    else cJSON_AddNullToObject(choice, "stop_reason");
}

static cJSON *response_base(const struct gen *g, const char *object) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", g->id);
    cJSON_AddStringToObject(j, "object", object);
    cJSON_AddNumberToObject(j, "created", (double)g->created);
    cJSON_AddStringToObject(j, "model", g->model);
    return j;
}

/* ---- streaming ---- */

/* Writes one SSE event as one HTTP chunk in one write: mg_send_chunk would write the size
 * line, the data and the CRLF separately, three TCP segments per token with TCP_NODELAY.
 * -1 when the client is gone. */
static int sse_event(struct gen *g, const char *event, const char *s, size_t n) {
    const size_t en = event ? strlen(event) + 8 : 0; /* "event: " NAME "\n" */
    char *ev = malloc(n + en + 40);
    if (!ev) return -1;
    int k = snprintf(ev, 32, "%zx\r\n", n + en + 8);
    if (event) k += sprintf(ev + k, "event: %s\n", event);
    memcpy(ev + k, "data: ", 6);
    k += 6;
    memcpy(ev + k, s, n);
    memcpy(ev + k + n, "\n\n\r\n", 4);
    const size_t total = (size_t)k + n + 4;
    int rc = mg_write(g->c, ev, total) == (int)total ? 0 : -1;
    free(ev);
    return rc;
}

static int sse_raw(struct gen *g, const char *s, size_t n) { return sse_event(g, NULL, s, n); }

static int sse(struct gen *g, cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return -1;
    int rc = sse_raw(g, s, strlen(s));
    free(s);
    return rc;
}

static int sse_error(struct gen *g, int status, const char *msg) {
    char *s = openai_error_json(status, api_error_type(status), NULL, msg);
    if (!s) return -1;
    int rc = sse_raw(g, s, strlen(s));
    free(s);
    return rc;
}

static cJSON *chunk(struct gen *g, int index, cJSON **choice_out) {
    cJSON *j = response_base(g, g->chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(j, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", index);
    cJSON_AddItemToArray(choices, c);
    *choice_out = c;
    return j;
}

static int stream_start(struct gen *g) {
    char cors[512];
    api_cors_headers(g->a, g->c, cors, sizeof cors);
    mg_printf(g->c,
              "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
              "Transfer-Encoding: chunked\r\nX-Accel-Buffering: no\r\n%s\r\n",
              cors);
    for (int p = 0; p < g->np; p++)
        for (int k = 0; k < g->n; k++) {
            const int index = p * g->n + k;
            cJSON *c, *j;
            if (g->chat) {
                /* The first chunk of each choice carries the role. */
                j = chunk(g, index, &c);
                cJSON *d = cJSON_AddObjectToObject(c, "delta");
                cJSON_AddStringToObject(d, "role", "assistant");
                cJSON_AddStringToObject(d, "content", "");
                cJSON_AddNullToObject(c, "logprobs");
                cJSON_AddNullToObject(c, "finish_reason");
            } else if (g->r->echo) {
                size_t tn = 0;
                char *t = echo_text(g, p, &tn);
                j = chunk(g, index, &c);
                cJSON_AddStringToObject(c, "text", t ? t : "");
                g->ch[index].offset = tn;
                free(t);
                cJSON_AddNullToObject(c, "logprobs");
                cJSON_AddNullToObject(c, "finish_reason");
            } else {
                continue;
            }
            if (sse(g, j)) return -1;
        }
    return 0;
}

/* A chat delta's tool_calls: each call touched by this piece, its first delta with index, id,
 * type and name, then arguments text (OpenAI's shape, which the SDKs join by index). */
static void add_call_deltas(cJSON *d, const struct api_out *out) {
    if (out->d_first_call >= out->num_calls) return;
    cJSON *arr = cJSON_AddArrayToObject(d, "tool_calls");
    for (int i = out->d_first_call; i < out->num_calls; i++) {
        const struct api_call *call = &out->calls[i];
        const int begun = i >= out->d_new_call;
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "index", i);
        if (begun) {
            cJSON_AddStringToObject(t, "id", call->id);
            cJSON_AddStringToObject(t, "type", "function");
        }
        cJSON *fn = cJSON_AddObjectToObject(t, "function");
        if (begun) cJSON_AddStringToObject(fn, "name", call->name.p ? call->name.p : "");
        cJSON_AddStringToObject(fn, "arguments", call->args.n > call->args_sent ? call->args.p + call->args_sent : "");
        cJSON_AddItemToArray(arr, t);
    }
}

static int stream_output(struct gen *g, int index, const struct engine_output *o) {
    struct choice *ch = &g->ch[index];
    const int finished = o->finish != ENGINE_FINISH_NONE;
    if (g->chat) {
        /* The text goes through the choice's parsers: a delta may hold reasoning, content and
         * call pieces, or nothing yet (held back while it may still start a call). */
        const int tokens = o->num_output_tokens - ch->out_tokens;
        ch->out_tokens = o->num_output_tokens;
        if (api_out_feed(&ch->out, o->text, o->text_len, tokens, finished)) return -1;
        const struct api_out *out = &ch->out;
        const int has = out->d_content.n > 0 || out->d_reasoning.n > 0 || out->d_first_call < out->num_calls;
        if (!finished && !has && !(o->logprobs && o->num_tokens > 0)) return 0;
        cJSON *c, *j = chunk(g, index, &c);
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (out->d_reasoning.n > 0) {
            cJSON_AddStringToObject(d, "reasoning_content", out->d_reasoning.p);
            cJSON_AddStringToObject(d, "reasoning", out->d_reasoning.p);
        }
        if (out->d_content.n > 0 || (!finished && !has)) cJSON_AddStringToObject(d, "content", out->d_content.p ? out->d_content.p : "");
        add_call_deltas(d, out);
        if (o->logprobs && o->num_tokens > 0)
            cJSON_AddItemToObject(c, "logprobs", chat_logprobs(g, o->token_ids, o->logprobs, o->num_tokens));
        else cJSON_AddNullToObject(c, "logprobs");
        if (finished) {
            cJSON_AddStringToObject(c, "finish_reason", finish_reason(ch));
            add_stop_reason(c, ch);
        } else {
            cJSON_AddNullToObject(c, "finish_reason");
        }
        return sse(g, j);
    }
    if (!finished && o->text_len == 0 && !(o->logprobs && o->num_tokens > 0)) return 0;
    cJSON *c, *j = chunk(g, index, &c);
    {
        cJSON_AddStringToObject(c, "text", o->text);
    }
    if (o->logprobs && o->num_tokens > 0)
        cJSON_AddItemToObject(c, "logprobs", completion_logprobs(g, ch, o->token_ids, o->logprobs, o->num_tokens));
    else cJSON_AddNullToObject(c, "logprobs");
    if (finished) {
        cJSON_AddStringToObject(c, "finish_reason", engine_finish_name(o->finish));
        add_stop_reason(c, ch);
    } else {
        cJSON_AddNullToObject(c, "finish_reason");
    }
    return sse(g, j);
}

static int stream_end(struct gen *g) {
    if (g->r->include_usage) {
        cJSON *j = response_base(g, g->chat ? "chat.completion.chunk" : "text_completion");
        cJSON_AddArrayToObject(j, "choices");
        cJSON_AddItemToObject(j, "usage", usage_object(g));
        if (sse(g, j)) return -1;
    }
    if (sse_raw(g, "[DONE]", 6)) return -1;
    return mg_write(g->c, "0\r\n\r\n", 5) == 5 ? 0 : -1;
}

/* ---- non-streaming ---- */

static int collect_output(struct gen *g, int index, const struct engine_output *o) {
    struct choice *ch = &g->ch[index];
    if (g->chat) {
        const int tokens = o->num_output_tokens - ch->out_tokens;
        ch->out_tokens = o->num_output_tokens;
        if (api_out_feed(&ch->out, o->text, o->text_len, tokens, o->finish != ENGINE_FINISH_NONE)) return FOLIO_ENOMEM;
    } else if (sbuf_put(&ch->text, o->text, o->text_len)) {
        return FOLIO_ENOMEM;
    }
    if (o->logprobs && o->num_tokens > 0) {
        if (ch->num + o->num_tokens > ch->cap) {
            int nc = ch->cap ? ch->cap * 2 : 64;
            while (nc < ch->num + o->num_tokens) nc *= 2;
            int32_t *ni = realloc(ch->ids, sizeof *ni * (size_t)nc);
            if (ni) ch->ids = ni;
            struct sampler_logprobs *nl = realloc(ch->lps, sizeof *nl * (size_t)nc);
            if (nl) ch->lps = nl;
            if (!ni || !nl) return FOLIO_ENOMEM;
            ch->cap = nc;
        }
        memcpy(ch->ids + ch->num, o->token_ids, sizeof(int32_t) * (size_t)o->num_tokens);
        memcpy(ch->lps + ch->num, o->logprobs, sizeof *ch->lps * (size_t)o->num_tokens);
        ch->num += o->num_tokens;
    }
    return 0;
}

static void respond(struct gen *g) {
    cJSON *j = response_base(g, g->chat ? "chat.completion" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(j, "choices");
    for (int i = 0; i < g->np * g->n; i++) {
        struct choice *ch = &g->ch[i];
        const int p = i / g->n;
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", i);
        if (g->chat) {
            cJSON *m = cJSON_AddObjectToObject(c, "message");
            const struct api_out *out = &ch->out;
            cJSON_AddStringToObject(m, "role", "assistant");
            /* OpenAI's shape: content null beside calls when the model wrote no text. */
            if (out->num_calls > 0 && out->content.n == 0) cJSON_AddNullToObject(m, "content");
            else cJSON_AddStringToObject(m, "content", out->content.p ? out->content.p : "");
            if (g->a->reasoning_format > REASONING_NONE) {
                if (out->reasoning.n > 0 || (ch->out.rp && reasoning_parser_in_reasoning(ch->out.rp))) {
                    cJSON_AddStringToObject(m, "reasoning_content", out->reasoning.p ? out->reasoning.p : "");
                    cJSON_AddStringToObject(m, "reasoning", out->reasoning.p ? out->reasoning.p : "");
                } else {
                    cJSON_AddNullToObject(m, "reasoning_content");
                }
            }
            cJSON *calls = cJSON_AddArrayToObject(m, "tool_calls");
            for (int k = 0; k < out->num_calls; k++) {
                cJSON *t = cJSON_CreateObject();
                cJSON_AddStringToObject(t, "id", out->calls[k].id);
                cJSON_AddStringToObject(t, "type", "function");
                cJSON *fn = cJSON_AddObjectToObject(t, "function");
                cJSON_AddStringToObject(fn, "name", out->calls[k].name.p ? out->calls[k].name.p : "");
                cJSON_AddStringToObject(fn, "arguments", out->calls[k].args.p ? out->calls[k].args.p : "");
                cJSON_AddItemToArray(calls, t);
            }
        } else {
            char *echo = NULL;
            size_t en = 0;
            struct sbuf full = {0};
            if (g->r->echo && (echo = echo_text(g, p, &en))) {
                sbuf_put(&full, echo, en);
                ch->offset = full.n;
            }
            sbuf_put(&full, ch->text.p ? ch->text.p : "", ch->text.n);
            cJSON_AddStringToObject(c, "text", full.p ? full.p : "");
            free(echo);
            sbuf_free(&full);
        }
        if (g->r->logprobs >= 0)
            cJSON_AddItemToObject(c, "logprobs",
                                  g->chat ? chat_logprobs(g, ch->ids, ch->lps, ch->num)
                                          : completion_logprobs(g, ch, ch->ids, ch->lps, ch->num));
        else cJSON_AddNullToObject(c, "logprobs");
        cJSON_AddStringToObject(c, "finish_reason", finish_reason(ch));
        add_stop_reason(c, ch);
        cJSON_AddItemToArray(choices, c);
    }
    cJSON_AddItemToObject(j, "usage", usage_object(g));
    api_send_json(g->a, g->c, 200, j);
}

/* ---- the request ---- */

static int resp_output(struct gen *g, int index, const struct engine_output *o);

static int on_output(struct gen *g, int p, const struct engine_output *o) {
    const int index = p * g->n + o->index;
    struct choice *ch = &g->ch[index];
    ch->num_output = o->num_output_tokens;
    g->cached[p] = o->num_cached_tokens;
    if (o->finish != ENGINE_FINISH_NONE) {
        ch->finish = o->finish;
        ch->stop_str = o->stop_str;
        ch->stop_token = o->stop_token;
        if (o->finish == ENGINE_FINISH_ABORT && !g->error[0])
            snprintf(g->error, sizeof g->error, "%s", o->error ? o->error : "the request was aborted");
    }
    if (g->error[0]) return 0; /* the response will be an error */
    if (g->resp) return resp_output(g, index, o);
    if (g->r->stream) return stream_output(g, index, o);
    return collect_output(g, index, o) ? -1 : 0;
}

/* ---- /v1/responses ---- */

/* An SSE event with its name: "event: TYPE\ndata: JSON\n\n", one HTTP chunk. */
static int resp_emit(void *ud, const char *type, cJSON *data) {
    char *s = cJSON_PrintUnformatted(data);
    cJSON_Delete(data);
    if (!s) return -1;
    const int rc = sse_event(ud, type, s, strlen(s));
    free(s);
    return rc;
}

static struct api_resp_usage resp_usage(const struct gen *g) {
    return (struct api_resp_usage){.input = g->num_ids[0], .cached = g->cached[0], .output = g->ch[0].num_output,
                                   .reasoning = g->ch[0].out.reasoning_tokens};
}

static int resp_output(struct gen *g, int index, const struct engine_output *o) {
    struct choice *ch = &g->ch[index];
    const int tokens = o->num_output_tokens - ch->out_tokens;
    ch->out_tokens = o->num_output_tokens;
    if (api_out_feed(&ch->out, o->text, o->text_len, tokens, o->finish != ENGINE_FINISH_NONE)) return -1;
    return g->rs ? api_resp_stream_piece(g->rs, &ch->out, resp_emit, g) : 0;
}

static int pump(struct gen *g);

/* The whole answer of a /v1/responses request: a response object, or its event stream. */
static void resp_answer(struct gen *g) {
    struct api_resp_stream *st = NULL;
    if (g->r->stream) {
        char cors[512];
        api_cors_headers(g->a, g->c, cors, sizeof cors);
        if (!(st = malloc(sizeof *st))) return;
        mg_printf(g->c,
                  "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
                  "Transfer-Encoding: chunked\r\nX-Accel-Buffering: no\r\n%s\r\n",
                  cors);
        if (api_resp_stream_start(st, g->resp, resp_emit, g)) goto out;
        g->rs = st;
    }
    if (pump(g) != 0) goto out; /* nobody to answer */
    const struct api_resp_usage u = resp_usage(g);
    const char *status = g->ch[0].finish == ENGINE_FINISH_LENGTH ? "incomplete" : "completed";
    if (st) {
        if (g->error[0]) {
            cJSON *d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "type", "error");
            cJSON_AddNumberToObject(d, "sequence_number", st->seq++);
            cJSON_AddStringToObject(d, "code", "server_error");
            cJSON_AddStringToObject(d, "message", g->error);
            cJSON_AddNullToObject(d, "param");
            if (resp_emit(g, "error", d)) goto out;
        } else if (api_resp_stream_end(st, g->resp, &g->ch[0].out, status, &u, resp_emit, g)) {
            goto out;
        }
        mg_write(g->c, "0\r\n\r\n", 5);
    } else if (g->error[0]) {
        struct api_error err;
        api_error_set(&err, 500, NULL, "%s", g->error);
        api_send_error(g->a, g->c, &err);
    } else {
        api_send_json(g->a, g->c, 200, api_resp_object(g->resp, status, &g->ch[0].out, NULL, &u));
    }
out:
    g->rs = NULL;
    free(st);
}

/* Reads every request's outputs until all are done. -1: the client went away (or the
 * server is stopping), and the requests must be aborted. */
static int pump(struct gen *g) {
    int *done = calloc((size_t)g->np, sizeof *done), remaining = g->np;
    if (!done) return -1;
    int rc = 0;
    double last_check = folio_now();
    while (remaining > 0 && !rc) {
        int progressed = 0, first = -1;
        struct engine_output o;
        for (int p = 0; p < g->np && !rc; p++) {
            while (!done[p] && !rc) {
                int rr = engine_read(g->h[p], &o, 0);
                if (rr == ENGINE_READ_OUTPUT) {
                    rc = on_output(g, p, &o);
                    progressed = 1;
                } else {
                    if (rr == ENGINE_READ_DONE) {
                        done[p] = 1;
                        remaining--;
                    }
                    break;
                }
            }
            if (!done[p] && first < 0) first = p;
        }
        if (rc || remaining == 0) break;
        if (!progressed) {
            /* Several prompts are polled; one waits on its own stream. */
            int rr = engine_read(g->h[first], &o, g->np > 1 ? 5 : 100);
            if (rr == ENGINE_READ_OUTPUT) {
                rc = on_output(g, first, &o);
            } else if (rr == ENGINE_READ_DONE) {
                done[first] = 1;
                remaining--;
            }
        }
        /* A busy request makes progress every step, so the client is checked on a clock, not
         * only when its stream goes quiet. */
        if (!rc && folio_now() - last_check > 0.05) {
            last_check = folio_now();
            if (atomic_load(&g->a->stopping) || http_client_gone(g->fd)) rc = -1;
        }
    }
    free(done);
    return rc;
}

/* Sampling defaults from generation_config.json, for what the request left out (vLLM). */
static void apply_defaults(const struct model_config *cfg, const struct api_request *r, struct sampling_params *sp) {
    if (!(r->set & API_SET_TEMPERATURE) && cfg->default_temperature >= 0) sp->temperature = cfg->default_temperature;
    if (!(r->set & API_SET_TOP_P) && cfg->default_top_p >= 0) sp->top_p = cfg->default_top_p;
    if (!(r->set & API_SET_TOP_K) && cfg->default_top_k >= 0) sp->top_k = cfg->default_top_k;
    if (!(r->set & API_SET_REPETITION) && cfg->default_repetition_penalty >= 0)
        sp->repetition_penalty = cfg->default_repetition_penalty;
}

static int build_prompts(struct gen *g, struct api_error *err) {
    const struct api_request *r = g->r;
    if (g->chat) return api_chat_prompt(g->a, g->e, r, &g->ids[0], &g->num_ids[0], &g->think_open, err);
    for (int p = 0; p < g->np; p++) {
        const struct api_prompt *pr = &r->prompts[p];
        if (pr->text) {
            if (tokenizer_encode(g->tok, pr->text, pr->text_len, r->add_special_tokens, &g->ids[p], &g->num_ids[p]))
                return api_error_set(err, 400, "prompt", "%s", folio_last_error());
        } else {
            if (!(g->ids[p] = malloc(sizeof(int32_t) * (size_t)pr->num_ids)))
                return api_error_set(err, 500, NULL, "out of memory");
            memcpy(g->ids[p], pr->ids, sizeof(int32_t) * (size_t)pr->num_ids);
            g->num_ids[p] = pr->num_ids;
        }
    }
    return 0;
}

/* Prompt p's engine request: the body's sampling, with generation_config.json's defaults. */
static struct engine_request prompt_request(const struct gen *g, int p, const struct model_config *cfg, int L) {
    struct engine_request rq = {.prompt = g->ids[p], .num_prompt = g->num_ids[p], .params = g->r->sp,
                                .priority = g->r->priority, .structured = g->grammar};
    apply_defaults(cfg, g->r, &rq.params);
    /* Mistral's calls open with [TOOL_CALLS], a special token: its parser must see it. */
    if (g->chat && g->ch[0].out.tp && g->a->tool_format == TOOL_FORMAT_MISTRAL) rq.params.skip_special_tokens = 0;
    rq.params.logprobs = g->r->logprobs;
    if (g->chat && !(g->r->set & API_SET_MAX_TOKENS) && cfg->default_max_new_tokens > 0) {
        const int room = L - g->num_ids[p];
        rq.params.max_tokens = cfg->default_max_new_tokens < room ? cfg->default_max_new_tokens : room;
    }
    return rq;
}

/* The most output tokens all the choices can produce: n per prompt, each up to max_tokens or,
 * left out (or over it, which the engine refuses), the context the prompt leaves. */
static long long max_output_tokens(const struct gen *g, const struct model_config *cfg, int L) {
    long long total = 0;
    for (int p = 0; p < g->np; p++) {
        const int mt = prompt_request(g, p, cfg, L).params.max_tokens, room = L - g->num_ids[p];
        total += (long long)g->n * (mt > 0 && mt < room ? mt : room > 0 ? room : 0);
    }
    return total;
}

static int submit_all(struct gen *g, struct api_error *err) {
    const struct model_config *cfg = engine_model_config(g->e);
    const int L = engine_max_model_len(g->e);
    for (int i = 0; g->chat && i < g->np * g->n; i++)
        if (api_out_init(&g->ch[i].out, g->a, g->r, g->think_open, !g->r->stream || g->resp != NULL))
            return api_error_set(err, 500, NULL, "out of memory");
    /* The parser checked what it could; without max_tokens the bound needs the prompts'
     * lengths. Before the first submit, so that nothing runs for a refused request. */
    int rc = api_check_logprob_entries(g->r, max_output_tokens(g, cfg, L), &g->a->p.limits, err);
    if (rc) return rc;
    for (int p = 0; p < g->np; p++) {
        struct engine_request rq = prompt_request(g, p, cfg, L);
        /* The sampler's messages start with the parameter's name: report it as `param`. */
        if (sampler_check_params(&rq.params, tokenizer_vocab_size(g->tok))) {
            const char *m = folio_last_error();
            char param[64];
            const size_t k = strspn(m, "abcdefghijklmnopqrstuvwxyz_");
            snprintf(param, sizeof param, "%.*s", (int)(k < sizeof param ? k : sizeof param - 1), m);
            return api_error_set(err, 400, k && m[k] == ' ' ? param : NULL, "%s", m);
        }
        rc = engine_submit(g->e, &rq, &g->h[p]);
        if (rc == FOLIO_EBUSY) return api_error_set(err, 503, NULL, "%s", folio_last_error());
        if (rc) return api_error_set(err, rc == FOLIO_ENOMEM ? 500 : 400, NULL, "%s", folio_last_error());
    }
    return 0;
}

/* Whether this request held enough memory that its freed heap is worth handing back now
 * (glibc keeps it otherwise, see folio_malloc_release): a big body (its parse tree), many
 * samples (each has engine-side buffers), or a big collected response. A small request
 * skips the trim, which walks the heaps. */
static int was_big(const struct gen *g, size_t len) {
    if (len >= API_TRIM_BODY_BYTES || (long long)g->np * g->n >= API_TRIM_SEQS) return 1;
    size_t held = 0;
    for (int i = 0; g->ch && i < g->np * g->n; i++)
        held += g->ch[i].text.cap + g->ch[i].out.content.cap + g->ch[i].out.reasoning.cap +
                (size_t)g->ch[i].cap * (sizeof(int32_t) + sizeof(struct sampler_logprobs));
    return held >= API_TRIM_HELD_BYTES;
}

/* A parsed request run to its answer. resp: a /v1/responses request (chat underneath), whose
 * answer is a response object. Frees r. */
static void run(struct api *a, struct mg_connection *c, struct engine *e, struct api_request *rp,
                struct api_resp *resp, size_t len) {
    struct api_request r = *rp;
    struct api_error err;
    struct gen g = {.a = a, .c = c, .e = e, .tok = engine_tokenizer(e), .r = &r, .chat = r.kind == API_CHAT, .resp = resp};
    int rc = api_check_model(a, r.model, &err);
    if (rc) goto out;
    g.model = a->names[0];
    if (resp) resp->model = g.model;
    if (resp && r.sp.n != 1) {
        rc = api_error_set(&err, 400, "n", "the Responses API makes one answer");
        goto out;
    }
    g.created = (long long)time(NULL);
    api_random_id(g.id, sizeof g.id, g.chat ? "chatcmpl-" : "cmpl-", 16);
    g.np = g.chat ? 1 : r.num_prompts;
    g.n = r.sp.n;
    g.h = calloc((size_t)g.np, sizeof *g.h);
    g.ids = calloc((size_t)g.np, sizeof *g.ids);
    g.num_ids = calloc((size_t)g.np, sizeof *g.num_ids);
    g.cached = calloc((size_t)g.np, sizeof *g.cached);
    g.ch = calloc((size_t)g.np * (size_t)g.n, sizeof *g.ch);
    if (r.logprobs >= 0) {
        g.dec_cap = tok_decode_work_size(g.tok, 2);
        g.dec_work = malloc(g.dec_cap);
    }
    if (!g.h || !g.ids || !g.num_ids || !g.cached || !g.ch || (r.logprobs >= 0 && !g.dec_work)) {
        rc = api_error_set(&err, 500, NULL, "out of memory");
        goto out;
    }
    for (int i = 0; i < g.np * g.n; i++) g.ch[i].stop_token = -1;
    if ((rc = build_prompts(&g, &err))) goto out;
    /* The grammar compiles here, on this HTTP thread, before anything is queued: the request's
     * structured output or its tool choice, after the reasoning block when the prompt opened one. */
    if (g.chat) {
        struct structured_spec spec;
        char *spec_text = NULL, *spec_frame = NULL;
        if ((rc = api_tools_spec(a, &r, g.think_open, &spec, &spec_text, &spec_frame, &err))) goto out;
        if ((spec.kind != STRUCTURED_NONE || spec.frame) && engine_structured(e, &spec, &g.grammar))
            rc = api_error_set(&err, 400, spec_text ? "tools" : r.structured_param, "%s", folio_last_error());
        free(spec_text);
        free(spec_frame);
        if (rc) goto out;
    } else if (r.structured.kind != STRUCTURED_NONE && engine_structured(e, &r.structured, &g.grammar)) {
        rc = api_error_set(&err, 400, r.structured_param, "%s", folio_last_error());
        goto out;
    }
    if ((rc = submit_all(&g, &err))) goto out;
    g.fd = http_conn_fd(c);
    if (resp) {
        resp_answer(&g);
        goto release;
    }
    if (r.stream) {
        if (stream_start(&g) == 0 && pump(&g) == 0) {
            if (g.error[0]) {
                if (sse_error(&g, 500, g.error) == 0 && sse_raw(&g, "[DONE]", 6) == 0) mg_write(c, "0\r\n\r\n", 5);
            } else {
                stream_end(&g);
            }
        }
        goto release; /* the status line has gone: errors went out as events */
    }
    if (pump(&g) != 0) goto release; /* nobody to answer */
    if (g.error[0]) api_error_set(&err, 500, NULL, "%s", g.error), rc = FOLIO_EIO;
    else respond(&g);
out:
    if (rc) api_send_error(a, c, &err);
release:;
    const int big = was_big(&g, len); /* before the choices it reads are freed */
    for (int p = 0; g.h && p < g.np; p++) engine_release(g.h[p]); /* aborts what still runs */
    for (int p = 0; g.ids && p < g.np; p++) free(g.ids[p]);
    for (int i = 0; g.ch && i < g.np * g.n; i++) {
        sbuf_free(&g.ch[i].text);
        api_out_free(&g.ch[i].out);
        free(g.ch[i].ids);
        free(g.ch[i].lps);
    }
    free(g.h);
    free(g.ids);
    free(g.num_ids);
    free(g.cached);
    free(g.ch);
    free(g.dec_work);
    structured_release(g.grammar);
    api_request_free(&r);
    if (big) folio_malloc_release();
}

void api_handle_generate(struct api *a, struct mg_connection *c, struct engine *e, enum api_kind kind,
                         const char *body, size_t len) {
    struct api_request r;
    struct api_error err;
    /* The engine's own sequence limit, which may differ from the flag's default. */
    struct api_limits lim = a->p.limits;
    lim.max_num_seqs = engine_max_num_seqs(e);
    if (api_request_parse(kind, body, len, &lim, &r, &err)) {
        api_send_error(a, c, &err);
        if (len >= API_TRIM_BODY_BYTES) folio_malloc_release();
        return;
    }
    run(a, c, e, &r, NULL, len);
}

void api_handle_responses(struct api *a, struct mg_connection *c, struct engine *e, const char *body, size_t len) {
    struct api_request r;
    struct api_resp m;
    struct api_error err;
    struct api_limits lim = a->p.limits;
    lim.max_num_seqs = engine_max_num_seqs(e);
    if (api_resp_parse(body, len, &lim, mg_get_header(c, "X-Folio-Store"), mg_get_header(c, "X-Folio-Previous-Response-Id"),
                       &r, &m, &err)) {
        api_send_error(a, c, &err);
        if (len >= API_TRIM_BODY_BYTES) folio_malloc_release();
        return;
    }
    run(a, c, e, &r, &m, len);
    api_resp_free(&m);
}
