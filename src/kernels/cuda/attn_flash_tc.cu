/*
 * attn_flash_tc.cu — the bf16 tensor-core path of flash attention for
 * training (kernels/attn.h: k_attn_flash_forward / k_attn_flash_backward),
 * taken by attn_flash.cu for an exec with MOLT_EXEC_BF16 and a head dim hd
 * that is a multiple of 16, ≤ 128 (fa_tc_ok).
 *
 * FlashAttention-2 in mma.sync (m16n8k16, bf16 inputs, fp32 accumulators):
 * a block is 4 warps over a tile of 64 rows (queries in the forward and dq,
 * keys in dk/dv); a warp owns 16 of them. q, k, v and dO come from fp32 in
 * global memory and are rounded to nearest bf16 on their way into shared
 * memory ([64][hd + 8]: the 16-byte pad puts the 8 rows an ldmatrix or a
 * fragment load touches on distinct banks). The scores of a warp's 16 rows
 * against a 64-key tile stay in registers (8 n-tiles of C fragments); the
 * softmax works on them there, and a C fragment pair is an A fragment of the
 * next product once rounded to bf16 (P·v, dS·k, Pᵀ·dO, dSᵀ·q), so neither S
 * nor P ever touches shared memory. B operands stored "n-major" (k and v rows
 * for S = q·kᵀ, dP = dO·vᵀ) load as 32-bit words; the "k-major" ones (v for
 * P·v, k for dS·k, dO and q for the dk/dv products) by ldmatrix.trans.
 *
 * Fragment layouts (PTX ISA, mma.m16n8k16; g = lane/4, c = lane%4):
 *   A 16×16: a0 (g, 2c..2c+1)  a1 (g+8, 2c..)  a2 (g, 2c+8..)  a3 (g+8, 2c+8..)
 *   B 16×8:  b0 (k 2c..2c+1, n g)   b1 (k 2c+8..2c+9, n g)
 *   C 16×8:  c0,c1 (g, 2c..2c+1)    c2,c3 (g+8, 2c..2c+1)
 * so the C fragments of n-tiles 2j and 2j+1 are, packed in pairs, the A
 * fragment of k-step j.
 *
 *   forward  block (64 queries, h, b), heaviest query tiles first; key tiles
 *            up to the diagonal: online softmax in base 2 (scores · hd^-½ ·
 *            log2 e), o ← o·2^{m−m'} + P·v; lse = (m + log2 l)·ln 2
 *   dk, dv   block (64 keys, h, b): query tiles from the diagonal on;
 *            Sᵀ = k·qᵀ, dPᵀ = v·dOᵀ, P = 2^{S' − lse'}, dS = P∘(dP − D);
 *            dv += Pᵀ·dO, dk += dSᵀ·q. With grouped kv heads (H > KV) each
 *            query head writes its own dk, dv into work and a last kernel
 *            sums the group in head order (deterministic, no atomics).
 *   dq       block (64 queries, h, b): key tiles up to the diagonal,
 *            dq += dS·k
 * Every sum has a fixed order: results are deterministic run to run.
 */
#include "kernels/cuda/attn_flash_tc.cuh"
#include "kernels/cuda/common.cuh"

#include <cuda_bf16.h>
#include <stdint.h>

#define FA_ROWS    64 // rows of every tile (4 warps × 16)
#define FA_THREADS 128
#define FA_PAD     8 // bf16 per shared row of padding
#define FA_LOG2E   1.4426950408889634f
#define FA_LN2     0.6931471805599453f

typedef __nv_bfloat16 fa_bf16;

__device__ __forceinline__ uint32_t fa_pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); // .x (low half) = lo
    return *reinterpret_cast<uint32_t *>(&v);
}

__device__ __forceinline__ uint32_t fa_ld32(const fa_bf16 *p) {
    return *reinterpret_cast<const uint32_t *>(p);
}

