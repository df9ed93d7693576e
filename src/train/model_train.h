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

#include "mixers/ssm_train.h"
#include "models/block.h"
#include "models/model.h"

typedef enum tm_kind {
    TM_TRAIN,   // tm_new: every layer's activations, gradients, backward scratch
    TM_CAPTURE, // tm_new_capture: every layer's activations, no gradients
    TM_LOGITS,  // tm_new_logits: the logits only (one layer's activations, reused)
    TM_RECOMPUTE, // tm_new_recompute: training with each block recomputed in the backward
} tm_kind;

typedef struct train_model {
    molt_model  *m;
    int          B, T, N;      // N = B·T rows
    bool         skip_head;    // tm_forward stops after the blocks (no final norm, no logits)
    float       *grad;         // [m->n_floats], same layout as m->data
    bool         capture;      // tm_new_capture: no gradients, no backward scratch
    bool         recompute;    // tm_new_recompute: L[l] share all but x_in (see there)
    block_act    L[MODEL_MAX_LAYERS]; // saved activations (L[l].mx: the mixer's own)
    float       *x_last, *xn, *rstdf; // [N,d] [N,d] [N]
    int          head_rows;           // rows of logits held: N, or fewer (the head by chunk)
    float       *logits, *dlogits;    // [head_rows,V]; dlogits == logits when chunked
    int32_t     *ids;                 // [N]
    double      *loss_rows;           // [N] per-row losses (backend buffer; not in a capture)
    float       *dmix, *mlp_tmp;      // forward scratch: mixer output [N,d]; [N,F]
    float       *dx;                  // [N,d] the residual stream's gradient (backward)
    block_grad_scratch sc;            // backward scratch
    float       *work;
    // data parallel (train/step.h: train_overlap_arm): called by tm_backward right after
    // block l's backward, when that layer's parameter gradients are final; NULL: never
    void       (*grad_ready)(void *user, const molt_exec *ex, int l);
    void        *grad_user;
    float       *arena;
    size_t       arena_floats;
} train_model;

molt_status tm_new(molt_ctx *ctx, molt_model *m, int B, int T, train_model **out);
// Any kind, with the logits held for head_rows rows (≤ 0 or ≥ B·T: all rows, as the
// tm_new* below). Fewer rows (a chunked head): tm_forward stops after the blocks and the
// head runs a chunk at a time through tm_head / tm_head_backward (tm_kd_step does the
// loop); the loss writes its gradient over the chunk's logits (dlogits is logits). A
// Llama-3.2-1B at 4 × 2048 tokens holds 4.2 GB of fp32 logits per model unchunked, 0.5 GB
// in chunks of 1024 rows.
molt_status tm_new_kind(molt_ctx *ctx, molt_model *m, int B, int T, tm_kind kind, int head_rows,
                        train_model **out);
