/*
 * hybrid.cu — CUDA copy_cols (a strided 2-D copy) and the hybrid combiner's
 * statistics matching and its backward. Contracts in kernels.h.
 *
 * One block per token; the per-token sums (means, variances, Σg, Σg·z) are
 * taken in double over a fixed tree (cu_block_sum), the CPU sums in index
 * order: the double sums agree to a few ulps of a double, so the float
 * results agree with the CPU's to rounding (usually the same bits).
 */
#include "kernels/cuda/common.cuh"

#define HYB_EPS 1e-5f

// dst[r, 0:n) = src[r, 0:n) for r < rows (leading dims ldd / lds): a kernel
// rather than cudaMemcpy2DAsync, which moved the Mamba-2 training's xBC
// columns (8192 rows of 9 KB) at ~0.6 TB/s on an H100. V = 4: float4 loads
// and stores (pointers 16-byte aligned, ldd, lds and n multiples of 4).
template <int V>
__global__ void k_copy_cols(float *dst, size_t ldd, const float *src, size_t lds, size_t rows,
                            size_t n) {
    size_t nv = n / V, total = rows * nv;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / nv, c = (i % nv) * V;
        if (V == 4)
            *(float4 *)(dst + r * ldd + c) = *(const float4 *)(src + r * lds + c);
        else
            dst[r * ldd + c] = src[r * lds + c];
    }
}

extern "C" void cuda_copy_cols(const molt_exec *ex, float *dst, size_t ldd, const float *src,
                               size_t lds, size_t rows, size_t n) {
    if (!rows || !n)
        return;
    if (ldd == n && lds == n) { // contiguous: one plain copy
        CU(cudaMemcpyAsync(dst, src, sizeof(float) * rows * n, cudaMemcpyDeviceToDevice,
                           cu_stream(ex)));
        return;
    }
    if ((uintptr_t)dst % 16 == 0 && (uintptr_t)src % 16 == 0 && ldd % 4 == 0 && lds % 4 == 0 &&
        n % 4 == 0) {
        k_copy_cols<4><<<cu_blocks(rows * n / 4, 256), 256, 0, cu_stream(ex)>>>(dst, ldd, src, lds,
                                                                                rows, n);
        CU_LAUNCHED("k_copy_cols4");
    } else {
        k_copy_cols<1><<<cu_blocks(rows * n, 256), 256, 0, cu_stream(ex)>>>(dst, ldd, src, lds,
                                                                            rows, n);
        CU_LAUNCHED("k_copy_cols");
    }
}

// ap = (a − μa)·κ + μs, st = μa μs σa σs
__global__ void k_hybrid_stats(float *ap, float *st, const float *a, const float *s, int d) {
    __shared__ double sh[32];
    size_t            o = (size_t)blockIdx.x * d;
    const float      *at = a + o, *sr = s + o;
    double            pa = 0, ps = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        pa += (double)at[i];
        ps += (double)sr[i];
    }
    double ma = cu_block_sum(pa, sh) / d;
    double ms = cu_block_sum(ps, sh) / d;
    double va = 0, vs = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        va += ((double)at[i] - ma) * ((double)at[i] - ma);
        vs += ((double)sr[i] - ms) * ((double)sr[i] - ms);
    }
    va = cu_block_sum(va, sh);
    vs = cu_block_sum(vs, sh);
    float sa = (float)sqrt(va / (d - 1)), ss = (float)sqrt(vs / (d - 1));
    float k = __fdiv_rn(__fadd_rn(ss, HYB_EPS), __fadd_rn(sa, HYB_EPS));
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        ap[o + i] = __fadd_rn(__fmul_rn(__fsub_rn(at[i], (float)ma), k), (float)ms);
    if (st && threadIdx.x == 0) {
        float *q = st + 4 * (size_t)blockIdx.x;
        q[0] = (float)ma;
        q[1] = (float)ms;
        q[2] = sa;
        q[3] = ss;
    }
}

extern "C" void cuda_hybrid_stats(const molt_exec *ex, float *ap, float *st, const float *a,
                                  const float *s, int T, int d) {
    if (T <= 0 || d <= 0)
        return;
    k_hybrid_stats<<<T, 256, 0, cu_stream(ex)>>>(ap, st, a, s, d);
    CU_LAUNCHED("k_hybrid_stats");
}

// g: dL/dap → dL/da;  ds += the statistics path (hybrid.c of the CPU backend
// gives the equations)
__global__ void k_hybrid_stats_bwd(float *g, float *ds, const float *st, const float *a,
                                   const float *s, int d) {
    __shared__ double sh[32];
    size_t            o = (size_t)blockIdx.x * d;
    const float      *at = a + o, *sr = s + o, *q = st + 4 * (size_t)blockIdx.x;
    float            *gt = g + o, *dst = ds + o;
    float             ma = q[0], ms = q[1], sa = q[2], ss = q[3];
    double            psg = 0, pgz = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        psg += (double)gt[i];
        pgz += (double)gt[i] * (double)__fsub_rn(at[i], ma);
    }
    double sg = cu_block_sum(psg, sh);
    double gz = cu_block_sum(pgz, sh);
    double k = ((double)ss + (double)HYB_EPS) / ((double)sa + (double)HYB_EPS);
    double d_sa = -gz * k / ((double)sa + (double)HYB_EPS);
    double d_ss = gz / ((double)sa + (double)HYB_EPS);
    float  ca = sa > 0.0f ? (float)(d_sa / ((d - 1) * (double)sa)) : 0.0f;
    float  cs = ss > 0.0f ? (float)(d_ss / ((d - 1) * (double)ss)) : 0.0f;
    float  mg = (float)(sg / d), kf = (float)k;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        dst[i] = __fadd_rn(dst[i], __fadd_rn(mg, __fmul_rn(cs, __fsub_rn(sr[i], ms))));
        gt[i] = __fadd_rn(__fmul_rn(kf, __fsub_rn(gt[i], mg)), __fmul_rn(ca, __fsub_rn(at[i], ma)));
    }
}

extern "C" void cuda_hybrid_stats_backward(const molt_exec *ex, float *g, float *ds,
                                           const float *st, const float *a, const float *s,
                                           int T, int d) {
    if (T <= 0 || d <= 0)
        return;
    k_hybrid_stats_bwd<<<T, 256, 0, cu_stream(ex)>>>(g, ds, st, a, s, d);
    CU_LAUNCHED("k_hybrid_stats_bwd");
}
