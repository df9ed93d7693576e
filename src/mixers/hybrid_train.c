/*
 * hybrid_train.c — forward / backward of the hybrid combiner (see
 * hybrid_train.h): per-token statistics matching of the attention branch to
 * the SSM branch, a d×d adapter Linear, and the average with the SSM branch.
 *
 * Letters: T tokens, d d_model; per token: μa, μs means, σa, σs unbiased stds,
 * ε = 1e-5, κ = (σs + ε)/(σa + ε), z = a − μa, zs = s − μs.
 *
 * Accumulation: ds, da written; adapter grads +=.
 */
#include "mixers/hybrid_train.h"

#include "kernels/backward.h"
#include "kernels/kernels.h"
#include "kernels/mem.h"
#include "kernels/train_ops.h"


size_t hybrid_combine_act_floats(int T, int d) { return (size_t)T * d + 4 * (size_t)T; }

// ----------------------------------------------------------------------------
// forward:  a' = z·κ + μs;   out = 0.5·(s + a'·Wᵀ + b)

void hybrid_combine_forward(const molt_exec *ex, float *out, float *act, const float *s, const float *a,
                            const float *adapter_w, const float *adapter_b, int T, int d) {
    float    *ap = act;                 // [T,d] a'
    float    *st = act + (size_t)T * d; // [T,4] μa μs σa σs
    molt_span all = {0, (size_t)T * d};
    k_hybrid_stats(ex, ap, st, a, s, T, d);
    k_matmul(ex, out, ap, adapter_w, adapter_b, T, d, d, 0);
    k_add(ex, out, s, out, all.len);
    k_scale(ex, out, &all, 1, 0.5f); // exact: the same bits as 0.5f·(s + y)
}

// ----------------------------------------------------------------------------
// backward

void hybrid_combine_backward(const molt_exec *ex, float *ds, float *da, float *d_adapter_w, float *d_adapter_b,
                             const float *dout, const float *act, const float *s, const float *a,
                             const float *adapter_w, int T, int d) {
    const float *ap = act, *st = act + (size_t)T * d;
    molt_span    all = {0, (size_t)T * d};

    // out = 0.5·(s + y):   ds = 0.5·dout (direct path; the stats path is added below),
    //                      dy = 0.5·dout (= ds for now, used as dy just below)
    be_copy(ex, ds, dout, all.len * sizeof(float));
    k_scale(ex, ds, &all, 1, 0.5f);
    // y = a'·Wᵀ + b:   da' = dy·W (into da),  dW += dyᵀ·a',  db += Σ_t dy
    k_matmul_backward(ex, da, d_adapter_w, d_adapter_b, ds, ap, adapter_w, T, d, d, 0);
    // a' = stats(a, s): da' → da in place, ds += the statistics path
    k_hybrid_stats_backward(ex, da, ds, st, a, s, T, d);
}
