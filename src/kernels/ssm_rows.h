/*
 * ssm_rows.h — the row-wise stages of the Mamba-2 and DiscreteMamba2 (Llamba)
 * mixers around the scan, one implementation for inference
 * (mixers/ssm_mixer.c) and training (mixers/ssm_train.c), with their
 * backward passes, and the batched-decode steps over slots (one row = one
 * token of its own sequence, per-row state pointers as a host array). All are
 * backend ops (kernels.h: MOLT_BACKEND_OPS, group "ssm rows"); CPU:
 * cpu/ssm_rows.c, cpu/ssm_rows_backward.c. Equations: shared/docs/
 * ALGORITHMS.md §1.2 (Mamba-2) and §2.2 (DiscreteMamba2).
 *
 * Letters (as ssm.h): n rows (tokens, any number of sequences), H heads,
 * P head dim, Di = H·P, G B/C heads, N state, GN = G·N, Cc = Di + 2·GN conv
 * channels (x | B | C per row), K conv width. Row-major.
 *
 * Views into the in_proj output zx[n, R]: `dt` (Mamba-2: raw dt; Discrete:
 * the per-token A_log columns, H wide) and `z` (the gate, Di wide) are
 * pointers to their first column with row stride ldz (= R); their gradients
 * `ddt`, `dz` are views of dzx with the same stride. Other row arrays are
 * dense.
 *
 * Accumulation contract (as backward.h): activation outputs and per-row
 * partial sums are written (=); k_colsum accumulates (+=). A NULL optional
 * output is not computed. Every op is row-wise (each output row depends on
 * its input row only; k_colsum has one writer per column), so results are
 * bit-identical for any thread count.
 */
#ifndef MOLT_SSM_ROWS_H
#define MOLT_SSM_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "core/exec.h"

// The shape and constants the row ops need (a small host struct of scalars).
typedef struct ssm_rows_cfg {
    int   mamba;          // 1: Mamba-2; 0: DiscreteMamba2
    int   H, P, G, N;     // Di = H·P, GN = G·N; H % G == 0
    float dt_lo, dt_hi;   // Mamba-2 Δ clamp
    float eps;            // Mamba-2 gated-RMSNorm eps
} ssm_rows_cfg;

// prep: from the conv output xc[n,Cc] (before the activation) and dt
//   a = act(xc)  (SiLU for Mamba-2, identity for Discrete);  x|B|C = a
//   Mamba-2:   Δ = clamp(softplus(dt + dt_bias), dt_lo, dt_hi)   dlt[n,H]
//              dA = Δ·(−exp(A_log))                             dA[n,H]
//              X = x·Δ (per head)                               X[n,Di]
//   Discrete:  dA = −softplus(dt)   (dt: the A_log_t columns);  X is x itself
// x [n,Di], X, B, C [n,GN] may each be NULL (not wanted); dlt, X, dt_bias,
// A_log are Mamba-2 only (ignored for Discrete; dt_bias may be NULL = 0).
void ssm_prep(const molt_exec *ex, float *x, float *X, float *B, float *C, float *dA, float *dlt,
              const float *xc, const float *dt, int ldz, const float *dt_bias, const float *A_log,
              int n, const ssm_rows_cfg *c);
// backward of ssm_prep (and of the D·x skip of ssm_gate when dypre is given):
//   ∂x = ∂X·Δ (Discrete: ∂X) + D[h]·∂ypre
//   Mamba-2:  ∂Δ = Σ_p ∂X·x + ∂dA·A + ∂cs;  ∂dt = ∂Δ·σ(v) where the clamp is
//             inactive, else 0 (v = dt + dt_bias);  hsA[r,h] = ∂dA·Δ·A
//             (summed over rows by k_colsum: ∂A_log);  ∂xc = ∂(x|B|C)·silu'(xc)
//   Discrete: ∂dt = −∂dA·σ(dt);  ∂xc = ∂(x|B|C)
// Writes dxc[n,Cc], ddt (H columns of the ldz view), hsA[n,H] (Mamba-2).
// dX (with x), dypre (with D) and dcs (Mamba-2 materialized: ∂ of the column
// scale Δ) may be NULL: their terms are 0. xc and dlt are read for Mamba-2.
void ssm_prep_backward(const molt_exec *ex, float *dxc, float *ddt, float *hsA, const float *dX,
                       const float *dypre, const float *ddA, const float *dB, const float *dC,
                       const float *dcs, const float *xc, const float *x, const float *dlt,
                       const float *dt, int ldz, const float *dt_bias, const float *A_log,
                       const float *D, int n, const ssm_rows_cfg *c);

// gate: with x given (and D not NULL) first ypre += D[h]·x in place, then
//   Mamba-2:  gz = ypre·silu(z);  g = gz·r·norm_w per group of Di/G columns,
//             r = 1/sqrt(mean_group(gz²) + eps) (as k_rmsnorm: Σgz² in double,
//             rounded once)   rstd[n,G] = r when not NULL
//   Discrete: g = ypre·silu(z + z_bias)   (z_bias NULL = 0)
// g[n,Di] may alias ypre (the inference path gates in place). Called again
// with x NULL it recomputes the same g bit for bit (training's backward).
void ssm_gate(const molt_exec *ex, float *g, float *ypre, float *rstd, const float *x,
              const float *z, int ldz, const float *D, const float *norm_w, const float *z_bias,
              int n, const ssm_rows_cfg *c);
