/* tok_util: the tokenizer's small containers, out of line: the string list that
 * pre-tokenizers pass along, the string map's insert side, and the tokenizer.json getters.
 * The hot lookups are static inline in tok_internal.h; what is here runs at load time or
 * grows a buffer. */
#include "text/tok_internal.h"

int tok_plist_push(struct plist *l, const char *s, size_t n) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        struct span *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        l->v = v;
        l->cap = cap;
    }
    size_t off = l->buf.n;
    int rc = sbuf_put(&l->buf, s, n);
    if (rc) return rc;
    l->v[l->n].off = off;
    l->v[l->n].len = n;
    l->n++;
    return 0;
}

void tok_plist_clear(struct plist *l) {
    l->n = 0;
    l->buf.n = 0;
}

void tok_plist_free(struct plist *l) {
    free(l->buf.p);
    free(l->v);
}

int tok_smap_init(struct smap *m, size_t expect) {
    size_t cap = 16;
    while (cap < expect * 2) cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    if (!m->slots) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
    m->cap = cap;
    m->n = 0;
    return 0;
}

/* s must outlive the map (arena string). Overwrites an existing key, like a JS Map.set. */
int tok_smap_set(struct smap *m, const char *s, size_t n, int32_t val) {
    if ((m->n + 1) * 2 > m->cap) {
        struct smap old = *m;
        if (tok_smap_init(m, old.cap) != 0) {
            *m = old;
            return FOLIO_ENOMEM;
        }
        for (size_t i = 0; i < old.cap; i++) {
            if (!old.slots[i].s) continue;
            struct smap_slot *sl = tok_smap_find_slot(m, old.slots[i].s, old.slots[i].len);
            *sl = old.slots[i];
            m->n++;
        }
        free(old.slots);
    }
    struct smap_slot *sl = tok_smap_find_slot(m, s, n);
    if (!sl->s) {
        sl->s = s;
        sl->len = (uint32_t)n;
        m->n++;
    }
    sl->val = val;
    return 0;
}

const char *tok_jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int tok_jbool(const cJSON *o, const char *k, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}
