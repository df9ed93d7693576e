/*
 * dispatch.c — the public op entry points: each is one indirect call through
 * the exec's backend table (kernels.h: molt_backend), so mixers, models and
 * training never name a backend. molt_exec_init admits a table only when
 * every op of MOLT_BACKEND_OPS is present.
 */
#include "kernels/attn.h"
#include "kernels/backward.h"
#include "kernels/gateloop.h"
#include "kernels/kernels.h"
#include "kernels/mamba3.h"
#include "kernels/ssm.h"
#include "kernels/ssm_rows.h"
#include "kernels/train_ops.h"

#include <stddef.h>
#include <stdint.h>

// the op list, the struct and the count stay in step: every X-macro name is a
// field (molt_exec_init below names each), and the struct holds exactly
// MOLT_BACKEND_NOPS function pointers after the name
#define COUNT_OP(op) +1
_Static_assert(0 MOLT_BACKEND_OPS(COUNT_OP) == MOLT_BACKEND_NOPS,
               "MOLT_BACKEND_NOPS must count the ops of MOLT_BACKEND_OPS");
_Static_assert(sizeof(molt_backend) ==
                   offsetof(molt_backend, matmul) + MOLT_BACKEND_NOPS * sizeof(void (*)(void)),
               "a new backend op needs a MOLT_BACKEND_OPS entry, a CPU kernel and a test in "
               "tests/test_backend_ops.c");
#undef COUNT_OP

// the slots a table may leave NULL and still be accepted: the bf16 recurrent
// state's (MOLT_BACKEND_STATE_BF16_OPS; molt_model_set_state_dtype refuses
// bf16 state on such a backend)
static bool exec_may_lack(size_t off) {
#define MAY_LACK_(op) off == offsetof(molt_backend, op) ||
    return MOLT_BACKEND_STATE_BF16_OPS(MAY_LACK_) 0;
#undef MAY_LACK_
}

bool molt_exec_init(molt_exec *ex, const molt_backend *be, int nth) {
    if (!be)
        be = &molt_backend_cpu;
#define HAS_OP(op) &&(be->op || exec_may_lack(offsetof(molt_backend, op)))
    const molt_mem_ops *mm = &be->mem;
    if (!(1 MOLT_BACKEND_OPS(HAS_OP)) || !mm->alloc || !mm->free || !mm->upload ||
        !mm->download || !mm->copy || !mm->zero || !mm->sync)
        return false;
#undef HAS_OP
    *ex = molt_exec_cpu(nth);
    ex->be = be;
    return true;
}

// ----------------------------------------------------------------------------
// dense (kernels.h, backward.h)

