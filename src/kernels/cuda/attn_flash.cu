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
 * An exec with MOLT_EXEC_BF16 takes the bf16 tensor-core kernels at the end
 * of the file instead (k_tc_*).
 */
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

// the bf16 tensor-core path (below)
static bool tc_ok(const molt_exec *ex, int hd);
static void tc_forward_any(const molt_exec *ex, float *heads, float *lse, const float *qkv,
                           int ld, int B, int T, int H, int KV, int hd);
static void tc_backward_any(const molt_exec *ex, float *dqkv, const float *dheads,
                            const float *qkv, const float *lse, const float *D, int B, int T,
                            int H, int KV, int hd);

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
    if (tc_ok(ex, hd)) {
        tc_forward_any(ex, heads, lse, qkv, ld, B, T, H, KV, hd);
        return;
    }
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
    if (tc_ok(ex, hd)) {
        tc_backward_any(ex, dqkv, dheads, qkv, lse, D, B, T, H, KV, hd);
        return;
    }
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

// ----------------------------------------------------------------------------
// bf16 tensor cores (an exec with MOLT_EXEC_BF16, hd a multiple of 16, ≤ 128):
// the same three passes with 64-row tiles; the tile products by WMMA
// (m16n16k16, bf16 inputs rounded to nearest from the fp32 q, k, v, dO, and
// from P / dS; fp32 accumulation). Each warp owns 16 rows of a tile; a tile's
// S = q·kᵀ (and dP = dO·vᵀ) goes through shared memory, where two lanes per
// row apply the softmax (exp(S·hd^-½ − lse), the causal mask) and write the
// bf16 P / dS the next product reads. The forward makes two passes over the
// keys (row max and sum first, then Σ P·v with P already normalised), so the
// output accumulators never need rescaling and stay in fragments.

#include <cuda_bf16.h>
#include <mma.h>

#define TC_T   64 // rows of every tile
#define TC_PAD 8  // bf16 row padding (16 bytes)
#define TC_SP  4  // fp32 row padding

namespace wm = nvcuda::wmma;
typedef wm::fragment<wm::matrix_a, 16, 16, 16, __nv_bfloat16, wm::row_major> tc_a;
typedef wm::fragment<wm::matrix_b, 16, 16, 16, __nv_bfloat16, wm::row_major> tc_br;
typedef wm::fragment<wm::matrix_b, 16, 16, 16, __nv_bfloat16, wm::col_major> tc_bc;
typedef wm::fragment<wm::accumulator, 16, 16, 16, float> tc_acc;

// TC_T rows of a head's columns (row stride ld, fp32) into bf16 smem [TC_T][hd + TC_PAD];
// rows at or past `valid` are zeros
__device__ __forceinline__ void tc_load(__nv_bfloat16 *dst, const float *src, size_t ld,
                                        int valid, int hd) {
    int hp = hd + TC_PAD;
    for (int e = threadIdx.x; e < TC_T * hd; e += blockDim.x) {
        int r = e / hd, i = e - r * hd;
        dst[r * hp + i] = __float2bfloat16_rn(r < valid ? src[(size_t)r * ld + i] : 0.0f);
    }
}

// S[16 rows of this warp][64] = A (rows w·16.., hd columns) · Bᵀ (B: 64 rows × hd,
// row-major, i.e. a col-major operand), into fp32 smem S (ld TC_T + TC_SP)
__device__ __forceinline__ void tc_abt(float *S, const __nv_bfloat16 *A, const __nv_bfloat16 *B,
                                       int hd, int warp) {
    int hp = hd + TC_PAD;
    for (int n = 0; n < TC_T / 16; n++) {
        tc_acc c;
        wm::fill_fragment(c, 0.0f);
        for (int k = 0; k < hd; k += 16) {
            tc_a  a;
            tc_bc b;
            wm::load_matrix_sync(a, A + warp * 16 * hp + k, hp);
            wm::load_matrix_sync(b, B + n * 16 * hp + k, hp);
            wm::mma_sync(c, a, b, c);
        }
        wm::store_matrix_sync(S + warp * 16 * (TC_T + TC_SP) + n * 16, c, TC_T + TC_SP,
                              wm::mem_row_major);
    }
}