// c += a·b (m16n8k16, bf16 in, fp32 accumulate)
__device__ __forceinline__ void fa_mma(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// four 8×8 bf16 matrices, transposed: lane l gives the address of row l%8 of
// matrix l/8; r[i] is the B fragment word of matrix i
__device__ __forceinline__ void fa_ldsm_t(uint32_t *r, const fa_bf16 *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

// 64 rows of HD fp32 columns (row stride ld) → bf16 shared [64][HD + FA_PAD];
// rows at or past `valid` are zeros. vec: src and ld allow float4 loads.
template <int HD>
__device__ __forceinline__ void fa_load(fa_bf16 *dst, const float *src, size_t ld, int valid,
                                        bool vec) {
    constexpr int HP = HD + FA_PAD, V = HD / 4;
    for (int e = threadIdx.x; e < FA_ROWS * V; e += FA_THREADS) {
        int    r = e / V, c = (e - r * V) * 4;
        float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (r < valid) {
            const float *s = src + (size_t)r * ld + c;
            x = vec ? *reinterpret_cast<const float4 *>(s) : make_float4(s[0], s[1], s[2], s[3]);
        }
        uint2 u = make_uint2(fa_pack(x.x, x.y), fa_pack(x.z, x.w));
        *reinterpret_cast<uint2 *>(dst + r * HP + c) = u;
    }
}

// the A fragment of rows r0..r0+15, columns k0..k0+15 of a shared tile
template <int HD>
__device__ __forceinline__ void fa_afrag(uint32_t *a, const fa_bf16 *S, int r0, int k0) {
    constexpr int  HP = HD + FA_PAD;
    int            lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const fa_bf16 *p = S + (r0 + g) * HP + k0 + 2 * c;
    a[0] = fa_ld32(p), a[1] = fa_ld32(p + 8 * HP), a[2] = fa_ld32(p + 8),
    a[3] = fa_ld32(p + 8 * HP + 8);
}

// acc[8][4] = A (16 rows from shared A at row r0) · Bᵀ over HD, B: a shared
// tile whose 64 rows are the n index (64 keys or queries)
template <int HD>
__device__ __forceinline__ void fa_abt(float (*acc)[4], const fa_bf16 *A, int r0,
                                       const fa_bf16 *B) {
    constexpr int HP = HD + FA_PAD;
    int           lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
#pragma unroll
    for (int n = 0; n < 8; n++)
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
#pragma unroll
    for (int k = 0; k < HD; k += 16) {
        uint32_t a[4];
        fa_afrag<HD>(a, A, r0, k);
#pragma unroll
        for (int n = 0; n < 8; n++) {
            const fa_bf16 *p = B + (n * 8 + g) * HP + k + 2 * c;
            fa_mma(acc[n], a, fa_ld32(p), fa_ld32(p + 8));
        }
    }
}

// out[HD/8][4] += P (16 × 64, C fragments p[8][4]) · B (shared [64][HD], row-major
// k × n), B's fragments by ldmatrix.trans
template <int HD>
__device__ __forceinline__ void fa_pb(float (*out)[4], float (*p)[4], const fa_bf16 *B) {
    constexpr int HP = HD + FA_PAD;
    int           lane = threadIdx.x & 31;
    int           lr = ((lane >> 3) & 1) * 8 + (lane & 7), lc = (lane >> 4) * 8;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        uint32_t a[4] = {fa_pack(p[2 * j][0], p[2 * j][1]), fa_pack(p[2 * j][2], p[2 * j][3]),
                         fa_pack(p[2 * j + 1][0], p[2 * j + 1][1]),
                         fa_pack(p[2 * j + 1][2], p[2 * j + 1][3])};
#pragma unroll
        for (int n = 0; n < HD / 8; n += 2) {
            uint32_t b[4];
            fa_ldsm_t(b, B + (j * 16 + lr) * HP + n * 8 + lc);
            fa_mma(out[n], a, b[0], b[1]);
            fa_mma(out[n + 1], a, b[2], b[3]);
        }
    }
}

// quad (4 lanes of a row) reductions
__device__ __forceinline__ float fa_qmax(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float fa_qsum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// rows r, r + 8 of 16 × HD fp32 fragments, times k, → out (row stride ld);
// rows at or past `valid` skipped
template <int HD>
__device__ __forceinline__ void fa_store(float *out, size_t ld, float (*acc)[4], int r,
                                         int valid, float k0, float k1) {
    int c = threadIdx.x & 3;
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
        if (r < valid)
            *reinterpret_cast<float2 *>(out + (size_t)r * ld + n * 8 + 2 * c) =
                make_float2(acc[n][0] * k0, acc[n][1] * k0);
        if (r + 8 < valid)
            *reinterpret_cast<float2 *>(out + (size_t)(r + 8) * ld + n * 8 + 2 * c) =
                make_float2(acc[n][2] * k1, acc[n][3] * k1);
    }
}

// ----------------------------------------------------------------------------
// forward

template <int HD>
__global__ void __launch_bounds__(FA_THREADS)
    k_fa_fwd(float *heads, float *lse, const float *qkv, int ld, int T, int H, int KV, float sl2,
             bool vec) {
    constexpr int HP = HD + FA_PAD;
    extern __shared__ __align__(16) unsigned char fa_sm[];
    fa_bf16 *Qs = (fa_bf16 *)fa_sm, *Ks = Qs + FA_ROWS * HP, *Vs = Ks + FA_ROWS * HP;
    int      warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    int      qt = gridDim.x - 1 - blockIdx.x; // the longest rows first
    int      t0 = qt * FA_ROWS, h = blockIdx.y, b = blockIdx.z, kv = h / (H / KV);
    const float *base = qkv + (size_t)b * T * ld;
    fa_load<HD>(Qs, base + (size_t)t0 * ld + (size_t)h * HD, ld, T - t0, vec);
    int   r0 = t0 + warp * 16 + g, r1 = r0 + 8; // this lane's two query rows
    float o[HD / 8][4], m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
#pragma unroll
    for (int n = 0; n < HD / 8; n++)
        o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    for (int j = 0; j <= qt; j++) {
        int s0 = j * FA_ROWS;
        __syncthreads(); // the previous tile is consumed
        fa_load<HD>(Ks, base + (size_t)s0 * ld + (size_t)(H + kv) * HD, ld, T - s0, vec);
        fa_load<HD>(Vs, base + (size_t)s0 * ld + (size_t)(H + KV + kv) * HD, ld, T - s0, vec);
        __syncthreads();
        float s[8][4];
        fa_abt<HD>(s, Qs, warp * 16, Ks);
        float x0 = -INFINITY, x1 = -INFINITY;
#pragma unroll
        for (int n = 0; n < 8; n++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int key = s0 + n * 8 + 2 * c + (e & 1);
                // keys past a row (the diagonal tile; keys ≥ T lie past every row < T)
                s[n][e] = key <= (e < 2 ? r0 : r1) ? s[n][e] * sl2 : -INFINITY;
            }
            x0 = fmaxf(x0, fmaxf(s[n][0], s[n][1]));
            x1 = fmaxf(x1, fmaxf(s[n][2], s[n][3]));
        }
        // every row sees key s0 ≤ t0 ≤ r: the new maxima are finite
        float mn0 = fmaxf(m0, fa_qmax(x0)), mn1 = fmaxf(m1, fa_qmax(x1));
        float a0 = exp2f(m0 - mn0), a1 = exp2f(m1 - mn1); // m = −∞ first: 0
        m0 = mn0, m1 = mn1;
        float p0 = 0.0f, p1 = 0.0f;
#pragma unroll
        for (int n = 0; n < 8; n++) {
            s[n][0] = exp2f(s[n][0] - m0), s[n][1] = exp2f(s[n][1] - m0);
            s[n][2] = exp2f(s[n][2] - m1), s[n][3] = exp2f(s[n][3] - m1);
            p0 += s[n][0] + s[n][1], p1 += s[n][2] + s[n][3];
        }
        l0 = l0 * a0 + p0, l1 = l1 * a1 + p1; // this lane's share of the row sums
#pragma unroll
        for (int n = 0; n < HD / 8; n++)
            o[n][0] *= a0, o[n][1] *= a0, o[n][2] *= a1, o[n][3] *= a1;
        fa_pb<HD>(o, s, Vs);
    }
    l0 = fa_qsum(l0), l1 = fa_qsum(l1);
    fa_store<HD>(heads + (size_t)b * T * H * HD + (size_t)h * HD, (size_t)H * HD, o, r0, T,
                 1.0f / l0, 1.0f / l1);
    if (c == 0) {
        float *lr = lse + ((size_t)b * H + h) * T;
        if (r0 < T)
            lr[r0] = (m0 + log2f(l0)) * FA_LN2;
        if (r1 < T)
            lr[r1] = (m1 + log2f(l1)) * FA_LN2;
    }
}

