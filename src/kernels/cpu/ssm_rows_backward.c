/*
 * ssm_rows_backward.c — CPU backward of the SSM row ops (kernels/ssm_rows.h):
 * prep and gate. Each block quotes the forward it differentiates. Rows split
 * over molt's pool; one writer per output, so any thread count gives the same
 * bits.
 */
#include "kernels/ssm_rows.h"

#include "core/pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/ssm_rows_util.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

// ----------------------------------------------------------------------------
// prep, per row. Inputs: ∂X, ∂ypre for the D·x skip, ∂dA, ∂B, ∂C, ∂colscale.
//   X = x·Δ:        ∂x = ∂X·Δ + D·∂ypre        ∂Δ = Σ_p ∂X·x + ∂dA·A (+ ∂colscale)
//   dA = Δ·A:       ∂A_log += ∂dA·Δ·A           (A = −exp(A_log), ∂A/∂A_log = A)
//   Δ = clamp(sp):  ∂sp = ∂Δ where lo ≤ sp ≤ hi, else 0
//   sp = softplus(v), v = dt + dt_bias:  ∂dt = ∂sp·σ(v) = ∂dt_bias term
//   Discrete:       ∂x = ∂X + D·∂ypre           ∂a_t = −∂dA·σ(a_t)
//   x|B|C = silu(xc) (Mamba-2):  ∂xc = ∂(x|B|C)·silu'(xc)

typedef struct prep_bwd {
    float              *dxc, *ddt, *hsA;
    const float        *dX, *dypre, *ddA, *dB, *dC, *dcs, *xc, *x, *dlt, *dt, *dt_bias, *A_log,
        *D;
    int                 ldz, n;
    const ssm_rows_cfg *c;
} prep_bwd;

static void prep_bwd_run(void *arg, int ith, int nth) {
    const prep_bwd     *j = arg;
    const ssm_rows_cfg *c = j->c;
    int                 H = c->H, P = c->P, Di = H * P, GN = c->G * c->N, Cc = Di + 2 * GN, lo, hi;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    for (int r = lo; r < hi; r++) {
        const float *dtr = j->dt + (size_t)r * j->ldz;
        float       *ddt = j->ddt + (size_t)r * j->ldz, *dxc = j->dxc + (size_t)r * Cc;
        const float *dX = j->dX ? j->dX + (size_t)r * Di : NULL;
        const float *dyp = j->dypre ? j->dypre + (size_t)r * Di : NULL;
        const float *x = j->x ? j->x + (size_t)r * Di : NULL;
        const float *ddA = j->ddA + (size_t)r * H;
        for (int h = 0; h < H; h++) {
            float Dh = j->D ? j->D[h] : 0.0f;
            float dl = c->mamba ? j->dlt[(size_t)r * H + h] : 1.0f;
            float ddl = 0.0f; // ∂Δ
            for (int p = 0; p < P; p++) {
                int   i = h * P + p;
                float v = dyp ? Dh * dyp[i] : 0.0f;
                if (dX) {
                    v += dX[i] * dl;
                    ddl += dX[i] * x[i];
                }
                dxc[i] = v;
            }
            if (c->mamba) {
                float A = -expf(j->A_log[h]);
                ddl += ddA[h] * A;
                if (j->dcs)
                    ddl += j->dcs[(size_t)r * H + h];
                j->hsA[(size_t)r * H + h] = ddA[h] * dl * A;
                float v = dtr[h] + (j->dt_bias ? j->dt_bias[h] : 0.0f);
                float sp = k_softplus(v);
                int   clamped = sp < c->dt_lo || sp > c->dt_hi;
                ddt[h] = clamped ? 0.0f : ddl * rows_dsoftplus(v);
            } else {
                ddt[h] = -ddA[h] * rows_dsoftplus(dtr[h]);
            }
        }
        memcpy(dxc + Di, j->dB + (size_t)r * GN, sizeof(float) * (size_t)GN);
        memcpy(dxc + Di + GN, j->dC + (size_t)r * GN, sizeof(float) * (size_t)GN);
        if (c->mamba) {
            const float *xc = j->xc + (size_t)r * Cc;
            for (int i = 0; i < Cc; i++)
                dxc[i] *= rows_dsilu(xc[i]);
        }
    }
}

