/* json_order: a JSON instance with its object keys put in a schema's order (listed properties
 * first, in the schema's order, then additional ones), as a model following Folio's JSON Schema
 * grammar writes them; for the tools that feed MaskBench's instances through the grammar
 * (jsonschema_check, maskbench). Follows local $refs, allOf, and for anyOf/oneOf the branch
 * that names most of the instance's keys. */
#ifndef FOLIO_TOOLS_JSON_ORDER_H
#define FOLIO_TOOLS_JSON_ORDER_H

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/gram_regex.h"

static const cJSON *resolve(const cJSON *root, const cJSON *s) {
    for (int hop = 0; hop < 32 && cJSON_IsObject(s); hop++) {
        const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
        if (!cJSON_IsString(ref)) return s;
        const char *h = strchr(ref->valuestring, '#');
        if (!h) return s;
        const cJSON *cur = root;
        char seg[512];
        const char *p = h + 1;
        while (*p == '/' && cur) {
            p++;
            size_t n = 0;
            while (*p && *p != '/' && n + 1 < sizeof(seg)) {
                if (*p == '~' && p[1] == '0') seg[n++] = '~', p += 2;
                else if (*p == '~' && p[1] == '1') seg[n++] = '/', p += 2;
                else seg[n++] = *p++;
            }
            seg[n] = '\0';
            cur = cJSON_IsArray(cur) ? cJSON_GetArrayItem(cur, atoi(seg)) : cJSON_GetObjectItemCaseSensitive(cur, seg);
        }
        if (!cur) return s;
        /* siblings of $ref: keep the referencing schema when it has properties itself */
        if (cJSON_GetObjectItemCaseSensitive(s, "properties")) return s;
        s = cur;
    }
    return s;
}

struct names {
    const char *name[512];
    const cJSON *schema[512];
    int n;
};

static void add_name(struct names *nm, const char *k, const cJSON *sch) {
    for (int i = 0; i < nm->n; i++)
        if (strcmp(nm->name[i], k) == 0) return;
    if (nm->n < 512) nm->name[nm->n] = k, nm->schema[nm->n++] = sch;
}

static int covered(const cJSON *root, const cJSON *s, const cJSON *inst, int depth);

static void collect(const cJSON *root, const cJSON *s, const cJSON *inst, struct names *nm, int depth) {
    if (depth > 16) return;
    if (cJSON_IsObject(s) && cJSON_GetObjectItemCaseSensitive(s, "$ref") && !cJSON_GetObjectItemCaseSensitive(s, "properties")) {
        const cJSON *t = resolve(root, s);
        if (t != s) {
            /* the target first, then the siblings, as the compiler merges them */
            collect(root, t, inst, nm, depth + 1);
        }
    }
    if (!cJSON_IsObject(s)) return;
    const cJSON *alts = NULL;
    for (const cJSON *e = s->child; e; e = e->next) {
        if (strcmp(e->string, "properties") == 0 && cJSON_IsObject(e)) {
            for (const cJSON *p = e->child; p; p = p->next) add_name(nm, p->string, p);
        } else if (strcmp(e->string, "allOf") == 0) {
            for (const cJSON *a = e->child; a; a = a->next) collect(root, resolve(root, a), inst, nm, depth + 1);
        } else if (strcmp(e->string, "anyOf") == 0 || strcmp(e->string, "oneOf") == 0) {
            if (!alts) alts = e;
        }
    }
    if (alts) {
        /* the branch that covers most of the instance's keys */
        const cJSON *best = NULL;
        int bestc = -1;
        for (const cJSON *a = alts->child; a; a = a->next) {
            int cnt = covered(root, resolve(root, a), inst, depth + 1);
            if (cnt > bestc) bestc = cnt, best = a;
        }
        if (best) collect(root, resolve(root, best), inst, nm, depth + 1);
    }
}

