/*
 * checkpoint.h — crash-safe training checkpoints (implemented in trainer.c):
 * out_dir/ckpt-NNNNNNNN/ holds the model, AdamW moments (optim.safetensors)
 * and state.json (step, sampler state, tokens); out_dir/latest names the last
 * complete one and is replaced atomically only after the directory is whole.
 */
#ifndef MOLT_CHECKPOINT_H
#define MOLT_CHECKPOINT_H

#include "train/optim.h"

molt_status save_checkpoint(molt_ctx *ctx, const molt_model *m, const adamw *opt,
                            const char *out_dir, int64_t step, uint64_t rng, int64_t tokens);
// dir[n] = out_dir/<the name in out_dir/latest>: the newest complete checkpoint.
molt_status checkpoint_latest(molt_ctx *ctx, const char *out_dir, char *dir, size_t n);
// Restores parameters, moments, AdamW step; returns the step, sampler state, tokens.
molt_status load_checkpoint(molt_ctx *ctx, molt_model *m, adamw *opt, const char *out_dir,
                            int64_t *step, uint64_t *rng, int64_t *tokens);

#endif
