/*
 * mamba3.h — the Mamba-3 mixer's ops (shared/docs/ALGORITHMS.md §8): the
 * row-wise stages around the scan, the decode step over state slots, and
 * the materialized mixing matrix, with their backward passes. Backend ops
 * (kernels.h: MOLT_BACKEND_OPS, group "mamba3"); CPU: cpu/mamba3.c,
 * cpu/mamba3_backward.c. The chunked scan itself is ssd_scan_chunked
 * (kernels/ssm.h) over a time-expanded sequence, see below.
 *
 * Letters: n rows (tokens), T tokens per sequence (rows are n / T sequences
 * of T consecutive rows), H heads, P head dim, Di = H·P, N state, G B/C
 * groups (head h reads group h / (H/G)), R MIMO rank (1 for SISO), S rotary
 * angles. Row-major.
 *
 * One row of the in_proj output zx (row stride ldz ≥ m3_in_rows), columns
 *     [ z Di | x Di | B R·G·N | C R·G·N | dd_dt H | dd_A H | trap H | angles S ]
 * B and C ordered (r, g, n) as the reference's "(r g n)".
 *
 * Per token t and head h (one sequence):
 *   Δ = softplus(dd_dt + dt_bias)    A = −max(heavy_tail(dd_A), A_floor)
 *   heavy_tail(x) = 1 + x (x ≥ 0), 1/(1 − x) (x < 0)     dA = Δ·A
 *   λ = sigmoid(trap)    θ_s = tanh(angles_s)·π
 *   φ_t[h,s] = wrap(φ_{t−1}[h,s] + θ_s·Δ)     wrap(a) = a − 2π·floor(a/2π)
 *   k[r,h] = Rot(φ_t[h]) (B_norm(B[r,g]) + B_bias[h,r]),  q likewise from C
 *     B_norm(b) = b / sqrt(mean(b²) + eps) · B_norm.weight     (over N)
 *     Rot: pairs (2i, 2i+1) (SISO) or (i, N/2 + i) (MIMO) for i < S turn by
 *     φ[h,i]: (a, b) → (a cos − b sin, a sin + b cos); other dims pass
 *   v[r,h] = x[h] ⊙ mimo_x[h,r]   (SISO: v = x)
 *   γ = λΔ     b = (1 − λ)Δ     β = b·exp(dA)
 *   h_t = exp(dA_t) h_{t−1} + β_t Σ_r v_{t−1,r} ⊗ k_{t−1,r} + γ_t Σ_r v_{t,r} ⊗ k_{t,r}
 *   ypre[r] = h_t q_r + D v_r
 *   g = Σ_r mimo_o[h,r] ⊙ gate(ypre[r], z ⊙ mimo_z[h,r])   (SISO: g = gate(ypre, z))
 *   gate(y, z) = y·silu(z), or with the out norm rmsnorm_P(y)·norm.weight·silu(z)
 *
 * The chunked form (mixers/mamba3.c): with S_t = γ_t + b_{t+1} (b past the
 * last row of the call = 0), the state is an SSD scan over the expanded time
 * t·R + r with input X[t,r] = v_{t,r}·S_t, decay dA at r = 0 (0 else), B = k,
 * C = q, entered from h_0 + b_1·Σ_r v_prev,r ⊗ k_prev,r (m3_fold); the
 * within-token terms are then corrected (m3_corr):
 *   ypre[t,r] = ys[t,r] + Σ_r' (q_r·k_r') v_r' · (r' > r ? γ_t : −b_{t+1}) + D v_r
 *
 * State block of a sequence (m3_state_floats):
 *   [ ssm H·P·N | k_prev R·H·N | v_prev H·P | angle H·S ]
 * k_prev = k_{t−1} (normed, biased, rotated), v_prev = x_{t−1} (raw x).
 *
 * Accumulation contract (as backward.h): outputs are written (=) unless
 * stated; a NULL optional output is not computed. Per-row gradient partials
 * of parameters are written per row, in the parameter's layout, for k_colsum.
 * Every op gives the same bits for any thread count.
 */
#ifndef MOLT_KERNELS_MAMBA3_H
#define MOLT_KERNELS_MAMBA3_H

#include <stddef.h>

#include "core/exec.h"

typedef struct m3_rows_cfg {
    int   H, P, N, G, R, S;
    int   mimo;     // rotation layout: 0 pairs (2i, 2i+1), 1 pairs (i, N/2 + i)
    int   norm;     // gate with the per-head RMSNorm (is_outproj_norm)
    float A_floor;  // A ≤ −A_floor
    float eps;      // RMSNorm eps (B/C norms and the out norm)
} m3_rows_cfg;

