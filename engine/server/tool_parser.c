/* Incremental tool-call parsing (tool_parser.h).
 *
 * The parser is a byte-at-a-time state machine: every decision depends only on the bytes seen
 * so far, never on where a piece ended, which is what makes any chunking give the same events.
 * The feed loop takes runs of plain content and of streamed arguments in one step, but only
 * where the per-byte machine would do the same.
 *
 * A candidate call starts at a trigger ("<tool_call>", "[TOOL_CALLS]", "<function=", or for
 * llama3_json the start of the output) and is held in `hold` until its header is read. Then
 * CALL_BEGIN goes out and the arguments stream as the model writes them, their end found by a
 * string- and escape-aware depth counter (struct jscan). A header in an order the streaming
 * reader does not follow (arguments first, "type" first, an "id" between) switches the
 * candidate to a buffered one: the whole object is held and cJSON decides at its end. A
 * candidate that fails is content. When it fails at a byte that cannot continue its header,
 * the bytes after its trigger are fed through again (the replay queue), so that a call right
 * behind a false start is still found; when it fails as a whole (cJSON said no, or it outgrew
 * max_hold) all of it is content, without a second look.
 *
 * qwen3_coder's XML becomes a JSON object as it goes: a parameter whose schema says string
 * streams as a JSON string; any other waits for its end tag (up to max_hold) to be typed.
 * After a call, whitespace and its closing tag are dropped; other text is content again.
 *
 * Events are gathered in `out` and leave when their kind or call changes, when out holds a
 * few KiB, and at the end of each feed: no callback per byte, and no allocation per byte
 * (the buffers grow by doubling and are reused). */
#include "server/tool_parser.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/sbuf.h"
#include "base/util.h"

#define TP_MIN_HOLD 64
#define TP_OUT_FLUSH 4096 /* pending event bytes that make it leave */
#define TP_NAME_MAX 256   /* mistral and qwen3_coder names read outside JSON */

enum tp_state {
    S_SCAN,        /* content: hold is [ws_n droppable whitespace] + a partial trigger */
    S_PASS,        /* all content from here on (NONE; llama3_json once undecidable) */
    S_L_START,     /* llama3_json: the output's start: whitespace, <|python_tag|>, whitespace */
    S_L_SEP,       /* llama3_json after a call: whitespace, an optional ';', whitespace, '{' */
    S_J_OPEN,      /* hermes after <tool_call>: whitespace, then '{' */
    S_J_HDR,       /* a JSON call object's header, streaming reader (sub-state h) */
    S_J_BUF,       /* a JSON call object held whole, for cJSON at its end */
    S_J_ARGS,      /* a call's arguments object, streaming out */
    S_J_REST,      /* the call object after its arguments: ',' more keys, or '}' */
    S_M_OPEN,      /* mistral after [TOOL_CALLS]: '[' (array form) or a name ([ARGS] form) */
    S_M_ARR,       /* mistral array: '{' of an element, or ']' */
    S_M_NEXT,      /* mistral array after an element: ',' or ']' */
    S_M_NAME,      /* mistral [ARGS] form: the function name */
    S_M_ARGSTAG,   /* ... "[ARGS]" */
    S_M_ARGSOPEN,  /* ... whitespace, then the arguments' '{' */
    S_Q_OPEN,      /* qwen3_coder after <tool_call>: whitespace, "<function=" */
    S_Q_FNAME,     /* ... the function name up to '>' */
    S_Q_BODY,      /* ... between parameters: "<parameter=", "</function>" */
    S_Q_PNAME,     /* ... a parameter name up to '>' */
    S_Q_VAL,       /* ... a parameter value up to its end tag */
};

enum hdr_state { H_KEY1_WS, H_KEY1, H_COLON1, H_NAME_WS, H_NAME, H_COMMA, H_KEY2_WS, H_KEY2, H_COLON2, H_VAL_WS, H_STRVAL };

/* JSON schema types of a qwen3_coder parameter, as bits; 0 = unknown (no schema). */
enum { T_STRING = 1, T_NUMBER = 2, T_INTEGER = 4, T_BOOL = 8, T_OBJECT = 16, T_ARRAY = 32, T_NULL = 64 };

/* The extent of one JSON value that starts with '{' or '[': depth counts brackets outside
 * strings, so braces in strings and escaped quotes do not end it early. */
struct jscan {
    long depth;
    unsigned char in_str, esc;
};

/* Returns 1 when c closes the value (depth back to 0). */
static int jscan_byte(struct jscan *j, unsigned char c) {
    if (j->in_str) {
        if (j->esc) j->esc = 0;
        else if (c == '\\') j->esc = 1;
        else if (c == '"') j->in_str = 0;
        return 0;
    }
    switch (c) {
    case '"': j->in_str = 1; return 0;
    case '{':
    case '[': j->depth++; return 0;
    case '}':
    case ']': return --j->depth <= 0;
    default: return 0;
    }
}