// acc[n] (16 × hd of this warp, hd/16 fragments) += P (rows w·16.., 64 columns,
// bf16 smem ld TC_T + TC_PAD) · V (64 rows × hd, row-major)
template <int NF>
__device__ __forceinline__ void tc_pv(tc_acc *acc, const __nv_bfloat16 *P,
                                      const __nv_bfloat16 *V, int hd, int warp) {
    int hp = hd + TC_PAD;
    for (int k = 0; k < TC_T; k += 16) {
        tc_a a;
        wm::load_matrix_sync(a, P + warp * 16 * (TC_T + TC_PAD) + k, TC_T + TC_PAD);
#pragma unroll
        for (int n = 0; n < NF; n++) {
            tc_br b;
            wm::load_matrix_sync(b, V + k * hp + n * 16, hp);
            wm::mma_sync(acc[n], a, b, acc[n]);
        }
    }
}

// the fragments (16 × hd of this warp) → fp32 staging O [TC_T][hd + TC_SP]
template <int NF>
__device__ __forceinline__ void tc_stage(float *O, tc_acc *acc, int hd, int warp) {
#pragma unroll
    for (int n = 0; n < NF; n++)
        wm::store_matrix_sync(O + warp * 16 * (hd + TC_SP) + n * 16, acc[n], hd + TC_SP,
                              wm::mem_row_major);
}

template <int NF>
__global__ void __launch_bounds__(FL_THREADS)
    k_tc_fwd(float *heads, float *lse, const float *qkv, int ld, int T, int H, int KV, int hd,
             float scale) {
    extern __shared__ __align__(128) unsigned char tc_sm[];
    int   hp = hd + TC_PAD, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int   t0 = blockIdx.x * TC_T, h = blockIdx.y, b = blockIdx.z, kv = h / (H / KV);
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)tc_sm, *Ks = Qs + TC_T * hp, *Vs = Ks + TC_T * hp;
    __nv_bfloat16 *Ps = Vs + TC_T * hp;
    float *Ss = (float *)(Ps + TC_T * (TC_T + TC_PAD)), *Os = Ss + TC_T * (TC_T + TC_SP);
    const float *row0 = qkv + (size_t)b * T * ld;
    tc_load(Qs, row0 + (size_t)t0 * ld + (size_t)h * hd, ld, T - t0, hd);
    int   r = warp * 16 + (lane >> 1), half = lane & 1, t = t0 + r; // this lane's row
    float m = -INFINITY, l = 0.0f;
    int   tlast = min(T, t0 + TC_T) - 1;
    for (int pass = 0; pass < 2; pass++) {
        float lr = pass ? m + logf(l) : 0.0f; // the row's lse (pass 2)
        tc_acc acc[NF];
#pragma unroll
        for (int n = 0; n < NF; n++)
            wm::fill_fragment(acc[n], 0.0f);
        for (int s0 = 0; s0 <= tlast; s0 += TC_T) {
            __syncthreads();
            tc_load(Ks, row0 + (size_t)s0 * ld + (size_t)(H + kv) * hd, ld, T - s0, hd);
            if (pass)
                tc_load(Vs, row0 + (size_t)s0 * ld + (size_t)(H + KV + kv) * hd, ld, T - s0, hd);
            __syncthreads();
            tc_abt(Ss, Qs, Ks, hd, warp);
            __syncwarp();
            const float *sr = Ss + r * (TC_T + TC_SP) + half * 32;
            if (!pass) {
                float mx = -INFINITY;
                for (int j = 0; j < 32; j++)
                    if (s0 + half * 32 + j <= t)
                        mx = fmaxf(mx, sr[j] * scale);
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                float mn = fmaxf(m, mx), sum = 0.0f;
                if (mn != -INFINITY) {
                    for (int j = 0; j < 32; j++)
                        if (s0 + half * 32 + j <= t)
                            sum += expf(sr[j] * scale - mn);
                    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
                    l = l * expf(m - mn) + sum;
                    m = mn;
                }
            } else {
                __nv_bfloat16 *pr = Ps + r * (TC_T + TC_PAD) + half * 32;
                for (int j = 0; j < 32; j++)
                    pr[j] = __float2bfloat16_rn(
                        s0 + half * 32 + j <= t && t < T ? expf(sr[j] * scale - lr) : 0.0f);
                __syncwarp();
                tc_pv<NF>(acc, Ps, Vs, hd, warp);
            }
        }
        if (pass) {
            tc_stage<NF>(Os, acc, hd, warp);
            __syncwarp();
            for (int e = lane; e < 16 * hd; e += 32) {
                int rr = warp * 16 + e / hd, i = e % hd;
                if (t0 + rr < T)
                    heads[((size_t)b * T + t0 + rr) * H * hd + (size_t)h * hd + i] =
                        Os[rr * (hd + TC_SP) + i];
            }
            if (!half && t < T)
                lse[((size_t)b * H + h) * T + t] = lr;
        }
    }
}