// The mixer's parameters the ops read (device pointers; NULL where absent:
// mimo_* for SISO, norm without the out norm, D = 0, dt_bias = 0).
typedef struct m3_rows_w {
    const float *dt_bias;          // [H]
    const float *B_norm, *C_norm;  // [N]
    const float *B_bias, *C_bias;  // [H,R,N]
    const float *mimo_x, *mimo_z, *mimo_o; // [H,R,P]
    const float *D;                // [H]
    const float *norm;             // [Di]
} m3_rows_w;

// column offsets inside a zx row, and the row width
static inline int m3_col_x(const m3_rows_cfg *c) { return c->H * c->P; }
static inline int m3_col_B(const m3_rows_cfg *c) { return 2 * c->H * c->P; }
static inline int m3_col_C(const m3_rows_cfg *c) { return 2 * c->H * c->P + c->R * c->G * c->N; }
static inline int m3_col_dt(const m3_rows_cfg *c) {
    return 2 * c->H * c->P + 2 * c->R * c->G * c->N;
}
static inline int m3_col_A(const m3_rows_cfg *c) { return m3_col_dt(c) + c->H; }
static inline int m3_col_trap(const m3_rows_cfg *c) { return m3_col_dt(c) + 2 * c->H; }
static inline int m3_col_ang(const m3_rows_cfg *c) { return m3_col_dt(c) + 3 * c->H; }
static inline int m3_in_rows(const m3_rows_cfg *c) { return m3_col_ang(c) + c->S; }
// the state block
static inline size_t m3_off_kprev(const m3_rows_cfg *c) { return (size_t)c->H * c->P * c->N; }
static inline size_t m3_off_vprev(const m3_rows_cfg *c) {
    return m3_off_kprev(c) + (size_t)c->R * c->H * c->N;
}
static inline size_t m3_off_angle(const m3_rows_cfg *c) {
    return m3_off_vprev(c) + (size_t)c->H * c->P;
}
static inline size_t m3_state_floats(const m3_rows_cfg *c) {
    return m3_off_angle(c) + (size_t)c->H * c->S;
}

// φ[n,H,S], cumulative per sequence. state: NULL (every sequence starts at
// φ = 0, nothing kept) or a host array of n/T state blocks, sequence i
// continuing from (and leaving its last φ in) the angle part of state[i].
void m3_angles(const molt_exec *ex, float *phi, float *const *state, const float *zx, int ldz,
               const float *dt_bias, int n, int T, const m3_rows_cfg *c);
// backward (from φ_0 = 0): dphi holds ∂φ on entry and the reverse cumulative
// sums ψ_t = Σ_{t'≥t} ∂φ_t' (same sequence) on return; writes the angles
// columns of dzx, adds ψ·θ·softplus' into its dd_dt columns (+=).
void m3_angles_backward(const molt_exec *ex, float *dzx, float *dphi, const float *zx, int ldz,
                        const float *dt_bias, int n, int T, const m3_rows_cfg *c);

// q, k [n,R,H,N] (rotated by phi [n,H,S]), dA, dlt (Δ), lam (λ) [n,H];
// rstd [n,2,R,G] (the B then C norms' 1/rms) when not NULL. Row-wise.
void m3_prep(const molt_exec *ex, float *q, float *k, float *dA, float *dlt, float *lam,
             float *rstd, const float *zx, int ldz, const float *phi, const m3_rows_w *w, int n,
             const m3_rows_cfg *c);
// backward: from ∂q, ∂k (rotated), ∂dA, ∂γ, ∂b [n,H] (b_t = (1 − λ_t)Δ_t of
// row t) writes the B, C, dd_dt, dd_A, trap columns of dzx, dphi [n,H,S],
// and the per-row partials dBn, dCn [n,N] (B_norm / C_norm weights) and
// dBb, dCb [n,H,R,N] (B_bias / C_bias). q, k, rstd as m3_prep left them.
void m3_prep_backward(const molt_exec *ex, float *dzx, float *dphi, float *dBn, float *dCn,
                      float *dBb, float *dCb, const float *dq, const float *dk, const float *ddA,
                      const float *dgam, const float *dbet, const float *q, const float *k,
                      const float *rstd, const float *zx, int ldz, const float *phi,
                      const m3_rows_w *w, int n, const m3_rows_cfg *c);

