/*
 * kernels.h — the dense kernels every layer uses, behind one small table so a
 * CUDA backend can be slotted in later without touching mixers or models.
 * Today there is one table (CPU: OpenBLAS sgemm + plain C loops).
 * matmul and its backward keep *_ref twins (plain loops, double accumulation);
 * tests/test_backend_ops.c holds every op of the table to its own references.
 *
 * Shapes: row-major. T rows (tokens), d features. A Linear weight W is
 * [out, in] (PyTorch layout), so y = x · Wᵀ.
 */
#ifndef MOLT_KERNELS_H
#define MOLT_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/dtype.h"
#include "core/exec.h"
#include "kernels/mem.h"
#include "kernels/train_ops.h"

// y[T,out] = x[T,in] · W[out,in]ᵀ (+ bias[out]); accumulate: y += instead of y =
void k_matmul(const molt_exec *ex, float *y, const float *x, const float *W, const float *bias, int T, int in, int out,
              int accumulate);
void k_matmul_ref(float *y, const float *x, const float *W, const float *bias, int T, int in,
                  int out, int accumulate);
// the same with a typed weight (core/dtype.h): f32 gives k_matmul's bits; bf16
// and f16 are read in their own type and accumulated in fp32, bit-identical at
// any thread count (cpu/matmul_w.c)
void k_matmul_w(const molt_exec *ex, float *y, const float *x, molt_w W, const float *bias, int T,
                int in, int out, int accumulate);
void k_matmul_w_ref(float *y, const float *x, molt_w W, const float *bias, int T, int in, int out,
                    int accumulate);
// y[T,d] = x / sqrt(mean(x²) + eps) * w   (Llama RMSNorm, fp32)
void k_rmsnorm(const molt_exec *ex, float *y, const float *x, const float *w, int T, int d, float eps);
// in place: x[i] = silu(x[i]) * g[i]  (SwiGLU gate: silu(gate) * up)
void k_swiglu(const molt_exec *ex, float *gate, const float *up, size_t n);
float k_softplus(float x); // log(1+exp(x)), PyTorch threshold 20

// K_SIMD marks a hot elementwise loop for ISA dispatch: GCC compiles it for
// baseline x86-64 (SSE2), x86-64-v3 (AVX2) and x86-64-v4 (AVX-512) and picks
// one at load time (ifunc), so a portable binary still runs full-width
// vectors. Results are identical on every clone: -std=c11 keeps FP
// contraction off (no FMA fusing) and float reductions stay in source order.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) &&       \
    !defined(MOLT_NO_CLONES)
#define K_SIMD __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define K_SIMD
#endif
// exp(x), vectorizable (no calls, no branches): x = n·ln2 + r with
// |r| ≤ ln2/2 (Cody-Waite split of ln2), e^r by its degree-7 Taylor
// polynomial, 2^n by building the exponent bits. Max relative error vs libm
// ≤ 1e-7 (tests/test_kernels.c); x is clamped to [-87, 88] (exp(-87) ≈ 1.6e-38);
// NaN stays NaN.
static inline float k_expf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float t = x * 1.44269504088896341f;
    float n = (t + 12582912.0f) - 12582912.0f; // round to nearest (1.5·2^23 trick)
    float r = x - n * 0.693145751953125f;      // ln2 high part (exact product)
    r = r - n * 1.428606765330187e-06f;        // ln2 low part
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    // NaN in, NaN out (p is NaN); n is then replaced by 0 only so that the
    // float→int conversion stays defined. n ≥ -126 after the clamp, so the
    // biased exponent is positive.
    uint32_t bits = (uint32_t)((int32_t)(n == n ? n : 0.0f) + 127) << 23;
    float    scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// Σ a_i·b_i with 8 fixed partial sums: the compiler vectorizes it without
