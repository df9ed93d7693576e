/*
 * dense.cu — CUDA GEMM ops: matmul, matmul_w (typed weights) and
 * matmul_backward. Contracts in kernels.h / backward.h.
 *
 * Row-major y[T,out] = x[T,in]·W[out,in]ᵀ is, read column-major, yᵀ = Wᵀ·xᵀ:
 * one GEMM(OP_T, OP_N, out, T, in). Numerics: fp32 inputs, fp32
 * compute, no TF32 (the cuBLAS handle's default math mode, mem.cu), so the
 * results match the CPU oracle to fp32 rounding (~1e-6 relative; the order
 * of the sums differs, so not bit for bit). cuBLAS is deterministic for a
 * given GPU and library on one stream. An exec's MOLT_EXEC_TF32 / _BF16
 * trade that for tensor-core speed (gemm below).
 *
 * matmul_w with bf16 / f16 weights (fp32 x, fp32 accumulation, as the CPU):
 *   T ≤ 8 (decode)  one warp per output row reads W in its own type (half
 *                   the bytes of fp32; 16-byte loads when in % 8 == 0 and the
 *                   pointers are aligned) and keeps the T sums in registers
 *   T > 8, bf16     x is split into three bf16 parts (hi + mid + lo: 24
 *                   significant bits, the fp32 products) and one bf16
 *                   tensor-core GEMM over the 3T columns reads W once
 *                   (matmul_w_split); with MOLT_EXEC_BF16, x is rounded to
 *                   bf16 once and W goes to the bf16 GEMM as it is (what
 *                   rounding its widened copy would give)
 *   T > 8, f16      W is widened to fp32 in row blocks (≤ 16M elements of
 *                   stream-ordered scratch) and each block is one Sgemm
 *
 * MOLT_EXEC_BF16 operands (bf16.cu): W from the weight cache (converted once
 * until a memory op or AdamW writes it), activations converted per call with
 * a float4 kernel; matmul_backward rounds dy once for its dx and dW GEMMs.
 * Every operand is the round-to-nearest-even bf16 of the same fp32 values as
 * before the cache, so results keep their bits.
 */
#include "kernels/cuda/colsum.cuh"
#include "kernels/cuda/common.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

// y[t,o] = (accumulate ? y[t,o] : 0) + (bias ? bias[o] : 0)   (prepares beta = 1)
__global__ void k_bias_init(float *y, const float *bias, size_t T, size_t out, int accumulate) {
    size_t n = T * out;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float b = bias ? bias[i % out] : 0.0f;
        y[i] = accumulate ? y[i] + b : b;
    }
}

// Prepares y for y += x·Wᵀ: returns the GEMM's beta (0: y is only written)
static float prep_y(const molt_exec *ex, float *y, const float *bias, int T, int out,
                    int accumulate, int in) {
    if (!bias && (accumulate || in > 0))
        return accumulate ? 1.0f : 0.0f;
    size_t n = (size_t)T * out;
    k_bias_init<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(y, bias, T, out, accumulate);
    CU_LAUNCHED("k_bias_init");
    return 1.0f;
}

// ----------------------------------------------------------------------------
// one GEMM, column-major C[m,n] = op(A)·op(B) + beta·C (alpha 1) with A, B, C
// fp32 in memory. An exec with MOLT_EXEC_BF16 rounds A and B to bf16 (round
// to nearest even: bf16.cu; a weight operand from the bf16 weight cache, an
// activation into stream-ordered scratch) and runs the bf16 tensor cores with
// fp32 accumulation and output; otherwise cublasSgemm (fp32, or TF32 where the
// exec asks: the handle's math mode, mem.cu). A and B are contiguous
// (lda × its column count elements).

// a column-major operand of op(X)'s shape rows × cols stored with leading dim ld
static size_t op_elems(cublasOperation_t op, int rows, int cols, int ld) {
    return (size_t)ld * (size_t)(op == CUBLAS_OP_N ? cols : rows);
}

