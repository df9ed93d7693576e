/*
 * ssm_rows.cu — CUDA SSM row ops (ssm_rows.h): prep and gate (+ backward)
 * and the column sum of per-row partials (the batched-decode conv and scan
 * steps over per-row states are in ssm.cu).
 *
 * Kept simple (correct first): one block per row for prep / gate and their
 * backwards (a thread per column, or per head where a head's P columns are
 * summed: in order, as the CPU), a two-stage column sum for colsum
 * (colsum.cuh: double, row chunks then chunk order). The gated RMSNorm's
 * Σgz² and the gate backward's mean(∂n·n) are block sums in double over a
 * fixed tree (deterministic; the CPU sums the latter in float, so they agree
 * to rounding).
 * silu / softplus use expf / log1pf (the CPU's k_expf is within 1e-7).
 */
#include "kernels/cuda/colsum.cuh"
#include "kernels/cuda/ssm_step.cuh"

extern "C" {
#include "kernels/ssm_rows.h"
}

#define ROW_THREADS 256

// ----------------------------------------------------------------------------
// prep

__global__ void k_ssm_prep(float *x, float *X, float *B, float *C, float *dA, float *dlt,
                           const float *xc, const float *dt, int ldz, const float *dt_bias,
                           const float *A_log, ssm_rows_cfg c) {
    int          r = blockIdx.x, H = c.H, P = c.P, Di = H * P, GN = c.G * c.N, Cc = Di + 2 * GN;
    const float *v = xc + (size_t)r * Cc, *dtr = dt + (size_t)r * ldz;
    for (int i = threadIdx.x; i < GN; i += blockDim.x) {
        if (B)
            B[(size_t)r * GN + i] = c.mamba ? r_silu(v[Di + i]) : v[Di + i];
        if (C)
            C[(size_t)r * GN + i] = c.mamba ? r_silu(v[Di + GN + i]) : v[Di + GN + i];
    }
    if (x)
        for (int i = threadIdx.x; i < Di; i += blockDim.x)
            x[(size_t)r * Di + i] = c.mamba ? r_silu(v[i]) : v[i];
    if (!c.mamba) {
        for (int h = threadIdx.x; h < H; h += blockDim.x)
            dA[(size_t)r * H + h] = -r_softplus(dtr[h]);
        return;
    }
    // Δ per head (recomputed by every thread that needs it: the same value)
    for (int h = threadIdx.x; h < H; h += blockDim.x) {
        float d = r_softplus(dtr[h] + (dt_bias ? dt_bias[h] : 0.0f));
        d = d < c.dt_lo ? c.dt_lo : d;
        d = d > c.dt_hi ? c.dt_hi : d;
        dlt[(size_t)r * H + h] = d;
        dA[(size_t)r * H + h] = __fmul_rn(d, -expf(A_log[h]));
    }
    if (X)
        for (int i = threadIdx.x; i < Di; i += blockDim.x) {
            int   h = i / P;
            float d = r_softplus(dtr[h] + (dt_bias ? dt_bias[h] : 0.0f));
            d = d < c.dt_lo ? c.dt_lo : d;
            d = d > c.dt_hi ? c.dt_hi : d;
            X[(size_t)r * Di + i] = __fmul_rn(r_silu(v[i]), d);
        }
}

extern "C" void cuda_ssm_prep(const molt_exec *ex, float *x, float *X, float *B, float *C,
                              float *dA, float *dlt, const float *xc, const float *dt, int ldz,
                              const float *dt_bias, const float *A_log, int n,
                              const ssm_rows_cfg *c) {
    if (n <= 0)
        return;
    k_ssm_prep<<<n, ROW_THREADS, 0, cu_stream(ex)>>>(x, c->mamba ? X : NULL, B, C, dA, dlt, xc,
                                                     dt, ldz, dt_bias, A_log, *c);
    CU_LAUNCHED("k_ssm_prep");
}

