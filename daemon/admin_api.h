/* admin_api: everything under /api/ (admin_api.c), for the console and for scripts; routed
 * by a table. front.c hands it every request whose path is /api or starts with /api/. */
#ifndef FOLIO_ADMIN_API_H
#define FOLIO_ADMIN_API_H

#include "auth.h"

struct foliod;
struct mg_connection;

/* Answers one request; path is the whole path ("/api/models/3/load"). */
void admin_handle(struct foliod *d, struct mg_connection *c, const char *method, const char *path);
/* Whether the request carries a live console session (the playground uses /v1 with it). */
int admin_session_ok(struct foliod *d, struct mg_connection *c);
/* The credential generation sessions are bound to: a hash of the stored admin password hash,
 * so that a password reset (also by another process) ends every session. */
int admin_session_gen(struct foliod *d, char gen[AUTH_GEN_HEX]);

#endif
