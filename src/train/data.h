/*
 * data.h — token streams for training and evaluation, and the seeded batch
 * sampler whose whole state is one 64-bit word (saved in checkpoints so a
 * resumed run draws the same batches).
 */
#ifndef MOLT_DATA_H
#define MOLT_DATA_H

#include "core/core.h"

typedef struct token_stream {
    int32_t *ids;
    size_t   n;
} token_stream;

// fmt: "text" (tokenized with tok: each document [BOS] + tokens; documents are
// whole files, or pieces between sep), "u16" / "i32" (raw little-endian ids,
// checked against vocab).
molt_status data_load(molt_ctx *ctx, const molt_tokenizer *tok, int32_t vocab,
                      const char *const *paths, int n_paths, const char *fmt, const char *sep,
                      token_stream *out);
void        data_free(token_stream *s);

// Fills B rows of T inputs and T targets from random windows of s.
void data_batch(const token_stream *s, uint64_t *rng, int B, int T, int32_t *in, int32_t *tgt);
uint64_t data_rng_next(uint64_t *rng);

#endif
