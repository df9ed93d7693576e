/*
 * backward.h — backward passes of the dense kernels in kernels.h (and the
 * training forward of RMSNorm, which saves what its backward needs).
 *
 * Shapes: row-major, T rows (tokens), d features; a Linear weight W is
 * [out, in] (PyTorch layout) so the forward is y = x · Wᵀ (+ b).
 *
 * Accumulation contract (llm.c style):
 *   parameter grads (dW, db, dw, dE)  +=  always;
 *   activation grads                   =  written, except where stated:
 *     k_matmul_backward dx  +=  when accumulate_dx (several consumers of x),
 *     k_rmsnorm_backward dx +=  always (it sits on the residual stream).
 * Any gradient output may be NULL when it is not wanted (frozen weight,
 * no input gradient); the matching work is skipped.
 */
#ifndef MOLT_BACKWARD_H
#define MOLT_BACKWARD_H

#include <stddef.h>
#include <stdint.h>

#include "core/exec.h"

// y[T,out] = x[T,in]·W[out,in]ᵀ (+ b[out]):
//   dx[T,in] = dy·W (written, or += when accumulate_dx),
//   dW[out,in] += dyᵀ·x,  db[out] += Σ_t dy[t].
// Large shapes run on the pool: dx split over column blocks of in, dW over row
// blocks of W (disjoint outputs, single-threaded BLAS inside each).
void k_matmul_backward(const molt_exec *ex, float *dx, float *dW, float *db, const float *dy, const float *x,
                       const float *W, int T, int in, int out, int accumulate_dx);
// The same with plain loops and double accumulation (test oracle).
void k_matmul_backward_ref(float *dx, float *dW, float *db, const float *dy, const float *x,
                           const float *W, int T, int in, int out, int accumulate_dx);

// Training forward of RMSNorm: y = k_rmsnorm(x, w) bit for bit, and also
// rstd[T] = 1/sqrt(mean(x²) + eps) per row.
void k_rmsnorm_forward(const molt_exec *ex, float *y, float *rstd, const float *x, const float *w, int T, int d,
                       float eps);
// dx[T,d] += (residual-stream convention), dw[d] +=.
void k_rmsnorm_backward(const molt_exec *ex, float *dx, float *dw, const float *dy, const float *x, const float *w,
                        const float *rstd, int T, int d);

// h = silu(g)·u elementwise: dg, du written. Elementwise, so dg or du may
// alias dh, g or u (not each other).
void k_swiglu_backward(const molt_exec *ex, float *dg, float *du, const float *dh, const float *g, const float *u,
                       size_t n);

// SwiGLU over a fused gate|up projection: gu[T, 2F] holds g in columns
// 0..F-1 and u in F..2F-1 of each row (one GEMM against the adjacent
// gate_proj and up_proj weights).
//   forward   h[T,F] = silu(g)·u           (= k_swiglu on separate buffers, bit for bit)
//   backward  dgu[T,2F] written from dh[T,F]
void k_swiglu_pair(const molt_exec *ex, float *h, const float *gu, int T, int F);
void k_swiglu_pair_backward(const molt_exec *ex, float *dgu, const float *dh, const float *gu, int T, int F);

// The MLP's GEMM-only activations in bf16 (molt_backend.train_mlp_b16; block.c):
// under MOLT_EXEC_BF16 the GEMMs round h and ∂gu to bf16 anyway, so their
// producers write that rounding (to nearest even, molt_f32_to_bf16) instead of
// fp32, and the GEMMs take it as it is — the same bits in half the bytes.
//   swiglu_pair_b16           h[T,F]    = bf16(k_swiglu_pair's h)
//   swiglu_pair_backward_b16  dgu[T,2F] = bf16(k_swiglu_pair_backward's dgu)
//   matmul_b16                k_matmul (no bias) on x[T,in] given in bf16
//   matmul_backward_b16       k_matmul_backward (no db) with dy[T,out] given as
//                             fp32 dy or bf16 dyb (one of them) and x[T,in] as
//                             x or xb (one, or neither without dW)
// Each equals its fp32 op on the widened inputs under the same exec.
void k_swiglu_pair_b16(const molt_exec *ex, uint16_t *h, const float *gu, int T, int F);
void k_swiglu_pair_backward_b16(const molt_exec *ex, uint16_t *dgu, const float *dh,
                                const float *gu, int T, int F);
void k_matmul_b16(const molt_exec *ex, float *y, const uint16_t *x, const float *W, int T, int in,
                  int out, int accumulate);
void k_matmul_backward_b16(const molt_exec *ex, float *dx, float *dW, const float *dy,
                           const uint16_t *dyb, const float *x, const uint16_t *xb,
                           const float *W, int T, int in, int out, int accumulate_dx);

// x[t] = E[ids[t]]:  dE[V,d] += scatter of dx rows (repeated ids add up).
void k_embedding_backward(const molt_exec *ex, float *dE, const float *dx, const int32_t *ids, int T, int d);

#endif
