/* ct_internal.h: types shared by the chat-template modules.
 *
 *   ct_lex.c                 preprocessing (trim/lstrip blocks, {% generation %}) and tokens
 *   ct_parse.c               tokens -> AST (struct ct_node), owned by the template's arena
 *   ct_value.c               runtime values, refcounting, JS-exact printing and JSON
 *   ct_eval.c                the interpreter: statements, expressions, scopes, limits
 *   ct_builtins.c            filters, tests, string/dict methods and global functions
 *   chat_template.c          the public API: create/free/load/render
 *
 * Everything mirrors @huggingface/jinja's lexer, parser and runtime, including its departures
 * from Python Jinja (JS number printing, `strip` ignoring its argument, dynamic macro
 * scoping), because the prompt must be byte-identical to what transformers.js produces. */
#ifndef FOLIO_CHAT_TEMPLATE_INTERNAL_H
#define FOLIO_CHAT_TEMPLATE_INTERNAL_H

#include "chat_template/chat_template.h"
#include "base/arena.h"
#include "base/sbuf.h"
#include "base/utf8.h"
#include "base/util.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Limits. A render that passes one fails with FOLIO_EINVAL, never hangs or crashes. */
#define CT_MAX_OUTPUT (4u << 20)      /* bytes of output, and of any one string value */
#define CT_MAX_STEPS 10000000ull      /* evaluation steps (nodes, loop turns, copied items) */
#define CT_MAX_EVAL_DEPTH 400         /* nested evaluations (statements + expressions) */
#define CT_MAX_MACRO_DEPTH 64         /* nested macro/caller calls */
#define CT_MAX_PARSE_DEPTH 150        /* nesting of the source (parentheses, blocks, ...) */
#define CT_MAX_VALUE_DEPTH 512        /* nesting of arrays/objects */
#define CT_MAX_ITEMS (1u << 20)       /* elements of one array or object */

/* ------------------------------------------------------------------------------------------
 * Tokens (the @huggingface/jinja lexer's types) */
enum ct_tok_type {
    T_TEXT, T_NUM, T_STR, T_IDENT, T_EQUALS, T_LPAREN, T_RPAREN, T_OPEN_STMT, T_CLOSE_STMT,
    T_OPEN_EXPR, T_CLOSE_EXPR, T_LBRACKET, T_RBRACKET, T_LBRACE, T_RBRACE, T_COMMA, T_DOT,
    T_COLON, T_PIPE, T_ADD, T_MUL, T_POW, T_CMP, T_UNARY, T_COMMENT,
};
struct ct_tok {
    uint8_t type;
    uint32_t line; /* 1-based line in the original source */
    const char *s; /* token text; for T_STR the unescaped value (arena) */
    size_t len;
};
/* Preprocesses and tokenizes src. Tokens and their text live in a. */
int ct_tokenize(struct arena *a, const char *src, size_t len, struct ct_tok **toks,
                size_t *ntoks);

/* ------------------------------------------------------------------------------------------
 * Strings: immutable, refcounted, NUL-terminated. rc == CT_IMMORTAL marks a string owned by
 * a template (literals): never counted, so concurrent renders never write to it. */
#define CT_IMMORTAL UINT32_MAX
struct ct_str {
    uint32_t rc;
    size_t len;
    char s[];
};

/* ------------------------------------------------------------------------------------------
 * AST */
enum ct_node_kind {
    /* expressions */
    N_STR, N_INT, N_FLOAT, N_IDENT, N_ARRAY, N_TUPLE, N_OBJECT, N_MEMBER, N_SLICE, N_CALL,
    N_KWARG, N_SPREAD, N_KWSPREAD, N_UNARY, N_BINARY, N_FILTER, N_TEST, N_SELECT, N_TERNARY,
    /* statements */
    S_COMMENT, S_IF, S_FOR, S_SET, S_MACRO, S_CALLBLOCK, S_BREAK, S_CONTINUE, S_FILTERBLOCK,
};
enum ct_op {
    OP_NONE, OP_AND, OP_OR, OP_EQ, OP_NE, OP_LT, OP_GT, OP_LE, OP_GE, OP_IN, OP_NOTIN, OP_ADD,
    OP_SUB, OP_CONCAT, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_NOT, OP_NEG, OP_POS,
};
/* Macro/call-block flags: the body reads `kwargs` / `varargs` (so extra arguments land there
 * instead of being an error), as findAccessedSpecialMacroArguments decides. */