void cpu_ssm_prep_backward(const molt_exec *ex, float *dxc, float *ddt, float *hsA,
                           const float *dX, const float *dypre, const float *ddA, const float *dB,
                           const float *dC, const float *dcs, const float *xc, const float *x,
                           const float *dlt, const float *dt, int ldz, const float *dt_bias,
                           const float *A_log, const float *D, int n, const ssm_rows_cfg *c) {
    if (n <= 0)
        return;
    prep_bwd j = {dxc, ddt, hsA, dX, D ? dypre : NULL, ddA, dB, dC, c->mamba ? dcs : NULL, xc,
                  x, dlt, dt, dt_bias, A_log, D, ldz, n, c};
    size_t   cost = (size_t)n * (size_t)(c->H * c->P + 2 * c->G * c->N + 8 * c->H) * 4;
    molt_pool_run(rows_nth(ex, n, cost), prep_bwd_run, &j);
}

// ----------------------------------------------------------------------------
// gate, per row, ∂g in dg → ∂ypre in dg (in place), ∂z into dz:
//   Mamba-2, per group:  n = gz·rstd,  g = n·w
//     ∂norm_w += ∂g·n  (dnw holds ∂g·n, summed over rows by k_colsum)
//     ∂n = ∂g·w;   ∂gz = rstd·(∂n − n·mean(∂n·n))
//     gz = ypre·silu(z):  ∂ypre = ∂gz·silu(z),  ∂z = ∂gz·ypre·silu'(z)
//   Discrete:  zz = z + z_bias:  ∂ypre = ∂g·silu(zz),  ∂zz = ∂g·ypre·silu'(zz) (= ∂z_bias term)
//   ypre = ys + D·x:  ∂D[h] += Σ_p ∂ypre·x  (hsD per row)

typedef struct gate_bwd {
    float              *dg, *dz, *dnw, *hsD;
    const float        *ypre, *x, *z, *rstd, *norm_w, *z_bias;
    int                 ldz, n;
    const ssm_rows_cfg *c;
} gate_bwd;

static void gate_bwd_run(void *arg, int ith, int nth) {
    const gate_bwd     *j = arg;
    const ssm_rows_cfg *c = j->c;
    int                 H = c->H, P = c->P, Di = H * P, gs = Di / c->G, lo, hi;
    molt_pool_range(j->n, ith, nth, &lo, &hi);
    for (int r = lo; r < hi; r++) {
        const float *yp = j->ypre + (size_t)r * Di, *z = j->z + (size_t)r * j->ldz;
        float       *dg = j->dg + (size_t)r * Di, *dz = j->dz + (size_t)r * j->ldz;
        if (c->mamba) {
            float *tn = j->dnw ? j->dnw + (size_t)r * Di : NULL;
            for (int q = 0; q < c->G; q++) {
                float rs = j->rstd[(size_t)r * c->G + q], dot = 0.0f;
                int   i0 = q * gs;
                for (int i = i0; i < i0 + gs; i++) {
                    float nv = yp[i] * k_silu(z[i]) * rs;
                    if (tn)
                        tn[i] = dg[i] * nv;
                    dg[i] *= j->norm_w[i]; // ∂n
                    dot += dg[i] * nv;
                }
                dot /= (float)gs;
                for (int i = i0; i < i0 + gs; i++) {
                    float sz = k_silu(z[i]), nv = yp[i] * sz * rs;
                    float dgz = rs * (dg[i] - nv * dot);
                    dz[i] = dgz * yp[i] * rows_dsilu(z[i]);
                    dg[i] = dgz * sz;
                }
            }
        } else {
            for (int i = 0; i < Di; i++) {
                float zz = z[i] + (j->z_bias ? j->z_bias[i] : 0.0f);
                dz[i] = dg[i] * yp[i] * rows_dsilu(zz);
                dg[i] *= k_silu(zz);
            }
        }
        if (j->hsD) {
            const float *x = j->x + (size_t)r * Di;
            for (int h = 0; h < H; h++) {
                float s = 0.0f;
                for (int p = 0; p < P; p++)
                    s += dg[h * P + p] * x[h * P + p];
                j->hsD[(size_t)r * H + h] = s;
            }
        }
    }
}

void cpu_ssm_gate_backward(const molt_exec *ex, float *dg, float *dz, float *dnw, float *hsD,
                           const float *ypre, const float *x, const float *z, int ldz,
                           const float *rstd, const float *norm_w, const float *z_bias, int n,
                           const ssm_rows_cfg *c) {
    if (n <= 0)
        return;
    gate_bwd j = {dg, dz, c->mamba ? dnw : NULL, hsD, ypre, x, z, rstd, norm_w, z_bias, ldz, n, c};
    molt_pool_run(rows_nth(ex, n, (size_t)n * (size_t)(c->H * c->P) * 16), gate_bwd_run, &j);
}
