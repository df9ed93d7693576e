/*
 * cuda_ops.h — the CUDA backend's ops (the entries of molt_backend_cuda,
 * backend_cuda.c), callable from C and CUDA C++. Internal to src/kernels.
 * Contracts: those of the public functions of the same name (kernels.h,
 * backward.h, ssm.h, ssm_rows.h, attn.h, train_ops.h, mem.h); pointers are
 * device pointers from the backend's alloc, except the host arrays the
 * contracts name (ids, targets, spans, positions, per-row pointer arrays).
 */
#ifndef MOLT_KERNELS_CUDA_OPS_H
#define MOLT_KERNELS_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/exec.h"
#include "kernels/train_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

// The ops this backend implements. An op of MOLT_BACKEND_OPS (kernels.h)
// missing here is "not yet on the GPU": its slot stays NULL, so
// molt_exec_init refuses the table (molt_cuda_missing_ops lists them).
#define MOLT_CUDA_OPS(X)                                                                           \
    X(matmul) X(matmul_w) X(matmul_backward) X(rmsnorm) X(rmsnorm_forward) X(rmsnorm_backward)     \
    X(swiglu) X(swiglu_backward) X(swiglu_pair) X(swiglu_pair_backward) X(softmax) X(add)          \
    X(embedding) X(embedding_backward) X(add_rmsnorm)                                             \
    X(swiglu_pair_b16) X(swiglu_pair_backward_b16) X(matmul_b16) X(matmul_backward_b16)           \
    /* the bf16 recurrent state (ssm.cu, bf16.cu) */                                              \
    X(ssd_step_rows_bf16) X(bf16_widen) X(bf16_narrow)                                            \
    /* copies and the hybrid combiner (hybrid.cu) */                                              \
    X(copy_cols) X(hybrid_stats) X(hybrid_stats_backward)                                          \
    X(conv1d_causal) X(conv1d_causal_backward) X(ssd_step) X(ssd_scan_chunked)                    \
    X(ssd_scan_chunked_backward) X(ssd_materialize) X(ssd_materialize_backward)                \
    /* attention (attn.cu) */                                                                      \
    X(rope) X(kv_append) X(attn_prefill) X(attn_decode_rows) X(attn_probs) X(attn_train_forward)  \
    X(attn_train_backward)                                                                        \
    /* flash-style training attention (attn_flash.cu) */                                          \
    X(attn_flash_forward) X(attn_flash_backward)                                                  \
    /* ssm rows (ssm_rows.cu) */                                                                   \
    X(ssm_prep) X(ssm_prep_backward) X(ssm_gate) X(ssm_gate_backward) X(colsum)                   \
    X(conv1d_causal_rows) X(ssd_step_rows)                                                        \
    /* the fused decode step (ssm_decode.cu) */                                                   \
    X(ssm_decode_rows)                                                                            \
    /* training (train.cu) */                                                                      \
    X(xent) X(soft_xent) X(l2_rows) X(sumsq) X(scale) X(adamw)                                    \
    /* reverse-KL distillation loss (train.cu; issue 17) */                                       \
    X(rev_kl)                                                                                     \
    /* gateloop (gateloop.cu, gateloop_backward.cu; issue 14) */                                  \
    MOLT_BACKEND_GATELOOP_OPS(X)                                                                  \
    /* mamba3 (mamba3.cu, mamba3_backward.cu; issue 14) */                                        \
    MOLT_BACKEND_MAMBA3_OPS(X)                                                                    \
    /* decode sampling (sample.cu; issue 12) */                                                   \
    X(sample_rows)

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
void cuda_add_rmsnorm(const molt_exec *ex, float *s, float *y, float *rstd, const float *a,
                      const float *b, const float *w, int T, int d, float eps);
void cuda_rmsnorm_backward(const molt_exec *ex, float *dx, float *dw, const float *dy,
                           const float *x, const float *w, const float *rstd, int T, int d);
void cuda_swiglu(const molt_exec *ex, float *gate, const float *up, size_t n);
void cuda_swiglu_backward(const molt_exec *ex, float *dg, float *du, const float *dh,
                          const float *g, const float *u, size_t n);
void cuda_swiglu_pair(const molt_exec *ex, float *h, const float *gu, int T, int F);
void cuda_swiglu_pair_backward(const molt_exec *ex, float *dgu, const float *dh, const float *gu,
                               int T, int F);