// dk, dv of 64 keys (this warp: 16) of kv head kv, over the group's heads
template <int NF>
__global__ void __launch_bounds__(FL_THREADS)
    k_tc_dkdv(float *dqkv, const float *qkv, const float *dheads, const float *lse,
              const float *D, int T, int H, int KV, int hd, float scale) {
    extern __shared__ __align__(128) unsigned char tc_sm[];
    int hp = hd + TC_PAD, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, grp = H / KV;
    int s0 = blockIdx.x * TC_T, kv = blockIdx.y, b = blockIdx.z, W = (H + 2 * KV) * hd;
    __nv_bfloat16 *Ks = (__nv_bfloat16 *)tc_sm, *Vs = Ks + TC_T * hp, *Qs = Vs + TC_T * hp;
    __nv_bfloat16 *dOs = Qs + TC_T * hp, *Ps = dOs + TC_T * hp, *dSs = Ps + TC_T * (TC_T + TC_PAD);
    float *Ss = (float *)(dSs + TC_T * (TC_T + TC_PAD)), *dPs = Ss + TC_T * (TC_T + TC_SP);
    float *ls = dPs + TC_T * (TC_T + TC_SP), *Dsh = ls + TC_T;
    float *Os = Ss; // staging at the end (fits in Ss + dPs)
    const float *row0 = qkv + (size_t)b * T * W;
    tc_load(Ks, row0 + (size_t)s0 * W + (size_t)(H + kv) * hd, W, T - s0, hd);
    tc_load(Vs, row0 + (size_t)s0 * W + (size_t)(H + KV + kv) * hd, W, T - s0, hd);
    int    r = warp * 16 + (lane >> 1), half = lane & 1, s = s0 + r; // this lane's key row
    tc_acc dk[NF], dv[NF];
#pragma unroll
    for (int n = 0; n < NF; n++)
        wm::fill_fragment(dk[n], 0.0f), wm::fill_fragment(dv[n], 0.0f);
    for (int g = 0; g < grp; g++) {
        int h = kv * grp + g;
        for (int t0 = s0; t0 < T; t0 += TC_T) {
            __syncthreads();
            tc_load(Qs, row0 + (size_t)t0 * W + (size_t)h * hd, W, T - t0, hd);
            tc_load(dOs, dheads + ((size_t)b * T + t0) * H * hd + (size_t)h * hd, (size_t)H * hd,
                    T - t0, hd);
            for (int e = threadIdx.x; e < TC_T; e += blockDim.x) {
                size_t x = ((size_t)b * H + h) * T + t0 + e;
                ls[e] = t0 + e < T ? lse[x] : 0.0f;
                Dsh[e] = t0 + e < T ? D[x] : 0.0f;
            }
            __syncthreads();
            tc_abt(Ss, Ks, Qs, hd, warp);   // Sᵀ: keys × queries
            tc_abt(dPs, Vs, dOs, hd, warp); // dPᵀ = v·dOᵀ
            __syncwarp();
            const float *sr = Ss + r * (TC_T + TC_SP) + half * 32;
            const float *dr = dPs + r * (TC_T + TC_SP) + half * 32;
            __nv_bfloat16 *pr = Ps + r * (TC_T + TC_PAD) + half * 32;
            __nv_bfloat16 *qr = dSs + r * (TC_T + TC_PAD) + half * 32;
            for (int j = 0; j < 32; j++) {
                int   c = half * 32 + j, t = t0 + c;
                bool  ok = s < T && t < T && t >= s;
                float p = ok ? expf(sr[j] * scale - ls[c]) : 0.0f;
                pr[j] = __float2bfloat16_rn(p);
                qr[j] = __float2bfloat16_rn(ok ? p * (dr[j] - Dsh[c]) : 0.0f);
            }
            __syncwarp();
            tc_pv<NF>(dv, Ps, dOs, hd, warp); // dv += Pᵀ·dO
            tc_pv<NF>(dk, dSs, Qs, hd, warp); // dk += dSᵀ·q
        }
    }
    __syncthreads(); // Os aliases Ss / dPs of every warp
    tc_stage<NF>(Os, dk, hd, warp);
    __syncwarp();
    for (int e = lane; e < 16 * hd; e += 32) {
        int rr = warp * 16 + e / hd, i = e % hd;
        if (s0 + rr < T)
            dqkv[((size_t)b * T + s0 + rr) * W + (size_t)(H + kv) * hd + i] =
                Os[rr * (hd + TC_SP) + i] * scale;
    }
    __syncwarp();
    tc_stage<NF>(Os, dv, hd, warp);
    __syncwarp();
    for (int e = lane; e < 16 * hd; e += 32) {
        int rr = warp * 16 + e / hd, i = e % hd;
        if (s0 + rr < T)
            dqkv[((size_t)b * T + s0 + rr) * W + (size_t)(H + KV + kv) * hd + i] =
                Os[rr * (hd + TC_SP) + i];
    }
}