void k_matmul(const molt_exec *ex, float *y, const float *x, const float *W, const float *bias,
              int T, int in, int out, int accumulate) {
    ex->be->matmul(ex, y, x, W, bias, T, in, out, accumulate);
}
void k_matmul_backward(const molt_exec *ex, float *dx, float *dW, float *db, const float *dy,
                       const float *x, const float *W, int T, int in, int out, int accumulate_dx) {
    ex->be->matmul_backward(ex, dx, dW, db, dy, x, W, T, in, out, accumulate_dx);
}
void k_rmsnorm(const molt_exec *ex, float *y, const float *x, const float *w, int T, int d,
               float eps) {
    ex->be->rmsnorm(ex, y, x, w, T, d, eps);
}
void k_rmsnorm_forward(const molt_exec *ex, float *y, float *rstd, const float *x, const float *w,
                       int T, int d, float eps) {
    ex->be->rmsnorm_forward(ex, y, rstd, x, w, T, d, eps);
}
void k_rmsnorm_backward(const molt_exec *ex, float *dx, float *dw, const float *dy, const float *x,
                        const float *w, const float *rstd, int T, int d) {
    ex->be->rmsnorm_backward(ex, dx, dw, dy, x, w, rstd, T, d);
}
void k_swiglu(const molt_exec *ex, float *gate, const float *up, size_t n) {
    ex->be->swiglu(ex, gate, up, n);
}
void k_swiglu_backward(const molt_exec *ex, float *dg, float *du, const float *dh, const float *g,
                       const float *u, size_t n) {
    ex->be->swiglu_backward(ex, dg, du, dh, g, u, n);
}
void k_swiglu_pair(const molt_exec *ex, float *h, const float *gu, int T, int F) {
    ex->be->swiglu_pair(ex, h, gu, T, F);
}
void k_swiglu_pair_backward(const molt_exec *ex, float *dgu, const float *dh, const float *gu,
                            int T, int F) {
    ex->be->swiglu_pair_backward(ex, dgu, dh, gu, T, F);
}
void k_swiglu_pair_b16(const molt_exec *ex, uint16_t *h, const float *gu, int T, int F) {
    ex->be->swiglu_pair_b16(ex, h, gu, T, F);
}
void k_swiglu_pair_backward_b16(const molt_exec *ex, uint16_t *dgu, const float *dh,
                                const float *gu, int T, int F) {
    ex->be->swiglu_pair_backward_b16(ex, dgu, dh, gu, T, F);
}
void k_matmul_b16(const molt_exec *ex, float *y, const uint16_t *x, const float *W, int T, int in,
                  int out, int accumulate) {
    ex->be->matmul_b16(ex, y, x, W, T, in, out, accumulate);
}
void k_matmul_backward_b16(const molt_exec *ex, float *dx, float *dW, const float *dy,
                           const uint16_t *dyb, const float *x, const uint16_t *xb,
                           const float *W, int T, int in, int out, int accumulate_dx) {
    ex->be->matmul_backward_b16(ex, dx, dW, dy, dyb, x, xb, W, T, in, out, accumulate_dx);
}
void k_matmul_w(const molt_exec *ex, float *y, const float *x, molt_w W, const float *bias, int T,
                int in, int out, int accumulate) {
    ex->be->matmul_w(ex, y, x, W, bias, T, in, out, accumulate);
}
void k_softmax(const molt_exec *ex, float *x, int n) { ex->be->softmax(ex, x, n); }
void k_sample_rows(const molt_exec *ex, int32_t *idx, const float *logits, const float *coin,
                   float temperature, int n, int V) {
    ex->be->sample_rows(ex, idx, logits, coin, temperature, n, V);
}
void k_add(const molt_exec *ex, float *y, const float *a, const float *b, size_t n) {
    ex->be->add(ex, y, a, b, n);
}
void k_add_rmsnorm(const molt_exec *ex, float *s, float *y, float *rstd, const float *a,
                   const float *b, const float *w, int T, int d, float eps) {
    ex->be->add_rmsnorm(ex, s, y, rstd, a, b, w, T, d, eps);
}
void k_embedding(const molt_exec *ex, float *x, const float *E, const int32_t *ids, int T, int d) {
    ex->be->embedding(ex, x, E, ids, T, d);
}
void k_embedding_backward(const molt_exec *ex, float *dE, const float *dx, const int32_t *ids,
                          int T, int d) {
    ex->be->embedding_backward(ex, dE, dx, ids, T, d);
}
void k_copy_cols(const molt_exec *ex, float *dst, size_t ldd, const float *src, size_t lds,
                 size_t rows, size_t n) {
    ex->be->copy_cols(ex, dst, ldd, src, lds, rows, n);
}
void k_hybrid_stats(const molt_exec *ex, float *ap, float *st, const float *a, const float *s,
                    int T, int d) {
    ex->be->hybrid_stats(ex, ap, st, a, s, T, d);
}
void k_hybrid_stats_backward(const molt_exec *ex, float *g, float *ds, const float *st,
                             const float *a, const float *s, int T, int d) {
    ex->be->hybrid_stats_backward(ex, g, ds, st, a, s, T, d);
}

// ----------------------------------------------------------------------------
// state-space (ssm.h)

