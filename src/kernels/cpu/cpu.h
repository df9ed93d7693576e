/*
 * cpu.h — the CPU backend's ops, the entries of molt_backend_cpu
 * (backend_cpu.c). Internal to src/kernels: everything else calls the public
 * dispatchers (k_matmul, conv1d_causal, ...), whose contracts these share.
 * CPU code calls its sibling ops directly (cpu_rmsnorm → cpu_rmsnorm_forward),
 * never back through the table.
 */
#ifndef MOLT_KERNELS_CPU_H
#define MOLT_KERNELS_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/exec.h"
#include "kernels/train_ops.h"

// dense.c
void cpu_matmul(const molt_exec *ex, float *y, const float *x, const float *W, const float *bias,
                int T, int in, int out, int accumulate);
void cpu_rmsnorm(const molt_exec *ex, float *y, const float *x, const float *w, int T, int d,
                 float eps);
void cpu_swiglu(const molt_exec *ex, float *gate, const float *up, size_t n);
void cpu_softmax(const molt_exec *ex, float *x, int n);
void cpu_sample_rows(const molt_exec *ex, int32_t *idx, const float *logits, const float *coin,
                     float temperature, int n, int V);
void cpu_add(const molt_exec *ex, float *y, const float *a, const float *b, size_t n);
void cpu_embedding(const molt_exec *ex, float *x, const float *E, const int32_t *ids, int T,
                   int d);

// hybrid.c: copies and the hybrid combiner
void cpu_copy_cols(const molt_exec *ex, float *dst, size_t ldd, const float *src, size_t lds,
                   size_t rows, size_t n);
void cpu_hybrid_stats(const molt_exec *ex, float *ap, float *st, const float *a, const float *s,
                      int T, int d);
void cpu_hybrid_stats_backward(const molt_exec *ex, float *g, float *ds, const float *st,
                               const float *a, const float *s, int T, int d);

// matmul_w.c
// h[0..n) of bf16 (is_bf16) or f16 → dst as f32, exact (matmul_w.c)
void cpu_widen_half(float *dst, const uint16_t *h, int n, int is_bf16);
void cpu_matmul_w(const molt_exec *ex, float *y, const float *x, molt_w W, const float *bias,
                  int T, int in, int out, int accumulate);
// cpu_matmul_w on a given matvec.c path (isa: MV_SCALAR, MV_AVX512 or MV_AVX2; an
// unavailable one runs the twin) for bf16 / f16 weights and T ≤ K_MATVEC_T
void cpu_matmul_w_path(const molt_exec *ex, int isa, float *y, const float *x, molt_w W,
                       const float *bias, int T, int in, int out, int accumulate);
// the fewest rows (T) at which matmul_w's q8_0 products dequantize tiles for sgemm
// (matmul_w.c; MOLT_Q8_SGEMM_T, 0 = never)
int cpu_q8_sgemm_t(void);

// gemm_bf16.c: y = x · Wᵀ (y += with add) for bf16 W with x rounded to bf16 (vdpbf16ps, fp32
// sums) — cpu_matmul_w's path for T > K_MATVEC_T under MOLT_EXEC_BF16 (`--matmul bf16`).
// Returns 0 without touching y where it cannot run (no AVX512-BF16 or ZMM state, odd in, no
// memory, MOLT_GEMM_BF16=off): the caller computes in fp32 then.
int cpu_gemm_bf16_available(void);
int cpu_gemm_bf16(const molt_exec *ex, float *y, const float *x, const uint16_t *W, int T, int in,
                  int out, int add);

#if defined(__x86_64__) && defined(__GNUC__)
// XCR0: the register states the OS saves (bit 1 XMM, 2 YMM, 5-7 AVX-512), what
// decides whether a SIMD path may run, beside CPUID (q8.c, f16.c, gemm_bf16.c)
static inline uint64_t cpu_xgetbv0(void) {
    uint32_t a, d;
    __asm__ volatile("xgetbv" : "=a"(a), "=d"(d) : "c"(0));
    return ((uint64_t)d << 32) | a;
}
#endif

