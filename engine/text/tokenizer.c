/* tokenizer: loads a Hugging Face tokenizer.json (BPE model, normalizers, pre-tokenizers,
 * post-processor, decoders, added tokens) and encodes/decodes exactly as
 * @huggingface/tokenizers does. Where that JS port and the Rust `tokenizers` crate disagree
 * on something only the JS port's bugs explain (BOM stripping after byte fallback, JS's own
 * \s class in the GPT-2 regex), we follow Rust; everything else mirrors the JS code path,
 * which the comparison suite in tests/tokenizer/ checks string by string.
 *
 * Encoding pipeline (per call): split the raw text on added tokens (longest match first),
 * normalize each remaining section, split again on normalized added tokens, pre-tokenize,
 * run BPE on each pre-token, then wrap with the post-processor's special tokens.
 *
 * This file loads tokenizer.json/tokenizer_config.json, handles added and special tokens and
 * the post-processor, and drives the pipeline; the stages live in tok_normalize.c
 * (normalizers, pre-tokenizers), tok_bpe.c (the model) and tok_decode.c (decoders), with
 * shared types in tok_internal.h. */
#include "text/tok_internal.h"

#include <stdio.h>

/* ------------------------------------------------------------------------------------------
 * Loading */

/* The id for a post-processor's special token: tokenizer.json's special_tokens map gives
 * ids; otherwise the token's string, as the JS port looks it up. */
static int template_token(struct tokenizer *t, const cJSON *specials, const char *name,
                          int32_t *out, int *n) {
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(specials, name);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(sp, "ids");
    if (cJSON_IsArray(ids)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, ids) {
            if (*n >= MAX_TEMPLATE) return folio_err(FOLIO_EUNSUP, "tokenizer: template too long");
            out[(*n)++] = (int32_t)it->valuedouble;
        }
        return 0;
    }
    int32_t id = tok_vocab_lookup(t, name, strlen(name));
    if (id < 0) return folio_err(FOLIO_EINVAL, "tokenizer: template token \"%s\" not in vocab", name);
    if (*n >= MAX_TEMPLATE) return folio_err(FOLIO_EUNSUP, "tokenizer: template too long");
    out[(*n)++] = id;
    return 0;
}

/* Composes one post-processor onto t->tmpl (which starts as just the sequence, -1). */
static int parse_post(struct tokenizer *t, const cJSON *j) {
    int rc;
    const char *type = tok_jstr(j, "type");
    int32_t wrap[MAX_TEMPLATE];
    int nw = 0;
    if (!type) return folio_err(FOLIO_EINVAL, "tokenizer: post_processor without a type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "processors")) {
            if ((rc = parse_post(t, it))) return rc;
        }
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) return 0; /* offsets only */
    if (!strcmp(type, "TemplateProcessing")) {
        const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "single")) {
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
            const cJSON *sq = cJSON_GetObjectItemCaseSensitive(it, "Sequence");
            if (st) {
                const char *name = tok_jstr(st, "id");
                if (!name) return folio_err(FOLIO_EINVAL, "tokenizer: bad template SpecialToken");
                if ((rc = template_token(t, specials, name, wrap, &nw))) return rc;
            } else if (sq) {
                const char *id = tok_jstr(sq, "id");
                if (id && !strcmp(id, "A")) {
                    if (nw >= MAX_TEMPLATE) return folio_err(FOLIO_EUNSUP, "tokenizer: template too long");
                    wrap[nw++] = -1;
                }
            }
        }
    } else if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        const cJSON *cls = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "cls"), 1);
        const cJSON *sep = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "sep"), 1);
        if (!cJSON_IsNumber(cls) || !cJSON_IsNumber(sep))
            return folio_err(FOLIO_EINVAL, "tokenizer: %s without cls/sep ids", type);
        wrap[nw++] = (int32_t)cls->valuedouble;
        wrap[nw++] = -1;
        wrap[nw++] = (int32_t)sep->valuedouble;
    } else {
        return folio_err(FOLIO_EUNSUP, "tokenizer: unsupported post_processor type \"%s\"", type);
    }
    int32_t out[MAX_TEMPLATE];
    int no = 0;
    for (int i = 0; i < nw; i++) {
        if (wrap[i] != -1) {
            if (no >= MAX_TEMPLATE) return folio_err(FOLIO_EUNSUP, "tokenizer: template too long");
            out[no++] = wrap[i];
            continue;
        }
        for (int k = 0; k < t->n_tmpl; k++) {
            if (no >= MAX_TEMPLATE) return folio_err(FOLIO_EUNSUP, "tokenizer: template too long");
            out[no++] = t->tmpl[k];
        }
    }
    memcpy(t->tmpl, out, (size_t)no * sizeof *out);
    t->n_tmpl = no;
    return 0;
}

