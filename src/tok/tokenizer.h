/*
 * tokenizer.h — internal view of molt_tokenizer (public API in molt.h).
 *
 * Three sources, one object:
 *   - HF tokenizer.json, model.type "BPE" with a ByteLevel pre-tokenizer /
 *     decoder: a Split pre-tokenizer with a regex (PCRE2, UTF + UCP), the
 *     GPT-2 byte<->unicode map, merges ranked by order, added/special tokens
 *     matched verbatim before splitting.
 *   - a tiktoken rank file (base64 token, rank per line: Llama-3's
 *     tokenizer.model), with the Llama-3 split pattern and special tokens
 *     <|begin_of_text|> = 128000 ... as Meta defines them. Merging by rank of
 *     the concatenated bytes (tiktoken's algorithm).
 *   - a llama2.c tokenizer.bin (max_token_len, then per token: f32 score,
 *     i32 len, bytes): sentencepiece-style greedy merges by score, with
 *     llama2.c's rules (dummy prefix space, <0xXX> byte fallback, BOS=1, EOS=2).
 */
#ifndef MOLT_TOKENIZER_H
#define MOLT_TOKENIZER_H

#include "core/core.h"

typedef enum tok_kind { TOK_BPE_JSON, TOK_TIKTOKEN, TOK_LLAMA2C } tok_kind;

tok_kind    tok_kind_of(const molt_tokenizer *t);
const char *tok_source_path(const molt_tokenizer *t); // file it was loaded from
// Bytes of one token (for streaming output). For llama2.c tokenizers this
// applies its decode rules (leading space stripped after BOS, <0xXX> bytes).
// Returns the number of bytes written to out (<= cap).
size_t tok_piece(const molt_tokenizer *t, int32_t prev_id, int32_t id, char *out, size_t cap);
// Token id of an exact vocabulary string or added token, -1 if absent.
int32_t tok_lookup(const molt_tokenizer *t, const char *s);

// Loaders used by molt_tokenizer_load (which picks by content).
molt_status tok_load_hf_json_buf(molt_ctx *ctx, const char *what, const char *json, size_t len,
                                 molt_tokenizer **out);
molt_status tok_load_tiktoken_buf(molt_ctx *ctx, const char *what, const char *buf, size_t len,
                                  molt_tokenizer **out);
molt_status tok_load_llama2c_buf(molt_ctx *ctx, const char *what, const uint8_t *buf, size_t len,
                                 int32_t vocab_hint, molt_tokenizer **out);

#endif
