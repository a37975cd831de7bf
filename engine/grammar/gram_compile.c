/* gram_compile: a grammar prepared for one vocabulary.
 *
 * 1. Automata. Each rule's body becomes an NFA over bytes and rule calls (Thompson), then a
 *    DFA by subset construction over the rule's byte classes plus one symbol per called rule:
 *    a recursive transition network, which the matcher runs with a stack of return states.
 *    States that cannot reach the rule's end, and calls to rules that match nothing, are
 *    trimmed, so every stack the matcher holds can still complete: a token is allowed exactly
 *    when some stack survives its bytes.
 * 2. Token sets (xgrammar's adaptive token mask cache). For each state that can take a byte,
 *    the vocabulary trie is walked with a stack whose bottom is the state's own frame:
 *    tokens that survive without leaving the rule are accepted whatever the stack below;
 *    tokens that die inside it are rejected, except those for which the rule could end part
 *    way and the next byte may follow the rule somewhere (FOLLOW): those are uncertain, and
 *    kept grouped by the bytes left after the rule ends, which the matcher checks against
 *    the real stack below. The sets are cached in the vocab under a structural hash of the
 *    rule, everything it can call, the state's class and the FOLLOW bytes; states that no
 *    token can tell apart (within the longest token's bytes) share a class, so a counted run
 *    such as a string's maxLength costs a walk per class, not per count (future_classes).
 * 3. Reuse inside a walk (exact: a state's sets are a union over its stacks, so any stack can
 *    be taken out of the walk and accounted for separately):
 *    - composition: a stack that starts in a callee (the closure before any byte pushed it)
 *      takes the callee state's own sets, computed first (ensure_sets): its accepted tokens,
 *      and its uncertain groups continued from the frames below (compose);
 *    - callee memos: a stack that enters a rule calling no rule (the shared string body) part
 *      way down the trie takes a per-vocabulary memo of that rule's run over the subtree, and
 *      the walk only continues from the frames below at the memo's pop points (memo_get);
 *    - a transition cache over interned stack sets, so the machine steps once per distinct
 *      (set, byte) rather than once per trie node.
 * 4. Cost. A composed callee's vocabulary-sized set is referenced (the state's sets extend it,
 *    gram_state_sets.base) rather than copied, and a state's own tokens are deduplicated and
 *    sorted through a sparse bitset and suffixes by radix, so a state costs about its walk,
 *    not a pass over the vocabulary. The rules are determinized, hashed and split into future
 *    classes, and the states' sets computed, on up to v->compile_threads threads (helpers started with the compile, on other cores);
 *    a state is computed by whichever thread claims it, and the others walk through it rather
 *    than wait, so the sets never depend on the schedule. Each thread holds about 5 MB of
 *    scratch (pre_init) for a 128k vocabulary. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "grammar/gram_internal.h"

#define VEC(T) struct { T *p; size_t n, cap; }
#define VPUSH(v, x)                                                                     \
    (((v).n == (v).cap ? vgrow((void **)&(v).p, &(v).cap, sizeof *(v).p) : 0) ||       \
     ((v).p[(v).n++] = (x), 0))

static int vgrow(void **p, size_t *cap, size_t elem) {
    size_t nc = *cap ? *cap * 2 : 64;
    void *q = realloc(*p, nc * elem);
    if (!q) return 1;
    *p = q;
    *cap = nc;
    return 0;
}

typedef VEC(void *) ptrvec;

static int popcount32(uint32_t x) {
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    return (int)((((x + (x >> 4)) & 0x0f0f0f0fu) * 0x01010101u) >> 24);
}

static int has(const uint32_t *set, int c) { return set[c >> 5] >> (c & 31) & 1; }

/* ---- NFA ---------------------------------------------------------------------------------- */

/* Edge labels: a byte set index (>= 0), EPS, or a call of rule r as CALL(r). */
#define EPS (-1)
#define CALL(r) (-2 - (r))

struct nfa {
    int n;
    VEC(int32_t) from;
    VEC(int32_t) to;
    VEC(int32_t) lab;
    int overflow, oom;
};

static int nfa_state(struct nfa *a) {
    if (a->n >= GRAM_MAX_NFA_STATES) {
        a->overflow = 1;
        return 0;
    }
    return a->n++;
}

static void nfa_edge(struct nfa *a, int f, int t, int lab) {
    if (a->from.n >= (size_t)GRAM_MAX_NFA_STATES * 4) {
        a->overflow = 1;
        return;
    }
    if (VPUSH(a->from, f) || VPUSH(a->to, t) || VPUSH(a->lab, lab)) a->oom = 1;
}

/* Thompson's construction from state `at`; returns the end state. Recursion depth is the
 * expression nesting, bounded by GRAMMAR_MAX_DEPTH at finish. */
static int build(const struct grammar *g, struct nfa *a, int e, int at) {
    if (a->overflow || a->oom) return at;
    const struct grammar_node *n = &g->nodes[e];
    int t, end;
    switch (n->kind) {
    case GRAMMAR_K_EMPTY: return at;
    case GRAMMAR_K_BYTES:
        t = nfa_state(a);
        nfa_edge(a, at, t, n->a);
        return t;
    case GRAMMAR_K_REF:
        t = nfa_state(a);
        nfa_edge(a, at, t, CALL(n->a));
        return t;
    case GRAMMAR_K_SEQ:
        for (int j = 0; j < n->b; j++) at = build(g, a, g->kids[n->a + j], at);
        return at;
    case GRAMMAR_K_ALT:
        end = nfa_state(a);
        for (int j = 0; j < n->b; j++) {
            int s = nfa_state(a);
            nfa_edge(a, at, s, EPS);
            nfa_edge(a, build(g, a, g->kids[n->a + j], s), end, EPS);
        }
        return end;
    case GRAMMAR_K_REPEAT:
        for (int k = 0; k < n->b && !a->overflow; k++) at = build(g, a, n->a, at);
        if (n->c < 0) { /* a fresh loop state, so nothing else can re-enter the loop */
            int l = nfa_state(a);
            nfa_edge(a, at, l, EPS);
            nfa_edge(a, build(g, a, n->a, l), l, EPS);
            return l;
        }
        end = nfa_state(a);
        for (int k = n->b; k < n->c && !a->overflow; k++) {
            nfa_edge(a, at, end, EPS);
            at = build(g, a, n->a, at);
        }
        nfa_edge(a, at, end, EPS);
        return end;
    }
    return at;
}

/* ---- DFA per rule ------------------------------------------------------------------------- */

struct rule_dfa {
    int nstates, ncls;
    uint8_t cls[256];
    int32_t *trans;  /* [nstates * ncls] local ids, -1 none */
    uint8_t *final;  /* [nstates] */
    int32_t *call_off; /* [nstates + 1] */
    int32_t *call_rule, *call_ret; /* local ret ids */
};

static void rule_dfa_free(struct rule_dfa *d) {
    free(d->trans);
    free(d->final);
    free(d->call_off);
    free(d->call_rule);
    free(d->call_ret);
}

static int cmp_i32(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return a < b ? -1 : a > b;
}