static int build_matcher(struct matcher *m, const struct added_tok *added, int n, int normalized) {
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        const char *s = normalized ? added[i].norm : (added[i].norm ? NULL : added[i].content);
        size_t len = normalized ? added[i].normlen : added[i].len;
        if (s && len) cnt++;
    }
    m->e = calloc((size_t)cnt + 1, sizeof *m->e);
    if (!m->e) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
    int k = 0;
    for (int b = 0; b < 256; b++) {
        m->start[b] = k;
        for (int i = 0; i < n; i++) {
            const char *s = normalized ? added[i].norm : (added[i].norm ? NULL : added[i].content);
            size_t len = normalized ? added[i].normlen : added[i].len;
            if (!s || !len || (unsigned char)s[0] != b) continue;
            int pos = k++;
            /* insertion sort: longest first */
            while (pos > m->start[b] && m->e[pos - 1].len < len) {
                m->e[pos] = m->e[pos - 1];
                pos--;
            }
            m->e[pos].s = s;
            m->e[pos].len = len;
        }
    }
    m->start[256] = k;
    return 0;
}

static int load_added(struct tokenizer *t, const cJSON *arr, pcre2_match_data *md) {
    int rc = 0;
    struct sbuf nb = {0};
    struct ivec scratch = {0};
    t->n_added = cJSON_GetArraySize(arr);
    t->added = calloc((size_t)t->n_added + 1, sizeof *t->added);
    if (!t->added) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
    if ((rc = tok_smap_init(&t->added_map, (size_t)t->n_added * 2 + 1)) ||
        (rc = tok_smap_init(&t->added_content, (size_t)t->n_added + 1)))
        goto out;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        struct added_tok *a = &t->added[i];
        const char *content = tok_jstr(it, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (!content || !cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 1e8) {
            rc = folio_err(FOLIO_EINVAL, "tokenizer: added token %d lacks content or id", i);
            goto out;
        }
        a->len = strlen(content);
        if (!(a->content = arena_dup(&t->arena, content, a->len))) {
            rc = FOLIO_ENOMEM;
            goto out;
        }
        a->id = (int32_t)id->valuedouble;
        a->special = tok_jbool(it, "special", 0);
        a->lstrip = tok_jbool(it, "lstrip", 0);
        a->rstrip = tok_jbool(it, "rstrip", 0);
        a->single_word = tok_jbool(it, "single_word", 0);
        a->normalized = tok_jbool(it, "normalized", !a->special);
        if ((rc = tok_smap_set(&t->vocab, a->content, a->len, a->id)) ||
            (rc = tok_smap_set(&t->added_map, a->content, a->len, i)) ||
            (rc = tok_smap_set(&t->added_content, a->content, a->len, i)))
            goto out;
        if (a->normalized && t->norm) {
            nb.n = 0;
            if ((rc = tok_normalize(t->norm, a->content, a->len, &nb, md, &scratch))) goto out;
            if ((rc = sbuf_put(&nb, "", 0))) goto out;
            a->normlen = nb.n;
            if (!(a->norm = arena_dup(&t->arena, nb.p, nb.n))) {
                rc = FOLIO_ENOMEM;
                goto out;
            }
            if ((rc = tok_smap_set(&t->added_map, a->norm, a->normlen, i))) goto out;
        }
        i++;
    }
    if ((rc = build_matcher(&t->m_raw, t->added, t->n_added, 0)) ||
        (rc = build_matcher(&t->m_norm, t->added, t->n_added, 1)))
        goto out;
out:
    free(nb.p);
    free(scratch.v);
    return rc;
}

