/* Reasoning/content split at the think block (reasoning.h).
 *
 * A byte-at-a-time machine, as tool_parser.c is, so that any chunking gives the same joined
 * texts: only a possible partial tag is held (with the whitespace before a leading "<think>",
 * which goes with the tag), everything else leaves at once. Events are gathered per kind and
 * leave when the kind changes and at the end of each feed. */
#include "server/reasoning.h"

#include <stdlib.h>
#include <string.h>

#include "base/sbuf.h"
#include "base/util.h"

#define RS_WS_MAX 256    /* leading whitespace held while a "<think>" may still follow */
#define RS_OUT_FLUSH 4096

enum rs_state {
    R_START,   /* qwen3, not opened by the prompt: whitespace, then "<think>" or content */
    R_REASON,  /* in the block, up to "</think>" */
    R_DROPWS,  /* after "</think>": its whitespace */
    R_CONTENT, /* the answer: all content */
};

static const char OPEN_TAG[] = "<think>";
static const char CLOSE_TAG[] = "</think>";

struct reasoning_parser {
    enum reasoning_format f;
    int st;
    int lead;          /* R_REASON at its start: a "<think>" there is dropped */
    struct sbuf hold;  /* [ws_n whitespace] + a partial tag */
    size_t ws_n;
    struct sbuf out;
    int out_kind;
    reasoning_event_fn fn;
    void *ud;
    int rc;
};

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int is_prefix(const char *tag, const char *s, size_t n) { return n <= strlen(tag) && memcmp(tag, s, n) == 0; }

static void out_flush(struct reasoning_parser *p) {
    if (p->rc || p->out.n == 0) return;
    struct reasoning_event ev = {.kind = (enum reasoning_event_kind)p->out_kind, .text = p->out.p, .len = p->out.n};
    p->out.n = 0;
    int r = p->fn(p->ud, &ev);
    if (r) p->rc = r;
}

static void emit(struct reasoning_parser *p, enum reasoning_event_kind kind, const char *s, size_t n) {
    if (p->rc || n == 0) return;
    if (p->out.n && p->out_kind != (int)kind) out_flush(p);
    if (p->rc) return;
    if (n >= RS_OUT_FLUSH) {
        out_flush(p);
        if (p->rc) return;
        struct reasoning_event ev = {.kind = kind, .text = s, .len = n};
        int r = p->fn(p->ud, &ev);
        if (r) p->rc = r;
        return;
    }
    if (sbuf_put(&p->out, s, n)) {
        p->rc = folio_err(FOLIO_ENOMEM, "reasoning parser: out of memory");
        return;
    }
    p->out_kind = (int)kind;
    if (p->out.n >= RS_OUT_FLUSH) out_flush(p);
}

static void drop_front(struct reasoning_parser *p, size_t k) {
    memmove(p->hold.p, p->hold.p + k, p->hold.n - k);
    p->hold.n -= k;
}

static void start_byte(struct reasoning_parser *p, unsigned char c) {
    char ch = (char)c;
    if (sbuf_put(&p->hold, &ch, 1)) {
        p->rc = folio_err(FOLIO_ENOMEM, "reasoning parser: out of memory");
        return;
    }
    if (is_ws(c) && p->hold.n == p->ws_n + 1 && p->ws_n < RS_WS_MAX) {
        p->ws_n++;
        return;
    }
    const char *m = p->hold.p + p->ws_n;
    size_t mn = p->hold.n - p->ws_n;
    if (is_prefix(OPEN_TAG, m, mn)) {
        if (mn == sizeof OPEN_TAG - 1) {
            p->hold.n = p->ws_n = 0;
            p->st = R_REASON;
        }
        return;
    }
    emit(p, REASONING_EV_CONTENT, p->hold.p, p->hold.n);
    p->hold.n = p->ws_n = 0;
    p->st = R_CONTENT;
}

static void reason_byte(struct reasoning_parser *p, unsigned char c) {
    char ch = (char)c;
    if (sbuf_put(&p->hold, &ch, 1)) {
        p->rc = folio_err(FOLIO_ENOMEM, "reasoning parser: out of memory");
        return;
    }
    if (p->lead && is_ws(c) && p->hold.n == p->ws_n + 1 && p->ws_n < RS_WS_MAX) {
        p->ws_n++;
        return;
    }
    const char *m = p->hold.p + p->ws_n;
    size_t mn = p->hold.n - p->ws_n;
    int open = p->lead && is_prefix(OPEN_TAG, m, mn);
    int close = is_prefix(CLOSE_TAG, m, mn);
    if (open && mn == sizeof OPEN_TAG - 1) { /* the block's own "<think>": not reasoning */
        p->hold.n = p->ws_n = 0;
        p->lead = 0;
        return;
    }
    if (close && mn == sizeof CLOSE_TAG - 1) {
        emit(p, REASONING_EV_REASONING, p->hold.p, p->ws_n);
        p->hold.n = p->ws_n = 0;
        p->lead = 0;
        p->st = R_DROPWS;
        return;
    }
    if (open || close) return;
    /* Keep the longest tail that may still begin "</think>". */
    size_t i = 1;
    while (i < mn && !is_prefix(CLOSE_TAG, m + i, mn - i)) i++;
    emit(p, REASONING_EV_REASONING, p->hold.p, p->ws_n + i);
    drop_front(p, p->ws_n + i);
    p->ws_n = 0;
    p->lead = 0;
}

