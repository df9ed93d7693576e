/*
 * attn_flash.cu — flash-style causal GQA attention for training
 * (kernels/attn.h: k_attn_flash_forward / k_attn_flash_backward): tiles of
 * queries and keys in shared memory, an online softmax, no T×T matrix in
 * global memory; the forward saves lse [B, H, T], the backward recomputes P.
 *
 * Layout of a block: 128 threads = 4 warps; a warp owns 8 rows (queries in
 * the forward and dq, keys in dk/dv); a lane owns the head-dim columns
 * lane + 32·c (c < HDC = ⌈hd/32⌉ ≤ 4, so hd ≤ 128) of the accumulators and,
 * in the score phase, the two tile columns lane and lane + 32. Shared rows
 * are padded to hd + 1 floats so lane-strided reads hit distinct banks.
 *
 *   forward   block (32 queries, h, b); key tiles of 64 up to the block's
 *             last query: m, l, o updated per tile (o ← o·e^{m−m'} + Σ p·v)
 *   D         D_t = dO_t·O_t, one warp per row (into work)
 *   dk, dv    block (32 keys, kv head, b); over the group's query heads in
 *             order and query tiles of 64 from the key tile on:
 *             P = exp(S − lse), dS = P∘(dO·vᵀ − D); dv += Pᵀ·dO, dk += dSᵀ·q
 *   dq        block (32 queries, h, b); key tiles of 64: dq += dS·k
 * Every sum has a fixed order (no atomics): deterministic. fp32 throughout
 * (CUDA cores); results equal the CPU twin (cpu/attn_flash.c) to rounding.
 * An exec with MOLT_EXEC_BF16 (hd a multiple of 16) takes the bf16
 * tensor-core kernels of attn_flash_tc.cu instead.
 */
#include "kernels/cuda/attn_flash_tc.cuh"
#include "kernels/cuda/common.cuh"

extern "C" {
#include "kernels/attn.h"
}

#define FL_THREADS 128
#define FL_ROWS    8  // rows per warp
#define FL_BR      32 // query (or key) rows per block: 4 warps × 8
#define FL_BC      64 // columns of a tile: lanes × 2
#define FL_HD_MAX  128

