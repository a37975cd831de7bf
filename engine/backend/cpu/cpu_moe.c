/* cpu_moe: see cpu_moe.h. */
#include "backend/cpu/cpu_moe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The fewest weight rows a GEMM task takes (cpu_rows_per_task sizes them). */
#define MIN_ROWS_PER_TASK 16

struct cpu_moe {
    int max_pairs, hidden, inter, num_experts;
    int32_t *expert;   /* [max_pairs] pair p = (token p / top_k, slot p % top_k) -> its expert */
    float *weight;     /* [max_pairs] its routing weight */
    int32_t *row_of;   /* [max_pairs] the pair's row in the grouped buffers */
    int32_t *offset;   /* [num_experts + 1] first grouped row of each expert */
    int32_t *tasks;    /* [2 * num_experts * ceil(max(hidden, inter) / MIN_ROWS_PER_TASK)] (expert, row0) */
    int rows_per_task; /* of the tasks planned last */
    float *probs;      /* [num_experts] one token's softmax */
    uint8_t *taken;    /* [num_experts] already among its top k */
    float *xg;         /* [max_pairs, hidden] input rows grouped by expert */
    float *g, *u;      /* [max_pairs, inter] */
    float *y;          /* [max_pairs, hidden] each pair's expert output */
};

struct cpu_moe *cpu_moe_create(int max_pairs, int hidden, int inter, int num_experts) {
    struct cpu_moe *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    const size_t P = (size_t)max_pairs, H = (size_t)hidden, I = (size_t)inter, E = (size_t)num_experts;
    const size_t widest = H > I ? H : I;
    m->max_pairs = max_pairs;
    m->hidden = hidden;
    m->inter = inter;
    m->num_experts = num_experts;
    m->expert = malloc(P * sizeof(int32_t));
    m->weight = malloc(P * sizeof(float));
    m->row_of = malloc(P * sizeof(int32_t));
    m->offset = malloc((E + 1) * sizeof(int32_t));
    m->tasks = malloc(2 * 2 * E * ((widest + MIN_ROWS_PER_TASK - 1) / MIN_ROWS_PER_TASK) * sizeof(int32_t));
    m->probs = malloc(E * sizeof(float));
    m->taken = malloc(E);
    m->xg = malloc(P * H * sizeof(float));
    m->g = malloc(P * I * sizeof(float));
    m->u = malloc(P * I * sizeof(float));
    m->y = malloc(P * H * sizeof(float));
    if (!m->expert || !m->weight || !m->row_of || !m->offset || !m->tasks || !m->probs || !m->taken || !m->xg || !m->g || !m->u ||
        !m->y) {
        cpu_moe_free(m);
        return NULL;
    }
    return m;
}

void cpu_moe_free(struct cpu_moe *m) {
    if (!m) return;
    free(m->expert);
    free(m->weight);
    free(m->row_of);
    free(m->offset);
    free(m->tasks);
    free(m->probs);
    free(m->taken);
    free(m->xg);
    free(m->g);
    free(m->u);
    free(m->y);
    free(m);
}

int cpu_moe_fits(const struct cpu_moe *m, int top_k, int hidden, int inter, int num_experts) {
    return m && top_k <= m->max_pairs && hidden == m->hidden && inter == m->inter && num_experts == m->num_experts;
}

/* Softmax over the experts in fp32 (as transformers computes it), then the top_k, highest
 * first (the lower id on a tie), renormalized when asked. A NaN logit (from a NaN hidden
 * state) still picks valid experts: the output is NaN, never an out-of-range id. */
static void route(struct cpu_moe *m, const float *logits, int E, int k, int norm, int32_t *ids, float *w) {
    float mx = logits[0], sum = 0.0f;
    for (int e = 1; e < E; e++)
        if (logits[e] > mx) mx = logits[e];
    for (int e = 0; e < E; e++) sum += (m->probs[e] = expf(logits[e] - mx));
    for (int e = 0; e < E; e++) m->probs[e] /= sum;
    memset(m->taken, 0, (size_t)E);
    float kept = 0.0f;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (!m->taken[e] && (best < 0 || m->probs[e] > m->probs[best])) best = e;
        ids[j] = best;
        w[j] = m->probs[best];
        kept += w[j];
        m->taken[best] = 1;
    }
    if (norm)
        for (int j = 0; j < k; j++) w[j] /= kept;
}

struct gemm_job {
    const struct cpu_kernels *k;
    const struct cpu_moe *m;
    const int32_t *tasks;            /* (expert, row0) pairs */
    int n_first;                     /* tasks of the first product; the rest are the second's */
    const struct backend_weight *w[2];
    const float *x;                  /* grouped input, [rows, K] */
    float *out[2];                   /* grouped output, [rows, N] */
    int K, N;                        /* per expert: w is [N, K] */
};