struct tool_parser {
    enum tool_format f;
    cJSON *tools; /* owned copy of the tools array; NULL: no list, every name goes */
    size_t max_hold;
    int st;
    struct sbuf hold;
    size_t ws_n;     /* S_SCAN: droppable whitespace at the front of hold (after a call) */
    int after;       /* S_SCAN right after a call: whitespace and closing tags are dropped */
    size_t cand_k;   /* bytes at hold's front that a failed candidate does not replay */
    size_t obj_off;  /* the candidate object's '{' in hold */
    size_t mark;     /* start of the string or name being read, in hold */
    size_t mark2;    /* mistral: end of the name */
    int h;           /* S_J_HDR sub-state */
    int esc;         /* in a JSON string of the header: the last byte was a backslash */
    int flag;        /* state-local: llama3 tag done / ';' seen, rest's first byte, value's first byte */
    size_t m;        /* bytes of a fixed token matched */
    int in_obj;      /* S_J_ARGS: the arguments sit inside a call object (not mistral [ARGS]) */
    struct jscan js;
    struct sbuf name;   /* the call's decoded name */
    const cJSON *props; /* qwen3_coder: the function's parameters.properties, or NULL */
    unsigned ptypes;    /* qwen3_coder: the parameter's schema types */
    int vstream;        /* qwen3_coder: the value streams as a JSON string */
    int nparams;
    struct sbuf key; /* qwen3_coder: the parameter's name as a JSON string */
    int ncalls;
    struct sbuf rq, tmp; /* bytes to feed again before the input's next byte, from rq_pos */
    size_t rq_pos;
    struct sbuf out; /* the pending event's bytes */
    int out_kind, out_index;
    unsigned char first[256]; /* bytes that may start a trigger */
    tool_event_fn fn;
    void *ud;
    int rc;
};

static const char *const TRIG_HERMES[] = {"<tool_call>", NULL};
static const char *const TRIG_QWEN[] = {"<tool_call>", "<function=", NULL};
static const char *const TRIG_MISTRAL[] = {"[TOOL_CALLS]", NULL};
static const char *const TRIG_NONE[] = {NULL};
static const char *const CLOSE_TAG[] = {"</tool_call>", NULL};
static const char *const BODY_PATS[] = {"<parameter=", "</function>", "</tool_call>", NULL};
/* A value ends at its own end tag, or where the next parameter or the function's end begins
 * (the model forgot the end tag: vLLM accepts that too). */
static const char *const VAL_TERMS[] = {"</parameter>", "<parameter=", "</function>", NULL};
static const char PY_TAG[] = "<|python_tag|>";

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* 2: s[0, n) equals pats[*which]; 1: it is a proper prefix of one (n == 0 included); 0: neither. */
static int pat_match(const char *const *pats, const char *s, size_t n, int *which) {
    int r = n == 0;
    for (int i = 0; pats[i]; i++) {
        size_t l = strlen(pats[i]);
        if (n > l || memcmp(pats[i], s, n) != 0) continue;
        if (n == l) {
            *which = i;
            return 2;
        }
        r = 1;
    }
    return r;
}

static const char *const *triggers(const struct tool_parser *p) {
    switch (p->f) {
    case TOOL_FORMAT_HERMES: return TRIG_HERMES;
    case TOOL_FORMAT_QWEN3_CODER: return TRIG_QWEN;
    case TOOL_FORMAT_MISTRAL: return TRIG_MISTRAL;
    default: return TRIG_NONE;
    }
}

static void nomem(struct tool_parser *p) {
    if (!p->rc) p->rc = folio_err(FOLIO_ENOMEM, "tool parser: out of memory");
}

/* ---- events ---- */

static void out_flush(struct tool_parser *p) {
    if (p->rc || p->out.n == 0) return;
    struct tool_event ev = {.kind = (enum tool_event_kind)p->out_kind, .index = p->out_index, .text = p->out.p, .len = p->out.n};
    p->out.n = 0;
    int r = p->fn(p->ud, &ev);
    if (r) p->rc = r;
}

/* CONTENT, or CALL_ARGS of the latest call. */
static void emit(struct tool_parser *p, enum tool_event_kind kind, const char *s, size_t n) {
    if (p->rc || n == 0) return;
    int idx = kind == TOOL_EV_CONTENT ? -1 : p->ncalls - 1;
    if (p->out.n && (p->out_kind != (int)kind || p->out_index != idx)) out_flush(p);
    if (p->rc) return;
    if (n >= TP_OUT_FLUSH) { /* a long run goes out as it is, not through out */
        out_flush(p);
        if (p->rc) return;
        struct tool_event ev = {.kind = kind, .index = idx, .text = s, .len = n};
        int r = p->fn(p->ud, &ev);
        if (r) p->rc = r;
        return;
    }
    if (sbuf_put(&p->out, s, n)) {
        nomem(p);
        return;
    }
    p->out_kind = (int)kind;
    p->out_index = idx;
    if (p->out.n >= TP_OUT_FLUSH) out_flush(p);
}

static void emit_content(struct tool_parser *p, const char *s, size_t n) { emit(p, TOOL_EV_CONTENT, s, n); }
static void emit_args(struct tool_parser *p, const char *s, size_t n) { emit(p, TOOL_EV_CALL_ARGS, s, n); }

static void emit_begin(struct tool_parser *p, const char *name, size_t n) {
    out_flush(p);
    if (p->rc) return;
    struct tool_event ev = {.kind = TOOL_EV_CALL_BEGIN, .index = p->ncalls++, .text = name, .len = n};
    int r = p->fn(p->ud, &ev);
    if (r) p->rc = r;
}

/* Escaped text goes out as arguments, or into b when there is one. */
static void esc_out(struct tool_parser *p, struct sbuf *b, const char *s, size_t n) {
    if (!b) emit_args(p, s, n);
    else if (sbuf_put(b, s, n)) nomem(p);
}

/* s[0, n) as the inside of a JSON string, through emit_args or into b (when b != NULL). Bytes
 * from 0x80 up pass as they are: UTF-8 stays UTF-8, split or not. */