void conv1d_causal(const molt_exec *ex, float *y, const float *x, const float *w, const float *b,
                   float *state, int T, int Cc, int K) {
    ex->be->conv1d_causal(ex, y, x, w, b, state, T, Cc, K);
}
void conv1d_causal_backward(const molt_exec *ex, float *dx, float *dw, float *db, const float *dy,
                            const float *x, const float *w, int T, int Cc, int K) {
    ex->be->conv1d_causal_backward(ex, dx, dw, db, dy, x, w, T, Cc, K);
}
void ssd_step(const molt_exec *ex, float *y, float *state, const float *X, const float *dA,
              const float *B, const float *C, int H, int P, int N, int G) {
    ex->be->ssd_step(ex, y, state, X, dA, B, C, H, P, N, G);
}
void ssd_scan_chunked(const molt_exec *ex, float *y, float *state, const float *X,
                      const float *dA, const float *B, const float *C, int T, int H, int P, int N,
                      int G, int Q, float *work) {
    ex->be->ssd_scan_chunked(ex, y, state, X, dA, B, C, T, H, P, N, G, Q, work);
}
void ssd_scan_chunked_backward(const molt_exec *ex, float *dX, float *ddA, float *dB, float *dC,
                               const float *dy, const float *X, const float *dA, const float *B,
                               const float *C, int T, int H, int P, int N, int G, int Q,
                               float *work) {
    ex->be->ssd_scan_chunked_backward(ex, dX, ddA, dB, dC, dy, X, dA, B, C, T, H, P, N, G, Q,
                                      work);
}
void ssd_materialize(const molt_exec *ex, float *M, const float *dA, const float *B,
                     const float *C, const float *colscale, const float *D, int T, int H, int N,
                     int G) {
    ex->be->ssd_materialize(ex, M, dA, B, C, colscale, D, T, H, N, G);
}
void ssd_materialize_backward(const molt_exec *ex, float *ddA, float *dB, float *dC,
                              float *dcolscale, float *dD, const float *dM, const float *dA,
                              const float *B, const float *C, const float *colscale,
                              const float *D, int T, int H, int N, int G, float *work) {
    ex->be->ssd_materialize_backward(ex, ddA, dB, dC, dcolscale, dD, dM, dA, B, C, colscale, D, T,
                                     H, N, G, work);
}

// ----------------------------------------------------------------------------
// attention (attn.h)

void k_rope(const molt_exec *ex, float *x, int ld, int rows, int nh, int hd, int pos0, int period,
            const int32_t *pos, const float *cos, const float *sin, int inverse) {
    ex->be->rope(ex, x, ld, rows, nh, hd, pos0, period, pos, cos, sin, inverse);
}
void k_kv_append(const molt_exec *ex, float *const *kc, float *const *vc, const float *k,
                 const float *v, int ld, int rows, int KV, int hd, int cap, int pos0,
                 const int32_t *pos) {
    ex->be->kv_append(ex, kc, vc, k, v, ld, rows, KV, hd, cap, pos0, pos);
}
void k_attn_prefill(const molt_exec *ex, float *heads, const float *q, int T, int pos, int H,
                    int KV, int hd, const float *kc, const float *vc, int cap, float *work) {
    ex->be->attn_prefill(ex, heads, q, T, pos, H, KV, hd, kc, vc, cap, work);
}
void k_attn_decode_rows(const molt_exec *ex, float *heads, const float *q, int n,
                        const int32_t *pos, int H, int KV, int hd, float *const *kc,
                        float *const *vc, int cap, float *work) {
    ex->be->attn_decode_rows(ex, heads, q, n, pos, H, KV, hd, kc, vc, cap, work);
}
void k_kv_append_f16(const molt_exec *ex, uint16_t *const *kc, uint16_t *const *vc,
                     const float *k, const float *v, int ld, int rows, int KV, int hd, int cap,
                     int pos0, const int32_t *pos) {
    ex->be->kv_append_f16(ex, kc, vc, k, v, ld, rows, KV, hd, cap, pos0, pos);
}
void k_attn_prefill_f16(const molt_exec *ex, float *heads, const float *q, int T, int pos, int H,
                        int KV, int hd, const uint16_t *kc, const uint16_t *vc, int cap,
                        float *work) {
    ex->be->attn_prefill_f16(ex, heads, q, T, pos, H, KV, hd, kc, vc, cap, work);
}
void k_attn_decode_rows_f16(const molt_exec *ex, float *heads, const float *q, int n,
                            const int32_t *pos, int H, int KV, int hd, uint16_t *const *kc,
                            uint16_t *const *vc, int cap, float *work) {
    ex->be->attn_decode_rows_f16(ex, heads, q, n, pos, H, KV, hd, kc, vc, cap, work);
}
void k_attn_probs(const molt_exec *ex, float *A, const float *q, int T, int H, int KV, int hd,
                  const float *kc, int cap) {
    ex->be->attn_probs(ex, A, q, T, H, KV, hd, kc, cap);
}
void k_attn_train_forward(const molt_exec *ex, float *P, float *heads, const float *qkv, int ld,
                          int B, int T, int H, int KV, int hd) {
    ex->be->attn_train_forward(ex, P, heads, qkv, ld, B, T, H, KV, hd);
}
void k_attn_train_backward(const molt_exec *ex, float *dqkv, const float *dheads,
                           const float *qkv, const float *P, int B, int T, int H, int KV, int hd,
                           float *work) {
    ex->be->attn_train_backward(ex, dqkv, dheads, qkv, P, B, T, H, KV, hd, work);
}
void k_attn_flash_forward(const molt_exec *ex, float *heads, float *lse, const float *qkv, int ld,
                          int B, int T, int H, int KV, int hd) {
    ex->be->attn_flash_forward(ex, heads, lse, qkv, ld, B, T, H, KV, hd);
}
void k_attn_flash_backward(const molt_exec *ex, float *dqkv, const float *dheads,
                           const float *qkv, const float *heads, const float *lse, int B, int T,
                           int H, int KV, int hd, float *work) {
    ex->be->attn_flash_backward(ex, dqkv, dheads, qkv, heads, lse, B, T, H, KV, hd, work);
}