// dq of 64 queries (this warp: 16) of head h
template <int NF>
__global__ void __launch_bounds__(FL_THREADS)
    k_tc_dq(float *dqkv, const float *qkv, const float *dheads, const float *lse, const float *D,
            int T, int H, int KV, int hd, float scale) {
    extern __shared__ __align__(128) unsigned char tc_sm[];
    int hp = hd + TC_PAD, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int t0 = blockIdx.x * TC_T, h = blockIdx.y, b = blockIdx.z, kv = h / (H / KV);
    int W = (H + 2 * KV) * hd;
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)tc_sm, *dOs = Qs + TC_T * hp, *Ks = dOs + TC_T * hp;
    __nv_bfloat16 *Vs = Ks + TC_T * hp, *dSs = Vs + TC_T * hp;
    float *Ss = (float *)(dSs + TC_T * (TC_T + TC_PAD)), *dPs = Ss + TC_T * (TC_T + TC_SP);
    float *Os = Ss;
    const float *row0 = qkv + (size_t)b * T * W;
    tc_load(Qs, row0 + (size_t)t0 * W + (size_t)h * hd, W, T - t0, hd);
    tc_load(dOs, dheads + ((size_t)b * T + t0) * H * hd + (size_t)h * hd, (size_t)H * hd, T - t0,
            hd);
    int    r = warp * 16 + (lane >> 1), half = lane & 1, t = t0 + r;
    size_t x = ((size_t)b * H + h) * T + t;
    float  lr = t < T ? lse[x] : 0.0f, Dr = t < T ? D[x] : 0.0f;
    tc_acc dq[NF];
