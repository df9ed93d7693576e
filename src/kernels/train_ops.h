/*
 * train_ops.h — the training ops of the backend table (kernels.h:
 * MOLT_BACKEND_OPS, group "training"): the losses with their gradients, and
 * what one optimizer step needs (the gradient's sum of squares, scaling for
 * clipping, AdamW). train/loss.c and train/optim.c keep the model-level logic
 * (scales, counts, spans of trainable parameters, bias corrections) and call
 * only these.
 *
 * Contract shared by the ops (what a GPU backend implements):
 *   - float and double arrays are backend buffers; targets (token ids) and
 *     spans are small host arrays, as the embedding's ids are.
 *   - reductions never cross to the host inside an op: a loss op writes one
 *     double per row (loss[n]), sumsq one double per fixed block (partial[]);
 *     the caller downloads them and adds them in index order. Every op gives
 *     the same bits at any thread count (rows and blocks are independent;
 *     each row / block is summed in a fixed order).
 *   - gradients are written (=), never accumulated; NULL computes the loss
 *     only; a gradient may alias its first input (in place: logits → dlogits).
 *
 * Letters: n rows, V vocabulary, len row length, τ temperature.
 */
#ifndef MOLT_TRAIN_OPS_H
#define MOLT_TRAIN_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/exec.h"

// floats [off, off + len) of a buffer (a parameter of the parameter layout)
typedef struct molt_span {
    size_t off, len;
} molt_span;

// AdamW's per-step scalars, fp32 (torch.optim.AdamW single-tensor path; the
// caller computes them in double from lr, β, wd and the step, as torch does):
// decay = 1 − lr·wd, step_size = lr / (1 − β1^t), bc2_sqrt = sqrt(1 − β2^t)
typedef struct adamw_hyper {
    float b1, b2, eps, decay, step_size, bc2_sqrt;
} adamw_hyper;

// Cross-entropy of each row, logits[n, V], targets[n] (host):
//   loss[r] = logsumexp(x_r) − x_r[y_r]           (double; 0 for y_r < 0: ignored)
//   dlogits[r] = scale·(softmax(x_r) − onehot(y_r))  (0 for ignored rows)
// Max-subtracted; Σ e^(x−m) in double with 8 partial sums. 0 ≤ y_r < V otherwise.
void k_xent(const molt_exec *ex, double *loss, float *dlogits, const float *logits,
            const int32_t *targets, int n, int V, float scale);

// Soft-label cross-entropy (MOHAWK stage 3, mohawk distill_steps/supervised.py):
//   loss[r] = −Σ_v p_v·log softmax(s_r/τ)_v,  p = softmax(t_r)  (teacher not / τ)
//   ds[r]   = scale·(softmax(s_r/τ) − p)/τ
void k_soft_xent(const molt_exec *ex, double *loss, float *ds, const float *s, const float *t,
                 int n, int V, float tau, float scale);

// Reverse KL, KL(student ‖ teacher), per row (the MambaInLlama / M1 hybrid recipe's
// distillation loss, ALGORITHMS.md §10):
//   q = softmax(s_r/τ), p = softmax(t_r) (teacher not / τ, as k_soft_xent)
//   loss[r] = Σ_v q_v·(log q_v − log p_v)
//   ds[r]_j = scale·q_j·(a_j − loss[r])/τ,  a_v = log q_v − log p_v
// From logits, max-subtracted: with z = s/τ, loss = Σ_v q_v·(z_v − t_v) + (mt + log Σe^(t−mt))
// − (mz + log Σe^(z−mz)), and a_j − loss = (z_j − t_j) − Σ_v q_v·(z_v − t_v) (z − t and that
// difference in double: they cancel where q is largest). ds may be s
// (in place). Rows are independent (the same bits at any thread count).
void k_rev_kl(const molt_exec *ex, double *loss, float *ds, const float *s, const float *t, int n,
              int V, float tau, float scale);

// Euclidean distance of each row pair, x[n, len], y[n, len] (MOHAWK stage 1:
// a row is one L×L matrix, the Frobenius norm; stage 2: a hidden state):
//   loss[r] = ‖x_r − y_r‖₂ (Σ in double, in order),
//   dx[r] = scale·(x_r − y_r)/‖x_r − y_r‖  (0 for a row whose distance is 0)
void k_l2_rows(const molt_exec *ex, double *loss, float *dx, const float *x, const float *y,
               int n, size_t len, float scale);

// Sums of squares over spans of x in fixed blocks: span i is cut into blocks of
// K_SUMSQ_BLOCK floats (the last one shorter), and partial[b] = Σ x² over
// block b in double (8 partial sums, fixed order), blocks numbered span after
// span. partial has k_sumsq_blocks(span, n_spans) entries. A block of a
// non-finite value gives a non-finite partial (x² of a finite float never
// overflows a double).
#define K_SUMSQ_BLOCK 16384
size_t k_sumsq_blocks(const molt_span *span, int n_spans);
void   k_sumsq(const molt_exec *ex, double *partial, const float *x, const molt_span *span,
               int n_spans);

// x[i] *= k over the spans (gradient clipping)
void k_scale(const molt_exec *ex, float *x, const molt_span *span, int n_spans, float k);

// One AdamW step over the spans (the trainable parameters), fp32 in torch's order:
//   p ← p·decay;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
//   p ← p − step_size·m/(sqrt(v)/bc2_sqrt + eps)
void k_adamw(const molt_exec *ex, float *p, float *m, float *v, const float *g,
             const molt_span *span, int n_spans, adamw_hyper h);

#endif