static int read_json(const char *dir, const char *name, int required, cJSON **out) {
    char path[4096];
    char *text = NULL;
    size_t len = 0;
    int rc = folio_path_join(path, sizeof path, dir, name);
    if (rc) return rc;
    *out = NULL;
    if (!required && !folio_file_exists(path)) return 0;
    if ((rc = folio_read_file(path, &text, &len))) return rc;
    *out = cJSON_ParseWithLength(text, len);
    free(text);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return folio_err(FOLIO_EINVAL, "tokenizer: %s is not a JSON object", path);
    }
    return 0;
}

/* bos_token/eos_token in tokenizer_config.json: a string or {"content": ...}. */
static int32_t config_token(const struct tokenizer *t, const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    const char *s = cJSON_IsString(v) ? v->valuestring : tok_jstr(v, "content");
    return s ? tok_vocab_lookup(t, s, strlen(s)) : -1;
}

int tokenizer_load(const char *dir, struct tokenizer **out) {
    int rc;
    cJSON *root = NULL, *cfg = NULL;
    pcre2_match_data *md = NULL;
    struct tokenizer *t = NULL;
    *out = NULL;
    tok_bytelevel_init();
    if ((rc = read_json(dir, "tokenizer.json", 1, &root))) goto out;
    if ((rc = read_json(dir, "tokenizer_config.json", 0, &cfg))) goto out;
    t = calloc(1, sizeof *t);
    md = pcre2_match_data_create(1, NULL);
    if (!t || !md) {
        rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        goto out;
    }
    t->unk_id = t->bos_id = t->eos_id = -1;
    t->growth = 1;
    t->arena.block_size = TOK_ARENA_BLOCK;

    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *mtype = tok_jstr(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(model)) {
        rc = folio_err(FOLIO_EINVAL, "tokenizer: %s/tokenizer.json has no model", dir);
        goto out;
    }
    if (mtype ? strcmp(mtype, "BPE") != 0 : !cJSON_IsArray(merges)) {
        rc = folio_err(FOLIO_EUNSUP, "tokenizer: unsupported model type \"%s\" (only BPE)",
                       mtype ? mtype : "?");
        goto out;
    }
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
        rc = folio_err(FOLIO_EINVAL, "tokenizer: BPE model needs a vocab object and a merges array");
        goto out;
    }
    const char *cswp = tok_jstr(model, "continuing_subword_prefix");
    const char *eows = tok_jstr(model, "end_of_word_suffix");
    if ((cswp && *cswp) || (eows && *eows)) {
        rc = folio_err(FOLIO_EUNSUP, "tokenizer: continuing_subword_prefix/end_of_word_suffix "
                                     "are not supported");
        goto out;
    }
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0) {
        rc = folio_err(FOLIO_EUNSUP, "tokenizer: BPE dropout is not supported");
        goto out;
    }
    t->byte_fallback = tok_jbool(model, "byte_fallback", 0);
    t->fuse_unk = tok_jbool(model, "fuse_unk", 0);
    t->ignore_merges = tok_jbool(model, "ignore_merges", 0);

    /* vocabulary and added tokens first, so that ids are known before merges */
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    int nv = cJSON_GetArraySize(vocab), na = cJSON_GetArraySize(added);
    if ((rc = tok_smap_init(&t->vocab, (size_t)nv + (size_t)na + 1024))) goto out;
    int32_t max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 1e8) {
            rc = folio_err(FOLIO_EINVAL, "tokenizer: bad id for vocab entry \"%s\"", it->string);
            goto out;
        }
        size_t n = strlen(it->string);
        const char *s = arena_dup(&t->arena, it->string, n);
        if (!s) {
            rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
            goto out;
        }
        int32_t id = (int32_t)it->valuedouble;
        if ((rc = tok_smap_set(&t->vocab, s, n, id))) goto out;
        if (id > max_id) max_id = id;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (cJSON_IsNumber(id) && id->valuedouble <= 1e8 && (int32_t)id->valuedouble > max_id)
            max_id = (int32_t)id->valuedouble;
    }
    t->vocab_size = max_id + 1;
    t->n_ids = t->vocab_size;

    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm)) {
        if (!(t->norm = calloc(1, sizeof *t->norm))) {
            rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
            goto out;
        }
        if ((rc = tok_parse_normalizer(t, norm, t->norm))) goto out;
    }
    if ((rc = load_added(t, added, md))) goto out;

    /* id -> piece table; added tokens win over the model's own strings (the JS port's
     * vocab[id] = content) */
    t->piece = calloc((size_t)t->vocab_size + 1, sizeof *t->piece);
    t->piece_len = calloc((size_t)t->vocab_size + 1, sizeof *t->piece_len);
    t->special = calloc((size_t)t->vocab_size + 1, 1);
    if (!t->piece || !t->piece_len || !t->special) {
        rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        goto out;
    }
    for (size_t i = 0; i < t->vocab.cap; i++) {
        const struct smap_slot *sl = &t->vocab.slots[i];
        if (sl->s && sl->val >= 0 && sl->val < t->vocab_size) {
            t->piece[sl->val] = sl->s;
            t->piece_len[sl->val] = sl->len;
        }
    }
    for (int i = 0; i < t->n_added; i++) {
        const struct added_tok *a = &t->added[i];
        t->piece[a->id] = a->content;
        t->piece_len[a->id] = (uint32_t)a->len;
        if (a->special) t->special[a->id] = 1;
    }
    for (int i = 0; i < t->vocab_size; i++)
        if (t->piece[i] && t->piece_len[i] > t->max_piece) t->max_piece = t->piece_len[i];

    if ((rc = tok_bpe_load_merges(t, merges))) goto out;

    const char *unk = tok_jstr(model, "unk_token");
    if (unk) t->unk_id = tok_vocab_lookup(t, unk, strlen(unk));
    if (t->unk_id >= t->vocab_size) t->unk_id = -1;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = tok_vocab_lookup(t, name, 6);
        if (t->byte_id[b] >= t->vocab_size) t->byte_id[b] = -1;
    }

    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (pre && !cJSON_IsNull(pre)) {
        if (!(t->pre = calloc(1, sizeof *t->pre))) {
            rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
            goto out;
        }
        if ((rc = tok_parse_pretok(t, pre, t->pre))) goto out;
    }
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    t->tmpl[0] = -1;
    t->n_tmpl = 1;
    if (post && !cJSON_IsNull(post)) {
        t->has_post = true;
        if ((rc = parse_post(t, post))) goto out;
    }
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (dec && !cJSON_IsNull(dec)) {
        t->has_decoder = true;
        t->dec = calloc((size_t)tok_count_decoders(dec) + 1, sizeof *t->dec);
        if (!t->dec) {
            rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
            goto out;
        }
        if ((rc = tok_parse_decoder(t, dec))) goto out;
    }

    t->cleanup = true;
    if (cfg) {
        t->add_bos = tok_jbool(cfg, "add_bos_token", 0);
        t->add_eos = tok_jbool(cfg, "add_eos_token", 0);
        t->cleanup = tok_jbool(cfg, "clean_up_tokenization_spaces", 1);
        t->bos_id = config_token(t, cfg, "bos_token");
        t->eos_id = config_token(t, cfg, "eos_token");
        if (t->bos_id >= t->vocab_size) t->bos_id = -1;
        if (t->eos_id >= t->vocab_size) t->eos_id = -1;
        /* skip_special_tokens also drops these, as the JS port and transformers do */
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(cfg, "additional_special_tokens")) {
            const char *s = cJSON_IsString(it) ? it->valuestring : tok_jstr(it, "content");
            int32_t id = s ? tok_vocab_lookup(t, s, strlen(s)) : -1;
            if (id >= 0 && id < t->vocab_size) t->special[id] = 1;
        }
    }
    *out = t;
    t = NULL;
    rc = 0;