static void gemm_task(void *vj, int task, int thread) {
    const struct gemm_job *j = vj;
    const int which = task >= j->n_first;
    const int e = j->tasks[2 * task], n0 = j->tasks[2 * task + 1];
    const int n1 = n0 + j->m->rows_per_task < j->N ? n0 + j->m->rows_per_task : j->N;
    const struct backend_weight *w = j->w[which];
    const size_t es = folio_dtype_size(w->dtype);
    const char *we = (const char *)w->data + (size_t)e * j->N * j->K * es;
    const int r0 = j->m->offset[e], rows = j->m->offset[e + 1] - r0;
    j->k->gemm[w->dtype](j->x + (size_t)r0 * j->K, rows, j->K, we, n0, n1, j->out[which] + (size_t)r0 * j->N, j->N,
                         NULL);
}

/* Tasks of (expert, a run of weight rows) over the active experts, for each of `products`
 * stacked matrices of N rows per expert: contiguous runs, sized as the dense GEMMs' are, so a
 * decode step streams each active expert's matrix in long reads. */
static int plan_tasks(struct cpu_moe *m, int N, int products, int threads) {
    int n = 0, active = 0;
    for (int e = 0; e < m->num_experts; e++) active += m->offset[e + 1] > m->offset[e];
    const int rpt = cpu_rows_per_task((int64_t)active * N * products, threads);
    m->rows_per_task = rpt < N ? rpt : N;
    for (int p = 0; p < products; p++)
        for (int e = 0; e < m->num_experts; e++) {
            if (m->offset[e + 1] == m->offset[e]) continue;
            for (int r = 0; r < N; r += m->rows_per_task) {
                m->tasks[2 * n] = e;
                m->tasks[2 * n + 1] = r;
                n++;
            }
        }
    return n;
}

static void chunk(struct cpu_moe *m, struct threadpool *tp, const struct cpu_kernels *k,
                  const struct backend_moe_args *a, int t0, int T) {
    const int E = a->num_experts, K = a->top_k, H = a->hidden, I = a->inter, P = T * K;
    for (int t = 0; t < T; t++)
        route(m, a->router_logits + (size_t)(t0 + t) * E, E, K, a->norm_topk_prob, m->expert + (size_t)t * K,
              m->weight + (size_t)t * K);
    /* Counting sort of the pairs by expert; within an expert, pairs keep token order. */
    memset(m->offset, 0, sizeof(int32_t) * (size_t)(E + 1));
    for (int p = 0; p < P; p++) m->offset[m->expert[p] + 1]++;
    for (int e = 0; e < E; e++) m->offset[e + 1] += m->offset[e];
    for (int p = 0; p < P; p++) {
        const int r = m->offset[m->expert[p]]++;
        m->row_of[p] = r;
        memcpy(m->xg + (size_t)r * H, a->x + (size_t)(t0 + p / K) * H, sizeof(float) * (size_t)H);
    }
    for (int e = E; e > 0; e--) m->offset[e] = m->offset[e - 1]; /* the sort advanced each to its end */
    m->offset[0] = 0;

    const int threads = threadpool_size(tp);
    const int both = plan_tasks(m, I, 2, threads), half = both / 2;
    struct gemm_job gu = {k, m, m->tasks, half, {a->gate, a->up}, m->xg, {m->g, m->u}, H, I};
    threadpool_run(tp, 2 * half, gemm_task, &gu);
    if (a->act == BACKEND_ACT_SILU) {
        k->silu_mul(m->g, m->u, m->g, (size_t)P * I);
    } else {
        for (size_t i = 0; i < (size_t)P * I; i++) m->g[i] = cpu_gelu_tanh(m->g[i]) * m->u[i];
    }
    const int nd = plan_tasks(m, H, 1, threads);
    struct gemm_job dn = {k, m, m->tasks, nd, {a->down, a->down}, m->g, {m->y, m->y}, I, H};
    threadpool_run(tp, nd, gemm_task, &dn);
    /* Each token sums its experts in slot order, so its output does not depend on which other
     * tokens shared the batch. */
    for (int t = 0; t < T; t++) {
        float *o = a->out + (size_t)(t0 + t) * H;
        memset(o, 0, sizeof(float) * (size_t)H);
        for (int j = 0; j < K; j++) {
            const float w = m->weight[(size_t)t * K + j];
            const float *y = m->y + (size_t)m->row_of[(size_t)t * K + j] * H;
            for (int i = 0; i < H; i++) o[i] += w * y[i];
        }
    }
}

void cpu_moe_run(struct cpu_moe *m, struct threadpool *tp, const struct cpu_kernels *k,
                 const struct backend_moe_args *a) {
    const int per = m->max_pairs / a->top_k;
    for (int t0 = 0; t0 < a->T; t0 += per) chunk(m, tp, k, a, t0, a->T - t0 < per ? a->T - t0 : per);
}