// ssm rows (ssm_rows.h)

void ssm_prep(const molt_exec *ex, float *x, float *X, float *B, float *C, float *dA, float *dlt,
              const float *xc, const float *dt, int ldz, const float *dt_bias, const float *A_log,
              int n, const ssm_rows_cfg *c) {
    ex->be->ssm_prep(ex, x, X, B, C, dA, dlt, xc, dt, ldz, dt_bias, A_log, n, c);
}
void ssm_prep_backward(const molt_exec *ex, float *dxc, float *ddt, float *hsA, const float *dX,
                       const float *dypre, const float *ddA, const float *dB, const float *dC,
                       const float *dcs, const float *xc, const float *x, const float *dlt,
                       const float *dt, int ldz, const float *dt_bias, const float *A_log,
                       const float *D, int n, const ssm_rows_cfg *c) {
    ex->be->ssm_prep_backward(ex, dxc, ddt, hsA, dX, dypre, ddA, dB, dC, dcs, xc, x, dlt, dt, ldz,
                              dt_bias, A_log, D, n, c);
}
void ssm_gate(const molt_exec *ex, float *g, float *ypre, float *rstd, const float *x,
              const float *z, int ldz, const float *D, const float *norm_w, const float *z_bias,
              int n, const ssm_rows_cfg *c) {
    ex->be->ssm_gate(ex, g, ypre, rstd, x, z, ldz, D, norm_w, z_bias, n, c);
}
void ssm_gate_backward(const molt_exec *ex, float *dg, float *dz, float *dnw, float *hsD,
                       const float *ypre, const float *x, const float *z, int ldz,
                       const float *rstd, const float *norm_w, const float *z_bias, int n,
                       const ssm_rows_cfg *c) {
    ex->be->ssm_gate_backward(ex, dg, dz, dnw, hsD, ypre, x, z, ldz, rstd, norm_w, z_bias, n, c);
}
void k_colsum(const molt_exec *ex, float *out, const float *src, int rows, int cols, int ld) {
    ex->be->colsum(ex, out, src, rows, cols, ld);
}
void conv1d_causal_rows(const molt_exec *ex, float *y, const float *x, const float *w,
                        const float *b, float *const *state, int n, int Cc, int K) {
    ex->be->conv1d_causal_rows(ex, y, x, w, b, state, n, Cc, K);
}
void ssd_step_rows(const molt_exec *ex, float *y, float *const *state, const float *X,
                   const float *dA, const float *B, const float *C, int n, int H, int P, int N,
                   int G) {
    ex->be->ssd_step_rows(ex, y, state, X, dA, B, C, n, H, P, N, G);
}
void ssm_decode_rows(const molt_exec *ex, float *y, const float *zx, float *const *conv,
                     float *const *ssm, int n, const ssm_rows_cfg *c, const ssm_decode_args *a,
                     float *work) {
    ex->be->ssm_decode_rows(ex, y, zx, conv, ssm, n, c, a, work);
}
// bf16 recurrent SSM state
void ssd_step_rows_bf16(const molt_exec *ex, float *y, uint16_t *const *state, const float *X,
                        const float *dA, const float *B, const float *C, int n, int H, int P,
                        int N, int G) {
    ex->be->ssd_step_rows_bf16(ex, y, state, X, dA, B, C, n, H, P, N, G);
}
void k_bf16_widen(const molt_exec *ex, float *dst, const uint16_t *src, size_t n) {
    ex->be->bf16_widen(ex, dst, src, n);
}
void k_bf16_narrow(const molt_exec *ex, uint16_t *dst, const float *src, size_t n) {
    ex->be->bf16_narrow(ex, dst, src, n);
}