static int cmp_u64(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

/* Subset construction. The DFA's states are sorted sets of NFA states kept in one pool and
 * found again through an open hash table. */
static int determinize(const struct grammar *g, int rule, struct rule_dfa *d) {
    int rc = 0;
    struct nfa a = {0};
    int32_t *off = NULL, *eto = NULL, *elab = NULL, *stack = NULL, *buf = NULL, *stamp = NULL;
    int32_t *htab = NULL;
    VEC(int32_t) pool = {0};     /* concatenated NFA sets */
    VEC(int32_t) soff = {0};     /* [dfa state] start in pool; soff[n] end */
    VEC(int32_t) trans = {0};
    VEC(uint8_t) final = {0};
    VEC(int32_t) coff = {0}, crule = {0}, cret = {0};
    int32_t *bucket_n = NULL, *bucket = NULL, *bucket_fill = NULL;
    size_t bucket_cap = 0;
    uint8_t *member = NULL; /* [nsets used][ncls] */
    int32_t *setmap = NULL;

    int start = nfa_state(&a);
    int accept = build(g, &a, g->rule_body[rule], start);
    if (a.oom) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    if (a.overflow) {
        rc = folio_err(FOLIO_EINVAL, "grammar rule '%s' exceeds GRAM_MAX_NFA_STATES (%d)",
                       g->rule_name[rule], GRAM_MAX_NFA_STATES);
        goto out;
    }
    int n = a.n, ne = (int)a.from.n;
    /* CSR adjacency */
    off = calloc((size_t)n + 1, sizeof *off);
    eto = malloc(((size_t)ne + 1) * sizeof *eto);
    elab = malloc(((size_t)ne + 1) * sizeof *elab);
    stack = malloc(((size_t)n + 1) * sizeof *stack);
    buf = malloc(((size_t)n + 1) * sizeof *buf);
    stamp = calloc((size_t)n + 1, sizeof *stamp);
    setmap = malloc(((size_t)g->num_sets + 1) * sizeof *setmap);
    if (!off || !eto || !elab || !stack || !buf || !stamp || !setmap) {
        rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory");
        goto out;
    }
    for (int i = 0; i < ne; i++) off[a.from.p[i] + 1]++;
    for (int i = 0; i < n; i++) off[i + 1] += off[i];
    {
        int32_t *fill = malloc(((size_t)n + 1) * sizeof *fill);
        if (!fill) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
        memcpy(fill, off, (size_t)n * sizeof *fill);
        for (int i = 0; i < ne; i++) {
            int p = fill[a.from.p[i]]++;
            eto[p] = a.to.p[i];
            elab[p] = a.lab.p[i];
        }
        free(fill);
    }
    /* byte classes: refine the partition of 256 bytes by every set the rule uses */
    int nused = 0;
    for (int i = 0; i < g->num_sets; i++) setmap[i] = -1;
    memset(d->cls, 0, 256);
    d->ncls = 1;
    for (int i = 0; i < ne; i++) {
        if (elab[i] < 0 || setmap[elab[i]] >= 0) continue;
        setmap[elab[i]] = nused++;
        int32_t nid[256][2];
        for (int c = 0; c < d->ncls; c++) nid[c][0] = nid[c][1] = -1;
        int nc = 0;
        for (int c = 0; c < 256; c++) {
            int in = has(g->sets[elab[i]], c), old = d->cls[c];
            if (nid[old][in] < 0) nid[old][in] = nc++;
            d->cls[c] = (uint8_t)nid[old][in];
        }
        d->ncls = nc;
    }
    int ncls = d->ncls;
    uint8_t rep[256];
    for (int c = 255; c >= 0; c--) rep[d->cls[c]] = (uint8_t)c;
    member = malloc((size_t)(nused ? nused : 1) * (size_t)ncls);
    bucket_n = malloc(((size_t)ncls + 1) * sizeof *bucket_n);
    bucket_fill = malloc(((size_t)ncls + 1) * sizeof *bucket_fill);
    if (!member || !bucket_n || !bucket_fill) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    for (int i = 0; i < g->num_sets; i++)
        if (setmap[i] >= 0)
            for (int c = 0; c < ncls; c++) member[setmap[i] * ncls + c] = (uint8_t)has(g->sets[i], rep[c]);

    size_t hcap = 1024;
    htab = malloc(hcap * sizeof *htab);
    if (!htab) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    for (size_t i = 0; i < hcap; i++) htab[i] = -1;
    int32_t gen = 0;
    int64_t work = 0; /* NFA states gathered over all subsets, against GRAM_MAX_DFA_WORK */

/* the epsilon closure of buf[0, k) (deduplicated by stamp), sorted, as a DFA state id;
 * -1 for the empty set; -2 on overflow or allocation failure */
#define SETHASH(p, k)                                                                   \
    ({                                                                                  \
        uint64_t _h = 0x9e37;                                                           \
        for (int _i = 0; _i < (k); _i++) _h = folio_mix64(_h ^ (uint64_t)(p)[_i]);      \
        _h;                                                                             \
    })
    VPUSH(soff, 0);
    for (int di = -1; di < (int)soff.n - 1; di++) {
        /* di = -1 creates the start state from {start}; then each state in turn */
        int nsym = di < 0 ? 1 : ncls;
        int cstart = (int)crule.n;
        /* gather targets per class (or the start) */
        int32_t *members = di >= 0 ? pool.p + soff.p[di] : NULL;
        int nm = di >= 0 ? soff.p[di + 1] - soff.p[di] : 0;
        int ncall = 0;
        int32_t calls_seen[64];
        for (int sym = 0; sym < nsym + ncall + 1; sym++) {
            int k = 0;
            gen++;
            if (di < 0) {
                if (sym > 0) break;
                buf[k++] = start;
                stamp[start] = gen;
            } else if (sym < ncls) {
                if (sym == 0) { /* bucket the byte edges' targets by class: count, then fill */
                    for (int c = 0; c <= ncls; c++) bucket_n[c] = 0;
                    for (int mi = 0; mi < nm; mi++)
                        for (int e = off[members[mi]]; e < off[members[mi] + 1]; e++) {
                            if (elab[e] < 0) continue;
                            const uint8_t *mem = &member[setmap[elab[e]] * ncls];
                            for (int c = 0; c < ncls; c++) bucket_n[c + 1] += mem[c];
                        }
                    for (int c = 0; c < ncls; c++) bucket_n[c + 1] += bucket_n[c];
                    if ((size_t)bucket_n[ncls] > bucket_cap) {
                        free(bucket);
                        bucket_cap = (size_t)bucket_n[ncls] * 2;
                        bucket = malloc(bucket_cap * sizeof *bucket);
                        if (!bucket) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
                    }
                    for (int c = 0; c < ncls; c++) bucket_fill[c] = bucket_n[c];
                    for (int mi = 0; mi < nm; mi++)
                        for (int e = off[members[mi]]; e < off[members[mi] + 1]; e++) {
                            if (elab[e] < 0) continue;
                            const uint8_t *mem = &member[setmap[elab[e]] * ncls];
                            for (int c = 0; c < ncls; c++)
                                if (mem[c]) bucket[bucket_fill[c]++] = eto[e];
                        }
                    /* and list the called rules, in order of first appearance */
                    for (int mi = 0; mi < nm; mi++)
                        for (int e = off[members[mi]]; e < off[members[mi] + 1]; e++) {
                            if (elab[e] > EPS) continue;
                            if (elab[e] == EPS) continue;
                            int r = -2 - elab[e], seen = 0;
                            for (int q = 0; q < ncall; q++) seen |= calls_seen[q] == r;
                            if (seen) continue;
                            if (ncall == 64) {
                                rc = folio_err(FOLIO_EINVAL, "grammar rule '%s' calls too many rules at one point",
                                               g->rule_name[rule]);
                                goto out;
                            }
                            calls_seen[ncall++] = r;
                        }
                }
                for (int j = bucket_n[sym]; j < bucket_n[sym + 1]; j++) {
                    int32_t t = bucket[j];
                    if (stamp[t] != gen) stamp[t] = gen, buf[k++] = t;
                }
            } else if (sym < ncls + ncall) {
                int r = calls_seen[sym - ncls];
                for (int mi = 0; mi < nm; mi++)
                    for (int e = off[members[mi]]; e < off[members[mi] + 1]; e++)
                        if (elab[e] == CALL(r) && stamp[eto[e]] != gen) stamp[eto[e]] = gen, buf[k++] = eto[e];
            } else {
                break;
            }
            /* epsilon closure */
            int sp = 0;
            for (int j = 0; j < k; j++) stack[sp++] = buf[j];
            while (sp) {
                int s = stack[--sp];
                for (int e = off[s]; e < off[s + 1]; e++)
                    if (elab[e] == EPS && stamp[eto[e]] != gen) {
                        stamp[eto[e]] = gen;
                        buf[k++] = eto[e];
                        stack[sp++] = eto[e];
                    }
            }
            int32_t id = -1;
            work += k;
            if (work > GRAM_MAX_DFA_WORK) {
                rc = folio_err(FOLIO_EINVAL, "grammar rule '%s' is too expensive to determinize (GRAM_MAX_DFA_WORK, %d)",
                               g->rule_name[rule], GRAM_MAX_DFA_WORK);
                goto out;
            }
            if (k) {
                qsort(buf, (size_t)k, sizeof *buf, cmp_i32);
                uint64_t h = SETHASH(buf, k);
                size_t slot = (size_t)h & (hcap - 1);
                for (;; slot = (slot + 1) & (hcap - 1)) {
                    int32_t o = htab[slot];
                    if (o < 0) break;
                    int ol = soff.p[o + 1] - soff.p[o];
                    if (ol == k && memcmp(pool.p + soff.p[o], buf, (size_t)k * sizeof *buf) == 0) {
                        id = o;
                        break;
                    }
                }
                if (id < 0) {
                    id = (int32_t)soff.n - 1;
                    if (id >= GRAM_MAX_DFA_STATES) {
                        rc = folio_err(FOLIO_EINVAL, "grammar rule '%s' exceeds GRAM_MAX_DFA_STATES (%d)",
                                       g->rule_name[rule], GRAM_MAX_DFA_STATES);
                        goto out;
                    }
                    for (int j = 0; j < k; j++)
                        if (VPUSH(pool, buf[j])) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
                    if (VPUSH(soff, (int32_t)pool.n)) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
                    int fin = 0;
                    for (int j = 0; j < k; j++) fin |= buf[j] == accept;
                    if (VPUSH(final, (uint8_t)fin)) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
                    htab[slot] = id;
                    if ((size_t)soff.n * 2 > hcap) { /* rehash */
                        size_t nc = hcap * 2;
                        int32_t *nt = malloc(nc * sizeof *nt);
                        if (!nt) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
                        for (size_t i = 0; i < nc; i++) nt[i] = -1;
                        for (int32_t o = 0; o < (int32_t)soff.n - 1; o++) {
                            uint64_t h2 = SETHASH(pool.p + soff.p[o], soff.p[o + 1] - soff.p[o]);
                            size_t s2 = (size_t)h2 & (nc - 1);
                            while (nt[s2] >= 0) s2 = (s2 + 1) & (nc - 1);
                            nt[s2] = o;
                        }
                        free(htab);
                        htab = nt;
                        hcap = nc;
                    }
                    members = di >= 0 ? pool.p + soff.p[di] : NULL; /* the pool may have moved */
                }
            }
            if (di >= 0 && sym < ncls) {
                if (VPUSH(trans, id)) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
            } else if (di >= 0 && id >= 0) {
                if (VPUSH(crule, calls_seen[sym - ncls]) || VPUSH(cret, id)) {
                    rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory");
                    goto out;
                }
            }
        }
        if (di >= 0 && VPUSH(coff, (int32_t)cstart)) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    }
#undef SETHASH
    d->nstates = (int)soff.n - 1;
    if (VPUSH(coff, (int32_t)crule.n)) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    d->trans = trans.p, trans.p = NULL;
    d->final = final.p, final.p = NULL;
    d->call_off = coff.p, coff.p = NULL;
    d->call_rule = crule.p, crule.p = NULL;
    d->call_ret = cret.p, cret.p = NULL;
out:
    free(a.from.p);
    free(a.to.p);
    free(a.lab.p);
    free(off);
    free(eto);
    free(elab);
    free(stack);
    free(buf);
    free(stamp);
    free(htab);
    free(pool.p);
    free(soff.p);
    free(trans.p);
    free(final.p);
    free(coff.p);
    free(crule.p);
    free(cret.p);
    free(bucket_n);
    free(bucket);
    free(bucket_fill);
    free(member);
    free(setmap);
    return rc;
}

/* ---- assembling, trimming, FOLLOW ------------------------------------------------------- */

void gram_compiled_free(struct gram_compiled *c) {
    if (!c) return;
    free(c->rule_start);
    free(c->state_rule);
    free(c->state_final);
    free(c->state_bytes);
    free(c->rule_cls);
    free(c->rule_ncls);
    free(c->trans_off);
    free(c->trans);
    free(c->call_off);
    free(c->call_rule);
    free(c->call_ret);
    if (c->owned) {
        void **o = c->owned;
        for (size_t i = 0; o[i]; i++) free(o[i]);
        free(o);
    }
    free((void *)c->sets);
    free(c);
}

size_t gram_compiled_bytes(const struct gram_compiled *c) { return c->bytes; }

/* Joins the rules' DFAs into global state numbering. */
static int assemble(struct gram_compiled *c, struct rule_dfa *d, int nr) {
    size_t ns = 0, nt = 0, ncall = 0;
    for (int r = 0; r < nr; r++) {
        ns += (size_t)d[r].nstates;
        nt += (size_t)d[r].nstates * (size_t)d[r].ncls;
        ncall += (size_t)d[r].call_off[d[r].nstates];
    }
    if (ns > GRAM_MAX_STATES)
        return folio_err(FOLIO_EINVAL, "grammar exceeds GRAM_MAX_STATES (%d automaton states)", GRAM_MAX_STATES);
    c->num_rules = nr;
    c->num_states = (int)ns;
    c->rule_start = malloc((size_t)nr * sizeof *c->rule_start);
    c->rule_cls = malloc((size_t)nr * 256);
    c->rule_ncls = malloc((size_t)nr * sizeof *c->rule_ncls);
    c->state_rule = malloc((ns + 1) * sizeof *c->state_rule);
    c->state_final = malloc(ns + 1);
    c->state_bytes = calloc(ns + 1, 1);
    c->trans_off = malloc((ns + 1) * sizeof *c->trans_off);
    c->trans = malloc((nt + 1) * sizeof *c->trans);
    c->call_off = malloc((ns + 1) * sizeof *c->call_off);
    c->call_rule = malloc((ncall + 1) * sizeof *c->call_rule);
    c->call_ret = malloc((ncall + 1) * sizeof *c->call_ret);
    c->sets = calloc(ns + 1, sizeof *c->sets);
    if (!c->rule_start || !c->rule_cls || !c->rule_ncls || !c->state_rule || !c->state_final ||
        !c->state_bytes || !c->trans_off || !c->trans || !c->call_off || !c->call_rule ||
        !c->call_ret || !c->sets)
        return folio_err(FOLIO_ENOMEM, "grammar: out of memory");
    int32_t base = 0, toff = 0, coff = 0;
    for (int r = 0; r < nr; r++) {
        c->rule_start[r] = base;
        memcpy(c->rule_cls + (size_t)r * 256, d[r].cls, 256);
        c->rule_ncls[r] = d[r].ncls;
        for (int s = 0; s < d[r].nstates; s++) {
            int32_t gs = base + s;
            c->state_rule[gs] = r;
            c->state_final[gs] = d[r].final[s];
            c->trans_off[gs] = toff;
            for (int k = 0; k < d[r].ncls; k++) {
                int32_t t = d[r].trans[s * d[r].ncls + k];
                c->trans[toff++] = t < 0 ? -1 : base + t;
            }
            c->call_off[gs] = coff;
            for (int k = d[r].call_off[s]; k < d[r].call_off[s + 1]; k++) {
                c->call_rule[coff] = d[r].call_rule[k];
                c->call_ret[coff++] = base + d[r].call_ret[k];
            }
        }
        base += d[r].nstates;
    }
    c->call_off[ns] = coff;
    c->bytes = ns * (4 * sizeof(int32_t) + 2) + nt * sizeof(int32_t) + ncall * 8 + (size_t)nr * 264;
    return 0;
}

/* Keeps only what can complete: a state is live when its rule can end from it (through bytes
 * and calls of productive rules); a rule is productive when its start is live. Transitions
 * and calls into dead parts are cut. Sweeps run backwards since DFA states are numbered
 * breadth first from the start. */
static void trim(struct gram_compiled *c, uint8_t *live) {
    int ns = c->num_states;
    memset(live, 0, (size_t)ns);
    for (int changed = 1; changed;) {
        changed = 0;
        for (int s = ns - 1; s >= 0; s--) {
            if (live[s]) continue;
            int r = c->state_rule[s], l = c->state_final[s];
            for (int k = 0; k < c->rule_ncls[r] && !l; k++) {
                int32_t t = c->trans[c->trans_off[s] + k];
                l = t >= 0 && live[t];
            }
            for (int k = c->call_off[s]; k < c->call_off[s + 1] && !l; k++)
                l = live[c->rule_start[c->call_rule[k]]] && live[c->call_ret[k]];
            if (l) live[s] = 1, changed = 1;
        }
    }
    int32_t w = 0;
    for (int s = 0; s < ns; s++) {
        int r = c->state_rule[s];
        for (int k = 0; k < c->rule_ncls[r]; k++) {
            int32_t *t = &c->trans[c->trans_off[s] + k];
            if (*t >= 0 && (!live[s] || !live[*t])) *t = -1;
            if (*t >= 0) c->state_bytes[s] = 1;
        }
        int32_t from = c->call_off[s];
        c->call_off[s] = w;
        for (int k = from; k < c->call_off[s + 1]; k++)
            if (live[s] && live[c->rule_start[c->call_rule[k]]] && live[c->call_ret[k]]) {
                c->call_rule[w] = c->call_rule[k];
                c->call_ret[w++] = c->call_ret[k];
            }
    }
    c->call_off[ns] = w;
    for (int r = 0; r < c->num_rules; r++)
        if (!live[c->rule_start[r]]) c->rule_start[r] = -1;
    for (int s = 0; s < ns; s++)
        if (!live[s]) c->state_final[s] = 0;
}

static int or_into(uint32_t *dst, const uint32_t *src) {
    int ch = 0;
    for (int i = 0; i < 8; i++)
        if (src[i] & ~dst[i]) dst[i] |= src[i], ch = 1;
    return ch;
}

/* bytes[s]: the bytes state s can take. */
static void state_byte_sets(const struct gram_compiled *c, uint32_t (*bytes)[8]) {
    uint32_t clsbytes[256][8]; /* the bytes of each class of the rule at hand */
    int cls_rule = -1;
    memset(bytes, 0, (size_t)c->num_states * sizeof *bytes);
    for (int s = 0; s < c->num_states; s++) {
        const int r = c->state_rule[s];
        if (r != cls_rule) { /* a rule's states are consecutive: once per rule */
            const uint8_t *cls = c->rule_cls + (size_t)r * 256;
            memset(clsbytes, 0, (size_t)c->rule_ncls[r] * sizeof *clsbytes);
            for (int b = 0; b < 256; b++) clsbytes[cls[b]][b >> 5] |= 1u << (b & 31);
            cls_rule = r;
        }
        for (int k = 0; k < c->rule_ncls[r]; k++)
            if (c->trans[c->trans_off[s] + k] >= 0) or_into(bytes[s], clsbytes[k]);
    }
}

/* follow[r]: the bytes that can come right after rule r ends, in any context. */
static int follow_sets(const struct gram_compiled *c, const uint32_t (*bytes)[8], uint32_t (*follow)[8]) {
    int ns = c->num_states, nr = c->num_rules;
    uint8_t *nullable = calloc((size_t)ns + 1, 1);
    uint32_t(*first)[8] = calloc((size_t)ns + 1, sizeof *first);
    if (!nullable || !first) {
        free(nullable);
        free(first);
        return folio_err(FOLIO_ENOMEM, "grammar: out of memory");
    }
    for (int s = 0; s < ns; s++) nullable[s] = c->state_final[s];
    memcpy(first, bytes, (size_t)ns * sizeof *first);
    for (int changed = 1; changed;) {
        changed = 0;
        for (int s = ns - 1; s >= 0; s--)
            for (int k = c->call_off[s]; k < c->call_off[s + 1]; k++) {
                int32_t q = c->rule_start[c->call_rule[k]], ret = c->call_ret[k];
                changed |= or_into(first[s], first[q]);
                if (nullable[q]) {
                    changed |= or_into(first[s], first[ret]);
                    if (nullable[ret] && !nullable[s]) nullable[s] = 1, changed = 1;
                }
            }
    }
    memset(follow, 0, (size_t)nr * sizeof *follow);
    for (int changed = 1; changed;) {
        changed = 0;
        for (int s = 0; s < ns; s++)
            for (int k = c->call_off[s]; k < c->call_off[s + 1]; k++) {
                int q = c->call_rule[k];
                int32_t ret = c->call_ret[k];
                changed |= or_into(follow[q], first[ret]);
                if (nullable[ret]) changed |= or_into(follow[q], follow[c->state_rule[s]]);
            }
    }
    free(nullable);
    free(first);
    return 0;
}

/* ---- structural hashes --------------------------------------------------------------------- */

/* A rule's own automaton, with called rules left out (closure_hash numbers them). */
static void rule_hash(const struct gram_compiled *c, int r, int32_t base, int nstates, uint64_t seed,
                      uint64_t *out) {
    uint64_t h = folio_mix64(seed ^ (uint64_t)nstates);
    const uint8_t *cls = c->rule_cls + (size_t)r * 256;
    for (int b = 0; b < 256; b += 8) {
        uint64_t w = 0;
        for (int i = 0; i < 8; i++) w = w << 8 | cls[b + i];
        h = folio_mix64(h ^ w);
    }
    for (int s = base; s < base + nstates; s++) {
        h = folio_mix64(h ^ ((uint64_t)c->state_final[s] << 32 | (uint64_t)c->rule_ncls[r]));
        for (int k = 0; k < c->rule_ncls[r]; k++) {
            int32_t t = c->trans[c->trans_off[s] + k];
            h = folio_mix64(h ^ (uint64_t)(t < 0 ? -1 : t - base));
        }
        for (int k = c->call_off[s]; k < c->call_off[s + 1]; k++)
            h = folio_mix64(h ^ 0xca11ULL << 40 ^ (uint64_t)(c->call_ret[k] - base));
    }
    *out = h;
}

/* fut[s] for the states of rule r: equal for two states exactly when no byte string of up to
 * `horizon` bytes tells them apart inside the rule (Moore's partition refinement, stopped at
 * the horizon or when it stops refining). A token walk reads at most the vocabulary's longest
 * token, so states equal to that horizon have the same token sets: a counted run (a string's
 * maxLength, an array's maxItems) is one state per count, and all but its last few counts
 * are alike. A call is summarized by the callee's closure hash and the return state's class
 * one round back, which holds because a callee reads at least a byte; a state calling a rule
 * that can match nothing gets a class of its own. Small rules keep their state numbers. */
#define FUTURE_MIN_STATES 32
#define FUTURE_MAX_WORK (1 << 26) /* about 0.1 s */
struct fut_rec {
    uint64_t h;
    int32_t i;
};

static int cmp_fut(const void *x, const void *y) {
    const struct fut_rec *a = x, *b = y;
    if (a->h != b->h) return a->h < b->h ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

/* rep[s]: the rule's first state of s's class, whose sets s takes (the vocabulary's cache
 * would find them too, but it may be full). */
static int future_classes(const struct gram_compiled *c, int r, int32_t base, int n, const uint64_t *ch0,
                          int horizon, uint64_t *fut, int32_t *rep) {
    for (int i = 0; i < n; i++) rep[base + i] = base + i;
    if (n < FUTURE_MIN_STATES) {
        for (int i = 0; i < n; i++) fut[base + i] = (uint64_t)i;
        return 0;
    }
    uint64_t *h = malloc((size_t)n * 3 * sizeof *h), *nh = h + n, *sorted = h + 2 * n;
    if (!h) return folio_err(FOLIO_ENOMEM, "grammar: out of memory");
    uint8_t *own = calloc((size_t)n, 1); /* a class of its own: a call that may read nothing */
    if (!own) {
        free(h);
        return folio_err(FOLIO_ENOMEM, "grammar: out of memory");
    }
    for (int i = 0; i < n; i++) {
        const int32_t st = base + i;
        for (int k = c->call_off[st]; k < c->call_off[st + 1]; k++) {
            const int32_t q = c->rule_start[c->call_rule[k]];
            if (q < 0 || c->state_final[q] || c->call_off[q] != c->call_off[q + 1]) own[i] = 1;
        }
        h[i] = own[i] ? folio_mix64(0x6f776eULL ^ (uint64_t)i) : folio_mix64(0xf17eULL ^ c->state_final[st]);
    }
    /* a round reads every transition and call of the rule and sorts: past FUTURE_MAX_WORK in
     * all (a long run with many byte classes, made to order) the rule keeps its state numbers,
     * which costs walks, never correctness */
    int64_t per_round = (int64_t)n * (c->rule_ncls[r] + 16) + (c->call_off[base + n] - c->call_off[base]), work = 0;
    int classes = -1;
    for (int round = 0; round < horizon; round++) {
        if ((work += per_round) > FUTURE_MAX_WORK) break;
        for (int i = 0; i < n; i++) {
            const int32_t st = base + i;
            if (own[i]) {
                nh[i] = h[i];
                continue;
            }
            uint64_t x = folio_mix64(0xf17eULL ^ c->state_final[st]);
            for (int k = 0; k < c->rule_ncls[r]; k++) {
                const int32_t t = c->trans[c->trans_off[st] + k];
                x = folio_mix64(x ^ (t < 0 ? 0xdeadULL : h[t - base]));
            }
            for (int k = c->call_off[st]; k < c->call_off[st + 1]; k++)
                x = folio_mix64(x ^ ch0[c->call_rule[k]] ^ folio_mix64(h[c->call_ret[k] - base]));
            nh[i] = x;
        }
        memcpy(sorted, nh, (size_t)n * sizeof *sorted);
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_u64);
        int m = n > 0;
        for (int i = 1; i < n; i++) m += sorted[i] != sorted[i - 1];
        memcpy(h, nh, (size_t)n * sizeof *h);
        if (m == classes) break; /* stable: no further round splits a class */
        classes = m;
    }
    if (work > FUTURE_MAX_WORK) { /* cut short: a class may still hold states a token tells apart */
        for (int i = 0; i < n; i++) fut[base + i] = (uint64_t)i;
        free(h);
        free(own);
        return 0;
    }
    for (int i = 0; i < n; i++) fut[base + i] = h[i] | 1ULL << 63;
    struct fut_rec *fr = malloc((size_t)n * sizeof *fr);
    if (fr) {
        for (int i = 0; i < n; i++) fr[i] = (struct fut_rec){h[i], i};
        qsort(fr, (size_t)n, sizeof *fr, cmp_fut);
        for (int i = 0, g = 0; i < n; i++) {
            if (fr[i].h != fr[g].h) g = i;
            rep[base + fr[i].i] = base + fr[g].i;
        }
    }
    free(fr);
    free(h);
    free(own);
    return fr ? 0 : folio_err(FOLIO_ENOMEM, "grammar: out of memory");
}

/* ---- the per-state precompute -------------------------------------------------------------- */

struct pre {
    struct gram_compiled *c;
    const struct gram_vocab *v;
    struct gram_machine m;
    int32_t *lvl;      /* [(max_len + 1) * GRAM_MAX_STACKS] the path's stack sets */
    int32_t *lvl_n;    /* [max_len + 1] */
    uint8_t *pop;      /* [max_len + 1] the rule could end after this many bytes */
    int32_t *unc;      /* [max_len + 1] qualifying ends so far on the path */
    uint8_t *path;     /* [max_len + 1] path bytes, path[l] = byte l - 1 */
    int32_t raw[GRAM_MAX_STACKS];
    uint32_t *bits;    /* [mask words] scratch */
    uint8_t *pure;     /* [num_rules] the rule calls no rule */
    int64_t steps;     /* trie steps so far, against GRAM_MAX_COMPILE_STEPS */
    int32_t *bnode;    /* [num_states] the node (state, bottom), valid when bgen == gen */
    uint32_t *bgen, gen;
    VEC(int32_t) acc;
    VEC(int32_t) pairs; /* token, depth */
    /* callee memos (see walk): */
    const uint64_t *ch0, *ch1;     /* [num_rules] closure hashes */
    const uint64_t *fut;           /* [num_states] the state's class within its rule (future_classes) */
    const int32_t *rep;            /* [num_states] the class's first state */
    const int32_t *rbase;          /* [num_rules] first state (before trim) */
    const uint32_t (*follow)[8];   /* [num_rules] */
    int32_t *mst;                  /* [max_len + 1] the memo walk's DFA states */
    VEC(int32_t) sub;              /* pending sub-walks: trie node, stack node */
    uint8_t *claim;                /* [num_states] shared: a thread is computing the state */
    const uint32_t (*state_bytes)[8]; /* [num_states] the bytes each state can take */
    uint32_t root_live[8];         /* the first bytes the walk's level 0 can take */
    int64_t *total_steps;          /* shared: trie steps of all threads' finished states */
    ptrvec *owned;                 /* sets and memos the cache had no room for: &own */
    ptrvec own;
    size_t owned_bytes;
    int dup;                       /* acc may hold a token twice */
    uint32_t *bits0;               /* [mask words] tokens accepted through composed callees */
    int have_bits0;
    int32_t cbuf[2][GRAM_MAX_STACKS];
    const uint8_t *reach;
    const struct grammar *g;
    /* The walk's transitions, per precompute: stack sets interned (a level's set id, -1 none)
     * and (set, byte) -> (set after the step and closure, or DEAD; popped), so a walk steps the
     * machine once per distinct transition instead of once per trie node. */
    int32_t *lvl_sid;         /* [max_len + 1] */
    VEC(int32_t) spool;       /* the sets' ids, concatenated */
    VEC(int32_t) soff;        /* [nsets + 1] */
    int32_t *sslot;           /* [SET_CAP] set id, valid when sstamp matches */
    uint32_t *sstamp;
    uint32_t *tkey, *tstamp;  /* [TR_CAP] (set << 8 | byte) */
    int32_t *tnext;
    uint8_t *tpop;
    uint32_t tgen;
    int32_t ntrans;
    /* The composed callee set the state's sets extend (see gram_state_sets), and a bitset that
     * is all zero between uses, for deduplicating the state's own tokens in time linear in
     * them rather than in the vocabulary. */
    const struct gram_state_sets *base;
    uint32_t *sparse;     /* [mask words] */
    uint32_t *sparse_sum; /* [mask words / 32 + 1] */
};
#define SET_CAP (1 << 14)
#define TR_CAP (1 << 16)
#define SET_DEAD (-2)

struct suf_rec {
    uint64_t key; /* the first 8 bytes, big-endian, zero-padded: orders like cmp_rec or ties */
    const uint8_t *s;
    uint32_t len;
    int32_t tok, l;
};

static int cmp_rec(const void *x, const void *y) {
    const struct suf_rec *a = x, *b = y;
    uint32_t n = a->len < b->len ? a->len : b->len;
    int r = n ? memcmp(a->s, b->s, n) : 0;
    if (r) return r;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->tok < b->tok ? -1 : a->tok > b->tok;
}

/* Sorts records by cmp_rec, but for the order of tokens with equal suffixes (the matcher does
 * not care): a stable radix sort on the length and then the key (passes over bytes that all
 * records share are skipped), then by cmp_rec the runs of equal keys and lengths over 8 bytes.
 * Comparison sorts of the suffixes were a large part of a compile: the uncertain tokens of
 * a state number in the thousands, and most of their suffixes repeat. */
static void sort_recs(struct suf_rec *out, struct suf_rec *tmp, size_t n) {
    struct suf_rec *r = out;
    for (int pass = -1; pass < 8; pass++) {
        const int shift = pass * 8;
#define RADIX_DIGIT(x) (pass < 0 ? ((x).len > 255 ? 255 : (x).len) : (uint32_t)((x).key >> shift & 0xff))
        size_t cnt[257] = {0};
        for (size_t i = 0; i < n; i++) cnt[RADIX_DIGIT(r[i]) + 1]++;
        if (cnt[RADIX_DIGIT(r[0]) + 1] == n) continue;
        for (int b = 0; b < 256; b++) cnt[b + 1] += cnt[b];
        for (size_t i = 0; i < n; i++) tmp[cnt[RADIX_DIGIT(r[i])]++] = r[i];
#undef RADIX_DIGIT
        struct suf_rec *x = r;
        r = tmp, tmp = x;
    }
    if (r != out) memcpy(out, r, n * sizeof *r);
    r = out;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && r[j].key == r[i].key && r[j].len == r[i].len) j++;
        if (j - i > 1 && r[i].len > 8) qsort(r + i, j - i, sizeof *r, cmp_rec);
        i = j;
    }
}

