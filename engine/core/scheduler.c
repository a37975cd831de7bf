/* scheduler: see scheduler.h. */
#include "core/scheduler.h"

#include <stdlib.h>

struct list {
    struct scheduler_seq *head, *tail;
    int count;
};

struct sched {
    struct scheduler_params p;
    struct kv_cache *kv;
    struct list waiting, running;
    int seats;                 /* seats of the running sequences */
    int preempted_waiting;     /* waiting sequences that were preempted */
    long long preemptions;
    struct scheduler_seq **out_seqs; /* [max_num_seqs] */
    int *out_new;                /* [max_num_seqs] */
    int32_t *out_copies;         /* [max_num_seqs, 2] */
    int32_t *out_copies_local;   /* [max_num_seqs, 2] */
};

static int before(const struct scheduler_seq *a, const struct scheduler_seq *b) {
    return a->priority != b->priority ? a->priority < b->priority : a->arrival < b->arrival;
}

static void list_unlink(struct list *l, struct scheduler_seq *q) {
    if (q->prev) q->prev->next = q->next;
    else l->head = q->next;
    if (q->next) q->next->prev = q->prev;
    else l->tail = q->prev;
    q->prev = q->next = NULL;
    l->count--;
}

static void list_insert_after(struct list *l, struct scheduler_seq *at, struct scheduler_seq *q) {
    q->prev = at;
    q->next = at ? at->next : l->head;
    if (q->next) q->next->prev = q;
    else l->tail = q;
    if (at) at->next = q;
    else l->head = q;
    l->count++;
}

/* Sorted by (priority, arrival); equal keys keep insertion order. Searching from the tail
 * makes the common case (FCFS arrivals) O(1). */
static void list_insert_sorted(struct list *l, struct scheduler_seq *q) {
    struct scheduler_seq *at = l->tail;
    while (at && before(q, at)) at = at->prev;
    list_insert_after(l, at, q);
}

struct sched *scheduler_create(const struct scheduler_params *p, struct kv_cache *kv) {
    if (p->max_num_seqs < 1 || p->max_num_batched_tokens < 1) return NULL;
    struct sched *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->kv = kv;
    s->out_seqs = calloc((size_t)p->max_num_seqs, sizeof *s->out_seqs);
    s->out_new = calloc((size_t)p->max_num_seqs, sizeof *s->out_new);
    s->out_copies = calloc((size_t)p->max_num_seqs * 2, sizeof *s->out_copies);
    s->out_copies_local = calloc((size_t)p->max_num_seqs * 2, sizeof *s->out_copies_local);
    if (!s->out_seqs || !s->out_new || !s->out_copies || !s->out_copies_local) {
        scheduler_free(s);
        return NULL;
    }
    return s;
}

void scheduler_free(struct sched *s) {
    if (!s) return;
    free(s->out_seqs);
    free(s->out_new);
    free(s->out_copies);
    free(s->out_copies_local);
    free(s);
}

void scheduler_output_init(struct sched *s, struct scheduler_output *out) {
    *out = (struct scheduler_output){.seqs = s->out_seqs, .num_new = s->out_new, .copies = s->out_copies,
                                     .copies_local = s->out_copies_local};
}

/* ---- both caches at once ---- */

static void release(struct sched *s, struct scheduler_seq *q) {
    kv_cache_release(s->kv, &q->kv);
    if (s->p.kv_local) kv_cache_release(s->p.kv_local, &q->kv_local);
}

/* Whether the pools can supply what growing q to num_tokens takes. */
static int fits(const struct sched *s, const struct scheduler_seq *q, int num_tokens) {
    if (kv_cache_blocks_needed(s->kv, &q->kv, num_tokens) > kv_cache_num_available(s->kv)) return 0;
    return !s->p.kv_local ||
           kv_cache_blocks_needed(s->p.kv_local, &q->kv_local, num_tokens) <= kv_cache_num_available(s->p.kv_local);
}

/* Grows q to num_tokens in both caches (after fits said yes, so only a full table fails). */
static int reserve(struct sched *s, struct scheduler_seq *q, int num_tokens, struct scheduler_output *out) {
    int rc = kv_cache_reserve(s->kv, &q->kv, num_tokens, out->copies, &out->num_copies);
    if (!rc && s->p.kv_local)
        rc = kv_cache_reserve(s->p.kv_local, &q->kv_local, num_tokens, out->copies_local, &out->num_copies_local);
    return rc;
}

/* The longest cached prefix both caches hold: each match is cut back to the other's. */
static int match(struct sched *s, struct scheduler_seq *q) {
    int hit = kv_cache_match_prefix_window(s->kv, &q->kv, q->tokens, q->num_tokens, s->p.window);
    if (!s->p.kv_local) return hit;
    int local = kv_cache_match_prefix_window(s->p.kv_local, &q->kv_local, q->tokens, hit + 1, s->p.local_window);
    if (local < hit) {
        kv_cache_release(s->kv, &q->kv);
        hit = kv_cache_match_prefix_window(s->kv, &q->kv, q->tokens, local + 1, s->p.window);
    }
    return hit;
}