#pragma unroll
    for (int n = 0; n < NF; n++)
        wm::fill_fragment(dq[n], 0.0f);
    int tlast = min(T, t0 + TC_T) - 1;
    for (int s0 = 0; s0 <= tlast; s0 += TC_T) {
        __syncthreads();
        tc_load(Ks, row0 + (size_t)s0 * W + (size_t)(H + kv) * hd, W, T - s0, hd);
        tc_load(Vs, row0 + (size_t)s0 * W + (size_t)(H + KV + kv) * hd, W, T - s0, hd);
        __syncthreads();
        tc_abt(Ss, Qs, Ks, hd, warp);
        tc_abt(dPs, dOs, Vs, hd, warp);
        __syncwarp();
        const float *sr = Ss + r * (TC_T + TC_SP) + half * 32;
        const float *dr = dPs + r * (TC_T + TC_SP) + half * 32;
        __nv_bfloat16 *qr = dSs + r * (TC_T + TC_PAD) + half * 32;
        for (int j = 0; j < 32; j++) {
            bool  ok = t < T && s0 + half * 32 + j <= t;
            float p = ok ? expf(sr[j] * scale - lr) : 0.0f;
            qr[j] = __float2bfloat16_rn(ok ? p * (dr[j] - Dr) : 0.0f);
        }
        __syncwarp();
        tc_pv<NF>(dq, dSs, Ks, hd, warp); // dq += dS·k
    }
    __syncthreads();
    tc_stage<NF>(Os, dq, hd, warp);
    __syncwarp();
    for (int e = lane; e < 16 * hd; e += 32) {
        int rr = warp * 16 + e / hd, i = e % hd;
        if (t0 + rr < T)
            dqkv[((size_t)b * T + t0 + rr) * W + (size_t)h * hd + i] =
                Os[rr * (hd + TC_SP) + i] * scale;
    }
}

static size_t tc_bf(int rows, int cols) { return sizeof(__nv_bfloat16) * (size_t)rows * cols; }
static size_t tc_f(int rows, int cols) { return sizeof(float) * (size_t)rows * cols; }

template <int NF> static void tc_forward(const molt_exec *ex, float *heads, float *lse,
                                         const float *qkv, int ld, int B, int T, int H, int KV,
                                         int hd) {
    size_t sm = 3 * tc_bf(TC_T, hd + TC_PAD) + tc_bf(TC_T, TC_T + TC_PAD) +
                tc_f(TC_T, TC_T + TC_SP) + tc_f(TC_T, hd + TC_SP);
    if (!cu_smem_fits((const void *)k_tc_fwd<NF>, sm)) {
        CU_FAIL("flash attention (bf16): shared memory");
        return;
    }
    dim3 grid((unsigned)((T + TC_T - 1) / TC_T), (unsigned)H, (unsigned)B);
    k_tc_fwd<NF><<<grid, FL_THREADS, sm, cu_stream(ex)>>>(heads, lse, qkv, ld, T, H, KV, hd,
                                                         1.0f / sqrtf((float)hd));
    CU_LAUNCHED("k_tc_fwd");
}