static int budget_err(void) {
    return folio_err(FOLIO_EINVAL, "grammar too expensive to prepare: its token sets exceed GRAM_MAX_COMPILE_STEPS "
                                   "(%d trie steps); large counted repetitions (maxLength, maxItems) are the usual cause",
                     GRAM_MAX_COMPILE_STEPS);
}

/* The tokens of a dead subtree at trie node k (depth d): uncertain at each earlier depth l
 * where the rule could end and the next byte may follow it. */
static int dead_subtree(struct pre *p, int32_t k, int d, const uint32_t *follow) {
    const struct gram_vocab *v = p->v;
    if (p->unc[d] == 0) return 0;
    for (int32_t j = k; j < v->trie_end[k]; j++)
        for (int32_t t = v->trie_tok[j]; t >= 0; t = v->trie_tok_next[t])
            for (int l = 1; l < d; l++)
                if (p->pop[l] && has(follow, p->path[l + 1]))
                    if (VPUSH(p->pairs, t) || VPUSH(p->pairs, l)) return FOLIO_ENOMEM;
    return 0;
}

/* The walk for a rule that calls no other rule (strings, numbers, whitespace: the states
 * with the largest token sets): its frame is one DFA state, so a level is one int and a
 * step one table lookup, no stack nodes. */
