/* validate: the checks a model's settings pass before foliod stores them or hands them to an
 * engine, shared by the admin API (admin_api.c, when a model is created or changed) and the
 * supervisor (supervisor.c, again at spawn: a Hub model's directory is known only after its
 * pull, and files may have changed since).
 *   name: starts with a letter or digit (never an argv flag such as "--x"), then letters,
 *     digits and ._:/-, at most 127 bytes, not "default".
 *   path: a local model directory, realpath'd: absolute, a directory, with config.json.
 *   chat_template: inline template text (it holds "{{" or "{%"), or the path of a file inside
 *     the model directory, relative to it or absolute, realpath-checked to stay inside (no
 *     ".." or symlink out): a template is read back by /tokenize and /detokenize, so any
 *     readable file would leak.
 * Each returns 0 or FOLIO_EINVAL with a message for the client (folio_last_error). */
#ifndef FOLIO_VALIDATE_H
#define FOLIO_VALIDATE_H

#include <stddef.h>

int validate_model_name(const char *name);
/* The resolved directory into real (cap >= PATH_MAX). */
int validate_model_dir(const char *path, char *real, size_t cap);
/* 1 when the value is inline template text rather than a path. */
int validate_template_inline(const char *value);
/* A template path (not inline text) against the model directory: the resolved file into real
 * (cap >= PATH_MAX). */
int validate_template_file(const char *value, const char *model_dir, char *real, size_t cap);

#endif