static void json_escape(struct tool_parser *p, struct sbuf *b, const char *s, size_t n) {
    char buf[512];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (k + 8 > sizeof buf) {
            esc_out(p, b, buf, k);
            k = 0;
        }
        switch (c) {
        case '"': buf[k++] = '\\'; buf[k++] = '"'; break;
        case '\\': buf[k++] = '\\'; buf[k++] = '\\'; break;
        case '\n': buf[k++] = '\\'; buf[k++] = 'n'; break;
        case '\r': buf[k++] = '\\'; buf[k++] = 'r'; break;
        case '\t': buf[k++] = '\\'; buf[k++] = 't'; break;
        case '\b': buf[k++] = '\\'; buf[k++] = 'b'; break;
        case '\f': buf[k++] = '\\'; buf[k++] = 'f'; break;
        default:
            if (c < 0x20) {
                static const char hex[] = "0123456789abcdef";
                memcpy(buf + k, "\\u00", 4);
                buf[k + 4] = hex[c >> 4];
                buf[k + 5] = hex[c & 15];
                k += 6;
            } else {
                buf[k++] = (char)c;
            }
        }
    }
    esc_out(p, b, buf, k);
}

/* ---- held bytes and the replay queue ---- */

static int hold_put(struct tool_parser *p, unsigned char c) {
    char ch = (char)c;
    if (sbuf_put(&p->hold, &ch, 1)) {
        nomem(p);
        return -1;
    }
    return 0;
}

static void hold_drop_front(struct tool_parser *p, size_t k) {
    memmove(p->hold.p, p->hold.p + k, p->hold.n - k);
    p->hold.n -= k;
}

/* Feeds s[0, n) again, before whatever was already queued. */
static void replay(struct tool_parser *p, const char *s, size_t n) {
    if (p->rc || n == 0) return;
    p->tmp.n = 0;
    if (sbuf_put(&p->tmp, s, n) || sbuf_put(&p->tmp, p->rq.p + p->rq_pos, p->rq.n - p->rq_pos)) {
        nomem(p);
        return;
    }
    struct sbuf t = p->rq;
    p->rq = p->tmp;
    p->tmp = t;
    p->rq_pos = 0;
}

static void to_scan(struct tool_parser *p, int after) {
    p->hold.n = 0;
    p->ws_n = 0;
    p->after = after;
    p->cand_k = 0;
    p->st = S_SCAN;
}

/* The candidate as a whole is content (cJSON said no, or it outgrew max_hold). */
static void give_up(struct tool_parser *p) {
    emit_content(p, p->hold.p, p->hold.n);
    to_scan(p, 0);
    if (p->f == TOOL_FORMAT_LLAMA3_JSON || p->f == TOOL_FORMAT_NONE) p->st = S_PASS;
}

/* The candidate cannot go on at the byte just held: its trigger is content, and the bytes
 * after it are read again. llama3_json has no trigger to look for again: the rest is content. */
static void fail(struct tool_parser *p) {
    if (p->f == TOOL_FORMAT_LLAMA3_JSON) {
        give_up(p);
        return;
    }
    size_t k = p->cand_k < p->hold.n ? p->cand_k : p->hold.n;
    emit_content(p, p->hold.p, k);
    replay(p, p->hold.p + k, p->hold.n - k);
    to_scan(p, 0);
}

/* Appends c to a candidate's hold; 1 when that outgrew max_hold (given up) or failed. */
static int cand_put(struct tool_parser *p, unsigned char c) {
    if (hold_put(p, c)) return 1;
    if (p->hold.n > p->max_hold) {
        give_up(p);
        return 1;
    }
    return 0;
}

/* ---- tools ---- */

static const cJSON *tool_fn(const cJSON *t) {
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
    return cJSON_IsObject(fn) ? fn : t;
}

/* The function object of tools named name[0, n); NULL when there is none. */
static const cJSON *tool_find(const struct tool_parser *p, const char *name, size_t n) {
    const cJSON *t;
    cJSON_ArrayForEach(t, p->tools) {
        const cJSON *fn = tool_fn(t);
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (cJSON_IsString(nm) && strlen(nm->valuestring) == n && memcmp(nm->valuestring, name, n) == 0) return fn;
    }
    return NULL;
}

/* Whether a call may have this name: non-empty, and among the tools when there is a list. */
static int name_ok(const struct tool_parser *p, const char *name, size_t n) {
    if (n == 0) return 0;
    return !p->tools || tool_find(p, name, n) != NULL;
}

static unsigned type_bit(const char *t) {
    static const struct {
        const char *name;
        unsigned bit;
    } map[] = {{"string", T_STRING}, {"str", T_STRING}, {"number", T_NUMBER}, {"float", T_NUMBER}, {"double", T_NUMBER},
               {"integer", T_INTEGER}, {"int", T_INTEGER}, {"boolean", T_BOOL}, {"bool", T_BOOL}, {"object", T_OBJECT},
               {"dict", T_OBJECT}, {"array", T_ARRAY}, {"list", T_ARRAY}, {"null", T_NULL}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(t, map[i].name) == 0) return map[i].bit;
    return 0;
}

/* The types a schema allows: its "type" (a name or a list of names), else the union over an
 * anyOf/oneOf one level down. 0 when it says nothing we know. */
static unsigned schema_types(const cJSON *s, int depth) {
    unsigned m = 0;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type"), *e;
    if (cJSON_IsString(t)) return type_bit(t->valuestring);
    if (cJSON_IsArray(t)) {
        cJSON_ArrayForEach(e, t) if (cJSON_IsString(e)) m |= type_bit(e->valuestring);
        return m;
    }
    if (depth > 0) return 0;
    const char *alts[] = {"anyOf", "oneOf"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(s, alts[i]);
        cJSON_ArrayForEach(e, a) {
            unsigned b = schema_types(e, depth + 1);
            if (!b) return 0; /* one alternative we cannot type: anything goes */
            m |= b;
        }
    }
    return m;
}

/* ---- the buffered path: a whole call object, judged by cJSON ---- */

/* Whether o is a call: 1 with *name and *args (malloc'd; NULL stands for "{}"), 0 when it is
 * not, FOLIO_ENOMEM. */