// the bf16 GEMM on operands already in bf16
static void gemm_bf16(const molt_exec *ex, cublasOperation_t oa, cublasOperation_t ob, int m,
                      int n, int k, const void *a, int lda, const void *b, int ldb, float beta,
                      float *C, int ldc) {
    const float    one = 1.0f;
    cublasHandle_t h = a && b ? cu_blas_lock(ex) : NULL;
    if (h) {
        CUBLAS(cublasGemmEx(h, oa, ob, m, n, k, &one, a, CUDA_R_16BF, lda, b, CUDA_R_16BF, ldb,
                            &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        cu_blas_unlock();
    }
}

// a_weight: A is a model weight (the bf16 weight cache may hold it)
static void gemm(const molt_exec *ex, cublasOperation_t oa, cublasOperation_t ob, int m, int n,
                 int k, const float *A, int lda, const float *B, int ldb, float beta, float *C,
                 int ldc, int a_weight) {
    const float one = 1.0f;
    if (!(ex->flags & MOLT_EXEC_BF16)) {
        cublasHandle_t h = cu_blas_lock(ex);
        if (h) {
            CUBLAS(cublasSgemm(h, oa, ob, m, n, k, &one, A, lda, B, ldb, &beta, C, ldc));
            cu_blas_unlock();
        }
        return;
    }
    size_t  na = op_elems(oa, m, k, lda);
    cu_bf16 a = a_weight ? cu_bf16_weight(ex, A, na) : cu_bf16_act(ex, A, na);
    cu_bf16 b = a.p ? cu_bf16_act(ex, B, op_elems(ob, k, n, ldb)) : cu_bf16{NULL, NULL};
    gemm_bf16(ex, oa, ob, m, n, k, a.p, lda, b.p, ldb, beta, C, ldc);
    cu_bf16_release(ex, &a);
    cu_bf16_release(ex, &b);
}

static void sgemm_tn(const molt_exec *ex, float *y, const float *x, const float *W, int T, int in,
                     int out, int ldy, float beta, int w_weight) {
    gemm(ex, CUBLAS_OP_T, CUBLAS_OP_N, out, T, in, W, in, x, in, beta, y, ldy, w_weight);
}

extern "C" void cuda_matmul(const molt_exec *ex, float *y, const float *x, const float *W,
                            const float *bias, int T, int in, int out, int accumulate) {
    if (T <= 0 || out <= 0)
        return;
    float beta = prep_y(ex, y, bias, T, out, accumulate, in);
    if (in > 0)
        sgemm_tn(ex, y, x, W, T, in, out, out, beta, 1);
}

// ----------------------------------------------------------------------------
// typed weights

__device__ __forceinline__ float wide(const uint16_t *w, size_t i, int bf16) {
    return bf16 ? __bfloat162float(__ushort_as_bfloat16(w[i]))
                : __half2float(__ushort_as_half(w[i]));
}

#define MW_TMAX 8 // the decode kernel's rows of x

// one warp per output row o: y[t,o] (+)= Σ_i x[t,i]·W[o,i], t < T ≤ MW_TMAX
// (any in and alignment; the aligned case is k_matvec_w16 below)
__global__ void k_matvec_w(float *y, const float *x, const uint16_t *W, int T, int in, int out,
                           int add, int bf16) {
    int o = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (o >= out)
        return;
    float        acc[MW_TMAX];
    const size_t row = (size_t)o * in;
#pragma unroll
    for (int t = 0; t < MW_TMAX; t++)
        acc[t] = 0.0f;
    for (int i = lane; i < in; i += 32) {
        float w = wide(W, row + i, bf16);
#pragma unroll
        for (int t = 0; t < MW_TMAX; t++)
            if (t < T)
                acc[t] += w * x[(size_t)t * in + i];
    }
#pragma unroll
    for (int t = 0; t < MW_TMAX; t++) {
        float s = acc[t];
        for (int k = 16; k > 0; k >>= 1)
            s += __shfl_down_sync(0xffffffffu, s, k);
        if (lane == 0 && t < T) {
            float *dst = y + (size_t)t * out + o;
            *dst = add ? *dst + s : s;
        }
    }
}

// The aligned decode kernel (in % 8 == 0, W and x 16-byte aligned): S warps per
// output row, 8/S rows per 256-thread block. The row's 16-byte chunks (8
// weights) go round-robin over its S·32 lanes, four chunks loaded before any
// is used (streaming loads: each weight is read once), so that enough bytes
// are in flight even when a matrix has few rows (out 2048: S = 4, 8192
// warps). Each warp's partial sums are reduced by shuffles, then a row's S
// partials are added in warp order: deterministic.
#define MW_UNROLL 4
// one 16-byte chunk's 8 weights widened, and their products with x[i .. i+8) summed in
// one fixed order (both decode kernels: the same order, the same bits)
__device__ __forceinline__ void mw_wide8(float *w, uint4 raw, int bf16) {
    const uint16_t *h = (const uint16_t *)&raw;
#pragma unroll
    for (int k = 0; k < 8; k++)
        w[k] = wide(h, k, bf16);
}
__device__ __forceinline__ float mw_dot8(const float *w, const float *xi) {
    float4 a = *(const float4 *)xi, b = *(const float4 *)(xi + 4);
    return w[0] * a.x + w[1] * a.y + w[2] * a.z + w[3] * a.w + w[4] * b.x + w[5] * b.y +
           w[6] * b.z + w[7] * b.w;
}
__device__ __forceinline__ void mw_chunk(float *acc, uint4 raw, const float *x, int T, int in,
                                         int i, int bf16) {
    float w[8];
    mw_wide8(w, raw, bf16);
#pragma unroll
    for (int t = 0; t < MW_TMAX; t++)
        if (t < T)
            acc[t] += mw_dot8(w, x + (size_t)t * in + i);
}

template <int S>
__global__ void __launch_bounds__(256)
    k_matvec_w16(float *y, const float *x, const uint16_t *W, int T, int in, int out, int add,
                 int bf16) {
    __shared__ float part[8][MW_TMAX];
    int   warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int   o = blockIdx.x * (8 / S) + warp / S, j = (warp % S) * 32 + lane;
    float acc[MW_TMAX];
#pragma unroll
    for (int t = 0; t < MW_TMAX; t++)
        acc[t] = 0.0f;
    if (o < out) {
        const uint4 *wr = (const uint4 *)(W + (size_t)o * in);
        int          nch = in / 8, c = j;
        for (; c + (MW_UNROLL - 1) * 32 * S < nch; c += MW_UNROLL * 32 * S) {
            uint4 raw[MW_UNROLL];
#pragma unroll
            for (int u = 0; u < MW_UNROLL; u++)
                raw[u] = __ldcs(wr + c + u * 32 * S);
#pragma unroll
            for (int u = 0; u < MW_UNROLL; u++)
                mw_chunk(acc, raw[u], x, T, in, (c + u * 32 * S) * 8, bf16);
        }
        for (; c < nch; c += 32 * S)
            mw_chunk(acc, __ldcs(wr + c), x, T, in, c * 8, bf16);
    }
#pragma unroll
    for (int t = 0; t < MW_TMAX; t++) {
        float s = acc[t];
        for (int k = 16; k > 0; k >>= 1)
            s += __shfl_down_sync(0xffffffffu, s, k);
        if (lane == 0)
            part[warp][t] = s;
    }
    __syncthreads();
    if (o < out && warp % S == 0 && lane < T) {
        float s = part[warp][lane];
        for (int k = 1; k < S; k++)
            s += part[warp + k][lane];
        float *dst = y + (size_t)lane * out + o;
        *dst = add ? *dst + s : s;
    }
}

// One row of x (batch-1 decode; MOLT_GEMV1=0 takes k_matvec_w16 instead): as k_matvec_w16
// with T = 1, but every lane issues up to MW1_LOADS chunk loads before using any (the tail
// predicated), so a decode row (in 2048 at S = 1: eight chunks a lane) is one round trip, not
// two rounds of four and a serial tail; one accumulator, no T loop (k_matvec_w16's U = 8 needs
// 200 registers for its eight x rows). Chunks are added in k_matvec_w16's order. Run 10 (H100):
// the Llamba-1B decode GEMVs at 2.2–3.1 TB/s (in_proj 19.2 → 15.2 µs, gate_up 32.2 → 26.0,
// down 17.5 → 10.7, head 198 → 168), batch-1 decode 427 → 546 tok/s.
#define MW1_LOADS 8
template <int S>
__global__ void __launch_bounds__(256, 2)
    k_matvec1_w16(float *y, const float *x, const uint16_t *W, int in, int out, int add,
                  int bf16) {
    __shared__ float part[8];
    int   warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int   o = blockIdx.x * (8 / S) + warp / S, j = (warp % S) * 32 + lane;
    float acc = 0.0f;
    if (o < out) {
        const uint4 *wr = (const uint4 *)(W + (size_t)o * in);
        int          nch = in / 8;
        for (int c = j; c < nch; c += MW1_LOADS * 32 * S) {
            uint4 raw[MW1_LOADS];
#pragma unroll
            for (int u = 0; u < MW1_LOADS; u++)
                raw[u] = c + u * 32 * S < nch ? __ldcs(wr + c + u * 32 * S) : uint4{};
#pragma unroll
            for (int u = 0; u < MW1_LOADS; u++) {
                int i = (c + u * 32 * S) * 8;
                if (i < in) {
                    float w[8];
                    mw_wide8(w, raw[u], bf16);
                    acc += mw_dot8(w, x + i);
                }
            }
        }
    }
    for (int k = 16; k > 0; k >>= 1)
        acc += __shfl_down_sync(0xffffffffu, acc, k);
    if (lane == 0)
        part[warp] = acc;
    __syncthreads();
    if (o < out && warp % S == 0 && lane == 0) {
        float s = part[warp];
        for (int k = 1; k < S; k++)
            s += part[warp + k];
        y[o] = add ? y[o] + s : s;
    }
}

static bool gemv1_on(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("MOLT_GEMV1");
        on = !(e && !strcmp(e, "0"));
    }
    return on;
}

template <int S>
static void matvec_w16(const molt_exec *ex, float *y, const float *x, const uint16_t *w, int T,
                       int in, int out, int add, int bf16) {
    unsigned blocks = (unsigned)((out + 8 / S - 1) / (8 / S));
    if (T == 1 && gemv1_on()) {
        k_matvec1_w16<S><<<blocks, 256, 0, cu_stream(ex)>>>(y, x, w, in, out, add, bf16);
        CU_LAUNCHED("k_matvec1_w16");
        return;
    }
    k_matvec_w16<S><<<blocks, 256, 0, cu_stream(ex)>>>(y, x, w, T, in, out, add, bf16);
    CU_LAUNCHED("k_matvec_w16");
}

__global__ void k_widen(float *dst, const uint16_t *src, size_t n, int bf16) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = wide(src, i, bf16);
}

