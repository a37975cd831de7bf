/* audit: failed admin logins, aggregated so that a password-guessing loop cannot flush the
 * event log. At most one `admin.login_failed` event per window (60 s): the first failure
 * after a quiet window writes at once, later ones are counted by client address and written
 * with the next failure past the window, the next successful login, or audit_free (shutdown).
 * The store keeps the newest 100 such events (store_event_add prunes). Thread-safe. */
#ifndef FOLIO_AUDIT_H
#define FOLIO_AUDIT_H

struct store;
struct audit;

/* NULL when out of memory. The caller frees with audit_free, which writes what is pending
 * (NULL: no-op). */
struct audit *audit_create(struct store *st, double window_s);
void audit_free(struct audit *a);
/* One failed login from addr at now (folio_now() seconds). */
void audit_login_failed(struct audit *a, const char *addr, double now);
/* Writes the pending failures, if any (a successful login calls it). */
void audit_flush(struct audit *a, double now);

#endif
