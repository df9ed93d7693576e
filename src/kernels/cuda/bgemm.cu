/*
 * bgemm.cu — many small fp32 GEMMs on TF32 tensor cores, one launch: the
 * chunked SSD's products (ssm_tc.cu), thousands of 64 × 64 × 64 matrices per
 * call, addressed through device pointer tables. cuBLAS's batched GEMM for
 * that shape ran at ~11 TFLOP/s (GPU_NOTES, run 8: ~200 µs a call where the
 * bytes take ~80 µs); here one block of 4 warps owns a 64 × 64 tile of one
 * batch entry and streams A and B through shared memory 32 k-values at a time.
 *
 * Per entry b, row-major (the convention of ssm_tc.cu's tc_gemm):
 *   C[b] (m × n, ldc) = op(A[b]) · op(B[b]) + beta · C[b]
 *   op(A) m × k: A[i·lda + kk], or A[kk·lda + i] when ta (A stored k × m)
 *   op(B) k × n: B[kk·ldb + j], or B[j·ldb + kk] when tb (B stored n × k)
 * and, with a scale table S, A's stored row r multiplied by S[b][r] as it is
 * loaded (the SSD's din / dout row scalings, so no scaled copy is written;
 * the same fp32 product a copy would hold, then the same TF32 rounding).
 * Operands are rounded to TF32 (round to nearest, __float_to_tf32) and
 * multiplied with fp32 accumulation in a fixed order (k ascending in steps of
 * 8 per fragment): deterministic, and within the TF32 tolerance of the fp32
 * form that the scan tests state. Out-of-range rows / columns / k are
 * zero-filled in shared memory and never written.
 *
 * Shared memory: As [64][36] (op(A) tile, i × kk), Bs [32][68] (op(B) tile,
 * kk × j); after the k loop the same bytes hold the fp32 tile Cs [64][68]
 * that the block writes out (so C's writes are coalesced along j). Row strides
 * 36 / 68 floats keep every 16-row / 8-row fragment start 32-byte aligned, as
 * wmma::load_matrix_sync requires, and spread the banks.
 */
#include "kernels/cuda/common.cuh"

#include <mma.h>

using namespace nvcuda;

#define BG_M  64
#define BG_N  64
#define BG_K  32
#define BG_LA (BG_K + 4) // As row stride
#define BG_LB (BG_N + 4) // Bs row stride
#define BG_LC (BG_N + 4) // Cs row stride
#define BG_SMEM_FLOATS (BG_M * BG_LA + BG_K * BG_LB)

// four consecutive elements (r, c .. c+3) of a stored matrix (nr × nc, row
// stride ld), 0 where out of range; one 16-byte load when v4 (ld and p 16-byte
// multiples) and the four are in range
__device__ __forceinline__ float4 bg_ld4(const float *p, int r, int c, int ld, int nr, int nc,
                                         bool v4) {
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r >= nr)
        return v;
    const float *q = p + (size_t)r * ld + c;
    if (v4 && c + 3 < nc)
        return *(const float4 *)q;
    if (c < nc)
        v.x = q[0];
    if (c + 1 < nc)
        v.y = q[1];
    if (c + 2 < nc)
        v.z = q[2];
    if (c + 3 < nc)
        v.w = q[3];
    return v;
}

__device__ __forceinline__ float4 bg_tf32(float4 v) {
    return make_float4(wmma::__float_to_tf32(v.x), wmma::__float_to_tf32(v.y),
                       wmma::__float_to_tf32(v.z), wmma::__float_to_tf32(v.w));
}

__device__ __forceinline__ float4 bg_mul(float4 v, float s) {
    return make_float4(s * v.x, s * v.y, s * v.z, s * v.w);
}