#define MW_BLOCK_ELEMS ((size_t)1 << 24) // widened weights per Sgemm (64 MB of scratch)

// bf16 weights, T > MW_TMAX rows, an fp32 exec: x = hi + mid + lo, each the
// bf16 rounding of what the ones before leave (the remainders are exact in
// fp32), so W·x = W·hi + W·mid + W·lo keeps 24 significant bits of x: the
// products the fp32 path forms, summed in fp32 in another order — from one
// bf16 tensor-core GEMM over the 3T columns [hi; mid; lo] that reads W once
// (batched decode and prefill: a weight-bandwidth-bound GEMM).
// xs[0:n) = hi, xs[n:2n) = mid, xs[2n:3n) = lo, n = T·in
#define MW_SPLIT 3
__global__ void k_split_bf16(__nv_bfloat16 *xs, const float *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float r = x[i];
        for (int k = 0; k < MW_SPLIT; k++) {
            __nv_bfloat16 b = __float2bfloat16_rn(r);
            xs[(size_t)k * n + i] = b;
            r -= __bfloat162float(b);
        }
    }
}

// y[t,o] = (beta ? y[t,o] : 0) + ((y3[t,o] + y3[T+t,o]) + y3[2T+t,o])
__global__ void k_join_split(float *y, const float *y3, size_t n, float beta) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = (y3[i] + y3[n + i]) + y3[2 * n + i];
        y[i] = beta != 0.0f ? y[i] + v : v;
    }
}

