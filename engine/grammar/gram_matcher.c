/* gram_matcher: runs a compiled grammar on a token stream.
 *
 * The stack machine. A parse position is a set of stacks; a stack is a chain of nodes
 * (automaton state, parent), the top being where the innermost rule is and each node below
 * the state its rule returns to. Nodes are hash-consed in a fixed pool, so stacks that share
 * a tail share its nodes, equal stacks are the same id, and a position is a set of ids.
 * Positions keep only stacks whose top can take a byte; the closure that finds them follows
 * rule calls (push the callee's start over the return state) and rule ends (pop). Grammars
 * have no left recursion, so pushes at one position end; pops end at the bottom.
 *
 * The matcher keeps the last GRAM_MAX_ROLLBACK + 1 positions in a ring. Its pool is
 * collected (mark from the ring, sweep, rehash) between operations when it runs low, never
 * grown: a parse that needs more is refused.
 *
 * Masks (the point of the precompute in gram_compile.c): for each top, OR the state's
 * accepted tokens, then check its uncertain groups once each, from the stacks left when the
 * top's rule ends, against the bytes left in the group. */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "grammar/gram_internal.h"

/* ---- the stack machine ----------------------------------------------------------------- */

/* Two multiplies and the high half: the table is probed on every byte of the vocabulary walk,
 * where a full 64-bit mixer cost a tenth of a compile; the keys (small state numbers, node
 * indices) need only their bits spread to the top. */
#define MIN_BUCKETS 1024 /* the table's size after a clear (4 KiB) */

static uint32_t node_hash(int32_t state, int32_t parent) {
    uint64_t h = (uint64_t)(uint32_t)state * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uint32_t)parent * 0xc2b2ae3d27d4eb4fULL;
    return (uint32_t)(h >> 32);
}

int gram_machine_init(struct gram_machine *m, const struct gram_compiled *c, int32_t cap) {
    memset(m, 0, sizeof *m);
    m->c = c;
    m->cap = cap;
    m->nbuckets = 16;
    while (m->nbuckets < 2 * cap) m->nbuckets *= 2;
    m->nodes = malloc((size_t)cap * sizeof *m->nodes);
    m->buckets = malloc((size_t)m->nbuckets * sizeof *m->buckets);
    m->stamp = calloc((size_t)cap, sizeof *m->stamp);
    m->work = malloc((size_t)cap * sizeof *m->work);
    if (!m->nodes || !m->buckets || !m->stamp || !m->work) {
        gram_machine_release(m);
        return FOLIO_ENOMEM;
    }
    memset(m->buckets, 0xff, (size_t)m->nbuckets * sizeof *m->buckets);
    m->mask = (m->nbuckets < MIN_BUCKETS ? m->nbuckets : MIN_BUCKETS) - 1;
    m->free_head = -1;
    return 0;
}

void gram_machine_release(struct gram_machine *m) {
    free(m->nodes);
    free(m->buckets);
    free(m->stamp);
    free(m->work);
    m->nodes = NULL;
    m->buckets = NULL;
    m->stamp = NULL;
    m->work = NULL;
}

void gram_machine_clear(struct gram_machine *m) {
    /* clearing only the used buckets keeps a per-state reset cheap in the precompute */
    if ((int64_t)m->used * 8 < (int64_t)m->mask + 1) {
        for (int32_t i = 0; i < m->used; i++)
            m->buckets[node_hash(m->nodes[i].state, m->nodes[i].parent) & (uint32_t)m->mask] = -1;
    } else {
        memset(m->buckets, 0xff, ((size_t)m->mask + 1) * sizeof *m->buckets);
    }
    m->mask = (m->nbuckets < MIN_BUCKETS ? m->nbuckets : MIN_BUCKETS) - 1;
    m->used = 0;
    m->free_head = -1;
    m->num_free = 0;
    m->overflow = 0;
}