__global__ void __launch_bounds__(128, 4)
    k_bgemm_tf32(const float *const *Ap, const float *const *Bp, float *const *Cp,
                 const float *const *Sp, int ta, int tb, int m, int n, int k, int lda, int ldb,
                 int ldc, float beta) {
    __shared__ __align__(128) float sm[BG_SMEM_FLOATS > BG_M * BG_LC ? BG_SMEM_FLOATS
                                                                      : BG_M * BG_LC];
    float      *As = sm, *Bs = sm + BG_M * BG_LA, *Cs = sm;
    const float *A = Ap[blockIdx.x], *B = Bp[blockIdx.x];
    float       *C = Cp[blockIdx.x];
    const float *S = Sp ? Sp[blockIdx.x] : NULL; // A's stored rows scaled (NULL: not)
    int          tiles_n = (n + BG_N - 1) / BG_N;
    int          i0 = (int)(blockIdx.y / tiles_n) * BG_M, j0 = (int)(blockIdx.y % tiles_n) * BG_N;
    int          tid = threadIdx.x, warp = tid >> 5, wi = (warp >> 1) * 32, wj = (warp & 1) * 32;
    bool         va = lda % 4 == 0 && (uintptr_t)A % 16 == 0,
                 vb = ldb % 4 == 0 && (uintptr_t)B % 16 == 0;

    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            wmma::fill_fragment(acc[a][b], 0.0f);

    for (int k0 = 0; k0 < k; k0 += BG_K) {
        // op(A)[i0 + i][k0 + kk] → As[i][kk] and op(B)[k0 + kk][j0 + j] → Bs[kk][j], 16
        // bytes a load along the stored rows (consecutive threads, consecutive addresses):
        // every thread's eight loads issued before any store
        float4 ra[4], rb[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            int v = tid + 128 * u;
            int r = !ta ? i0 + v / 8 : k0 + v / 16; // A's stored row
            ra[u] = !ta ? bg_ld4(A, r, k0 + v % 8 * 4, lda, m, k, va)
                        : bg_ld4(A, r, i0 + v % 16 * 4, lda, k, m, va);
            if (S && r < (!ta ? m : k))
                ra[u] = bg_mul(ra[u], S[r]);
            rb[u] = !tb ? bg_ld4(B, k0 + v / 16, j0 + v % 16 * 4, ldb, k, n, vb)
                        : bg_ld4(B, j0 + v / 8, k0 + v % 8 * 4, ldb, n, k, vb);
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            int    v = tid + 128 * u;
            float4 x = bg_tf32(ra[u]), y = bg_tf32(rb[u]);
            if (!ta)
                *(float4 *)(As + v / 8 * BG_LA + v % 8 * 4) = x;
            else {
                float *d = As + (v % 16 * 4) * BG_LA + v / 16;
                d[0] = x.x, d[BG_LA] = x.y, d[2 * BG_LA] = x.z, d[3 * BG_LA] = x.w;
            }
            if (!tb)
                *(float4 *)(Bs + v / 16 * BG_LB + v % 16 * 4) = y;
            else {
                float *d = Bs + (v % 8 * 4) * BG_LB + v / 8;
                d[0] = y.x, d[BG_LB] = y.y, d[2 * BG_LB] = y.z, d[3 * BG_LB] = y.w;
            }
        }
        __syncthreads();
        for (int kk = 0; kk < BG_K; kk += 8) {
            wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb[2];
            for (int a = 0; a < 2; a++)
                wmma::load_matrix_sync(fa[a], As + (wi + 16 * a) * BG_LA + kk, BG_LA);
            for (int b = 0; b < 2; b++)
                wmma::load_matrix_sync(fb[b], Bs + kk * BG_LB + wj + 16 * b, BG_LB);
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++)
                    wmma::mma_sync(acc[a][b], fa[a], fb[b], acc[a][b]);
        }
        __syncthreads();
    }
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            wmma::store_matrix_sync(Cs + (wi + 16 * a) * BG_LC + wj + 16 * b, acc[a][b], BG_LC,
                                    wmma::mem_row_major);
    __syncthreads();
    for (int e = tid; e < BG_M * BG_N; e += 128) {
        int i = e / BG_N, j = e % BG_N, r = i0 + i, c = j0 + j;
        if (r < m && c < n) {
            float *o = C + (size_t)r * ldc + c, v = Cs[i * BG_LC + j];
            *o = beta != 0.0f ? v + beta * *o : v;
        }
    }
}

void cu_bgemm_tf32(const molt_exec *ex, const float *const *A, const float *const *B,
                   float *const *C, const float *const *S, int nb, int ta, int tb, int m, int n,
                   int k, int lda, int ldb, int ldc, float beta) {
    if (nb <= 0 || m <= 0 || n <= 0)
        return;
    unsigned tiles = (unsigned)(((m + BG_M - 1) / BG_M) * ((n + BG_N - 1) / BG_N));
    k_bgemm_tf32<<<dim3((unsigned)nb, tiles), 128, 0, cu_stream(ex)>>>(A, B, C, S, ta, tb, m, n,
                                                                         k, lda, ldb, ldc, beta);
    CU_LAUNCHED("k_bgemm_tf32");
}