// reassociating (strict IEEE), and the result does not depend on threading
// or on the ISA clone
static inline float k_dotf(const float *a, const float *b, int n) {
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    int   i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += a[i + k] * b[i + k];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

// silu(x) = x·σ(x)   (inline so K_SIMD loops vectorize it)
static inline float k_silu(float x) { return x / (1.0f + k_expf(-x)); }


// in place softmax of n values (max-subtracted, fp32)
void k_softmax(const molt_exec *ex, float *x, int n);
// in place softmax(x·scale), scale > 0: bit-identical to scaling x first and
// calling k_softmax (CPU; training and prefill attention)
void k_softmax_scaled(float *x, int n, float scale);
// One token per row of logits[n, V] — decode sampling on the model's device,
// so that only the n ids come back:
//   temperature ≤ 0: idx[r] = argmax_v logits[r,v], the lowest v among equal maxima
//   temperature > 0: x = logits[r]/temperature, e_v = exp(x_v − max x),
//     p_v = e_v/Σe; idx[r] = the least v with coin[r] < Σ_{u≤v} p_u (V−1 when
//     rounding leaves none): infer/sample.c's draw with top-k and top-p off
//     (and its limit: greedy when x overflows)
// A row with a non-finite logit gets −1. idx: backend memory, int32 [n];
// coin: host [n] in [0,1), read only when temperature > 0. The CPU op does the
// host sampler's float operations in its order (the same token); another
// backend sums in its own order, so it may pick the neighbour when coin[r]
// lies within rounding of a boundary of the cumulative sum.
void k_sample_rows(const molt_exec *ex, int32_t *idx, const float *logits, const float *coin,
                   float temperature, int n, int V);
// y[i] = a[i] + b[i] for i < n (y may be a or b: the residual add y += x is
// k_add(ex, y, y, x, n)); bit-identical at any thread count
void k_add(const molt_exec *ex, float *y, const float *a, const float *b, size_t n);
// s = a + b ([T,d]; s may be a or b), then y = rmsnorm(s)·w with rstd[T] = r
// when not NULL: k_add then k_rmsnorm_forward, the same bits (the residual add
// of a block and the norm after it in one pass over the rows)
void k_add_rmsnorm(const molt_exec *ex, float *s, float *y, float *rstd, const float *a,
                   const float *b, const float *w, int T, int d, float eps);
// x[t, :] = E[ids[t], :] for t < T (the embedding gather; ids in range, checked by callers)
void k_embedding(const molt_exec *ex, float *x, const float *E, const int32_t *ids, int T, int d);
// dst[t, 0:n] = src[t, 0:n] for t < rows (row strides ldd, lds ≥ n; the two
// blocks do not overlap): the split / join of fused projections
void k_copy_cols(const molt_exec *ex, float *dst, size_t ldd, const float *src, size_t lds,
                 size_t rows, size_t n);
// The hybrid combiner's statistics matching, per token t < T of a[T,d], s[T,d]:
//   ap = (a − μa)·κ + μs,  κ = (σs + ε)/(σa + ε),  ε = 1e-5,  σ unbiased (d ≥ 2)
// means and variances summed in double in index order, the rest in float;
// st[T,4] (or NULL) gets μa, μs, σa, σs. Same bits on every backend.
void k_hybrid_stats(const molt_exec *ex, float *ap, float *st, const float *a, const float *s,
                    int T, int d);
// Its backward: g[T,d] holds dL/dap on entry and dL/da on return; ds[T,d] +=
// the statistics path's dL/ds (the direct path is the caller's). st: as saved
// by k_hybrid_stats. A zero σ drops the path through it.
void k_hybrid_stats_backward(const molt_exec *ex, float *g, float *ds, const float *st,
                             const float *a, const float *s, int T, int d);

// ----------------------------------------------------------------------------
// backend table: the one seam between the model layer and the hardware.
// Every op that mixers, models and training call with an exec goes through
// ex->be: the public entry points (k_matmul here, k_*_backward in backward.h,
// conv1d_causal / ssd_* in ssm.h) are one-line dispatchers
// `ex->be->op(ex, ...)`, and each backend fills this table (CPU:
// molt_backend_cpu, cpu/backend_cpu.c). A CUDA backend provides the same
// table; the CPU one stays the oracle it is tested against
// (tests/test_backend_ops.c, op by op). Each entry has the contract of the
// public function of the same name (k_ prefix for the dense and attention ops).
//
// Not in the table (no exec argument, CPU helpers): the *_ref oracles,
// k_softmax_scaled, and the work-size functions
// (ssd_*_work, k_attn_*_work: the work layouts are part of the op contracts,
// the same on every backend).

#define MOLT_BACKEND_OPS(X)                                                                        \
    X(matmul) X(matmul_w) X(matmul_backward) X(rmsnorm) X(rmsnorm_forward) X(rmsnorm_backward) X(swiglu)     \
    X(swiglu_backward) X(swiglu_pair) X(swiglu_pair_backward) X(softmax) X(add) X(embedding)      \
    X(add_rmsnorm)                                                                                \
    X(embedding_backward)                                                                         \
    /* the MLP's GEMM-only activations in bf16 (backward.h) */                                    \
    X(swiglu_pair_b16) X(swiglu_pair_backward_b16) X(matmul_b16) X(matmul_backward_b16)           \
    /* copies and the hybrid combiner */                                                          \
    X(copy_cols) X(hybrid_stats) X(hybrid_stats_backward)                                          \
    X(conv1d_causal) X(conv1d_causal_backward) X(ssd_step) X(ssd_scan_chunked)                    \
    X(ssd_scan_chunked_backward) X(ssd_materialize) X(ssd_materialize_backward)                 \
    /* attention (attn.h) */                                                                       \
    X(rope) X(kv_append) X(attn_prefill) X(attn_decode_rows) X(attn_probs)                        \
    X(attn_train_forward) X(attn_train_backward)                                                  \
    /* flash-style training attention (attn.h) */                                                 \
    X(attn_flash_forward) X(attn_flash_backward)                                                  \
    /* ssm rows (ssm_rows.h) */                                                                    \
    X(ssm_prep) X(ssm_prep_backward) X(ssm_gate) X(ssm_gate_backward) X(colsum)                   \
    X(conv1d_causal_rows) X(ssd_step_rows) X(ssm_decode_rows)                                     \
    /* training (train_ops.h) */                                                                  \
    X(xent) X(soft_xent) X(l2_rows) X(sumsq) X(scale) X(adamw)                                    \
    /* gateloop (gateloop.h) */                                                                   \
    MOLT_BACKEND_GATELOOP_OPS(X)                                                                  \
    /* mamba3 (mamba3.h) */                                                                       \
    MOLT_BACKEND_MAMBA3_OPS(X)                                                                    \
    /* reverse-KL distillation loss (train_ops.h; issue 17) */                                    \
    X(rev_kl)                                                                                     \
    /* f16 KV cache (attn.h; issue 15) */                                                         \
    MOLT_BACKEND_KV16_OPS(X)                                                                      \
    /* bf16 recurrent SSM state (ssm_rows.h; issue 15) */                                         \
    MOLT_BACKEND_STATE_BF16_OPS(X)                                                                \
    /* decode sampling on the device (kernels.h; issue 12) */                                     \
    X(sample_rows)
#define MOLT_BACKEND_NOPS (52 + 8 + 13 + 1 + 3 + 3 + 1) // ops in MOLT_BACKEND_OPS (checked
                                                        // against the struct): the base table +
                                                        // gateloop + mamba3 + rev_kl + f16 KV +
                                                        // bf16 SSM state + sample_rows

// Ops of one mixer that a backend may lack (its slots NULL): a model with that
// mixer is refused on such a backend (model_place: mixer_vt.runs_on), every
// other model runs there. molt_exec_init still wants the whole table (tests).
#define MOLT_BACKEND_GATELOOP_OPS(X)                                                               \
    X(gl_prep) X(gl_prep_backward) X(gl_step_rows) X(gl_scan_chunked)                             \
    X(gl_scan_chunked_backward) X(gl_scan_assoc) X(gl_materialize) X(gl_materialize_backward)
#define MOLT_BACKEND_MAMBA3_OPS(X)                                                                 \
    X(m3_angles) X(m3_angles_backward) X(m3_prep) X(m3_prep_backward) X(m3_mix) X(m3_corr)        \
    X(m3_mix_backward) X(m3_gate) X(m3_gate_backward) X(m3_fold) X(m3_step_rows)                  \
    X(m3_materialize) X(m3_materialize_backward)
// The f16 KV cache (molt_model_set_kv_dtype): a backend without these runs
// models with the default f32 cache only (the setter and model_place refuse f16).
#define MOLT_BACKEND_KV16_OPS(X) X(kv_append_f16) X(attn_prefill_f16) X(attn_decode_rows_f16)
// bf16 recurrent SSM state (molt_model_set_state_dtype): a model with it is
// refused on a backend without these
#define MOLT_BACKEND_STATE_BF16_OPS(X) X(ssd_step_rows_bf16) X(bf16_widen) X(bf16_narrow)
#define MOLT_BACKEND_OPTIONAL_OPS(X)                                                               \
    MOLT_BACKEND_GATELOOP_OPS(X) MOLT_BACKEND_MAMBA3_OPS(X) MOLT_BACKEND_KV16_OPS(X)               \
    MOLT_BACKEND_STATE_BF16_OPS(X)

struct ssm_rows_cfg; // ssm_rows.h
struct ssm_decode_args;
struct m3_rows_cfg;  // mamba3.h
struct m3_rows_w;

typedef struct molt_backend {
    const char  *name;
    molt_mem_ops mem; // the backend's memory (mem.h)
    // training attention: the flash ops (lse saved, P recomputed) instead of
    // the P-saving ones (attn_train.c sizes its activations by this)
    bool train_attn_flash;
    // training under MOLT_EXEC_BF16: the MLP's h and ∂gu, read only by bf16
    // GEMMs, written as bf16 by their producers (the *_b16 ops, block.c)
    // instead of fp32 that each GEMM rounds again — the same bits, fewer bytes
    bool train_mlp_b16;
    // dense forward (kernels.h) and backward (backward.h)
    void (*matmul)(const molt_exec *ex, float *y, const float *x, const float *W,
                   const float *bias, int T, int in, int out, int accumulate);
    void (*matmul_w)(const molt_exec *ex, float *y, const float *x, molt_w W, const float *bias,
                     int T, int in, int out, int accumulate);
    void (*matmul_backward)(const molt_exec *ex, float *dx, float *dW, float *db, const float *dy,
                            const float *x, const float *W, int T, int in, int out,
                            int accumulate_dx);
    void (*rmsnorm)(const molt_exec *ex, float *y, const float *x, const float *w, int T, int d,
                    float eps);
    void (*rmsnorm_forward)(const molt_exec *ex, float *y, float *rstd, const float *x,
                            const float *w, int T, int d, float eps);
    void (*rmsnorm_backward)(const molt_exec *ex, float *dx, float *dw, const float *dy,
                             const float *x, const float *w, const float *rstd, int T, int d);
    void (*swiglu)(const molt_exec *ex, float *gate, const float *up, size_t n);
    void (*swiglu_backward)(const molt_exec *ex, float *dg, float *du, const float *dh,
                            const float *g, const float *u, size_t n);
    void (*swiglu_pair)(const molt_exec *ex, float *h, const float *gu, int T, int F);
    void (*swiglu_pair_backward)(const molt_exec *ex, float *dgu, const float *dh, const float *gu,
                                 int T, int F);
    void (*swiglu_pair_b16)(const molt_exec *ex, uint16_t *h, const float *gu, int T, int F);
    void (*swiglu_pair_backward_b16)(const molt_exec *ex, uint16_t *dgu, const float *dh,
                                     const float *gu, int T, int F);
    void (*matmul_b16)(const molt_exec *ex, float *y, const uint16_t *x, const float *W, int T,
                       int in, int out, int accumulate);
    void (*matmul_backward_b16)(const molt_exec *ex, float *dx, float *dW, const float *dy,
                                const uint16_t *dyb, const float *x, const uint16_t *xb,
                                const float *W, int T, int in, int out, int accumulate_dx);
    void (*softmax)(const molt_exec *ex, float *x, int n);
    void (*add)(const molt_exec *ex, float *y, const float *a, const float *b, size_t n);
    void (*add_rmsnorm)(const molt_exec *ex, float *s, float *y, float *rstd, const float *a,
                        const float *b, const float *w, int T, int d, float eps);
    void (*embedding)(const molt_exec *ex, float *x, const float *E, const int32_t *ids, int T,
                      int d);
    void (*embedding_backward)(const molt_exec *ex, float *dE, const float *dx, const int32_t *ids,
                               int T, int d);
    // copies and the hybrid combiner (kernels.h)
    void (*copy_cols)(const molt_exec *ex, float *dst, size_t ldd, const float *src, size_t lds,
                      size_t rows, size_t n);
    void (*hybrid_stats)(const molt_exec *ex, float *ap, float *st, const float *a,
                         const float *s, int T, int d);
    void (*hybrid_stats_backward)(const molt_exec *ex, float *g, float *ds, const float *st,
                                  const float *a, const float *s, int T, int d);
    // state-space (ssm.h)
    void (*conv1d_causal)(const molt_exec *ex, float *y, const float *x, const float *w,
                          const float *b, float *state, int T, int Cc, int K);
    void (*conv1d_causal_backward)(const molt_exec *ex, float *dx, float *dw, float *db,
                                   const float *dy, const float *x, const float *w, int T, int Cc,
                                   int K);
    void (*ssd_step)(const molt_exec *ex, float *y, float *state, const float *X, const float *dA,
                     const float *B, const float *C, int H, int P, int N, int G);
    void (*ssd_scan_chunked)(const molt_exec *ex, float *y, float *state, const float *X,
                             const float *dA, const float *B, const float *C, int T, int H, int P,
                             int N, int G, int Q, float *work);
    void (*ssd_scan_chunked_backward)(const molt_exec *ex, float *dX, float *ddA, float *dB,
                                      float *dC, const float *dy, const float *X, const float *dA,
                                      const float *B, const float *C, int T, int H, int P, int N,
                                      int G, int Q, float *work);
    void (*ssd_materialize)(const molt_exec *ex, float *M, const float *dA, const float *B,
                            const float *C, const float *colscale, const float *D, int T, int H,
                            int N, int G);
    void (*ssd_materialize_backward)(const molt_exec *ex, float *ddA, float *dB, float *dC,
                                     float *dcolscale, float *dD, const float *dM, const float *dA,
                                     const float *B, const float *C, const float *colscale,
                                     const float *D, int T, int H, int N, int G, float *work);
    // attention (attn.h)
    void (*rope)(const molt_exec *ex, float *x, int ld, int rows, int nh, int hd, int pos0,
                 int period, const int32_t *pos, const float *cos, const float *sin, int inverse);
    void (*kv_append)(const molt_exec *ex, float *const *kc, float *const *vc, const float *k,
                      const float *v, int ld, int rows, int KV, int hd, int cap, int pos0,
                      const int32_t *pos);
    void (*attn_prefill)(const molt_exec *ex, float *heads, const float *q, int T, int pos, int H,
                         int KV, int hd, const float *kc, const float *vc, int cap, float *work);
    void (*attn_decode_rows)(const molt_exec *ex, float *heads, const float *q, int n,
                             const int32_t *pos, int H, int KV, int hd, float *const *kc,
                             float *const *vc, int cap, float *work);
    void (*attn_probs)(const molt_exec *ex, float *A, const float *q, int T, int H, int KV, int hd,
                       const float *kc, int cap);
    void (*attn_train_forward)(const molt_exec *ex, float *P, float *heads, const float *qkv,
                               int ld, int B, int T, int H, int KV, int hd);
    void (*attn_train_backward)(const molt_exec *ex, float *dqkv, const float *dheads,
                                const float *qkv, const float *P, int B, int T, int H, int KV,
                                int hd, float *work);
    // flash-style training attention (attn.h)
    void (*attn_flash_forward)(const molt_exec *ex, float *heads, float *lse, const float *qkv,
                               int ld, int B, int T, int H, int KV, int hd);
    void (*attn_flash_backward)(const molt_exec *ex, float *dqkv, const float *dheads,
                                const float *qkv, const float *heads, const float *lse, int B,
                                int T, int H, int KV, int hd, float *work);
    // ssm rows (ssm_rows.h): the mixers' prep and gate stages, column sums, batched decode
    void (*ssm_prep)(const molt_exec *ex, float *x, float *X, float *B, float *C, float *dA,
                     float *dlt, const float *xc, const float *dt, int ldz, const float *dt_bias,
                     const float *A_log, int n, const struct ssm_rows_cfg *c);
    void (*ssm_prep_backward)(const molt_exec *ex, float *dxc, float *ddt, float *hsA,
                              const float *dX, const float *dypre, const float *ddA,
                              const float *dB, const float *dC, const float *dcs, const float *xc,
                              const float *x, const float *dlt, const float *dt, int ldz,
                              const float *dt_bias, const float *A_log, const float *D, int n,
                              const struct ssm_rows_cfg *c);
    void (*ssm_gate)(const molt_exec *ex, float *g, float *ypre, float *rstd, const float *x,
                     const float *z, int ldz, const float *D, const float *norm_w,
                     const float *z_bias, int n, const struct ssm_rows_cfg *c);
    void (*ssm_gate_backward)(const molt_exec *ex, float *dg, float *dz, float *dnw, float *hsD,
                              const float *ypre, const float *x, const float *z, int ldz,
                              const float *rstd, const float *norm_w, const float *z_bias, int n,
                              const struct ssm_rows_cfg *c);
    void (*colsum)(const molt_exec *ex, float *out, const float *src, int rows, int cols, int ld);
    void (*conv1d_causal_rows)(const molt_exec *ex, float *y, const float *x, const float *w,
                               const float *b, float *const *state, int n, int Cc, int K);
    void (*ssd_step_rows)(const molt_exec *ex, float *y, float *const *state, const float *X,
                          const float *dA, const float *B, const float *C, int n, int H, int P,
                          int N, int G);
    void (*ssm_decode_rows)(const molt_exec *ex, float *y, const float *zx, float *const *conv,
                            float *const *ssm, int n, const struct ssm_rows_cfg *c,
                            const struct ssm_decode_args *a, float *work);
    // training: losses and the optimizer step (train_ops.h)
    void (*xent)(const molt_exec *ex, double *loss, float *dlogits, const float *logits,
                 const int32_t *targets, int n, int V, float scale);
    void (*soft_xent)(const molt_exec *ex, double *loss, float *ds, const float *s,
                      const float *t, int n, int V, float tau, float scale);
    void (*l2_rows)(const molt_exec *ex, double *loss, float *dx, const float *x, const float *y,
                    int n, size_t len, float scale);
    void (*sumsq)(const molt_exec *ex, double *partial, const float *x, const molt_span *span,
                  int n_spans);
    void (*scale)(const molt_exec *ex, float *x, const molt_span *span, int n_spans, float k);
    void (*adamw)(const molt_exec *ex, float *p, float *m, float *v, const float *g,
                  const molt_span *span, int n_spans, adamw_hyper h);
    // gateloop (gateloop.h): the transition's row stage, the three scan modes, backward passes
    void (*gl_prep)(const molt_exec *ex, float *la, float *th, const float *a, int lda,
                    const float *bias, int n, int HJ);
    void (*gl_prep_backward)(const molt_exec *ex, float *da, int lda, const float *dla,
                             const float *dth, const float *a, const float *bias, int n, int HJ);
    void (*gl_step_rows)(const molt_exec *ex, float *y, float *const *state, const float *q,
                         const float *k, const float *v, int ld, const float *la, const float *th,
                         int n, int H, int N, int P);
    void (*gl_scan_chunked)(const molt_exec *ex, float *y, float *state, const float *q,
                            const float *k, const float *v, int ld, const float *la,
                            const float *th, int T, int H, int N, int P, int Q, float *work);
    void (*gl_scan_chunked_backward)(const molt_exec *ex, float *dq, float *dk, float *dv, int ldd,
                                     float *dla, float *dth, const float *dy, const float *q,
                                     const float *k, const float *v, int ld, const float *la,
                                     const float *th, int T, int H, int N, int P, int Q,
                                     float *work);
    void (*gl_scan_assoc)(const molt_exec *ex, float *y, float *state, const float *q,
                          const float *k, const float *v, int ld, const float *la,
                          const float *th, int T, int H, int N, int P, float *work);
    void (*gl_materialize)(const molt_exec *ex, float *M, const float *q, const float *k, int ld,
                           const float *la, const float *th, int T, int H, int N, float *work);
    void (*gl_materialize_backward)(const molt_exec *ex, float *dq, float *dk, int ldd, float *dla,
                                    float *dth, const float *dM, const float *q, const float *k,
                                    int ld, const float *la, const float *th, int T, int H, int N,
                                    float *work);
    // mamba3 (mamba3.h): the Mamba-3 mixer's row stages, decode step and matrix
    void (*m3_angles)(const molt_exec *ex, float *phi, float *const *state, const float *zx,
                      int ldz, const float *dt_bias, int n, int T, const struct m3_rows_cfg *c);
    void (*m3_angles_backward)(const molt_exec *ex, float *dzx, float *dphi, const float *zx,
                               int ldz, const float *dt_bias, int n, int T,
                               const struct m3_rows_cfg *c);
    void (*m3_prep)(const molt_exec *ex, float *q, float *k, float *dA, float *dlt, float *lam,
                    float *rstd, const float *zx, int ldz, const float *phi,
                    const struct m3_rows_w *w, int n, const struct m3_rows_cfg *c);
    void (*m3_prep_backward)(const molt_exec *ex, float *dzx, float *dphi, float *dBn, float *dCn,
                             float *dBb, float *dCb, const float *dq, const float *dk,
                             const float *ddA, const float *dgam, const float *dbet,
                             const float *q, const float *k, const float *rstd, const float *zx,
                             int ldz, const float *phi, const struct m3_rows_w *w, int n,
                             const struct m3_rows_cfg *c);
    void (*m3_mix)(const molt_exec *ex, float *X, float *dAx, const float *zx, int ldz,
                   const float *dA, const float *dlt, const float *lam, const struct m3_rows_w *w,
                   int n, int T, const struct m3_rows_cfg *c);
    void (*m3_corr)(const molt_exec *ex, float *ypre, const float *ys, const float *q,
                    const float *k, const float *zx, int ldz, const float *dlt, const float *lam,
                    const struct m3_rows_w *w, int n, int T, const struct m3_rows_cfg *c);
    void (*m3_mix_backward)(const molt_exec *ex, float *dzx, float *dq, float *dk, float *ddA,
                            float *dgam, float *dbet, float *dmx, float *hsD, const float *dX,
                            const float *ddAx, const float *dypre, const float *q,
                            const float *k, const float *zx, int ldz, const float *dlt,
                            const float *lam, const struct m3_rows_w *w, int n, int T,
                            const struct m3_rows_cfg *c);
    void (*m3_gate)(const molt_exec *ex, float *g, float *rstd, const float *ypre,
                    const float *zx, int ldz, const struct m3_rows_w *w, int n,
                    const struct m3_rows_cfg *c);
    void (*m3_gate_backward)(const molt_exec *ex, float *dypre, float *dzx, float *dmz,
                             float *dmo, float *dnw, const float *dg, const float *ypre,
                             const float *zx, int ldz, const float *rstd,
                             const struct m3_rows_w *w, int n, const struct m3_rows_cfg *c);
    void (*m3_fold)(const molt_exec *ex, float *state, const float *dlt, const float *lam,
                    const struct m3_rows_w *w, const struct m3_rows_cfg *c);
    void (*m3_step_rows)(const molt_exec *ex, float *ypre, float *const *state, const float *q,
                         const float *k, const float *zx, int ldz, const float *dA,
                         const float *dlt, const float *lam, const struct m3_rows_w *w, int n,
                         const struct m3_rows_cfg *c);
    void (*m3_materialize)(const molt_exec *ex, float *M, const float *q, const float *k,
                           const float *dA, const float *dlt, const float *lam, const float *D,
                           int T, const struct m3_rows_cfg *c, float *work);
    void (*m3_materialize_backward)(const molt_exec *ex, float *dq, float *dk, float *ddA,
                                    float *dgam, float *dbet, float *dD, const float *dM,
                                    const float *q, const float *k, const float *dA,
                                    const float *dlt, const float *lam, const float *D, int T,
                                    const struct m3_rows_cfg *c, float *work);
    // reverse-KL distillation loss (train_ops.h; issue 17)
    void (*rev_kl)(const molt_exec *ex, double *loss, float *ds, const float *s, const float *t,
                   int n, int V, float tau, float scale);
    // f16 KV cache (attn.h; issue 15): the cache ops over caches of f16 halves
    void (*kv_append_f16)(const molt_exec *ex, uint16_t *const *kc, uint16_t *const *vc,
                          const float *k, const float *v, int ld, int rows, int KV, int hd,
                          int cap, int pos0, const int32_t *pos);
    void (*attn_prefill_f16)(const molt_exec *ex, float *heads, const float *q, int T, int pos,
                             int H, int KV, int hd, const uint16_t *kc, const uint16_t *vc,
                             int cap, float *work);
    void (*attn_decode_rows_f16)(const molt_exec *ex, float *heads, const float *q, int n,
                                 const int32_t *pos, int H, int KV, int hd, uint16_t *const *kc,
                                 uint16_t *const *vc, int cap, float *work);
    // bf16 recurrent SSM state (ssm_rows.h; optional: MOLT_BACKEND_STATE_BF16_OPS)
    void (*ssd_step_rows_bf16)(const molt_exec *ex, float *y, uint16_t *const *state,
                               const float *X, const float *dA, const float *B, const float *C,
                               int n, int H, int P, int N, int G);
    void (*bf16_widen)(const molt_exec *ex, float *dst, const uint16_t *src, size_t n);
    void (*bf16_narrow)(const molt_exec *ex, uint16_t *dst, const float *src, size_t n);
    // decode sampling on the device (kernels.h; issue 12)
    void (*sample_rows)(const molt_exec *ex, int32_t *idx, const float *logits, const float *coin,
                        float temperature, int n, int V);
} molt_backend;

extern const molt_backend molt_backend_cpu;

// Elementwise loops over n floats go on the pool from this size up (below it
// waking a thread costs more than the loop).
#define K_ELEMENTWISE_MIN 32768
int k_elementwise_threads(const molt_exec *ex, size_t n);
// [lo, hi) of thread ith of nth over n items, in 16-float (cache line) blocks
void k_split(size_t n, int ith, int nth, size_t *lo, size_t *hi);

#endif