static int json_call(const struct tool_parser *p, const cJSON *o, const char **name, char **args) {
    *args = NULL;
    if (!cJSON_IsObject(o)) return 0;
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "arguments");
    if (!a) a = cJSON_GetObjectItemCaseSensitive(o, "parameters");
    if (!cJSON_IsString(nm) || !name_ok(p, nm->valuestring, strlen(nm->valuestring))) return 0;
    if (ty && !(cJSON_IsString(ty) && strcmp(ty->valuestring, "function") == 0)) return 0;
    *name = nm->valuestring;
    if (p->f == TOOL_FORMAT_LLAMA3_JSON) {
        /* No trigger marks a llama3 call: without an arguments object it is plain JSON. */
        if (!cJSON_IsObject(a)) return 0;
    } else if (!a || cJSON_IsNull(a)) {
        return 1;
    } else if (cJSON_IsString(a)) { /* JSON in a string: the string is the arguments */
        if (!a->valuestring[0]) return 1;
        *args = strdup(a->valuestring);
        return *args ? 1 : FOLIO_ENOMEM;
    } else if (!cJSON_IsObject(a)) {
        return 0;
    }
    *args = cJSON_PrintUnformatted(a);
    return *args ? 1 : FOLIO_ENOMEM;
}

static void post_object(struct tool_parser *p);

static void buf_finish(struct tool_parser *p) {
    cJSON *o = cJSON_ParseWithLength(p->hold.p + p->obj_off, p->hold.n - p->obj_off);
    const char *name = NULL;
    char *args = NULL;
    int r = json_call(p, o, &name, &args);
    if (r > 0) {
        emit_begin(p, name, strlen(name));
        if (args) emit_args(p, args, strlen(args));
        else emit_args(p, "{}", 2);
    }
    free(args);
    cJSON_Delete(o);
    if (r < 0) nomem(p);
    else if (r > 0) post_object(p);
    else give_up(p);
}

static void to_buffered(struct tool_parser *p) {
    p->st = S_J_BUF;
    if (p->js.depth <= 0) buf_finish(p); /* the byte that failed the header closed the object */
}

/* ---- JSON call objects (hermes, llama3_json, mistral's array) ---- */

/* The candidate's '{' was just held. */
static void start_object(struct tool_parser *p) {
    p->obj_off = p->hold.n - 1;
    p->js = (struct jscan){0};
    jscan_byte(&p->js, '{');
    p->h = H_KEY1_WS;
    p->st = S_J_HDR;
}

/* After a complete call object: what may follow it in this format. */
static void post_object(struct tool_parser *p) {
    p->hold.n = 0;
    p->cand_k = 0;
    p->flag = 0;
    switch (p->f) {
    case TOOL_FORMAT_LLAMA3_JSON: p->st = S_L_SEP; break;
    case TOOL_FORMAT_MISTRAL: p->st = S_M_NEXT; break;
    default: to_scan(p, 1);
    }
}

static void start_args(struct tool_parser *p, int in_obj) {
    emit_begin(p, p->name.p, p->name.n);
    emit_args(p, "{", 1);
    p->js = (struct jscan){0};
    jscan_byte(&p->js, '{');
    p->hold.n = 0;
    p->cand_k = 0;
    p->in_obj = in_obj;
    p->st = S_J_ARGS;
}

static void start_rest(struct tool_parser *p) {
    p->hold.n = 0;
    p->cand_k = 0;
    p->js = (struct jscan){.depth = 1};
    p->flag = 1;
    p->st = S_J_REST;
}

static void args_end(struct tool_parser *p) {
    if (p->in_obj) start_rest(p);
    else to_scan(p, 1);
}

/* The key just read (between mark and the closing quote), compared as written. */
static int key_is(const struct tool_parser *p, const char *k) {
    size_t n = p->hold.n - 1 - p->mark, l = strlen(k);
    return n == l && memcmp(p->hold.p + p->mark, k, l) == 0;
}

/* Inside a JSON string of the header: 1 while it goes on, 0 at its closing quote. */
static int str_byte(struct tool_parser *p, unsigned char c) {
    if (p->esc) {
        p->esc = 0;
        return 1;
    }
    if (c == '\\') {
        p->esc = 1;
        return 1;
    }
    return c != '"';
}

/* The JSON string literal from mark to the end of hold, decoded; NULL if it is not one. */
static cJSON *held_string(const struct tool_parser *p, size_t from) {
    cJSON *s = cJSON_ParseWithLength(p->hold.p + from, p->hold.n - from);
    if (!cJSON_IsString(s)) {
        cJSON_Delete(s);
        return NULL;
    }
    return s;
}

/* The streaming header reader: '{' "name" ':' string ',' ("arguments"|"parameters") ':' then
 * '{' (arguments stream) or a string (JSON in a string, decoded at its end; not for
 * llama3_json). CALL_BEGIN waits for that first byte of the value, so that a call cut off
 * right after the colon is content rather than a call with empty arguments. Before the name
 * is known a misfit is content at once (a first key other than name, type, arguments,
 * parameters or, outside llama3_json, id; a name that is no string or no tool): plain JSON is
 * not held to its end. After the name, and for the other key orders, cJSON decides. */