// The instruction-set path to take among n (0 = the scalar twin, always there;
// avail[i]: the CPU and OS allow path i): the best available, or the one the
// environment variable env names (names[i]) when that is lower, or the next
// available one below it. q8.c (MOLT_Q8_ISA) and f16.c (MOLT_F16_ISA) use it.
int cpu_isa_pick(const int *avail, int n, const char *const *names, const char *env);

// matvec.c: the fp32 matmul for 1 ≤ T ≤ K_MATVEC_T rows of x (contract in
// matvec.c: every element exactly cpu_dot64(W row, x row)). isa: MV_SCALAR (the
// cpu_dot64 twin), MV_AVX512 or MV_AVX2; cpu_matvec_isa() is the best this CPU and OS allow
// (MOLT_MATVEC=scalar forces the twin for bf16/f16 weights in matmul_w.c; for f32,
// dense.c takes cpu_matvec_isa()'s path, or OpenBLAS with MOLT_MATVEC=blas).
#define K_MATVEC_T 16
enum { MV_SCALAR = 0, MV_AVX512 = 1, MV_AVX2 = 2 };
int    cpu_matvec_isa(void);
// whether path isa runs on this CPU (MV_SCALAR always; an unavailable one runs the twin)
bool   cpu_matvec_isa_ok(int isa);
// Σ a[i]·b[i] in the fp32 matvec's order: 64 lanes (i mod 64) of fused multiply-adds, folded
// (l, l+16) + (l+32, l+48), then a 16-lane tree (matvec.c)
float  cpu_dot64(const float *a, const float *b, int n);
void   cpu_matvec(int isa, float *y, int ldy, const float *x, const float *W, int T, int in,
                  int o0, int o1, int add);
// the same for bf16 (is_bf16) / f16 weights: cpu_dot64 of the widened row (contract in
// matvec.c)
void cpu_matvec_half(int isa, int is_bf16, float *y, int ldy, const float *x, const uint16_t *W,
                     int T, int in, int o0, int o1, int add);
// input columns a tile of the bf16 / f16 widen + sgemm path at T > K_MATVEC_T (matmul_w.c)
#define K_MATVEC_KC 512

// q8.c, q8_x86.c: the q8_0 branch of cpu_matmul_w (contract: q8.h). isa: 0
// scalar, 1 AVX2, 2 AVX-512 VNNI (q8_isa); cpu_q8_isa() is the one
// cpu_matmul_w uses (the best the CPU and OS allow, or MOLT_Q8_ISA's).
int         cpu_q8_isa(void);
int         cpu_q8_isa_available(int isa);
const char *cpu_q8_isa_name(int isa);
// the op on a given path (an unavailable one runs the scalar twin)
void cpu_matmul_q8(const molt_exec *ex, int isa, float *y, const float *x, const void *W,
                   const float *bias, int T, int in, int out, int accumulate);
// one activation row → ⌈in/32⌉ blocks: int8 (offset: + 128) in the weight
// rows' interleaved order, f32 scales
void cpu_q8_quantize_act(uint8_t *q, float *d, const float *x, int in, int offset);
// the exact per-block int8 dot products of one weight row and one (signed)
// activation row of nb blocks, on a given path (tests: every path agrees)
void cpu_q8_isums(int isa, int32_t *isum, const uint8_t *w, const uint8_t *x, size_t nb);

// dense_backward.c
void cpu_matmul_backward(const molt_exec *ex, float *dx, float *dW, float *db, const float *dy,
                         const float *x, const float *W, int T, int in, int out,
                         int accumulate_dx);
void cpu_rmsnorm_forward(const molt_exec *ex, float *y, float *rstd, const float *x,
                         const float *w, int T, int d, float eps);
void cpu_add_rmsnorm(const molt_exec *ex, float *s, float *y, float *rstd, const float *a,
                     const float *b, const float *w, int T, int d, float eps);
