/*
 * tokenizer.h — internal view of molt_tokenizer (public API in molt.h).
 *
 * Three sources, one object:
 *   - HF tokenizer.json, model.type "BPE" with a ByteLevel pre-tokenizer /
 *     decoder: a Split pre-tokenizer with a regex (PCRE2, UTF + UCP), the
 *     GPT-2 byte<->unicode map, merges ranked by order, added/special tokens
 *     matched verbatim before splitting. Or the sentencepiece form of HF's
 *     Llama-1/2 tokenizers ("sp": normalizer Prepend "▁" + Replace " " → "▁",
 *     no pre-tokenizer, BPE with byte_fallback), which molt also writes for a
 *     llama2.c tokenizer (tok_l2hf.c).
 *   - a tiktoken rank file (base64 token, rank per line: Llama-3's
 *     tokenizer.model), with the Llama-3 split pattern and special tokens
 *     <|begin_of_text|> = 128000 ... as Meta defines them. Merging by rank of
 *     the concatenated bytes (tiktoken's algorithm).
 *   - a llama2.c tokenizer.bin (max_token_len, then per token: f32 score,
 *     i32 len, bytes): sentencepiece-style greedy merges by score, with
 *     llama2.c's rules (dummy prefix space, <0xXX> byte fallback, BOS=1, EOS=2).
 *
 * Every token is kept as its raw bytes (byte-level strings are mapped back
 * through the GPT-2 table at load time), so the BPE loops, the caches and
 * decoding all work on bytes. A tokenizer is immutable after loading: every
 * scratch buffer of an encode lives in that call, so one tokenizer may be
 * used from several threads at once.
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
// Token id of an exact vocabulary string or added token, -1 if absent. s is
// the token's decoded text (raw bytes: " the", not the byte-level "Ġthe").
int32_t tok_lookup(const molt_tokenizer *t, const char *s);
// Overrides BOS / EOS (e.g. from config.json); -1 = none. MOLT_ERR_ARG when
// an id is outside the vocabulary.
molt_status tok_set_special(molt_tokenizer *t, int32_t bos, int32_t eos);
// Writes the tokenizer to path (atomically, via path.tmp + rename) in a form
// molt_tokenizer_load reads back to the same tokenizer: the original source
// bytes (tokenizer.json, tiktoken ranks or llama2.c .bin).
molt_status tok_save(molt_ctx *ctx, const molt_tokenizer *t, const char *path);
// The HF form of a llama2.c tokenizer (tok_l2hf.c): tokenizer.json text (the
// sentencepiece form above, merges derived from the scores so that HF's
// BPE-by-rank gives llama2.c's ids) and tokenizer_config.json text, both
// molt__free'd by the caller. MOLT_ERR_UNSUPPORTED naming the token when the
// vocabulary cannot be written so (invalid UTF-8, a duplicate, no <0xNN>
// byte tokens at ids 3..258, a literal "▁").
molt_status tok_llama2c_to_hf(molt_ctx *ctx, const molt_tokenizer *t, char **tokenizer_json,
                              char **config_json);
// tokenizer_config.json for a tokenizer.json (TOK_BPE_JSON) as molt saves it:
// PreTrainedTokenizerFast and its special tokens (molt__free'd by the caller).
molt_status tok_hf_config(molt_ctx *ctx, const molt_tokenizer *t, char **config_json);

// Loaders used by molt_tokenizer_load (which picks by content). `what` names
// the source in error messages. The buffers are copied.
molt_status tok_load_hf_json_buf(molt_ctx *ctx, const char *what, const char *json, size_t len,
                                 molt_tokenizer **out);
molt_status tok_load_tiktoken_buf(molt_ctx *ctx, const char *what, const char *buf, size_t len,
                                  molt_tokenizer **out);
molt_status tok_load_llama2c_buf(molt_ctx *ctx, const char *what, const uint8_t *buf, size_t len,
                                 int32_t vocab_hint, molt_tokenizer **out);

// ----------------------------------------------------------------------------
// Below: shared by src/tok/*.c only.

// Open-addressing map from a token's bytes to its id. The keys are not
// copied: they are (base + off[id], len[id]) of a token table.
typedef struct tok_strmap {
    uint32_t  cap; // power of two, 0 = empty map
    uint32_t *hash;
    int32_t  *id; // -1 = free slot
} tok_strmap;

// Open-addressing map from a token-id pair to (merge rank, merged id).
typedef struct tok_pairmap {
    uint32_t  cap;
    uint64_t *key; // (a << 32) | b, UINT64_MAX = free
    int32_t  *rank;
    int32_t  *id;
} tok_pairmap;

#define TOKF_PRESENT 1u // the id has a token (ids may have gaps)
#define TOKF_ADDED   2u // added token: matched verbatim before splitting
#define TOKF_SPECIAL 4u // added token flagged "special"
#define TOKF_NOMATCH 8u // HF vocab string outside the byte-level alphabet
#define TOKF_BYTE    16u // sp: a byte-fallback token <0xNN> (decodes to that byte)

// steps one pcre2_match may take (tok_table.c); more is MOLT_ERR_UNSUPPORTED
// "... hit the match limit (1000000 steps, TOK_MATCH_LIMIT) ..." (tok_bpe.c)
#define TOK_MATCH_LIMIT 1000000
#define TOK_MAX_SPLITS 4

struct molt_tokenizer {
    tok_kind kind;
    char    *path;      // source name (error messages, tok_source_path)
    uint8_t *src;       // the source bytes, kept for tok_save
    size_t   src_len;
    int32_t  n_vocab;   // ids are 0 .. n_vocab-1
    int32_t  bos, eos;  // -1 = none
    // token table: bytes of id i are arena[off[i] .. off[i]+len[i])
    char     *arena;
    size_t    arena_len, arena_cap;
    uint32_t *off, *len;
    uint8_t  *flags;
    uint32_t  max_len;   // longest token, bytes
    tok_strmap vocab;    // bytes -> id: BPE / rank / piece lookup (no added tokens)
    // byte-level BPE (HF, tiktoken)
    tok_pairmap merges;  // HF only
    int32_t  byte_id[256]; // HF: id of each single byte (-1 = none)
    int32_t  unk_id;       // HF unk_token, -1 = none
    int      ignore_merges;
    int      sp;            // sentencepiece form: "▁" spaces, no regex (see above)
    int      byte_fallback; // sp: unknown characters as <0xNN> tokens (byte_id[])
    int      fuse_unk;      // sp: consecutive unknown characters give one unk
    int      n_split;               // regex pre-tokenizer stages, applied in order
    void    *split[TOK_MAX_SPLITS]; // pcre2_code * (kept opaque here: no pcre2.h in headers)
    void    *pcre_gctx;             // pcre2_general_context * allocating through molt__malloc
    void    *pcre_mctx;             // pcre2_match_context * with TOK_MATCH_LIMIT
    // added tokens, sorted by (first byte, length descending)
    int32_t  n_added;
    int32_t *added;
    int32_t  added_start[257]; // added[added_start[b] .. added_start[b+1]) start with byte b
    // llama2.c
    float   *scores;
};

// tok_table.c: token table, maps, added-token index, regex compilation.
molt_status tok__alloc(molt_ctx *ctx, const char *what, tok_kind kind, molt_tokenizer **out);
molt_status tok__table_init(molt_ctx *ctx, molt_tokenizer *t, int32_t n_vocab, size_t arena_cap);
// Appends bytes as token id (which must have no token yet). arena grows.
molt_status tok__table_set(molt_ctx *ctx, molt_tokenizer *t, int32_t id, const char *s, size_t n,
                           uint8_t flags);
uint32_t    tok__hash(const char *s, size_t n);
molt_status tok__strmap_build(molt_ctx *ctx, tok_strmap *m, const molt_tokenizer *t,
                              uint8_t skip_flags);
int32_t     tok__strmap_get(const tok_strmap *m, const molt_tokenizer *t, const char *s, size_t n);
void        tok__strmap_free(tok_strmap *m);
molt_status tok__pairmap_init(molt_ctx *ctx, tok_pairmap *m, size_t n);
void        tok__pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id);
bool        tok__pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *rank,
                             int32_t *id);
void        tok__pairmap_free(tok_pairmap *m);
molt_status tok__index_added(molt_ctx *ctx, molt_tokenizer *t);
molt_status tok__add_split(molt_ctx *ctx, molt_tokenizer *t, const char *what, const char *pattern);
void        tok__free(molt_tokenizer *t);
// Length of the valid UTF-8 prefix of s[0..n) (PCRE2's rules: no overlongs,
// no surrogates, nothing above U+10FFFF).
size_t      tok__utf8_valid_prefix(const uint8_t *s, size_t n);

// tok_bpe.c: byte-level encoding (HF and tiktoken) of text into ids.
typedef struct tok_ids {
    int32_t *v;
    size_t   n, cap;
} tok_ids;
molt_status tok__ids_push(molt_ctx *ctx, tok_ids *ids, int32_t id);
molt_status tok__encode_bytelevel(molt_ctx *ctx, const molt_tokenizer *t, const char *text,
                                  size_t len, tok_ids *ids);
// sp form: the bytes of one token as text ("▁" as " ", <0xNN> as the byte),
// with run.c's rule of no leading space after BOS (or at the start).
size_t      tok__piece_sp(const molt_tokenizer *t, int32_t prev_id, int32_t id, char *out,
                          size_t cap);
// tok_llama2c.c
molt_status tok__encode_llama2c(molt_ctx *ctx, const molt_tokenizer *t, const char *text,
                                size_t len, int add_bos, tok_ids *ids);
size_t      tok__piece_llama2c(const molt_tokenizer *t, int32_t prev_id, int32_t id, char *out,
                               size_t cap);
// Loaders that take ownership of buf (molt__malloc'd), freeing it on failure.
molt_status tok__load_hf_owned(molt_ctx *ctx, const char *what, char *buf, size_t len,
                               molt_tokenizer **out);
molt_status tok__load_tiktoken_owned(molt_ctx *ctx, const char *what, char *buf, size_t len,
                                     molt_tokenizer **out);
molt_status tok__load_llama2c_owned(molt_ctx *ctx, const char *what, uint8_t *buf, size_t len,
                                    int32_t vocab_hint, molt_tokenizer **out);

#endif