// The scan's inputs: X [n,R,H,P] = v·S_t, dAx [n,R,H] = dA at r = 0, else 0
// (S_t = γ_t + b_{t+1}, b = 0 past the last row of each sequence).
void m3_mix(const molt_exec *ex, float *X, float *dAx, const float *zx, int ldz, const float *dA,
            const float *dlt, const float *lam, const m3_rows_w *w, int n, int T,
            const m3_rows_cfg *c);
// ypre [n,R,H,P] = ys + the within-token correction + D·v (ypre may be ys).
void m3_corr(const molt_exec *ex, float *ypre, const float *ys, const float *q, const float *k,
             const float *zx, int ldz, const float *dlt, const float *lam, const m3_rows_w *w,
             int n, int T, const m3_rows_cfg *c);
// backward of m3_mix and m3_corr together, from ∂X, ∂dAx (the scan backward)
// and ∂ypre: writes the x columns of dzx, ddA, dgam (∂γ_t), dbet (∂b_t),
// the partials dmx [n,H,R,P] (mimo_x) and hsD [n,H] (D); adds (+=) the
// correction's ∂q, ∂k into dq, dk (which hold the scan's ∂C, ∂B on entry).
void m3_mix_backward(const molt_exec *ex, float *dzx, float *dq, float *dk, float *ddA,
                     float *dgam, float *dbet, float *dmx, float *hsD, const float *dX,
                     const float *ddAx, const float *dypre, const float *q, const float *k,
                     const float *zx, int ldz, const float *dlt, const float *lam,
                     const m3_rows_w *w, int n, int T, const m3_rows_cfg *c);

// g [n,Di] from ypre [n,R,H,P] and the z columns; rstd [n,R,H] (out norm's
// 1/rms per rank and head) when not NULL.
void m3_gate(const molt_exec *ex, float *g, float *rstd, const float *ypre, const float *zx,
             int ldz, const m3_rows_w *w, int n, const m3_rows_cfg *c);
// backward: from ∂g writes dypre, the z columns of dzx and the partials dmz,
// dmo [n,H,R,P] (mimo_z, mimo_o) and dnw [n,Di] (norm); rstd as m3_gate saved.
void m3_gate_backward(const molt_exec *ex, float *dypre, float *dzx, float *dmz, float *dmo,
                      float *dnw, const float *dg, const float *ypre, const float *zx, int ldz,
                      const float *rstd, const m3_rows_w *w, int n, const m3_rows_cfg *c);

// Before a chunked scan continues a state block: ssm += b_1·Σ_r v_prev,r ⊗
// k_prev,r, b_1 from dlt, lam [H] of the call's first token.
void m3_fold(const molt_exec *ex, float *state, const float *dlt, const float *lam,
             const m3_rows_w *w, const m3_rows_cfg *c);
// Decode: row i is one token of its own sequence with state block state[i]
// (a host array): the recurrence above (ssm, k_prev, v_prev updated; the
// angle part is m3_angles'), ypre [n,R,H,P] pre-gate.
void m3_step_rows(const molt_exec *ex, float *ypre, float *const *state, const float *q,
                  const float *k, const float *zx, int ldz, const float *dA, const float *dlt,
                  const float *lam, const m3_rows_w *w, int n, const m3_rows_cfg *c);

// M [H,T,T] of one sequence from a zero state: the mixing matrix with the MIMO
// ranks averaged, q̄ = Σ_r q_r / R, k̄ likewise:
//   M[h,t,s] = (q̄_t·k̄_s)·exp(Σ_{j=s+1..t} dA_j)·(s < t ? S_s : γ_t)   (s ≤ t)
//   M[h,t,t] += D[h]/R     (D NULL: 0);   0 above the diagonal
// (SISO: ypre = M·x exactly; MIMO: the mixer's matrix when mimo_x, mimo_o = 1/R
// and mimo_z = 1). work: m3_materialize_work(T, c) floats.
size_t m3_materialize_work(int T, const m3_rows_cfg *c);
void   m3_materialize(const molt_exec *ex, float *M, const float *q, const float *k,
                      const float *dA, const float *dlt, const float *lam, const float *D, int T,
                      const m3_rows_cfg *c, float *work);
// backward from dM (above the diagonal ignored): dq, dk [T,R,H,N], ddA,
// dgam, dbet [T,H] written, dD [H] accumulated (+=; NULL: not wanted).
size_t m3_materialize_backward_work(int T, const m3_rows_cfg *c);
void   m3_materialize_backward(const molt_exec *ex, float *dq, float *dk, float *ddA,
                               float *dgam, float *dbet, float *dD, const float *dM,
                               const float *q, const float *k, const float *dA, const float *dlt,
                               const float *lam, const float *D, int T, const m3_rows_cfg *c,
                               float *work);

#endif
