/* ct_parse: tokens -> AST, a port of @huggingface/jinja's recursive-descent parser.
 *
 * The grammar and its precedence are the reference's, not Python Jinja's: `|` and `is` bind
 * tighter than `*` and `+`, `not` looser than comparisons, commas inside [...] are optional,
 * and `a if b` without `else` is a "select" (undefined when b is false). Nesting is bounded
 * (CT_MAX_PARSE_DEPTH) so that hostile input cannot exhaust the stack, here or when the AST is
 * evaluated. All nodes live in the template's arena. */
#include "chat_template/ct_internal.h"

#include <stdio.h>

struct parser {
    struct chat_template *t;
    struct ct_tok *toks;
    size_t n, cur;
    int depth;
};

struct nlist {
    struct ct_node **v;
    size_t n, cap;
};

static const char *tok_desc(const struct ct_tok *t, char *buf, size_t cap) {
    switch (t->type) {
    case T_TEXT: return "text";
    case T_COMMENT: return "comment";
    case T_STR: return "string literal";
    case T_NUM: case T_IDENT: default:
        snprintf(buf, cap, "'%.*s'", (int)(t->len > 40 ? 40 : t->len), t->s);
        return buf;
    }
}

static int perr(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(struct parser *p, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t i = p->cur < p->n ? p->cur : p->n;
    return folio_err(FOLIO_EINVAL, "chat template line %u: %s", (unsigned)p->toks[i].line, msg);
}

/* "expected X, got Y" at the current token. */
static int unexpected(struct parser *p, const char *expected) {
    char b[64];
    if (p->cur >= p->n) return perr(p, "unexpected end of template (expected %s)", expected);
    return perr(p, "unexpected %s (expected %s)", tok_desc(&p->toks[p->cur], b, sizeof(b)), expected);
}

static int is(struct parser *p, int type) { return p->cur < p->n && p->toks[p->cur].type == type; }

static int tok_is_word(const struct ct_tok *t, const char *w) {
    return t->type == T_IDENT && t->len == strlen(w) && !memcmp(t->s, w, t->len);
}

static int is_ident(struct parser *p, const char *w) {
    return p->cur < p->n && tok_is_word(&p->toks[p->cur], w);
}

static int is_ident2(struct parser *p, const char *w1, const char *w2) {
    return p->cur + 1 < p->n && tok_is_word(&p->toks[p->cur], w1) &&
           tok_is_word(&p->toks[p->cur + 1], w2);
}

/* {% name ... with name one of the NULL-terminated list */
static int is_statement(struct parser *p, const char *const *names) {
    if (p->cur + 1 >= p->n || p->toks[p->cur].type != T_OPEN_STMT) return 0;
    for (; *names; names++)
        if (tok_is_word(&p->toks[p->cur + 1], *names)) return 1;
    return 0;
}

static int expect(struct parser *p, int type, const char *what) {
    if (!is(p, type)) return unexpected(p, what);
    p->cur++;
    return 0;
}

static int expect_ident(struct parser *p, const char *w) {
    char e[48];
    snprintf(e, sizeof(e), "'%s'", w);
    if (!is_ident(p, w)) return unexpected(p, e);
    p->cur++;
    return 0;
}

static struct ct_node *new_node(struct parser *p, int kind, uint32_t line) {
    struct ct_node *n = arena_alloc(&p->t->arena, sizeof(*n));
    if (n) {
        n->kind = (uint8_t)kind;
        n->line = line;
    }
    return n;
}

static uint32_t cur_line(struct parser *p) { return p->toks[p->cur < p->n ? p->cur : p->n].line; }

static int nl_push(struct nlist *l, struct ct_node *n) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        struct ct_node **nv = realloc(l->v, cap * sizeof(*nv));
        if (!nv) return FOLIO_ENOMEM;
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = n;
    return 0;
}

