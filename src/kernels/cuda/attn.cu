/*
 * attn.cu — CUDA attention ops (attn.h), so far RoPE and the KV-cache
 * append (the attention kernels proper are not yet on the GPU).
 *
 * Per-row positions and per-row cache pointers are host arrays (attn.h):
 * they go to the device through stream-ordered scratch inside the op.
 * RoPE does the CPU's float operations in its order without FMA
 * (__fmul_rn / __fadd_rn), so it gives the CPU's bits; the append copies.
 */
#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/attn.h"
}

#define GRID_STRIDE(i, n)                                                                          \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                        \
         i += (size_t)gridDim.x * blockDim.x)

// a host array of `bytes` on the device (scratch; NULL and recorded on failure)
static void *host_to_scratch(const molt_exec *ex, const void *h, size_t bytes) {
    void *d = cu_scratch(ex, bytes);
    if (d && !CU(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, cu_stream(ex)))) {
        cu_scratch_free(ex, d);
        return NULL;
    }
    return d;
}

// ----------------------------------------------------------------------------
// RoPE: one thread per (row, head, pair)

__global__ void k_rope(float *x, int ld, int rows, int nh, int hd, int pos0, int period,
                       const int32_t *pos, const float *cs, const float *sn, float sgn) {
    int    half = hd / 2;
    size_t n = (size_t)rows * nh * half;
    GRID_STRIDE(e, n) {
        int    i = (int)(e % half), h = (int)(e / half % nh), r = (int)(e / half / nh);
        size_t p = (size_t)(pos ? pos[r] : pos0 + r % period);
        float *v = x + (size_t)r * ld + (size_t)h * hd;
        float  c = cs[p * half + i], s = __fmul_rn(sn[p * half + i], sgn);
        float  a = v[i], b = v[i + half];
        v[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
        v[i + half] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
    }
}

extern "C" void cuda_rope(const molt_exec *ex, float *x, int ld, int rows, int nh, int hd,
                          int pos0, int period, const int32_t *pos, const float *cos,
                          const float *sin, int inverse) {
    size_t n = (size_t)(rows > 0 ? rows : 0) * (size_t)(nh > 0 ? nh : 0) * (size_t)(hd / 2);
    if (!n)
        return;
    int32_t *d_pos = NULL;
    if (pos && !(d_pos = (int32_t *)host_to_scratch(ex, pos, sizeof(int32_t) * (size_t)rows)))
        return;
    k_rope<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(x, ld, rows, nh, hd, pos0,
                                                         period > 0 ? period : 1, d_pos, cos, sin,
                                                         inverse ? -1.0f : 1.0f);
    CU_LAUNCHED("k_rope");
    if (d_pos)
        cu_scratch_free(ex, d_pos);
}

// ----------------------------------------------------------------------------
// KV-cache append: one thread per (row, kv head, column)

__global__ void k_kv_append(float *const *kc, float *const *vc, const float *k, const float *v,
                            int ld, int rows, int KV, int hd, int cap, int pos0,
                            const int32_t *pos) {
    size_t n = (size_t)rows * KV * hd;
    GRID_STRIDE(e, n) {
        int    i = (int)(e % hd), j = (int)(e / hd % KV), r = (int)(e / hd / KV);
        int    c = pos ? r : 0;
        size_t p = (size_t)(pos ? pos[r] : pos0 + r);
        size_t dst = ((size_t)j * cap + p) * hd + i, src = (size_t)r * ld + (size_t)j * hd + i;
        kc[c][dst] = k[src];
        if (vc && v)
            vc[c][dst] = v[src];
    }
}

extern "C" void cuda_kv_append(const molt_exec *ex, float *const *kc, float *const *vc,
                               const float *k, const float *v, int ld, int rows, int KV, int hd,
                               int cap, int pos0, const int32_t *pos) {
    size_t n = (size_t)(rows > 0 ? rows : 0) * (size_t)(KV > 0 ? KV : 0) * (size_t)(hd > 0 ? hd : 0);
    if (!n)
        return;
    int      np = pos ? rows : 1, wantv = vc && v;
    float  **d_kc = (float **)host_to_scratch(ex, kc, sizeof(float *) * (size_t)np);
    float  **d_vc = wantv ? (float **)host_to_scratch(ex, vc, sizeof(float *) * (size_t)np) : NULL;
    int32_t *d_pos = pos ? (int32_t *)host_to_scratch(ex, pos, sizeof(int32_t) * (size_t)rows)
                         : NULL;
    if (d_kc && (!wantv || d_vc) && (!pos || d_pos)) {
        k_kv_append<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(
            d_kc, d_vc, k, wantv ? v : NULL, ld, rows, KV, hd, cap, pos0, d_pos);
        CU_LAUNCHED("k_kv_append");
    }
    if (d_kc)
        cu_scratch_free(ex, d_kc);
    if (d_vc)
        cu_scratch_free(ex, d_vc);
    if (d_pos)
        cu_scratch_free(ex, d_pos);
}