out:
    if (md) pcre2_match_data_free(md);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    tokenizer_free(t);
    return rc;
}

void tokenizer_free(struct tokenizer *t) {
    if (!t) return;
    free(t->piece);
    free(t->piece_len);
    free(t->special);
    free(t->vocab.slots);
    free(t->merges.slots);
    free(t->added);
    free(t->added_map.slots);
    free(t->added_content.slots);
    free(t->m_raw.e);
    free(t->m_norm.e);
    tok_free_normalizer(t->norm);
    free(t->norm);
    tok_free_pretok(t->pre);
    free(t->pre);
    free(t->dec);
    arena_free(&t->arena);
    free(t);
}

/* ------------------------------------------------------------------------------------------
 * Encoding */

static void enc_free(struct enc *e) {
    if (e->md) pcre2_match_data_free(e->md);
    free(e->nbuf.p);
    free(e->tmp.p);
    tok_plist_free(&e->pa);
    tok_plist_free(&e->pb);
    free(e->matches.v);
    free(e->parts.v);
    free(e->sub.v);
    free(e->out.v);
    free(e->syms);
    free(e->heap);
}

struct section {
    size_t off, len;
};

/* Splits s on the added tokens of m (leftmost, then longest), into sections that are either
 * plain text or exactly one added token. */