/* Doubles the buckets in use and rehashes the live nodes (a free node has depth -1). */
static void grow(struct gram_machine *m) {
    m->mask = m->mask * 2 + 1;
    memset(m->buckets, 0xff, ((size_t)m->mask + 1) * sizeof *m->buckets);
    for (int32_t i = m->used - 1; i >= 0; i--) {
        if (m->nodes[i].depth < 0) continue;
        uint32_t h = node_hash(m->nodes[i].state, m->nodes[i].parent) & (uint32_t)m->mask;
        m->nodes[i].next = m->buckets[h];
        m->buckets[h] = i;
    }
}

int32_t gram_machine_node(struct gram_machine *m, int32_t state, int32_t parent) {
    uint32_t h = node_hash(state, parent) & (uint32_t)m->mask;
    for (int32_t i = m->buckets[h]; i >= 0; i = m->nodes[i].next)
        if (m->nodes[i].state == state && m->nodes[i].parent == parent) return i;
    int32_t depth = parent < 0 ? 1 : m->nodes[parent].depth + 1;
    int32_t i;
    if (depth > GRAM_MAX_DEPTH) goto overflow;
    if (m->free_head >= 0) {
        i = m->free_head;
        m->free_head = m->nodes[i].next;
        m->num_free--;
    } else if (m->used < m->cap) {
        i = m->used++;
    } else {
        goto overflow;
    }
    m->nodes[i].state = state;
    m->nodes[i].parent = parent;
    m->nodes[i].depth = depth;
    m->nodes[i].next = m->buckets[h];
    m->buckets[h] = i;
    if ((int64_t)(m->used - m->num_free) * 2 > (int64_t)m->mask + 1 && m->mask < m->nbuckets - 1) grow(m);
    return i;
overflow:
    m->overflow = 1;
    return -1;
}

static uint32_t next_gen(struct gram_machine *m) {
    if (++m->gen == 0) { /* wrapped: old stamps could collide */
        memset(m->stamp, 0, (size_t)m->cap * sizeof *m->stamp);
        m->gen = 1;
    }
    return m->gen;
}

int gram_machine_closure(struct gram_machine *m, const int32_t *raw, int nraw, int32_t *tops,
                         int max_tops, int *popped) {
    const struct gram_compiled *c = m->c;
    uint32_t gen = next_gen(m);
    int nw = 0, nt = 0;
    for (int i = 0; i < nraw; i++)
        if (m->stamp[raw[i]] != gen) m->stamp[raw[i]] = gen, m->work[nw++] = raw[i];
    while (nw) {
        int32_t n = m->work[--nw];
        int32_t s = m->nodes[n].state, par = m->nodes[n].parent;
        if (c->state_bytes[s]) {
            if (nt == max_tops) goto overflow;
            tops[nt++] = n;
        }
        for (int32_t k = c->call_off[s]; k < c->call_off[s + 1]; k++) {
            int32_t ret = gram_machine_node(m, c->call_ret[k], par);
            if (ret < 0) goto overflow;
            int32_t ch = gram_machine_node(m, c->rule_start[c->call_rule[k]], ret);
            if (ch < 0) goto overflow;
            if (m->stamp[ch] != gen) m->stamp[ch] = gen, m->work[nw++] = ch;
        }
        if (c->state_final[s]) {
            if (par == GRAM_BOTTOM) *popped = 1;
            else if (m->stamp[par] != gen) m->stamp[par] = gen, m->work[nw++] = par;
        }
    }
    return nt;
overflow:
    m->overflow = 1;
    return -1;
}

int gram_machine_step(struct gram_machine *m, const int32_t *tops, int ntops, uint8_t byte,
                      int32_t *raw, int max_raw) {
    const struct gram_compiled *c = m->c;
    int nr = 0;
    for (int i = 0; i < ntops; i++) {
        int32_t s = m->nodes[tops[i]].state;
        int32_t t = c->trans[c->trans_off[s] + c->rule_cls[(size_t)c->state_rule[s] * 256 + byte]];
        if (t < 0) continue;
        int32_t n = gram_machine_node(m, t, m->nodes[tops[i]].parent);
        if (n < 0 || nr == max_raw) {
            m->overflow = 1;
            return -1;
        }
        raw[nr++] = n;
    }
    return nr;
}