static void hdr_byte(struct tool_parser *p, unsigned char c) {
    if (cand_put(p, c)) return;
    jscan_byte(&p->js, c);
    switch (p->h) {
    case H_KEY1_WS:
    case H_KEY2_WS:
        if (is_ws(c)) return;
        if (c == '"') {
            p->mark = p->hold.n;
            p->esc = 0;
            p->h = p->h == H_KEY1_WS ? H_KEY1 : H_KEY2;
        } else if (p->h == H_KEY1_WS) {
            fail(p);
        } else {
            to_buffered(p);
        }
        return;
    case H_KEY1:
        if (str_byte(p, c)) return;
        /* "id" first is a mistral array element's order; in llama3_json it is plain data. */
        if (key_is(p, "name")) p->h = H_COLON1;
        else if (key_is(p, "type") || key_is(p, "arguments") || key_is(p, "parameters") ||
                 (key_is(p, "id") && p->f != TOOL_FORMAT_LLAMA3_JSON))
            to_buffered(p);
        else fail(p);
        return;
    case H_COLON1:
        if (is_ws(c)) return;
        if (c == ':') p->h = H_NAME_WS;
        else fail(p);
        return;
    case H_NAME_WS:
        if (is_ws(c)) return;
        if (c != '"') {
            fail(p);
            return;
        }
        p->mark = p->hold.n - 1;
        p->esc = 0;
        p->h = H_NAME;
        return;
    case H_NAME: {
        if (str_byte(p, c)) return;
        cJSON *s = held_string(p, p->mark);
        int ok = s && name_ok(p, s->valuestring, strlen(s->valuestring));
        if (ok) {
            p->name.n = 0;
            if (sbuf_puts(&p->name, s->valuestring)) nomem(p);
        }
        cJSON_Delete(s);
        if (!ok) fail(p);
        else p->h = H_COMMA;
        return;
    }
    case H_COMMA:
        if (is_ws(c)) return;
        if (c == ',') p->h = H_KEY2_WS;
        else to_buffered(p);
        return;
    case H_KEY2:
        if (str_byte(p, c)) return;
        if (key_is(p, "arguments") || key_is(p, "parameters")) p->h = H_COLON2;
        else to_buffered(p);
        return;
    case H_COLON2:
        if (is_ws(c)) return;
        if (c == ':') p->h = H_VAL_WS;
        else to_buffered(p);
        return;
    case H_VAL_WS:
        if (is_ws(c)) return;
        if (c == '{') {
            start_args(p, 1);
        } else if (c == '"' && p->f != TOOL_FORMAT_LLAMA3_JSON) {
            p->mark = p->hold.n - 1;
            p->esc = 0;
            p->h = H_STRVAL;
        } else {
            to_buffered(p);
        }
        return;
    case H_STRVAL: {
        if (str_byte(p, c)) return;
        cJSON *s = held_string(p, p->mark);
        if (!s) {
            to_buffered(p);
            return;
        }
        emit_begin(p, p->name.p, p->name.n);
        if (s->valuestring[0]) emit_args(p, s->valuestring, strlen(s->valuestring));
        else emit_args(p, "{}", 2);
        cJSON_Delete(s);
        start_rest(p);
        return;
    }
    }
}

/* After the arguments: more keys (dropped) up to the call object's '}', leniently. */
static void rest_byte(struct tool_parser *p, unsigned char c) {
    if (hold_put(p, c)) return;
    if (p->hold.n > p->max_hold) {
        give_up(p);
        return;
    }
    if (p->flag) {
        if (is_ws(c)) return;
        p->flag = 0;
        if (c == '}') {
            post_object(p);
            return;
        }
        if (c != ',') {
            /* The object's '}' is missing (a common slip): what follows is read as if it had
             * come, by the state after a call, which makes content of what does not fit. */
            replay(p, p->hold.p, p->hold.n);
            post_object(p);
            return;
        }
    }
    if (jscan_byte(&p->js, c)) post_object(p);
}

/* ---- content, and the start of a candidate ---- */

static void start_candidate(struct tool_parser *p, const char *trig) {
    size_t l = strlen(trig);
    hold_drop_front(p, p->hold.n - l); /* whitespace after a call goes; the trigger stays */
    p->ws_n = 0;
    p->after = 0;
    p->cand_k = l;
    p->m = 0;
    if (p->f == TOOL_FORMAT_HERMES) {
        p->st = S_J_OPEN;
    } else if (p->f == TOOL_FORMAT_MISTRAL) {
        p->st = S_M_OPEN;
    } else if (trig[1] == 'f') { /* "<function=" without <tool_call> */
        p->mark = p->hold.n;
        p->st = S_Q_FNAME;
    } else {
        p->st = S_Q_OPEN;
    }
}

static void scan_byte(struct tool_parser *p, unsigned char c) {
    if (p->after && p->hold.n == p->ws_n && is_ws(c)) {
        if (hold_put(p, c)) return;
        p->ws_n++;
        if (p->hold.n > p->max_hold) {
            emit_content(p, p->hold.p, p->hold.n);
            to_scan(p, 0);
        }
        return;
    }
    if (hold_put(p, c)) return;
    const char *const *trig = triggers(p);
    const char *m = p->hold.p + p->ws_n;
    size_t mn = p->hold.n - p->ws_n;
    int w = 0, wc = 0;
    int r = pat_match(trig, m, mn, &w);
    if (r == 2) {
        start_candidate(p, trig[w]);
        return;
    }
    int rclose = p->after ? pat_match(CLOSE_TAG, m, mn, &wc) : 0;
    if (rclose == 2) {
        to_scan(p, 1);
        return;
    }
    if (r || rclose) return;
    /* Not a tag: keep the longest tail that may still start a trigger. */
    size_t i = 1;
    while (i < mn && !pat_match(trig, m + i, mn - i, &w)) i++;
    size_t k = p->ws_n + i;
    emit_content(p, p->hold.p, k);
    hold_drop_front(p, k);
    p->ws_n = 0;
    p->after = 0;
}

/* ---- llama3_json ---- */

static void l_start_byte(struct tool_parser *p, unsigned char c) {
    if (hold_put(p, c)) return;
    if (p->hold.n > p->max_hold) {
        give_up(p);
        return;
    }
    if (is_ws(c) && (p->m == 0 || p->flag)) return;
    if (!p->flag && (p->m > 0 || c == '<')) {
        if (c == (unsigned char)PY_TAG[p->m]) {
            if (++p->m == sizeof PY_TAG - 1) p->flag = 1;
            return;
        }
    } else if (c == '{') {
        start_object(p);
        return;
    }
    give_up(p);
}

