/* detok: incremental detokenization for streaming. Each pushed token yields the text it adds,
 * never half a UTF-8 character (bytes of a byte-fallback or byte-level sequence are held until
 * the character completes) and with SentencePiece's leading-space rule applied exactly as a
 * one-shot tok_decode of the whole sequence would. The concatenation of every delta plus the
 * final flush equals tok_decode(all generated ids).
 *
 * All memory is allocated in detok_create, so pushing tokens in the engine's step loop does
 * not allocate. */
#ifndef FOLIO_DETOK_H
#define FOLIO_DETOK_H

#include <stddef.h>
#include <stdint.h>

struct tokenizer;
struct detok;

/* prompt ids give the context (they are not emitted): the first generated token decodes as
 * it would in the middle of the text, not as a text start; so the deltas concatenate to
 * tok_decode(prompt + generated) minus its prefix tok_decode(prompt). Only the prompt's last
 * few tokens are read and the prompt need not outlive the call. n_prompt may be 0 (then the
 * deltas concatenate to tok_decode(generated)). The clean-up of spaces before punctuation that
 * some tokenizers apply (clean_up_tokenization_spaces) runs over the generated text only.
 * Returns NULL on allocation failure (message in folio_last_error()); free with detok_free.
 * The tokenizer must outlive the detok. */
struct detok *detok_create(const struct tokenizer *tok, const int32_t *prompt, int n_prompt,
                           int skip_special);
void detok_free(struct detok *d);

/* Pushes one token; writes the newly complete text (possibly empty) to out, NUL-terminated,
 * and its length to *n_out. cap must be at least 64 bytes. Text that does not fit stays
 * queued and comes out first on the next call; with cap >= detok_max_delta(d) nothing ever
 * waits. Returns 0 or a negative code (a bad argument, or a backlog that a too-small cap let
 * grow past its bound). Out-of-range ids decode to nothing, as in tok_decode. */
int detok_push(struct detok *d, int32_t id, char *out, size_t cap, size_t *n_out);

/* Ends the stream: emits whatever is still held back (an incomplete character becomes
 * U+FFFD). If the text does not fit in cap, call again until *n_out is 0; pushing after a
 * flush is an error. */
int detok_flush(struct detok *d, char *out, size_t cap, size_t *n_out);

/* The most bytes one detok_push can produce: a cap at least this large never queues. */
size_t detok_max_delta(const struct detok *d);

#endif