// ----------------------------------------------------------------------------
// backward

// dk, dv of 64 keys for query head h (kv head h / (H/KV)): into columns h·hd..
// of dk, dv (row stride ldo)
template <int HD>
__global__ void __launch_bounds__(FA_THREADS)
    k_fa_dkdv(float *dk, float *dv, size_t ldo, const float *qkv, const float *dO,
              const float *lse, const float *D, int T, int H, int KV, float sl2, float scale,
              bool vec) {
    constexpr int HP = HD + FA_PAD;
    extern __shared__ __align__(16) unsigned char fa_sm[];
    fa_bf16 *Ks = (fa_bf16 *)fa_sm, *Vs = Ks + FA_ROWS * HP, *Qs = Vs + FA_ROWS * HP;
    fa_bf16 *dOs = Qs + FA_ROWS * HP;
    float   *ls = (float *)(dOs + FA_ROWS * HP), *Ds = ls + FA_ROWS;
    int      warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    int      s0 = blockIdx.x * FA_ROWS, h = blockIdx.y, b = blockIdx.z, kv = h / (H / KV);
    size_t   W = (size_t)(H + 2 * KV) * HD;
    const float *base = qkv + (size_t)b * T * W;
    const float *lr = lse + ((size_t)b * H + h) * T, *Dr = D + ((size_t)b * H + h) * T;
    fa_load<HD>(Ks, base + (size_t)s0 * W + (size_t)(H + kv) * HD, W, T - s0, vec);
    fa_load<HD>(Vs, base + (size_t)s0 * W + (size_t)(H + KV + kv) * HD, W, T - s0, vec);
    int   k0 = s0 + warp * 16 + g, k1 = k0 + 8; // this lane's two key rows
    float gk[HD / 8][4], gv[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            gk[n][e] = gv[n][e] = 0.0f;
    for (int t0 = s0; t0 < T; t0 += FA_ROWS) {
        __syncthreads();
        fa_load<HD>(Qs, base + (size_t)t0 * W + (size_t)h * HD, W, T - t0, vec);
        fa_load<HD>(dOs, dO + ((size_t)b * T + t0) * H * HD + (size_t)h * HD, (size_t)H * HD,
                    T - t0, vec);
        for (int e = threadIdx.x; e < FA_ROWS; e += FA_THREADS) {
            ls[e] = t0 + e < T ? lr[t0 + e] * FA_LOG2E : 0.0f;
            Ds[e] = t0 + e < T ? Dr[t0 + e] : 0.0f;
        }
        __syncthreads();
        float st[8][4], dp[8][4]; // Sᵀ = k·qᵀ and dPᵀ = v·dOᵀ (keys × queries)
        fa_abt<HD>(st, Ks, warp * 16, Qs);
        fa_abt<HD>(dp, Vs, warp * 16, dOs);
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int   q = n * 8 + 2 * c + (e & 1), t = t0 + q;
                bool  ok = t < T && t >= (e < 2 ? k0 : k1);
                float p = ok ? exp2f(st[n][e] * sl2 - ls[q]) : 0.0f;
                st[n][e] = p;
                dp[n][e] = ok ? p * (dp[n][e] - Ds[q]) : 0.0f;
            }
        fa_pb<HD>(gv, st, dOs); // dv += Pᵀ·dO
        fa_pb<HD>(gk, dp, Qs);  // dk += dSᵀ·q
    }
    fa_store<HD>(dk + (size_t)b * T * ldo + (size_t)h * HD, ldo, gk, k0, T, scale, scale);
    fa_store<HD>(dv + (size_t)b * T * ldo + (size_t)h * HD, ldo, gv, k0, T, 1.0f, 1.0f);
}