// backward of prep. The columns are coalesced: thread i of the row takes column
// i (head h = i / P) and stages dX·x in shared memory (padded rows: P + 1);
// then a thread per head sums its P products in p order (the CPU's order, the
// same float operations: the same bits as the thread-per-head loop this
// replaces, whose lanes read addresses P floats apart — 500 µs a call at
// 8192 × 2048 on an H100). Shared: H·(P + 1) floats (prep_bwd_smem).
static size_t prep_bwd_smem(int H, int P) { return sizeof(float) * (size_t)H * (P + 1); }

// Σ_p prod[h][p] in p order (the CPU's): head h's row of the staged products
__device__ __forceinline__ float head_sum(const float *prod, int h, int P) {
    float s = 0.0f;
    for (int p = 0; p < P; p++)
        s = __fadd_rn(s, prod[h * (P + 1) + p]);
    return s;
}

__global__ void k_ssm_prep_bwd(float *dxc, float *ddt, float *hsA, const float *dX,
                               const float *dypre, const float *ddA, const float *dB,
                               const float *dC, const float *dcs, const float *xc,
                               const float *x, const float *dlt, const float *dt, int ldz,
                               const float *dt_bias, const float *A_log, const float *D,
                               ssm_rows_cfg c) {
    extern __shared__ float prod[]; // [H][P + 1]: dX·x
    int          r = blockIdx.x, H = c.H, P = c.P, Di = H * P, GN = c.G * c.N, Cc = Di + 2 * GN;
    const float *dtr = dt + (size_t)r * ldz, *xcr = xc + (size_t)r * Cc;
    float       *ddtr = ddt + (size_t)r * ldz, *dxr = dxc + (size_t)r * Cc;
    for (int i = threadIdx.x; i < Di; i += blockDim.x) {
        int    h = i / P;
        size_t ri = (size_t)r * Di + i;
        float  dl = c.mamba ? dlt[(size_t)r * H + h] : 1.0f;
        float  v = dypre ? __fmul_rn(D ? D[h] : 0.0f, dypre[ri]) : 0.0f;
        if (dX) {
            float g = dX[ri];
            prod[h * (P + 1) + i % P] = __fmul_rn(g, x[ri]);
            v = __fadd_rn(v, __fmul_rn(g, dl));
        }
        dxr[i] = c.mamba ? __fmul_rn(v, r_dsilu(xcr[i])) : v;
    }
    __syncthreads();
    for (int h = threadIdx.x; h < H; h += blockDim.x) {
        float dl = c.mamba ? dlt[(size_t)r * H + h] : 1.0f;
        float ddl = dX ? head_sum(prod, h, P) : 0.0f;
        float dAh = ddA[(size_t)r * H + h];
        if (c.mamba) {
            float A = -expf(A_log[h]);
            ddl = __fadd_rn(ddl, __fmul_rn(dAh, A));
            if (dcs)
                ddl = __fadd_rn(ddl, dcs[(size_t)r * H + h]);
            hsA[(size_t)r * H + h] = __fmul_rn(__fmul_rn(dAh, dl), A);
            float v = dtr[h] + (dt_bias ? dt_bias[h] : 0.0f);
            float sp = r_softplus(v);
            int   clamped = sp < c.dt_lo || sp > c.dt_hi;
            ddtr[h] = clamped ? 0.0f : __fmul_rn(ddl, r_dsoftplus(v));
        } else {
            ddtr[h] = __fmul_rn(-dAh, r_dsoftplus(dtr[h]));
        }
    }
    for (int i = threadIdx.x; i < 2 * GN; i += blockDim.x) {
        float g = i < GN ? dB[(size_t)r * GN + i] : dC[(size_t)r * GN + i - GN];
        dxr[Di + i] = c.mamba ? __fmul_rn(g, r_dsilu(xcr[Di + i])) : g;
    }
}

