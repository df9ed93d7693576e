/*
 * mamba3_util.h — the per-element pieces of the Mamba-3 ops (kernels/mamba3.h)
 * shared by their forward (mamba3.c) and backward (mamba3_backward.c), so
 * both compute Δ, A, θ, λ, v and the rotation with the same float operations.
 * Internal to src/kernels/cpu.
 */
#ifndef MOLT_MAMBA3_UTIL_H
#define MOLT_MAMBA3_UTIL_H

#include "kernels/kernels.h"
#include "kernels/mamba3.h"
#include "kernels/ssm.h"

#include <math.h>
#include <stddef.h>

#define M3_NMAX 1024 // largest d_state (per-row scratch on the stack)
#define M3_RMAX 16   // largest MIMO rank
#define M3_PI   3.14159265358979323846f
#define M3_2PI  6.28318530717958647692f

// Δ = softplus(dd_dt + dt_bias) of head h in the zx row z
static inline float m3_delta(const float *z, const float *dt_bias, int h, const m3_rows_cfg *c) {
    return k_softplus(z[m3_col_dt(c) + h] + (dt_bias ? dt_bias[h] : 0.0f));
}
// heavy_tail(a) = 1 + a (a ≥ 0), 1/(1 − a) (a < 0), floored at A_floor
static inline float m3_heavy(float a, float A_floor) {
    float v = a >= 0.0f ? 1.0f + a : 1.0f / (1.0f - a);
    return v < A_floor ? A_floor : v;
}
static inline float m3_A(float a, float A_floor) { return -m3_heavy(a, A_floor); }
// d A / d a (0 where the floor holds)
static inline float m3_dA_da(float a, float A_floor) {
    float v = a >= 0.0f ? 1.0f + a : 1.0f / (1.0f - a);
    if (v < A_floor)
        return 0.0f;
    return a >= 0.0f ? -1.0f : -1.0f / ((1.0f - a) * (1.0f - a));
}
static inline float m3_theta(float a) { return tanhf(a) * M3_PI; }
static inline float m3_wrap(float a) { return a - M3_2PI * floorf(a / M3_2PI); }
// γ_t = λ_t Δ_t and b_t = (1 − λ_t) Δ_t of row t, head h
static inline float m3_gamma(const float *lam, const float *dlt, int t, int h, int H) {
    return lam[(size_t)t * H + h] * dlt[(size_t)t * H + h];
}
static inline float m3_b(const float *lam, const float *dlt, int t, int h, int H) {
    return (1.0f - lam[(size_t)t * H + h]) * dlt[(size_t)t * H + h];
}
// v = x[h,p]·mimo_x[h,r,p] (mx: that rank's row of mimo_x, NULL for SISO)
static inline float m3_v(const float *x, const float *mx, int h, int p, int P) {
    return mx ? x[(size_t)h * P + p] * mx[p] : x[(size_t)h * P + p];
}
// the rotated pair i of a state vector: (a, b) indices
static inline void m3_pair(const m3_rows_cfg *c, int i, int *a, int *b) {
    *a = c->mimo ? i : 2 * i;
    *b = c->mimo ? c->N / 2 + i : 2 * i + 1;
}
// o[N] turned by +φ (dir 1) or −φ (dir −1), pair i by phi[i]
static inline void m3_rotate(float *o, const float *phi, const m3_rows_cfg *c, int dir) {
    for (int i = 0; i < c->S; i++) {
        int ia, ib;
        m3_pair(c, i, &ia, &ib);
        float cs = cosf(phi[i]), sn = dir > 0 ? sinf(phi[i]) : -sinf(phi[i]);
        float a = o[ia], b = o[ib];
        o[ia] = a * cs - b * sn;
        o[ib] = a * sn + b * cs;
    }
}
// q̄, k̄ [T,H,N] of row t: the rank sums of q, k [T,R,H,N] divided by R
static inline void m3_rank_mean(float *qb, float *kb, const float *q, const float *k, int t,
                                const m3_rows_cfg *c) {
    int H = c->H, N = c->N, R = c->R;
    for (int h = 0; h < H; h++)
        for (int i = 0; i < N; i++) {
            float sq = 0.0f, sk = 0.0f;
            for (int r = 0; r < R; r++) {
                sq += q[(((size_t)t * R + r) * H + h) * N + i];
                sk += k[(((size_t)t * R + r) * H + h) * N + i];
            }
            qb[((size_t)t * H + h) * N + i] = sq / (float)R;
            kb[((size_t)t * H + h) * N + i] = sk / (float)R;
        }
}
// exp of a log-decay, flushed to 0 below SSM_EXP_FLUSH (as the SSD kernels)
static inline float m3_decay(float x) { return x < SSM_EXP_FLUSH ? 0.0f : expf(x); }
static inline int m3_all_nonpos(const float *dA, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(dA[i] <= 0.0f))
            return 0;
    return 1;
}

#endif