#define CT_USES_KWARGS 1
#define CT_USES_VARARGS 2

struct ct_node {
    uint8_t kind;
    uint8_t op;    /* ct_op; N_MEMBER: computed ([]); N_TEST: negated */
    uint8_t flags; /* S_MACRO/S_CALLBLOCK: CT_USES_*; S_CALLBLOCK: 4 = has caller args */
    uint32_t line;
    const char *name; /* N_IDENT, N_KWARG key, N_TEST test, S_MACRO name */
    size_t name_len;
    struct ct_str *str; /* N_STR (immortal) */
    double num;         /* N_INT, N_FLOAT */
    struct ct_node *a, *b, *c;
    /* N_ARRAY/N_TUPLE items, N_OBJECT keys, N_CALL args, bodies (see the parser) */
    struct ct_node **v;
    size_t nv;
    struct ct_node **w; /* N_OBJECT values, alternates/else bodies/macro bodies */
    size_t nw;
};

/* The template's tokens and AST live in its arena and go away with chat_template_free. */
struct chat_template {
    struct arena arena;
    char *src;              /* the source text, NUL-terminated (what detects a model's output formats reads) */
    struct ct_node **body;
    size_t nbody;
};

int ct_parse(struct chat_template *t, const char *src, size_t len);

/* ------------------------------------------------------------------------------------------
 * Runtime values (mirroring @huggingface/jinja's RuntimeValue classes) */
enum ct_vtype { V_UNDEF, V_NULL, V_BOOL, V_INT, V_FLOAT, V_STR, V_ARR, V_OBJ, V_FN };
struct ct_arr;
struct ct_obj;
struct ct_fn;
struct ct_value {
    uint8_t t;
    union {
        int b;
        double n; /* V_INT and V_FLOAT are both JS numbers; only printing differs */
        struct ct_str *s;
        struct ct_arr *a;
        struct ct_obj *o;
        struct ct_fn *f;
    } u;
};
/* Arrays never change after creation. tuple: a TupleValue (not printable, not `iterable`). */
struct ct_arr {
    uint32_t rc;
    uint8_t tuple;
    uint16_t depth;
    size_t n;
    struct ct_value it[];
};
/* Insertion-ordered maps. Only namespaces change after creation (set ns.x = ...). */
enum ct_obj_kind { O_OBJECT, O_NAMESPACE, O_KWARGS };
struct ct_obj {
    uint32_t rc;
    uint8_t kind;
    uint16_t depth;
    size_t n, cap;
    struct ct_str **k;
    struct ct_value *v;
    uint32_t *h; /* hash index (slot = entry + 1) once the map is large, so a context with
                  * many keys cannot make lookups quadratic */
    size_t hcap;
};
enum ct_fn_kind { F_BUILTIN, F_METHOD, F_MACRO, F_CALLER };
struct ct_env;
struct ct_fn {
    uint32_t rc;
    uint8_t kind;
    uint8_t id;               /* builtin / method id */
    struct ct_value self;     /* F_METHOD: the string or object it is bound to */
    const struct ct_node *node; /* F_MACRO: S_MACRO; F_CALLER: S_CALLBLOCK */
    struct ct_env *env;       /* F_CALLER: the call block's scope (valid while serial is live) */
    uint64_t serial;
};

/* Scopes: a chain of small variable tables, each on the C stack of the statement that opened
 * it. Names point into the template or the context JSON, both alive for the render. */
struct ct_var {
    const char *name;
    size_t len;
    struct ct_value v;
};
struct ct_env {
    struct ct_env *parent;
    struct ct_var *vars;
    size_t n, cap;
    uint32_t *h; /* hash index, as in ct_obj (the global scope holds the context's keys) */
    size_t hcap;
};

/* A live {% call %} block, so that a `caller` that escaped its block is refused. */
struct ct_call_frame {
    uint64_t serial;
    struct ct_call_frame *prev;
};

struct ct_render {
    uint64_t steps;
    int depth, macro_depth;
    struct ct_obj **ns; /* every namespace made, emptied at the end to break cycles */
    size_t n_ns, cap_ns;
    struct ct_call_frame *frames;
    uint64_t next_serial;
};