void cpu_rmsnorm_backward(const molt_exec *ex, float *dx, float *dw, const float *dy,
                          const float *x, const float *w, const float *rstd, int T, int d);
void cpu_swiglu_backward(const molt_exec *ex, float *dg, float *du, const float *dh,
                         const float *g, const float *u, size_t n);
void cpu_swiglu_pair(const molt_exec *ex, float *h, const float *gu, int T, int F);
void cpu_swiglu_pair_backward(const molt_exec *ex, float *dgu, const float *dh, const float *gu,
                              int T, int F);
void cpu_swiglu_pair_b16(const molt_exec *ex, uint16_t *h, const float *gu, int T, int F);
void cpu_swiglu_pair_backward_b16(const molt_exec *ex, uint16_t *dgu, const float *dh,
                                  const float *gu, int T, int F);
void cpu_matmul_b16(const molt_exec *ex, float *y, const uint16_t *x, const float *W, int T,
                    int in, int out, int accumulate);
void cpu_matmul_backward_b16(const molt_exec *ex, float *dx, float *dW, const float *dy,
                             const uint16_t *dyb, const float *x, const uint16_t *xb,
                             const float *W, int T, int in, int out, int accumulate_dx);
void cpu_embedding_backward(const molt_exec *ex, float *dE, const float *dx, const int32_t *ids,
                            int T, int d);

// ssm.c
void cpu_conv1d_causal(const molt_exec *ex, float *y, const float *x, const float *w,
                       const float *b, float *state, int T, int Cc, int K);
void cpu_ssd_step(const molt_exec *ex, float *y, float *state, const float *X, const float *dA,
                  const float *B, const float *C, int H, int P, int N, int G);
void cpu_ssd_scan_chunked(const molt_exec *ex, float *y, float *state, const float *X,
                          const float *dA, const float *B, const float *C, int T, int H, int P,
                          int N, int G, int Q, float *work);
void cpu_ssd_materialize(const molt_exec *ex, float *M, const float *dA, const float *B,
                         const float *C, const float *colscale, const float *D, int T, int H,
                         int N, int G);

// ssm_backward.c
void cpu_conv1d_causal_backward(const molt_exec *ex, float *dx, float *dw, float *db,
                                const float *dy, const float *x, const float *w, int T, int Cc,
                                int K);
void cpu_ssd_scan_chunked_backward(const molt_exec *ex, float *dX, float *ddA, float *dB,
                                   float *dC, const float *dy, const float *X, const float *dA,
                                   const float *B, const float *C, int T, int H, int P, int N,
                                   int G, int Q, float *work);
void cpu_ssd_materialize_backward(const molt_exec *ex, float *ddA, float *dB, float *dC,
                                  float *dcolscale, float *dD, const float *dM, const float *dA,
                                  const float *B, const float *C, const float *colscale,
                                  const float *D, int T, int H, int N, int G, float *work);

// attn.c, attn_backward.c (attn.h)
void cpu_rope(const molt_exec *ex, float *x, int ld, int rows, int nh, int hd, int pos0,
              int period, const int32_t *pos, const float *cos, const float *sin, int inverse);
void cpu_kv_append(const molt_exec *ex, float *const *kc, float *const *vc, const float *k,
                   const float *v, int ld, int rows, int KV, int hd, int cap, int pos0,
                   const int32_t *pos);
void cpu_attn_prefill(const molt_exec *ex, float *heads, const float *q, int T, int pos, int H,
                      int KV, int hd, const float *kc, const float *vc, int cap, float *work);
void cpu_attn_decode_rows(const molt_exec *ex, float *heads, const float *q, int n,
                          const int32_t *pos, int H, int KV, int hd, float *const *kc,
                          float *const *vc, int cap, float *work);
void cpu_attn_probs(const molt_exec *ex, float *A, const float *q, int T, int H, int KV, int hd,
                    const float *kc, int cap);
void cpu_attn_train_forward(const molt_exec *ex, float *P, float *heads, const float *qkv, int ld,
                            int B, int T, int H, int KV, int hd);
