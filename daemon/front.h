/* front: foliod's HTTP port (front.c): every request to it goes through one route table to
 * the OpenAI proxy, the ops endpoints, the admin API (admin_api.h) or the console's files. */
#ifndef FOLIO_FRONT_H
#define FOLIO_FRONT_H

struct foliod;
struct front;

/* Listens on d->cfg.host:port (port 0: a free one) with d->cfg's limits; *out on success. */
int front_start(struct foliod *d, struct front **out);
/* The port it listens on. */
int front_port(const struct front *f);
/* Stops the server (its handlers have returned) and frees it; NULL does nothing. */
void front_stop(struct front *f);

#endif
