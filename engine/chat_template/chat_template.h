/* chat_template: renders Hugging Face chat templates (the Jinja subset they use) into the
 * prompt text that the tokenizer then encodes. The reference for every semantic detail and
 * every output byte is the npm package @huggingface/jinja (0.5.x), which mimics transformers'
 * Jinja environment (trim_blocks and lstrip_blocks on); tests/chat_template/ compares the two
 * byte for byte on the real templates of several model families.
 *
 * A parsed template is immutable, so any number of threads may render it at once. Rendering is
 * bounded (output size, steps, nesting depth): a hostile template fails with FOLIO_EINVAL and a
 * message instead of hanging or exhausting memory. */
#ifndef FOLIO_CHAT_TEMPLATE_H
#define FOLIO_CHAT_TEMPLATE_H

#include <stddef.h>

#include <cjson/cJSON.h>

struct chat_template;

/* Parses template source (len bytes, need not be NUL-terminated). 0, or FOLIO_EINVAL with a
 * message naming the line ("chat template line 3: unexpected '}}'"). Free with
 * chat_template_free (NULL ok). */
int chat_template_create(const char *src, size_t len, struct chat_template **out);
void chat_template_free(struct chat_template *t);
/* The template's source text ("" for NULL): the server reads it to tell which tool-call and
 * reasoning formats the model writes. */
const char *chat_template_source(const struct chat_template *t);

/* The model's template: DIR/chat_template.jinja if present, else tokenizer_config.json's
 * "chat_template" (a string, or a list of {"name","template"}: "default", else the first).
 * Returns 0 with *out = NULL when the model has none. */
int chat_template_load_model(const char *model_dir, struct chat_template **out);

/* --chat-template ARG: a file path; if no such file exists and ARG contains "{{" or "{%", ARG
 * itself is the template text (as vLLM does). */
int chat_template_load_arg(const char *arg, struct chat_template **out);

/* Renders with the variables of ctx, a cJSON object (messages, add_generation_prompt,
 * bos_token, eos_token, tools, documents, and any chat_template_kwargs keys, merged by the
 * caller). raise_exception(msg) fails the render with FOLIO_EINVAL and msg as the message.
 * *out is malloc'd and NUL-terminated (the caller frees it); *out_len excludes the NUL. */
int chat_template_render(const struct chat_template *t, const cJSON *ctx, char **out,
                         size_t *out_len);

#endif
