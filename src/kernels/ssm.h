/*
 * ssm.h — state-space kernels shared by the Mamba-2 and DiscreteMamba2
 * (Llamba) mixers: causal depthwise conv1d and the SSD selective scan, each in
 * three exact modes (recurrent step, chunked scan, materialized matrix), and
 * their backward passes (cpu/ssm_backward.c). Math: shared/docs/ALGORITHMS.md
 * §1.2–1.4, §2.2. Threads: molt's pool, ex->nth threads (core/exec.h);
 * results are bit-identical for any thread count.
 *
 * Dimension letters
 *   T  time steps            H  (value) heads        P  head dim
 *   N  state size            G  B/C heads ("groups"): head h reads B/C head h / (H/G)
 *   K  conv width            Cc conv channels
 *
 * The scan, for every head h (g = h / (H/G)):
 *   s_t = exp(dA[t,h]) · s_{t-1} + X[t,h,:] ⊗ B[t,g,:]        s: [P,N]
 *   y[t,h,p] = Σ_n s_t[p,n] · C[t,g,n]
 * Mamba-2 passes X = x·Δ, dA = Δ·A; DiscreteMamba2 passes X = x,
 * dA = -softplus(A_log). D·x is added by the mixer, not here.
 */
#ifndef MOLT_SSM_H
#define MOLT_SSM_H

#include <stddef.h>

#include "core/exec.h"

// Decays exp(x) with x < SSM_EXP_FLUSH (e^-60 ≈ 9e-27, far below fp32
// resolution relative to the undecayed terms they are summed with) are taken
// as exactly 0 by every kernel here: fp32 denormals (x < -87) would otherwise
// cost 2-3x on x86 (measured on the materialized matrix and Mamba-2 scans).
// Where every dA ≤ 0 (always so for both mixers), rows of the materialized
// matrix stop at the first flushed entry.
#define SSM_EXP_FLUSH (-60.0f)

// y[T,Cc] = b + Σ_k w[c,k] · in[t-(K-1)+k, c]; inputs before t=0 come from
// state[Cc,K-1] (oldest first), zeros when state is NULL. When state is not
// NULL it is updated to hold the last K-1 inputs. y must not alias x.
void conv1d_causal(const molt_exec *ex, float *y, const float *x, const float *w, const float *b, float *state, int T,
                   int Cc, int K);

// Plain sequential recurrence (the oracle). state[H,P,N]: initial state,
// overwritten with the final one; NULL = start from zero.
void ssd_scan_ref(float *y, float *state, const float *X, const float *dA, const float *B,
                  const float *C, int T, int H, int P, int N, int G);
// One token: y[H,P], state[H,P,N] updated in place.
void ssd_step(const molt_exec *ex, float *y, float *state, const float *X, const float *dA, const float *B,
              const float *C, int H, int P, int N, int G);
// SSD chunked algorithm (chunk Q ≥ 1): intra-chunk quadratic form + inter-chunk
// state passing. Same contract as ssd_scan_ref. work: ssd_chunked_work(...) floats;
// on return it starts with the states entering each chunk, [ceil(T/Q),H,P,N]
// (layout documented in cpu/ssm.c).
size_t ssd_chunked_work(int T, int H, int P, int N, int G, int Q);
void   ssd_scan_chunked(const molt_exec *ex, float *y, float *state, const float *X, const float *dA, const float *B,
                        const float *C, int T, int H, int P, int N, int G, int Q, float *work);
// M[H,T,T] (row = output t, col = input s): for s ≤ t
//   M[h,t,s] = (C[t,g]·B[s,g]) · exp(Σ_{k=s+1..t} dA[k,h]) · (colscale ? colscale[s,h] : 1)
// 0 above the diagonal; D[h] added on the diagonal when D is not NULL.
// colscale [T,H] (Mamba-2: Δ, so that M acts on x while the scan takes x·Δ).
void ssd_materialize(const molt_exec *ex, float *M, const float *dA, const float *B, const float *C,
                     const float *colscale, const float *D, int T, int H, int N, int G);

// ----------------------------------------------------------------------------
// backward passes (cpu/ssm_backward.c). Contract: activation grads (dx, dX,
// ddA, dB, dC, dcolscale) are written (=); parameter grads (dw, db, dD) are
// accumulated (+=). All start from a zero initial state (training sequences
// start empty), i.e. they differentiate the forward called with state = NULL.

// Backward of conv1d_causal with state = NULL:
//   dx[T,Cc] =;  dw[Cc,K] +=;  db[Cc] +=  (dw, db may be NULL: not wanted).
// dx must not alias dy.
void conv1d_causal_backward(const molt_exec *ex, float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, int T, int Cc, int K);

// Oracle twin: the sequential recurrence run in reverse, one scalar chain per
// (h, p, n) in fp32. Writes dX [T,H,P], ddA [T,H], dB [T,G,N], dC [T,G,N].
// work: ssd_ref_backward_work(T) floats (the forward states of one chain).
size_t ssd_ref_backward_work(int T);
void   ssd_scan_ref_backward(float *dX, float *ddA, float *dB, float *dC, const float *dy,
                             const float *X, const float *dA, const float *B, const float *C, int T,
                             int H, int P, int N, int G, float *work);

// Backward through the chunked form (parallel over chunks): intra-chunk
// quadratic part, chunk-state part, inter-chunk recurrence in reverse. Writes
// dX, ddA, dB, dC as ssd_scan_ref_backward.
// work: ssd_chunked_backward_work(...) floats whose first ssd_chunked_work(...)
// floats hold what ssd_scan_chunked(ex, y, NULL, X, dA, B, C, T, H, P, N, G, Q, work)
// left there (states entering every chunk, chunk decays): run the forward on
// the same inputs and chunk size with state = NULL into this buffer first. The
// rest is backward scratch. The saved part is read, never written.
size_t ssd_chunked_backward_work(int T, int H, int P, int N, int G, int Q);
void   ssd_scan_chunked_backward(const molt_exec *ex, float *dX, float *ddA, float *dB, float *dC, const float *dy,
                                 const float *X, const float *dA, const float *B, const float *C,
                                 int T, int H, int P, int N, int G, int Q, float *work);

// Backward of ssd_materialize given dM[H,T,T] (entries above the diagonal are
// ignored): ddA [T,H], dB, dC [T,G,N], dcolscale [T,H] written (=); dD [H]
// accumulated (+=). dcolscale / dD must be NULL when colscale / D are NULL
// (dD may be NULL also when D is not). work: ssd_materialize_backward_work(...)
// floats.
size_t ssd_materialize_backward_work(int T, int H, int N, int G);
void   ssd_materialize_backward(const molt_exec *ex, float *ddA, float *dB, float *dC, float *dcolscale, float *dD,
                                const float *dM, const float *dA, const float *B, const float *C,
                                const float *colscale, const float *D, int T, int H, int N, int G,
                                float *work);

#endif
