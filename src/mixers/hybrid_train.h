/*
 * hybrid_train.h — training forward / backward of the retrieval-aware hybrid
 * combiner (ALGORITHMS.md §7, mohawk DoubleBlockAdapter), the part of a hybrid
 * layer after its SSM branch s and attention branch a:
 *
 *     a' = (a − mean a)/(std a + 1e-5)·(std s + 1e-5) + mean s   per token, over d,
 *          std unbiased (torch.std)
 *     out = 0.5·(s + a'·Wᵀ + b)                                  (W: adapter [d,d])
 *
 * Letters: T tokens, d d_model.
 * act layout (hybrid_combine_act_floats): a' [T,d], then stats [T,4] =
 *   (mean a, mean s, std a, std s) per token.
 * Accumulation: ds, da written (=); d_adapter_w, d_adapter_b += (NULL skips).
 */
#ifndef MOLT_HYBRID_TRAIN_H
#define MOLT_HYBRID_TRAIN_H

#include "core/exec.h"

#include <stddef.h>

size_t hybrid_combine_act_floats(int T, int d);

// out[T,d] from s[T,d], a[T,d]; bit-identical to src/models/forward.c's hybrid
// path (hybrid_match_stats, k_matmul, 0.5·(s + ·)). adapter_b may be NULL.
void hybrid_combine_forward(const molt_exec *ex, float *out, float *act, const float *s, const float *a,
                            const float *adapter_w, const float *adapter_b, int T, int d);
// ds, da [T,d] written; adapter grads +=. A zero std (constant row) contributes
// no gradient through that std (torch's would be NaN there).
void hybrid_combine_backward(const molt_exec *ex, float *ds, float *da, float *d_adapter_w, float *d_adapter_b,
                             const float *dout, const float *act, const float *s, const float *a,
                             const float *adapter_w, int T, int d);

#endif