void cuda_bf16_widen(const molt_exec *ex, float *dst, const uint16_t *src, size_t n);
void cuda_bf16_narrow(const molt_exec *ex, uint16_t *dst, const float *src, size_t n);
void cuda_swiglu_pair_b16(const molt_exec *ex, uint16_t *h, const float *gu, int T, int F);
void cuda_swiglu_pair_backward_b16(const molt_exec *ex, uint16_t *dgu, const float *dh,
                                   const float *gu, int T, int F);
void cuda_matmul_b16(const molt_exec *ex, float *y, const uint16_t *x, const float *W, int T,
                     int in, int out, int accumulate);
void cuda_matmul_backward_b16(const molt_exec *ex, float *dx, float *dW, const float *dy,
                              const uint16_t *dyb, const float *x, const uint16_t *xb,
                              const float *W, int T, int in, int out, int accumulate_dx);
void cuda_softmax(const molt_exec *ex, float *x, int n);
void cuda_add(const molt_exec *ex, float *y, const float *a, const float *b, size_t n);
void cuda_embedding(const molt_exec *ex, float *x, const float *E, const int32_t *ids, int T,
                    int d);
void cuda_embedding_backward(const molt_exec *ex, float *dE, const float *dx, const int32_t *ids,
                             int T, int d);
// hybrid.cu
void cuda_copy_cols(const molt_exec *ex, float *dst, size_t ldd, const float *src, size_t lds,
                    size_t rows, size_t n);
void cuda_hybrid_stats(const molt_exec *ex, float *ap, float *st, const float *a, const float *s,
                       int T, int d);
void cuda_hybrid_stats_backward(const molt_exec *ex, float *g, float *ds, const float *st,
                                const float *a, const float *s, int T, int d);
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
// attn.cu
void cuda_rope(const molt_exec *ex, float *x, int ld, int rows, int nh, int hd, int pos0,
               int period, const int32_t *pos, const float *cos, const float *sin, int inverse);
void cuda_kv_append(const molt_exec *ex, float *const *kc, float *const *vc, const float *k,
                    const float *v, int ld, int rows, int KV, int hd, int cap, int pos0,
                    const int32_t *pos);
void cuda_attn_prefill(const molt_exec *ex, float *heads, const float *q, int T, int pos, int H,
                       int KV, int hd, const float *kc, const float *vc, int cap, float *work);
void cuda_attn_decode_rows(const molt_exec *ex, float *heads, const float *q, int n,
                           const int32_t *pos, int H, int KV, int hd, float *const *kc,
                           float *const *vc, int cap, float *work);
void cuda_attn_probs(const molt_exec *ex, float *A, const float *q, int T, int H, int KV, int hd,
                     const float *kc, int cap);
void cuda_attn_train_forward(const molt_exec *ex, float *P, float *heads, const float *qkv,
                             int ld, int B, int T, int H, int KV, int hd);
void cuda_attn_train_backward(const molt_exec *ex, float *dqkv, const float *dheads,
                              const float *qkv, const float *P, int B, int T, int H, int KV,
                              int hd, float *work);
// attn_flash.cu
void cuda_attn_flash_forward(const molt_exec *ex, float *heads, float *lse, const float *qkv,
                             int ld, int B, int T, int H, int KV, int hd);
void cuda_attn_flash_backward(const molt_exec *ex, float *dqkv, const float *dheads,
                              const float *qkv, const float *heads, const float *lse, int B,
                              int T, int H, int KV, int hd, float *work);
// ssm_rows.cu (ssm_rows_cfg: ssm_rows.h)
struct ssm_rows_cfg;
struct ssm_decode_args;
void cuda_ssm_prep(const molt_exec *ex, float *x, float *X, float *B, float *C, float *dA,
                   float *dlt, const float *xc, const float *dt, int ldz, const float *dt_bias,
                   const float *A_log, int n, const struct ssm_rows_cfg *c);
void cuda_ssm_prep_backward(const molt_exec *ex, float *dxc, float *ddt, float *hsA,
                            const float *dX, const float *dypre, const float *ddA,
                            const float *dB, const float *dC, const float *dcs, const float *xc,
                            const float *x, const float *dlt, const float *dt, int ldz,
                            const float *dt_bias, const float *A_log, const float *D, int n,
                            const struct ssm_rows_cfg *c);
void cuda_ssm_gate(const molt_exec *ex, float *g, float *ypre, float *rstd, const float *x,
                   const float *z, int ldz, const float *D, const float *norm_w,
                   const float *z_bias, int n, const struct ssm_rows_cfg *c);