void cpu_attn_train_backward(const molt_exec *ex, float *dqkv, const float *dheads,
                             const float *qkv, const float *P, int B, int T, int H, int KV,
                             int hd, float *work);
void cpu_attn_flash_forward(const molt_exec *ex, float *heads, float *lse, const float *qkv,
                            int ld, int B, int T, int H, int KV, int hd);
void cpu_attn_flash_backward(const molt_exec *ex, float *dqkv, const float *dheads,
                             const float *qkv, const float *heads, const float *lse, int B, int T,
                             int H, int KV, int hd, float *work);
// ssm_rows.c, ssm_rows_backward.c (ssm_rows.h)
struct ssm_rows_cfg;
struct ssm_decode_args;
void cpu_ssm_prep(const molt_exec *ex, float *x, float *X, float *B, float *C, float *dA,
                  float *dlt, const float *xc, const float *dt, int ldz, const float *dt_bias,
                  const float *A_log, int n, const struct ssm_rows_cfg *c);
void cpu_ssm_prep_backward(const molt_exec *ex, float *dxc, float *ddt, float *hsA,
                           const float *dX, const float *dypre, const float *ddA, const float *dB,
                           const float *dC, const float *dcs, const float *xc, const float *x,
                           const float *dlt, const float *dt, int ldz, const float *dt_bias,
                           const float *A_log, const float *D, int n,
                           const struct ssm_rows_cfg *c);
void cpu_ssm_gate(const molt_exec *ex, float *g, float *ypre, float *rstd, const float *x,
                  const float *z, int ldz, const float *D, const float *norm_w,
                  const float *z_bias, int n, const struct ssm_rows_cfg *c);
void cpu_ssm_gate_backward(const molt_exec *ex, float *dg, float *dz, float *dnw, float *hsD,
                           const float *ypre, const float *x, const float *z, int ldz,
                           const float *rstd, const float *norm_w, const float *z_bias, int n,
                           const struct ssm_rows_cfg *c);
void cpu_colsum(const molt_exec *ex, float *out, const float *src, int rows, int cols, int ld);
void cpu_conv1d_causal_rows(const molt_exec *ex, float *y, const float *x, const float *w,
                            const float *b, float *const *state, int n, int Cc, int K);
void cpu_ssd_step_rows(const molt_exec *ex, float *y, float *const *state, const float *X,
                       const float *dA, const float *B, const float *C, int n, int H, int P,
                       int N, int G);
void cpu_ssm_decode_rows(const molt_exec *ex, float *y, const float *zx, float *const *conv,
                         float *const *ssm, int n, const struct ssm_rows_cfg *c,
                         const struct ssm_decode_args *a, float *work);
// ssm_bf16.c (ssm_rows.h: the bf16 recurrent SSM state)
void cpu_ssd_step_rows_bf16(const molt_exec *ex, float *y, uint16_t *const *state, const float *X,
                            const float *dA, const float *B, const float *C, int n, int H, int P,
                            int N, int G);
void cpu_bf16_widen(const molt_exec *ex, float *dst, const uint16_t *src, size_t n);
void cpu_bf16_narrow(const molt_exec *ex, uint16_t *dst, const float *src, size_t n);
// loss.c (train_ops.h)
void cpu_xent(const molt_exec *ex, double *loss, float *dlogits, const float *logits,
              const int32_t *targets, int n, int V, float scale);
void cpu_soft_xent(const molt_exec *ex, double *loss, float *ds, const float *s, const float *t,
                   int n, int V, float tau, float scale);
void cpu_l2_rows(const molt_exec *ex, double *loss, float *dx, const float *x, const float *y,
                 int n, size_t len, float scale);
void cpu_rev_kl(const molt_exec *ex, double *loss, float *ds, const float *s, const float *t,
                int n, int V, float tau, float scale); // reverse-KL distillation loss

