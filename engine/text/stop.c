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
 * stream ends (stop_flush), where it wins.
 *
 * The strings and failure tables never change once built, so a request builds them once
 * (stop_set) and each of its samples keeps only its automaton states and held text (stop):
 * n samples cost one copy of the strings, not n. Failure entries are uint32_t, since a stop
 * string is far shorter than 4 GiB and a table costs 4 bytes per string byte. */
#include "text/stop.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct pattern {
    const char *s;          /* NUL-terminated copy, inside the set's block; "" is ignored */
    uint32_t len;
    const uint32_t *fail;   /* [len + 1] KMP failure: fail[i] = longest proper border of s[0:i] */
};

/* One block: this header, the patterns, the failure tables, then the strings. */
struct stop_set {
    int n;
    int include;            /* include_stop_str_in_output */
    size_t max_len;         /* longest stop string */
    size_t bytes;           /* the block's size */
    struct pattern p[];     /* [n] in the caller's order: indices are the caller's */
};

/* One block: this header, the states, then the held text. */
struct stop {
    const struct stop_set *set;
    struct stop_set *own;   /* stop_create's private set, else NULL */
    uint32_t *state;        /* [n] longest suffix of the text that is a proper prefix of p[k].s */
    char *held;             /* [max_len] text not yet released; starts at stream offset base */
    size_t held_n;
    size_t base;            /* stream offset of held[0] */
    size_t pos;             /* stream bytes consumed */
    int pend;               /* best completed match so far (-1: none), waiting to be final */
    size_t pend_at;         /* its stream offset */
    int matched;            /* final match, -1 while none */
};

struct stop_set *stop_set_create(const char *const *stops, int n, int include_stop_str_in_output) {
    if (n < 0) n = 0;
    /* The lengths first, so that one allocation holds everything. The strings are in memory,
     * so their sum cannot overflow five times over; each must fit a uint32_t state. */
    size_t hdr = sizeof(struct stop_set) + (size_t)n * sizeof(struct pattern), fails = 0, chars = 0;
    hdr = (hdr + 3) & ~(size_t)3;
    for (int i = 0; i < n; i++) {
        const size_t len = stops && stops[i] ? strlen(stops[i]) : 0;
        if (len >= UINT32_MAX) return NULL;
        fails += (len + 1) * sizeof(uint32_t);
        chars += len + 1;
    }
    struct stop_set *set = malloc(hdr + fails + chars);
    if (!set) return NULL;
    set->n = n;
    set->include = include_stop_str_in_output != 0;
    set->max_len = 0;
    set->bytes = hdr + fails + chars;
    uint32_t *f = (uint32_t *)((char *)set + hdr);
    char *c = (char *)set + hdr + fails;
    for (int i = 0; i < n; i++) {
        struct pattern *p = &set->p[i];
        const char *src = stops && stops[i] ? stops[i] : "";
        p->len = (uint32_t)strlen(src);
        memcpy(c, src, p->len + 1);
        p->s = c;
        c += p->len + 1;
        f[0] = 0;
        if (p->len > 0) f[1] = 0;
        for (uint32_t k = 1, b = 0; k < p->len; k++) {
            while (b > 0 && p->s[k] != p->s[b]) b = f[b];
            if (p->s[k] == p->s[b]) b++;
            f[k + 1] = b;
        }
        p->fail = f;
        f += p->len + 1;
        if (p->len > set->max_len) set->max_len = p->len;
    }
    return set;
}

void stop_set_free(struct stop_set *set) { free(set); }

size_t stop_set_bytes(const struct stop_set *set) { return set ? set->bytes : 0; }
size_t stop_set_max_len(const struct stop_set *set) { return set ? set->max_len : 0; }
int stop_set_count(const struct stop_set *set) { return set ? set->n : 0; }

const char *stop_set_string(const struct stop_set *set, int i) {
    return set && i >= 0 && i < set->n ? set->p[i].s : NULL;
}

struct stop *stop_open(const struct stop_set *set) {
    const size_t states = (size_t)set->n * sizeof(uint32_t);
    struct stop *s = malloc(sizeof *s + states + set->max_len + 1);
    if (!s) return NULL;
    memset(s, 0, sizeof *s + states);
    s->set = set;
    s->state = (uint32_t *)(s + 1);
    s->held = (char *)s->state + states;
    s->pend = s->matched = -1;
    return s;
}

struct stop *stop_create(const char *const *stops, int n, int include_stop_str_in_output) {
    struct stop_set *set = stop_set_create(stops, n, include_stop_str_in_output);
    if (!set) return NULL;
    struct stop *s = stop_open(set);
    if (!s) {
        stop_set_free(set);
        return NULL;
    }
    s->own = set;
    return s;
}

void stop_free(struct stop *s) {
    if (!s) return;
    stop_set_free(s->own);
    free(s);
}

size_t stop_max_output(const struct stop *s, size_t n) {
    return n + (s->set->max_len > 0 ? s->set->max_len - 1 : 0);
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
    const struct stop_set *set = s->set;
    for (int k = 0; k < set->n; k++) {
        if (set->p[k].len == 0) continue;
        size_t start = s->pos - s->state[k];
        if (start < s->pend_at || (start == s->pend_at && k < s->pend)) return 1;
    }
    return 0;
}

/* Makes the pending match final: out gets v[0:end], where the match ends the text. */
static void finish(struct stop *s, const char *text, char *out, size_t *n_out) {
    size_t end = s->pend_at - s->base + (s->set->include ? s->set->p[s->pend].len : 0);
    copy_v(s, text, 0, end, out);
    *n_out = end;
    s->matched = s->pend;
    s->held_n = 0;
}

int stop_push(struct stop *s, const char *text, size_t n, char *out, size_t cap, size_t *n_out) {
    const struct stop_set *set = s->set;
    *n_out = 0;
    if (s->matched >= 0) return s->matched;
    assert(cap >= stop_max_output(s, n));
    (void)cap;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        s->pos++;
        for (int k = 0; k < set->n; k++) {
            const struct pattern *p = &set->p[k];
            if (p->len == 0) continue;
            uint32_t q = s->state[k];
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
            s->state[k] = q;
        }
        if (s->pend >= 0 && !pend_open(s)) {
            finish(s, text, out, n_out);
            return s->matched;
        }
    }
    /* Release everything before the earliest place a match could still start. While a match
     * is pending, some candidate starts at or before it, so this never passes it. */
    size_t keep = 0;
    for (int k = 0; k < set->n; k++)
        if (s->state[k] > keep) keep = s->state[k];
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
    memset(s->state, 0, (size_t)s->set->n * sizeof *s->state);
}

int stop_matched(const struct stop *s) { return s->matched; }

const char *stop_string(const struct stop *s, int i) { return stop_set_string(s->set, i); }