static void matmul_w_split(const molt_exec *ex, float *y, const float *x, const uint16_t *w,
                           int T, int in, int out, float beta) {
    size_t         nx = (size_t)T * in, ny = (size_t)T * out;
    __nv_bfloat16 *xs = (__nv_bfloat16 *)cu_scratch(ex, sizeof(__nv_bfloat16) * MW_SPLIT * nx);
    float         *y3 = xs ? (float *)cu_scratch(ex, sizeof(float) * MW_SPLIT * ny) : NULL;
    if (y3) {
        k_split_bf16<<<cu_blocks(nx, 256), 256, 0, cu_stream(ex)>>>(xs, x, nx);
        CU_LAUNCHED("k_split_bf16");
        gemm_bf16(ex, CUBLAS_OP_T, CUBLAS_OP_N, out, MW_SPLIT * T, in, w, in, xs, in, 0.0f, y3,
                  out);
        k_join_split<<<cu_blocks(ny, 256), 256, 0, cu_stream(ex)>>>(y, y3, ny, beta);
        CU_LAUNCHED("k_join_split");
    }
    cu_scratch_free(ex, y3);
    cu_scratch_free(ex, xs);
}

extern "C" void cuda_matmul_w(const molt_exec *ex, float *y, const float *x, molt_w W,
                              const float *bias, int T, int in, int out, int accumulate) {
    if (W.dt == MOLT_F32) {
        cuda_matmul(ex, y, x, (const float *)W.data, bias, T, in, out, accumulate);
        return;
    }
    if (W.dt != MOLT_BF16 && W.dt != MOLT_F16) {
        CU_FAIL("matmul_w: unsupported weight dtype");
        return;
    }
    if (T <= 0 || out <= 0)
        return;
    int             bf16 = W.dt == MOLT_BF16;
    const uint16_t *w = (const uint16_t *)W.data;
    float           beta = prep_y(ex, y, bias, T, out, accumulate, in);
    if (in <= 0)
        return;
    if (T <= MW_TMAX) {
        int add = beta != 0.0f;
        if (in % 8 == 0 && (uintptr_t)w % 16 == 0 && (uintptr_t)x % 16 == 0) {
            if (out >= 8192) // warps per row: ≥ 8192 warps in all where the rows allow
                matvec_w16<1>(ex, y, x, w, T, in, out, add, bf16);
            else if (out >= 4096)
                matvec_w16<2>(ex, y, x, w, T, in, out, add, bf16);
            else if (out >= 2048)
                matvec_w16<4>(ex, y, x, w, T, in, out, add, bf16);
            else
                matvec_w16<8>(ex, y, x, w, T, in, out, add, bf16);
            return;
        }
        k_matvec_w<<<(unsigned)((out + 7) / 8), 256, 0, cu_stream(ex)>>>(y, x, w, T, in, out,
                                                                              add, bf16);
        CU_LAUNCHED("k_matvec_w");
        return;
    }
    if (bf16 && (ex->flags & MOLT_EXEC_BF16)) { // W is already the bf16 the GEMM would round to:
        cu_bf16 xb = cu_bf16_act(ex, x, (size_t)T * in); // one GEMM, as an f32 W's (the same bits)
        gemm_bf16(ex, CUBLAS_OP_T, CUBLAS_OP_N, out, T, in, xb.p ? w : NULL, in, xb.p, in, beta, y,
                  out);
        cu_bf16_release(ex, &xb);
        return;
    }
    int rows = (int)(MW_BLOCK_ELEMS / (size_t)in);
    rows = rows < 1 ? 1 : rows > out ? out : rows;
    if (bf16) { // x split into three bf16 parts, one tensor-core GEMM over them
        matmul_w_split(ex, y, x, w, T, in, out, beta);
        return;
    }
    float *tile = (float *)cu_scratch(ex, sizeof(float) * (size_t)rows * in);
    if (!tile)
        return;
    for (int o0 = 0; o0 < out; o0 += rows) {
        int    r = out - o0 < rows ? out - o0 : rows;
        size_t n = (size_t)r * in;
        k_widen<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(tile, w + (size_t)o0 * in, n, bf16);
        CU_LAUNCHED("k_widen");
        sgemm_tn(ex, y + o0, x, tile, T, in, r, out, beta, 0);
    }
    cu_scratch_free(ex, tile);
}