static int walk_pure(struct pre *p, int32_t s, const uint32_t *follow) {
    const struct gram_vocab *v = p->v;
    const struct gram_compiled *c = p->c;
    /* locals, so the loop keeps them in registers (stores through p could alias them) */
    const uint8_t *cls = c->rule_cls + (size_t)c->state_rule[s] * 256;
    const int32_t *trans = c->trans, *toff = c->trans_off, *tdepth = v->trie_depth, *tend = v->trie_end;
    const int32_t *ttok = v->trie_tok, *tnext = v->trie_tok_next;
    const uint8_t *tbyte = v->trie_byte, *fin = c->state_final;
    int32_t *st = p->lvl, *unc = p->unc, *acc = p->acc.p;
    uint8_t *pop = p->pop, *path = p->path;
    int32_t n = v->num_trie;
    size_t na = p->acc.n;
    int64_t steps = p->steps;
    st[0] = s;
    pop[0] = 0;
    unc[0] = 0;
    for (int32_t k = 1; k < n;) {
        int d = tdepth[k];
        uint8_t b = tbyte[k];
        steps++;
        path[d] = b;
        unc[d] = unc[d - 1] + (pop[d - 1] && has(follow, b));
        int32_t t = trans[toff[st[d - 1]] + cls[b]];
        if (t < 0) {
            if (unc[d]) {
                p->acc.n = na;
                if (dead_subtree(p, k, d, follow)) return folio_err(FOLIO_ENOMEM, "grammar: out of memory");
            }
            k = tend[k];
            continue;
        }
        st[d] = t;
        pop[d] = fin[t];
        for (int32_t x = ttok[k]; x >= 0; x = tnext[x]) acc[na++] = x; /* acc holds the vocabulary */
        k++;
    }
    p->acc.n = na;
    p->steps = steps;
    if (steps > GRAM_MAX_COMPILE_STEPS) return budget_err();
    return 0;
}

/* Callee memos. When a walk at trie node k has a stack whose top q is in a rule Q that calls no
 * rule, above some frame P (not the walk's bottom), what the tokens below k do inside Q depends
 * on k and q only: they survive in Q (accepted for the walked state, whatever P is), die in Q,
 * or reach a point where Q can end and the next byte may follow Q (a "pop point": from there
 * the bytes continue from P). That part is computed once per vocabulary (cached like the state
 * sets, keyed by Q's closure hash, q, FOLLOW(Q) and k) and the walk only continues, from P, at
 * the pop points. The walk's result is a union over its stacks (accepted tokens, and uncertain
 * pairs for bottom-frame ends), so taking one stack out of the walk is exact: the stacks left
 * record the ends before k for the tokens that die in them, and each pop point's sub-walk
 * records the ends from there on. A bottom-frame end at a pop point needs a byte in
 * FOLLOW(R) of the walked rule R, which FOLLOW(Q) includes (Q ends there too). For the shared
 * string body this turns a walk over the whole vocabulary into one over the tokens with a quote. */
#define MEMO_MIN_SUBTREE 64 /* trie nodes below k; smaller subtrees are just walked */

static int memo_get(struct pre *p, int32_t k, int32_t q, const struct gram_state_sets **out) {
    const struct gram_vocab *v = p->v;
    const struct gram_compiled *c = p->c;
    int r = c->state_rule[q];
    const uint32_t *fq = p->follow[r];
    uint64_t k0 = folio_mix64(p->ch0[r] ^ 0x6d656d6fULL ^ (uint64_t)(q - p->rbase[r]) << 32);
    uint64_t k1 = folio_mix64(p->ch1[r] ^ 0x4d454d4fULL ^ (uint64_t)(q - p->rbase[r]) << 24);
    k0 = folio_mix64(k0 ^ (uint64_t)k);
    k1 = folio_mix64(k1 ^ (uint64_t)k << 17);
    for (int i = 0; i < 8; i++) {
        k0 = folio_mix64(k0 ^ fq[i]);
        k1 = folio_mix64(k1 ^ (uint64_t)fq[i] << 9);
    }
    const struct gram_state_sets *m = gram_vocab_cache_get((struct gram_vocab *)v, k0, k1);
    if (m) {
        *out = m;
        return 0;
    }
    /* walk Q's automaton over the subtree below k: accepted tokens in acc2, pop points in pp */
    VEC(int32_t) a2 = {0};
    VEC(int32_t) pp = {0};
    const uint8_t *cls = c->rule_cls + (size_t)r * 256;
    const int32_t *trans = c->trans, *toff = c->trans_off, *tdepth = v->trie_depth, *tend = v->trie_end;
    const uint8_t *fin = c->state_final;
    int32_t *st = p->mst;
    int d0 = tdepth[k];
    st[d0] = q;
    int rc = 0;
    for (int32_t j = k + 1; j < tend[k];) {
        int d = tdepth[j];
        uint8_t b = v->trie_byte[j];
        int32_t u = st[d - 1];
        p->steps++;
        if (fin[u] && has(fq, b) && VPUSH(pp, j)) goto oom;
        int32_t t = trans[toff[u] + cls[b]];
        if (t < 0) {
            j = tend[j];
            continue;
        }
        st[d] = t;
        for (int32_t x = v->trie_tok[j]; x >= 0; x = v->trie_tok_next[x])
            if (VPUSH(a2, x)) goto oom;
        j++;
    }
    if (p->steps > GRAM_MAX_COMPILE_STEPS) {
        rc = budget_err();
        goto out;
    }
    {
        size_t total = sizeof(struct gram_state_sets) + (a2.n + pp.n + 2) * 4;
        struct gram_state_sets *o = calloc(1, total);
        if (!o) goto oom;
        int32_t *ids = (int32_t *)(o + 1);
        if (a2.n) memcpy(ids, a2.p, a2.n * 4);
        if (pp.n) memcpy(ids + a2.n, pp.p, pp.n * 4);
        o->kind = GRAM_SET_LIST;
        o->num = (int)a2.n;
        o->ids = ids;
        o->num_suffix = (int)pp.n;
        o->suf_toks = ids + a2.n;
        o->bytes = total;
        m = gram_vocab_cache_put((struct gram_vocab *)v, k0, k1, o);
        if (!m) {
            if (VPUSH(*p->owned, o)) {
                free(o);
                goto oom;
            }
            m = o;
        }
        *out = m;
    }
out:
    free(a2.p);
    free(pp.p);
    return rc;
oom:
    rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory");
    goto out;
}

static int acc_room(struct pre *p, size_t n) {
    while (p->acc.cap < p->acc.n + n) {
        if (vgrow((void **)&p->acc.p, &p->acc.cap, sizeof *p->acc.p)) return FOLIO_ENOMEM;
    }
    return 0;
}

#define WALK_OVERFLOW 1 /* walk's return for a machine limit */

static uint32_t set_hash(const int32_t *ids, int n) {
    uint64_t h = 0x51ed;
    for (int i = 0; i < n; i++) h = folio_mix64(h ^ (uint64_t)(uint32_t)ids[i]);
    return (uint32_t)h;
}

