/* tokenizer: Hugging Face tokenizer.json BPE models, SentencePiece-style (Llama-2, Mistral:
 * Prepend/Replace or Metaspace normalization, byte fallback) and byte-level (GPT-2, Llama-3,
 * Qwen2/3: ByteLevel pre-tokenizer with split regexes via PCRE2, NFC via utf8proc), plus added
 * and special tokens and decoding. Encoding matches @huggingface/tokenizers exactly.
 *
 * A tokenizer is immutable after tokenizer_load, so any number of threads may encode and decode
 * with it at once. */
#ifndef FOLIO_TOKENIZER_H
#define FOLIO_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct tokenizer;

/* Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json (add_bos_token,
 * add_eos_token, bos/eos token names). Returns 0 or a negative FOLIO_E* code with the message
 * in folio_last_error(). Free with tokenizer_free. */
int tokenizer_load(const char *dir, struct tokenizer **out);
void tokenizer_free(struct tokenizer *tok);

/* Encodes `len` bytes of UTF-8 text. add_special_tokens adds BOS/EOS as the tokenizer's
 * post-processor and tokenizer_config.json say (like HF's add_special_tokens=True). Special
 * and added tokens written in the text are recognized. *ids_out is malloc'd; caller frees. */
int tokenizer_encode(const struct tokenizer *tok, const char *text, size_t len, int add_special_tokens,
               int32_t **ids_out, int *n_out);

/* Decodes ids to UTF-8 (invalid byte sequences become U+FFFD, as HF does). skip_special drops
 * special tokens. *text_out is malloc'd and NUL-terminated; caller frees. */
int tok_decode(const struct tokenizer *tok, const int32_t *ids, int n, int skip_special,
               char **text_out, size_t *len_out);

/* Token id's bytes as they appear inside a decoded text (SentencePiece's U+2581 as a space,
 * <0xNN> as that byte, byte-level characters mapped back to bytes), for grammar masks: 0 for a
 * special token or an unused id, the length, or FOLIO_EINVAL when cap is too small
 * (tokenizer_max_token_bytes is always enough). */
int tok_token_bytes(const struct tokenizer *tok, int32_t id, uint8_t *out, size_t cap);
size_t tokenizer_max_token_bytes(const struct tokenizer *tok);

int tokenizer_vocab_size(const struct tokenizer *tok);   /* highest id + 1, added tokens included */
int32_t tokenizer_bos_id(const struct tokenizer *tok);   /* -1 when none */
int32_t tokenizer_eos_id(const struct tokenizer *tok);   /* -1 when none */
int tokenizer_is_special(const struct tokenizer *tok, int32_t id);
int32_t tokenizer_token_to_id(const struct tokenizer *tok, const char *piece); /* -1 when absent */
const char *tokenizer_id_to_piece(const struct tokenizer *tok, int32_t id);  /* NULL when out of range */

/* Low-level decoding into caller memory, for the incremental detokenizer (detok.c), which
 * must not allocate per token. tok_decode = tok_decode_window + tok_clean_up_spaces.
 *
 * tok_decode_work_size: bytes of `work` that tok_decode_window needs for any n ids.
 * tok_decode_window: decodes ids with the tokenizer's decoder chain but without the final
 * clean_up_tokenization_spaces pass. *text points into work (not NUL-terminated). With
 * TOK_DECODE_STREAM, an incomplete UTF-8 character at the very end (bytes still waiting for
 * their continuation) is left out and *incomplete is set, instead of becoming U+FFFD. Ids that
 * are out of range are skipped, as HF does. */
enum { TOK_DECODE_SKIP_SPECIAL = 1, TOK_DECODE_STREAM = 2 };
size_t tok_decode_work_size(const struct tokenizer *tok, int n);
int tok_decode_window(const struct tokenizer *tok, const int32_t *ids, int n, int flags,
                      void *work, size_t work_cap, const char **text, size_t *len,
                      int *incomplete);
/* Whether decoding ends with transformers' clean_up_tokenization (" ." -> "." and friends),
 * as tokenizer_config.json's clean_up_tokenization_spaces says (default true, as HF). */
int tok_cleans_up_spaces(const struct tokenizer *tok);
/* Applies that clean-up in place; returns the new length. */
size_t tok_clean_up_spaces(char *s, size_t n);

#endif