// ----------------------------------------------------------------------------
// backward:  dx = dy·W (= or +=),  dW += dyᵀ·x,  db += Σ_t dy[t]

// an operand already in bf16 (matmul_b16, matmul_backward_b16): not owned, not converted
static cu_bf16 b16_given(const uint16_t *p) { return cu_bf16{(const __nv_bfloat16 *)p, NULL}; }

// the backward's two bf16 GEMMs on dy already in bf16 (g: rounded once for both, released
// here) and x as xb when given in bf16, else rounded from x
static void backward_bf16(const molt_exec *ex, float *dx, float *dW, cu_bf16 g, const float *x,
                          const uint16_t *xb, const float *W, int T, int in, int out, float bdx) {
    if (dx && g.p) { // dxᵀ[in,T] = Wᵀ[in,out]·dyᵀ[out,T]
        cu_bf16 w = cu_bf16_weight(ex, W, (size_t)out * in);
        gemm_bf16(ex, CUBLAS_OP_N, CUBLAS_OP_N, in, T, out, w.p, in, g.p, out, bdx, dx, in);
        cu_bf16_release(ex, &w);
    }
    if (dW && g.p) { // dWᵀ[in,out] += xᵀ[in,T]·dy[T,out]
        cu_bf16 a = xb ? b16_given(xb) : cu_bf16_act(ex, x, (size_t)T * in);
        gemm_bf16(ex, CUBLAS_OP_N, CUBLAS_OP_T, in, out, T, a.p, in, g.p, out, 1.0f, dW, in);
        cu_bf16_release(ex, &a);
    }
    cu_bf16_release(ex, &g);
}