/* The id of the stack set ids[0, n), interned; -1 when the table is full. */
static int32_t set_intern(struct pre *p, const int32_t *ids, int n) {
    uint32_t h = set_hash(ids, n) & (SET_CAP - 1);
    for (;; h = (h + 1) & (SET_CAP - 1)) {
        if (p->sstamp[h] != p->tgen) break;
        int32_t sid = p->sslot[h];
        int32_t o = p->soff.p[sid], len = p->soff.p[sid + 1] - o;
        if (len == n && (n == 0 || memcmp(p->spool.p + o, ids, (size_t)n * sizeof *ids) == 0)) return sid;
    }
    int32_t sid = (int32_t)p->soff.n - 1;
    if (sid >= SET_CAP / 2) return -1;
    for (int i = 0; i < n; i++)
        if (VPUSH(p->spool, ids[i])) return -1;
    if (VPUSH(p->soff, (int32_t)p->spool.n)) return -1;
    p->sstamp[h] = p->tgen;
    p->sslot[h] = sid;
    return sid;
}

/* The slot of transition (sid, b): found when tstamp matches and tkey is the key. */
static uint32_t tr_slot(const struct pre *p, int32_t sid, uint8_t b) {
    uint32_t key = (uint32_t)sid << 8 | b;
    uint32_t h = (uint32_t)folio_mix64(key) & (TR_CAP - 1);
    while (p->tstamp[h] == p->tgen && p->tkey[h] != key) h = (h + 1) & (TR_CAP - 1);
    return h;
}

/* The trie nodes [kbeg, kend) from the stack sets at depth(kbeg) - 1 (lvl, pop, unc set). */
static int walk(struct pre *p, int32_t kbeg, int32_t kend, const uint32_t *follow) {
    const struct gram_vocab *v = p->v;
    struct gram_machine *m = &p->m;
    int popped, nt;
    if (acc_room(p, (size_t)v->vocab_size + 1)) goto oom;
    for (int32_t k = kbeg; k < kend;) {
        int d = v->trie_depth[k];
        uint8_t b = v->trie_byte[k];
        if (d == 1 && !has(p->root_live, b)) { /* most of the root's 256 children, cheaply */
            k = v->trie_end[k];
            continue;
        }
        if (++p->steps > GRAM_MAX_COMPILE_STEPS) return budget_err();
        p->path[d] = b;
        p->unc[d] = p->unc[d - 1] + (p->pop[d - 1] && has(follow, b));
        const int32_t *prev = p->lvl + (size_t)(d - 1) * GRAM_MAX_STACKS;
        if (p->lvl_n[d - 1] == 1 && m->nodes[prev[0]].parent == GRAM_BOTTOM) {
            /* one stack, only the state's own frame, and the byte leads to a state without
             * calls: a plain DFA step, as in walk_pure (a string or number written inline) */
            const struct gram_compiled *c = p->c;
            int32_t u = m->nodes[prev[0]].state;
            int32_t t = c->trans[c->trans_off[u] + c->rule_cls[(size_t)c->state_rule[u] * 256 + b]];
            if (t < 0) {
                if (dead_subtree(p, k, d, follow)) goto oom;
                k = v->trie_end[k];
                continue;
            }
            if (c->call_off[t] == c->call_off[t + 1]) {
                p->pop[d] = c->state_final[t];
                p->lvl_n[d] = 0;
                p->lvl_sid[d] = -1;
                if (c->state_bytes[t]) {
                    if (p->bgen[t] != p->gen) {
                        p->bnode[t] = gram_machine_node(m, t, GRAM_BOTTOM);
                        if (p->bnode[t] < 0) return WALK_OVERFLOW;
                        p->bgen[t] = p->gen;
                    }
                    p->lvl[(size_t)d * GRAM_MAX_STACKS] = p->bnode[t];
                    p->lvl_n[d] = 1;
                }
                for (int32_t x = v->trie_tok[k]; x >= 0; x = v->trie_tok_next[x]) p->acc.p[p->acc.n++] = x;
                k++;
                continue;
            }
        }
        int32_t *cur = p->lvl + (size_t)d * GRAM_MAX_STACKS;
        int32_t sp = p->lvl_sid[d - 1];
        if (sp == -1) sp = p->lvl_sid[d - 1] = set_intern(p, prev, p->lvl_n[d - 1]);
        uint32_t ts = 0;
        if (sp >= 0) {
            ts = tr_slot(p, sp, b);
            if (p->tstamp[ts] == p->tgen) { /* seen: the stored result */
                int32_t ns = p->tnext[ts];
                if (ns == SET_DEAD) {
                    if (dead_subtree(p, k, d, follow)) goto oom;
                    k = v->trie_end[k];
                    continue;
                }
                int32_t o = p->soff.p[ns];
                nt = p->soff.p[ns + 1] - o;
                if (nt) memcpy(cur, p->spool.p + o, (size_t)nt * sizeof *cur);
                p->lvl_n[d] = nt;
                p->lvl_sid[d] = ns;
                p->pop[d] = p->tpop[ts];
                goto stepped;
            }
        }
        int nr = gram_machine_step(m, prev, p->lvl_n[d - 1], b, p->raw, GRAM_MAX_STACKS);
        if (nr < 0) return WALK_OVERFLOW;
        if (nr == 0) {
            if (sp >= 0 && p->ntrans < TR_CAP / 2) {
                p->tstamp[ts] = p->tgen, p->tkey[ts] = (uint32_t)sp << 8 | b, p->tnext[ts] = SET_DEAD;
                p->ntrans++;
            }
            if (dead_subtree(p, k, d, follow)) goto oom;
            k = v->trie_end[k];
            continue;
        }
        popped = 0;
        nt = gram_machine_closure(m, p->raw, nr, cur, GRAM_MAX_STACKS, &popped);
        if (nt < 0) return WALK_OVERFLOW;
        p->lvl_n[d] = nt;
        p->lvl_sid[d] = -1;
        p->pop[d] = (uint8_t)popped;
        if (sp >= 0 && p->ntrans < TR_CAP / 2) {
            int32_t ns = set_intern(p, cur, nt);
            if (ns >= 0) {
                p->tstamp[ts] = p->tgen, p->tkey[ts] = (uint32_t)sp << 8 | b, p->tnext[ts] = ns;
                p->tpop[ts] = (uint8_t)popped;
                p->ntrans++;
                p->lvl_sid[d] = ns;
            }
        }
    stepped:
        for (int32_t t = v->trie_tok[k]; t >= 0; t = v->trie_tok_next[t]) p->acc.p[p->acc.n++] = t;
        /* hand pure callees' stacks to their memos (always, for a small vocabulary: the tests' and
         * fuzzers' vocabularies then exercise them) */
        if (v->trie_end[k] - k > (v->vocab_size < 1024 ? 0 : MEMO_MIN_SUBTREE)) {
            int w = 0;
            for (int i = 0; i < nt; i++) {
                const struct gram_node *nd = &m->nodes[cur[i]];
                if (nd->parent == GRAM_BOTTOM || !p->pure[p->c->state_rule[nd->state]]) {
                    cur[w++] = cur[i];
                    continue;
                }
                const struct gram_state_sets *ms = NULL;
                int rc = memo_get(p, k, nd->state, &ms);
                if (rc) return rc;
                if (acc_room(p, (size_t)ms->num + (size_t)v->vocab_size + 1)) goto oom;
                memcpy(p->acc.p + p->acc.n, ms->ids, (size_t)ms->num * 4);
                p->acc.n += (size_t)ms->num;
                p->dup = 1;
                for (int j = 0; j < ms->num_suffix; j++)
                    if (VPUSH(p->sub, ms->suf_toks[j]) || VPUSH(p->sub, nd->parent)) goto oom;
            }
            if (w != nt) p->lvl_sid[d] = -1;
            p->lvl_n[d] = w;
        }
        k++;
    }
    return 0;
oom:
    return folio_err(FOLIO_ENOMEM, "grammar: out of memory");
}

#define BASE_MIN 256 /* a composed list longer than this is a base, not copied */

static int append_ids(struct pre *p, const int32_t *ids, int n) {
    if (acc_room(p, (size_t)n)) return FOLIO_ENOMEM;
    if (n) memcpy(p->acc.p + p->acc.n, ids, (size_t)n * sizeof *ids);
    p->acc.n += (size_t)n;
    return 0;
}

/* Whether token t is among s's accepted ones (s has no base: a base is never one). */
static int set_has(const struct gram_state_sets *s, int32_t t) {
    if (s->kind == GRAM_SET_BITS) return s->bits[t >> 5] >> (t & 31) & 1;
    int lo = 0, hi = s->num;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (s->ids[mid] < t) lo = mid + 1;
        else hi = mid;
    }
    const int found = lo < s->num && s->ids[lo] == t;
    return s->kind == GRAM_SET_LIST ? found : !found;
}

/* bits0 |= s's accepted tokens, with bits0 started on first use. */
static void bits0_or(struct pre *p, const struct gram_state_sets *s) {
    const int W = gram_mask_words(p->v);
    if (!p->have_bits0) {
        memset(p->bits0, 0, (size_t)W * 4);
        p->have_bits0 = 1;
    }
    gram_sets_or_accepted(s, p->bits0, W, p->v->vocab_size);
}

/* acc, less the base's tokens (the base is optional), deduplicated and sorted through the
 * all-zero bitset `sparse` in time linear in acc and in the span of its ids, rather than in
 * the vocabulary (a bitset's worth per state) or n log n (a sort); with `pairs` (when given)
 * left without the tokens accepted either way. Returns 1, with acc unsorted, when the list
 * came out larger than a bitset would be. */
static int sort_unique(struct pre *p, int pairs) {
    uint32_t *sp = p->sparse;
    const struct gram_state_sets *b = p->base;
    const uint32_t *bb = b && b->kind == GRAM_SET_BITS ? b->bits : NULL; /* the usual base */
#define IN_BASE(t) (bb ? (int)(bb[(t) >> 5] >> ((t) & 31) & 1) : b && set_has(b, t))
    uint32_t *sum = p->sparse_sum; /* a bit per word of sp that is not zero */
    int32_t lo = INT32_MAX, hi = -1;
    for (size_t i = 0; i < p->acc.n; i++) {
        int32_t t = p->acc.p[i];
        if (sp[t >> 5] >> (t & 31) & 1 || IN_BASE(t)) continue;
        sp[t >> 5] |= 1u << (t & 31);
        sum[t >> 10] |= 1u << (t >> 5 & 31);
        if (t < lo) lo = t;
        if (t > hi) hi = t;
    }
    if (pairs) {
        size_t np2 = 0;
        for (size_t i = 0; i + 1 < p->pairs.n; i += 2) {
            int32_t t = p->pairs.p[i];
            if (sp[t >> 5] >> (t & 31) & 1 || IN_BASE(t)) continue;
            p->pairs.p[np2++] = t;
            p->pairs.p[np2++] = p->pairs.p[i + 1];
        }
        p->pairs.n = np2;
    }
    size_t x = 0;
    for (int32_t sw = lo >> 10; hi >= 0 && sw <= hi >> 10; sw++) {
        for (uint32_t sb = sum[sw]; sb; sb &= sb - 1) {
            const int32_t w = sw * 32 + __builtin_ctz(sb);
            for (uint32_t bw = sp[w]; bw; bw &= bw - 1) p->acc.p[x++] = w * 32 + __builtin_ctz(bw);
            sp[w] = 0;
        }
        sum[sw] = 0;
    }
#undef IN_BASE
    p->acc.n = x;
    return x > (size_t)gram_mask_words(p->v);
}

/* A stack at the start of the walk whose top q has its sets already (a callee's state): its
 * accepted tokens are accepted here too, and each uncertain group's bytes (those after q's rule
 * ends) continue from the frames below, P: through to the end (accepted), or as uncertain
 * pairs where the walked state's own frame can end on the way (as the matcher does it). */