// f16.c: f32 → f16 narrowing (round to nearest even) on a path: 0 the scalar
// twin (molt_f32_to_f16), 1 F16C (AVX), 2 AVX-512F; cpu_f16_isa() is the best
// the CPU and OS allow (MOLT_F16_ISA=scalar|f16c|avx512 picks a lower one).
// Every path gives the same bits (tests: all 65536 halves and the floats
// around them); an unavailable path runs the twin.
enum { F16_SCALAR = 0, F16_F16C = 1, F16_AVX512 = 2, F16_ISA_COUNT };
int  cpu_f16_isa(void);
int  cpu_f16_isa_available(int isa);
void cpu_narrow_half(int isa, uint16_t *dst, const float *src, int n);
// f16 → f32 on a path (vcvtph2ps; the twin is cpu_widen_half): exact, the same
// bits for every half except signaling NaNs, which the hardware paths return
// quiet (still NaN, same sign; the narrowing never makes one)
void cpu_widen_f16(int isa, float *dst, const uint16_t *h, int n);

// attn_f16.c (attn.h: the f16 KV cache)
void cpu_kv_append_f16(const molt_exec *ex, uint16_t *const *kc, uint16_t *const *vc,
                       const float *k, const float *v, int ld, int rows, int KV, int hd, int cap,
                       int pos0, const int32_t *pos);
void cpu_attn_prefill_f16(const molt_exec *ex, float *heads, const float *q, int T, int pos,
                          int H, int KV, int hd, const uint16_t *kc, const uint16_t *vc, int cap,
                          float *work);
void cpu_attn_decode_rows_f16(const molt_exec *ex, float *heads, const float *q, int n,
                              const int32_t *pos, int H, int KV, int hd, uint16_t *const *kc,
                              uint16_t *const *vc, int cap, float *work);

// optim.c (train_ops.h)
void cpu_sumsq(const molt_exec *ex, double *partial, const float *x, const molt_span *span,
               int n_spans);
void cpu_scale(const molt_exec *ex, float *x, const molt_span *span, int n_spans, float k);
void cpu_adamw(const molt_exec *ex, float *p, float *m, float *v, const float *g,
               const molt_span *span, int n_spans, adamw_hyper h);

// gateloop.c, gateloop_backward.c (gateloop.h)
void cpu_gl_prep(const molt_exec *ex, float *la, float *th, const float *a, int lda,
                 const float *bias, int n, int HJ);
void cpu_gl_prep_backward(const molt_exec *ex, float *da, int lda, const float *dla,
                          const float *dth, const float *a, const float *bias, int n, int HJ);
void cpu_gl_step_rows(const molt_exec *ex, float *y, float *const *state, const float *q,
                      const float *k, const float *v, int ld, const float *la, const float *th,
                      int n, int H, int N, int P);
void cpu_gl_scan_chunked(const molt_exec *ex, float *y, float *state, const float *q,
                         const float *k, const float *v, int ld, const float *la, const float *th,
                         int T, int H, int N, int P, int Q, float *work);
void cpu_gl_scan_chunked_backward(const molt_exec *ex, float *dq, float *dk, float *dv, int ldd,
                                  float *dla, float *dth, const float *dy, const float *q,
                                  const float *k, const float *v, int ld, const float *la,
                                  const float *th, int T, int H, int N, int P, int Q,
                                  float *work);
void cpu_gl_scan_assoc(const molt_exec *ex, float *y, float *state, const float *q,
                       const float *k, const float *v, int ld, const float *la, const float *th,
                       int T, int H, int N, int P, float *work);
void cpu_gl_materialize(const molt_exec *ex, float *M, const float *q, const float *k, int ld,
                        const float *la, const float *th, int T, int H, int N, float *work);
void cpu_gl_materialize_backward(const molt_exec *ex, float *dq, float *dk, int ldd, float *dla,
                                 float *dth, const float *dM, const float *q, const float *k,
                                 int ld, const float *la, const float *th, int T, int H, int N,
                                 float *work);
// mamba3.c, mamba3_backward.c (mamba3.h)
struct m3_rows_cfg;
struct m3_rows_w;
void cpu_m3_angles(const molt_exec *ex, float *phi, float *const *state, const float *zx, int ldz,
                   const float *dt_bias, int n, int T, const struct m3_rows_cfg *c);
