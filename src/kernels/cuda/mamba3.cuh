/*
 * mamba3.cuh — device twins of the CPU's mamba3_util.h (the same float
 * operations for Δ, A, θ, λ, v and the rotation) and of mamba3.h's column
 * and state offsets, shared by mamba3.cu and mamba3_backward.cu. Internal
 * to src/kernels/cuda.
 */
#ifndef MOLT_KERNELS_CUDA_MAMBA3_CUH
#define MOLT_KERNELS_CUDA_MAMBA3_CUH

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gateloop.cuh"

extern "C" {
#include "kernels/mamba3.h"
}

#define M3C_RMAX 16 // largest MIMO rank (the CPU's M3_RMAX)
#define M3C_PI   3.14159265358979323846f
#define M3C_2PI  6.28318530717958647692f

// zx columns and state offsets (mamba3.h's, as device functions)
__device__ __forceinline__ int mc_x(const m3_rows_cfg &c) { return c.H * c.P; }
__device__ __forceinline__ int mc_B(const m3_rows_cfg &c) { return 2 * c.H * c.P; }
__device__ __forceinline__ int mc_C(const m3_rows_cfg &c) {
    return 2 * c.H * c.P + c.R * c.G * c.N;
}
__device__ __forceinline__ int mc_dt(const m3_rows_cfg &c) {
    return 2 * c.H * c.P + 2 * c.R * c.G * c.N;
}
__device__ __forceinline__ int mc_A(const m3_rows_cfg &c) { return mc_dt(c) + c.H; }
__device__ __forceinline__ int mc_trap(const m3_rows_cfg &c) { return mc_dt(c) + 2 * c.H; }
__device__ __forceinline__ int mc_ang(const m3_rows_cfg &c) { return mc_dt(c) + 3 * c.H; }
__device__ __forceinline__ size_t mc_kprev(const m3_rows_cfg &c) {
    return (size_t)c.H * c.P * c.N;
}
__device__ __forceinline__ size_t mc_vprev(const m3_rows_cfg &c) {
    return mc_kprev(c) + (size_t)c.R * c.H * c.N;
}
__device__ __forceinline__ size_t mc_angle(const m3_rows_cfg &c) {
    return mc_vprev(c) + (size_t)c.H * c.P;
}

__device__ __forceinline__ float mc_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }
__device__ __forceinline__ float mc_silu(float v) { return v / (1.0f + expf(-v)); }
__device__ __forceinline__ float mc_dsilu(float v) {
    float s = mc_sigmoid(v);
    return s * (1.0f + v * (1.0f - s));
}
__device__ __forceinline__ float mc_softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }
__device__ __forceinline__ float mc_dsoftplus(float v) { return v > 20.0f ? 1.0f : mc_sigmoid(v); }

__device__ __forceinline__ float mc_delta(const float *z, const float *dt_bias, int h,
                                          const m3_rows_cfg &c) {
    return mc_softplus(z[mc_dt(c) + h] + (dt_bias ? dt_bias[h] : 0.0f));
}
__device__ __forceinline__ float mc_A_of(float a, float A_floor) {
    float v = a >= 0.0f ? 1.0f + a : 1.0f / (1.0f - a);
    return -(v < A_floor ? A_floor : v);
}
__device__ __forceinline__ float mc_dA_da(float a, float A_floor) {
    float v = a >= 0.0f ? 1.0f + a : 1.0f / (1.0f - a);
    if (v < A_floor)
        return 0.0f;
    return a >= 0.0f ? -1.0f : -1.0f / ((1.0f - a) * (1.0f - a));
}
__device__ __forceinline__ float mc_theta(float a) { return tanhf(a) * M3C_PI; }
// wrap(a) = a − 2π·floor(a/2π), rounded as the CPU's (no FMA contraction: a phase near a
// multiple of 2π must wrap the same way on both backends)
__device__ __forceinline__ float mc_wrap(float a) {
    return __fsub_rn(a, __fmul_rn(M3C_2PI, floorf(a / M3C_2PI)));
}
__device__ __forceinline__ float mc_gamma(const float *lam, const float *dlt, int t, int h, int H) {
    return lam[(size_t)t * H + h] * dlt[(size_t)t * H + h];
}
__device__ __forceinline__ float mc_b(const float *lam, const float *dlt, int t, int h, int H) {
    return (1.0f - lam[(size_t)t * H + h]) * dlt[(size_t)t * H + h];
}
// v = x[h,p]·mimo_x[h,r,p] (mx: that rank's row, NULL for SISO)
__device__ __forceinline__ float mc_v(const float *x, const float *mx, int h, int p, int P) {
    return mx ? x[(size_t)h * P + p] * mx[p] : x[(size_t)h * P + p];
}
__device__ __forceinline__ const float *mc_mx(const float *mimo, int h, int r, int R, int P) {
    return mimo ? mimo + ((size_t)h * R + r) * P : NULL;
}
__device__ __forceinline__ void mc_pair(const m3_rows_cfg &c, int i, int *a, int *b) {
    *a = c.mimo ? i : 2 * i;
    *b = c.mimo ? c.N / 2 + i : 2 * i + 1;
}
// o[N] turned by +φ (dir 1) or −φ (dir −1), pair i by phi[i] (the CPU's m3_rotate)
__device__ __forceinline__ void mc_rotate(float *o, const float *phi, const m3_rows_cfg &c,
                                          int dir) {
    for (int i = 0; i < c.S; i++) {
        int ia, ib;
        mc_pair(c, i, &ia, &ib);
        float cs = cosf(phi[i]), sn = dir > 0 ? sinf(phi[i]) : -sinf(phi[i]);
        float a = o[ia], b = o[ib];
        o[ia] = a * cs - b * sn;
        o[ib] = a * sn + b * cs;
    }
}
// Σ a_i² in double, 8 partial sums in a fixed order (the CPU's rows_sumsq)
__device__ __forceinline__ double mc_sumsq(const float *a, int n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int    i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += (double)a[i + k] * (double)a[i + k];
    double s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++)
        s += (double)a[i] * (double)a[i];
    return s;
}
__device__ __forceinline__ float mc_decay(float x) { return x < SSM_FLUSH ? 0.0f : expf(x); }

// q̄, k̄ [T,H,N]: the rank means of q, k [T,R,H,N] (the CPU's m3_rank_mean), one
// thread per element (static: one copy per source file that launches it)
static __global__ void k_m3_means(float *qb, float *kb, const float *q, const float *k, int T,
                           m3_rows_cfg c) {
    int H = c.H, N = c.N, R = c.R;
    GL_GRID_STRIDE(e, (size_t)T * H * N) {
        int   i = (int)(e % N), h = (int)(e / N % H), t = (int)(e / N / H);
        float sq = 0.0f, sk = 0.0f;
        for (int r = 0; r < R; r++) {
            sq += q[(((size_t)t * R + r) * H + h) * N + i];
            sk += k[(((size_t)t * R + r) * H + h) * N + i];
        }
        qb[e] = sq / (float)R;
        kb[e] = sk / (float)R;
    }
}

#endif