int reasoning_parser_feed(struct reasoning_parser *p, const char *s, size_t n, int final, reasoning_event_fn fn,
                          void *ud) {
    if (p->rc) return p->rc;
    p->fn = fn;
    p->ud = ud;
    size_t i = 0;
    while (i < n && !p->rc) {
        switch (p->st) {
        case R_CONTENT:
            emit(p, REASONING_EV_CONTENT, s + i, n - i);
            i = n;
            break;
        case R_DROPWS:
            if (is_ws((unsigned char)s[i])) i++;
            else p->st = R_CONTENT;
            break;
        case R_START: start_byte(p, (unsigned char)s[i++]); break;
        default:
            if (!p->lead && p->hold.n == 0) { /* a run without '<' is reasoning as it is */
                const char *lt = memchr(s + i, '<', n - i);
                size_t j = lt ? (size_t)(lt - s) : n;
                if (j > i) {
                    emit(p, REASONING_EV_REASONING, s + i, j - i);
                    i = j;
                    break;
                }
            }
            reason_byte(p, (unsigned char)s[i++]);
        }
    }
    if (!p->rc && final) {
        /* A tag cut off stays the text it was in. */
        if (p->st == R_START) emit(p, REASONING_EV_CONTENT, p->hold.p, p->hold.n);
        else if (p->st == R_REASON) emit(p, REASONING_EV_REASONING, p->hold.p, p->hold.n);
        p->hold.n = p->ws_n = 0;
        p->lead = 0;
        if (p->st != R_CONTENT) p->st = R_CONTENT;
    }
    out_flush(p);
    return p->rc;
}

int reasoning_parser_in_reasoning(const struct reasoning_parser *p) { return p->st == R_REASON; }

struct reasoning_parser *reasoning_parser_create(enum reasoning_format f, int inside) {
    struct reasoning_parser *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->f = f;
    if (sbuf_put(&p->hold, "", 0) || sbuf_put(&p->out, "", 0)) { /* no offsets from a NULL p */
        reasoning_parser_free(p);
        return NULL;
    }
    if (f == REASONING_NONE) {
        p->st = R_CONTENT;
    } else if (inside || f == REASONING_DEEPSEEK_R1) {
        p->st = R_REASON;
        p->lead = 1;
    } else {
        p->st = R_START;
    }
    return p;
}

void reasoning_parser_free(struct reasoning_parser *p) {
    if (!p) return;
    sbuf_free(&p->hold);
    sbuf_free(&p->out);
    free(p);
}

/* Whether the text ends with tag, trailing whitespace aside. */
static int ends_with_tag(const char *s, size_t len, const char *tag) {
    const size_t l = strlen(tag);
    while (len > 0 && is_ws((unsigned char)s[len - 1])) len--;
    return len >= l && memcmp(s + len - l, tag, l) == 0;
}

int reasoning_prompt_closes(const char *prompt, size_t len) { return ends_with_tag(prompt, len, CLOSE_TAG); }
int reasoning_prompt_opens(const char *prompt, size_t len) { return ends_with_tag(prompt, len, OPEN_TAG); }

static const char *const FORMAT_NAMES[] = {"none", "qwen3", "deepseek_r1"};

int reasoning_format_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < (int)(sizeof FORMAT_NAMES / sizeof FORMAT_NAMES[0]); i++)
        if (strcmp(name, FORMAT_NAMES[i]) == 0) return i;
    return -1;
}

const char *reasoning_format_name(enum reasoning_format f) {
    if ((int)f < 0 || (int)f >= (int)(sizeof FORMAT_NAMES / sizeof FORMAT_NAMES[0])) return "none";
    return FORMAT_NAMES[f];
}

/* Whether s has "<think>" with no "</think>" in the few bytes after it (a block the template
 * opens and leaves open, not Qwen3's empty '<think>\n\n</think>'). */
static int opens_think(const char *s) {
    for (const char *t = strstr(s, OPEN_TAG); t; t = strstr(t + 1, OPEN_TAG)) {
        const char *c = strstr(t, CLOSE_TAG);
        if (!c || c - t > 24) return 1;
    }
    return 0;
}

enum reasoning_format reasoning_format_detect(const char *src) {
    if (!src) return REASONING_NONE;
    const char *gen = NULL;
    for (const char *t = strstr(src, "add_generation_prompt"); t; t = strstr(t + 1, "add_generation_prompt")) gen = t;
    if (gen && opens_think(gen)) return REASONING_DEEPSEEK_R1;
    if (strstr(src, OPEN_TAG) && (strstr(src, "enable_thinking") || strstr(src, "reasoning_content")))
        return REASONING_QWEN3;
    return REASONING_NONE;
}