static int split_added(const struct matcher *m, const char *s, size_t n, struct section **out,
                       int *nout, int *cap) {
    size_t start = 0, i = 0;
    int cnt = 0;
#define PUSH_SEC(o, l)                                                                     \
    do {                                                                                   \
        if (cnt == *cap) {                                                                 \
            int c2 = *cap ? *cap * 2 : 16;                                                 \
            struct section *v2 = realloc(*out, (size_t)c2 * sizeof *v2);                   \
            if (!v2) return folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");           \
            *out = v2;                                                                     \
            *cap = c2;                                                                     \
        }                                                                                  \
        (*out)[cnt].off = (o);                                                             \
        (*out)[cnt].len = (l);                                                             \
        cnt++;                                                                             \
    } while (0)
    while (i < n) {
        unsigned char b = (unsigned char)s[i];
        size_t mlen = 0;
        for (int k = m->start[b]; k < m->start[b + 1]; k++) {
            if (m->e[k].len <= n - i && memcmp(s + i, m->e[k].s, m->e[k].len) == 0) {
                mlen = m->e[k].len;
                break;
            }
        }
        if (mlen) {
            if (i > start) PUSH_SEC(start, i - start);
            PUSH_SEC(i, mlen);
            i += mlen;
            start = i;
        } else {
            i++;
        }
    }
    if (start < n) PUSH_SEC(start, n - start);
#undef PUSH_SEC
    *nout = cnt;
    return 0;
}

static int added_index(const struct tokenizer *t, const char *s, size_t n) {
    int32_t idx;
    return n && tok_smap_get(&t->added_map, s, n, &idx) ? idx : -1;
}

/* The lstrip/rstrip pass: an added token eats the whitespace next to it. */
static void strip_around_added(const struct tokenizer *t, const char *s, struct section *sec, int n) {
    for (int i = 0; i < n; i++) {
        int a = added_index(t, s + sec[i].off, sec[i].len);
        if (a < 0) continue;
        if (t->added[a].lstrip && i > 0) sec[i - 1].len -= tok_trim_end_len(s + sec[i - 1].off, sec[i - 1].len);
        if (t->added[a].rstrip && i < n - 1) {
            size_t k = tok_trim_start_len(s + sec[i + 1].off, sec[i + 1].len);
            sec[i + 1].off += k;
            sec[i + 1].len -= k;
        }
    }
}

static int encode_text(const struct tokenizer *t, struct enc *e, const char *text, size_t len) {
    int rc = 0;
    struct section *outer = NULL, *inner = NULL;
    int n_outer = 0, cap_outer = 0, n_inner = 0, cap_inner = 0;
    if ((rc = split_added(&t->m_raw, text, len, &outer, &n_outer, &cap_outer))) goto out;
    strip_around_added(t, text, outer, n_outer);
    for (int i = 0; i < n_outer; i++) {
        const char *s = text + outer[i].off;
        size_t n = outer[i].len;
        if (n == 0) continue;
        int a = added_index(t, s, n);
        if (a >= 0) {
            if ((rc = tok_ivec_push(&e->out, t->added[a].id))) goto out;
            continue;
        }
        e->nbuf.n = 0;
        if ((rc = sbuf_put(&e->nbuf, "", 0))) goto out;
        if (t->norm) {
            if ((rc = tok_normalize(t->norm, s, n, &e->nbuf, e->md, &e->matches))) goto out;
        } else if ((rc = sbuf_put(&e->nbuf, s, n))) {
            goto out;
        }
        if (e->nbuf.n == 0) continue;
        const char *ns = e->nbuf.p;
        if ((rc = split_added(&t->m_norm, ns, e->nbuf.n, &inner, &n_inner, &cap_inner))) goto out;
        strip_around_added(t, ns, inner, n_inner);
        for (int j = 0; j < n_inner; j++) {
            const char *ss = ns + inner[j].off;
            size_t sn = inner[j].len;
            if (sn == 0) continue;
            int b = added_index(t, ss, sn);
            if (b >= 0) {
                if ((rc = tok_ivec_push(&e->out, t->added[b].id))) goto out;
                continue;
            }
            struct plist *pieces = NULL;
            if ((rc = tok_pretokenize(t, e, ss, sn, i, &pieces))) goto out;
            e->sub.n = 0;
            for (int k = 0; k < pieces->n; k++) {
                if ((rc = tok_bpe_encode_word(t, e, pieces->buf.p + pieces->v[k].off, pieces->v[k].len))) goto out;
            }
            tok_bpe_fuse_unk(t, &e->sub);
            for (int k = 0; k < e->sub.n; k++)
                if ((rc = tok_ivec_push(&e->out, e->sub.v[k]))) goto out;
        }
    }
out:
    free(outer);
    free(inner);
    return rc;
}

int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, int add_special_tokens,
               int32_t **ids_out, int *n_out) {
    int rc = 0;
    struct enc e = {0};
    struct ivec res = {0};
    *ids_out = NULL;
    *n_out = 0;
    if (!t || (!text && len)) return folio_err(FOLIO_EINVAL, "tokenizer_encode: NULL argument");
    if (len > (size_t)INT32_MAX / 4) return folio_err(FOLIO_EINVAL, "tokenizer_encode: text too long");
    if (!utf8_valid(text, len))
        return folio_err(FOLIO_EINVAL, "tokenizer_encode: text is not valid UTF-8");
    if (!(e.md = pcre2_match_data_create(1, NULL))) {
        rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        goto out;
    }
    if ((rc = encode_text(t, &e, text ? text : "", len))) goto out;
    if (add_special_tokens && t->has_post) {
        for (int i = 0; i < t->n_tmpl; i++) {
            if (t->tmpl[i] != -1) {
                if ((rc = tok_ivec_push(&res, t->tmpl[i]))) goto out;
                continue;
            }
            for (int k = 0; k < e.out.n; k++)
                if ((rc = tok_ivec_push(&res, e.out.v[k]))) goto out;
        }
    } else {
        /* no post-processor: tokenizer_config.json's add_bos_token/add_eos_token decide, as
         * transformers' Llama tokenizers do */
        bool bos = add_special_tokens && t->add_bos && t->bos_id >= 0;
        bool eos = add_special_tokens && t->add_eos && t->eos_id >= 0;
        if (bos && (rc = tok_ivec_push(&res, t->bos_id))) goto out;
        for (int k = 0; k < e.out.n; k++)
            if ((rc = tok_ivec_push(&res, e.out.v[k]))) goto out;
        if (eos && (rc = tok_ivec_push(&res, t->eos_id))) goto out;
    }
    if (!res.v && !(res.v = malloc(sizeof *res.v))) { /* keep *ids_out non-NULL */
        rc = folio_err(FOLIO_ENOMEM, "tokenizer: out of memory");
        goto out;
    }
    *ids_out = res.v;
    *n_out = res.n;
    res.v = NULL;
out:
    free(res.v);
    enc_free(&e);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Lookups */

int tokenizer_vocab_size(const struct tokenizer *t) { return t->vocab_size; }
size_t tokenizer_max_token_bytes(const struct tokenizer *t) { return t->max_piece * (t->growth > 1 ? t->growth : 1) + 8; }
int32_t tokenizer_bos_id(const struct tokenizer *t) { return t->bos_id; }
int32_t tokenizer_eos_id(const struct tokenizer *t) { return t->eos_id; }

int tokenizer_is_special(const struct tokenizer *t, int32_t id) {
    return id >= 0 && id < t->vocab_size && t->special[id];
}

int32_t tokenizer_token_to_id(const struct tokenizer *t, const char *piece) {
    if (!piece) return -1;
    int32_t id = tok_vocab_lookup(t, piece, strlen(piece));
    return id < t->vocab_size ? id : -1;
}

const char *tokenizer_id_to_piece(const struct tokenizer *t, int32_t id) {
    return id >= 0 && id < t->vocab_size ? t->piece[id] : NULL;
}