/* Control flow out of a loop body, passed up like an error code. */
#define CT_BREAK 1
#define CT_CONTINUE 2

/* --- hash index over n keys (ct_obj, ct_env): key(i) gives entry i's name */
#define CT_HASH_MIN 16
uint64_t ct_hash(const char *s, size_t n);
/* (Re)builds or extends the index after entry n-1 was appended; keys from get(ctx, i). */
int ct_hash_add(uint32_t **h, size_t *hcap, size_t n,
                void (*get)(const void *ctx, size_t i, const char **s, size_t *len), const void *ctx);
/* The entry with that key, or -1. */
long ct_hash_find(const uint32_t *h, size_t hcap, const char *s, size_t len,
                  void (*get)(const void *ctx, size_t i, const char **s, size_t *len), const void *ctx);

/* --- errors and limits */
int ct_fail(const struct ct_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ct_charge(struct ct_render *r, uint64_t steps);

/* --- values */
static inline struct ct_value ct_undef(void) { struct ct_value v = {.t = V_UNDEF}; return v; }
static inline struct ct_value ct_null(void) { struct ct_value v = {.t = V_NULL}; return v; }
static inline struct ct_value ct_bool(int b) { struct ct_value v = {.t = V_BOOL, .u.b = !!b}; return v; }
static inline struct ct_value ct_int(double n) { struct ct_value v = {.t = V_INT, .u.n = n}; return v; }
static inline struct ct_value ct_float(double n) { struct ct_value v = {.t = V_FLOAT, .u.n = n}; return v; }
static inline int ct_is_num(struct ct_value v) { return v.t == V_INT || v.t == V_FLOAT; }
static inline int ct_is_ns(struct ct_value v) { return v.t == V_OBJ && v.u.o->kind == O_NAMESPACE; }
/* ObjectValue in the reference: plain objects and keyword arguments (not namespaces). */
static inline int ct_is_objval(struct ct_value v) { return v.t == V_OBJ && v.u.o->kind != O_NAMESPACE; }

struct ct_str *ct_str_new(const char *s, size_t len); /* rc 1; NULL if out of memory */
struct ct_str *ct_str_immortal(struct arena *a, const char *s, size_t len);
int ct_mkstr(struct ct_render *r, const char *s, size_t len, struct ct_value *out);
int ct_mkstr_buf(struct ct_render *r, struct sbuf *b, struct ct_value *out); /* takes b */
void ct_retain(struct ct_value v);
void ct_release(struct ct_value v);
struct ct_value ct_ref(struct ct_value v); /* ct_retain, returning v */
/* Releases *v and leaves it undefined. Every function that fails leaves its output undefined,
 * so that callers can release outputs unconditionally. */
static inline void ct_clear(struct ct_value *v) {
    ct_release(*v);
    *v = ct_undef();
}
int ct_arr_new(struct ct_render *r, size_t n, struct ct_value *out); /* items undefined */
int ct_arr_finish(struct ct_value arr); /* computes the depth; error if too deep */
int ct_obj_new(struct ct_render *r, int kind, struct ct_value *out);
/* Sets key (copied) to v (reference taken over), in place when the key exists. */
int ct_obj_set(struct ct_render *r, struct ct_obj *o, const char *k, size_t klen, struct ct_value v);
struct ct_value *ct_obj_get(const struct ct_obj *o, const char *k, size_t klen);
int ct_fn_new(struct ct_render *r, int kind, int id, struct ct_value *out);
int ct_truthy(struct ct_value v);
const char *ct_type_name(struct ct_value v);

/* --- buffers (bounded by CT_MAX_OUTPUT) */
int ct_buf_put(struct ct_render *r, struct sbuf *b, const char *s, size_t n);
int ct_buf_puts(struct ct_render *r, struct sbuf *b, const char *s);

/* --- printing, exactly as the reference's toString/String()/toJSON */
void ct_js_number(double x, char out[40]);                 /* String(x) */
int ct_print(struct ct_render *r, struct ct_value v, struct sbuf *b);   /* {{ v }} */
int ct_display(struct ct_render *r, struct ct_value v, struct sbuf *b); /* v.toString() */
int ct_raw(struct ct_render *r, struct ct_value v, struct sbuf *b);     /* String(v.value) */
struct ct_json_opts {
    int indent; /* 0: none */
    int ensure_ascii, sort_keys;
    const char *item_sep, *key_sep; /* NULL: the defaults for indent */
    size_t item_sep_len, key_sep_len;
};
int ct_json(struct ct_render *r, struct ct_value v, const struct ct_json_opts *o, int depth,
            int undef_to_null, struct sbuf *b);
/* JS `==` on .value, `===` on .value, and compareRuntimeValues. */
int ct_loose_eq(struct ct_render *r, struct ct_value a, struct ct_value b);
int ct_strict_eq(struct ct_value a, struct ct_value b);
int ct_compare(const struct ct_node *n, struct ct_value a, struct ct_value b, int case_sensitive,
               int *out);

/* --- JS string helpers over UTF-8 */
size_t ct_js_space(const char *p, const char *end); /* bytes of a JS \s char at p, or 0 */
size_t ct_utf16_len(const char *s, size_t n);
/* The code point at s[*i], moving *i past it; an ill-formed byte gives -1 and moves by one,
 * so that each bad byte is one unit to the callers. */
static inline int ct_utf8_next(const char *s, size_t n, size_t *i) {
    uint32_t cp;
    size_t k = utf8_decode(s + *i, n - *i, &cp, NULL, NULL);
    *i += k ? k : 1;
    return k ? (int)cp : -1;
}
int ct_put_cp(struct ct_render *r, struct sbuf *b, uint32_t cp);
double ct_parse_int(const char *s, size_t n);   /* parseInt(s, 10), NaN on failure */
double ct_parse_float(const char *s, size_t n); /* parseFloat(s) */
int ct_case_map(struct ct_render *r, const char *s, size_t n, int upper, struct sbuf *b);

/* --- evaluation (ct_eval.c) */
int ct_eval(struct ct_render *r, const struct ct_node *n, struct ct_env *env, struct ct_value *out);
int ct_exec_block(struct ct_render *r, struct ct_node *const *body, size_t n, struct ct_env *env,
                  struct sbuf *out);
struct ct_value ct_lookup(struct ct_env *env, const char *name, size_t len);
int ct_env_set(struct ct_render *r, struct ct_env *env, const char *name, size_t len,
               struct ct_value v); /* takes the reference */
void ct_env_clear(struct ct_env *env);
/* Evaluated call arguments: positional, then keyword (the reference's evaluateArguments). */
struct ct_args {
    struct ct_value *pos;
    size_t npos, cap;
    struct ct_value kw; /* V_OBJ of kind O_KWARGS, or V_UNDEF when there are none */
};
int ct_eval_args(struct ct_render *r, struct ct_node *const *args, size_t n, struct ct_env *env,
                 struct ct_args *out);
void ct_args_free(struct ct_args *a);
int ct_call(struct ct_render *r, const struct ct_node *at, struct ct_value fn, struct ct_args *args,
            struct ct_env *env, struct ct_value *out);

/* --- builtins (ct_builtins.c) */
enum ct_builtin { B_RAISE, B_RANGE, B_STRFTIME, B_NAMESPACE };
enum ct_method {
    M_UPPER, M_LOWER, M_STRIP, M_TITLE, M_CAPITALIZE, M_RSTRIP, M_LSTRIP, M_STARTSWITH,
    M_ENDSWITH, M_SPLIT, M_REPLACE, M_GET, M_ITEMS, M_KEYS, M_VALUES, M_DICTSORT,
};
/* The member `name` of a string/array/object (builtins): 0 with *out UNDEF when none. */
int ct_member_builtin(struct ct_render *r, struct ct_value obj, const char *name, size_t len,
                      struct ct_value *out);
int ct_call_builtin(struct ct_render *r, const struct ct_node *at, const struct ct_fn *f,
                    struct ct_args *args, struct ct_value *out);
int ct_apply_filter(struct ct_render *r, struct ct_value operand, const struct ct_node *filter,
                    struct ct_env *env, struct ct_value *out);
/* Runs test `name` (with optional second operand b): 0, 1 when there is no such test, or an
 * error code. */
int ct_run_test(const struct ct_node *at, const char *name, size_t len, struct ct_value a,
                const struct ct_value *b, int *result);

#endif