static int compose(struct pre *p, const struct gram_state_sets *cs, int32_t par, const uint32_t *follow) {
    const struct gram_vocab *v = p->v;
    struct gram_machine *m = &p->m;
    VEC(int32_t) ends = {0};
    int rc = 0;
    p->dup = 1;
    /* the accepted tokens: a large set (a cached one) becomes the base, a small list joins the
     * state's own tokens, and anything else is or-ed into bits0 */
    const struct gram_state_sets *big = cs->base ? cs->base : cs->kind != GRAM_SET_LIST || cs->num > BASE_MIN ? cs : NULL;
    if (big && big->in_cache && (!p->base || p->base == big)) {
        p->base = big;
        if (cs->base && append_ids(p, cs->ids, cs->num)) goto oom;
    } else if (big) {
        bits0_or(p, cs);
    } else if (append_ids(p, cs->ids, cs->num)) {
        goto oom;
    }
    for (int g = 0; g < cs->num_suffix; g++) {
        const uint8_t *sb = cs->suf_bytes + cs->suf_off[g];
        uint32_t L = cs->suf_off[g + 1] - cs->suf_off[g];
        int popped = 0, ok = 0;
        ends.n = 0;
        int32_t *nxt = p->cbuf[0];
        int ncur = gram_machine_closure(m, &par, 1, nxt, GRAM_MAX_STACKS, &popped);
        if (ncur < 0) { rc = WALK_OVERFLOW; goto out; }
        const int32_t *cur = nxt;
        for (uint32_t j = 0; j < L; j++) {
            p->steps++;
            if (popped && has(follow, sb[j]) && VPUSH(ends, (int32_t)j)) goto oom;
            int nr = gram_machine_step(m, cur, ncur, sb[j], p->raw, GRAM_MAX_STACKS);
            if (nr < 0) { rc = WALK_OVERFLOW; goto out; }
            if (nr == 0) break;
            if (j + 1 == L) {
                ok = 1;
                break;
            }
            popped = 0;
            nxt = p->cbuf[(j + 1) & 1];
            ncur = gram_machine_closure(m, p->raw, nr, nxt, GRAM_MAX_STACKS, &popped);
            if (ncur < 0) { rc = WALK_OVERFLOW; goto out; }
            cur = nxt;
        }
        if (ok && append_ids(p, cs->suf_toks + cs->suf_tok_off[g], (int)(cs->suf_tok_off[g + 1] - cs->suf_tok_off[g])))
            goto oom;
        for (uint32_t t = cs->suf_tok_off[g]; t < cs->suf_tok_off[g + 1] && !ok; t++) {
            int32_t tok = cs->suf_toks[t];
            int32_t base = (int32_t)(v->lens[tok] - L);
            for (size_t e = 0; e < ends.n; e++)
                if (VPUSH(p->pairs, tok) || VPUSH(p->pairs, base + ends.p[e])) goto oom;
        }
    }
out:
    free(ends.p);
    return rc;
oom:
    rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory");
    goto out;
}

/* Walks the trie from state s (its frame at the bottom) and returns its sets in one block. */
static int precompute(struct pre *p, int32_t s, const uint32_t *follow, struct gram_state_sets **out) {
    const struct gram_vocab *v = p->v;
    struct gram_machine *m = &p->m;
    int rc = 0;
    p->acc.n = 0;
    p->pairs.n = 0;
    p->sub.n = 0;
    p->dup = 0;
    p->have_bits0 = 0;
    p->base = NULL;
    if (p->pure[p->c->state_rule[s]]) {
        rc = walk_pure(p, s, follow);
        if (rc) return rc;
        goto sets;
    }
    gram_machine_clear(m);
    p->gen++; /* the cached bottom nodes (bnode) belong to the cleared machine */
    if (++p->tgen == 0) { /* wrapped: clear the stamps */
        memset(p->sstamp, 0, SET_CAP * sizeof *p->sstamp);
        memset(p->tstamp, 0, TR_CAP * sizeof *p->tstamp);
        p->tgen = 1;
    }
    p->spool.n = 0;
    p->soff.n = 0;
    p->ntrans = 0;
    if (VPUSH(p->soff, 0)) return folio_err(FOLIO_ENOMEM, "grammar: out of memory");
    int32_t n0 = gram_machine_node(m, s, GRAM_BOTTOM);
    int popped = 0;
    int nt = n0 < 0 ? -1 : gram_machine_closure(m, &n0, 1, p->lvl, GRAM_MAX_STACKS, &popped);
    if (nt < 0) goto overflow;
    p->lvl_n[0] = nt;
    p->pop[0] = 0; /* ending before any byte is the position's other stacks' business */
    p->unc[0] = 0;
    { /* stacks that start in a callee whose sets are known: composed, not walked */
        int w = 0;
        for (int i = 0; i < nt; i++) {
            const struct gram_node *nd = &m->nodes[p->lvl[i]];
            const struct gram_state_sets *cs =
                nd->parent == GRAM_BOTTOM ? NULL : __atomic_load_n(&p->c->sets[nd->state], __ATOMIC_ACQUIRE);
            if (!cs) {
                p->lvl[w++] = p->lvl[i];
                continue;
            }
            rc = compose(p, cs, nd->parent, follow);
            if (rc == WALK_OVERFLOW) goto overflow;
            if (rc) return rc;
        }
        p->lvl_n[0] = w;
        p->lvl_sid[0] = -1;
        /* no stack can end before a byte (pop[0] is 0), so a root child no top can take is
         * dead with nothing uncertain: walk skips those */
        memset(p->root_live, 0, sizeof p->root_live);
        for (int i = 0; i < w; i++) or_into(p->root_live, p->state_bytes[m->nodes[p->lvl[i]].state]);
    }
    rc = walk(p, 1, v->num_trie, follow);
    if (rc == WALK_OVERFLOW) goto overflow;
    if (rc) return rc;
    /* the pop points the memos left: from the frame below the callee, the rest of the token */
    while (p->sub.n) {
        int32_t par = p->sub.p[--p->sub.n];
        int32_t j = p->sub.p[--p->sub.n];
        int l = v->trie_depth[j] - 1;
        memset(p->pop, 0, (size_t)l);
        memset(p->unc, 0, (size_t)l * sizeof *p->unc);
        popped = 0;
        nt = gram_machine_closure(m, &par, 1, p->lvl + (size_t)l * GRAM_MAX_STACKS, GRAM_MAX_STACKS, &popped);
        if (nt < 0) goto overflow;
        p->lvl_n[l] = nt;
        p->lvl_sid[l] = -1;
        p->pop[l] = (uint8_t)popped;
        p->unc[l] = 0;
        rc = walk(p, j, v->trie_end[j], follow);
        if (rc == WALK_OVERFLOW) goto overflow;
        if (rc) return rc;
        p->dup = 1;
    }
sets:;
    /* representation: the smallest of the accepted list, a bitset, the list of the others.
     * Large sets come out of the bitset (sorting 100k ids per state was most of a compile). */
    int V = v->vocab_size, W = (V + 31) / 32;
    int sorted = 0;
    if (p->dup && !p->have_bits0 && p->acc.n <= (size_t)W * 4 && !sort_unique(p, 1))
        p->dup = 0, sorted = 1; /* acc is the state's own tokens (on top of the base, if any) */
    else if (p->base) { /* a dense set after all: the base goes into bits0 */
        bits0_or(p, p->base);
        p->base = NULL;
    }
    if (p->dup) { /* memos and sub-walks may accept a token more than once */
        if (p->have_bits0) memcpy(p->bits, p->bits0, (size_t)W * 4);
        else memset(p->bits, 0, (size_t)W * 4);
        for (size_t i = 0; i < p->acc.n; i++) p->bits[p->acc.p[i] >> 5] |= 1u << (p->acc.p[i] & 31);
        /* a token accepted through one stack needs no uncertain entries from another */
        size_t np2 = 0;
        for (size_t i = 0; i + 1 < p->pairs.n; i += 2)
            if (!(p->bits[p->pairs.p[i] >> 5] >> (p->pairs.p[i] & 31) & 1)) {
                p->pairs.p[np2++] = p->pairs.p[i];
                p->pairs.p[np2++] = p->pairs.p[i + 1];
            }
        p->pairs.n = np2;
    }
    int na = 0;
    if (p->dup) /* the bits are the set: count them, and list them only for a short list */
        for (int w = 0; w < W; w++) na += popcount32(p->bits[w]);
    else
        na = (int)p->acc.n;
    int kind = GRAM_SET_LIST;
    size_t body = (size_t)na * 4;
    if (!p->base && (size_t)W * 4 < body) kind = GRAM_SET_BITS, body = (size_t)W * 4;
    if (!p->base && (size_t)(V - na) * 4 < body) kind = GRAM_SET_COMPLEMENT, body = (size_t)(V - na) * 4;
    if (p->dup) {
        if (kind == GRAM_SET_LIST) {
            size_t x = 0;
            for (int w = 0; w < W; w++)
                for (uint32_t bw = p->bits[w]; bw; bw &= bw - 1) p->acc.p[x++] = w * 32 + __builtin_ctz(bw);
            p->acc.n = x;
        }
    } else if (kind == GRAM_SET_LIST) {
        if (!sorted && na > 16) { /* base is NULL here: nothing left out */
            sort_unique(p, 0);
        } else if (!sorted) {
            for (int i = 1; i < na; i++)
                for (int j = i; j > 0 && p->acc.p[j - 1] > p->acc.p[j]; j--) {
                    int32_t t = p->acc.p[j];
                    p->acc.p[j] = p->acc.p[j - 1];
                    p->acc.p[j - 1] = t;
                }
        }
    } else {
        memset(p->bits, 0, (size_t)W * 4);
        for (int i = 0; i < na; i++) p->bits[p->acc.p[i] >> 5] |= 1u << (p->acc.p[i] & 31);
    }
    size_t np = p->pairs.n / 2;
    if (np > 1) { /* sort records that point at the suffixes, then write the pairs back */
        struct suf_rec *rec = malloc(2 * np * sizeof *rec);
        if (!rec) goto oom;
        for (size_t i = 0; i < np; i++) {
            int32_t t = p->pairs.p[2 * i], l = p->pairs.p[2 * i + 1];
            const uint8_t *sb = v->bytes[t] + l;
            const uint32_t len = v->lens[t] - (uint32_t)l;
            uint64_t key = 0;
            for (uint32_t j = 0; j < 8; j++) key = key << 8 | (j < len ? sb[j] : 0);
            rec[i] = (struct suf_rec){key, sb, len, t, l};
        }
        sort_recs(rec, rec + np, np);
        for (size_t i = 0; i < np; i++) p->pairs.p[2 * i] = rec[i].tok, p->pairs.p[2 * i + 1] = rec[i].l;
        free(rec);
    }
    /* group by suffix */
    size_t nsuf = 0, sufbytes = 0;
    for (size_t i = 0; i < np; i++) {
        int32_t *a = p->pairs.p + 2 * i;
        if (i == 0) { nsuf++; sufbytes += v->lens[a[0]] - (uint32_t)a[1]; continue; }
        int32_t *pr = a - 2;
        uint32_t la = v->lens[a[0]] - (uint32_t)a[1], lp = v->lens[pr[0]] - (uint32_t)pr[1];
        if (la != lp || memcmp(v->bytes[a[0]] + a[1], v->bytes[pr[0]] + pr[1], la)) {
            nsuf++;
            sufbytes += la;
        }
    }
    size_t total = sizeof(struct gram_state_sets) + body + (nsuf + 1) * 12 + np * 4 + sufbytes + 16;
    struct gram_state_sets *o = malloc(total);
    if (!o) goto oom;
    uint8_t *q = (uint8_t *)(o + 1);
    o->kind = kind;
    o->bytes = total;
    o->ids = NULL;
    o->bits = NULL;
    o->base = p->base;
    o->in_cache = 0;
    if (kind == GRAM_SET_LIST) {
        o->num = na;
        if (na) memcpy(q, p->acc.p, (size_t)na * 4);
        o->ids = (const int32_t *)q;
    } else if (kind == GRAM_SET_BITS) {
        memcpy(q, p->bits, (size_t)W * 4);
        o->num = W;
        o->bits = (const uint32_t *)q;
    } else {
        int32_t *ids = (int32_t *)q;
        int x = 0;
        for (int w = 0; w < W; w++) {
            uint32_t inv = ~p->bits[w];
            if (w == W - 1 && (V & 31)) inv &= (1u << (V & 31)) - 1;
            for (; inv; inv &= inv - 1) ids[x++] = w * 32 + __builtin_ctz(inv);
        }
        o->num = x;
        o->ids = ids;
    }
    q += body;
    uint32_t *suf_off = (uint32_t *)q;
    uint32_t *tok_off = suf_off + nsuf + 1;
    uint32_t *lcp = tok_off + nsuf + 1;
    int32_t *toks = (int32_t *)(lcp + nsuf + 1);
    uint8_t *sb = (uint8_t *)(toks + np);
    o->num_suffix = (int)nsuf;
    o->suf_off = suf_off;
    o->suf_tok_off = tok_off;
    o->suf_lcp = lcp;
    o->suf_toks = toks;
    o->suf_bytes = sb;
    size_t g = 0, bo = 0;
    for (size_t i = 0; i < np; i++) {
        int32_t *a = p->pairs.p + 2 * i;
        uint32_t la = v->lens[a[0]] - (uint32_t)a[1];
        int fresh = i == 0;
        if (!fresh) {
            int32_t *pr = a - 2;
            uint32_t lp = v->lens[pr[0]] - (uint32_t)pr[1];
            fresh = la != lp || memcmp(v->bytes[a[0]] + a[1], v->bytes[pr[0]] + pr[1], la);
        }
        if (fresh) {
            suf_off[g] = (uint32_t)bo;
            tok_off[g] = (uint32_t)i;
            /* the bytes it shares with the previous suffix: the matcher reuses that walk */
            uint32_t l = 0;
            if (g) {
                uint32_t lp = suf_off[g] - suf_off[g - 1], mn = la < lp ? la : lp;
                const uint8_t *prev = sb + suf_off[g - 1], *cur = v->bytes[a[0]] + a[1];
                while (l < mn && prev[l] == cur[l]) l++;
            }
            lcp[g] = l;
            memcpy(sb + bo, v->bytes[a[0]] + a[1], la);
            bo += la;
            g++;
        }
        toks[i] = a[0];
    }
    suf_off[nsuf] = (uint32_t)bo;
    tok_off[nsuf] = (uint32_t)np;
    *out = o;
    return 0;
oom:
    return folio_err(FOLIO_ENOMEM, "grammar: out of memory");
overflow:
    rc = folio_err(FOLIO_EINVAL, "grammar too complex: a state's token walk exceeds GRAM_MAX_STACKS or GRAM_COMPILE_NODES");
    return rc;
}