/* ---- the matcher ---------------------------------------------------------------------------- */

#define RING (GRAM_MAX_ROLLBACK + 1)
#define SCRATCH RING /* the slot a step writes before it is known to succeed */

struct gram_matcher {
    const struct gram_compiled *c;
    struct gram_machine m;
    int32_t tops[RING + 1][GRAM_MAX_STACKS];
    int32_t ntops[RING + 1];
    uint8_t accepting[RING + 1];
    uint8_t stopped[RING + 1];
    int head; /* the current position's slot */
    int hist; /* tokens that can be rolled back */
    int32_t raw[GRAM_MAX_STACKS], buf[2][GRAM_MAX_STACKS];
    int32_t *lv, *lv_off; /* the suffix walk's stack sets per depth (check_suffixes) */
    int lv_cap;
};

/* Entries of the suffix walk's level buffer: room for GRAM_MAX_STACKS at any depth. */
#define LEVEL_CAP (16 * GRAM_MAX_STACKS)

void gram_matcher_reset(struct gram_matcher *mt) {
    struct gram_machine *m = &mt->m;
    gram_machine_clear(m);
    mt->head = 0;
    mt->hist = 0;
    mt->ntops[0] = 0;
    mt->accepting[0] = 0;
    mt->stopped[0] = 0;
    int32_t start = mt->c->rule_start[0];
    if (start < 0) return; /* the grammar matches nothing */
    int32_t n0 = gram_machine_node(m, start, GRAM_BOTTOM);
    int popped = 0;
    int nt = gram_machine_closure(m, &n0, 1, mt->tops[0], GRAM_MAX_STACKS, &popped);
    mt->ntops[0] = nt < 0 ? 0 : nt;
    mt->accepting[0] = nt >= 0 && popped;
}

struct gram_matcher *gram_matcher_create(const struct gram_compiled *c) {
    struct gram_matcher *mt = calloc(1, sizeof *mt);
    if (!mt) return NULL;
    mt->c = c;
    mt->lv_cap = LEVEL_CAP;
    mt->lv = malloc(LEVEL_CAP * sizeof *mt->lv);
    mt->lv_off = malloc(((size_t)c->vocab->max_len + 2) * sizeof *mt->lv_off);
    if (!mt->lv || !mt->lv_off || gram_machine_init(&mt->m, c, GRAM_MATCHER_NODES)) {
        free(mt->lv);
        free(mt->lv_off);
        free(mt);
        return NULL;
    }
    gram_matcher_reset(mt);
    return mt;
}

void gram_matcher_free(struct gram_matcher *mt) {
    if (!mt) return;
    gram_machine_release(&mt->m);
    free(mt->lv);
    free(mt->lv_off);
    free(mt);
}

void gram_matcher_copy(struct gram_matcher *dst, const struct gram_matcher *src) {
    if (dst == src) return;
    struct gram_machine *d = &dst->m;
    const struct gram_machine *s = &src->m;
    memcpy(d->nodes, s->nodes, (size_t)s->used * sizeof *d->nodes);
    memcpy(d->buckets, s->buckets, ((size_t)s->mask + 1) * sizeof *d->buckets);
    d->mask = s->mask;
    d->used = s->used;
    d->free_head = s->free_head;
    d->num_free = s->num_free;
    /* dst keeps its own stamps and generation: they only need to be older than its next */
    for (int i = 0; i <= GRAM_MAX_ROLLBACK; i++) {
        int k = (src->head - i + RING) % RING;
        if (i > src->hist) break;
        memcpy(dst->tops[k], src->tops[k], (size_t)src->ntops[k] * sizeof *dst->tops[k]);
        dst->ntops[k] = src->ntops[k];
        dst->accepting[k] = src->accepting[k];
        dst->stopped[k] = src->stopped[k];
    }
    dst->head = src->head;
    dst->hist = src->hist;
}