extern "C" void cuda_matmul_backward(const molt_exec *ex, float *dx, float *dW, float *db,
                                     const float *dy, const float *x, const float *W, int T,
                                     int in, int out, int accumulate_dx) {
    if (T <= 0 || in <= 0 || out <= 0)
        return;
    float bdx = accumulate_dx ? 1.0f : 0.0f;
    if ((ex->flags & MOLT_EXEC_BF16) && (dx || dW)) { // dy rounded once for both GEMMs
        backward_bf16(ex, dx, dW, cu_bf16_act(ex, dy, (size_t)T * out), x, NULL, W, T, in, out,
                      bdx);
    } else if (dx || dW) {
        // dxᵀ[in,T] = Wᵀ[in,out]·dyᵀ[out,T]   (column-major views)
        if (dx)
            gemm(ex, CUBLAS_OP_N, CUBLAS_OP_N, in, T, out, W, in, dy, out, bdx, dx, in, 1);
        // dWᵀ[in,out] += xᵀ[in,T]·dy[T,out]
        if (dW)
            gemm(ex, CUBLAS_OP_N, CUBLAS_OP_T, in, out, T, x, in, dy, out, 1.0f, dW, in, 0);
    }
    if (db) {
        cu_colsum2(ex, db, T, out, cs_col{dy, out}); // db[o] += Σ_t dy[t,o] (colsum.cuh)
    }
}

