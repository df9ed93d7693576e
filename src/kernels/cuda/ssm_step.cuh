/*
 * ssm_step.cuh — the device pieces of one recurrent SSM step that the
 * sequence kernels (ssm.cu), the row stages (ssm_rows.cu) and the fused
 * decode step (ssm_decode.cu) share, so that each computes the same float
 * operations in the same order (the same bits): the activations, the causal
 * conv of one token and its history update, and a warp's 32 rows of the SSD
 * step. Internal to src/kernels/cuda.
 */
#ifndef MOLT_KERNELS_CUDA_SSM_STEP_CUH
#define MOLT_KERNELS_CUDA_SSM_STEP_CUH

#include "kernels/cuda/common.cuh"

// silu / softplus with expf / log1pf (the CPU's k_expf is within 1e-7)
__device__ __forceinline__ float r_sigm(float v) { return 1.0f / (1.0f + expf(-v)); }
__device__ __forceinline__ float r_silu(float v) { return v / (1.0f + expf(-v)); }
__device__ __forceinline__ float r_softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }
__device__ __forceinline__ float r_dsilu(float v) {
    float s = r_sigm(v);
    return s * (1.0f + v * (1.0f - s));
}
__device__ __forceinline__ float r_dsoftplus(float v) { return v > 20.0f ? 1.0f : r_sigm(v); }

// ----------------------------------------------------------------------------
// causal conv1d:  y[t,c] = b[c] + Σ_k w[c,k]·in[t-(K-1)+k, c]
//   in[τ,c] = x[τ,c] (τ ≥ 0), state[c, τ+K-1] (τ < 0; 0 when state is NULL)

// y[t,c] (shared by the sequence and the decode-rows kernels: the same code, the same bits)
__device__ __forceinline__ float conv_out(const float *x, const float *w, const float *b,
                                          const float *state, int t, int c, int Cc, int K) {
    float s = b ? b[c] : 0.0f;
    for (int k = 0; k < K; k++) {
        int   tau = t - (K - 1) + k;
        float v = tau >= 0 ? x[(size_t)tau * Cc + c]
                           : (state ? state[(size_t)c * (K - 1) + (tau + K - 1)] : 0.0f);
        s += w[(size_t)c * K + k] * v;
    }
    return s;
}

// new history of channel c: the inputs at τ = T-(K-1) .. T-1 (old slot T+j
// when τ < 0; ascending j never reads a slot already rewritten)
__device__ __forceinline__ void conv_hist(float *state, const float *x, int T, int Cc, int K,
                                          size_t c) {
    float *sc = state + c * (size_t)(K - 1);
    for (int j = 0; j < K - 1; j++) {
        int tau = T - (K - 1) + j;
        sc[j] = tau >= 0 ? x[(size_t)tau * Cc + c] : sc[T + j];
    }
}

// ----------------------------------------------------------------------------
// one lane per (h, p), a warp per 32 of them

// rows i0 .. i0+31 (those < H·P) of one token's step, one warp: lane l owns row
// (h, p) = i0 + l and runs its n = 0..N-1 recurrence in order (the arithmetic of a
// thread per row), while the state moves through shared memory in 32×32 tiles
// so that every global load and store is coalesced (a thread per row would read
// and write 32 rows N floats apart per instruction). Shared by the sequence and
// the decode-rows kernels: the same code, the same bits.
#define SSD_WARPS 4
// The state in f32, or in bf16 (the bits as uint16_t: ssm_rows.h's bf16 recurrent state): a
// bf16 element is widened exactly, the step's f32 products rounded one by one as the CPU's
// ssd_step_rows_bf16 (no FMA: the same s, so the same stored bits for the same decay), the new
// state rounded to nearest even (NaN kept quiet, as molt_f32_to_bf16), y summed from the f32 s.
__device__ __forceinline__ float st_load(const float *p) { return *p; }
__device__ __forceinline__ float st_load(const uint16_t *p) { return __uint_as_float((uint32_t)*p << 16); }
__device__ __forceinline__ void  st_store(float *p, float v) { *p = v; }
__device__ __forceinline__ void  st_store(uint16_t *p, float v) {
    uint32_t x = __float_as_uint(v);
    *p = (x & 0x7FFFFFFFu) > 0x7F800000u ? (uint16_t)((x >> 16) | 0x0040u)
                                         : (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}
__device__ __forceinline__ float st_next(const float *, float a, float s, float xv, float b) {
    return a * s + xv * b;
}
__device__ __forceinline__ float st_next(const uint16_t *, float a, float s, float xv, float b) {
    return __fadd_rn(__fmul_rn(a, s), __fmul_rn(xv, b));
}

template <typename S>
__device__ __forceinline__ void ssd_warp(float *y, S *state, const float *X, const float *dA,
                                         const float *B, const float *C, size_t i0, int H, int P,
                                         int N, int G, float (*tile)[33]) {
    int          lane = threadIdx.x & 31;
    size_t       hp = (size_t)H * P, i = i0 + lane;
    bool         live = i < hp;
    int          h = live ? (int)(i / P) : 0, g = h / (H / G);
    int          nrows = hp - i0 < 32 ? (int)(hp - i0) : 32;
    float        a = live ? cu_decay(dA[h]) : 0.0f, xv = live ? X[i] : 0.0f, acc = 0.0f;
    const float *Bg = B + (size_t)g * N, *Cg = C + (size_t)g * N;
    for (int n0 = 0; n0 < N; n0 += 32) {
        int nn = N - n0 < 32 ? N - n0 : 32;
        if (lane < nn)
            for (int k = 0; k < nrows; k++)
                tile[k][lane] = st_load(state + (i0 + k) * N + n0 + lane);
        __syncwarp();
        if (live)
            for (int q = 0; q < nn; q++) {
                float s = st_next(state, a, tile[lane][q], xv, Bg[n0 + q]);
                tile[lane][q] = s;
                acc += s * Cg[n0 + q];
            }
        __syncwarp();
        if (lane < nn)
            for (int k = 0; k < nrows; k++)
                st_store(state + (i0 + k) * N + n0 + lane, tile[k][lane]);
        __syncwarp();
    }
    if (live)
        y[i] = acc;
}

#endif
