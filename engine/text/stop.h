/* stop: stop strings matched on the streamed text. Text deltas go in; what comes out is the
 * text that is safe to send: a tail that could still grow into a stop string is held back
 * until the next delta settles it, and on a match the output ends just before the stop string
 * (or just after it, with include_stop_str_in_output) and nothing more is accepted.
 *
 * The earliest match in the text wins; among stop strings that match at the same place, the
 * one listed first. A stop string can span any number of deltas.
 *
 * Two parts, so that a request's n samples do not each copy its stop strings: a stop_set
 * (the strings and their KMP tables, immutable once built, shared by every sample of a
 * request) and a stop (one stream's state: a KMP state per string and the held-back text, at
 * most the longest string). A set costs 5 bytes per stop-string byte plus a little per
 * string; a state 4 bytes per string plus the longest string.
 *
 * All memory is allocated in the create functions; stop_push never allocates. */
#ifndef FOLIO_STOP_H
#define FOLIO_STOP_H

#include <stddef.h>

struct stop_set;
struct stop;

/* Copies the n stop strings (empty ones are ignored) and builds their tables. NULL on
 * allocation failure or a string of 4 GiB or more. Free with stop_set_free, after every stop
 * made from it. */
struct stop_set *stop_set_create(const char *const *stops, int n, int include_stop_str_in_output);
void stop_set_free(struct stop_set *set);

/* Bytes the set holds (the strings and their tables), for memory accounting. */
size_t stop_set_bytes(const struct stop_set *set);
/* The longest stop string: what a stream may hold back. */
size_t stop_set_max_len(const struct stop_set *set);
int stop_set_count(const struct stop_set *set);
/* The i-th stop string as given (NULL outside 0..n-1); it lives as long as the set. */
const char *stop_set_string(const struct stop_set *set, int i);

/* A fresh stream over a shared set (borrowed: it must outlive the stream). NULL on allocation
 * failure. Free with stop_free. */
struct stop *stop_open(const struct stop_set *set);

/* A stream with a set of its own, which stop_free frees with it: for one-off uses. */
struct stop *stop_create(const char *const *stops, int n, int include_stop_str_in_output);
void stop_free(struct stop *s);

/* The most bytes stop_push can write for a delta of n bytes: n plus what was held back. */
size_t stop_max_output(const struct stop *s, size_t n);

/* Feeds a delta; writes the releasable text to out (cap >= stop_max_output(s, n)) and its
 * length to *n_out. Returns the index of the stop string that matched, or -1. After a match,
 * further pushes return the same index and output nothing. */
int stop_push(struct stop *s, const char *text, size_t n, char *out, size_t cap, size_t *n_out);

/* The stream ended without a match: releases the held-back text. */
void stop_flush(struct stop *s, char *out, size_t cap, size_t *n_out);

/* Index of the matched stop string (-1 if none) and its text. */
int stop_matched(const struct stop *s);
const char *stop_string(const struct stop *s, int i);

#endif