static void l_sep_byte(struct tool_parser *p, unsigned char c) {
    if (hold_put(p, c)) return;
    if (p->hold.n > p->max_hold) {
        give_up(p);
        return;
    }
    if (is_ws(c)) return;
    if (c == ';' && !p->flag) {
        p->flag = 1;
        return;
    }
    if (c == '{') start_object(p);
    else give_up(p);
}

/* ---- mistral ---- */

static int mname_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

static void mistral_byte(struct tool_parser *p, unsigned char c) {
    if (cand_put(p, c)) return;
    switch (p->st) {
    case S_M_OPEN:
        if (is_ws(c)) return;
        if (c == '[') {
            p->st = S_M_ARR;
        } else if (mname_char(c)) {
            p->mark = p->hold.n - 1;
            p->st = S_M_NAME;
        } else {
            fail(p);
        }
        return;
    case S_M_ARR:
        if (is_ws(c)) return;
        if (c == '{') start_object(p);
        else if (c == ']' && p->cand_k == 0) to_scan(p, 1); /* "[..., ]": after a call */
        else fail(p); /* an empty array calls nothing: it stays content */
        return;
    case S_M_NEXT:
        if (is_ws(c)) return;
        if (c == ',') p->st = S_M_ARR;
        else if (c == ']') to_scan(p, 1);
        else fail(p);
        return;
    case S_M_NAME:
        if (mname_char(c) && p->hold.n - p->mark <= TP_NAME_MAX) return;
        if (c != '[') {
            fail(p);
            return;
        }
        p->mark2 = p->hold.n - 1;
        p->m = 1;
        p->st = S_M_ARGSTAG;
        return;
    case S_M_ARGSTAG:
        if (c != (unsigned char)"[ARGS]"[p->m]) {
            fail(p);
            return;
        }
        if (++p->m == 6) p->st = S_M_ARGSOPEN;
        return;
    case S_M_ARGSOPEN:
        if (is_ws(c)) return;
        if (c != '{' || !name_ok(p, p->hold.p + p->mark, p->mark2 - p->mark)) {
            fail(p);
            return;
        }
        p->name.n = 0;
        if (sbuf_put(&p->name, p->hold.p + p->mark, p->mark2 - p->mark)) {
            nomem(p);
            return;
        }
        start_args(p, 0);
        return;
    default: return;
    }
}

/* ---- qwen3_coder ---- */

static void q_end_call(struct tool_parser *p) {
    emit_args(p, "}", 1);
    to_scan(p, 1);
}

/* The key and the separator before a parameter's value. */
static void q_key(struct tool_parser *p) {
    if (p->nparams) emit_args(p, ", ", 2);
    emit_args(p, p->key.p, p->key.n);
    emit_args(p, ": ", 2);
}

static int same_ci(const char *s, const char *lower, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]) != lower[i]) return 0;
    return 1;
}

/* A held (typed) value: JSON as written when it parses as a type the schema allows (any
 * type without a schema), else a JSON string. */
static void q_typed(struct tool_parser *p, const char *s, size_t n) {
    size_t a = 0, b = n;
    while (a < b && is_ws((unsigned char)s[a])) a++;
    while (b > a && is_ws((unsigned char)s[b - 1])) b--;
    const char *t = s + a;
    size_t tn = b - a;
    unsigned ty = p->ptypes;
    if ((ty & T_BOOL) && (tn == 4 || tn == 5)) { /* True/False as Python writes them */
        if (tn == 4 && same_ci(t, "true", 4)) {
            emit_args(p, "true", 4);
            return;
        }
        if (tn == 5 && same_ci(t, "false", 5)) {
            emit_args(p, "false", 5);
            return;
        }
    }
    int ok = 0;
    if (tn) {
        const char *end = NULL;
        cJSON *v = cJSON_ParseWithLengthOpts(t, tn, &end, 0);
        if (v && end == t + tn) {
            if (ty == 0) ok = 1;
            else if (cJSON_IsNumber(v))
                ok = (ty & T_NUMBER) || ((ty & T_INTEGER) && fabs(v->valuedouble) < 9e15 && v->valuedouble == floor(v->valuedouble));
            else if (cJSON_IsBool(v)) ok = (ty & T_BOOL) != 0;
            else if (cJSON_IsNull(v)) ok = (ty & T_NULL) != 0;
            else if (cJSON_IsObject(v)) ok = (ty & T_OBJECT) != 0;
            else if (cJSON_IsArray(v)) ok = (ty & T_ARRAY) != 0;
        }
        cJSON_Delete(v);
    }
    if (ok) {
        emit_args(p, t, tn);
        return;
    }
    emit_args(p, "\"", 1);
    json_escape(p, NULL, s, n);
    emit_args(p, "\"", 1);
}

static void q_start_value(struct tool_parser *p) {
    const char *pn = p->hold.p;
    size_t n = p->hold.n - 1; /* without the '>' */
    p->key.n = 0;
    if (sbuf_put(&p->key, "\"", 1)) nomem(p);
    json_escape(p, &p->key, pn, n);
    if (sbuf_put(&p->key, "\"", 1)) nomem(p);
    p->ptypes = 0;
    if (p->props) {
        char nm[TP_NAME_MAX + 1];
        memcpy(nm, pn, n);
        nm[n] = '\0';
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(p->props, nm);
        if (s) p->ptypes = schema_types(s, 0);
    }
    p->vstream = p->ptypes == T_STRING;
    if (p->vstream) {
        q_key(p);
        emit_args(p, "\"", 1);
    }
    p->hold.n = 0;
    p->flag = 1;
    p->st = S_Q_VAL;
}