void cuda_ssm_gate_backward(const molt_exec *ex, float *dg, float *dz, float *dnw, float *hsD,
                            const float *ypre, const float *x, const float *z, int ldz,
                            const float *rstd, const float *norm_w, const float *z_bias, int n,
                            const struct ssm_rows_cfg *c);
void cuda_colsum(const molt_exec *ex, float *out, const float *src, int rows, int cols, int ld);
void cuda_conv1d_causal_rows(const molt_exec *ex, float *y, const float *x, const float *w,
                             const float *b, float *const *state, int n, int Cc, int K);
void cuda_ssd_step_rows(const molt_exec *ex, float *y, float *const *state, const float *X,
                        const float *dA, const float *B, const float *C, int n, int H, int P,
                        int N, int G);
void cuda_ssd_step_rows_bf16(const molt_exec *ex, float *y, uint16_t *const *state,
                             const float *X, const float *dA, const float *B, const float *C,
                             int n, int H, int P, int N, int G);
// ssm_decode.cu
void cuda_ssm_decode_rows(const molt_exec *ex, float *y, const float *zx, float *const *conv,
                          float *const *ssm, int n, const struct ssm_rows_cfg *c,
                          const struct ssm_decode_args *a, float *work);
// train.cu (molt_span, adamw_hyper: train_ops.h)
void cuda_xent(const molt_exec *ex, double *loss, float *dlogits, const float *logits,
               const int32_t *targets, int n, int V, float scale);
void cuda_soft_xent(const molt_exec *ex, double *loss, float *ds, const float *s, const float *t,
                    int n, int V, float tau, float scale);
void cuda_l2_rows(const molt_exec *ex, double *loss, float *dx, const float *x, const float *y,
                  int n, size_t len, float scale);
void cuda_rev_kl(const molt_exec *ex, double *loss, float *ds, const float *s, const float *t,
                 int n, int V, float tau, float scale); // reverse-KL distillation loss
// sample.cu
void cuda_sample_rows(const molt_exec *ex, int32_t *idx, const float *logits, const float *coin,
                      float temperature, int n, int V);
void cuda_sumsq(const molt_exec *ex, double *partial, const float *x, const molt_span *span,
                int n_spans);
void cuda_scale(const molt_exec *ex, float *x, const molt_span *span, int n_spans, float k);
void cuda_adamw(const molt_exec *ex, float *p, float *m, float *v, const float *g,
                const molt_span *span, int n_spans, adamw_hyper h);
// gateloop.cu, gateloop_backward.cu (contracts: gateloop.h)
void cuda_gl_prep(const molt_exec *ex, float *la, float *th, const float *a, int lda,
                  const float *bias, int n, int HJ);
void cuda_gl_prep_backward(const molt_exec *ex, float *da, int lda, const float *dla,
                           const float *dth, const float *a, const float *bias, int n, int HJ);
void cuda_gl_step_rows(const molt_exec *ex, float *y, float *const *state, const float *q,
                       const float *k, const float *v, int ld, const float *la, const float *th,
                       int n, int H, int N, int P);
void cuda_gl_scan_chunked(const molt_exec *ex, float *y, float *state, const float *q,
                          const float *k, const float *v, int ld, const float *la,
                          const float *th, int T, int H, int N, int P, int Q, float *work);
void cuda_gl_scan_chunked_backward(const molt_exec *ex, float *dq, float *dk, float *dv, int ldd,
                                   float *dla, float *dth, const float *dy, const float *q,
                                   const float *k, const float *v, int ld, const float *la,
                                   const float *th, int T, int H, int N, int P, int Q,
                                   float *work);
void cuda_gl_scan_assoc(const molt_exec *ex, float *y, float *state, const float *q,
                        const float *k, const float *v, int ld, const float *la, const float *th,
                        int T, int H, int N, int P, float *work);
void cuda_gl_materialize(const molt_exec *ex, float *M, const float *q, const float *k, int ld,
                         const float *la, const float *th, int T, int H, int N, float *work);
void cuda_gl_materialize_backward(const molt_exec *ex, float *dq, float *dk, int ldd, float *dla,
                                  float *dth, const float *dM, const float *q, const float *k,
                                  int ld, const float *la, const float *th, int T, int H, int N,
                                  float *work);
// mamba3.cu, mamba3_backward.cu (contracts and m3_rows_cfg / m3_rows_w: mamba3.h)
struct m3_rows_cfg;
struct m3_rows_w;
void cuda_m3_angles(const molt_exec *ex, float *phi, float *const *state, const float *zx,
                    int ldz, const float *dt_bias, int n, int T, const struct m3_rows_cfg *c);