// dq of 64 queries of head h
template <int HD>
__global__ void __launch_bounds__(FA_THREADS)
    k_fa_dq(float *dqkv, const float *qkv, const float *dO, const float *lse, const float *D,
            int T, int H, int KV, float sl2, float scale, bool vec) {
    constexpr int HP = HD + FA_PAD;
    extern __shared__ __align__(16) unsigned char fa_sm[];
    fa_bf16 *Qs = (fa_bf16 *)fa_sm, *dOs = Qs + FA_ROWS * HP, *Ks = dOs + FA_ROWS * HP;
    fa_bf16 *Vs = Ks + FA_ROWS * HP;
    int      warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    int      qt = gridDim.x - 1 - blockIdx.x;
    int      t0 = qt * FA_ROWS, h = blockIdx.y, b = blockIdx.z, kv = h / (H / KV);
    size_t   W = (size_t)(H + 2 * KV) * HD;
    const float *base = qkv + (size_t)b * T * W;
    fa_load<HD>(Qs, base + (size_t)t0 * W + (size_t)h * HD, W, T - t0, vec);
    fa_load<HD>(dOs, dO + ((size_t)b * T + t0) * H * HD + (size_t)h * HD, (size_t)H * HD, T - t0,
                vec);
    int    r0 = t0 + warp * 16 + g, r1 = r0 + 8;
    size_t x = ((size_t)b * H + h) * T;
    float  l0 = r0 < T ? lse[x + r0] * FA_LOG2E : 0.0f, l1 = r1 < T ? lse[x + r1] * FA_LOG2E : 0.0f;
    float  D0 = r0 < T ? D[x + r0] : 0.0f, D1 = r1 < T ? D[x + r1] : 0.0f;
    float  gq[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++)
        gq[n][0] = gq[n][1] = gq[n][2] = gq[n][3] = 0.0f;
    for (int j = 0; j <= qt; j++) {
        int s0 = j * FA_ROWS;
        __syncthreads();
        fa_load<HD>(Ks, base + (size_t)s0 * W + (size_t)(H + kv) * HD, W, T - s0, vec);
        fa_load<HD>(Vs, base + (size_t)s0 * W + (size_t)(H + KV + kv) * HD, W, T - s0, vec);
        __syncthreads();
        float s[8][4], dp[8][4];
        fa_abt<HD>(s, Qs, warp * 16, Ks);
        fa_abt<HD>(dp, dOs, warp * 16, Vs);
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int   key = s0 + n * 8 + 2 * c + (e & 1), r = e < 2 ? r0 : r1;
                bool  ok = r < T && key <= r;
                float p = ok ? exp2f(s[n][e] * sl2 - (e < 2 ? l0 : l1)) : 0.0f;
                s[n][e] = ok ? p * (dp[n][e] - (e < 2 ? D0 : D1)) : 0.0f;
            }
        fa_pb<HD>(gq, s, Ks); // dq += dS·k
    }
    fa_store<HD>(dqkv + (size_t)b * T * W + (size_t)h * HD, W, gq, r0, T, scale, scale);
}

