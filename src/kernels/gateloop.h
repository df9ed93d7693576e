/*
 * gateloop.h — the GateLoop scan (Katsch 2023; shared/docs/ALGORITHMS.md §9):
 * a linear recurrence with a data-controlled complex transition per head and
 * per complex pair of the q/k dimensions, in three exact modes (recurrent
 * step over rows, chunked scan, materialized mixing matrix), the row stage
 * that makes the transition from its projection, and their backward passes.
 * Backend ops (kernels.h: MOLT_BACKEND_OPS, group "gateloop"); CPU:
 * cpu/gateloop.c, cpu/gateloop_backward.c.
 *
 * Letters: T tokens (n rows for the row ops), H heads, N q/k dims per head
 * (even), J = N/2 complex pairs, P v dims per head, HJ = H·J, Q chunk length.
 *
 * Complex pairs: q/k dims 2j, 2j+1 of a head are the complex number
 *   q̃_j = q[2j] + i·q[2j+1]          (k̃_j the same)
 * and the transition of pair j of head h at token t is
 *   a_t = exp(la[t,h,j]) · e^{i·th[t,h,j]}      la = log|a| (≤ 0 in the mixer), th = arg a.
 * The scan, for every head h (S: J×P complex, from S_0 = state or 0):
 *   S_t[j,p] = a_t[j]·S_{t−1}[j,p] + k̃_t[j]·v_t[p]
 *   y[t,h,p] = Re( Σ_j q̃_t[j]·S_t[j,p] )           (no conjugate: the paper's q·S)
 * Unrolled: y_t = Σ_{s≤t} M[t,s]·v_s with the mixing matrix
 *   M[h,t,s] = Σ_j Re( q̃_t[j]·k̃_s[j]·Π_{r=s+1..t} a_r[j] )
 *            = Σ_j exp(Σ_{r=s+1..t} la_r[j]) · Re( q̃_t[j] e^{iΦ_t[j]} · k̃_s[j] e^{−iΦ_s[j]} )
 * (Φ a prefix sum of th): gated linear attention with a per-pair decay, on q
 * and k rotated by the cumulative phase. The naive product form
 * (q̃⊙Πa)(k̃⊘Πa)ᵀ overflows; every kernel here sums log|a| over segments
 * (never divides by a prefix product) and rotates by phases reduced mod 2π.
 * The paper's third mode, the O(T log T) associative scan, is gl_scan_assoc.
 *
 * Layouts (row-major): q, k [rows, ld] with H·N columns (head-major: head h
 * dims h·N .. h·N+N−1), v [rows, ld] with H·P columns — three column views of
 * one projection output with row stride ld; la, th [rows, HJ]; y [T, H·P];
 * state [H, N, P] real: row 2j holds Re S[j,:], row 2j+1 Im S[j,:].
 *
 * Numerics: fp32 storage and sums; cumulative phases in double, reduced mod
 * 2π before cos/sin; decays exp(x) with x < GL_EXP_FLUSH are exactly 0 (no
 * denormals). Threads: molt's pool over heads (and chunks / rows); every task
 * owns its outputs, so every op is bit-identical for any thread count.
 * Accumulation contract (backward.h): everything is written (=); gradients of
 * the bias go through k_colsum (+=).
 */
#ifndef MOLT_GATELOOP_H
#define MOLT_GATELOOP_H

#include <stddef.h>

#include "core/exec.h"

#define GL_EXP_FLUSH (-60.0f) // as SSM_EXP_FLUSH (ssm.h)

// prep: the transition from its projection, row by row:
//   la[r,i] = log sigmoid(a[r,i] + b[i])          magnitude |a| = sigmoid(·) ∈ (0, 1)
//   th[r,i] = a[r,HJ+i] + b[HJ+i]                 phase in radians
// a: [n, lda] view, 2·HJ columns (magnitude logits, then phases); bias [2·HJ]
// or NULL (0). la, th [n, HJ] written.
void gl_prep(const molt_exec *ex, float *la, float *th, const float *a, int lda,
             const float *bias, int n, int HJ);
// backward of gl_prep: da (2·HJ columns of the [n, lda] view) written:
//   ∂a_mag = ∂la·sigmoid(−(a + b)),  ∂a_phase = ∂th
// (the bias gradient is k_colsum of da). dla or dth NULL: that half is 0.
void gl_prep_backward(const molt_exec *ex, float *da, int lda, const float *dla, const float *dth,
                      const float *a, const float *bias, int n, int HJ);

