/*
 * colsum.cuh — two-stage column sums: out[j] += (float)Σ_r f(r, j), the sum
 * in double, for the ops that reduce a [rows, cols] term over rows
 * (RMSNorm dw, the matmul bias gradient, colsum). Internal to src/kernels/cuda.
 *
 *   stage 1  a grid of (column blocks of 256) × (row chunks): each thread sums
 *            its column over its chunk's rows in row order, into a double
 *            partial [chunks, cols] (stream-ordered scratch)
 *   stage 2  one thread per column sums the partials in chunk order and adds
 *            the sum, rounded to float, to out[j] (as cpu_colsum)
 *
 * The chunking depends only on (rows, cols) (about 1024 blocks in stage 1,
 * at least CS_ROWS_MIN rows a chunk), never on the device, so results are
 * deterministic and the same on every GPU. With one chunk (rows ≤
 * CS_ROWS_MIN, or few rows for wide sums) the order is cpu_colsum's (rows
 * in order, in double: the same bits); with more, the double sum is regrouped
 * by chunks, which moves it by double rounding (~1e-16 relative): the float
 * result is cpu_colsum's unless that crosses a float rounding boundary.
 * Replaces one thread per column walking every row, which for cols = 2048
 * ran 8 blocks on a 132-SM GPU.
 */
#ifndef MOLT_KERNELS_CUDA_COLSUM_CUH
#define MOLT_KERNELS_CUDA_COLSUM_CUH

#include "kernels/cuda/common.cuh"

#define CS_THREADS  256
#define CS_ROWS_MIN 16
#define CS_BLOCKS   1024

// chunks of rows (each *rows_per rows, the last shorter) for a rows × cols sum
static inline int cs_chunks(int rows, int cols, int *rows_per) {
    int cb = (cols + CS_THREADS - 1) / CS_THREADS;
    int want = CS_BLOCKS / cb, maxc = (rows + CS_ROWS_MIN - 1) / CS_ROWS_MIN;
    int c = want < maxc ? want : maxc;
    c = c < 1 ? 1 : c;
    int rp = (rows + c - 1) / c;
    *rows_per = rp < 1 ? 1 : rp;
    return (rows + *rows_per - 1) / *rows_per;
}

template <class Term>
__global__ void k_colsum_part(double *part, int rows, int cols, int rows_per, Term f) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols)
        return;
    int    r0 = blockIdx.y * rows_per, r1 = min(rows, r0 + rows_per);
    double s = 0.0;
    for (int r = r0; r < r1; r++)
        s += f(r, j);
    part[(size_t)blockIdx.y * cols + j] = s;
}

template <int UNUSED>
__global__ void k_colsum_fin(float *out, const double *part, int chunks, int cols) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols)
        return;
    double s = 0.0;
    for (int c = 0; c < chunks; c++)
        s += part[(size_t)c * cols + j];
    out[j] += (float)s;
}

// the terms of the users (a functor: f(r, j) → double)
struct cs_col { // src[r·ld + j]
    const float *src;
    int          ld;
    __device__ double operator()(int r, int j) const { return (double)src[(size_t)r * ld + j]; }
};

// out[0:cols) += Σ_{r < rows} f(r, j) as above (rows, cols > 0)
template <class Term>
static void cu_colsum2(const molt_exec *ex, float *out, int rows, int cols, Term f) {
    int     rp, ch = cs_chunks(rows, cols, &rp);
    double *part = (double *)cu_scratch(ex, sizeof(double) * (size_t)ch * (size_t)cols);
    if (!part)
        return;
    unsigned cb = (unsigned)((cols + CS_THREADS - 1) / CS_THREADS);
    k_colsum_part<Term><<<dim3(cb, (unsigned)ch), CS_THREADS, 0, cu_stream(ex)>>>(part, rows, cols,
                                                                               rp, f);
    CU_LAUNCHED("k_colsum_part");
    k_colsum_fin<0><<<cb, CS_THREADS, 0, cu_stream(ex)>>>(out, part, ch, cols);
    CU_LAUNCHED("k_colsum_fin");
    cu_scratch_free(ex, part);
}

#endif