int scheduler_num_running(const struct sched *s) { return s->running.count; }
int scheduler_num_waiting(const struct sched *s) { return s->waiting.count; }
long long scheduler_num_preemptions(const struct sched *s) { return s->preemptions; }
int scheduler_num_preempted_waiting(const struct sched *s) { return s->preempted_waiting; }

void scheduler_add(struct sched *s, struct scheduler_seq *q) {
    q->state = SCHED_WAITING;
    list_insert_sorted(&s->waiting, q);
}

void scheduler_finish(struct sched *s, struct scheduler_seq *q) {
    if (q->state == SCHED_WAITING) {
        list_unlink(&s->waiting, q);
        s->preempted_waiting -= q->num_preemptions > 0;
    } else if (q->state == SCHED_RUNNING) {
        list_unlink(&s->running, q);
        s->seats -= q->seats;
    }
    release(s, q);
    q->state = SCHED_DONE;
}

void scheduler_fork(struct sched *s, struct scheduler_seq *parent, struct scheduler_seq *child) {
    kv_cache_fork(s->kv, &parent->kv, &child->kv);
    if (s->p.kv_local) kv_cache_fork(s->p.kv_local, &parent->kv_local, &child->kv_local);
    parent->seats--;
    child->seats = 1;
    child->state = SCHED_RUNNING;
    child->admitted = 1;
    list_insert_after(&s->running, parent, child);
}

static void preempt(struct sched *s, struct scheduler_seq *q) {
    list_unlink(&s->running, q);
    s->seats -= q->seats;
    release(s, q);
    q->num_preemptions++;
    s->preemptions++;
    s->preempted_waiting++;
    q->state = SCHED_WAITING;
    list_insert_sorted(&s->waiting, q);
}

static void schedule_seq(struct scheduler_output *out, struct scheduler_seq *q, int n) {
    out->seqs[out->num_seqs] = q;
    out->num_new[out->num_seqs++] = n;
    out->num_tokens += n;
}

int scheduler_schedule(struct sched *s, struct scheduler_output *out) {
    int budget = s->p.max_num_batched_tokens;
    out->num_seqs = out->num_tokens = out->num_copies = out->num_copies_local = out->num_preempted = 0;

    /* Running sequences first. Victims come from the tail, which lies at or after q, so a
     * sequence already scheduled this step is never preempted. */
    for (struct scheduler_seq *q = s->running.head; q && budget > 0;) {
        struct scheduler_seq *next = q->next;
        int n = q->num_tokens - q->kv.num_computed;
        if (n > budget) n = budget;
        if (q->paused || n <= 0) {
            q = next;
            continue;
        }
        int self_preempted = 0;
        while (!fits(s, q, q->kv.num_computed + n)) {
            struct scheduler_seq *victim = s->running.tail;
            if (victim == next) next = NULL; /* victim is q's successor, which was the tail */
            preempt(s, victim);
            out->num_preempted++;
            if (victim == q) {
                self_preempted = 1;
                break;
            }
        }
        if (self_preempted) break;
        if (reserve(s, q, q->kv.num_computed + n, out) != 0) break;
        schedule_seq(out, q, n);
        budget -= n;
        q = next;
    }

    /* Then waiting ones, unless this step had to preempt: the pool is full. */
    while (out->num_preempted == 0 && budget > 0 && s->waiting.head) {
        struct scheduler_seq *q = s->waiting.head;
        if (s->seats + q->seats > s->p.max_num_seqs) break;
        int cached = match(s, q);
        int n = q->num_tokens - q->kv.num_computed;
        if (n > budget) n = budget;
        if (!fits(s, q, q->kv.num_computed + n) || reserve(s, q, q->kv.num_computed + n, out) != 0) {
            release(s, q);
            break;
        }
        kv_cache_count_prefix(s->kv, q->num_tokens, cached);
        if (!q->admitted) {
            q->admitted = 1;
            q->num_cached = cached;
        }
        list_unlink(&s->waiting, q);
        s->preempted_waiting -= q->num_preemptions > 0;
        list_insert_sorted(&s->running, q);
        q->state = SCHED_RUNNING;
        s->seats += q->seats;
        schedule_seq(out, q, n);
        budget -= n;
    }
    return out->num_seqs;
}

void scheduler_commit(struct sched *s, const struct scheduler_output *out) {
    for (int i = 0; i < out->num_seqs; i++) {
        struct scheduler_seq *q = out->seqs[i];
        const int done = q->kv.num_computed + out->num_new[i];
        kv_cache_commit(s->kv, &q->kv, q->tokens, done);
        /* No later query of q reads a key more than a window behind its own position. */
        if (s->p.window > 0) kv_cache_drop_before(s->kv, &q->kv, done - s->p.window + 1);
        if (s->p.kv_local) {
            kv_cache_commit(s->p.kv_local, &q->kv_local, q->tokens, done);
            kv_cache_drop_before(s->p.kv_local, &q->kv_local, done - s->p.local_window + 1);
        }
    }
}