// Batched recurrent step: row r is one token of its own sequence, state[r]
// ([H,N,P], updated in place; a host array of n pointers). y [n, H·P].
// The single-sequence recurrent mode is this op with n = 1, token by token.
void gl_step_rows(const molt_exec *ex, float *y, float *const *state, const float *q,
                  const float *k, const float *v, int ld, const float *la, const float *th, int n,
                  int H, int N, int P);

// Chunked scan (chunk Q ≥ 1; the last chunk may be shorter): per chunk the
// intra-chunk quadratic form with decays exp(segment sums of la) and q, k
// rotated by the chunk's own cumulative phase, then the state passed across
// chunks. state [H,N,P] in/out (NULL: zero, not kept). work:
// gl_chunked_work(T, H, N, P, Q) floats; on return it starts with the states
// entering each chunk, [ceil(T/Q), H, N, P] (what the backward reads).
size_t gl_chunked_work(int T, int H, int N, int P, int Q);
void   gl_scan_chunked(const molt_exec *ex, float *y, float *state, const float *q, const float *k,
                       const float *v, int ld, const float *la, const float *th, int T, int H,
                       int N, int P, int Q, float *work);
// Backward of gl_scan_chunked from a zero initial state: dq, dk, dv written
// into [T, ldd] views (H·N, H·N, H·P columns), dla, dth [T, HJ] written.
// work: gl_chunked_backward_work(...) floats whose first gl_chunked_work(...)
// hold what gl_scan_chunked(ex, y, NULL, q, k, v, ld, la, th, T, H, N, P, Q,
// work) left there (read, never written). The rest is scratch: per head the
// chunk's states recomputed from its entering state, and the adjoint state,
// which runs the recurrence in reverse (cost O(T·N·P) per head).
size_t gl_chunked_backward_work(int T, int H, int N, int P, int Q);
void   gl_scan_chunked_backward(const molt_exec *ex, float *dq, float *dk, float *dv, int ldd,
                                float *dla, float *dth, const float *dy, const float *q,
                                const float *k, const float *v, int ld, const float *la,
                                const float *th, int T, int H, int N, int P, int Q, float *work);

// The paper's parallel form: an inclusive associative scan (Hillis-Steele,
// ceil(log2 T) rounds, O(T log T) work) over the elements e_t = (a_t, k̃_t ⊗ v_t)
// with (a_i, b_i) • (a_j, b_j) = (a_j·a_i, a_j·b_i + b_j) for i before j; then
// S_t = A_t·S_0 + B_t and y as the scan. The accumulated transition A is kept
// in log-polar form (Σ la, Σ th mod 2π), so it cannot underflow or overflow.
// Same contract as gl_scan_chunked without its saved part (inference and
// tests; training uses the chunked form). work: gl_assoc_work(T, H, N, P) floats.
size_t gl_assoc_work(int T, int H, int N, int P);
void   gl_scan_assoc(const molt_exec *ex, float *y, float *state, const float *q, const float *k,
                     const float *v, int ld, const float *la, const float *th, int T, int H, int N,
                     int P, float *work);

// The materialized mixing matrix M[H,T,T] (row t = output, column s = input)
// from a zero state, 0 above the diagonal: y[:,h,p] = M[h]·v[:,h,p].
// Decays are segment sums of la accumulated from the diagonal (no prefix
// differences); phases are double prefix sums reduced mod 2π. work:
// gl_materialize_work(T, H, N) floats (q, k rotated by the prefix phase).
size_t gl_materialize_work(int T, int H, int N);
void   gl_materialize(const molt_exec *ex, float *M, const float *q, const float *k, int ld,
                      const float *la, const float *th, int T, int H, int N, float *work);
// Backward of gl_materialize given dM[H,T,T] (entries above the diagonal are
// ignored): dq, dk written into [T, ldd] views, dla, dth [T, HJ] written.
// work: gl_materialize_backward_work(T, H, N) floats.
size_t gl_materialize_backward_work(int T, int H, int N);
void   gl_materialize_backward(const molt_exec *ex, float *dq, float *dk, int ldd, float *dla,
                               float *dth, const float *dM, const float *q, const float *k, int ld,
                               const float *la, const float *th, int T, int H, int N, float *work);

#endif
