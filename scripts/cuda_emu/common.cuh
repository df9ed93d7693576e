/*
 * common.cuh, host emulation (scripts/cuda_emu/run.sh): what the GateLoop and Mamba-3 CUDA
 * sources (src/kernels/cuda/gateloop*.cu, mamba3*.cu) need from the real common.cuh, for
 * g++ on a machine without a GPU. A launch runs every block in order with ONE thread
 * (blockDim = 1: the kernels' thread-strided loops cover everything, __syncthreads is a
 * no-op), so index arithmetic, bounds (under ASan), work layouts and the math are checked
 * against the CPU ops; races between threads and GPU math-library rounding are not.
 * cu_dotf here rounds as the real one (no FMA: g++ -ffp-contract=off).
 */
#ifndef EMU_COMMON_CUH
#define EMU_COMMON_CUH
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstddef>
#include <cstdint>
using std::remainder;
extern "C" {
#include "kernels/kernels.h"
#include "kernels/ssm.h"
}
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__
typedef void *cudaStream_t;
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
extern thread_local dim3 blockIdx, threadIdx, blockDim, gridDim; // emu_globals.cpp
inline void __syncthreads() {}
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
template <class F> struct Launcher;
template <class R, class... P> struct Launcher<R (*)(P...)> {
    dim3 g;
    R (*f)(P...);
    void operator()(P... a) {
        gridDim = g;
        blockDim = dim3(1);
        threadIdx = dim3(0);
        for (unsigned y = 0; y < g.y; y++)
            for (unsigned x = 0; x < g.x; x++) {
                blockIdx = dim3(x, y);
                f(a...);
            }
    }
};
#define EMU_LAUNCH(K, G, ...) Launcher<decltype(&K)>{dim3(G), &K}
static inline cudaStream_t cu_stream(const molt_exec *) { return NULL; }
static inline unsigned cu_blocks(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 65535u * 16u ? 65535u * 16u : b);
}
#define CU_LAUNCHED(name) ((void)0)
#define CU_FAIL(msg) (fprintf(stderr, "CU_FAIL %s\n", msg), abort())
static inline void *cu_scratch(const molt_exec *, size_t bytes) {
    return malloc(bytes ? bytes : 1);
}
static inline void cu_scratch_free(const molt_exec *, void *p) { free(p); }
#define SSM_FLUSH (-60.0f)
static inline float cu_dotf(const float *a, const float *b, int n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int   i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] = acc[k] + a[i + k] * b[i + k];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++)
        s = s + a[i] * b[i];
    return s;
}
#endif