/* The sets of state s, from the cache or computed, after those of the callees' start states it
 * calls (so that its walk can compose them). */
static int ensure_sets(struct pre *p, int32_t s, int depth) {
    struct gram_compiled *c = p->c;
    /* other threads publish their states' sets (gram_compile's second phase): a set is read
     * whole or not at all, and a state not there yet is walked instead of composed */
    if (!p->reach[s] || !c->state_bytes[s] || __atomic_load_n(&c->sets[s], __ATOMIC_ACQUIRE)) return 0;
    if (depth < 32)
        for (int32_t k = c->call_off[s]; k < c->call_off[s + 1]; k++) {
            int32_t q = c->rule_start[c->call_rule[k]];
            if (q < 0 || q == s) continue;
            int rc = ensure_sets(p, q, depth + 1);
            if (rc) return rc;
        }
    int r = c->state_rule[s];
    const uint32_t(*follow)[8] = p->follow;
    uint64_t k0 = folio_mix64(p->ch0[r] ^ p->fut[s]);
    uint64_t k1 = folio_mix64(p->ch1[r] ^ folio_mix64(p->fut[s] ^ 0x5eed));
    for (int i = 0; i < 8; i++) {
        k0 = folio_mix64(k0 ^ follow[r][i]);
        k1 = folio_mix64(k1 ^ (uint64_t)follow[r][i] << 11);
    }
    /* one thread computes a state; the others walk through it meanwhile (a composition only
     * saves work, it changes no result) */
    if (__atomic_exchange_n(&p->claim[s], 1, __ATOMIC_ACQ_REL)) return 0;
    struct gram_vocab *v = c->vocab;
    const struct gram_state_sets *cached = NULL;
    if (p->rep[s] != s) { /* its class's first state: computed first, or being computed */
        int rc = ensure_sets(p, p->rep[s], depth + 1);
        if (rc) return rc;
        cached = __atomic_load_n(&c->sets[p->rep[s]], __ATOMIC_ACQUIRE);
    }
    if (!cached) cached = gram_vocab_cache_get(v, k0, k1);
    if (!cached) {
        struct gram_state_sets *fresh = NULL;
        /* the budget is the compile's: every thread's finished states count */
        const int64_t before = p->steps = __atomic_load_n(p->total_steps, __ATOMIC_RELAXED);
        int rc = precompute(p, s, follow[r], &fresh);
        __atomic_add_fetch(p->total_steps, p->steps - before, __ATOMIC_RELAXED);
        if (rc) return rc;
        cached = gram_vocab_cache_put(v, k0, k1, fresh);
        if (!cached) { /* cache full: this grammar keeps its own */
            if (VPUSH(*p->owned, fresh)) {
                free(fresh);
                return folio_err(FOLIO_ENOMEM, "grammar: out of memory");
            }
            p->owned_bytes += fresh->bytes;
            cached = fresh;
            if (p->owned_bytes + c->bytes > GRAM_MAX_COMPILED_BYTES)
                return folio_err(FOLIO_EINVAL, "grammar exceeds GRAM_MAX_COMPILED_BYTES (%zu)", GRAM_MAX_COMPILED_BYTES);
        }
    }
    __atomic_store_n(&c->sets[s], cached, __ATOMIC_RELEASE);
    return 0;
}

/* A compile thread's own buffers; the fields shared by all of them (the automata, hashes,
 * FOLLOW sets, reach, pure, claims) are copied from tmpl, which sets nothing else. */
static int pre_init(struct pre *p, const struct pre *tmpl) {
    const struct gram_vocab *v = tmpl->v;
    const size_t L = (size_t)v->max_len + 1, W = (size_t)gram_mask_words(v);
    const int ns = tmpl->c->num_states;
    *p = *tmpl; /* the shared fields; the rest of tmpl is zero */
    p->owned = &p->own;
    p->lvl = malloc(L * GRAM_MAX_STACKS * sizeof *p->lvl);
    p->lvl_n = malloc(L * sizeof *p->lvl_n);
    p->pop = malloc(L);
    p->unc = malloc(L * sizeof *p->unc);
    p->path = malloc(L + 1);
    p->bits = malloc(W * 4 + 4);
    p->bits0 = malloc(W * 4 + 4);
    p->sparse = calloc(W + 1, 4);
    p->sparse_sum = calloc(W / 32 + 2, 4);
    p->bnode = malloc(((size_t)ns + 1) * sizeof *p->bnode);
    p->bgen = calloc((size_t)ns + 1, sizeof *p->bgen);
    p->acc.cap = (size_t)v->vocab_size + 1;
    p->acc.p = malloc(p->acc.cap * sizeof *p->acc.p);
    p->mst = malloc(L * sizeof *p->mst);
    p->lvl_sid = malloc(L * sizeof *p->lvl_sid);
    p->sslot = malloc(SET_CAP * sizeof *p->sslot);
    p->sstamp = calloc(SET_CAP, sizeof *p->sstamp);
    p->tkey = malloc(TR_CAP * sizeof *p->tkey);
    p->tstamp = calloc(TR_CAP, sizeof *p->tstamp);
    p->tnext = malloc(TR_CAP * sizeof *p->tnext);
    p->tpop = malloc(TR_CAP);
    if (!p->lvl || !p->lvl_n || !p->pop || !p->unc || !p->path || !p->bits || !p->bits0 || !p->sparse ||
        !p->sparse_sum || !p->bnode || !p->bgen || !p->acc.p || !p->mst || !p->lvl_sid || !p->sslot || !p->sstamp ||
        !p->tkey || !p->tstamp || !p->tnext || !p->tpop || gram_machine_init(&p->m, p->c, GRAM_COMPILE_NODES))
        return folio_err(FOLIO_ENOMEM, "grammar: out of memory");
    return 0;
}

/* Frees a thread's buffers, and the sets it owns unless they were handed over. */
static void pre_release(struct pre *p) {
    for (size_t i = 0; i < p->own.n; i++) free(p->own.p[i]);
    free(p->own.p);
    free(p->lvl);
    free(p->lvl_n);
    free(p->pop);
    free(p->unc);
    free(p->path);
    free(p->acc.p);
    free(p->bits);
    free(p->bits0);
    free(p->sparse);
    free(p->sparse_sum);
    free(p->bnode);
    free(p->bgen);
    free(p->pairs.p);
    free(p->mst);
    free(p->lvl_sid);
    free(p->sslot);
    free(p->sstamp);
    free(p->tkey);
    free(p->tstamp);
    free(p->tnext);
    free(p->tpop);
    free(p->spool.p);
    free(p->soff.p);
    free(p->sub.p);
    gram_machine_release(&p->m);
}

/* The threads share the rules, once per phase (determinize; hash; future classes), then the
 * states whose sets to compute; what needs every rule at once (assembling the automata, FOLLOW
 * sets, the closure hashes) runs on the compile's own thread in between. Each thread takes
 * items until a list runs out or a thread fails. Helpers start when the compile does and spin
 * between the lists: one that slept would take a millisecond or more to run again. Before, the
 * serial middle was about a quarter of a median MaskBench compile. */
enum { PHASE_DFA = 1, PHASE_HASH, PHASE_FUTURE, PHASE_STATES };

struct work_list {
    const struct grammar *g;
    struct rule_dfa *d;
    int32_t nrules;
    int32_t next_rule[PHASE_STATES], rules_done[PHASE_STATES]; /* per phase: never reset, so a late claim cannot take the next phase's rule */
    /* PHASE_HASH and PHASE_FUTURE read and write these (each rule its own entries) */
    const struct gram_compiled *c;
    const int32_t *rbase, *nst;
    uint64_t *lh0, *lh1, *fut;
    const uint64_t *ch0;
    int32_t *rep;
    int horizon;
    const struct pre *tmpl;
    const int32_t *todo;
    int32_t ntodo, next;
    int ready; /* the phase whose inputs are ready (PHASE_*); -1: leave */
    int stop;  /* a thread failed */
};

struct worker {
    struct pre p;
    struct work_list *list;
    int rc;
    char err[256]; /* folio_last_error is per thread */
    pthread_t thread;
    int started, inited;
};

static int wait_ready(struct work_list *l, int phase) {
    int r;
    while ((r = __atomic_load_n(&l->ready, __ATOMIC_ACQUIRE)) >= 0 && r < phase) sched_yield();
    return r >= phase;
}

static void failed(struct worker *w, int rc) {
    w->rc = rc;
    snprintf(w->err, sizeof w->err, "%s", folio_last_error());
    __atomic_store_n(&w->list->stop, 1, __ATOMIC_RELEASE);
}

/* One per-rule phase: claims rules until none is left, and returns once every rule is done (by
 * whichever thread). Determinizing, the rules' own hashes and their future classes each need
 * nothing from another rule's share of the same phase. */
static void work_rules(struct worker *w, int phase) {
    struct work_list *l = w->list;
    for (;;) {
        const int32_t r = __atomic_fetch_add(&l->next_rule[phase - 1], 1, __ATOMIC_RELAXED);
        if (r >= l->nrules) break;
        if (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE)) {
            int rc = 0;
            if (phase == PHASE_DFA) {
                rc = determinize(l->g, r, &l->d[r]);
            } else if (phase == PHASE_HASH) {
                rule_hash(l->c, r, l->rbase[r], l->nst[r], 0x1234, &l->lh0[r]);
                rule_hash(l->c, r, l->rbase[r], l->nst[r], 0x9876543, &l->lh1[r]);
            } else {
                rc = future_classes(l->c, r, l->rbase[r], l->nst[r], l->ch0, l->horizon, l->fut, l->rep);
            }
            if (rc) failed(w, rc);
        }
        __atomic_add_fetch(&l->rules_done[phase - 1], 1, __ATOMIC_RELEASE);
    }
    while (__atomic_load_n(&l->rules_done[phase - 1], __ATOMIC_ACQUIRE) < l->nrules) sched_yield();
}

/* The calling thread's share of a per-rule phase, its inputs published first; 0 or the first
 * error of any thread. */