// training (train_ops.h)

void k_xent(const molt_exec *ex, double *loss, float *dlogits, const float *logits,
            const int32_t *targets, int n, int V, float scale) {
    ex->be->xent(ex, loss, dlogits, logits, targets, n, V, scale);
}
void k_soft_xent(const molt_exec *ex, double *loss, float *ds, const float *s, const float *t,
                 int n, int V, float tau, float scale) {
    ex->be->soft_xent(ex, loss, ds, s, t, n, V, tau, scale);
}
void k_l2_rows(const molt_exec *ex, double *loss, float *dx, const float *x, const float *y,
               int n, size_t len, float scale) {
    ex->be->l2_rows(ex, loss, dx, x, y, n, len, scale);
}
// reverse-KL distillation loss (issue 17)
void k_rev_kl(const molt_exec *ex, double *loss, float *ds, const float *s, const float *t, int n,
              int V, float tau, float scale) {
    ex->be->rev_kl(ex, loss, ds, s, t, n, V, tau, scale);
}
void k_sumsq(const molt_exec *ex, double *partial, const float *x, const molt_span *span,
             int n_spans) {
    ex->be->sumsq(ex, partial, x, span, n_spans);
}
void k_scale(const molt_exec *ex, float *x, const molt_span *span, int n_spans, float k) {
    ex->be->scale(ex, x, span, n_spans, k);
}
void k_adamw(const molt_exec *ex, float *p, float *m, float *v, const float *g,
             const molt_span *span, int n_spans, adamw_hyper h) {
    ex->be->adamw(ex, p, m, v, g, span, n_spans, h);
}
size_t k_sumsq_blocks(const molt_span *span, int n_spans) {
    size_t nb = 0;
    for (int i = 0; i < n_spans; i++)
        nb += (span[i].len + K_SUMSQ_BLOCK - 1) / K_SUMSQ_BLOCK;
    return nb;
}

// ----------------------------------------------------------------------------
// gateloop (gateloop.h)

