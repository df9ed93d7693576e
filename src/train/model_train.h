/*
 * model_train.h — training forward / backward of a whole model (any
 * architecture molt runs) over a batch of B independent sequences of T tokens.
 *
 * Memory (llm.c style): the parameters stay in the model's one buffer; their
 * gradients live in one buffer of the same layout (grad of a weight w is at
 * grad + (w − m->data)); activations live in one arena sized by a pure
 * function of (config, B, T) before the first step — nothing is allocated per
 * step. Contract: parameter gradients accumulate (+=) until tm_zero_grad.
 *
 * The model's backward is its forward call list in reverse; blocks are also
 * exposed one at a time for MOHAWK stage 2 (block i on the teacher's input).
 */
#ifndef MOLT_MODEL_TRAIN_H
#define MOLT_MODEL_TRAIN_H

#include "core/exec.h"

#include "mixers/attention.h"
#include "models/model.h"

typedef struct tm_layer_act {
    float *x_in, *u, *rstd1;   // [N,d] [N,d] [N]   residual entering, normed, 1/rms
    float *attn, *ssm, *comb;  // mixer activations (attention / SSM / hybrid combiner)
    float *s, *a;              // [N,d] hybrid branch outputs
    float *x_mid, *v, *rstd2;  // [N,d] [N,d] [N]   after the mixer residual; MLP input
    float *g, *up, *h;         // g: [N,2F] gate | up per row (up = g + F, row stride 2F); h [N,F] silu(gate)·up
} tm_layer_act;

typedef struct train_model {
    molt_model  *m;
    int          B, T, N;      // N = B·T rows
    bool         skip_head;    // tm_forward stops after the blocks (no final norm, no logits)
    float       *grad;         // [m->n_floats], same layout as m->data
    tm_layer_act L[MODEL_MAX_LAYERS];
    float       *x_last, *xn, *rstdf; // [N,d] [N,d] [N]
    float       *logits, *dlogits;    // [N,V]
    int32_t     *ids;                 // [N]
    // scratch for backward
    float       *dx, *dmix, *du, *du2, *ds, *da, *dv, *dg, *dup, *dh; // [N,d] ×7; dg [N,2F] (dup = dg + F); dh [N,F]
    float       *work;
    float       *arena;
    size_t       arena_floats;
} train_model;

molt_status tm_new(molt_ctx *ctx, molt_model *m, int B, int T, train_model **out);
void        tm_free(train_model *tm);
size_t      tm_arena_floats(const molt_model *m, int B, int T); // the pure sizing function
void        tm_zero_grad(train_model *tm);
// Gradient pointer of a parameter pointer (NULL stays NULL).
float      *tm_grad_of(const train_model *tm, const float *w);

// ids[N] → logits[N,V] (saved activations for backward).
void   tm_forward(const molt_exec *ex, train_model *tm, const int32_t *ids);
// mean CE over targets[N] (−1 = ignored) → dlogits scaled by 1/count·scale.
// Returns the mean loss.
double tm_loss_ce(const molt_exec *ex, train_model *tm, const int32_t *targets, float scale);
// backward from tm->dlogits through every layer into tm->grad (+=).
void   tm_backward(const molt_exec *ex, train_model *tm);

// One block: x_out[N,d] = block_l(x_in[N,d]), activations saved in L[l].
void tm_block_forward(const molt_exec *ex, train_model *tm, int l, const float *x_in, float *x_out);
// dx[N,d]: in = ∂/∂x_out, out = ∂/∂x_in. Parameter grads +=.
void tm_block_backward(const molt_exec *ex, train_model *tm, int l, float *dx);

#endif