static void q_val_byte(struct tool_parser *p, unsigned char c) {
    if (p->flag) { /* one newline after <parameter=...> is layout, not value */
        p->flag = 0;
        if (c == '\n') return;
    }
    if (hold_put(p, c)) return;
    for (int i = 0; VAL_TERMS[i]; i++) {
        size_t l = strlen(VAL_TERMS[i]);
        if (p->hold.n < l || memcmp(p->hold.p + p->hold.n - l, VAL_TERMS[i], l) != 0) continue;
        size_t n = p->hold.n - l;
        if (n && p->hold.p[n - 1] == '\n') n--; /* and one before </parameter> */
        if (p->vstream) {
            json_escape(p, NULL, p->hold.p, n);
            emit_args(p, "\"", 1);
        } else {
            q_key(p);
            q_typed(p, p->hold.p, n);
        }
        p->nparams++;
        p->hold.n = 0;
        if (i == 0) p->st = S_Q_BODY;
        else if (i == 1) p->st = S_Q_PNAME;
        else q_end_call(p);
        return;
    }
    if (!p->vstream) {
        if (p->hold.n <= p->max_hold) return;
        /* Too long to wait for its type: a string, streamed from here. */
        p->vstream = 1;
        q_key(p);
        emit_args(p, "\"", 1);
    }
    /* Keep what may still be a terminator, and the newline that would then be dropped. */
    size_t n = p->hold.n, i = n > 12 ? n - 12 : 0;
    int w;
    while (i < n && !pat_match(VAL_TERMS, p->hold.p + i, n - i, &w)) i++;
    if (i > 0 && p->hold.p[i - 1] == '\n') i--;
    json_escape(p, NULL, p->hold.p, i);
    hold_drop_front(p, i);
}

static void qwen_byte(struct tool_parser *p, unsigned char c) {
    static const char FN[] = "<function=";
    switch (p->st) {
    case S_Q_OPEN:
        if (cand_put(p, c)) return;
        if (p->m == 0 && is_ws(c)) return;
        if (c != (unsigned char)FN[p->m]) {
            fail(p);
            return;
        }
        if (++p->m == sizeof FN - 1) {
            p->mark = p->hold.n;
            p->st = S_Q_FNAME;
        }
        return;
    case S_Q_FNAME: {
        if (cand_put(p, c)) return;
        if (c != '>') {
            if (c == '<' || c == '\n' || p->hold.n - p->mark > TP_NAME_MAX) fail(p);
            return;
        }
        const char *nm = p->hold.p + p->mark;
        size_t n = p->hold.n - 1 - p->mark;
        if (!name_ok(p, nm, n)) {
            fail(p);
            return;
        }
        p->name.n = 0;
        if (sbuf_put(&p->name, nm, n)) {
            nomem(p);
            return;
        }
        p->props = NULL;
        if (p->tools) {
            const cJSON *params = cJSON_GetObjectItemCaseSensitive(tool_find(p, nm, n), "parameters");
            const cJSON *props = cJSON_GetObjectItemCaseSensitive(params, "properties");
            if (cJSON_IsObject(props)) p->props = props;
        }
        emit_begin(p, p->name.p, p->name.n);
        emit_args(p, "{", 1);
        p->nparams = 0;
        p->hold.n = 0;
        p->cand_k = 0;
        p->st = S_Q_BODY;
        return;
    }
    case S_Q_BODY: {
        /* Between parameters only the tags count; stray text is dropped. */
        if (hold_put(p, c)) return;
        int w = 0, r = pat_match(BODY_PATS, p->hold.p, p->hold.n, &w);
        if (r == 2) {
            p->hold.n = 0;
            if (w == 0) p->st = S_Q_PNAME;
            else q_end_call(p);
        } else if (r == 0) {
            size_t i = 1;
            while (i < p->hold.n && !pat_match(BODY_PATS, p->hold.p + i, p->hold.n - i, &w)) i++;
            hold_drop_front(p, i);
        }
        return;
    }
    case S_Q_PNAME:
        if (hold_put(p, c)) return;
        if (c == '>') {
            q_start_value(p);
        } else if (c == '<' || c == '\n' || p->hold.n > TP_NAME_MAX) {
            /* Not a parameter after all: its bytes go back to the body, which finds tags. */
            p->st = S_Q_BODY;
            replay(p, p->hold.p, p->hold.n);
            p->hold.n = 0;
        }
        return;
    case S_Q_VAL: q_val_byte(p, c); return;
    default: return;
    }
}

/* ---- the machine ---- */

static void step(struct tool_parser *p, unsigned char c) {
    switch (p->st) {
    case S_SCAN: scan_byte(p, c); return;
    case S_PASS: emit_content(p, (const char *)&c, 1); return;
    case S_L_START: l_start_byte(p, c); return;
    case S_L_SEP: l_sep_byte(p, c); return;
    case S_J_OPEN:
        if (cand_put(p, c)) return;
        if (is_ws(c)) return;
        if (c == '{') start_object(p);
        else fail(p);
        return;
    case S_J_HDR: hdr_byte(p, c); return;
    case S_J_BUF:
        if (cand_put(p, c)) return;
        if (jscan_byte(&p->js, c)) buf_finish(p);
        return;
    case S_J_ARGS: {
        char ch = (char)c;
        emit_args(p, &ch, 1);
        if (jscan_byte(&p->js, c)) args_end(p);
        return;
    }
    case S_J_REST: rest_byte(p, c); return;
    case S_M_OPEN:
    case S_M_ARR:
    case S_M_NEXT:
    case S_M_NAME:
    case S_M_ARGSTAG:
    case S_M_ARGSOPEN: mistral_byte(p, c); return;
    default: qwen_byte(p, c); return;
    }
}

