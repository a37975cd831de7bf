/* serve: the lifetime of a serving folio-engine process: listen, load, serve, drain. Signals
 * are blocked in every thread and taken with sigwait on the main thread, so that no handler
 * runs in the middle of the engine or CivetWeb. See serve.h. */
#include "server/serve.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"

struct loader {
    const struct engine_params *ep;
    struct engine *e;
    int rc;
    char error[1024];
    pthread_t main_thread;
};

static void *load(void *arg) {
    struct loader *l = arg;
    l->rc = engine_create(l->ep, &l->e);
    if (l->rc) snprintf(l->error, sizeof l->error, "%s", folio_last_error());
    else if ((l->rc = engine_start(l->e))) snprintf(l->error, sizeof l->error, "%s", folio_last_error());
    pthread_kill(l->main_thread, SIGUSR1); /* wakes sigwait */
    return NULL;
}

int serve_run(const struct engine_params *ep, const struct api_params *ap, double drain_timeout_s) {
    int rc, sig = 0;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread started below */
    signal(SIGPIPE, SIG_IGN);
    /* Every client holds a socket: lift the soft descriptor limit to the hard one (vLLM does
     * the same), so that --max-connections is not cut short at the usual 1024. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }

    struct api *a = NULL;
    if ((rc = api_create(ap, &a))) return rc;
    const char *host = ap->host && *ap->host ? ap->host : "127.0.0.1";
    fprintf(stderr, "folio-engine: listening on http://%s:%d (loading %s)\n", host, api_port(a), ep->model);

    struct loader l = {.ep = ep, .main_thread = pthread_self()};
    pthread_t t;
    if (pthread_create(&t, NULL, load, &l) != 0) {
        api_free(a);
        return folio_err(FOLIO_ENOMEM, "cannot start the loader thread");
    }
    sigwait(&set, &sig);
    if (sig != SIGUSR1) {
        /* Interrupted while loading: the load cannot be cut short, so leave at once. */
        fprintf(stderr, "folio-engine: %s while loading; exiting\n", strsignal(sig));
        _exit(128 + sig);
    }
    pthread_join(t, NULL);
    if (l.rc) {
        api_free(a);
        engine_free(l.e);
        return folio_err(l.rc, "%s", l.error);
    }
    if ((rc = api_attach(a, l.e))) {
        api_free(a);
        engine_free(l.e);
        return rc;
    }
    char desc[512];
    engine_describe(l.e, desc, sizeof desc);
    fprintf(stderr, "folio-engine: ready: %s %s\n", ep->model, desc);

    do {
        sigwait(&set, &sig);
    } while (sig == SIGUSR1);
    fprintf(stderr, "folio-engine: %s: draining\n", strsignal(sig));
    const double t0 = folio_now();
    int left;
    while ((left = api_drain(a)) > 0 && folio_now() - t0 < drain_timeout_s) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (left > 0) fprintf(stderr, "folio-engine: aborting %d requests still in flight\n", left);
    api_free(a);
    engine_free(l.e);
    fprintf(stderr, "folio-engine: stopped\n");
    return 0;
}