// The head_rows tm_new_kind is given for distillation: all rows while N·V ≤
// TM_HEAD_CHUNK_FLOATS, else a multiple of 64 rows holding about that many floats.
#define TM_HEAD_CHUNK_FLOATS ((size_t)1 << 27) // 512 MB of fp32 logits
int         tm_auto_head_rows(const molt_model *m, int B, int T);
// A forward-only model for capturing activations (a distillation teacher, a
// head analysis): the same saved activations, no gradient buffer and no
// backward scratch; tm_backward / tm_block_backward must not be called.
molt_status tm_new_capture(molt_ctx *ctx, const molt_model *m, int B, int T, train_model **out);
// A forward-only model that keeps only the logits (MOHAWK stage 3's teacher): one
// layer's activation buffers serve every layer in turn, so L[l] of a finished
// forward holds the last layer's activations, not layer l's. A Llama-3.2-1B
// teacher at 4 × 2048 tokens: about 1.2 GB of activations instead of 20 GB.
molt_status tm_new_logits(molt_ctx *ctx, const molt_model *m, int B, int T, train_model **out);
// Training with activation recompute by block: only each block's input (N·d
// floats a layer) is kept through the forward; one layer's other activation
// buffers serve every layer, and tm_backward re-runs block l's forward from
// its saved input just before block l's backward (the last block's are still
// there). The same calls on the same inputs: gradients bit-identical to
// tm_new's, for about one more forward of the blocks; a 1B Llamba student at
// 4 × 2048 tokens keeps ~2 GB of block activations instead of ~30 GB.
// x_last is scratch after tm_backward; tm_block_backward on such a model is
// valid only right after that block's tm_block_forward.
molt_status tm_new_recompute(molt_ctx *ctx, molt_model *m, int B, int T, train_model **out);
void        tm_free(train_model *tm);
size_t      tm_arena_floats(const molt_model *m, int B, int T); // the pure sizing function
void        tm_zero_grad(train_model *tm);
// Gradient pointer of a parameter pointer (NULL stays NULL).
float      *tm_grad_of(const train_model *tm, const float *w);
// The gradient slots of an SSM mixer's weights (ssm_train.h; NULL where the weight is NULL).
ssm_grads   tm_ssm_grads(const train_model *tm, const ssm_weights *w);

// ids[N] → logits[N,V] (saved activations for backward).
void   tm_forward(const molt_exec *ex, train_model *tm, const int32_t *ids);
// mean CE over targets[N] (−1 = ignored) → dlogits scaled by 1/count·scale (an
// unchunked head: tm_ce_step without its backward). Returns the mean loss.
double tm_loss_ce(const molt_exec *ex, train_model *tm, const int32_t *targets, float scale);
// The cross-entropy step after tm_forward, chunked or not: the mean CE over targets[N]
// (−1 = ignored), with backward the whole backward of scale·mean. Unchunked, with backward:
// tm_loss_ce + tm_backward. Returns the mean loss.
double tm_ce_step(const molt_exec *ex, train_model *tm, const int32_t *targets, float scale,
                  bool backward);
// backward from tm->dlogits through every layer into tm->grad (+=) (an unchunked head).
void   tm_backward(const molt_exec *ex, train_model *tm);
// The head by chunk: final norm and logits of rows [r0, r0 + rows) (rows ≤ head_rows) into
// tm->logits (after tm_forward); its backward from dlogits[rows,V] into the head's
// gradient (+=) and those rows of the residual's gradient (sc.du); then the rest of the
// backward (final norm, blocks, embedding) once every row's head backward is done.
void   tm_head(const molt_exec *ex, train_model *tm, int r0, int rows);
void   tm_head_backward(const molt_exec *ex, train_model *tm, int r0, int rows,
                        const float *dlogits);
void   tm_backward_body(const molt_exec *ex, train_model *tm);
// A distillation loss over the vocabulary (train/loss.h: loss_soft_ce, loss_rev_kl).
typedef double (*tm_kd_loss)(const molt_exec *ex, double *rows, float *dstudent,
                             const float *student, const float *teacher, int n, int V, float tau,
                             float scale);
// MOHAWK stage 3's loss after both forwards: fn(student logits, teacher logits) over all
// rows, a chunk of min(head_rows) rows at a time, with backward the student's whole backward
// (each chunk's head backward as soon as its gradient is written). Returns the summed row
// losses. With unchunked models: one pass, the same calls as loss + tm_backward.
double tm_kd_step(const molt_exec *ex, train_model *ts, train_model *tt, tm_kd_loss fn,
                  float tau, float scale, bool backward);

// One block: x_out[N,d] = block_l(x_in[N,d]), activations saved in L[l].
void tm_block_forward(const molt_exec *ex, train_model *tm, int l, const float *x_in, float *x_out);
// dx[N,d]: in = ∂/∂x_out, out = ∂/∂x_in. Parameter grads +=.
void tm_block_backward(const molt_exec *ex, train_model *tm, int l, float *dx);

#endif
