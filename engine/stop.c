/* stop: stop strings over streamed text, as a filter that gives the same result as searching
 * the whole text at once (earliest match; at one position, the lowest index; truncate there).
 *
 * Each stop string runs a KMP automaton over the bytes, so a byte costs O(1) amortized per
 * stop string however the text is cut into deltas. The automaton's state for a stop string is
 * the longest suffix of the text that is a proper prefix of it, which is also the earliest
 * place where that string could still start a match. Text before the earliest such place over
 * all stop strings can never become part of a match, so it is released; the rest (shorter
 * than the longest stop string) is held.
 *
 * A completed match is not final at once: a longer stop string that started earlier (or at
 * the same place with a lower index) may still complete, e.g. "bc" inside "abc" while "abcd"
 * is pending. The best match so far is kept until no such candidate is left, or until the
 * stream ends (stop_flush), where it wins. */
#include "stop.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct pattern {
    char *s;        /* NUL-terminated copy; empty means ignored */
    size_t len;
    size_t *fail;   /* [len + 1] KMP failure: fail[i] = longest proper border of s[0:i] */
    size_t state;   /* longest suffix of the text that is a proper prefix of s */
};

struct stop {
    struct pattern *p; /* [n] in the caller's order: indices are the caller's */
    int n;
    int include;       /* include_stop_str_in_output */
    size_t max_len;    /* longest stop string */
    char *held;        /* [max_len] text not yet released; starts at stream offset base */
    size_t held_n;
    size_t base;       /* stream offset of held[0] */
    size_t pos;        /* stream bytes consumed */
    int pend;          /* best completed match so far (-1: none), waiting to be final */
    size_t pend_at;    /* its stream offset */
    int matched;       /* final match, -1 while none */
};

struct stop *stop_create(const char *const *stops, int n, int include_stop_str_in_output) {
    struct stop *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n = n > 0 ? n : 0;
    s->include = include_stop_str_in_output != 0;
    s->pend = s->matched = -1;
    s->p = calloc((size_t)s->n + 1, sizeof *s->p);
    if (!s->p) goto fail;
    for (int i = 0; i < s->n; i++) {
        struct pattern *p = &s->p[i];
        const char *src = stops[i] ? stops[i] : "";
        p->len = strlen(src);
        p->s = malloc(p->len + 1);
        p->fail = malloc((p->len + 1) * sizeof *p->fail);
        if (!p->s || !p->fail) goto fail;
        memcpy(p->s, src, p->len + 1);
        p->fail[0] = 0;
        if (p->len > 0) p->fail[1] = 0;
        for (size_t k = 1, b = 0; k < p->len; k++) {
            while (b > 0 && p->s[k] != p->s[b]) b = p->fail[b];
            if (p->s[k] == p->s[b]) b++;
            p->fail[k + 1] = b;
        }
        if (p->len > s->max_len) s->max_len = p->len;
    }
    s->held = malloc(s->max_len + 1);
    if (!s->held) goto fail;
    return s;
fail:
    stop_free(s);
    return NULL;
}

void stop_free(struct stop *s) {
    if (!s) return;
    for (int i = 0; s->p && i < s->n; i++) {
        free(s->p[i].s);
        free(s->p[i].fail);
    }
    free(s->p);
    free(s->held);
    free(s);
}

size_t stop_max_output(const struct stop *s, size_t n) {
    return n + (s->max_len > 0 ? s->max_len - 1 : 0);
}

/* Copies v[from:to] to out, where v = held || text (the held text, then the delta). */
static void copy_v(const struct stop *s, const char *text, size_t from, size_t to, char *out) {
    size_t h = s->held_n;
    if (from < h) {
        size_t m = (to < h ? to : h) - from;
        memcpy(out, s->held + from, m);
        out += m;
        from = h;
    }
    if (to > from) memcpy(out, text + (from - h), to - from);
}

/* Whether a candidate that could still complete would beat the pending match: one that
 * starts earlier, or at the same place with a lower index. */
static int pend_open(const struct stop *s) {
    for (int k = 0; k < s->n; k++) {
        const struct pattern *p = &s->p[k];
        if (p->len == 0) continue;
        size_t start = s->pos - p->state;
        if (start < s->pend_at || (start == s->pend_at && k < s->pend)) return 1;
    }
    return 0;
}

/* Makes the pending match final: out gets v[0:end], where the match ends the text. */
static void finish(struct stop *s, const char *text, char *out, size_t *n_out) {
    size_t end = s->pend_at - s->base + (s->include ? s->p[s->pend].len : 0);
    copy_v(s, text, 0, end, out);
    *n_out = end;
    s->matched = s->pend;
    s->held_n = 0;
}

int stop_push(struct stop *s, const char *text, size_t n, char *out, size_t cap, size_t *n_out) {
    *n_out = 0;
    if (s->matched >= 0) return s->matched;
    assert(cap >= stop_max_output(s, n));
    (void)cap;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        s->pos++;
        for (int k = 0; k < s->n; k++) {
            struct pattern *p = &s->p[k];
            if (p->len == 0) continue;
            size_t q = p->state;
            while (q > 0 && p->s[q] != c) q = p->fail[q];
            if (p->s[q] == c) q++;
            if (q == p->len) {
                size_t at = s->pos - p->len;
                if (s->pend < 0 || at < s->pend_at || (at == s->pend_at && k < s->pend)) {
                    s->pend = k;
                    s->pend_at = at;
                }
                q = p->fail[q];
            }
            p->state = q;
        }
        if (s->pend >= 0 && !pend_open(s)) {
            finish(s, text, out, n_out);
            return s->matched;
        }
    }
    /* Release everything before the earliest place a match could still start. While a match
     * is pending, some candidate starts at or before it, so this never passes it. */
    size_t keep = 0;
    for (int k = 0; k < s->n; k++)
        if (s->p[k].state > keep) keep = s->p[k].state;
    size_t total = s->held_n + n, rel = total - keep;
    copy_v(s, text, 0, rel, out);
    *n_out = rel;
    if (rel < s->held_n) {
        memmove(s->held, s->held + rel, s->held_n - rel);
        memcpy(s->held + s->held_n - rel, text, n);
    } else {
        memcpy(s->held, text + (rel - s->held_n), keep);
    }
    s->held_n = keep;
    s->base += rel;
    return -1;
}

void stop_flush(struct stop *s, char *out, size_t cap, size_t *n_out) {
    *n_out = 0;
    if (s->matched >= 0) return;
    assert(cap >= s->held_n);
    (void)cap;
    /* No candidate can complete any more, so a pending match is the earliest one. */
    if (s->pend >= 0) {
        finish(s, "", out, n_out);
        return;
    }
    memcpy(out, s->held, s->held_n);
    *n_out = s->held_n;
    s->base += s->held_n;
    s->held_n = 0;
    for (int k = 0; k < s->n; k++) s->p[k].state = 0;
}

int stop_matched(const struct stop *s) { return s->matched; }

const char *stop_string(const struct stop *s, int i) {
    return i >= 0 && i < s->n ? s->p[i].s : NULL;
}