extern "C" void cuda_ssm_prep_backward(const molt_exec *ex, float *dxc, float *ddt, float *hsA,
                                       const float *dX, const float *dypre, const float *ddA,
                                       const float *dB, const float *dC, const float *dcs,
                                       const float *xc, const float *x, const float *dlt,
                                       const float *dt, int ldz, const float *dt_bias,
                                       const float *A_log, const float *D, int n,
                                       const ssm_rows_cfg *c) {
    if (n <= 0)
        return;
    size_t sm = prep_bwd_smem(c->H, c->P);
    if (!cu_smem_fits((const void *)k_ssm_prep_bwd, sm)) {
        CU_FAIL("ssm_prep_backward: H·(P + 1) floats exceed the block's shared memory");
        return;
    }
    k_ssm_prep_bwd<<<n, ROW_THREADS, sm, cu_stream(ex)>>>(
        dxc, ddt, hsA, dX, D ? dypre : NULL, ddA, dB, dC, c->mamba ? dcs : NULL, xc, x, dlt, dt,
        ldz, dt_bias, A_log, D, *c);
    CU_LAUNCHED("k_ssm_prep_bwd");
}

// ----------------------------------------------------------------------------
// gate

__global__ void k_ssm_gate(float *g, float *ypre, float *rstd, const float *x, const float *z,
                           int ldz, const float *D, const float *norm_w, const float *z_bias,
                           ssm_rows_cfg c) {
    __shared__ double sh[32];
    int               r = blockIdx.x, P = c.P, Di = c.H * P, gs = Di / c.G;
    float            *yp = ypre + (size_t)r * Di, *gr = g + (size_t)r * Di;
    const float      *zr = z + (size_t)r * ldz;
    for (int i = threadIdx.x; i < Di; i += blockDim.x) {
        float y = yp[i];
        if (x && D) {
            y = __fadd_rn(y, __fmul_rn(D[i / P], x[(size_t)r * Di + i]));
            yp[i] = y;
        }
        float zz = c.mamba ? zr[i] : zr[i] + (z_bias ? z_bias[i] : 0.0f);
        gr[i] = __fmul_rn(y, r_silu(zz));
    }
    if (!c.mamba)
        return;
    __syncthreads();
    for (int q = 0; q < c.G; q++) { // RMSNorm per group
        float       *gg = gr + (size_t)q * gs;
        const float *w = norm_w + (size_t)q * gs;
        double       ss = 0.0;
        for (int i = threadIdx.x; i < gs; i += blockDim.x)
            ss += (double)gg[i] * (double)gg[i];
        float s = (float)cu_block_sum(ss, sh);
        float rs = 1.0f / sqrtf(s / (float)gs + c.eps);
        for (int i = threadIdx.x; i < gs; i += blockDim.x)
            gg[i] = __fmul_rn(__fmul_rn(gg[i], rs), w[i]);
        if (rstd && threadIdx.x == 0)
            rstd[(size_t)r * c.G + q] = rs;
    }
}

extern "C" void cuda_ssm_gate(const molt_exec *ex, float *g, float *ypre, float *rstd,
                              const float *x, const float *z, int ldz, const float *D,
                              const float *norm_w, const float *z_bias, int n,
                              const ssm_rows_cfg *c) {
    if (n <= 0)
        return;
    k_ssm_gate<<<n, ROW_THREADS, 0, cu_stream(ex)>>>(g, ypre, c->mamba ? rstd : NULL, x, z, ldz,
                                                     D, norm_w, z_bias, *c);
    CU_LAUNCHED("k_ssm_gate");
}