/* Mark from the live positions, sweep the rest into the free list, rebuild the table. */
static void collect(struct gram_matcher *mt) {
    struct gram_machine *m = &mt->m;
    uint32_t gen = next_gen(m);
    for (int i = 0; i <= mt->hist; i++) {
        int k = (mt->head - i + RING) % RING;
        for (int j = 0; j < mt->ntops[k]; j++)
            for (int32_t n = mt->tops[k][j]; n >= 0 && m->stamp[n] != gen; n = m->nodes[n].parent)
                m->stamp[n] = gen;
    }
    memset(m->buckets, 0xff, ((size_t)m->mask + 1) * sizeof *m->buckets);
    m->free_head = -1;
    m->num_free = 0;
    for (int32_t i = m->used - 1; i >= 0; i--) {
        if (m->stamp[i] == gen) {
            uint32_t h = node_hash(m->nodes[i].state, m->nodes[i].parent) & (uint32_t)m->mask;
            m->nodes[i].next = m->buckets[h];
            m->buckets[h] = i;
        } else {
            m->nodes[i].depth = -1; /* free: grow() skips it */
            m->nodes[i].next = m->free_head;
            m->free_head = i;
            m->num_free++;
        }
    }
}

static void maybe_collect(struct gram_matcher *mt) {
    struct gram_machine *m = &mt->m;
    if (m->num_free + (m->cap - m->used) < m->cap / 2) collect(mt);
    m->overflow = 0;
}

/* Runs bytes from position `from` into the scratch slot. 0 or FOLIO_EINVAL. */
static int advance(struct gram_matcher *mt, int from, const uint8_t *s, size_t n) {
    struct gram_machine *m = &mt->m;
    const int32_t *cur = mt->tops[from];
    int ncur = mt->ntops[from], acc = mt->accepting[from];
    if (mt->stopped[from]) return FOLIO_EINVAL;
    for (size_t i = 0; i < n; i++) {
        int nr = gram_machine_step(m, cur, ncur, s[i], mt->raw, GRAM_MAX_STACKS);
        if (nr < 0) goto limit;
        if (nr == 0) return FOLIO_EINVAL; /* not in the grammar: the common case, no message */
        int32_t *out = i + 1 == n ? mt->tops[SCRATCH] : mt->buf[i & 1];
        int popped = 0;
        ncur = gram_machine_closure(m, mt->raw, nr, out, GRAM_MAX_STACKS, &popped);
        if (ncur < 0) goto limit;
        cur = out;
        acc = popped;
    }
    if (n == 0) memcpy(mt->tops[SCRATCH], cur, (size_t)ncur * sizeof *cur);
    mt->ntops[SCRATCH] = ncur;
    mt->accepting[SCRATCH] = (uint8_t)acc;
    mt->stopped[SCRATCH] = 0;
    return 0;
limit: /* the mask may have offered this token: say why it is refused after all */
    return folio_err(FOLIO_EINVAL, "grammar: the parse exceeds GRAM_MAX_STACKS (%d), GRAM_MAX_DEPTH (%d) or "
                                   "GRAM_MATCHER_NODES (%d)", GRAM_MAX_STACKS, GRAM_MAX_DEPTH, GRAM_MATCHER_NODES);
}

static void store(struct gram_matcher *mt, int k) {
    memcpy(mt->tops[k], mt->tops[SCRATCH], (size_t)mt->ntops[SCRATCH] * sizeof *mt->tops[k]);
    mt->ntops[k] = mt->ntops[SCRATCH];
    mt->accepting[k] = mt->accepting[SCRATCH];
    mt->stopped[k] = mt->stopped[SCRATCH];
}

