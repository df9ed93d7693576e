/*
 * dense_skinny.cu — y[T,out] = beta·y + x[T,in]·W[out,in]ᵀ for few rows of x
 * (8 < T ≤ 64: batched decode) with bf16 W and x and fp32 sums, on tensor
 * cores (mma.sync m16n8k16). The batch-64 decode step's matrices are read at
 * memory speed here; cuBLAS's choices at these shapes read a 2048 × 2048
 * matrix at ~370 GB/s on an H100 (docs/GPU_NOTES.md, run 7).
 *
 * A block is 4 warps over 64 output rows (a warp owns 16: the A operand, W
 * straight from global memory), every token (NT n-tiles of 8: the B operand,
 * x staged in shared memory a 64-wide k step at a time by cp.async, double
 * buffered), and a range of k steps (split-K over gridDim.y when the rows
 * give few blocks). A dot product does not care about the order of k, so the
 * 16 k of one mma are taken as they suit 16-byte loads: lane (g, c) holds
 * W[row g][16c .. 16c + 16) of the step (and row g + 8), and mma j uses its
 * words 2j, 2j + 1 (k 16c + 4j .. 16c + 4j + 3) as the fragment's columns
 * {2c, 2c + 1} and {2c + 8, 2c + 9}; x's B fragment takes the same k from
 * the same place: every weight is one 16-byte streaming load, no shuffles.
 *
 * Sums: fp32, each k step's products in mma order, steps in order; the
 * split-K partials ([S][T][out] scratch) added in split order by a second
 * kernel. The split count depends only on (in, out): results are deterministic
 * and the same on every GPU. Rows past out and tokens past T are zeros in
 * and never stored.
 *
 * Opt-in (MOLT_SKINNY=1) until it has run on a GPU: written while the device
 * machine refused every start; test_backend_cuda turns it on.
 */
#include "kernels/cuda/common.cuh"

#include <stdlib.h>
#include <string.h>

#define SK_ROWS    64 // output rows a block
#define SK_K       64 // k a step
#define SK_LD      (SK_K + 8) // shared row: the 16-byte pad spreads a fragment load's rows over the banks
#define SK_THREADS 128

__device__ __forceinline__ void sk_mma(float *c, uint32_t a0, uint32_t a1, uint32_t a2,
                                       uint32_t a3, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void sk_cp16(void *smem, const void *gmem) {
    uint32_t s = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void sk_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void sk_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// word m (0..7) of the 16 bf16 in (lo, hi)
#define SK_W(lo, hi, m)                                                                            \
    ((m) == 0 ? (lo).x : (m) == 1 ? (lo).y : (m) == 2 ? (lo).z : (m) == 3 ? (lo).w                 \
     : (m) == 4 ? (hi).x : (m) == 5 ? (hi).y : (m) == 6 ? (hi).z : (hi).w)

template <int NT>
__global__ void __launch_bounds__(SK_THREADS)
    k_skinny(float *y, float *part, const __nv_bfloat16 *W, const __nv_bfloat16 *x, int T, int in,
             int out, int steps_per, float beta) {
    __shared__ __align__(16) __nv_bfloat16 xs[2][NT * 8][SK_LD];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const int row0 = blockIdx.x * SK_ROWS + warp * 16;
    const int nsteps = in / SK_K, s0 = blockIdx.y * steps_per,
              s1 = min(nsteps, s0 + steps_per);
    const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
    for (int e = threadIdx.x; e < 2 * NT * 8 * (SK_K / 8); e += SK_THREADS) { // tokens ≥ T: 0
        int b = e / (NT * 8 * (SK_K / 8)), r = e / (SK_K / 8) % (NT * 8), ch = e % (SK_K / 8);
        if (r >= T)
            *reinterpret_cast<uint4 *>(&xs[b][r][ch * 8]) = zero;
    }
    const uint4 *wa = row0 + g < out ? reinterpret_cast<const uint4 *>(W + (size_t)(row0 + g) * in)
                                     : nullptr;
    const uint4 *wb = row0 + g + 8 < out
                          ? reinterpret_cast<const uint4 *>(W + (size_t)(row0 + g + 8) * in)
                          : nullptr;
    float acc[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    uint4 cur[4], nxt[4];
    auto load_w = [&](uint4 *r, int s) {
        size_t o = (size_t)s * (SK_K / 8) + 2 * c;
        r[0] = wa ? __ldcs(wa + o) : zero;
        r[1] = wa ? __ldcs(wa + o + 1) : zero;
        r[2] = wb ? __ldcs(wb + o) : zero;
        r[3] = wb ? __ldcs(wb + o + 1) : zero;
    };
    auto load_x = [&](int b, int s) {
        for (int e = threadIdx.x; e < T * (SK_K / 8); e += SK_THREADS) {
            int r = e / (SK_K / 8), ch = e % (SK_K / 8);
            sk_cp16(&xs[b][r][ch * 8], x + (size_t)r * in + (size_t)s * SK_K + ch * 8);
        }
        sk_commit();
    };
    if (s0 < s1) {
        load_x(0, s0);
        load_w(cur, s0);
    }
    for (int s = s0; s < s1; s++) {
        int b = (s - s0) & 1;
        if (s + 1 < s1) {
            load_x(b ^ 1, s + 1);
            load_w(nxt, s + 1);
            sk_wait<1>();
        } else
            sk_wait<0>();
        __syncthreads();
#pragma unroll
        for (int n = 0; n < NT; n++) {
            const uint4 *xp = reinterpret_cast<const uint4 *>(&xs[b][n * 8 + g][16 * c]);
            uint4        v0 = xp[0], v1 = xp[1];
#pragma unroll
            for (int j = 0; j < 4; j++)
                sk_mma(acc[n], SK_W(cur[0], cur[1], 2 * j), SK_W(cur[2], cur[3], 2 * j),
                       SK_W(cur[0], cur[1], 2 * j + 1), SK_W(cur[2], cur[3], 2 * j + 1),
                       SK_W(v0, v1, 2 * j), SK_W(v0, v1, 2 * j + 1));
        }
        __syncthreads(); // buffer b is refilled two steps on
#pragma unroll
        for (int k = 0; k < 4; k++)
            cur[k] = nxt[k];
    }
    float *dst = part ? part + (size_t)blockIdx.y * T * out : y;
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int q = 0; q < 4; q++) {
            int t = n * 8 + 2 * c + (q & 1), o = row0 + g + (q >> 1) * 8;
            if (t < T && o < out) {
                size_t i = (size_t)t * out + o;
                dst[i] = part || beta == 0.0f ? acc[n][q] : y[i] + acc[n][q];
            }
        }
}

// y[i] = (beta ? y[i] : 0) + Σ_s part[s][i], s in order
__global__ void k_skinny_join(float *y, const float *part, size_t n, int S, float beta) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = part[i];
        for (int s = 1; s < S; s++)
            v += part[(size_t)s * n + i];
        y[i] = beta != 0.0f ? y[i] + v : v;
    }
}