void cpu_m3_angles_backward(const molt_exec *ex, float *dzx, float *dphi, const float *zx,
                            int ldz, const float *dt_bias, int n, int T,
                            const struct m3_rows_cfg *c);
void cpu_m3_prep(const molt_exec *ex, float *q, float *k, float *dA, float *dlt, float *lam,
                 float *rstd, const float *zx, int ldz, const float *phi,
                 const struct m3_rows_w *w, int n, const struct m3_rows_cfg *c);
void cpu_m3_prep_backward(const molt_exec *ex, float *dzx, float *dphi, float *dBn, float *dCn,
                          float *dBb, float *dCb, const float *dq, const float *dk,
                          const float *ddA, const float *dgam, const float *dbet, const float *q,
                          const float *k, const float *rstd, const float *zx, int ldz,
                          const float *phi, const struct m3_rows_w *w, int n,
                          const struct m3_rows_cfg *c);
void cpu_m3_mix(const molt_exec *ex, float *X, float *dAx, const float *zx, int ldz,
                const float *dA, const float *dlt, const float *lam, const struct m3_rows_w *w,
                int n, int T, const struct m3_rows_cfg *c);
void cpu_m3_corr(const molt_exec *ex, float *ypre, const float *ys, const float *q,
                 const float *k, const float *zx, int ldz, const float *dlt, const float *lam,
                 const struct m3_rows_w *w, int n, int T, const struct m3_rows_cfg *c);
void cpu_m3_mix_backward(const molt_exec *ex, float *dzx, float *dq, float *dk, float *ddA,
                         float *dgam, float *dbet, float *dmx, float *hsD, const float *dX,
                         const float *ddAx, const float *dypre, const float *q, const float *k,
                         const float *zx, int ldz, const float *dlt, const float *lam,
                         const struct m3_rows_w *w, int n, int T, const struct m3_rows_cfg *c);
void cpu_m3_gate(const molt_exec *ex, float *g, float *rstd, const float *ypre, const float *zx,
                 int ldz, const struct m3_rows_w *w, int n, const struct m3_rows_cfg *c);
void cpu_m3_gate_backward(const molt_exec *ex, float *dypre, float *dzx, float *dmz, float *dmo,
                          float *dnw, const float *dg, const float *ypre, const float *zx,
                          int ldz, const float *rstd, const struct m3_rows_w *w, int n,
                          const struct m3_rows_cfg *c);
void cpu_m3_fold(const molt_exec *ex, float *state, const float *dlt, const float *lam,
                 const struct m3_rows_w *w, const struct m3_rows_cfg *c);
void cpu_m3_step_rows(const molt_exec *ex, float *ypre, float *const *state, const float *q,
                      const float *k, const float *zx, int ldz, const float *dA,
                      const float *dlt, const float *lam, const struct m3_rows_w *w, int n,
                      const struct m3_rows_cfg *c);
void cpu_m3_materialize(const molt_exec *ex, float *M, const float *q, const float *k,
                        const float *dA, const float *dlt, const float *lam, const float *D, int T,
                        const struct m3_rows_cfg *c, float *work);
void cpu_m3_materialize_backward(const molt_exec *ex, float *dq, float *dk, float *ddA,
                                 float *dgam, float *dbet, float *dD, const float *dM,
                                 const float *q, const float *k, const float *dA,
                                 const float *dlt, const float *lam, const float *D, int T,
                                 const struct m3_rows_cfg *c, float *work);

// mem.c (mem.h: molt_mem_ops; upload and download are copy on the CPU)
void *cpu_mem_alloc(size_t bytes);
void  cpu_mem_free(void *p);
void  cpu_mem_copy(const molt_exec *ex, void *dst, const void *src, size_t bytes);
void  cpu_mem_zero(const molt_exec *ex, void *p, size_t bytes);
void  cpu_mem_sync(const molt_exec *ex);

#endif