// backward of ssm_gate: dg holds ∂g on entry and ∂ypre on return (in place);
// dz (Di columns of the ldz view) written; dnw[n,Di] (Mamba-2: ∂g·gz·r per
// row, → k_colsum: ∂norm_w) and hsD[n,H] (Σ_p ∂ypre·x, → ∂D) written when
// not NULL. Mamba-2 reads rstd as saved by ssm_gate.
void ssm_gate_backward(const molt_exec *ex, float *dg, float *dz, float *dnw, float *hsD,
                       const float *ypre, const float *x, const float *z, int ldz,
                       const float *rstd, const float *norm_w, const float *z_bias, int n,
                       const ssm_rows_cfg *c);

// out[j] += Σ_r src[r·ld + j] for j < cols, rows in order, in double,
// rounded once (bias and per-row-partial gradients). out NULL: nothing.
void k_colsum(const molt_exec *ex, float *out, const float *src, int rows, int cols, int ld);

// Batched decode, row r = the next token of its own sequence:
//   y[r] = conv1d_causal(x[r]) with T = 1 and history state[r] ([Cc,K-1], updated)
void conv1d_causal_rows(const molt_exec *ex, float *y, const float *x, const float *w,
                        const float *b, float *const *state, int n, int Cc, int K);
//   y[r] = ssd_step(X[r], dA[r], B[r], C[r]) on state[r] ([H,P,N], updated)
// (y [n,H,P], X [n,H,P], dA [n,H], B, C [n,G,N]; state a host array of n
// pointers, each to its own state.)
void ssd_step_rows(const molt_exec *ex, float *y, float *const *state, const float *X,
                   const float *dA, const float *B, const float *C, int n, int H, int P, int N,
                   int G);

// The whole decode step of a mixer whose B/C heads are its heads (G == H, as
// Llamba's n_qk_heads = n_v_heads), from the in_proj output to the gated y:
// the composition of the stages above with T = 1 per row,
//   xr = zx[r, o_xbc : o_xbc + Cc];  xc = conv1d_causal_rows(xr) on conv[r];
//   ssm_prep(xc, zx[r, o_dt:]);  ys = ssd_step_rows on ssm[r];
//   y[r] = ssm_gate(ys + D·x, zx[r, o_z:])
// with the same float operations in the same order (the same bits as those
// ops called one by one on the same backend). Every quantity of head h (its
// P x channels, N B and N C channels, its state, its RMSNorm group when
// Mamba-2: Di/G = P columns) belongs to head h alone, so a backend can run a
// (row, head) pair start to end without the rows' intermediates in memory.
// y [n,Di]; zx [n,ldz]; conv[r] [Cc,K-1], ssm[r] [H,P,N] (updated);
// work: ssm_decode_rows_work(n, c) floats (the CPU composes the stage ops there).
typedef struct ssm_decode_args {
    const float *conv_w, *conv_b;           // [Cc,K], [Cc] (NULL: 0)
    const float *dt_bias, *A_log;           // Mamba-2 ([H]; dt_bias NULL: 0)
    const float *D, *norm_w, *z_bias;       // [H] (NULL: no skip), Mamba-2 [Di], Discrete [Di] (NULL: 0)
    int          K, ldz, o_xbc, o_z, o_dt;  // conv width; zx's row stride and column offsets
    int          state_bf16;                // ssm[r] is a bf16 state (uint16_t *, as
                                            // ssd_step_rows_bf16), its step that op's
} ssm_decode_args;
size_t ssm_decode_rows_work(int n, const ssm_rows_cfg *c);
// the same step as its stage ops one by one through ex's table (kernels/ssm_decode.c): the CPU
// backend's ssm_decode_rows, and a backend's path where its fused kernel does not fit
void   ssm_decode_rows_stages(const molt_exec *ex, float *y, const float *zx, float *const *conv,
                              float *const *ssm, int n, const ssm_rows_cfg *c,
                              const ssm_decode_args *a, float *work);
void   ssm_decode_rows(const molt_exec *ex, float *y, const float *zx, float *const *conv,
                       float *const *ssm, int n, const ssm_rows_cfg *c, const ssm_decode_args *a,
                       float *work);

// bf16 recurrent state (optional ops: MOLT_BACKEND_STATE_BF16_OPS). The same
// step with state[r] a [H,P,N] bf16 array: each state element widened to f32,
// the step's f32 arithmetic in ssd_step's order, the new state rounded to
// nearest even (molt_f32_to_bf16) when stored; y from the f32 (unrounded) state.
void ssd_step_rows_bf16(const molt_exec *ex, float *y, uint16_t *const *state, const float *X,
                        const float *dA, const float *B, const float *C, int n, int H, int P,
                        int N, int G);
// dst[i] = src[i] widened (exact) / rounded to nearest even, i < n
void k_bf16_widen(const molt_exec *ex, float *dst, const uint16_t *src, size_t n);
void k_bf16_narrow(const molt_exec *ex, uint16_t *dst, const float *src, size_t n);

#endif