__device__ __forceinline__ float fl_wmax(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float fl_wsum(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// rows [r0, r0 + n) of a head's columns (row stride ld) into smem [n][hdp],
// zeros past `valid` rows
__device__ __forceinline__ void fl_load(float *dst, const float *src, size_t ld, int n, int valid,
                                        int hd, int hdp) {
    for (int e = threadIdx.x; e < n * hd; e += blockDim.x) {
        int r = e / hd, i = e - r * hd;
        dst[r * hdp + i] = r < valid ? src[(size_t)r * ld + i] : 0.0f;
    }
}

// ----------------------------------------------------------------------------
// forward

template <int HDC>
__global__ void __launch_bounds__(FL_THREADS)
    k_flash_fwd(float *heads, float *lse, const float *qkv, int ld, int T, int H, int KV, int hd,
                float scale) {
    extern __shared__ float sm[];
    int    hdp = hd + 1, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int    t0 = blockIdx.x * FL_BR, h = blockIdx.y, b = blockIdx.z, kv = h / (H / KV);
    float *Qs = sm, *Ks = Qs + FL_BR * hdp, *Vs = Ks + FL_BC * hdp;
    float *Ps = Vs + FL_BC * hdp + warp * FL_ROWS * FL_BC; // this warp's [8][64]
    const float *row0 = qkv + (size_t)b * T * ld;
    fl_load(Qs, row0 + (size_t)t0 * ld + (size_t)h * hd, ld, FL_BR, T - t0, hd, hdp);
    float m[FL_ROWS], l[FL_ROWS], o[FL_ROWS][HDC];
#pragma unroll
    for (int r = 0; r < FL_ROWS; r++) {
        m[r] = -INFINITY, l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < HDC; c++)
            o[r][c] = 0.0f;
    }
    int tlast = min(T, t0 + FL_BR) - 1;
    for (int s0 = 0; s0 <= tlast; s0 += FL_BC) {
        __syncthreads(); // the previous tile is consumed
        fl_load(Ks, row0 + (size_t)s0 * ld + (size_t)(H + kv) * hd, ld, FL_BC, T - s0, hd, hdp);
        fl_load(Vs, row0 + (size_t)s0 * ld + (size_t)(H + KV + kv) * hd, ld, FL_BC, T - s0, hd,
                hdp);
        __syncthreads();
        float sc[FL_ROWS][2];
#pragma unroll
        for (int r = 0; r < FL_ROWS; r++)
            sc[r][0] = sc[r][1] = 0.0f;
        for (int i = 0; i < hd; i++) {
            float k0 = Ks[lane * hdp + i], k1 = Ks[(lane + 32) * hdp + i];
#pragma unroll
            for (int r = 0; r < FL_ROWS; r++) {
                float q = Qs[(warp * FL_ROWS + r) * hdp + i];
                sc[r][0] = fmaf(q, k0, sc[r][0]);
                sc[r][1] = fmaf(q, k1, sc[r][1]);
            }
        }
#pragma unroll
        for (int r = 0; r < FL_ROWS; r++) {
            int   t = t0 + warp * FL_ROWS + r;
            bool  v0 = t < T && s0 + lane <= t, v1 = t < T && s0 + lane + 32 <= t;
            float x0 = v0 ? sc[r][0] * scale : -INFINITY, x1 = v1 ? sc[r][1] * scale : -INFINITY;
            float mn = fmaxf(m[r], fl_wmax(fmaxf(x0, x1)));
            float p0 = 0.0f, p1 = 0.0f, alpha = 1.0f;
            if (mn != -INFINITY) { // a row past T sees no key
                alpha = expf(m[r] - mn); // m = −∞ at the first tile: 0
                p0 = v0 ? expf(x0 - mn) : 0.0f;
                p1 = v1 ? expf(x1 - mn) : 0.0f;
                m[r] = mn;
            }
            l[r] = l[r] * alpha + fl_wsum(p0 + p1);
#pragma unroll
            for (int c = 0; c < HDC; c++)
                o[r][c] *= alpha;
            Ps[r * FL_BC + lane] = p0;
            Ps[r * FL_BC + lane + 32] = p1;
        }
        __syncwarp();
        int send = min(FL_BC, tlast - s0 + 1); // keys past the block's last query: p = 0
        for (int s = 0; s < send; s++) {
#pragma unroll
            for (int c = 0; c < HDC; c++) {
                int   col = lane + 32 * c;
                float v = col < hd ? Vs[s * hdp + col] : 0.0f;
#pragma unroll
                for (int r = 0; r < FL_ROWS; r++)
                    o[r][c] = fmaf(Ps[r * FL_BC + s], v, o[r][c]);
            }
        }
        __syncwarp();
    }
#pragma unroll
    for (int r = 0; r < FL_ROWS; r++) {
        int t = t0 + warp * FL_ROWS + r;
        if (t >= T)
            continue;
        float inv = 1.0f / l[r];
        float *out = heads + ((size_t)b * T + t) * H * hd + (size_t)h * hd;
#pragma unroll
        for (int c = 0; c < HDC; c++)
            if (lane + 32 * c < hd)
                out[lane + 32 * c] = o[r][c] * inv;
        if (lane == 0)
            lse[((size_t)b * H + h) * T + t] = m[r] + logf(l[r]);
    }
}

// ----------------------------------------------------------------------------
// backward

// D[b,h,t] = dO·O: one warp per (b, t, h) row (grid-stride over rows)
__global__ void k_flash_dot(float *D, const float *dO, const float *O, int B, int T, int H,
                            int hd) {
    int    lane = threadIdx.x & 31;
    size_t nrow = (size_t)B * T * H, nwarp = ((size_t)gridDim.x * blockDim.x) >> 5;
    for (size_t row = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < nrow;
         row += nwarp) {
        const float *a = dO + row * hd, *c = O + row * hd;
        float        s = 0.0f;
        for (int i = lane; i < hd; i += 32)
            s = fmaf(a[i], c[i], s);
        s = fl_wsum(s);
        size_t bt = row / H;
        int    h = (int)(row % H), b = (int)(bt / T), t = (int)(bt % T);
        if (lane == 0)
            D[((size_t)b * H + h) * T + t] = s;
    }
}

// dk, dv of 32 keys of kv head kv (rows of this warp: keys s0 + warp·8 + r)
template <int HDC>
__global__ void __launch_bounds__(FL_THREADS)
    k_flash_dkdv(float *dqkv, const float *qkv, const float *dheads, const float *lse,
                 const float *D, int T, int H, int KV, int hd, float scale) {
    extern __shared__ float sm[];
    int    hdp = hd + 1, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, grp = H / KV;
    int    s0 = blockIdx.x * FL_BR, kv = blockIdx.y, b = blockIdx.z, W = (H + 2 * KV) * hd;
    float *Ks = sm, *Vs = Ks + FL_BR * hdp, *Qs = Vs + FL_BR * hdp, *dOs = Qs + FL_BC * hdp;
    float *ls = dOs + FL_BC * hdp, *Ds = ls + FL_BC;
    float *Ps = Ds + FL_BC + warp * 2 * FL_ROWS * FL_BC, *dSs = Ps + FL_ROWS * FL_BC;
    const float *row0 = qkv + (size_t)b * T * W;
    fl_load(Ks, row0 + (size_t)s0 * W + (size_t)(H + kv) * hd, W, FL_BR, T - s0, hd, hdp);
    fl_load(Vs, row0 + (size_t)s0 * W + (size_t)(H + KV + kv) * hd, W, FL_BR, T - s0, hd, hdp);
    float dk[FL_ROWS][HDC], dv[FL_ROWS][HDC];
#pragma unroll
    for (int r = 0; r < FL_ROWS; r++)
#pragma unroll
        for (int c = 0; c < HDC; c++)
            dk[r][c] = dv[r][c] = 0.0f;
    for (int g = 0; g < grp; g++) {
        int h = kv * grp + g;
        for (int t0 = (s0 / FL_BC) * FL_BC; t0 < T; t0 += FL_BC) {
            __syncthreads();
            fl_load(Qs, row0 + (size_t)t0 * W + (size_t)h * hd, W, FL_BC, T - t0, hd, hdp);
            fl_load(dOs, dheads + ((size_t)b * T + t0) * H * hd + (size_t)h * hd,
                    (size_t)H * hd, FL_BC, T - t0, hd, hdp);
            for (int e = threadIdx.x; e < FL_BC; e += blockDim.x) {
                size_t x = ((size_t)b * H + h) * T + t0 + e;
                ls[e] = t0 + e < T ? lse[x] : 0.0f;
                Ds[e] = t0 + e < T ? D[x] : 0.0f;
            }
            __syncthreads();
            float qk[FL_ROWS][2], dp[FL_ROWS][2];
#pragma unroll
            for (int r = 0; r < FL_ROWS; r++)
                qk[r][0] = qk[r][1] = dp[r][0] = dp[r][1] = 0.0f;
            for (int i = 0; i < hd; i++) {
                float q0 = Qs[lane * hdp + i], q1 = Qs[(lane + 32) * hdp + i];
                float d0 = dOs[lane * hdp + i], d1 = dOs[(lane + 32) * hdp + i];
#pragma unroll
                for (int r = 0; r < FL_ROWS; r++) {
                    float k = Ks[(warp * FL_ROWS + r) * hdp + i];
                    float v = Vs[(warp * FL_ROWS + r) * hdp + i];
                    qk[r][0] = fmaf(q0, k, qk[r][0]), qk[r][1] = fmaf(q1, k, qk[r][1]);
                    dp[r][0] = fmaf(d0, v, dp[r][0]), dp[r][1] = fmaf(d1, v, dp[r][1]);
                }
            }
#pragma unroll
            for (int r = 0; r < FL_ROWS; r++) {
                int s = s0 + warp * FL_ROWS + r;
#pragma unroll
                for (int x = 0; x < 2; x++) {
                    int   tt = lane + 32 * x, t = t0 + tt;
                    bool  ok = s < T && t < T && t >= s;
                    float p = ok ? expf(qk[r][x] * scale - ls[tt]) : 0.0f;
                    Ps[r * FL_BC + tt] = p;
                    dSs[r * FL_BC + tt] = ok ? p * (dp[r][x] - Ds[tt]) : 0.0f;
                }
            }
            __syncwarp();
            int tend = min(FL_BC, T - t0);
            for (int tt = 0; tt < tend; tt++) {
#pragma unroll
                for (int c = 0; c < HDC; c++) {
                    int   col = lane + 32 * c;
                    float o = col < hd ? dOs[tt * hdp + col] : 0.0f;
                    float q = col < hd ? Qs[tt * hdp + col] : 0.0f;
#pragma unroll
                    for (int r = 0; r < FL_ROWS; r++) {
                        dv[r][c] = fmaf(Ps[r * FL_BC + tt], o, dv[r][c]);
                        dk[r][c] = fmaf(dSs[r * FL_BC + tt], q, dk[r][c]);
                    }
                }
            }
            __syncwarp();
        }
    }
#pragma unroll
    for (int r = 0; r < FL_ROWS; r++) {
        int s = s0 + warp * FL_ROWS + r;
        if (s >= T)
            continue;
        float *o = dqkv + ((size_t)b * T + s) * W;
#pragma unroll
        for (int c = 0; c < HDC; c++) {
            int col = lane + 32 * c;
            if (col < hd) {
                o[(size_t)(H + kv) * hd + col] = dk[r][c] * scale;
                o[(size_t)(H + KV + kv) * hd + col] = dv[r][c];
            }
        }
    }
}

// dq of 32 queries of head h
template <int HDC>
__global__ void __launch_bounds__(FL_THREADS)
    k_flash_dq(float *dqkv, const float *qkv, const float *dheads, const float *lse,
               const float *D, int T, int H, int KV, int hd, float scale) {
    extern __shared__ float sm[];
    int    hdp = hd + 1, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int    t0 = blockIdx.x * FL_BR, h = blockIdx.y, b = blockIdx.z, kv = h / (H / KV);
    int    W = (H + 2 * KV) * hd;
    float *Qs = sm, *dOs = Qs + FL_BR * hdp, *Ks = dOs + FL_BR * hdp, *Vs = Ks + FL_BC * hdp;
    float *dSs = Vs + FL_BC * hdp + warp * FL_ROWS * FL_BC;
    const float *row0 = qkv + (size_t)b * T * W;
    fl_load(Qs, row0 + (size_t)t0 * W + (size_t)h * hd, W, FL_BR, T - t0, hd, hdp);
    fl_load(dOs, dheads + ((size_t)b * T + t0) * H * hd + (size_t)h * hd, (size_t)H * hd, FL_BR,
            T - t0, hd, hdp);
    float lr[FL_ROWS], Dr[FL_ROWS], dq[FL_ROWS][HDC];
#pragma unroll
    for (int r = 0; r < FL_ROWS; r++) {
        int    t = t0 + warp * FL_ROWS + r;
        size_t x = ((size_t)b * H + h) * T + t;
        lr[r] = t < T ? lse[x] : 0.0f;
        Dr[r] = t < T ? D[x] : 0.0f;
#pragma unroll
        for (int c = 0; c < HDC; c++)
            dq[r][c] = 0.0f;
    }
    int tlast = min(T, t0 + FL_BR) - 1;
    for (int s0 = 0; s0 <= tlast; s0 += FL_BC) {
        __syncthreads();
        fl_load(Ks, row0 + (size_t)s0 * W + (size_t)(H + kv) * hd, W, FL_BC, T - s0, hd, hdp);
        fl_load(Vs, row0 + (size_t)s0 * W + (size_t)(H + KV + kv) * hd, W, FL_BC, T - s0, hd,
                hdp);
        __syncthreads();
        float qk[FL_ROWS][2], dp[FL_ROWS][2];
#pragma unroll
        for (int r = 0; r < FL_ROWS; r++)
            qk[r][0] = qk[r][1] = dp[r][0] = dp[r][1] = 0.0f;
        for (int i = 0; i < hd; i++) {
            float k0 = Ks[lane * hdp + i], k1 = Ks[(lane + 32) * hdp + i];
            float v0 = Vs[lane * hdp + i], v1 = Vs[(lane + 32) * hdp + i];
#pragma unroll
            for (int r = 0; r < FL_ROWS; r++) {
                float q = Qs[(warp * FL_ROWS + r) * hdp + i];
                float o = dOs[(warp * FL_ROWS + r) * hdp + i];
                qk[r][0] = fmaf(q, k0, qk[r][0]), qk[r][1] = fmaf(q, k1, qk[r][1]);
                dp[r][0] = fmaf(o, v0, dp[r][0]), dp[r][1] = fmaf(o, v1, dp[r][1]);
            }
        }
#pragma unroll
        for (int r = 0; r < FL_ROWS; r++) {
            int t = t0 + warp * FL_ROWS + r;
#pragma unroll
            for (int x = 0; x < 2; x++) {
                int  ss = lane + 32 * x, s = s0 + ss;
                bool ok = t < T && s <= t;
                float p = ok ? expf(qk[r][x] * scale - lr[r]) : 0.0f;
                dSs[r * FL_BC + ss] = ok ? p * (dp[r][x] - Dr[r]) : 0.0f;
            }
        }
        __syncwarp();
        int send = min(FL_BC, tlast - s0 + 1);
        for (int s = 0; s < send; s++) {
#pragma unroll
            for (int c = 0; c < HDC; c++) {
                int   col = lane + 32 * c;
                float k = col < hd ? Ks[s * hdp + col] : 0.0f;
#pragma unroll
                for (int r = 0; r < FL_ROWS; r++)
                    dq[r][c] = fmaf(dSs[r * FL_BC + s], k, dq[r][c]);
            }
        }
        __syncwarp();
    }
#pragma unroll
    for (int r = 0; r < FL_ROWS; r++) {
        int t = t0 + warp * FL_ROWS + r;
        if (t >= T)
            continue;
        float *o = dqkv + ((size_t)b * T + t) * W + (size_t)h * hd;
#pragma unroll
        for (int c = 0; c < HDC; c++)
            if (lane + 32 * c < hd)
                o[lane + 32 * c] = dq[r][c] * scale;
    }
}

// ----------------------------------------------------------------------------
// launches: the kernel instance for ⌈hd/32⌉ columns per lane

template <int HDC> static bool fl_launch_fwd(const molt_exec *ex, float *heads, float *lse,
                                             const float *qkv, int ld, int B, int T, int H,
                                             int KV, int hd) {
    size_t sm = sizeof(float) * ((size_t)(FL_BR + 2 * FL_BC) * (hd + 1) + 4 * FL_ROWS * FL_BC);
    if (!cu_smem_fits((const void *)k_flash_fwd<HDC>, sm)) {
        CU_FAIL("flash attention: shared memory");
        return false;
    }
    dim3 grid((unsigned)((T + FL_BR - 1) / FL_BR), (unsigned)H, (unsigned)B);
    k_flash_fwd<HDC><<<grid, FL_THREADS, sm, cu_stream(ex)>>>(heads, lse, qkv, ld, T, H, KV, hd,
                                                             1.0f / sqrtf((float)hd));
    return CU_LAUNCHED("k_flash_fwd");
}

template <int HDC> static void fl_launch_bwd(const molt_exec *ex, float *dqkv, const float *dheads,
                                             const float *qkv, const float *lse, const float *D,
                                             int B, int T, int H, int KV, int hd) {
    float  scale = 1.0f / sqrtf((float)hd);
    size_t hp = (size_t)hd + 1;
    size_t s1 = sizeof(float) * ((2 * FL_BR + 2 * FL_BC) * hp + 2 * FL_BC +
                                 4 * 2 * FL_ROWS * FL_BC);
    size_t s2 = sizeof(float) * ((2 * FL_BR + 2 * FL_BC) * hp + 4 * FL_ROWS * FL_BC);
    if (!cu_smem_fits((const void *)k_flash_dkdv<HDC>, s1) ||
        !cu_smem_fits((const void *)k_flash_dq<HDC>, s2)) {
        CU_FAIL("flash attention backward: shared memory");
        return;
    }
    unsigned nt = (unsigned)((T + FL_BR - 1) / FL_BR);
    k_flash_dkdv<HDC><<<dim3(nt, (unsigned)KV, (unsigned)B), FL_THREADS, s1, cu_stream(ex)>>>(
        dqkv, qkv, dheads, lse, D, T, H, KV, hd, scale);
    CU_LAUNCHED("k_flash_dkdv");
    k_flash_dq<HDC><<<dim3(nt, (unsigned)H, (unsigned)B), FL_THREADS, s2, cu_stream(ex)>>>(
        dqkv, qkv, dheads, lse, D, T, H, KV, hd, scale);
    CU_LAUNCHED("k_flash_dq");
}

extern "C" void cuda_attn_flash_forward(const molt_exec *ex, float *heads, float *lse,
                                        const float *qkv, int ld, int B, int T, int H, int KV,
                                        int hd) {
    if (B <= 0 || T <= 0 || H <= 0)
        return;
    if (hd > FL_HD_MAX) {
        CU_FAIL("flash attention: head dim above 128");
        return;
    }
    if (fa_tc_forward(ex, heads, lse, qkv, ld, B, T, H, KV, hd))
        return; // the bf16 tensor-core kernels (attn_flash_tc.cu)
    int hdc = (hd + 31) / 32;
    if (hdc == 1)
        fl_launch_fwd<1>(ex, heads, lse, qkv, ld, B, T, H, KV, hd);
    else if (hdc == 2)
        fl_launch_fwd<2>(ex, heads, lse, qkv, ld, B, T, H, KV, hd);
    else if (hdc == 3)
        fl_launch_fwd<3>(ex, heads, lse, qkv, ld, B, T, H, KV, hd);
    else
        fl_launch_fwd<4>(ex, heads, lse, qkv, ld, B, T, H, KV, hd);
}

extern "C" void cuda_attn_flash_backward(const molt_exec *ex, float *dqkv, const float *dheads,
                                         const float *qkv, const float *heads, const float *lse,
                                         int B, int T, int H, int KV, int hd, float *work) {
    if (B <= 0 || T <= 0 || H <= 0)
        return;
    if (hd > FL_HD_MAX) {
        CU_FAIL("flash attention: head dim above 128");
        return;
    }
    float *D = work; // [B, H, T] (the contract's work holds at least that)
    size_t rows = (size_t)B * T * H;
    k_flash_dot<<<cu_blocks(rows * 32, 256), 256, 0, cu_stream(ex)>>>(D, dheads, heads, B, T, H,
                                                                      hd);
    CU_LAUNCHED("k_flash_dot");
    if (fa_tc_backward(ex, dqkv, dheads, qkv, lse, D, work + rows, B, T, H, KV, hd))
        return; // the bf16 tensor-core kernels (attn_flash_tc.cu)
    int hdc = (hd + 31) / 32;
    if (hdc == 1)
        fl_launch_bwd<1>(ex, dqkv, dheads, qkv, lse, D, B, T, H, KV, hd);
    else if (hdc == 2)
        fl_launch_bwd<2>(ex, dqkv, dheads, qkv, lse, D, B, T, H, KV, hd);
    else if (hdc == 3)
        fl_launch_bwd<3>(ex, dqkv, dheads, qkv, lse, D, B, T, H, KV, hd);
    else
        fl_launch_bwd<4>(ex, dqkv, dheads, qkv, lse, D, B, T, H, KV, hd);
}
