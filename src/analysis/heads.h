/*
 * heads.h — internals of the head analysis (heads.c: molt_heads_rank,
 * molt_layers_ablate, molt_heads_rows) and the key-value probe's prompt sets
 * (kv_probe.c) that it shares with molt_eval_kv.
 *
 * A kv_set holds the tokenized prompts of one (task, pairs, examples, seed)
 * — exactly the prompts molt_eval_kv scores — so that the same prompts can be
 * scored under many ablations without re-tokenizing, and, on request, where
 * the probe's landmarks sit: the queried key's tokens in the dictionary, its
 * value's tokens and the tokens holding a newline.
 */
#ifndef MOLT_HEADS_H
#define MOLT_HEADS_H

#include "core/core.h"
#include "models/model.h"

typedef struct kv_example {
    int32_t *ids;                // [n] prompt ids, BOS first; the answer position is n-1
    int32_t  n;
    int32_t  answer;             // index of the right value among the task's values
    // token positions, [lo, hi) (-1 when not asked for or not known)
    int32_t  key_lo, key_hi;     // the queried key in the dictionary
    int32_t  value_lo, value_hi; // its value
    uint8_t *newline;            // [n] 1 where the token holds a '\n' (NULL: unknown)
} kv_example;

typedef struct kv_set {
    int32_t     pairs, n_ex, max_len, n_values;
    kv_example *ex;              // [n_ex]
    int32_t    *value_tok;       // [n_values] the token of each value
} kv_set;

// Builds the prompts of molt_eval_kv(task_json, pairs, examples, seed) (same
// argument checks and messages). positions: also find the landmarks; they
// stay unknown (-1 / NULL) when the tokenizer does not decode back to the
// prompt text.
molt_status kv_set_build(molt_ctx *ctx, const molt_model *m, const char *task_json, int32_t pairs,
                         int32_t examples, uint64_t seed, bool positions, kv_set *out);
void        kv_set_free(kv_set *s); // NULL and zeroed sets are fine

// Progress of work counted in scored examples (fn may be NULL).
typedef struct kv_progress {
    molt_progress_fn fn;
    void            *user;
    int64_t          done, total;
} kv_progress;

// Number of examples whose argmax over the value tokens at the last position
// is the right value. p (may be NULL) advances by one per example.
molt_status kv_set_score(molt_ctx *ctx, const molt_model *m, const kv_set *set, kv_progress *p,
                         int32_t *correct);

#endif
