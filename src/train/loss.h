/*
 * loss.h — training losses with their gradients: next-token cross-entropy and
 * the three MOHAWK distillation losses (ALGORITHMS.md §3).
 *
 * Every loss returns the SUM of per-item losses (double) and writes the
 * gradient of scale·(that sum): the caller passes scale = 1/(number of items)
 * for a mean, times any gradient-accumulation factor. Gradients are written
 * (=), never accumulated; a NULL gradient pointer computes the loss only. The
 * gradient may alias its first input (in place: logits → dlogits, S → dS, …).
 * Softmaxes are max-subtracted. The backend ops (kernels/train_ops.h) write
 * one double per row into rows, a backend buffer of n doubles the caller owns;
 * the rows are downloaded and added in row order, so the sum is the same bits
 * at any thread count.
 */
#ifndef MOLT_LOSS_H
#define MOLT_LOSS_H

#include <stdint.h>
#include "core/exec.h"

// Cross-entropy, logits[n, V], targets[n]:  Σ_rows −log softmax(logits)[target].
// dlogits = scale·(softmax − onehot). Rows with target < 0 are ignored (grad 0,
// not counted; PyTorch ignore_index). *count (may be NULL) = rows counted.
double loss_ce(const molt_exec *ex, double *rows, float *dlogits, const float *logits,
               const int32_t *targets, int n, int V, float scale, int64_t *count);

// MOHAWK stage 3 (mohawk distill_steps/supervised.py, τ = 1 by default):
//     F.cross_entropy(student / τ, softmax(teacher))
//   = Σ_rows −Σ_v p_v · log_softmax(student / τ)_v,    p = softmax(teacher)   (teacher NOT / τ)
// dstudent = scale·(softmax(student/τ) − p)/τ.
double loss_soft_ce(const molt_exec *ex, double *rows, float *dstudent, const float *student,
                    const float *teacher, int n, int V, float tau, float scale);

// Reverse KL (the hybrid recipe of ALGORITHMS.md §10), q = softmax(student/τ),
// p = softmax(teacher):
//     Σ_rows Σ_v q_v·(log q_v − log p_v)
// dstudent = scale·q·(a − KL)/τ with a = log q − log p (kernels/train_ops.h: k_rev_kl).
double loss_rev_kl(const molt_exec *ex, double *rows, float *dstudent, const float *student,
                   const float *teacher, int n, int V, float tau, float scale);

// MOHAWK stage 1: Σ_{i<m} ‖S_i − A_i‖_F over L×L matrices (norm, not squared);
// dS = scale·(S − A)/‖S − A‖_F, 0 for a matrix whose norm is 0.
// (mohawk: matrix_norm(...).mean() over batch·heads → scale = 1/(B·H).)
double loss_frobenius(const molt_exec *ex, double *rows, float *dS, const float *S,
                      const float *A, int m, int L, float scale);

// MOHAWK stage 2: Σ_{i<n} ‖x_i − y_i‖_2 over d;  dx = scale·(x − y)/‖x − y‖ (0 when 0).
// (mohawk: torch.norm(out − target, p=2, dim=-1).mean() → scale = 1/(B·T).)
double loss_l2_rows(const molt_exec *ex, double *rows, float *dx, const float *x, const float *y,
                    int n, int d, float scale);

#endif
