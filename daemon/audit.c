/* audit: see audit.h. */
#include "audit.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

#define AUDIT_ADDRS 64 /* addresses counted one by one; the rest as "others" */
#define AUDIT_TOP 3    /* named in the event */

struct audit {
    pthread_mutex_t mu;
    struct store *st;
    double window, last_write; /* last_write < 0: never */
    long long pending, others;
    int n;
    struct {
        char addr[64];
        long long count;
    } by[AUDIT_ADDRS];
};

struct audit *audit_create(struct store *st, double window_s) {
    struct audit *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    pthread_mutex_init(&a->mu, NULL);
    a->st = st;
    a->window = window_s;
    a->last_write = -1;
    return a;
}

/* Writes the pending count as one event. Caller holds a->mu. */
static void write_pending(struct audit *a, double now) {
    if (!a->pending) return;
    char who[400] = "";
    size_t w = 0;
    int shown = 0;
    /* The top few addresses by count. */
    for (int k = 0; k < AUDIT_TOP && k < a->n; k++) {
        int best = -1;
        for (int i = 0; i < a->n; i++)
            if (a->by[i].count > 0 && (best < 0 || a->by[i].count > a->by[best].count)) best = i;
        if (best < 0) break;
        w += (size_t)snprintf(who + w, sizeof who - w, "%s%s (%lld)", shown ? ", " : "", a->by[best].addr,
                              a->by[best].count);
        if (w >= sizeof who) w = sizeof who - 1;
        a->by[best].count = -a->by[best].count; /* taken; restored below */
        shown++;
    }
    const int more = a->n - shown;
    if (more > 0 || a->others)
        snprintf(who + w, sizeof who - w, " and %d%s more address%s", more, a->others ? "+" : "",
                 more == 1 && !a->others ? "" : "es");
    store_event_add(a->st, "warn", "admin.login_failed", 0, "%lld failed admin login%s (wrong password) from %s",
                    a->pending, a->pending == 1 ? "" : "s", who);
    a->pending = a->others = 0;
    a->n = 0;
    a->last_write = now;
}

void audit_login_failed(struct audit *a, const char *addr, double now) {
    if (!a) return;
    pthread_mutex_lock(&a->mu);
    a->pending++;
    int i = 0;
    while (i < a->n && strcmp(a->by[i].addr, addr)) i++;
    if (i < a->n) a->by[i].count++;
    else if (a->n < AUDIT_ADDRS) {
        snprintf(a->by[a->n].addr, sizeof a->by[a->n].addr, "%s", addr);
        a->by[a->n++].count = 1;
    } else a->others++;
    if (a->last_write < 0 || now - a->last_write >= a->window) write_pending(a, now);
    pthread_mutex_unlock(&a->mu);
}

void audit_flush(struct audit *a, double now) {
    if (!a) return;
    pthread_mutex_lock(&a->mu);
    write_pending(a, now);
    pthread_mutex_unlock(&a->mu);
}

void audit_free(struct audit *a) {
    if (!a) return;
    audit_flush(a, 0);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
