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

#include <math.h>
#include <string.h>

#define HYB_EPS 1e-5f

size_t hybrid_combine_act_floats(int T, int d) { return (size_t)T * d + 4 * (size_t)T; }

// ----------------------------------------------------------------------------
// forward:  a' = z·κ + μs;   out = 0.5·(s + a'·Wᵀ + b)

void hybrid_combine_forward(const molt_exec *ex, float *out, float *act, const float *s, const float *a,
                            const float *adapter_w, const float *adapter_b, int T, int d) {
    float *ap = act;                  // [T,d] a'
    float *st = act + (size_t)T * d;  // [T,4] μa μs σa σs
    for (int t = 0; t < T; t++) {
        // the float / double steps of hybrid_match_stats (forward.c), in its order
        const float *at = a + (size_t)t * d, *sr = s + (size_t)t * d;
        float       *pt = ap + (size_t)t * d;
        double       ma = 0, ms = 0;
        for (int i = 0; i < d; i++) {
            ma += (double)at[i];
            ms += (double)sr[i];
        }
        ma /= d;
        ms /= d;
        double va = 0, vs = 0;
        for (int i = 0; i < d; i++) {
            va += ((double)at[i] - ma) * ((double)at[i] - ma);
            vs += ((double)sr[i] - ms) * ((double)sr[i] - ms);
        }
        float sa = (float)sqrt(va / (d - 1)), ss = (float)sqrt(vs / (d - 1));
        float k = (ss + HYB_EPS) / (sa + HYB_EPS);
        for (int i = 0; i < d; i++)
            pt[i] = (at[i] - (float)ma) * k + (float)ms;
        st[4 * t + 0] = (float)ma;
        st[4 * t + 1] = (float)ms;
        st[4 * t + 2] = sa;
        st[4 * t + 3] = ss;
    }
    k_matmul(ex, out, ap, adapter_w, adapter_b, T, d, d, 0);
    for (size_t i = 0; i < (size_t)T * d; i++)
        out[i] = 0.5f * (s[i] + out[i]);
}

// ----------------------------------------------------------------------------
// backward

void hybrid_combine_backward(const molt_exec *ex, float *ds, float *da, float *d_adapter_w, float *d_adapter_b,
                             const float *dout, const float *act, const float *s, const float *a,
                             const float *adapter_w, int T, int d) {
    const float *ap = act, *st = act + (size_t)T * d;
    size_t       n = (size_t)T * d;

    // out = 0.5·(s + y):   ds = 0.5·dout (direct path; the stats path is added below),
    //                      dy = 0.5·dout (= ds for now, used as dy just below)
    for (size_t i = 0; i < n; i++)
        ds[i] = 0.5f * dout[i];
    // y = a'·Wᵀ + b:   da' = dy·W (into da),  dW += dyᵀ·a',  db += Σ_t dy
    k_matmul_backward(ex, da, d_adapter_w, d_adapter_b, ds, ap, adapter_w, T, d, d, 0);

    // a'_i = z_i·κ + μs,   z_i = a_i − μa,   κ = (σs + ε)/(σa + ε),
    // σa = sqrt(Σ z²/(d−1)) (∂σa/∂a_i = z_i/((d−1)·σa)), σs likewise over s. With g = da':
    //   ∂/∂σa = −(Σ g·z)·κ/(σa + ε),   ∂/∂σs = (Σ g·z)/(σa + ε),   ∂/∂μs = Σ g
    //   da_i  = κ·(g_i − mean g) + ∂/∂σa · z_i/((d−1)·σa)
    //   ds_i += (Σ g)/d + ∂/∂σs · zs_i/((d−1)·σs)
    for (int t = 0; t < T; t++) {
        float       *g = da + (size_t)t * d, *dst = ds + (size_t)t * d;
        const float *at = a + (size_t)t * d, *sr = s + (size_t)t * d;
        float        ma = st[4 * t], ms = st[4 * t + 1], sa = st[4 * t + 2], ss = st[4 * t + 3];
        double       sg = 0, gz = 0;
        for (int i = 0; i < d; i++) {
            sg += (double)g[i];
            gz += (double)g[i] * (double)(at[i] - ma);
        }
        double k = ((double)ss + (double)HYB_EPS) / ((double)sa + (double)HYB_EPS);
        double d_sa = -gz * k / ((double)sa + (double)HYB_EPS);
        double d_ss = gz / ((double)sa + (double)HYB_EPS);
        // zero std: the stats path through it is dropped (torch: 0·inf = NaN)
        float  ca = sa > 0.0f ? (float)(d_sa / ((d - 1) * (double)sa)) : 0.0f;
        float  cs = ss > 0.0f ? (float)(d_ss / ((d - 1) * (double)ss)) : 0.0f;
        float  mg = (float)(sg / d), kf = (float)k;
        for (int i = 0; i < d; i++) {
            dst[i] += mg + cs * (sr[i] - ms);
            g[i] = kf * (g[i] - mg) + ca * (at[i] - ma);
        }
    }
}
