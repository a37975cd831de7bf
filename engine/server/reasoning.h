/* reasoning: splits a thinking model's output into reasoning and content at its think block
 * ("<think> ... </think>"), incrementally, as vLLM's --reasoning-parser qwen3 and deepseek_r1
 * do. Only a possible partial tag (and the whitespace it may end) is held back, so any cutting
 * of the output gives the same joined reasoning and content. */
#ifndef FOLIO_REASONING_H
#define FOLIO_REASONING_H

#include <stddef.h>

enum reasoning_format { REASONING_NONE = 0, REASONING_QWEN3, REASONING_DEEPSEEK_R1 };

/* "qwen3", "deepseek_r1" (and "none"); -1 for an unknown name. */
int reasoning_format_from_name(const char *name);
/* "qwen3", "deepseek_r1"; "none" otherwise. Static storage. */
const char *reasoning_format_name(enum reasoning_format f);
/* From a chat template's source: deepseek_r1 when, after its last "add_generation_prompt",
 * the template writes "<think>" that no "</think>" follows within a few bytes (the
 * generation prompt opens the block, as DeepSeek-R1's and QwQ's do; Qwen3's closed
 * '<think>\n\n</think>' for enable_thinking=false does not count); qwen3 when it mentions
 * "<think>" and "enable_thinking" or "reasoning_content"; else NONE. NULL gives NONE. */
enum reasoning_format reasoning_format_detect(const char *template_src);

enum reasoning_event_kind { REASONING_EV_REASONING, REASONING_EV_CONTENT };
struct reasoning_event {
    enum reasoning_event_kind kind;
    const char *text; /* not NUL-terminated; valid only during the callback */
    size_t len;       /* >= 1 */
};
/* Return nonzero to stop (the feed returns that value). */
typedef int (*reasoning_event_fn)(void *ud, const struct reasoning_event *ev);

struct reasoning_parser;

/* inside: the prompt already opened the block (reasoning_prompt_opens), so output starts as
 * reasoning. Without it, qwen3 treats output as reasoning only when it starts (after optional
 * whitespace) with "<think>"; deepseek_r1 always starts in reasoning. Either way a leading
 * "<think>" (and the whitespace before it) is dropped. Reasoning ends at "</think>"; the tags
 * never appear in either text, and the whitespace right after "</think>" is dropped from
 * content. Text after that is content, whatever it holds. REASONING_NONE: all content.
 * NULL on allocation failure; free with reasoning_parser_free. */
struct reasoning_parser *reasoning_parser_create(enum reasoning_format f, int inside);
void reasoning_parser_free(struct reasoning_parser *p); /* NULL ok */
/* Feeds the next piece (any chunking). final=1 on the last piece (n may be 0): a partial tag
 * still held goes out as the text it was in (reasoning cut off by max_tokens stays
 * reasoning). Returns 0, the callback's nonzero value, or FOLIO_ENOMEM; after a nonzero return
 * the parser is spent and later feeds return the same value. */
int reasoning_parser_feed(struct reasoning_parser *p, const char *s, size_t n, int final,
                          reasoning_event_fn fn, void *ud);
/* Whether the output so far is inside the think block (an undecided qwen3 start is not). */
int reasoning_parser_in_reasoning(const struct reasoning_parser *p);
/* Whether a rendered prompt ends inside an open think block: "<think>" plus optional
 * whitespace at its very end. */
int reasoning_prompt_opens(const char *prompt, size_t len);
/* Whether it ends with a closed block ("</think>" + optional whitespace): Qwen3's template writes
 * an empty one when enable_thinking is false, and the model is not to think. */
int reasoning_prompt_closes(const char *prompt, size_t len);

#endif