int gram_matcher_accept_token(struct gram_matcher *mt, int32_t token) {
    const struct gram_vocab *v = mt->c->vocab;
    if (token < 0 || token >= v->vocab_size) return folio_err(FOLIO_EINVAL, "grammar: token %d out of range", token);
    int h = mt->head;
    if (v->is_stop[token]) {
        if (!mt->accepting[h]) return FOLIO_EINVAL;
        mt->ntops[SCRATCH] = 0;
        mt->accepting[SCRATCH] = 1;
        mt->stopped[SCRATCH] = 1;
    } else {
        if (v->lens[token] == 0) return FOLIO_EINVAL;
        maybe_collect(mt);
        if (advance(mt, h, v->bytes[token], v->lens[token])) return FOLIO_EINVAL;
    }
    mt->head = (h + 1) % RING;
    store(mt, mt->head);
    if (mt->hist < GRAM_MAX_ROLLBACK) mt->hist++;
    return 0;
}

int gram_matcher_accept_bytes(struct gram_matcher *mt, const uint8_t *s, size_t n) {
    maybe_collect(mt);
    if (advance(mt, mt->head, s, n)) return FOLIO_EINVAL;
    store(mt, mt->head);
    return 0;
}

int gram_matcher_rollback(struct gram_matcher *mt, int k) {
    if (k < 0 || k > mt->hist)
        return folio_err(FOLIO_EINVAL, "grammar: cannot roll back %d tokens (%d kept)", k, mt->hist);
    mt->head = (mt->head - k + RING) % RING;
    mt->hist -= k;
    return 0;
}

int gram_matcher_accepting(const struct gram_matcher *mt) { return mt->accepting[mt->head]; }

int gram_matcher_done(const struct gram_matcher *mt) {
    int h = mt->head;
    return mt->stopped[h] || (mt->accepting[h] && mt->ntops[h] == 0);
}

void gram_sets_or_accepted(const struct gram_state_sets *s, uint32_t *mask, int words, int vocab_size) {
    if (s->base) gram_sets_or_accepted(s->base, mask, words, vocab_size); /* one level: a base has none */
    if (s->kind == GRAM_SET_BITS) {
        for (int w = 0; w < words; w++) mask[w] |= s->bits[w];
    } else if (s->kind == GRAM_SET_LIST) {
        for (int i = 0; i < s->num; i++) mask[s->ids[i] >> 5] |= 1u << (s->ids[i] & 31);
    } else { /* all but the listed ids */
        int j = 0;
        for (int w = 0; w < words; w++) {
            uint32_t x = ~0u;
            for (; j < s->num && (s->ids[j] >> 5) == w; j++) x &= ~(1u << (s->ids[j] & 31));
            if (w == words - 1 && (vocab_size & 31)) x &= (1u << (vocab_size & 31)) - 1;
            mask[w] |= x;
        }
    }
}

/* Whether bytes can follow from the stacks tops (a position's worth, closed). */
static int fits(struct gram_matcher *mt, const int32_t *tops, int nt, const uint8_t *s, size_t n) {
    struct gram_machine *m = &mt->m;
    const int32_t *cur = tops;
    for (size_t i = 0; i < n; i++) {
        int nr = gram_machine_step(m, cur, nt, s[i], mt->raw, GRAM_MAX_STACKS);
        if (nr <= 0) return 0;
        if (i + 1 == n) return 1;
        int popped = 0;
        nt = gram_machine_closure(m, mt->raw, nr, mt->buf[i & 1], GRAM_MAX_STACKS, &popped);
        if (nt <= 0) return 0;
        cur = mt->buf[i & 1];
    }
    return n == 0;
}

/* The uncertain groups of one top: sorted suffixes, walked like a trie from ptops (the stacks
 * once the top's rule has ended). A suffix reuses the stack sets of the bytes it shares with
 * the one before (suf_lcp), and a byte that kills the walk skips every following suffix that
 * shares the bytes up to it. */