// ----------------------------------------------------------------------------
// the MLP's GEMM-only activations in bf16 (backward.h: matmul_b16,
// matmul_backward_b16). Under MOLT_EXEC_BF16 an operand given in bf16 goes to
// the GEMM as it is: the conversion it replaces (cu_bf16_act) would have made
// the same bits. Under any other exec it is widened into fp32 scratch and the
// fp32 op runs (the contract: the fp32 op on the widened inputs).

// bf16_widen (ssm_rows.h): exact
extern "C" void cuda_bf16_widen(const molt_exec *ex, float *dst, const uint16_t *src, size_t n) {
    if (!n)
        return;
    k_widen<<<cu_blocks(n, 256), 256, 0, cu_stream(ex)>>>(dst, src, n, 1);
    CU_LAUNCHED("k_widen");
}

static float *widen_scratch(const molt_exec *ex, const uint16_t *src, size_t n) {
    float *d = (float *)cu_scratch(ex, sizeof(float) * (n ? n : 1));
    if (d)
        cuda_bf16_widen(ex, d, src, n);
    return d;
}

extern "C" void cuda_matmul_b16(const molt_exec *ex, float *y, const uint16_t *x, const float *W,
                                int T, int in, int out, int accumulate) {
    if (T <= 0 || out <= 0)
        return;
    if (!(ex->flags & MOLT_EXEC_BF16)) {
        float *xf = widen_scratch(ex, x, (size_t)T * (size_t)(in > 0 ? in : 0));
        if (xf)
            cuda_matmul(ex, y, xf, W, NULL, T, in, out, accumulate);
        cu_scratch_free(ex, xf);
        return;
    }
    float beta = prep_y(ex, y, NULL, T, out, accumulate, in);
    if (in > 0) { // yᵀ[out,T] = W[out,in]·xᵀ (column-major views), as sgemm_tn
        cu_bf16 w = cu_bf16_weight(ex, W, (size_t)out * in);
        gemm_bf16(ex, CUBLAS_OP_T, CUBLAS_OP_N, out, T, in, w.p, in, x, in, beta, y, out);
        cu_bf16_release(ex, &w);
    }
}

extern "C" void cuda_matmul_backward_b16(const molt_exec *ex, float *dx, float *dW,
                                         const float *dy, const uint16_t *dyb, const float *x,
                                         const uint16_t *xb, const float *W, int T, int in,
                                         int out, int accumulate_dx) {
    if (T <= 0 || in <= 0 || out <= 0 || (!dx && !dW))
        return;
    if (!(ex->flags & MOLT_EXEC_BF16)) {
        float *dyf = dyb ? widen_scratch(ex, dyb, (size_t)T * out) : NULL;
        float *xf = xb ? widen_scratch(ex, xb, (size_t)T * in) : NULL;
        if ((!dyb || dyf) && (!xb || xf))
            cuda_matmul_backward(ex, dx, dW, NULL, dyb ? dyf : dy, xb ? xf : x, W, T, in, out,
                                 accumulate_dx);
        cu_scratch_free(ex, xf);
        cu_scratch_free(ex, dyf);
        return;
    }
    backward_bf16(ex, dx, dW, dyb ? b16_given(dyb) : cu_bf16_act(ex, dy, (size_t)T * out), x,
                  xb, W, T, in, out, accumulate_dx ? 1.0f : 0.0f);
}