void gl_prep(const molt_exec *ex, float *la, float *th, const float *a, int lda,
             const float *bias, int n, int HJ) {
    ex->be->gl_prep(ex, la, th, a, lda, bias, n, HJ);
}
void gl_prep_backward(const molt_exec *ex, float *da, int lda, const float *dla, const float *dth,
                      const float *a, const float *bias, int n, int HJ) {
    ex->be->gl_prep_backward(ex, da, lda, dla, dth, a, bias, n, HJ);
}
void gl_step_rows(const molt_exec *ex, float *y, float *const *state, const float *q,
                  const float *k, const float *v, int ld, const float *la, const float *th, int n,
                  int H, int N, int P) {
    ex->be->gl_step_rows(ex, y, state, q, k, v, ld, la, th, n, H, N, P);
}
void gl_scan_chunked(const molt_exec *ex, float *y, float *state, const float *q, const float *k,
                     const float *v, int ld, const float *la, const float *th, int T, int H,
                     int N, int P, int Q, float *work) {
    ex->be->gl_scan_chunked(ex, y, state, q, k, v, ld, la, th, T, H, N, P, Q, work);
}
void gl_scan_chunked_backward(const molt_exec *ex, float *dq, float *dk, float *dv, int ldd,
                              float *dla, float *dth, const float *dy, const float *q,
                              const float *k, const float *v, int ld, const float *la,
                              const float *th, int T, int H, int N, int P, int Q, float *work) {
    ex->be->gl_scan_chunked_backward(ex, dq, dk, dv, ldd, dla, dth, dy, q, k, v, ld, la, th, T, H,
                                     N, P, Q, work);
}
void gl_scan_assoc(const molt_exec *ex, float *y, float *state, const float *q, const float *k,
                   const float *v, int ld, const float *la, const float *th, int T, int H, int N,
                   int P, float *work) {
    ex->be->gl_scan_assoc(ex, y, state, q, k, v, ld, la, th, T, H, N, P, work);
}
void gl_materialize(const molt_exec *ex, float *M, const float *q, const float *k, int ld,
                    const float *la, const float *th, int T, int H, int N, float *work) {
    ex->be->gl_materialize(ex, M, q, k, ld, la, th, T, H, N, work);
}
void gl_materialize_backward(const molt_exec *ex, float *dq, float *dk, int ldd, float *dla,
                             float *dth, const float *dM, const float *q, const float *k, int ld,
                             const float *la, const float *th, int T, int H, int N, float *work) {
    ex->be->gl_materialize_backward(ex, dq, dk, ldd, dla, dth, dM, q, k, ld, la, th, T, H, N,
                                    work);
}

// ----------------------------------------------------------------------------
// memory (mem.h)

void *be_alloc(const molt_backend *be, size_t bytes) { return be->mem.alloc(bytes); }
void  be_free(const molt_backend *be, void *p) {
    if (p)
        be->mem.free(p);
}
float *be_allocf(const molt_backend *be, size_t n) {
    return n > SIZE_MAX / sizeof(float) ? NULL : be->mem.alloc(n * sizeof(float));
}
void be_upload(const molt_exec *ex, void *dst, const void *src, size_t bytes) {
    ex->be->mem.upload(ex, dst, src, bytes);
}
void be_download(const molt_exec *ex, void *dst, const void *src, size_t bytes) {
    ex->be->mem.download(ex, dst, src, bytes);
}
void be_copy(const molt_exec *ex, void *dst, const void *src, size_t bytes) {
    ex->be->mem.copy(ex, dst, src, bytes);
}
void be_zero(const molt_exec *ex, void *p, size_t bytes) { ex->be->mem.zero(ex, p, bytes); }
void be_sync(const molt_exec *ex) { ex->be->mem.sync(ex); }
molt_exec be_exec1(const molt_backend *be) {
    molt_exec ex = molt_exec_cpu(1);
    ex.be = be;
    return ex;
}

// ----------------------------------------------------------------------------
// mamba3 (mamba3.h)