static void check_suffixes(struct gram_matcher *mt, const struct gram_state_sets *s, const int32_t *ptops,
                           int np, uint32_t *mask) {
    struct gram_machine *m = &mt->m;
    int32_t *lv = mt->lv, *off = mt->lv_off;
    memcpy(lv, ptops, (size_t)np * sizeof *lv);
    off[0] = 0;
    off[1] = np;
    uint32_t valid = 0; /* levels 0..valid hold the sets after that many bytes of the last path */
    for (int g = 0; g < s->num_suffix;) {
        const uint8_t *sb = s->suf_bytes + s->suf_off[g];
        uint32_t L = s->suf_off[g + 1] - s->suf_off[g], t0 = s->suf_tok_off[g], t1 = s->suf_tok_off[g + 1];
        if (valid > s->suf_lcp[g]) valid = s->suf_lcp[g];
        int todo = 0;
        for (uint32_t t = t0; t < t1 && !todo; t++) todo = !(mask[s->suf_toks[t] >> 5] >> (s->suf_toks[t] & 31) & 1);
        if (!todo) {
            g++;
            continue;
        }
        uint32_t dead = 0;
        int ok = 0, fallback = 0;
        for (uint32_t i = valid + 1; i <= L; i++) {
            int nr = gram_machine_step(m, lv + off[i - 1], off[i] - off[i - 1], sb[i - 1], mt->raw, GRAM_MAX_STACKS);
            if (nr < 0) { fallback = 1; break; }
            if (nr == 0) { dead = i; break; }
            if (i == L) ok = 1;
            int room = mt->lv_cap - off[i], popped = 0;
            int nt = room < GRAM_MAX_STACKS ? -1 : gram_machine_closure(m, mt->raw, nr, lv + off[i], GRAM_MAX_STACKS, &popped);
            if (nt < 0) { fallback = !ok; break; }
            off[i + 1] = off[i] + nt;
            valid = i;
        }
        if (fallback) { /* out of room: this suffix from scratch, and no reuse after it */
            ok = fits(mt, ptops, np, sb, L);
            valid = 0;
        }
        if (ok)
            for (uint32_t t = t0; t < t1; t++) mask[s->suf_toks[t] >> 5] |= 1u << (s->suf_toks[t] & 31);
        g++;
        if (dead) {
            valid = dead - 1;
            while (g < s->num_suffix && s->suf_lcp[g] >= dead) g++;
        }
    }
}

void gram_matcher_fill_mask(struct gram_matcher *mt, uint32_t *mask) {
    const struct gram_compiled *c = mt->c;
    const struct gram_vocab *v = c->vocab;
    struct gram_machine *m = &mt->m;
    int words = (v->vocab_size + 31) / 32, h = mt->head;
    memset(mask, 0, (size_t)words * sizeof *mask);
    maybe_collect(mt);
    int32_t ptops[GRAM_MAX_STACKS];
    for (int i = 0; i < mt->ntops[h] && !mt->stopped[h]; i++) {
        int32_t n = mt->tops[h][i];
        const struct gram_state_sets *s = c->sets[m->nodes[n].state];
        if (!s) continue; /* cannot happen: every reachable state with bytes has sets */
        gram_sets_or_accepted(s, mask, words, v->vocab_size);
        int32_t par = m->nodes[n].parent;
        if (!s->num_suffix || par == GRAM_BOTTOM) continue;
        /* the stacks once this top's rule has ended: shared by all its uncertain groups */
        int popped = 0;
        int np = gram_machine_closure(m, &par, 1, ptops, GRAM_MAX_STACKS, &popped);
        if (np <= 0) continue;
        check_suffixes(mt, s, ptops, np, mask);
    }
    if (mt->accepting[h])
        for (int i = 0; i < v->num_stop; i++) mask[v->stop_ids[i] >> 5] |= 1u << (v->stop_ids[i] & 31);
}
