/*
 * checkpoint.h — crash-safe, checked training checkpoints (checkpoint.c).
 *
 *   out_dir/ckpt-NNNNNNNN/  config.json, model.safetensors, tokenizer,
 *                           optim.safetensors (m.<param>, v.<param>), state.json
 *   out_dir/latest          the name of the newest complete checkpoint
 * state.json: {"step": N, "rng": "U64", "tokens": N, "adam_step": N,
 *              "settings": {"key": "value", ...},     the run's settings
 *              "files": {"name": "<16 hex digits>", ...}}  FNV-1a 64 of each file
 * A checkpoint directory is written completely (every file atomically, listed
 * in out_dir's manifest before it is created: rundir.h) before `latest` is
 * atomically replaced to name it; only then are checkpoints beyond the newest
 * keep_last removed. Resuming verifies every recorded checksum, that the
 * settings are this run's, and that the run is not already past its end: any
 * mismatch is an error naming what differs, never a silent continuation.
 */
#ifndef MOLT_CHECKPOINT_H
#define MOLT_CHECKPOINT_H

#include "io/json.h"
#include "train/step.h"

#define CKPT_MAX_FILES 16

typedef struct ckpt_state {
    int64_t  step, tokens, adam_step;
    uint64_t rng;
    int      n_files;
    char     file[CKPT_MAX_FILES][64];
    uint64_t sum[CKPT_MAX_FILES];
    cJSON   *tree;     // the parsed document (ckpt_state_free)
    const cJSON *settings; // an object of strings, inside tree
} ckpt_state;

// Parses a state.json text strictly: every field present and in range, rng a
// decimal u64, settings' values strings, files' names plain (no '/', no leading
// '.'), their sums 16 hex digits, model.safetensors / optim.safetensors /
// config.json among them. MOLT_ERR_FORMAT naming what (the path) otherwise.
molt_status ckpt_state_parse(molt_ctx *ctx, const char *what, const char *text, size_t len,
                             ckpt_state *out);
void        ckpt_state_free(ckpt_state *s);

// Writes tl's checkpoint for its current step (tl->dir, tl->settings).
molt_status save_checkpoint(molt_ctx *ctx, const train_loop *tl);
// dir[n] = out_dir/<the name in out_dir/latest>: the newest complete checkpoint.
molt_status checkpoint_latest(molt_ctx *ctx, const char *out_dir, char *dir, size_t n);
// Reads ckdir/state.json, verifies every file's checksum and (settings not
// NULL) that the recorded settings equal these; total_steps ≥ 0: that the
// checkpoint's step is not past it. s is filled (ckpt_state_free) on success.
molt_status checkpoint_verify(molt_ctx *ctx, const char *ckdir, const char *settings,
                              int64_t total_steps, ckpt_state *s);
// Verifies, then restores parameters, moments, AdamW step, step, rng, tokens
// from tl->dir's newest checkpoint.
molt_status load_checkpoint(molt_ctx *ctx, train_loop *tl);

// settings: appends "key": "<printf>" to a JSON object of strings (o from cJSON_CreateObject).
void ckpt_setting(cJSON *o, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
