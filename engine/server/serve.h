/* serve: folio-engine's server mode. It listens at once (so /health answers "loading" while
 * the model loads on another thread), serves until SIGINT or SIGTERM, then drains: new
 * requests get 503 while those in flight finish, for up to a timeout, before the rest are
 * aborted. */
#ifndef FOLIO_SERVE_H
#define FOLIO_SERVE_H

#include "server/api.h"
#include "core/engine.h"

/* Returns 0 after a clean shutdown, or a negative code (message in folio_last_error()) when
 * listening or loading failed. */
int serve_run(const struct engine_params *ep, const struct api_params *ap, double drain_timeout_s);

#endif