static int covered(const cJSON *root, const cJSON *s, const cJSON *inst, int depth) {
    struct names nm = {.n = 0};
    collect(root, s, inst, &nm, depth);
    int c = 0;
    for (int i = 0; i < nm.n; i++)
        if (cJSON_GetObjectItemCaseSensitive(inst, nm.name[i])) c++;
    return c;
}

static void required_names(const cJSON *root, const cJSON *s, struct names *nm, int depth) {
    if (depth > 16 || !cJSON_IsObject(s)) return;
    s = resolve(root, s);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(s, "required");
    for (const cJSON *e = r ? r->child : NULL; e; e = e->next)
        if (cJSON_IsString(e)) add_name(nm, e->valuestring, NULL);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(s, "allOf");
    for (const cJSON *e = a ? a->child : NULL; e; e = e->next) required_names(root, e, nm, depth + 1);
}

static const cJSON *pick_branch(const cJSON *root, const cJSON *s, const cJSON *inst) {
    /* for arrays and scalars under anyOf: the first branch whose type fits */
    s = resolve(root, s);
    return s;
}

/* The schema an additional key's value follows: the first pattern property whose regex finds a
 * match in the key, else additionalProperties. */
static const cJSON *extra_schema(const cJSON *s, const char *key) {
    const cJSON *pp = cJSON_IsObject(s) ? cJSON_GetObjectItemCaseSensitive(s, "patternProperties") : NULL;
    for (const cJSON *p = cJSON_IsObject(pp) ? pp->child : NULL; p; p = p->next)
        if (gram_regex_search(p->string, strlen(p->string), key, strlen(key)) == 1) return p;
    return cJSON_IsObject(s) ? cJSON_GetObjectItemCaseSensitive(s, "additionalProperties") : NULL;
}

/* Returns a new instance with object keys in schema order. */
static cJSON *json_order_reorder(const cJSON *root, const cJSON *s, const cJSON *inst, int depth) {
    if (depth > 64) return cJSON_Duplicate(inst, 1);
    s = pick_branch(root, s, inst);
    if (cJSON_IsObject(inst)) {
        struct names nm = {.n = 0};
        collect(root, s, inst, &nm, 0);
        int listed = nm.n;
        required_names(root, s, &nm, 0);
        cJSON *o = cJSON_CreateObject();
        const cJSON *ap = cJSON_IsObject(s) ? cJSON_GetObjectItemCaseSensitive(s, "additionalProperties") : NULL;
        for (int i = 0; i < nm.n; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(inst, nm.name[i]);
            if (v) cJSON_AddItemToObject(o, nm.name[i], json_order_reorder(root, i < listed ? nm.schema[i] : ap, v, depth + 1));
        }
        for (const cJSON *e = inst->child; e; e = e->next) {
            int seen = 0;
            for (int i = 0; i < nm.n; i++) seen |= strcmp(nm.name[i], e->string) == 0;
            if (!seen) cJSON_AddItemToObject(o, e->string, json_order_reorder(root, extra_schema(s, e->string), e, depth + 1));
        }
        return o;
    }
    if (cJSON_IsArray(inst)) {
        cJSON *a = cJSON_CreateArray();
        const cJSON *items = cJSON_IsObject(s) ? cJSON_GetObjectItemCaseSensitive(s, "items") : NULL;
        const cJSON *prefix = cJSON_IsObject(s) ? cJSON_GetObjectItemCaseSensitive(s, "prefixItems") : NULL;
        if (cJSON_IsArray(items)) prefix = items, items = cJSON_GetObjectItemCaseSensitive(s, "additionalItems");
        int i = 0;
        for (const cJSON *e = inst->child; e; e = e->next, i++) {
            const cJSON *sub = prefix && i < cJSON_GetArraySize(prefix) ? cJSON_GetArrayItem(prefix, i) : items;
            cJSON_AddItemToArray(a, json_order_reorder(root, sub, e, depth + 1));
        }
        return a;
    }
    return cJSON_Duplicate(inst, 1);
}

#endif