void m3_angles(const molt_exec *ex, float *phi, float *const *state, const float *zx, int ldz,
               const float *dt_bias, int n, int T, const m3_rows_cfg *c) {
    ex->be->m3_angles(ex, phi, state, zx, ldz, dt_bias, n, T, c);
}
void m3_angles_backward(const molt_exec *ex, float *dzx, float *dphi, const float *zx, int ldz,
                        const float *dt_bias, int n, int T, const m3_rows_cfg *c) {
    ex->be->m3_angles_backward(ex, dzx, dphi, zx, ldz, dt_bias, n, T, c);
}
void m3_prep(const molt_exec *ex, float *q, float *k, float *dA, float *dlt, float *lam,
             float *rstd, const float *zx, int ldz, const float *phi, const m3_rows_w *w, int n,
             const m3_rows_cfg *c) {
    ex->be->m3_prep(ex, q, k, dA, dlt, lam, rstd, zx, ldz, phi, w, n, c);
}
void m3_prep_backward(const molt_exec *ex, float *dzx, float *dphi, float *dBn, float *dCn,
                      float *dBb, float *dCb, const float *dq, const float *dk, const float *ddA,
                      const float *dgam, const float *dbet, const float *q, const float *k,
                      const float *rstd, const float *zx, int ldz, const float *phi,
                      const m3_rows_w *w, int n, const m3_rows_cfg *c) {
    ex->be->m3_prep_backward(ex, dzx, dphi, dBn, dCn, dBb, dCb, dq, dk, ddA, dgam, dbet, q, k,
                             rstd, zx, ldz, phi, w, n, c);
}
void m3_mix(const molt_exec *ex, float *X, float *dAx, const float *zx, int ldz, const float *dA,
            const float *dlt, const float *lam, const m3_rows_w *w, int n, int T,
            const m3_rows_cfg *c) {
    ex->be->m3_mix(ex, X, dAx, zx, ldz, dA, dlt, lam, w, n, T, c);
}
void m3_corr(const molt_exec *ex, float *ypre, const float *ys, const float *q, const float *k,
             const float *zx, int ldz, const float *dlt, const float *lam, const m3_rows_w *w,
             int n, int T, const m3_rows_cfg *c) {
    ex->be->m3_corr(ex, ypre, ys, q, k, zx, ldz, dlt, lam, w, n, T, c);
}
void m3_mix_backward(const molt_exec *ex, float *dzx, float *dq, float *dk, float *ddA,
                     float *dgam, float *dbet, float *dmx, float *hsD, const float *dX,
                     const float *ddAx, const float *dypre, const float *q, const float *k,
                     const float *zx, int ldz, const float *dlt, const float *lam,
                     const m3_rows_w *w, int n, int T, const m3_rows_cfg *c) {
    ex->be->m3_mix_backward(ex, dzx, dq, dk, ddA, dgam, dbet, dmx, hsD, dX, ddAx, dypre, q, k, zx,
                            ldz, dlt, lam, w, n, T, c);
}
void m3_gate(const molt_exec *ex, float *g, float *rstd, const float *ypre, const float *zx,
             int ldz, const m3_rows_w *w, int n, const m3_rows_cfg *c) {
    ex->be->m3_gate(ex, g, rstd, ypre, zx, ldz, w, n, c);
}
void m3_gate_backward(const molt_exec *ex, float *dypre, float *dzx, float *dmz, float *dmo,
                      float *dnw, const float *dg, const float *ypre, const float *zx, int ldz,
                      const float *rstd, const m3_rows_w *w, int n, const m3_rows_cfg *c) {
    ex->be->m3_gate_backward(ex, dypre, dzx, dmz, dmo, dnw, dg, ypre, zx, ldz, rstd, w, n, c);
}
void m3_fold(const molt_exec *ex, float *state, const float *dlt, const float *lam,
             const m3_rows_w *w, const m3_rows_cfg *c) {
    ex->be->m3_fold(ex, state, dlt, lam, w, c);
}
void m3_step_rows(const molt_exec *ex, float *ypre, float *const *state, const float *q,
                  const float *k, const float *zx, int ldz, const float *dA, const float *dlt,
                  const float *lam, const m3_rows_w *w, int n, const m3_rows_cfg *c) {
    ex->be->m3_step_rows(ex, ypre, state, q, k, zx, ldz, dA, dlt, lam, w, n, c);
}
void m3_materialize(const molt_exec *ex, float *M, const float *q, const float *k,
                    const float *dA, const float *dlt, const float *lam, const float *D, int T,
                    const m3_rows_cfg *c, float *work) {
    ex->be->m3_materialize(ex, M, q, k, dA, dlt, lam, D, T, c, work);
}
void m3_materialize_backward(const molt_exec *ex, float *dq, float *dk, float *ddA, float *dgam,
                             float *dbet, float *dD, const float *dM, const float *q,
                             const float *k, const float *dA, const float *dlt, const float *lam,
                             const float *D, int T, const m3_rows_cfg *c, float *work) {
    ex->be->m3_materialize_backward(ex, dq, dk, ddA, dgam, dbet, dD, dM, q, k, dA, dlt, lam, D, T,
                                    c, work);
}