/* final: what is still held. Text that might have begun a call is content; the tail of a
 * finished call (whitespace, a closing tag, a separator) and a call cut off inside go. */
static void finish(struct tool_parser *p) {
    int w;
    switch (p->st) {
    case S_SCAN:
        if (p->after) {
            const char *m = p->hold.p + p->ws_n;
            size_t mn = p->hold.n - p->ws_n;
            if (mn == 0 || pat_match(CLOSE_TAG, m, mn, &w)) break;
        }
        emit_content(p, p->hold.p, p->hold.n);
        break;
    case S_L_START:
    case S_J_OPEN:
    case S_J_HDR:
    case S_J_BUF:
    case S_M_OPEN:
    case S_M_ARR:
    case S_M_NAME:
    case S_M_ARGSTAG:
    case S_M_ARGSOPEN:
    case S_Q_OPEN:
    case S_Q_FNAME: emit_content(p, p->hold.p, p->hold.n); break;
    default: break;
    }
    p->hold.n = 0;
    p->ws_n = 0;
    p->after = 0;
    p->st = S_PASS;
}

int tool_parser_feed(struct tool_parser *p, const char *s, size_t n, int final, tool_event_fn fn, void *ud) {
    if (p->rc) return p->rc;
    p->fn = fn;
    p->ud = ud;
    size_t i = 0;
    while (!p->rc) {
        if (p->rq_pos < p->rq.n) {
            unsigned char c = (unsigned char)p->rq.p[p->rq_pos++];
            if (p->rq_pos == p->rq.n) p->rq.n = p->rq_pos = 0;
            step(p, c);
            continue;
        }
        if (i >= n) break;
        /* Runs the per-byte machine would pass through unchanged. */
        if (p->st == S_PASS) {
            emit_content(p, s + i, n - i);
            i = n;
            continue;
        }
        if (p->st == S_SCAN && !p->after && p->hold.n == 0) {
            size_t j = i;
            while (j < n && !p->first[(unsigned char)s[j]]) j++;
            if (j > i) {
                emit_content(p, s + i, j - i);
                i = j;
                continue;
            }
        }
        if (p->st == S_J_ARGS) {
            size_t j = i;
            int end = 0;
            while (j < n && !end) end = jscan_byte(&p->js, (unsigned char)s[j++]);
            emit_args(p, s + i, j - i);
            i = j;
            if (end) args_end(p);
            continue;
        }
        step(p, (unsigned char)s[i++]);
    }
    if (!p->rc && final) finish(p);
    out_flush(p);
    return p->rc;
}

int tool_parser_num_calls(const struct tool_parser *p) { return p->ncalls; }

struct tool_parser *tool_parser_create(enum tool_format f, const cJSON *tools, size_t max_hold) {
    struct tool_parser *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->f = f;
    p->max_hold = max_hold < TP_MIN_HOLD ? TP_MIN_HOLD : max_hold;
    if (cJSON_IsArray(tools) && f != TOOL_FORMAT_NONE) {
        p->tools = cJSON_Duplicate(tools, 1);
        if (!p->tools) {
            free(p);
            return NULL;
        }
    }
    /* Every buffer starts allocated, so that no offset is ever taken from a NULL p. */
    if (sbuf_put(&p->hold, "", 0) || sbuf_put(&p->rq, "", 0) || sbuf_put(&p->tmp, "", 0) || sbuf_put(&p->out, "", 0) ||
        sbuf_put(&p->name, "", 0) || sbuf_put(&p->key, "", 0)) {
        tool_parser_free(p);
        return NULL;
    }
    const char *const *trig = triggers(p);
    for (int i = 0; trig[i]; i++) p->first[(unsigned char)trig[i][0]] = 1;
    switch (f) {
    case TOOL_FORMAT_HERMES:
    case TOOL_FORMAT_MISTRAL:
    case TOOL_FORMAT_QWEN3_CODER: p->st = S_SCAN; break;
    case TOOL_FORMAT_LLAMA3_JSON: p->st = S_L_START; break;
    default: p->st = S_PASS;
    }
    return p;
}

void tool_parser_free(struct tool_parser *p) {
    if (!p) return;
    cJSON_Delete(p->tools);
    sbuf_free(&p->hold);
    sbuf_free(&p->name);
    sbuf_free(&p->key);
    sbuf_free(&p->rq);
    sbuf_free(&p->tmp);
    sbuf_free(&p->out);
    free(p);
}

/* ---- names and detection ---- */

static const char *const FORMAT_NAMES[] = {"none", "hermes", "llama3_json", "mistral", "qwen3_coder"};

int tool_format_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < (int)(sizeof FORMAT_NAMES / sizeof FORMAT_NAMES[0]); i++)
        if (strcmp(name, FORMAT_NAMES[i]) == 0) return i;
    return -1;
}

const char *tool_format_name(enum tool_format f) {
    if ((int)f < 0 || (int)f >= (int)(sizeof FORMAT_NAMES / sizeof FORMAT_NAMES[0])) return "none";
    return FORMAT_NAMES[f];
}

enum tool_format tool_format_detect(const char *src) {
    if (!src) return TOOL_FORMAT_NONE;
    if (strstr(src, "<function=") && strstr(src, "<parameter=")) return TOOL_FORMAT_QWEN3_CODER;
    if (strstr(src, "<tool_call>")) return TOOL_FORMAT_HERMES;
    if (strstr(src, "[TOOL_CALLS]")) return TOOL_FORMAT_MISTRAL;
    if (strstr(src, "<|python_tag|>") ||
        (strstr(src, "<|start_header_id|>") && (strstr(src, "tools") || strstr(src, "parameters"))))
        return TOOL_FORMAT_LLAMA3_JSON;
    return TOOL_FORMAT_NONE;
}