template <int NF> static void tc_backward(const molt_exec *ex, float *dqkv, const float *dheads,
                                          const float *qkv, const float *lse, const float *D,
                                          int B, int T, int H, int KV, int hd) {
    float  scale = 1.0f / sqrtf((float)hd);
    size_t mid = 2 * tc_f(TC_T, TC_T + TC_SP); // Ss + dPs (the staging aliases them)
    size_t stage = tc_f(TC_T, hd + TC_SP);
    size_t s1 = 4 * tc_bf(TC_T, hd + TC_PAD) + 2 * tc_bf(TC_T, TC_T + TC_PAD) +
                (mid > stage ? mid : stage) + 2 * tc_f(1, TC_T);
    size_t s2 = 4 * tc_bf(TC_T, hd + TC_PAD) + tc_bf(TC_T, TC_T + TC_PAD) +
                (mid > stage ? mid : stage);
    if (!cu_smem_fits((const void *)k_tc_dkdv<NF>, s1) ||
        !cu_smem_fits((const void *)k_tc_dq<NF>, s2)) {
        CU_FAIL("flash attention backward (bf16): shared memory");
        return;
    }
    unsigned nt = (unsigned)((T + TC_T - 1) / TC_T);
    k_tc_dkdv<NF><<<dim3(nt, (unsigned)KV, (unsigned)B), FL_THREADS, s1, cu_stream(ex)>>>(
        dqkv, qkv, dheads, lse, D, T, H, KV, hd, scale);
    CU_LAUNCHED("k_tc_dkdv");
    k_tc_dq<NF><<<dim3(nt, (unsigned)H, (unsigned)B), FL_THREADS, s2, cu_stream(ex)>>>(
        dqkv, qkv, dheads, lse, D, T, H, KV, hd, scale);
    CU_LAUNCHED("k_tc_dq");
}

// true when the bf16 tensor-core path takes this call
static bool tc_ok(const molt_exec *ex, int hd) {
    return (ex->flags & MOLT_EXEC_BF16) && hd % 16 == 0 && hd >= 16 && hd <= FL_HD_MAX;
}

static void tc_forward_any(const molt_exec *ex, float *heads, float *lse, const float *qkv,
                           int ld, int B, int T, int H, int KV, int hd) {
    switch (hd / 16) {
    case 1: tc_forward<1>(ex, heads, lse, qkv, ld, B, T, H, KV, hd); break;
    case 2: tc_forward<2>(ex, heads, lse, qkv, ld, B, T, H, KV, hd); break;
    case 3: tc_forward<3>(ex, heads, lse, qkv, ld, B, T, H, KV, hd); break;
    case 4: tc_forward<4>(ex, heads, lse, qkv, ld, B, T, H, KV, hd); break;
    case 5: tc_forward<5>(ex, heads, lse, qkv, ld, B, T, H, KV, hd); break;
    case 6: tc_forward<6>(ex, heads, lse, qkv, ld, B, T, H, KV, hd); break;
    case 7: tc_forward<7>(ex, heads, lse, qkv, ld, B, T, H, KV, hd); break;
    default: tc_forward<8>(ex, heads, lse, qkv, ld, B, T, H, KV, hd); break;
    }
}

static void tc_backward_any(const molt_exec *ex, float *dqkv, const float *dheads,
                            const float *qkv, const float *lse, const float *D, int B, int T,
                            int H, int KV, int hd) {
    switch (hd / 16) {
    case 1: tc_backward<1>(ex, dqkv, dheads, qkv, lse, D, B, T, H, KV, hd); break;
    case 2: tc_backward<2>(ex, dqkv, dheads, qkv, lse, D, B, T, H, KV, hd); break;
    case 3: tc_backward<3>(ex, dqkv, dheads, qkv, lse, D, B, T, H, KV, hd); break;
    case 4: tc_backward<4>(ex, dqkv, dheads, qkv, lse, D, B, T, H, KV, hd); break;
    case 5: tc_backward<5>(ex, dqkv, dheads, qkv, lse, D, B, T, H, KV, hd); break;
    case 6: tc_backward<6>(ex, dqkv, dheads, qkv, lse, D, B, T, H, KV, hd); break;
    case 7: tc_backward<7>(ex, dqkv, dheads, qkv, lse, D, B, T, H, KV, hd); break;
    default: tc_backward<8>(ex, dqkv, dheads, qkv, lse, D, B, T, H, KV, hd); break;
    }
}
