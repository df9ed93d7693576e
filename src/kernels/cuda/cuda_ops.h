/*
 * cuda_ops.h — the CUDA backend's ops (the entries of molt_backend_cuda,
 * backend_cuda.c), callable from C and CUDA C++. Internal to src/kernels.
 * Contracts: those of the public functions of the same name (kernels.h,
 * backward.h, ssm.h, mem.h); pointers are device pointers from the backend's
 * alloc, except the host arrays the contracts name (embedding ids).
 */
#ifndef MOLT_KERNELS_CUDA_OPS_H
#define MOLT_KERNELS_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/exec.h"

#ifdef __cplusplus
extern "C" {
#endif

// The ops this backend implements. An op of MOLT_BACKEND_OPS (kernels.h)
// missing here is "not yet on the GPU": its slot stays NULL, so
// molt_exec_init refuses the table (molt_cuda_missing_ops lists them).
#define MOLT_CUDA_OPS(X)                                                                           \
    X(matmul) X(matmul_w) X(matmul_backward) X(rmsnorm) X(rmsnorm_forward) X(rmsnorm_backward)     \
    X(swiglu) X(swiglu_backward) X(swiglu_pair) X(swiglu_pair_backward) X(softmax) X(add)          \
    X(embedding) X(embedding_backward)                                                            \
    X(conv1d_causal) X(conv1d_causal_backward) X(ssd_step) X(ssd_scan_chunked)                    \
    X(ssd_scan_chunked_backward) X(ssd_materialize) X(ssd_materialize_backward)

// dense.cu
void cuda_matmul(const molt_exec *ex, float *y, const float *x, const float *W, const float *bias,
                 int T, int in, int out, int accumulate);
void cuda_matmul_w(const molt_exec *ex, float *y, const float *x, molt_w W, const float *bias,
                   int T, int in, int out, int accumulate);
void cuda_matmul_backward(const molt_exec *ex, float *dx, float *dW, float *db, const float *dy,
                          const float *x, const float *W, int T, int in, int out,
                          int accumulate_dx);
// rows.cu
void cuda_rmsnorm(const molt_exec *ex, float *y, const float *x, const float *w, int T, int d,
                  float eps);
void cuda_rmsnorm_forward(const molt_exec *ex, float *y, float *rstd, const float *x,
                          const float *w, int T, int d, float eps);
void cuda_rmsnorm_backward(const molt_exec *ex, float *dx, float *dw, const float *dy,
                           const float *x, const float *w, const float *rstd, int T, int d);
void cuda_swiglu(const molt_exec *ex, float *gate, const float *up, size_t n);
void cuda_swiglu_backward(const molt_exec *ex, float *dg, float *du, const float *dh,
                          const float *g, const float *u, size_t n);
void cuda_swiglu_pair(const molt_exec *ex, float *h, const float *gu, int T, int F);
void cuda_swiglu_pair_backward(const molt_exec *ex, float *dgu, const float *dh, const float *gu,
                               int T, int F);
void cuda_softmax(const molt_exec *ex, float *x, int n);
void cuda_add(const molt_exec *ex, float *y, const float *a, const float *b, size_t n);
void cuda_embedding(const molt_exec *ex, float *x, const float *E, const int32_t *ids, int T,
                    int d);
void cuda_embedding_backward(const molt_exec *ex, float *dE, const float *dx, const int32_t *ids,
                             int T, int d);
// ssm.cu
void cuda_conv1d_causal(const molt_exec *ex, float *y, const float *x, const float *w,
                        const float *b, float *state, int T, int Cc, int K);
void cuda_conv1d_causal_backward(const molt_exec *ex, float *dx, float *dw, float *db,
                                 const float *dy, const float *x, const float *w, int T, int Cc,
                                 int K);
void cuda_ssd_step(const molt_exec *ex, float *y, float *state, const float *X, const float *dA,
                   const float *B, const float *C, int H, int P, int N, int G);
void cuda_ssd_scan_chunked(const molt_exec *ex, float *y, float *state, const float *X,
                           const float *dA, const float *B, const float *C, int T, int H, int P,
                           int N, int G, int Q, float *work);
void cuda_ssd_materialize(const molt_exec *ex, float *M, const float *dA, const float *B,
                          const float *C, const float *colscale, const float *D, int T, int H,
                          int N, int G);
// ssm_backward.cu
void cuda_ssd_scan_chunked_backward(const molt_exec *ex, float *dX, float *ddA, float *dB,
                                    float *dC, const float *dy, const float *X, const float *dA,
                                    const float *B, const float *C, int T, int H, int P, int N,
                                    int G, int Q, float *work);
void cuda_ssd_materialize_backward(const molt_exec *ex, float *ddA, float *dB, float *dC,
                                   float *dcolscale, float *dD, const float *dM, const float *dA,
                                   const float *B, const float *C, const float *colscale,
                                   const float *D, int T, int H, int N, int G, float *work);
// mem.cu (mem.h: molt_mem_ops)
void *cuda_mem_alloc(size_t bytes);
void  cuda_mem_free(void *p);
void  cuda_mem_upload(const molt_exec *ex, void *dst, const void *src, size_t bytes);
void  cuda_mem_download(const molt_exec *ex, void *dst, const void *src, size_t bytes);
void  cuda_mem_copy(const molt_exec *ex, void *dst, const void *src, size_t bytes);
void  cuda_mem_zero(const molt_exec *ex, void *p, size_t bytes);
void  cuda_mem_sync(const molt_exec *ex);

#ifdef __cplusplus
}
#endif

#endif