template <int NT>
static void launch(const molt_exec *ex, dim3 grid, float *y, float *part, const __nv_bfloat16 *W,
                   const __nv_bfloat16 *x, int T, int in, int out, int per, float beta) {
    k_skinny<NT><<<grid, SK_THREADS, 0, cu_stream(ex)>>>(y, part, W, x, T, in, out, per, beta);
    CU_LAUNCHED("k_skinny");
}

bool cu_gemm_skinny(const molt_exec *ex, float *y, const void *W, const void *x, int T, int in,
                    int out, float beta) {
    static int env = -1; // MOLT_SKINNY=1: on (opt-in until it has run on a GPU)
    if (env < 0) {
        const char *e = getenv("MOLT_SKINNY");
        env = e && !strcmp(e, "1");
    }
    if (!env || T <= 8 || T > 64 || in % SK_K || out <= 0 || (uintptr_t)W % 16 ||
        (uintptr_t)x % 16 || (beta != 0.0f && beta != 1.0f))
        return false;
    int bx = (out + SK_ROWS - 1) / SK_ROWS, nsteps = in / SK_K;
    int S = 256 / bx; // ~256 blocks where the rows give fewer (a function of the shape only)
    S = S < 1 ? 1 : S > nsteps ? nsteps : S;
    int per = (nsteps + S - 1) / S;
    S = (nsteps + per - 1) / per;
    size_t n = (size_t)T * out;
    float *part = S > 1 ? (float *)cu_scratch(ex, sizeof(float) * S * n) : NULL;
    if (S > 1 && !part)
        return true; // recorded
    dim3                 grid((unsigned)bx, (unsigned)S);
    const __nv_bfloat16 *w = (const __nv_bfloat16 *)W, *xb = (const __nv_bfloat16 *)x;
    switch ((T + 7) / 8) {
    case 2: launch<2>(ex, grid, y, part, w, xb, T, in, out, per, beta); break;
    case 3: launch<3>(ex, grid, y, part, w, xb, T, in, out, per, beta); break;
    case 4: launch<4>(ex, grid, y, part, w, xb, T, in, out, per, beta); break;
    case 5: launch<5>(ex, grid, y, part, w, xb, T, in, out, per, beta); break;
    case 6: launch<6>(ex, grid, y, part, w, xb, T, in, out, per, beta); break;
    case 7: launch<7>(ex, grid, y, part, w, xb, T, in, out, per, beta); break;
    default: launch<8>(ex, grid, y, part, w, xb, T, in, out, per, beta); break;
    }
    if (part) {
        k_skinny_join<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(y, part, n, S, beta);
        CU_LAUNCHED("k_skinny_join");
        cu_scratch_free(ex, part);
    }
    return true;
}