// dqkv's k and v columns of kv head kv = Σ over its group's query heads, in
// head order, of the per-head dk, dv (dkh, dvh [B·T, H·hd])
__global__ void k_fa_group_sum(float *dqkv, const float *dkh, const float *dvh, int B, int T,
                               int H, int KV, int hd) {
    size_t n = (size_t)B * T * KV * hd, W = (size_t)(H + 2 * KV) * hd;
    int    grp = H / KV;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (size_t)gridDim.x * blockDim.x) {
        size_t row = e / ((size_t)KV * hd), col = e - row * KV * hd; // col = kv·hd + i
        size_t kv = col / hd, i = col - kv * hd;
        const float *pk = dkh + row * H * hd + kv * grp * hd + i;
        const float *pv = dvh + row * H * hd + kv * grp * hd + i;
        float        sk = 0.0f, sv = 0.0f;
        for (int gi = 0; gi < grp; gi++)
            sk += pk[(size_t)gi * hd], sv += pv[(size_t)gi * hd];
        dqkv[row * W + (size_t)H * hd + col] = sk;
        dqkv[row * W + (size_t)(H + KV) * hd + col] = sv;
    }
}

// ----------------------------------------------------------------------------
// launches

static size_t fa_tiles(int n, int hd) {
    return (size_t)n * FA_ROWS * (hd + FA_PAD) * sizeof(fa_bf16);
}

static bool fa_aligned(const void *p) { return ((uintptr_t)p & 15) == 0; }

template <int HD> static void fa_forward(const molt_exec *ex, float *heads, float *lse,
                                         const float *qkv, int ld, int B, int T, int H, int KV) {
    size_t sm = fa_tiles(3, HD);
    if (!cu_smem_fits((const void *)k_fa_fwd<HD>, sm)) {
        CU_FAIL("flash attention (bf16): shared memory");
        return;
    }
    bool vec = ld % 4 == 0 && fa_aligned(qkv);
    dim3 grid((unsigned)((T + FA_ROWS - 1) / FA_ROWS), (unsigned)H, (unsigned)B);
    k_fa_fwd<HD><<<grid, FA_THREADS, sm, cu_stream(ex)>>>(heads, lse, qkv, ld, T, H, KV,
                                                          FA_LOG2E / sqrtf((float)HD), vec);
    CU_LAUNCHED("k_fa_fwd");
}