/* Moves a list into the arena. */
static int nl_finish(struct parser *p, struct nlist *l, struct ct_node ***v, size_t *n) {
    *v = NULL;
    *n = l->n;
    if (l->n) {
        *v = arena_alloc(&p->t->arena, l->n * sizeof(**v));
        if (!*v) return FOLIO_ENOMEM;
        memcpy(*v, l->v, l->n * sizeof(**v));
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
    return 0;
}

static int enter(struct parser *p) {
    if (++p->depth > CT_MAX_PARSE_DEPTH) return perr(p, "template nests too deeply");
    return 0;
}

static int parse_any(struct parser *p, struct ct_node **out);
static int parse_expression(struct parser *p, struct ct_node **out);
static int parse_primary(struct parser *p, struct ct_node **out);
static int parse_call_expression(struct parser *p, struct ct_node *callee, struct ct_node **out);
static int parse_member(struct parser *p, struct ct_node *obj, struct ct_node **out);
static int parse_logical_or(struct parser *p, struct ct_node **out);

#define TRY(x) do { if ((rc = (x))) goto out; } while (0)
#define NEW(var, kind, line) do { if (!((var) = new_node(p, (kind), (line)))) { rc = FOLIO_ENOMEM; goto out; } } while (0)

/* Parses statements into l until one of the statements in `until` is next. */
static int parse_body(struct parser *p, const char *const *until, struct nlist *l) {
    int rc;
    while (!is_statement(p, until)) {
        struct ct_node *n;
        if (p->cur >= p->n) return unexpected(p, "{% end... %}");
        if ((rc = parse_any(p, &n))) return rc;
        if ((rc = nl_push(l, n))) return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Arguments: f(a, b=1, *xs, **kw) in calls; (a, b=1) in macro parameters */

static int parse_args_list(struct parser *p, int params, struct nlist *args) {
    int rc;
    int saw_kw = 0, saw_spread = 0;
    while (!is(p, T_RPAREN)) {
        if (p->cur >= p->n) return unexpected(p, "')'");
        int kwspread = is(p, T_POW);
        int spread = is(p, T_MUL) && p->toks[p->cur].len == 1 && p->toks[p->cur].s[0] == '*';
        struct ct_node *arg, *e;
        if (params && (kwspread || spread))
            return perr(p, "argument unpacking is not allowed in parameter declarations");
        if (kwspread) {
            uint32_t line = cur_line(p);
            p->cur++;
            if ((rc = parse_expression(p, &e))) return rc;
            if (!(arg = new_node(p, N_KWSPREAD, line))) return FOLIO_ENOMEM;
            arg->a = e;
            if ((rc = nl_push(args, arg))) return rc;
            if (is(p, T_COMMA)) p->cur++;
            if (!is(p, T_RPAREN)) return perr(p, "'**' must be applied to the final argument");
            break;
        }
        if (spread) {
            if (saw_spread) return perr(p, "only one '*' argument unpacking is allowed");
            saw_spread = 1;
            uint32_t line = cur_line(p);
            p->cur++;
            if ((rc = parse_expression(p, &e))) return rc;
            if (!(arg = new_node(p, N_SPREAD, line))) return FOLIO_ENOMEM;
            arg->a = e;
        } else {
            if ((rc = parse_expression(p, &arg))) return rc;
            if (is(p, T_EQUALS)) {
                p->cur++;
                if (arg->kind != N_IDENT)
                    return perr(p, params ? "expected identifier for parameter declaration"
                                          : "expected identifier for keyword argument");
                struct ct_node *val, *kw;
                if ((rc = parse_expression(p, &val))) return rc;
                if (!(kw = new_node(p, N_KWARG, arg->line))) return FOLIO_ENOMEM;
                kw->name = arg->name;
                kw->name_len = arg->name_len;
                kw->a = val;
                arg = kw;
            }
            if (params) {
                if (arg->kind != N_IDENT && arg->kind != N_KWARG)
                    return perr(p, "expected identifier for parameter declaration");
                for (size_t i = 0; i < args->n; i++)
                    if (args->v[i]->name_len == arg->name_len &&
                        !memcmp(args->v[i]->name, arg->name, arg->name_len))
                        return perr(p, "duplicate parameter name '%.*s'", (int)arg->name_len, arg->name);
            }
            if (arg->kind == N_KWARG) saw_kw = 1;
            else if (saw_kw)
                return perr(p, params ? "non-default argument follows default argument"
                                      : "positional arguments must come before keyword arguments");
            else if (saw_spread)
                return perr(p, "positional arguments must not follow '*' argument unpacking");
        }
        if ((rc = nl_push(args, arg))) return rc;
        if (is(p, T_COMMA)) p->cur++;
    }
    return 0;
}

static int parse_args(struct parser *p, int params, struct ct_node ***v, size_t *n) {
    int rc;
    struct nlist l = {0};
    TRY(expect(p, T_LPAREN, "'('"));
    TRY(parse_args_list(p, params, &l));
    TRY(expect(p, T_RPAREN, "')'"));
    return nl_finish(p, &l, v, n);
out:
    free(l.v);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Expressions */

static int parse_sequence(struct parser *p, int primary, struct ct_node **out) {
    int rc;
    struct nlist l = {0};
    struct ct_node *e, *tup;
    uint32_t line = cur_line(p);
    TRY(primary ? parse_primary(p, &e) : parse_expression(p, &e));
    if (!is(p, T_COMMA)) {
        *out = e;
        return 0;
    }
    TRY(nl_push(&l, e));
    while (1) {
        p->cur++;
        TRY(primary ? parse_primary(p, &e) : parse_expression(p, &e));
        TRY(nl_push(&l, e));
        if (!is(p, T_COMMA)) break;
    }
    NEW(tup, N_TUPLE, line);
    TRY(nl_finish(p, &l, &tup->v, &tup->nv));
    *out = tup;
    return 0;
out:
    free(l.v);
    return rc;
}

static int parse_primary(struct parser *p, struct ct_node **out) {
    int rc = 0;
    struct nlist l = {0}, w = {0};
    struct ct_node *n = NULL;
    if (p->cur >= p->n) return unexpected(p, "an expression");
    if ((rc = enter(p))) return rc;
    struct ct_tok *t = &p->toks[p->cur++];
    switch (t->type) {
    case T_NUM: {
        char buf[64];
        size_t k = t->len < sizeof(buf) - 1 ? t->len : sizeof(buf) - 1;
        memcpy(buf, t->s, k);
        buf[k] = '\0';
        int is_float = memchr(t->s, '.', t->len) != NULL;
        NEW(n, is_float ? N_FLOAT : N_INT, t->line);
        /* long digit strings: strtod on the whole text, which the arena holds NUL-ended */
        n->num = t->len < sizeof(buf) - 1 ? strtod(buf, NULL) : strtod(t->s, NULL);
        break;
    }
    case T_STR: {
        /* adjacent literals concatenate: "a" "b" */
        size_t total = t->len, j = p->cur;
        while (j < p->n && p->toks[j].type == T_STR) total += p->toks[j++].len;
        char *s = malloc(total + 1);
        if (!s) { rc = FOLIO_ENOMEM; goto out; }
        memcpy(s, t->s, t->len);
        size_t off = t->len;
        while (is(p, T_STR)) {
            memcpy(s + off, p->toks[p->cur].s, p->toks[p->cur].len);
            off += p->toks[p->cur].len;
            p->cur++;
        }
        n = new_node(p, N_STR, t->line);
        if (n) n->str = ct_str_immortal(&p->t->arena, s, total);
        free(s);
        if (!n || !n->str) { rc = FOLIO_ENOMEM; goto out; }
        break;
    }
    case T_IDENT:
        NEW(n, N_IDENT, t->line);
        n->name = t->s;
        n->name_len = t->len;
        break;
    case T_LPAREN:
        TRY(parse_sequence(p, 0, &n));
        TRY(expect(p, T_RPAREN, "')'"));
        break;
    case T_LBRACKET:
        NEW(n, N_ARRAY, t->line);
        while (!is(p, T_RBRACKET)) {
            struct ct_node *e = NULL;
            if (p->cur >= p->n) { rc = unexpected(p, "']'"); goto out; }
            TRY(parse_expression(p, &e));
            TRY(nl_push(&l, e));
            if (is(p, T_COMMA)) p->cur++;
        }
        p->cur++;
        TRY(nl_finish(p, &l, &n->v, &n->nv));
        break;
    case T_LBRACE:
        NEW(n, N_OBJECT, t->line);
        while (!is(p, T_RBRACE)) {
            struct ct_node *k, *v;
            if (p->cur >= p->n) { rc = unexpected(p, "'}'"); goto out; }
            TRY(parse_expression(p, &k));
            TRY(expect(p, T_COLON, "':'"));
            TRY(parse_expression(p, &v));
            TRY(nl_push(&l, k));
            TRY(nl_push(&w, v));
            if (is(p, T_COMMA)) p->cur++;
        }
        p->cur++;
        TRY(nl_finish(p, &l, &n->v, &n->nv));
        TRY(nl_finish(p, &w, &n->w, &n->nw));
        break;
    default:
        p->cur--;
        rc = unexpected(p, "an expression");
        goto out;
    }
    *out = n;
out:
    free(l.v);
    free(w.v);
    p->depth--;
    return rc;
}

/* [a], [a:b], [a:b:c], [::-1] ... */
static int parse_subscript(struct parser *p, struct ct_node **out) {
    int rc;
    struct ct_node *slots[3] = {NULL, NULL, NULL};
    size_t count = 0;
    int is_slice = 0;
    uint32_t line = cur_line(p);
    while (!is(p, T_RBRACKET)) {
        struct ct_node *e = NULL;
        if (p->cur >= p->n) return unexpected(p, "']'");
        if (is(p, T_COLON)) {
            p->cur++;
            is_slice = 1;
        } else {
            if ((rc = parse_expression(p, &e))) return rc;
            if (is(p, T_COLON)) {
                p->cur++;
                is_slice = 1;
            }
        }
        if (count < 3) slots[count] = e;
        count++;
    }
    if (count == 0) return perr(p, "expected at least one argument for member/slice expression");
    if (!is_slice) {
        *out = slots[0];
        return 0;
    }
    if (count > 3) return perr(p, "expected 0-3 arguments for slice expression");
    struct ct_node *s = new_node(p, N_SLICE, line);
    if (!s) return FOLIO_ENOMEM;
    s->a = slots[0];
    s->b = slots[1];
    s->c = slots[2];
    *out = s;
    return 0;
}

static int parse_member(struct parser *p, struct ct_node *obj, struct ct_node **out) {
    int rc;
    while (is(p, T_DOT) || is(p, T_LBRACKET)) {
        int computed = is(p, T_LBRACKET);
        uint32_t line = cur_line(p);
        struct ct_node *prop, *m;
        p->cur++;
        if (computed) {
            if ((rc = parse_subscript(p, &prop))) return rc;
            if ((rc = expect(p, T_RBRACKET, "']'"))) return rc;
        } else {
            if ((rc = parse_primary(p, &prop))) return rc;
            if (prop->kind != N_IDENT && prop->kind != N_INT)
                return perr(p, "expected identifier or integer following '.'");
        }
        if (!(m = new_node(p, N_MEMBER, line))) return FOLIO_ENOMEM;
        m->a = obj;
        m->b = prop;
        m->op = (uint8_t)computed;
        obj = m;
    }
    *out = obj;
    return 0;
}

static int parse_call_expression(struct parser *p, struct ct_node *callee, struct ct_node **out) {
    int rc;
    struct ct_node *call = new_node(p, N_CALL, callee->line);
    if (!call) return FOLIO_ENOMEM;
    if ((rc = enter(p))) goto out;
    call->a = callee;
    if ((rc = parse_args(p, 0, &call->v, &call->nv))) goto out;
    if ((rc = parse_member(p, call, &call))) goto out;
    if (is(p, T_LPAREN)) rc = parse_call_expression(p, call, &call);
    *out = call;
out:
    p->depth--;
    return rc;
}

static int parse_call_member(struct parser *p, struct ct_node **out) {
    int rc;
    struct ct_node *e;
    if ((rc = parse_primary(p, &e))) return rc;
    if ((rc = parse_member(p, e, &e))) return rc;
    if (is(p, T_LPAREN)) return parse_call_expression(p, e, out);
    *out = e;
    return 0;
}

static int parse_unary_sign(struct parser *p, struct ct_node **out) {
    int rc;
    if (p->cur < p->n) {
        struct ct_tok *t = &p->toks[p->cur];
        if ((t->type == T_UNARY || t->type == T_ADD) && t->len == 1 && (t->s[0] == '-' || t->s[0] == '+')) {
            struct ct_node *arg, *u;
            if ((rc = enter(p))) goto out1;
            p->cur++;
            if ((rc = parse_unary_sign(p, &arg))) goto out1;
            if (!(u = new_node(p, N_UNARY, t->line))) { rc = FOLIO_ENOMEM; goto out1; }
            u->op = t->s[0] == '-' ? OP_NEG : OP_POS;
            u->a = arg;
            *out = u;
        out1:
            p->depth--;
            return rc;
        }
    }
    return parse_call_member(p, out);
}

static int parse_filter_expr(struct parser *p, struct ct_node **out) {
    int rc;
    struct ct_node *operand = NULL;
    if ((rc = parse_unary_sign(p, &operand))) return rc;
    while (is(p, T_PIPE)) {
        struct ct_node *f, *fe;
        uint32_t line = cur_line(p);
        p->cur++;
        if ((rc = parse_primary(p, &f))) return rc;
        if (f->kind != N_IDENT) return perr(p, "expected identifier for the filter");
        if (is(p, T_LPAREN) && (rc = parse_call_expression(p, f, &f))) return rc;
        if (!(fe = new_node(p, N_FILTER, line))) return FOLIO_ENOMEM;
        fe->a = operand;
        fe->b = f;
        operand = fe;
    }
    *out = operand;
    return 0;
}

static int parse_test_expr(struct parser *p, struct ct_node **out) {
    int rc;
    struct ct_node *operand = NULL;
    if ((rc = parse_filter_expr(p, &operand))) return rc;
    while (is_ident(p, "is")) {
        uint32_t line = cur_line(p);
        struct ct_node *t, *te;
        p->cur++;
        int negate = is_ident(p, "not");
        if (negate) p->cur++;
        if ((rc = parse_primary(p, &t))) return rc;
        if (t->kind != N_IDENT) return perr(p, "expected identifier for the test");
        if (!(te = new_node(p, N_TEST, line))) return FOLIO_ENOMEM;
        te->a = operand;
        te->name = t->name;
        te->name_len = t->name_len;
        te->op = (uint8_t)negate;
        operand = te;
    }
    *out = operand;
    return 0;
}

static int binop_of(const struct ct_tok *t) {
    if (t->type == T_IDENT) {
        if (tok_is_word(t, "and")) return OP_AND;
        if (tok_is_word(t, "or")) return OP_OR;
        if (tok_is_word(t, "in")) return OP_IN;
        return OP_NONE;
    }
    if (t->len == 1) {
        switch (t->s[0]) {
        case '+': return OP_ADD;
        case '-': return OP_SUB;
        case '~': return OP_CONCAT;
        case '*': return OP_MUL;
        case '/': return OP_DIV;
        case '%': return OP_MOD;
        case '<': return OP_LT;
        case '>': return OP_GT;
        }
    } else if (t->len == 2) {
        if (!memcmp(t->s, "//", 2)) return OP_FLOORDIV;
        if (!memcmp(t->s, "**", 2)) return OP_POW;
        if (!memcmp(t->s, "==", 2)) return OP_EQ;
        if (!memcmp(t->s, "!=", 2)) return OP_NE;
        if (!memcmp(t->s, "<=", 2)) return OP_LE;
        if (!memcmp(t->s, ">=", 2)) return OP_GE;
    }
    return OP_NONE;
}

static int mk_binary(struct parser *p, int op, uint32_t line, struct ct_node *l, struct ct_node *r,
                     struct ct_node **out) {
    struct ct_node *b = new_node(p, N_BINARY, line);
    if (!b) return FOLIO_ENOMEM;
    b->op = (uint8_t)op;
    b->a = l;
    b->b = r;
    *out = b;
    return 0;
}

typedef int (*parse_fn)(struct parser *, struct ct_node **);

/* left-associative loop over operator tokens of `type` */
static int parse_binary_level(struct parser *p, int type, parse_fn next, struct ct_node **out) {
    int rc;
    struct ct_node *left = NULL, *right = NULL;
    if ((rc = next(p, &left))) return rc;
    while (is(p, type)) {
        struct ct_tok *t = &p->toks[p->cur++];
        if ((rc = next(p, &right))) return rc;
        if ((rc = mk_binary(p, binop_of(t), t->line, left, right, &left))) return rc;
    }
    *out = left;
    return 0;
}

static int parse_power(struct parser *p, struct ct_node **out) {
    return parse_binary_level(p, T_POW, parse_test_expr, out);
}
static int parse_multiplicative(struct parser *p, struct ct_node **out) {
    return parse_binary_level(p, T_MUL, parse_power, out);
}
static int parse_additive(struct parser *p, struct ct_node **out) {
    return parse_binary_level(p, T_ADD, parse_multiplicative, out);
}

static int parse_comparison(struct parser *p, struct ct_node **out) {
    int rc;
    struct ct_node *left = NULL, *right = NULL;
    if ((rc = parse_additive(p, &left))) return rc;
    while (1) {
        int op;
        uint32_t line = cur_line(p);
        if (is_ident2(p, "not", "in")) {
            op = OP_NOTIN;
            p->cur += 2;
        } else if (is_ident(p, "in")) {
            op = OP_IN;
            p->cur++;
        } else if (is(p, T_CMP)) {
            op = binop_of(&p->toks[p->cur++]);
        } else {
            break;
        }
        if ((rc = parse_additive(p, &right))) return rc;
        if ((rc = mk_binary(p, op, line, left, right, &left))) return rc;
    }
    *out = left;
    return 0;
}

static int parse_not(struct parser *p, struct ct_node **out) {
    int rc = 0;
    struct ct_node *right = NULL;
    if ((rc = enter(p))) goto out;
    while (is_ident(p, "not")) {
        uint32_t line = cur_line(p);
        struct ct_node *arg;
        p->cur++;
        if ((rc = parse_not(p, &arg))) goto out;
        if (!(right = new_node(p, N_UNARY, line))) { rc = FOLIO_ENOMEM; goto out; }
        right->op = OP_NOT;
        right->a = arg;
    }
    if (right) *out = right;
    else rc = parse_comparison(p, out);
out:
    p->depth--;
    return rc;
}

static int parse_logical_and(struct parser *p, struct ct_node **out) {
    int rc;
    struct ct_node *left = NULL, *right = NULL;
    if ((rc = parse_not(p, &left))) return rc;
    while (is_ident(p, "and")) {
        uint32_t line = cur_line(p);
        p->cur++;
        if ((rc = parse_not(p, &right))) return rc;
        if ((rc = mk_binary(p, OP_AND, line, left, right, &left))) return rc;
    }
    *out = left;
    return 0;
}

static int parse_logical_or(struct parser *p, struct ct_node **out) {
    int rc;
    struct ct_node *left = NULL, *right = NULL;
    if ((rc = parse_logical_and(p, &left))) return rc;
    while (is_ident(p, "or")) {
        uint32_t line = cur_line(p);
        p->cur++;
        if ((rc = parse_logical_and(p, &right))) return rc;
        if ((rc = mk_binary(p, OP_OR, line, left, right, &left))) return rc;
    }
    *out = left;
    return 0;
}

static int parse_expression(struct parser *p, struct ct_node **out) {
    int rc;
    struct ct_node *a = NULL, *test = NULL, *f = NULL, *n = NULL;
    if ((rc = enter(p))) goto out;
    if ((rc = parse_logical_or(p, &a))) goto out;
    if (is_ident(p, "if")) {
        uint32_t line = cur_line(p);
        p->cur++;
        if ((rc = parse_logical_or(p, &test))) goto out;
        if (is_ident(p, "else")) {
            p->cur++;
            if ((rc = parse_expression(p, &f))) goto out;
            NEW(n, N_TERNARY, line);
            n->a = test;
            n->b = a;
            n->c = f;
        } else {
            NEW(n, N_SELECT, line);
            n->a = a;
            n->b = test;
        }
        a = n;
    }
    *out = a;
out:
    p->depth--;
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Which of `kwargs` / `varargs` a macro body reads (findAccessedSpecialMacroArguments): one
 * walk in source order, where a name counts as declared from its first assignment on. */

struct special {
    int declared, accessed;
};

static int special_bit(const char *name, size_t len) {
    if (len == 6 && !memcmp(name, "kwargs", 6)) return CT_USES_KWARGS;
    if (len == 7 && !memcmp(name, "varargs", 7)) return CT_USES_VARARGS;
    return 0;
}

static void declare_target(struct special *s, const struct ct_node *t) {
    if (!t) return;
    if (t->kind == N_IDENT) s->declared |= special_bit(t->name, t->name_len);
    else if (t->kind == N_TUPLE)
        for (size_t i = 0; i < t->nv; i++) declare_target(s, t->v[i]);
}

static void visit(struct special *s, const struct ct_node *n);

static void visit_list(struct special *s, struct ct_node *const *v, size_t n) {
    for (size_t i = 0; i < n; i++) visit(s, v[i]);
}

static void declare_params(struct special *s, struct ct_node *const *v, size_t n) {
    for (size_t i = 0; i < n; i++) s->declared |= special_bit(v[i]->name, v[i]->name_len);
}

static void visit_defaults(struct special *s, struct ct_node *const *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (v[i]->kind == N_KWARG) visit(s, v[i]->a);
}

static void visit_filter(struct special *s, const struct ct_node *f) {
    if (f->kind == N_CALL) visit_list(s, f->v, f->nv);
}

static void visit(struct special *s, const struct ct_node *n) {
    if (!n) return;
    switch (n->kind) {
    case S_FOR:
        declare_target(s, n->a);
        if (n->b->kind == N_SELECT) {
            visit(s, n->b->a);
            visit_list(s, n->v, n->nv);
            visit_list(s, n->w, n->nw);
            visit(s, n->b->b);
            return;
        }
        visit(s, n->b);
        visit_list(s, n->v, n->nv);
        visit_list(s, n->w, n->nw);
        return;
    case S_SET:
        declare_target(s, n->a);
        visit(s, n->b);
        visit_list(s, n->v, n->nv);
        return;
    case S_MACRO:
        declare_params(s, n->v, n->nv);
        visit_defaults(s, n->v, n->nv);
        visit_list(s, n->w, n->nw);
        return;
    case S_CALLBLOCK:
        visit(s, n->a);
        declare_params(s, n->v, n->nv);
        visit_defaults(s, n->v, n->nv);
        visit_list(s, n->w, n->nw);
        return;
    case S_FILTERBLOCK:
        visit_list(s, n->v, n->nv);
        visit_filter(s, n->a);
        return;
    case N_IDENT: {
        int bit = special_bit(n->name, n->name_len);
        if (bit && !(s->declared & bit)) s->accessed |= bit;
        return;
    }
    case N_MEMBER:
        visit(s, n->a);
        if (n->op) visit(s, n->b);
        return;
    case N_FILTER:
        visit(s, n->a);
        visit_filter(s, n->b);
        return;
    case N_TEST:
        visit(s, n->a);
        return;
    case N_SELECT:
        visit(s, n->b);
        visit(s, n->a);
        return;
    case N_KWARG:
        visit(s, n->a);
        return;
    case S_IF:
        visit(s, n->a);
        visit_list(s, n->v, n->nv);
        visit_list(s, n->w, n->nw);
        return;
    case N_CALL:
        visit(s, n->a);
        visit_list(s, n->v, n->nv);
        return;
    case N_OBJECT:
        for (size_t i = 0; i < n->nv; i++) {
            visit(s, n->v[i]);
            visit(s, n->w[i]);
        }
        return;
    case N_ARRAY: case N_TUPLE:
        visit_list(s, n->v, n->nv);
        return;
    case N_TERNARY: /* Ternary(condition, trueExpr, falseExpr) */
        visit(s, n->a);
        visit(s, n->b);
        visit(s, n->c);
        return;
    default: /* Binary(left, right), Unary, Slice(start, stop, step), spreads */
        visit(s, n->a);
        visit(s, n->b);
        visit(s, n->c);
        return;
    }
}

static int special_args(struct ct_node *const *params, size_t np, struct ct_node *const *body, size_t nb) {
    struct special s = {0, 0};
    declare_params(&s, params, np);
    visit_list(&s, body, nb);
    return s.accessed;
}

/* ------------------------------------------------------------------------------------------
 * Statements */

static const char *const END_SET[] = {"endset", NULL};
static const char *const END_IF[] = {"elif", "else", "endif", NULL};
static const char *const END_ENDIF[] = {"endif", NULL};
static const char *const END_MACRO[] = {"endmacro", NULL};
static const char *const END_FOR[] = {"endfor", "else", NULL};
static const char *const END_ENDFOR[] = {"endfor", NULL};
static const char *const END_CALL[] = {"endcall", NULL};
static const char *const END_FILTER[] = {"endfilter", NULL};

static int parse_if(struct parser *p, uint32_t line, struct ct_node **out) {
    int rc;
    struct nlist body = {0}, alt = {0};
    struct ct_node *n = NULL, *elif;
    if ((rc = enter(p))) goto out;
    NEW(n, S_IF, line);
    TRY(parse_expression(p, &n->a));
    TRY(expect(p, T_CLOSE_STMT, "'%}'"));
    TRY(parse_body(p, END_IF, &body));
    if (is_statement(p, (const char *const[]){"elif", NULL})) {
        uint32_t l2 = cur_line(p);
        p->cur += 2;
        TRY(parse_if(p, l2, &elif));
        TRY(nl_push(&alt, elif));
    } else if (is_statement(p, (const char *const[]){"else", NULL})) {
        p->cur += 2;
        TRY(expect(p, T_CLOSE_STMT, "'%}'"));
        TRY(parse_body(p, END_ENDIF, &alt));
    }
    TRY(nl_finish(p, &body, &n->v, &n->nv));
    TRY(nl_finish(p, &alt, &n->w, &n->nw));
    *out = n;
out:
    free(body.v);
    free(alt.v);
    p->depth--;
    return rc;
}

static int parse_statement(struct parser *p, struct ct_node **out) {
    int rc;
    struct nlist body = {0}, alt = {0};
    struct ct_node *n = NULL;
    uint32_t line = cur_line(p);
    TRY(expect(p, T_OPEN_STMT, "'{%'"));
    if (!is(p, T_IDENT)) { rc = unexpected(p, "a statement name"); goto out; }
    struct ct_tok *name = &p->toks[p->cur];
    if (tok_is_word(name, "set")) {
        p->cur++;
        NEW(n, S_SET, line);
        TRY(parse_sequence(p, 0, &n->a));
        if (is(p, T_EQUALS)) {
            p->cur++;
            TRY(parse_sequence(p, 0, &n->b));
        } else {
            TRY(expect(p, T_CLOSE_STMT, "'%}'"));
            TRY(parse_body(p, END_SET, &body));
            TRY(expect(p, T_OPEN_STMT, "'{%'"));
            TRY(expect_ident(p, "endset"));
            TRY(nl_finish(p, &body, &n->v, &n->nv));
        }
        TRY(expect(p, T_CLOSE_STMT, "'%}'"));
    } else if (tok_is_word(name, "if")) {
        p->cur++;
        TRY(parse_if(p, line, &n));
        TRY(expect(p, T_OPEN_STMT, "'{%'"));
        TRY(expect_ident(p, "endif"));
        TRY(expect(p, T_CLOSE_STMT, "'%}'"));
    } else if (tok_is_word(name, "macro")) {
        struct ct_node *id;
        p->cur++;
        NEW(n, S_MACRO, line);
        TRY(parse_primary(p, &id));
        if (id->kind != N_IDENT) { rc = perr(p, "expected identifier following macro statement"); goto out; }
        n->name = id->name;
        n->name_len = id->name_len;
        TRY(parse_args(p, 1, &n->v, &n->nv));
        TRY(expect(p, T_CLOSE_STMT, "'%}'"));
        TRY(parse_body(p, END_MACRO, &body));
        TRY(nl_finish(p, &body, &n->w, &n->nw));
        n->flags = (uint8_t)special_args(n->v, n->nv, n->w, n->nw);
        TRY(expect(p, T_OPEN_STMT, "'{%'"));
        TRY(expect_ident(p, "endmacro"));
        TRY(expect(p, T_CLOSE_STMT, "'%}'"));
    } else if (tok_is_word(name, "for")) {
        p->cur++;
        NEW(n, S_FOR, line);
        TRY(parse_sequence(p, 1, &n->a));
        if (n->a->kind != N_IDENT && n->a->kind != N_TUPLE) {
            rc = perr(p, "expected identifier/tuple for the loop variable");
            goto out;
        }
        if (!is_ident(p, "in")) { rc = unexpected(p, "'in'"); goto out; }
        p->cur++;
        TRY(parse_expression(p, &n->b));
        TRY(expect(p, T_CLOSE_STMT, "'%}'"));
        TRY(parse_body(p, END_FOR, &body));
        if (is_statement(p, (const char *const[]){"else", NULL})) {
            p->cur += 2;
            TRY(expect(p, T_CLOSE_STMT, "'%}'"));
            TRY(parse_body(p, END_ENDFOR, &alt));
        }
        TRY(nl_finish(p, &body, &n->v, &n->nv));
        TRY(nl_finish(p, &alt, &n->w, &n->nw));
        TRY(expect(p, T_OPEN_STMT, "'{%'"));
        TRY(expect_ident(p, "endfor"));
        TRY(expect(p, T_CLOSE_STMT, "'%}'"));
    } else if (tok_is_word(name, "call")) {
        struct ct_node *callee, *call;
        p->cur++;
        NEW(n, S_CALLBLOCK, line);
        if (is(p, T_LPAREN)) {
            TRY(parse_args(p, 1, &n->v, &n->nv));
            n->flags |= 4;
        }
        TRY(parse_primary(p, &callee));
        if (callee->kind != N_IDENT) { rc = perr(p, "expected identifier following call statement"); goto out; }
        NEW(call, N_CALL, callee->line);
        call->a = callee;
        TRY(parse_args(p, 0, &call->v, &call->nv));
        n->a = call;
        TRY(expect(p, T_CLOSE_STMT, "'%}'"));
        TRY(parse_body(p, END_CALL, &body));
        TRY(nl_finish(p, &body, &n->w, &n->nw));
        n->flags |= (uint8_t)special_args(n->v, n->nv, n->w, n->nw);
        TRY(expect(p, T_OPEN_STMT, "'{%'"));
        TRY(expect_ident(p, "endcall"));
        TRY(expect(p, T_CLOSE_STMT, "'%}'"));
    } else if (tok_is_word(name, "break") || tok_is_word(name, "continue")) {
        int brk = tok_is_word(name, "break");
        p->cur++;
        NEW(n, brk ? S_BREAK : S_CONTINUE, line);
        TRY(expect(p, T_CLOSE_STMT, "'%}'"));
    } else if (tok_is_word(name, "filter")) {
        struct ct_node *f;
        p->cur++;
        NEW(n, S_FILTERBLOCK, line);
        TRY(parse_primary(p, &f));
        if (f->kind == N_IDENT && is(p, T_LPAREN)) TRY(parse_call_expression(p, f, &f));
        n->a = f;
        TRY(expect(p, T_CLOSE_STMT, "'%}'"));
        TRY(parse_body(p, END_FILTER, &body));
        TRY(nl_finish(p, &body, &n->v, &n->nv));
        TRY(expect(p, T_OPEN_STMT, "'{%'"));
        TRY(expect_ident(p, "endfilter"));
        TRY(expect(p, T_CLOSE_STMT, "'%}'"));
    } else {
        rc = perr(p, "unknown statement '%.*s'", (int)(name->len > 40 ? 40 : name->len), name->s);
        goto out;
    }
    *out = n;
out:
    free(body.v);
    free(alt.v);
    return rc;
}

static int parse_any(struct parser *p, struct ct_node **out) {
    int rc;
    if (p->cur >= p->n) return unexpected(p, "more template");
    if ((rc = enter(p))) goto out;
    struct ct_tok *t = &p->toks[p->cur];
    switch (t->type) {
    case T_COMMENT:
        p->cur++;
        if (!(*out = new_node(p, S_COMMENT, t->line))) rc = FOLIO_ENOMEM;
        break;
    case T_TEXT:
        p->cur++;
        if (!(*out = new_node(p, N_STR, t->line))) { rc = FOLIO_ENOMEM; break; }
        if (!((*out)->str = ct_str_immortal(&p->t->arena, t->s, t->len))) rc = FOLIO_ENOMEM;
        break;
    case T_OPEN_STMT:
        rc = parse_statement(p, out);
        break;
    case T_OPEN_EXPR:
        p->cur++;
        if ((rc = parse_expression(p, out))) break;
        rc = expect(p, T_CLOSE_EXPR, "'}}'");
        break;
    default:
        rc = unexpected(p, "text, '{{' or '{%'");
        break;
    }
out:
    p->depth--;
    return rc;
}

int ct_parse(struct chat_template *t, const char *src, size_t len) {
    int rc;
    struct parser p = {.t = t};
    struct nlist body = {0};
    if ((rc = ct_tokenize(&t->arena, src, len, &p.toks, &p.n))) return rc;
    while (p.cur < p.n) {
        struct ct_node *n;
        if ((rc = parse_any(&p, &n))) goto out;
        if ((rc = nl_push(&body, n))) goto out;
    }
    rc = nl_finish(&p, &body, &t->body, &t->nbody);
out:
    free(body.v);
    return rc;
}