__global__ void k_ssm_gate_bwd(float *dg, float *dz, float *dnw, float *hsD, const float *ypre,
                               const float *x, const float *z, int ldz, const float *rstd,
                               const float *norm_w, const float *z_bias, ssm_rows_cfg c) {
    __shared__ double sh[32];
    int               r = blockIdx.x, H = c.H, P = c.P, Di = H * P, gs = Di / c.G;
    const float      *yp = ypre + (size_t)r * Di, *zr = z + (size_t)r * ldz;
    float            *dgr = dg + (size_t)r * Di, *dzr = dz + (size_t)r * ldz;
    if (c.mamba) {
        float *tn = dnw ? dnw + (size_t)r * Di : NULL;
        for (int q = 0; q < c.G; q++) {
            float  rs = rstd[(size_t)r * c.G + q];
            int    i0 = q * gs;
            double d = 0.0;
            for (int i = i0 + threadIdx.x; i < i0 + gs; i += blockDim.x) {
                float nv = __fmul_rn(__fmul_rn(yp[i], r_silu(zr[i])), rs);
                if (tn)
                    tn[i] = __fmul_rn(dgr[i], nv);
                float dn = __fmul_rn(dgr[i], norm_w[i]);
                dgr[i] = dn;
                d += (double)__fmul_rn(dn, nv);
            }
            float dot = (float)cu_block_sum(d, sh) / (float)gs;
            for (int i = i0 + threadIdx.x; i < i0 + gs; i += blockDim.x) {
                float sz = r_silu(zr[i]), nv = __fmul_rn(__fmul_rn(yp[i], sz), rs);
                float dgz = __fmul_rn(rs, __fsub_rn(dgr[i], __fmul_rn(nv, dot)));
                dzr[i] = __fmul_rn(__fmul_rn(dgz, yp[i]), r_dsilu(zr[i]));
                dgr[i] = __fmul_rn(dgz, sz);
            }
        }
    } else {
        for (int i = threadIdx.x; i < Di; i += blockDim.x) {
            float zz = zr[i] + (z_bias ? z_bias[i] : 0.0f);
            dzr[i] = __fmul_rn(__fmul_rn(dgr[i], yp[i]), r_dsilu(zz));
            dgr[i] = __fmul_rn(dgr[i], r_silu(zz));
        }
    }
    if (!hsD)
        return;
    // Σ_p ∂ypre·x in p order per head: the products staged coalesced, as prep's backward
    extern __shared__ float prod[]; // [H][P + 1]
    __syncthreads();
    for (int i = threadIdx.x; i < Di; i += blockDim.x)
        prod[i / P * (P + 1) + i % P] = __fmul_rn(dgr[i], x[(size_t)r * Di + i]);
    __syncthreads();
    for (int h = threadIdx.x; h < H; h += blockDim.x)
        hsD[(size_t)r * H + h] = head_sum(prod, h, P);
}

extern "C" void cuda_ssm_gate_backward(const molt_exec *ex, float *dg, float *dz, float *dnw,
                                       float *hsD, const float *ypre, const float *x,
                                       const float *z, int ldz, const float *rstd,
                                       const float *norm_w, const float *z_bias, int n,
                                       const ssm_rows_cfg *c) {
    if (n <= 0)
        return;
    size_t sm = hsD ? prep_bwd_smem(c->H, c->P) : 0;
    if (!cu_smem_fits((const void *)k_ssm_gate_bwd, sm)) {
        CU_FAIL("ssm_gate_backward: H·(P + 1) floats exceed the block's shared memory");
        return;
    }
    k_ssm_gate_bwd<<<n, ROW_THREADS, sm, cu_stream(ex)>>>(dg, dz, c->mamba ? dnw : NULL, hsD,
                                                          ypre, x, z, ldz, rstd, norm_w, z_bias,
                                                          *c);
    CU_LAUNCHED("k_ssm_gate_bwd");
}

// ----------------------------------------------------------------------------
// colsum: out[j] += Σ_r src[r·ld + j]  (two stages over row chunks, double: colsum.cuh)

extern "C" void cuda_colsum(const molt_exec *ex, float *out, const float *src, int rows, int cols,
                            int ld) {
    if (!out || rows <= 0 || cols <= 0)
        return;
    cu_colsum2(ex, out, rows, cols, cs_col{src, ld});
}

// conv1d_causal_rows and ssd_step_rows: ssm.cu (one launch over all rows, sharing the
// single-sequence kernels' code)