void cuda_m3_angles_backward(const molt_exec *ex, float *dzx, float *dphi, const float *zx,
                             int ldz, const float *dt_bias, int n, int T,
                             const struct m3_rows_cfg *c);
void cuda_m3_prep(const molt_exec *ex, float *q, float *k, float *dA, float *dlt, float *lam,
                  float *rstd, const float *zx, int ldz, const float *phi,
                  const struct m3_rows_w *w, int n, const struct m3_rows_cfg *c);
void cuda_m3_prep_backward(const molt_exec *ex, float *dzx, float *dphi, float *dBn, float *dCn,
                           float *dBb, float *dCb, const float *dq, const float *dk,
                           const float *ddA, const float *dgam, const float *dbet,
                           const float *q, const float *k, const float *rstd, const float *zx,
                           int ldz, const float *phi, const struct m3_rows_w *w, int n,
                           const struct m3_rows_cfg *c);
void cuda_m3_mix(const molt_exec *ex, float *X, float *dAx, const float *zx, int ldz,
                 const float *dA, const float *dlt, const float *lam, const struct m3_rows_w *w,
                 int n, int T, const struct m3_rows_cfg *c);
void cuda_m3_corr(const molt_exec *ex, float *ypre, const float *ys, const float *q,
                  const float *k, const float *zx, int ldz, const float *dlt, const float *lam,
                  const struct m3_rows_w *w, int n, int T, const struct m3_rows_cfg *c);
void cuda_m3_mix_backward(const molt_exec *ex, float *dzx, float *dq, float *dk, float *ddA,
                          float *dgam, float *dbet, float *dmx, float *hsD, const float *dX,
                          const float *ddAx, const float *dypre, const float *q, const float *k,
                          const float *zx, int ldz, const float *dlt, const float *lam,
                          const struct m3_rows_w *w, int n, int T, const struct m3_rows_cfg *c);
void cuda_m3_gate(const molt_exec *ex, float *g, float *rstd, const float *ypre, const float *zx,
                  int ldz, const struct m3_rows_w *w, int n, const struct m3_rows_cfg *c);
void cuda_m3_gate_backward(const molt_exec *ex, float *dypre, float *dzx, float *dmz, float *dmo,
                           float *dnw, const float *dg, const float *ypre, const float *zx,
                           int ldz, const float *rstd, const struct m3_rows_w *w, int n,
                           const struct m3_rows_cfg *c);
void cuda_m3_fold(const molt_exec *ex, float *state, const float *dlt, const float *lam,
                  const struct m3_rows_w *w, const struct m3_rows_cfg *c);
void cuda_m3_step_rows(const molt_exec *ex, float *ypre, float *const *state, const float *q,
                       const float *k, const float *zx, int ldz, const float *dA,
                       const float *dlt, const float *lam, const struct m3_rows_w *w, int n,
                       const struct m3_rows_cfg *c);
void cuda_m3_materialize(const molt_exec *ex, float *M, const float *q, const float *k,
                         const float *dA, const float *dlt, const float *lam, const float *D,
                         int T, const struct m3_rows_cfg *c, float *work);
void cuda_m3_materialize_backward(const molt_exec *ex, float *dq, float *dk, float *ddA,
                                  float *dgam, float *dbet, float *dD, const float *dM,
                                  const float *q, const float *k, const float *dA,
                                  const float *dlt, const float *lam, const float *D, int T,
                                  const struct m3_rows_cfg *c, float *work);
// mem.cu (mem.h: molt_mem_ops)
void *cuda_mem_alloc(size_t bytes);
void  cuda_mem_free(void *p);
void  cuda_mem_upload(const molt_exec *ex, void *dst, const void *src, size_t bytes);
void  cuda_mem_download(const molt_exec *ex, void *dst, const void *src, size_t bytes);
void  cuda_mem_copy(const molt_exec *ex, void *dst, const void *src, size_t bytes);
void  cuda_mem_zero(const molt_exec *ex, void *p, size_t bytes);
void  cuda_mem_sync(const molt_exec *ex);
// graph.cu (mem.h: recorded work)
bool  cuda_graph_begin(molt_exec *ex);
void *cuda_graph_end(molt_exec *ex);
bool  cuda_graph_run(const molt_exec *ex, void *g);
void  cuda_graph_free(void *g);

#ifdef __cplusplus
}
#endif

#endif
