/*
 * block.h — the one block loop. Every forward molt runs — a sequence's
 * prefill and decode (forward.c), batched decode over state slots (slots.c),
 * training and no-gradient capture (train/model_train.c) — is
 *
 *     x = embed[ids]                                          [N,d]
 *     per layer l:  u = rmsnorm(x)                            (1/rms kept in rstd1)
 *                   x_mid = x + mixer_l(u)                    mixer_vt of layer l
 *                   v = rmsnorm(x_mid);  [g | up] = v·[W_g; W_u]ᵀ;  h = silu(g) ⊙ up
 *                   x = x_mid + h·W_dᵀ                        (if the block has an MLP)
 *     logits = rmsnorm(x) · headᵀ
 *
 * and runs through block_forward below. What differs is only how the mixer
 * runs (block_mix: one sequence with its state, rows of many sequences, or B
 * training sequences from a zero state) and where the activations go
 * (block_act: saved per layer for a backward, or one scratch set reused by
 * every layer when nothing is saved).
 */
#ifndef MOLT_BLOCK_H
#define MOLT_BLOCK_H

#include "core/exec.h"
#include "models/model.h"

typedef enum block_mode {
    BLOCK_SEQ = 0, // N tokens of one sequence at pos.., continuing its state
    BLOCK_ROWS,    // N rows: the next token of N sequences (ragged positions)
    BLOCK_BATCH,   // N = B·T: B sequences of T tokens from a zero state, mixer activations saved
} block_mode;

typedef struct block_mix {
    block_mode mode;
    int        cap, nth;        // SEQ / ROWS: cache capacity; SEQ: threads the work is sized for
    int        pos;             // SEQ: position of the first token
    float     *state;           // SEQ: this layer's state block (mixer.h layout)
    const int32_t *rpos;        // ROWS: [N] positions
    float *const  *rstate;      // ROWS: [N] this layer's state block of each row's sequence
    int        B, T;            // BATCH
    float     *act;             // BATCH: the mixer's activations (act_floats)
} block_mix;

// Where a block's activations go. Saved (training): one set per layer, all
// distinct. Scratch (inference): x_in NULL (not kept), x_mid == the stream x
// (updated in place), v may equal u. g is [N, 2F] (gate | up per row, up = g
// + F), h [N, F]; mlp_tmp [N, F] is needed only when gate_proj and up_proj are
// not adjacent in the parameter buffer.
typedef struct block_act {
    float *x_in, *u, *rstd1; // [N,d] [N,d] [N]   residual entering, normed, 1/rms
    float *mx;               // the mixer's activations (BATCH), else unused
    float *x_mid, *v, *rstd2;// [N,d] [N,d] [N]   after the mixer residual; MLP input
    float *g, *up, *h;       // [N,2F] gate | up (up = g + F), [N,F] silu(gate)·up
    bool   h_again;          // h is one buffer for every layer: the backward recomputes it from g
} block_act;

// x[N,d] ← block_l(x) (see the top). mix [N,d] is the mixer's output (scratch),
// work the mixer's scratch (its work / rows_work / train_work size), mlp_tmp as
// above. With a->x_in set, x is copied there first.
void block_forward(const molt_exec *ex, const molt_model *m, int l, const block_mix *bm, int N,
                   float *x, const block_act *a, float *mix, float *mlp_tmp, float *work);

// dx[N,d]: in ∂/∂x_out, out ∂/∂x_in; the block's weight gradients accumulate
// into grad (parameter layout). Scratch: dmix, du [N,d], dv [N,d], dg [N,2F],
// dh [N,F]; work the mixer's train work. a as saved by block_forward (BATCH).
typedef struct block_grad_scratch {
    float *du, *dv, *dg, *dh;
} block_grad_scratch;
void block_backward(const molt_exec *ex, const molt_model *m, int l, int B, int T, float *dx,
                    float *grad, const block_act *a, const block_grad_scratch *sc, float *work);

// x[N,d] = embed[ids]
void block_embed(const molt_exec *ex, const molt_model *m, const int32_t *ids, int N, float *x);
// logits[N,V] = rmsnorm(x)·headᵀ via xn [N,d] (rstd [N], may be NULL): the f32
// head (training, capture); block_logits: the typed head (m->lm_head_t), for
// the inference paths (forward.c, slots.c)
void block_head(const molt_exec *ex, const molt_model *m, const float *x, int N, float *xn,
                float *rstd, float *logits);
void block_logits(const molt_exec *ex, const molt_model *m, const float *x, int N, float *xn,
                  float *logits);

// Floats of one scratch block_act set (+ mix and mlp_tmp) for N rows.
size_t block_scratch_floats(const molt_model *m, int N);
// Carves that scratch at p: x_mid = x; returns mix; *mlp_tmp set.
float *block_scratch(const molt_model *m, int N, float *p, float *x, block_act *a, float **mlp_tmp);

#endif
