/* pull: foliod's model downloads from the Hugging Face Hub, one thread per model pulled
 * (several at once), through hub.c.
 *
 * A pull resolves the model's revision to a commit, checks the disk has room, downloads into
 * DATA/models/{org}/{name}/.incomplete/{sha}/ and renames that directory to
 * DATA/models/{org}/{name}/{sha}/ once every file is verified; the model's path then points
 * there. Progress (bytes and files, per file too) goes to the store's downloads row about once
 * a second, so /api/status and /api/events show it, and a restarted foliod resumes any pull
 * that was running (the .part files resume with Range requests). Cancelling deletes what the
 * pull wrote. */
#ifndef FOLIO_PULL_H
#define FOLIO_PULL_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct pull_params {
    struct store *store;
    const char *models_dir;    /* DATA/models */
    const char *endpoint;      /* HF_ENDPOINT ("https://huggingface.co") */
    const char *env_token;     /* HF_TOKEN, or NULL: the stored setting "hf_token" */
    double stall_s;            /* see hub_conn (30) */
    int max_attempts;          /* (6) */
    int parallel;              /* files at once per pull (4) */
    void (*on_change)(void *ud);                                  /* progress or state moved */
    void (*on_done)(void *ud, int64_t model_id, int load_after);  /* the files are in place */
    void *ud;
};

struct pulls;

int pull_create(const struct pull_params *p, struct pulls **out);
/* Stops every pull, keeping its files and its "downloading" row for the next start, and
 * refuses new ones (FOLIO_EBUSY); queries keep working, so HTTP handlers still running at
 * shutdown may call them. Idempotent. */
void pull_shutdown(struct pulls *p);
/* pull_shutdown, then frees. */
void pull_free(struct pulls *p);

/* Starts pulling the model (source "hf"). 0 also when it is already being pulled (load_after
 * then only ever turns on). */
int pull_start(struct pulls *p, int64_t model_id, int load_after);
/* Cancels the model's pull and deletes what it downloaded. FOLIO_ENOTFOUND when none runs. */
int pull_cancel(struct pulls *p, int64_t model_id);
/* At start: resumes the pulls the store says were running. */
int pull_resume_all(struct pulls *p);

/* The live transfer rate (bytes/s, over the last few seconds) and the seconds left at that
 * rate (-1: unknown). 0 when the model is being pulled, FOLIO_ENOTFOUND when not. */
int pull_rate(struct pulls *p, int64_t model_id, double *rate, double *eta);

/* The Hub token: HF_TOKEN (env_token) first, else the stored setting "hf_token"; "" when
 * neither. The caller wipes it after use. */
void pull_token(struct pulls *p, char *out, size_t cap);

/* Deletes dir and everything under it (also used for a model's downloaded files). */
int pull_remove_tree(const char *dir);

#endif