template <int HD> static void fa_backward(const molt_exec *ex, float *dqkv, const float *dO,
                                          const float *qkv, const float *lse, const float *D,
                                          float *work, int B, int T, int H, int KV) {
    float  scale = 1.0f / sqrtf((float)HD), sl2 = FA_LOG2E * scale;
    size_t s1 = fa_tiles(4, HD) + 2 * FA_ROWS * sizeof(float), s2 = fa_tiles(4, HD);
    if (!cu_smem_fits((const void *)k_fa_dkdv<HD>, s1) ||
        !cu_smem_fits((const void *)k_fa_dq<HD>, s2)) {
        CU_FAIL("flash attention backward (bf16): shared memory");
        return;
    }
    bool     vec = fa_aligned(qkv) && fa_aligned(dO); // row strides are multiples of hd
    unsigned nt = (unsigned)((T + FA_ROWS - 1) / FA_ROWS);
    dim3     grid(nt, (unsigned)H, (unsigned)B);
    size_t   W = (size_t)(H + 2 * KV) * HD, BT = (size_t)B * T;
    if (H == KV) { // kv head h = query head h: straight into dqkv's k, v columns
        k_fa_dkdv<HD><<<grid, FA_THREADS, s1, cu_stream(ex)>>>(
            dqkv + (size_t)H * HD, dqkv + (size_t)(H + KV) * HD, W, qkv, dO, lse, D, T, H, KV,
            sl2, scale, vec);
        CU_LAUNCHED("k_fa_dkdv");
    } else { // per query head into work, then the group sums
        float *dkh = work, *dvh = work + BT * H * HD;
        k_fa_dkdv<HD><<<grid, FA_THREADS, s1, cu_stream(ex)>>>(
            dkh, dvh, (size_t)H * HD, qkv, dO, lse, D, T, H, KV, sl2, scale, vec);
        CU_LAUNCHED("k_fa_dkdv");
        k_fa_group_sum<<<cu_blocks(BT * KV * HD, 256), 256, 0, cu_stream(ex)>>>(dqkv, dkh, dvh, B,
                                                                                T, H, KV, HD);
        CU_LAUNCHED("k_fa_group_sum");
    }
    k_fa_dq<HD><<<grid, FA_THREADS, s2, cu_stream(ex)>>>(dqkv, qkv, dO, lse, D, T, H, KV, sl2,
                                                         scale, vec);
    CU_LAUNCHED("k_fa_dq");
}

// this path: MOLT_EXEC_BF16, hd a multiple of 16 in [16, 128]
static bool fa_tc_ok(const molt_exec *ex, int hd) {
    return (ex->flags & MOLT_EXEC_BF16) && hd % 16 == 0 && hd >= 16 && hd <= 128;
}

// 8-byte aligned outputs (float2 stores; row strides and head offsets are even)
static bool fa_out_ok(const void *p) { return ((uintptr_t)p & 7) == 0; }

#define FA_HD_CASES(X)                                                                             \
    X(16) X(32) X(48) X(64) X(80) X(96) X(112) X(128)

bool fa_tc_forward(const molt_exec *ex, float *heads, float *lse, const float *qkv, int ld,
                   int B, int T, int H, int KV, int hd) {
    if (!fa_tc_ok(ex, hd) || !fa_out_ok(heads))
        return false;
    switch (hd) {
#define FA_FWD(n)                                                                                  \
    case n: fa_forward<n>(ex, heads, lse, qkv, ld, B, T, H, KV); break;
        FA_HD_CASES(FA_FWD)
#undef FA_FWD
    default: return false;
    }
    return true;
}

bool fa_tc_backward(const molt_exec *ex, float *dqkv, const float *dheads, const float *qkv,
                    const float *lse, const float *D, float *work, int B, int T, int H, int KV,
                    int hd) {
    if (!fa_tc_ok(ex, hd) || !fa_out_ok(dqkv) || (H != KV && !fa_out_ok(work)))
        return false;
    switch (hd) {
#define FA_BWD(n)                                                                                  \
    case n: fa_backward<n>(ex, dqkv, dheads, qkv, lse, D, work, B, T, H, KV); break;
        FA_HD_CASES(FA_BWD)
#undef FA_BWD
    default: return false;
    }
    return true;
}
