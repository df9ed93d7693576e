/*
 * gateloop.cuh — device helpers shared by the CUDA GateLoop (gateloop.cu,
 * gateloop_backward.cu) and Mamba-3 (mamba3.cu, mamba3_backward.cu) ops: the
 * CPU's gateloop_util.h pieces as device functions (same float operations),
 * a grid-stride loop, and a by-value array of per-row state pointers (the
 * contracts' host arrays of device pointers travel as kernel arguments, at
 * most GL_MAXPTR per launch). Internal to src/kernels/cuda.
 */
#ifndef MOLT_KERNELS_CUDA_GATELOOP_CUH
#define MOLT_KERNELS_CUDA_GATELOOP_CUH

#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/gateloop.h"
}

#define GL_GRID_STRIDE(i, n)                                                                       \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                        \
         i += (size_t)gridDim.x * blockDim.x)

#define GL_TWO_PI_D 6.283185307179586

// per-row state pointers of one launch (a kernel argument: 64 × 8 bytes)
#define GL_MAXPTR 64
typedef struct gl_ptrs {
    float *p[GL_MAXPTR];
} gl_ptrs;

// threads for a block looping over n columns: a multiple of 32 in [32, 256]
static inline unsigned gl_threads(int n) {
    unsigned t = (unsigned)(n < 32 ? 32 : n > 256 ? 256 : n);
    return (t + 31u) / 32u * 32u;
}

__device__ __forceinline__ float gl_decay(float x) { return x < GL_EXP_FLUSH ? 0.0f : expf(x); }

__device__ __forceinline__ float gl_logsigmoid(float x) {
    return (x < 0.0f ? x : 0.0f) - log1pf(expf(-fabsf(x)));
}

// reduced to [−π, π] as the CPU's gl_wrap (C remainder, round-half-even quotient)
__device__ __forceinline__ double gl_wrap(double f) { return remainder(f, GL_TWO_PI_D); }

// out = (xr + i·xi)·(c + i·s)
__device__ __forceinline__ void gl_rot(float *out, float xr, float xi, float c, float s) {
    out[0] = xr * c - xi * s;
    out[1] = xr * s + xi * c;
}

// Σ_j exp(seg[j])·Re(qh_j·kh_j), j in order (as the CPU's gl_score)
__device__ __forceinline__ float gl_score(const float *qh, const float *kh, const float *seg,
                                          int J) {
    float s = 0.0f;
    for (int j = 0; j < J; j++) {
        float e = gl_decay(seg[j]);
        if (e != 0.0f)
            s += e * (qh[2 * j] * kh[2 * j] - qh[2 * j + 1] * kh[2 * j + 1]);
    }
    return s;
}

#endif