static int run_phase(struct worker *workers, int nworkers, struct work_list *l, int phase) {
    __atomic_store_n(&l->ready, phase, __ATOMIC_RELEASE);
    work_rules(&workers[0], phase);
    for (int i = 0; i < nworkers; i++)
        if (workers[i].rc) return i == 0 ? workers[i].rc : folio_err(workers[i].rc, "%s", workers[i].err);
    return 0;
}

static void work_states(struct worker *w) {
    struct work_list *l = w->list;
    while (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE)) {
        const int32_t i = __atomic_fetch_add(&l->next, 1, __ATOMIC_RELAXED);
        if (i >= l->ntodo) break;
        int rc = ensure_sets(&w->p, l->todo[i], 0);
        if (rc) failed(w, rc);
    }
}

static void *helper_main(void *arg) {
    struct worker *w = arg;
    for (int phase = PHASE_DFA; phase < PHASE_STATES; phase++) {
        if (!wait_ready(w->list, phase)) return NULL;
        work_rules(w, phase);
    }
    if (!wait_ready(w->list, PHASE_STATES)) return NULL;
    w->inited = 1;
    if (pre_init(&w->p, w->list->tmpl)) return NULL; /* the other threads do its share */
    work_states(w);
    return NULL;
}

/* ---- gram_compile ---------------------------------------------------------------------------- */

int gram_compile(const struct grammar *g, struct gram_vocab *v, struct gram_compiled **out) {
    int rc = 0;
    *out = NULL;
    int nr = g->num_rules;
    struct gram_compiled *c = calloc(1, sizeof *c);
    struct rule_dfa *d = calloc((size_t)nr, sizeof *d);
    uint8_t *live = NULL, *reach = NULL;
    uint32_t(*follow)[8] = NULL;
    uint64_t *lh0 = NULL, *lh1 = NULL, *ch0 = NULL, *ch1 = NULL;
    int32_t *order = NULL, *seen = NULL, *queue = NULL;
    int32_t *nst = NULL, *rbase = NULL;
    struct worker *workers = NULL;
    struct work_list list = {0};
    int nworkers = 0;
    uint8_t *pure = NULL, *claim = NULL;
    uint32_t(*state_bytes)[8] = NULL;
    uint64_t *fut = NULL;
    int32_t *rep = NULL;
    int64_t total_steps = 0;
    if (!c || !d) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    c->vocab = v;
    nworkers = v->compile_threads > 1 ? v->compile_threads : 1;
    workers = calloc((size_t)nworkers, sizeof *workers);
    if (!workers) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    for (int i = 0; i < nworkers; i++) workers[i].list = &list;
    if (nworkers > 1) {
        /* helpers go to the other cores: queued behind this thread, one would wait out its time
         * slice (milliseconds) before the scheduler moved it */
        pthread_attr_t attr;
        cpu_set_t cpus;
        const int self = sched_getcpu();
        int pinned = pthread_attr_init(&attr) == 0;
        if (pinned && self >= 0 && sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) > 1) {
            CPU_CLR(self, &cpus);
            pthread_attr_setaffinity_np(&attr, sizeof cpus, &cpus);
        }
        for (int i = 1; i < nworkers; i++)
            workers[i].started = pthread_create(&workers[i].thread, pinned ? &attr : NULL, helper_main, &workers[i]) == 0;
        if (pinned) pthread_attr_destroy(&attr);
    }
    list.g = g;
    list.d = d;
    list.nrules = nr;
    rc = run_phase(workers, nworkers, &list, PHASE_DFA);
    if (rc) goto out;
    rc = assemble(c, d, nr);
    if (rc) goto out;
    int ns = c->num_states;
    live = malloc((size_t)ns + 1);
    reach = calloc((size_t)ns + 1, 1);
    follow = calloc((size_t)nr, sizeof *follow);
    queue = malloc(((size_t)ns + 1) * sizeof *queue);
    nst = malloc((size_t)nr * sizeof *nst);
    rbase = malloc((size_t)nr * sizeof *rbase);
    if (!live || !reach || !follow || !queue || !nst || !rbase) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    for (int r = 0; r < nr; r++) nst[r] = d[r].nstates;
    for (int r = 0; r < nr; r++) rbase[r] = c->rule_start[r]; /* before trim marks dead rules -1 */
    trim(c, live);
    if (c->rule_start[0] < 0) { /* a matcher could only ever offer an empty mask */
        rc = folio_err(FOLIO_EINVAL, "grammar matches no string at all");
        goto out;
    }
    state_bytes = malloc(((size_t)ns + 1) * sizeof *state_bytes);
    if (!state_bytes) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    state_byte_sets(c, state_bytes);
    rc = follow_sets(c, (const uint32_t(*)[8])state_bytes, follow);
    if (rc) goto out;
    /* states reachable from the root's start */
    int qn = 0;
    if (c->rule_start[0] >= 0) reach[c->rule_start[0]] = 1, queue[qn++] = c->rule_start[0];
    for (int qi = 0; qi < qn; qi++) {
        int32_t s = queue[qi];
        int r = c->state_rule[s];
        for (int k = 0; k < c->rule_ncls[r]; k++) {
            int32_t t = c->trans[c->trans_off[s] + k];
            if (t >= 0 && !reach[t]) reach[t] = 1, queue[qn++] = t;
        }
        for (int k = c->call_off[s]; k < c->call_off[s + 1]; k++) {
            int32_t a = c->rule_start[c->call_rule[k]], b = c->call_ret[k];
            if (!reach[a]) reach[a] = 1, queue[qn++] = a;
            if (!reach[b]) reach[b] = 1, queue[qn++] = b;
        }
    }
    /* closure hashes: the rule and the rules it calls, numbered in breadth-first order */
    lh0 = malloc((size_t)nr * 8);
    lh1 = malloc((size_t)nr * 8);
    ch0 = malloc((size_t)nr * 8);
    ch1 = malloc((size_t)nr * 8);
    order = malloc((size_t)nr * sizeof *order);
    seen = malloc((size_t)nr * sizeof *seen);
    if (!lh0 || !lh1 || !ch0 || !ch1 || !order || !seen) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    list.c = c;
    list.rbase = rbase;
    list.nst = nst;
    list.lh0 = lh0;
    list.lh1 = lh1;
    rc = run_phase(workers, nworkers, &list, PHASE_HASH);
    if (rc) goto out;
    for (int r = 0; r < nr; r++) seen[r] = -1;
    for (int r = 0; r < nr; r++) {
        if (c->rule_start[r] < 0) continue;
        int no = 0;
        order[no++] = r;
        seen[r] = 0; /* BFS index within this closure; reset below */
        uint64_t h0 = 0xc105, h1 = 0x5e7;
        for (int oi = 0; oi < no; oi++) {
            int q = order[oi];
            h0 = folio_mix64(h0 ^ lh0[q]);
            h1 = folio_mix64(h1 ^ lh1[q]);
            int32_t base = rbase[q];
            for (int s = base; s < base + nst[q]; s++)
                for (int k = c->call_off[s]; k < c->call_off[s + 1]; k++) {
                    int cq = c->call_rule[k];
                    if (seen[cq] < 0) {
                        seen[cq] = no;
                        order[no++] = cq;
                    }
                    h0 = folio_mix64(h0 ^ (uint64_t)seen[cq]);
                    h1 = folio_mix64(h1 ^ (uint64_t)seen[cq] << 7);
                }
        }
        for (int oi = 0; oi < no; oi++) seen[order[oi]] = -1;
        ch0[r] = h0;
        ch1[r] = h1;
    }
    /* precompute the sets of every reachable state that can take a byte: first the rules'
     * start states, which the others compose (each after the start states it calls), then the
     * rest, which need nothing from each other, on up to v->compile_threads threads */
    pure = calloc((size_t)nr, 1);
    if (!pure) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    for (int r = 0; r < nr; r++) {
        pure[r] = 1;
        for (int32_t st = rbase[r]; st < rbase[r] + nst[r]; st++)
            if (c->call_off[st] != c->call_off[st + 1]) pure[r] = 0;
    }
    claim = calloc((size_t)ns + 1, 1);
    if (!claim) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    fut = malloc(((size_t)ns + 1) * sizeof *fut);
    if (!fut) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    rep = malloc(((size_t)ns + 1) * sizeof *rep);
    if (!rep) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
    list.ch0 = ch0;
    list.fut = fut;
    list.rep = rep;
    list.horizon = (int)v->max_len + 1;
    rc = run_phase(workers, nworkers, &list, PHASE_FUTURE);
    if (rc) goto out;
    struct pre tmpl = {.c = c, .v = v, .g = g, .ch0 = ch0, .ch1 = ch1, .fut = fut, .rep = rep, .rbase = rbase,
                       .follow = (const uint32_t(*)[8])follow, .reach = reach, .pure = pure,
                       .claim = claim, .total_steps = &total_steps,
                       .state_bytes = (const uint32_t(*)[8])state_bytes};
    /* the rules' start states first (the later rules first: callees are made before their
     * callers), so that most states find their callees' sets ready to compose */
    int32_t ntodo = 0;
    for (int r = nr - 1; r >= 0; r--)
        if (c->rule_start[r] >= 0 && reach[c->rule_start[r]] && c->state_bytes[c->rule_start[r]])
            queue[ntodo++] = c->rule_start[r];
    for (int32_t s = 0; s < ns; s++) /* queue is free again */
        if (reach[s] && c->state_bytes[s] && c->rule_start[c->state_rule[s]] != s) queue[ntodo++] = s;
    list.tmpl = &tmpl;
    list.todo = queue;
    list.ntodo = ntodo;
    __atomic_store_n(&list.ready, PHASE_STATES, __ATOMIC_RELEASE); /* helpers set up their buffers meanwhile */
    workers[0].inited = 1;
    rc = pre_init(&workers[0].p, &tmpl);
    if (rc) __atomic_store_n(&list.stop, 1, __ATOMIC_RELEASE);
    else work_states(&workers[0]);
    for (int i = 1; i < nworkers; i++)
        if (workers[i].started) pthread_join(workers[i].thread, NULL), workers[i].started = 0;
    for (int i = 0; i < nworkers && !rc; i++)
        if (workers[i].rc) rc = i == 0 ? workers[i].rc : folio_err(workers[i].rc, "%s", workers[i].err);
    if (rc) goto out;
    size_t owned_n = 0;
    for (int i = 0; i < nworkers; i++) owned_n += workers[i].p.own.n, c->bytes += workers[i].p.owned_bytes;
    if (c->bytes > GRAM_MAX_COMPILED_BYTES) {
        rc = folio_err(FOLIO_EINVAL, "grammar exceeds GRAM_MAX_COMPILED_BYTES (%zu)", GRAM_MAX_COMPILED_BYTES);
        goto out;
    }
    if (owned_n) { /* a NULL-terminated list, freed with the grammar */
        void **all = malloc((owned_n + 1) * sizeof *all);
        if (!all) { rc = folio_err(FOLIO_ENOMEM, "grammar: out of memory"); goto out; }
        size_t k = 0;
        for (int i = 0; i < nworkers; i++) {
            memcpy(all + k, workers[i].p.own.p, workers[i].p.own.n * sizeof *all);
            k += workers[i].p.own.n;
            workers[i].p.own.n = 0;
        }
        all[k] = NULL;
        c->owned = all;
    }
    *out = c;
    c = NULL;
out:
    gram_compiled_free(c);
    if (d)
        for (int r = 0; r < nr; r++) rule_dfa_free(&d[r]);
    free(d);
    free(live);
    free(reach);
    free(follow);
    free(queue);
    free(nst);
    free(rbase);
    free(lh0);
    free(lh1);
    free(ch0);
    free(ch1);
    free(order);
    free(seen);
    if (workers) { /* helpers still waiting (an error before the list was ready) leave now */
        __atomic_store_n(&list.ready, -1, __ATOMIC_RELEASE);
        for (int i = 1; i < nworkers; i++)
            if (workers[i].started) pthread_join(workers[i].thread, NULL);
        for (int i = 0; i < nworkers; i++)
            if (workers[i].inited) pre_release(&workers[i].p);
    }
    free(workers);
    free(pure);
    free(claim);
    free(state_bytes);
    free(fut);
    free(rep);
    return rc;
}
